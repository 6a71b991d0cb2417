"""The parts of access control that need no server: key sources and comparison, each key's own limits, the
request and token buckets kept in this process."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import pytest

from llm_inference import auth_keys
from llm_inference.api.http.auth import is_exempt
from llm_inference.auth_keys import ApiKeys, KeyLimits, key_id, parse_key_entries, parse_keys
from llm_inference.settings import SettingsError, load_settings
from llm_inference.state.limits import MAX_IDLE_BUCKETS, CallerLimits, LocalLimits

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


async def test_token_bucket_allows_a_burst_then_says_exactly_when_to_retry() -> None:
    clock = Clock()
    limits, six = LocalLimits(clock), CallerLimits(requests_per_minute=6)  # one request every 10 s
    decisions = [await limits.admit("key-1", six) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 6 + [False]
    assert [d.headers()["RateLimit-Remaining"] for d in decisions[:6]] == ["5", "4", "3", "2", "1", "0"]
    refused = decisions[-1]
    assert refused.retry_after_seconds == 10 and refused.refused_by == "requests"
    headers = refused.headers()
    assert headers["Retry-After"] == "10" and headers["RateLimit-Limit"] == "6" and headers["RateLimit-Reset"] == "60"
    assert headers["RateLimit-Remaining"] == "0" and headers["RateLimit-Policy"] == "6;w=60"
    assert "LLM_RATE_LIMIT_PER_MINUTE=6 requests" in refused.message()
    assert "Retry-After" not in decisions[0].headers()
    assert (await limits.admit("key-2", six)).allowed, "buckets are per caller"
    clock.now += 10
    assert (await limits.admit("key-1", six)).allowed and not (await limits.admit("key-1", six)).allowed


async def test_a_token_budget_is_spent_by_what_requests_used_and_paid_back_over_the_minute() -> None:
    clock = Clock()
    limits, budget = LocalLimits(clock), CallerLimits(tokens_per_minute=60)  # one token a second
    first = await limits.admit("key-1", budget)
    assert first.allowed and first.headers()["X-RateLimit-Remaining-Tokens"] == "60"
    assert "RateLimit-Limit" not in first.headers(), "no request limit, no request headers"
    await limits.charge("key-1", budget, 50)
    assert (await limits.admit("key-1", budget)).allowed, "10 tokens left: the next request may start"
    await limits.charge("key-1", budget, 30)  # 20 more than the budget held: a debt
    refused = await limits.admit("key-1", budget)
    assert not refused.allowed and refused.refused_by == "tokens"
    assert refused.retry_after_seconds == 21  # from -20 back to 1 token, at one a second
    assert "LLM_TOKENS_PER_MINUTE=60 tokens" in refused.message()
    assert refused.headers()["X-RateLimit-Remaining-Tokens"] == "0" and refused.headers()["Retry-After"] == "21"
    clock.now += 20
    assert not (await limits.admit("key-1", budget)).allowed
    clock.now += 1
    assert (await limits.admit("key-1", budget)).allowed


async def test_a_caller_over_both_limits_waits_for_the_later_one() -> None:
    clock = Clock()
    limits, both = LocalLimits(clock), CallerLimits(requests_per_minute=1, tokens_per_minute=60)
    assert (await limits.admit("key-1", both)).allowed
    await limits.charge("key-1", both, 150)
    refused = await limits.admit("key-1", both)
    # The request bucket allows one in 60 s, the budget (-90) in 91 s.
    assert refused.refused_by == "tokens" and refused.retry_after_seconds == 91
    clock.now += 60
    refused = await limits.admit("key-1", both)
    assert refused.refused_by == "tokens" and refused.retry_after_seconds == 31


async def test_idle_callers_are_forgotten_so_memory_stays_bounded() -> None:
    clock = Clock()
    limits, sixty = LocalLimits(clock), CallerLimits(requests_per_minute=60)
    for n in range(MAX_IDLE_BUCKETS):
        await limits.admit(f"ip-{n}", sixty)
    clock.now += 60  # every bucket has refilled
    await limits.admit("ip-new", sixty)
    assert len(limits) <= 2


def test_keys_may_carry_their_own_limits(tmp_path: Path) -> None:
    text = (
        f"{KEY_A} rate_limit_per_minute=5 tokens_per_minute=1000, {KEY_B}\n{KEY_C} tokens_per_minute=0  # unlimited\n"
    )
    entries = parse_key_entries(text)
    assert [e.key for e in entries] == [KEY_A, KEY_B, KEY_C] and not any(e.problem for e in entries)
    path = tmp_path / "keys"
    path.write_text(text)
    keys = ApiKeys((), str(path))
    assert keys.limits(key_id(KEY_A)) == KeyLimits(rate_limit_per_minute=5, tokens_per_minute=1000)
    assert keys.limits(key_id(KEY_B)) == KeyLimits() and keys.limits(key_id(KEY_C)) == KeyLimits(tokens_per_minute=0)
    assert keys.has_own_limits


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("rpm=5", "'rpm', not rate_limit_per_minute=N or tokens_per_minute=N"),
        ("tokens_per_minute=-1", "tokens_per_minute must be a whole number >= 0"),
        ("tokens_per_minute=lots", "not 'lots'"),
    ],
)
def test_a_key_with_limits_it_cannot_have_stops_start_up_without_printing_it(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{KEY_A} {line}\n{KEY_B}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings({"LLM_API_KEYS_FILE": str(path)})
    [message] = caught.value.lines
    assert message.startswith("LLM_API_KEYS_FILE=") and problem in message and KEY_A not in message
    # Read again while serving (a rotated Secret), the key is left out and the others kept.
    path.write_text(f"{KEY_B}\n")
    keys = ApiKeys((), str(path))
    fresh = tmp_path / "keys.new"
    fresh.write_text(f"{KEY_A} {line}\n{KEY_B}\n")
    os.replace(fresh, path)
    assert keys.identify(KEY_A) is None and keys.identify(KEY_B) == key_id(KEY_B)
