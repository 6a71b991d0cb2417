"""Two real service processes (Granian, the embedded model) sharing one real Valkey/Redis server: one request
limit and one token quota per key across both, sessions continued on either, and the failure policy while the
store is gone (process A: the defaults, limits fail open; process B: fail closed, readiness needs the store)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.polling import wait_until
from tests.server import ServerProcess
from tests.state_server import StateServer

pytestmark = pytest.mark.model

KEY_LIMITED = "r" * 20 + "-five-requests"  # 5 requests a minute
KEY_QUOTA = "t" * 20 + "-fifty-tokens"  # 50 tokens a minute
KEY_FREE = "f" * 20 + "-no-limits"
# About 60 prompt tokens: one request spends the whole budget of KEY_QUOTA.
LONG_PROMPT = "Here is a sentence that the model reads before it answers. " * 6


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateServer]:
    with StateServer(tmp_path_factory.mktemp("store")) as server:
        yield server


@pytest.fixture(scope="module")
def replicas(store: StateServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ...]]:
    directory = tmp_path_factory.mktemp("replicas")
    keys = directory / "api-keys"
    keys.write_text(
        f"{KEY_LIMITED} rate_limit_per_minute=5\n{KEY_QUOTA} tokens_per_minute=50\n{KEY_FREE}\n",
    )
    shared = {"LLM_STATE_URL": store.url, "LLM_API_KEYS_FILE": str(keys), "LLM_DEFAULT_MAX_TOKENS": "8"}
    processes = (
        ServerProcess(shared, log_path=directory / "a.log"),
        ServerProcess(
            {**shared, "LLM_RATE_LIMIT_ON_STATE_FAILURE": "closed", "LLM_STATE_REQUIRED_FOR_READINESS": "true"},
            log_path=directory / "b.log",
        ),
    )
    for process in processes:  # both load the model at once
        process.start()
    try:
        for process in processes:
            process.wait_for("/health/ready", 200, timeout=300)
        yield processes
    finally:
        for process in processes:
            process.stop()


async def test_one_request_limit_holds_exactly_across_both_processes(replicas: tuple[ServerProcess, ...]) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(client.get(replicas[n % 2].url + "/api/llms", headers=bearer(KEY_LIMITED)) for n in range(20))
        )
        refused_on_v1 = await client.get(replicas[1].url + "/v1/models", headers=bearer(KEY_LIMITED))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 5 + [429] * 15, statuses
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.json()["error"]["type"] == "rate_limited"
        assert "this key's rate_limit_per_minute=5 requests" in refused.json()["error"]["message"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 12 and refused.headers["RateLimit-Limit"] == "5"
    assert refused_on_v1.status_code == 429 and refused_on_v1.json()["error"]["code"] == "rate_limit_exceeded"
    allowed = sorted(r.headers["RateLimit-Remaining"] for r in responses if r.status_code == 200)
    assert allowed == ["0", "1", "2", "3", "4"], "each request counted once, in one bucket"


def test_a_token_quota_holds_across_both_processes(replicas: tuple[ServerProcess, ...]) -> None:
    first, second = replicas
    body = {"prompt": LONG_PROMPT, "max_tokens": 4}
    spent = httpx.post(first.url + "/api/generate", json=body, headers=bearer(KEY_QUOTA), timeout=120)
    assert spent.status_code == 200, spent.text
    assert spent.headers["X-RateLimit-Limit-Tokens"] == "50"
    assert spent.headers["X-RateLimit-Remaining-Tokens"] == "50", "the budget before this request"
    used = spent.json()["usage"]["total_tokens"]
    assert used > 50
    refused = httpx.post(second.url + "/api/generate", json=body, headers=bearer(KEY_QUOTA), timeout=120)
    assert refused.status_code == 429, refused.text
    assert "this key's tokens_per_minute=50 tokens (prompt + completion)" in refused.json()["error"]["message"]
    # The debt (used - 50) is paid back at 50 tokens a minute before one token is there again.
    assert 1 <= int(refused.headers["Retry-After"]) <= (used - 50 + 1) * 60 // 50 + 1
    assert refused.headers["X-RateLimit-Remaining-Tokens"] == "0"
    # Other keys are untouched.
    free = httpx.post(second.url + "/api/generate", json=body, headers=bearer(KEY_FREE), timeout=120)
    assert free.status_code == 200 and "X-RateLimit-Limit-Tokens" not in free.headers


def test_a_session_started_on_one_process_continues_on_the_other(replicas: tuple[ServerProcess, ...]) -> None:
    first, second = replicas
    auth = bearer(KEY_FREE)
    created = httpx.post(first.url + "/api/sessions", json={"system": "Be brief."}, headers=auth, timeout=60)
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    for turn, (process, question) in enumerate(((second, "Hi!"), (first, "And again?"))):
        body = {"session_id": session_id, "max_tokens": 6, "messages": [{"role": "user", "content": question}]}
        answer = httpx.post(process.url + "/api/chat", json=body, headers=auth, timeout=120)
        assert answer.status_code == 200, answer.text
        seen = httpx.get(f"{replicas[1 - turn % 2].url}/api/sessions/{session_id}", headers=auth, timeout=60).json()
        assert [m["role"] for m in seen["messages"]] == ["system", *["user", "assistant"] * (turn + 1)]
        assert seen["messages"][-1]["content"] == answer.json()["message"]["content"] and seen["busy"] is False
    assert httpx.delete(f"{second.url}/api/sessions/{session_id}", headers=auth).status_code == 204
    assert httpx.get(f"{first.url}/api/sessions/{session_id}", headers=auth).status_code == 404


def metric(process: ServerProcess, line: str) -> float | None:
    """The value of one sample of /metrics, by its name and labels as exposed; None while absent."""
    text = httpx.get(process.url + "/metrics", timeout=30).text
    found = re.search(rf"^{re.escape(line)} (\S+)$", text, flags=re.M)
    return float(found.group(1)) if found else None


def test_the_store_gone_then_back(replicas: tuple[ServerProcess, ...], store: StateServer) -> None:
    open_, closed = replicas
    auth = bearer(KEY_LIMITED)
    store.stop()
    with httpx.Client(timeout=30) as client:  # a request that hung would fail here
        # Rate limits: open lets the caller through uncounted, closed refuses with 503 and Retry-After.
        assert client.get(open_.url + "/api/llms", headers=auth).status_code == 200
        refused = client.get(closed.url + "/api/llms", headers=auth)
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "state_unavailable"
        assert int(refused.headers["Retry-After"]) >= 1
        # Sessions: 503 with Retry-After on both; a request without a session is served as ever.
        for process in replicas:
            unavailable = client.post(process.url + "/api/sessions", headers=bearer(KEY_FREE))
            assert unavailable.status_code == 503, unavailable.text
            assert unavailable.json()["error"]["type"] == "state_unavailable"
            assert int(unavailable.headers["Retry-After"]) >= 1
        served = client.post(open_.url + "/api/generate", json={"prompt": "Hi", "max_tokens": 2}, headers=auth)
        assert served.status_code == 200
        # Readiness: unaffected unless the operator asks (LLM_STATE_REQUIRED_FOR_READINESS, process B).
        assert client.get(open_.url + "/health/ready").status_code == 200
        not_ready = client.get(closed.url + "/health/ready")
        assert not_ready.status_code == 503 and "LLM_STATE_REQUIRED_FOR_READINESS" in not_ready.json()["reason"]
    wait_until(lambda: metric(open_, "llm_state_up") == 0, timeout=30, what="llm_state_up 0")
    fallbacks = 'llm_state_fallbacks_total{feature="rate_limit",outcome="allowed"}'
    assert wait_until(lambda: metric(open_, fallbacks), timeout=30, what=fallbacks)
    refusals = 'llm_state_fallbacks_total{feature="rate_limit",outcome="refused"}'
    assert wait_until(lambda: metric(closed, refusals), timeout=30, what=refusals)

    store.start()  # empty: it kept nothing
    closed.wait_for("/health/ready", 200, timeout=60)

    def counted() -> bool:
        return "RateLimit-Remaining" in httpx.get(open_.url + "/api/llms", headers=auth, timeout=30).headers

    wait_until(counted, timeout=60, what="requests to be counted in the store again", interval=0.2)
    wait_until(lambda: metric(open_, "llm_state_up") == 1, timeout=30, what="llm_state_up 1 once a call succeeded")
    # The store forgot the bucket: of the minute's 5 requests, one went to the poll above.
    statuses = [httpx.get(replicas[n % 2].url + "/api/llms", headers=auth).status_code for n in range(6)]
    assert statuses == [200] * 4 + [429] * 2
    created = httpx.post(closed.url + "/api/sessions", headers=bearer(KEY_FREE))
    assert created.status_code == 201, created.text


def test_the_logs_name_the_store_without_its_secrets(replicas: tuple[ServerProcess, ...], store: StateServer) -> None:
    for process in replicas:
        logs = process.logs()
        assert "shared store: reachable" in logs and store.url in logs
        assert "shared store unreachable; retrying with backoff" in logs
        assert not any(key in logs for key in (KEY_LIMITED, KEY_QUOTA, KEY_FREE))


def test_the_api_document_says_what_the_store_may_answer(replicas: tuple[ServerProcess, ...]) -> None:
    open_, closed = (httpx.get(p.url + "/openapi.json", timeout=30).json()["paths"] for p in replicas)
    for paths in (open_, closed):
        assert "503" in paths["/api/sessions"]["post"]["responses"]
        assert "token budget" in paths["/api/llms"]["get"]["responses"]["429"]["description"]
    assert "503" not in open_["/api/llms"]["get"]["responses"], "fail open: no 503 for a store that is gone"
    assert "503" in closed["/api/llms"]["get"]["responses"]
