"""API keys: where they come from (LLM_API_KEYS, LLM_API_KEYS_FILE), re-reading the file, comparing them.

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


def parse_keys(text: str) -> list[str]:
    """Keys separated by commas or newlines; blank lines and `#` comments are skipped."""
    keys: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        keys.extend(part.strip() for part in line.split(",") if part.strip())
    return keys


def key_problems(keys: list[str]) -> list[str]:
    """What is wrong with a list of keys, worded without the keys themselves."""
    short = sum(1 for key in keys if len(key) < MIN_KEY_LENGTH)
    return [f"{short} key(s) shorter than {MIN_KEY_LENGTH} characters"] if short else []


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
        self._fixed = {_digest(k): key_id(k) for k in keys}
        self._path = path
        self._from_file: dict[bytes, str] = {}
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
                keys = parse_keys(file.read())
        except (OSError, UnicodeDecodeError) as exc:
            if not self._read_failed:
                log.warning(
                    "API key file unreadable; keeping the keys read before",
                    extra={"path": self._path, "error": type(exc).__name__},
                )
            self._read_failed = True
            return
        usable = [k for k in keys if len(k) >= MIN_KEY_LENGTH]
        if len(usable) < len(keys):
            log.warning(
                "API key file has keys too short to use; they are ignored",
                extra={"path": self._path, "ignored": len(keys) - len(usable)},
            )
        self._from_file = {_digest(k): key_id(k) for k in usable}
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
