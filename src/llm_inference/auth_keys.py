"""API keys: where they come from (LLM_API_KEYS, LLM_API_KEYS_FILE), re-reading the file, comparing them, and
each key's own limits.

Only digests of the keys are kept: a key never needs to be compared, logged or shown in its clear form.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

MIN_KEY_LENGTH = 16
# What a key may carry after it, as name=value words: its own limits in place of the settings of the same name.
KEY_LIMITS = ("rate_limit_per_minute", "tokens_per_minute")


@dataclass(frozen=True)
class KeyLimits:
    """A key's own limits (None: the setting's, LLM_RATE_LIMIT_PER_MINUTE / LLM_TOKENS_PER_MINUTE; 0: none)."""

    rate_limit_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True)
class KeyEntry:
    key: str
    limits: KeyLimits = KeyLimits()
    problem: str | None = None  # what is wrong with the words after the key, worded without the key


def _entry(text: str) -> KeyEntry:
    key, *words = text.split()
    limits: dict[str, int] = {}
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or name not in KEY_LIMITS:
            allowed = " or ".join(f"{n}=N" for n in KEY_LIMITS)
            return KeyEntry(key, problem=f"a key is followed by {word.split('=')[0][:40]!r}, not {allowed}")
        if not value.isdigit():
            return KeyEntry(key, problem=f"{name} must be a whole number >= 0 (0: no limit), not {value[:20]!r}")
        limits[name] = int(value)
    return KeyEntry(key, KeyLimits(**limits))


def parse_key_entries(text: str) -> list[KeyEntry]:
    """Keys separated by commas or newlines, each optionally followed by its own limits
    (`<key> rate_limit_per_minute=60 tokens_per_minute=100000`); blank lines and `#` comments are skipped."""
    entries: list[KeyEntry] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        entries.extend(_entry(part) for part in line.split(",") if part.strip())
    return entries


def parse_keys(text: str) -> list[str]:
    """The keys alone (parse_key_entries without their limits)."""
    return [entry.key for entry in parse_key_entries(text)]


def key_problems(entries: list[KeyEntry]) -> list[str]:
    """What is wrong with a list of keys, worded without the keys themselves."""
    short = sum(1 for entry in entries if len(entry.key) < MIN_KEY_LENGTH)
    problems = [f"{short} key(s) shorter than {MIN_KEY_LENGTH} characters"] if short else []
    return problems + [entry.problem for entry in entries if entry.problem]


def _usable(entry: KeyEntry) -> bool:
    return len(entry.key) >= MIN_KEY_LENGTH and entry.problem is None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id(key: str) -> str:
    """A name for a key that can appear in logs and rate-limit buckets without revealing it."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class _FileVersion:
    inode: int
    size: int
    mtime_ns: int


class ApiKeys:
    """The accepted keys: the fixed LLM_API_KEYS plus the current content of LLM_API_KEYS_FILE.

    The file is checked for changes (inode, size, mtime) on every lookup, so a rotated Kubernetes Secret
    (mounted files are swapped through a symlink) takes effect on the next request without a restart. If the
    file cannot be read later, the last keys read stay in force: an I/O hiccup must neither lock every
    client out nor let anyone in.
    """

    def __init__(self, keys: tuple[str, ...] = (), path: str | None = None) -> None:
        fixed = [entry for text in keys for entry in parse_key_entries(text) if _usable(entry)]
        self._fixed = {_digest(e.key): key_id(e.key) for e in fixed}
        self._fixed_limits = {key_id(e.key): e.limits for e in fixed}
        self._path = path
        self._from_file: dict[bytes, str] = {}
        self._file_limits: dict[str, KeyLimits] = {}
        self._version: _FileVersion | None = None
        self._read_failed = False
        if path:
            self._reload()

    @property
    def enabled(self) -> bool:
        return bool(self._fixed) or self._path is not None

    def _reload(self) -> None:
        assert self._path is not None
        try:
            stat = os.stat(self._path)
            version = _FileVersion(stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if version == self._version:
                return
            with open(self._path, encoding="utf-8") as file:
                entries = parse_key_entries(file.read())
        except (OSError, UnicodeDecodeError) as exc:
            if not self._read_failed:
                log.warning(
                    "API key file unreadable; keeping the keys read before",
                    extra={"path": self._path, "error": type(exc).__name__},
                )
            self._read_failed = True
            return
        usable = [e for e in entries if _usable(e)]
        if len(usable) < len(entries):
            log.warning(
                "API key file has keys that cannot be used (too short, or with limits that are not N >= 0); they are "
                "ignored",
                extra={"path": self._path, "ignored": len(entries) - len(usable), "problems": key_problems(entries)},
            )
        self._from_file = {_digest(e.key): key_id(e.key) for e in usable}
        self._file_limits = {key_id(e.key): e.limits for e in usable}
        self._version, self._read_failed = version, False
        log.info("API keys loaded", extra={"path": self._path, "keys": len(self._from_file)})

    def identify(self, token: str) -> str | None:
        """The id of the key equal to `token`, or None.

        Digests have one length whatever the token's, and every key is compared without stopping at a
        match, so the time taken says nothing about how close a guess was or which key matched.
        """
        if self._path:
            self._reload()
        presented = _digest(token)
        found = None
        for digest, name in (*self._fixed.items(), *self._from_file.items()):
            if hmac.compare_digest(presented, digest):
                found = name
        return found

    def limits(self, key_id: str) -> KeyLimits:
        """The key's own limits as last read (the file's, over LLM_API_KEYS's for a key in both)."""
        return self._file_limits.get(key_id) or self._fixed_limits.get(key_id) or KeyLimits()

    @property
    def has_own_limits(self) -> bool:
        """Whether any key may carry limits of its own: LLM_API_KEYS names one, or a key file may."""
        return self._path is not None or any(limits != KeyLimits() for limits in self._fixed_limits.values())
