"""The parts of access control that need no server: key sources and comparison, the token bucket."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import pytest

from llm_inference import auth_keys
from llm_inference.api.http.auth import is_exempt
from llm_inference.api.http.rate_limit import MAX_IDLE_BUCKETS, RateLimiter
from llm_inference.auth_keys import ApiKeys, key_id, parse_keys
from llm_inference.settings import SettingsError, load_settings

KEY_A, KEY_B, KEY_C = "a" * 20 + "-key-A", "b" * 20 + "-key-B", "c" * 20 + "-key-C"


def test_keys_are_separated_by_commas_or_lines_with_comments() -> None:
    assert parse_keys(f"{KEY_A}, {KEY_B}\n# rotated out: old\n\n{KEY_C}  # new\n") == [KEY_A, KEY_B, KEY_C]


def test_every_key_is_compared_whatever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: the time a lookup takes does not depend on which key (if any) matched."""
    calls: list[int] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(len(a) + len(b))
        return compare(a, b)

    monkeypatch.setattr(auth_keys.hmac, "compare_digest", counting)
    keys = ApiKeys((KEY_A, KEY_B, KEY_C))
    for token in (KEY_A, KEY_C, "wrong", "x" * 5000):
        calls.clear()
        keys.identify(token)
        assert calls == [64] * 3, "every key compared, as fixed-length digests"
    assert keys.identify(KEY_B) == key_id(KEY_B) and keys.identify(KEY_B + "x") is None


def test_key_ids_do_not_reveal_keys() -> None:
    assert KEY_A not in key_id(KEY_A) and key_id(KEY_A) != key_id(KEY_B)


def test_the_key_file_is_reread_when_it_changes_like_a_mounted_secret(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(KEY_B + "\n")
    keys = ApiKeys((KEY_A,), str(path))
    assert keys.identify(KEY_B) and keys.identify(KEY_A)
    # Kubernetes swaps a Secret's files through a symlink: a new file replaces the old one.
    fresh = tmp_path / "keys.new"
    fresh.write_text(KEY_C + "\n")
    os.replace(fresh, path)
    assert keys.identify(KEY_B) is None
    assert keys.identify(KEY_C) == key_id(KEY_C)
    assert keys.identify(KEY_A), "LLM_API_KEYS stay valid beside the file"


def test_an_unreadable_key_file_keeps_the_keys_read_before(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(KEY_B)
    keys = ApiKeys((), str(path))
    path.unlink()
    assert keys.identify(KEY_B), "a missing file neither locks everyone out nor lets anyone in"
    assert keys.identify("anything else") is None


@pytest.mark.parametrize(
    ("env", "variable", "rule"),
    [
        ({"LLM_API_KEYS": "short"}, "LLM_API_KEYS", "shorter than 16 characters"),
        ({"LLM_API_KEYS_FILE": "/nonexistent/keys"}, "LLM_API_KEYS_FILE", "a readable UTF-8 file"),
    ],
)
def test_bad_key_settings_stop_start_up_without_printing_keys(env: dict[str, str], variable: str, rule: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    [line] = caught.value.lines
    assert line.startswith(variable) and rule in line, line
    if variable == "LLM_API_KEYS":
        assert "short" not in line.split("expected")[0], "the key itself is masked"


def test_an_empty_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("# no keys yet\n")
    with pytest.raises(SettingsError, match="no key in the file"):
        load_settings({"LLM_API_KEYS_FILE": str(tmp_path / "keys")})


def test_exempt_paths_match_whole_segments() -> None:
    exempt = ("/health/live", "/swagger-ui")
    assert is_exempt("/health/live", exempt) and is_exempt("/swagger-ui/assets/x.js", exempt)
    assert not is_exempt("/health/liveness", exempt) and not is_exempt("/swagger-uix", exempt)
    assert not is_exempt("/api/generate", exempt)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_says_exactly_when_to_retry() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock)  # one token every 10 s
    decisions = [limiter.take("key-1") for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 6 + [False]
    assert [d.remaining for d in decisions[:6]] == [5, 4, 3, 2, 1, 0]
    refused = decisions[-1]
    assert refused.retry_after_seconds == 10 and refused.reset_seconds == 60
    headers = refused.headers()
    assert headers["Retry-After"] == "10" and headers["RateLimit-Limit"] == "6"
    assert headers["RateLimit-Remaining"] == "0" and headers["RateLimit-Policy"] == "6;w=60"
    assert "Retry-After" not in decisions[0].headers()
    assert limiter.take("key-2").allowed, "buckets are per caller"
    clock.now += 10
    assert limiter.take("key-1").allowed and not limiter.take("key-1").allowed


def test_idle_callers_are_forgotten_so_memory_stays_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock)
    for n in range(MAX_IDLE_BUCKETS):
        limiter.take(f"ip-{n}")
    clock.now += 60  # every bucket has refilled
    limiter.take("ip-new")
    assert len(limiter._buckets) <= 2
