"""Who gets in: API keys (Authorization: Bearer), exempt probes, per-key rate limits, a token budget and exact
CORS."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from llm_inference.app import create_app
from tests.api.sse import parse_events
from tests.conftest import make_settings, wait_ready

KEY_A, KEY_B, KEY_C = "a" * 20 + "-key-A", "b" * 20 + "-key-B", "c" * 20 + "-key-C"
WRONG = "w" * 20 + "-wrong"
ORIGIN = "https://app.example"
# No model can load from here: what these tests check never reaches an engine, so none is loaded.
NO_MODEL = {"LLM_ALLOWED_MODELS": "/nonexistent/model.gguf"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "api-keys"
    path.write_text(f"# mounted from a Secret\n{KEY_B}\n")
    return path


@pytest.fixture(scope="module")
async def keyed(key_file: Path) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    settings = make_settings(LLM_API_KEYS=KEY_A, LLM_API_KEYS_FILE=str(key_file), LLM_CORS_ALLOWED_ORIGINS=ORIGIN)
    async with AsyncTestClient(create_app(settings), timeout=120) as client:
        await wait_ready(client)
        yield client


@pytest.fixture(scope="module")
async def limited() -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    settings = make_settings(LLM_API_KEYS=f"{KEY_A},{KEY_B}", LLM_RATE_LIMIT_PER_MINUTE="3", **NO_MODEL)
    async with AsyncTestClient(create_app(settings), timeout=120) as client:
        yield client


def assert_unauthorized(response, token: str | None) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "unauthorized"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="llm-inference"')
    assert ('error="invalid_token"' in challenge) == (token is not None)
    if token:
        assert token not in response.text and token not in challenge


@pytest.mark.model
@pytest.mark.parametrize("path", ["/api/generate", "/api/chat/stream"])
async def test_no_key_or_a_wrong_key_gets_401_with_a_challenge(keyed, path: str) -> None:
    body = {"prompt": "Hi"} if "generate" in path else {"messages": [{"role": "user", "content": "Hi"}]}
    assert_unauthorized(await keyed.post(path, json=body), None)
    assert_unauthorized(await keyed.post(path, json=body, headers=bearer(WRONG)), WRONG)
    assert_unauthorized(await keyed.post(path, json=body, headers={"Authorization": f"Basic {KEY_A}"}), None)
    assert_unauthorized(await keyed.post(path, json=body, headers=bearer(KEY_A[:-1])), KEY_A[:-1])


@pytest.mark.model
async def test_auth_comes_before_looking_at_the_body(keyed) -> None:
    response = await keyed.post("/api/generate", content=b"not json", headers={"content-type": "text/plain"})
    assert_unauthorized(response, None)


@pytest.mark.model
async def test_keys_from_the_variable_and_the_file_both_work(keyed) -> None:
    answer = await keyed.post("/api/generate", json={"prompt": "Hi", "max_tokens": 2}, headers=bearer(KEY_A))
    assert answer.status_code == 200, answer.text
    assert (await keyed.get("/api/llms", headers=bearer(KEY_B))).status_code == 200
    assert_unauthorized(await keyed.get("/api/llms"), None)


@pytest.mark.model
async def test_probes_metrics_and_docs_stay_open(keyed) -> None:
    for path in (
        "/health/live",
        "/health/ready",
        "/metrics",
        "/openapi.json",
        "/swagger-ui",
        "/swagger-ui/assets/swagger-ui.css",
    ):
        assert (await keyed.get(path)).status_code == 200, path


@pytest.mark.model
async def test_the_document_declares_the_bearer_scheme(keyed) -> None:
    spec = (await keyed.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {"type": "http", "scheme": "bearer"}
    assert spec["paths"]["/api/generate"]["post"]["security"] == [{"apiKey": []}]
    assert "401" in spec["paths"]["/api/llms"]["get"]["responses"]
    assert "security" not in spec["paths"]["/health/ready"]["get"]


@pytest.mark.model
async def test_a_rotated_key_file_takes_effect_without_a_restart(keyed, key_file: Path) -> None:
    assert (await keyed.get("/api/llms", headers=bearer(KEY_B))).status_code == 200
    fresh = key_file.with_suffix(".new")
    fresh.write_text(f"{KEY_C}\n")
    os.replace(fresh, key_file)  # how a mounted Secret changes: a new file takes the old one's place
    assert_unauthorized(await keyed.get("/api/llms", headers=bearer(KEY_B)), KEY_B)
    assert (await keyed.get("/api/llms", headers=bearer(KEY_C))).status_code == 200
    assert (await keyed.get("/api/llms", headers=bearer(KEY_A))).status_code == 200


async def test_probes_can_be_protected_too() -> None:
    settings = make_settings(LLM_API_KEYS=KEY_A, LLM_AUTH_EXEMPT_PATHS="/health/live", **NO_MODEL)
    async with AsyncTestClient(create_app(settings), timeout=60) as client:
        assert (await client.get("/health/live")).status_code == 200
        for path in ("/health/ready", "/metrics", "/openapi.json"):
            assert_unauthorized(await client.get(path), None)
        assert (await client.get("/metrics", headers=bearer(KEY_A))).status_code == 200


async def test_rate_limit_is_per_key_with_retry_after_and_ratelimit_headers(limited) -> None:
    remaining = []
    for _ in range(3):
        response = await limited.get("/api/llms", headers=bearer(KEY_A))
        assert response.status_code == 200
        remaining.append(response.headers["RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    refused = await limited.get("/api/llms", headers=bearer(KEY_A))
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["type"] == "rate_limited"
    assert "LLM_RATE_LIMIT_PER_MINUTE=3" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    assert refused.headers["RateLimit-Limit"] == "3" and refused.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(refused.headers["RateLimit-Reset"]) <= 60
    # Another key has its own bucket; probes are never limited; an unauthenticated caller gets 401, not 429.
    assert (await limited.get("/api/llms", headers=bearer(KEY_B))).status_code == 200
    for _ in range(5):
        assert (await limited.get("/health/live")).status_code == 200
    assert_unauthorized(await limited.get("/api/llms"), None)


@pytest.mark.model
async def test_cors_allows_exactly_the_configured_origin(keyed) -> None:
    allowed = await keyed.get("/health/live", headers={"Origin": ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    for origin in (
        "https://evil.example",
        "https://app.example.evil.example",
        "http://app.example",
        "https://app.example:8443",
        "null",
    ):
        response = await keyed.get("/health/live", headers={"Origin": origin})
        assert response.status_code == 200
        leaked = [h for h in response.headers if h.lower().startswith("access-control-")]
        assert leaked == [], (origin, leaked)


@pytest.mark.model
async def test_cors_preflight_needs_no_key_and_refuses_other_origins(keyed) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ok = await keyed.options("/api/generate", headers={"Origin": ORIGIN, **preflight})
    assert ok.status_code == 204, ok.text
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in ok.headers["access-control-allow-headers"]
    assert "POST" in ok.headers["access-control-allow-methods"]
    refused = await keyed.options("/api/generate", headers={"Origin": "https://evil.example", **preflight})
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "cors_origin_not_allowed"
    assert not [h for h in refused.headers if h.lower().startswith("access-control-")], refused.headers


@pytest.mark.model
async def test_an_allowed_origin_can_read_the_retry_headers(keyed) -> None:
    refused = await keyed.get("/api/llms", headers={"Origin": ORIGIN})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN
    assert "retry-after" in refused.headers["access-control-expose-headers"]


@pytest.mark.model
async def test_a_token_budget_in_this_process_counts_whole_streamed_and_embedding_requests() -> None:
    # No keys: the budget is per client address (the test client's). No store: counted in this process.
    settings = make_settings(LLM_TOKENS_PER_MINUTE="40")
    async with AsyncTestClient(create_app(settings), timeout=120) as client:
        await wait_ready(client)
        # ignore_eos: every answer is exactly max_tokens long, so what the requests use does not depend on the model.
        exact = {"temperature": 0, "ignore_eos": True}
        streamed = await client.post("/api/generate/stream", json={"prompt": "Hi", "max_tokens": 8, **exact})
        assert streamed.status_code == 200 and streamed.headers["X-RateLimit-Remaining-Tokens"] == "40"
        used = parse_events(streamed.text)[-1]["usage"]["total_tokens"]
        embedded = await client.post("/api/embeddings", json={"input": "Hello there"})
        assert embedded.status_code == 200
        used += embedded.json()["usage"]["prompt_tokens"]
        whole = await client.post(
            "/api/generate", json={"prompt": "Count to ten: one, two,", "max_tokens": 24, **exact}
        )
        assert whole.status_code == 200
        assert int(whole.headers["X-RateLimit-Remaining-Tokens"]) == 40 - used, "each request counted as it ended"
        used += whole.json()["usage"]["total_tokens"]
        assert used > 40
        refused = await client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert "LLM_TOKENS_PER_MINUTE=40 tokens" in refused.json()["error"]["message"]
        assert int(refused.headers["Retry-After"]) >= 1 and refused.headers["X-RateLimit-Remaining-Tokens"] == "0"
        assert "RateLimit-Limit" not in refused.headers, "no request limit is set"
