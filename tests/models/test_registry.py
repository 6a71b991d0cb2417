"""Several models in one service, on real llama.cpp: lazy loading, one load for concurrent first requests, LRU
eviction that never takes a busy model, a corrupt model that fails alone and is retried, readiness that waits
for the preloaded models only, and the operators' load / unload routes."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from llm_inference.app import create_app
from llm_inference.errors import NotReady
from llm_inference.model_spec import EMBEDDED_MODEL, embedded_model_path
from llm_inference.models.registry import ModelRegistry, ModelState
from llm_inference.service import GenerationStream, SamplingInput, open_stream, prepare
from tests.api.test_errors import assert_error
from tests.conftest import make_settings, wait_ready
from tests.polling import wait_until_async
from tests.telemetry.scrape import Scrape

KEY = "registry-test-key-0123456789"


@asynccontextmanager
async def serving(ready: bool = True, **env: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    app = create_app(make_settings(LLM_MAX_CONCURRENT_REQUESTS="4", **env))
    async with AsyncTestClient(app, timeout=120) as client:
        if ready:
            await wait_ready(client)
        yield client


async def cards(client: AsyncTestClient, **headers: str) -> dict[str, dict[str, Any]]:  # type: ignore[type-arg]
    response = await client.get("/api/llms", headers=headers)
    assert response.status_code == 200, response.text
    return {card["id"]: card for card in response.json()["models"]}


async def generate(client: AsyncTestClient, model: str) -> Any:  # type: ignore[type-arg]
    return await client.post("/api/generate", json={"prompt": "Say hi", "model": model, "max_tokens": 3})


async def scrape(client: AsyncTestClient) -> Scrape:  # type: ignore[type-arg]
    return Scrape((await client.get("/metrics")).text)


@pytest.mark.model
async def test_a_lazy_model_loads_on_its_first_request(second_model: str) -> None:
    async with serving(LLM_ALLOWED_MODELS=f"{EMBEDDED_MODEL},{second_model}") as client:
        before = (await cards(client))[second_model]
        assert before["state"] == "not_loaded" and not before["preload"] and before["loads"] == 0
        assert before["context_length"] is None and before["last_used"] is None and before["backend"] is None
        assert (await scrape(client)).value("llm_model_state", model=second_model, state="not_loaded") == 1

        response = await generate(client, second_model)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == second_model
        after = (await cards(client))[second_model]
        assert after["state"] == "loaded" and after["backend"] == "llamacpp" and after["format"] == "gguf"
        assert after["context_length"] == 1024 and after["last_used"] and after["in_flight"] == 0
        assert after["loads"] == 1
        scraped = await scrape(client)
        assert scraped.value("llm_model_loads_total", model=second_model) == 1
        assert scraped.value("llm_model_state", model=second_model, state="loaded") == 1
        assert scraped.value("llm_model_info", model=second_model, quantization="Q8_0") == 1
        assert scraped.value("llm_model_info", model=EMBEDDED_MODEL, quantization="Q4_1") == 1


@pytest.mark.model
async def test_waiting_for_a_load_is_bounded_by_the_request_timeout(second_model: str) -> None:
    env = {"LLM_ALLOWED_MODELS": f"{EMBEDDED_MODEL},{second_model}", "LLM_REQUEST_TIMEOUT_SECONDS": "0.01"}
    registry = ModelRegistry(make_settings(**env))
    try:
        with pytest.raises(NotReady, match=r"still loading after LLM_REQUEST_TIMEOUT_SECONDS=0\.01"):
            await registry.acquire(second_model)
        entry = registry.entry_for(second_model)
        assert entry.in_flight == 0
        await wait_until_async(  # the load goes on without the request that gave up
            lambda: entry.state,
            until=lambda state: state is ModelState.LOADED,
            timeout=120,
            what=f"{second_model} to finish loading",
        )
        with await registry.acquire(second_model) as lease:
            assert lease.model == second_model and entry.in_flight == 1
        assert entry.in_flight == 0 and entry.loads == 1 and entry.last_used
    finally:
        await registry.aclose()


@pytest.mark.model
async def test_the_least_recently_used_idle_model_makes_room(second_model: str, tmp_path: Path) -> None:
    third = tmp_path / "copy-of-the-embedded-model.gguf"
    os.symlink(embedded_model_path(), third)
    allowed = f"{EMBEDDED_MODEL},{second_model},{third}"
    async with serving(LLM_ALLOWED_MODELS=allowed, LLM_MAX_LOADED_MODELS="2") as client:

        async def loaded() -> set[str]:
            return {model for model, card in (await cards(client)).items() if card["state"] == "loaded"}

        assert await loaded() == {EMBEDDED_MODEL}
        assert (await generate(client, second_model)).status_code == 200
        assert await loaded() == {EMBEDDED_MODEL, second_model}
        assert (await generate(client, EMBEDDED_MODEL)).status_code == 200  # now the second is the older one
        assert (await generate(client, str(third))).status_code == 200
        assert await loaded() == {EMBEDDED_MODEL, str(third)}
        assert (await generate(client, second_model)).status_code == 200  # the default is now the older one
        assert await loaded() == {str(third), second_model}
        # The preloaded default was unloaded to make room: the pod stays ready, and it loads again on demand.
        assert (await client.get("/health/ready")).status_code == 200
        assert (await generate(client, EMBEDDED_MODEL)).status_code == 200
        models = await cards(client)
        assert (models[EMBEDDED_MODEL]["loads"], models[second_model]["loads"], models[str(third)]["loads"]) == (
            2,
            2,
            1,
        )
        scraped = await scrape(client)
        assert scraped.value("llm_model_state", state="loaded") == 2
        assert scraped.value("llm_model_state", model=str(third), state="not_loaded") == 1


@pytest.mark.model
async def test_a_busy_model_is_never_unloaded(second_model: str) -> None:
    allowed = f"{EMBEDDED_MODEL},{second_model}"
    async with serving(LLM_ALLOWED_MODELS=allowed, LLM_MAX_LOADED_MODELS="1") as client:
        service = client.app.state.service

        async def open_long_stream() -> GenerationStream:
            asked = SamplingInput(max_tokens=500, ignore_eos=True)
            return await open_stream(service, await prepare(service, asked, prompt="Tell a long story"))

        # The app runs on the test client's own event loop (its portal): the stream is opened and closed there.
        stream = client.blocking_portal.call(open_long_stream)
        try:
            refused = await generate(client, second_model)
            error = assert_error(refused, 503, "not_ready")
            assert "LLM_MAX_LOADED_MODELS=1" in error["message"] and "1 in flight" in error["message"]
            assert refused.headers["Retry-After"]
            busy = await client.post(f"/api/llms/{EMBEDDED_MODEL}/unload")
            assert "1 request(s) in flight" in assert_error(busy, 409, "model_busy", "model")["message"]
            models = await cards(client)
            assert models[EMBEDDED_MODEL]["state"] == "loaded" and models[EMBEDDED_MODEL]["in_flight"] == 1
            assert models[second_model]["state"] == "not_loaded"
        finally:
            client.blocking_portal.call(stream.aclose)  # the stream owned the lease: closing it gives the model back
        assert (await generate(client, second_model)).status_code == 200
        models = await cards(client)
        assert models[EMBEDDED_MODEL]["state"] == "not_loaded" and models[EMBEDDED_MODEL]["in_flight"] == 0


@pytest.mark.model
async def test_a_corrupt_model_fails_alone_and_is_retried_after_the_delay(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(os.urandom(1 << 20))
    allowed = f"{EMBEDDED_MODEL},{broken}"
    async with serving(LLM_ALLOWED_MODELS=allowed, LLM_MODEL_RETRY_SECONDS="2") as client:
        failed = await generate(client, str(broken))
        error = assert_error(failed, 503, "not_ready")
        assert "failed to load" in error["message"] and "LLM_MODEL_RETRY_SECONDS=2" in error["message"]
        assert failed.headers["Retry-After"] in ("1", "2")
        # Mended on disk at once: not tried again before the delay (the same failure, from memory)...
        shutil.copyfile(embedded_model_path(), broken)
        still = await generate(client, str(broken))
        assert "failed to load" in assert_error(still, 503, "not_ready")["message"]
        card = (await cards(client))[str(broken)]
        assert card["state"] == "failed" and card["error"] and card["loads"] == 0
        # ...while the other model and readiness are untouched.
        assert (await generate(client, EMBEDDED_MODEL)).status_code == 200
        assert (await client.get("/health/ready")).status_code == 200
        assert (await scrape(client)).value("llm_model_state", model=str(broken), state="failed") == 1
        # ...and loaded by the first request after the delay.
        await asyncio.sleep(int(still.headers["Retry-After"]) + 0.1)
        mended = await generate(client, str(broken))
        assert mended.status_code == 200, mended.text
        assert (await cards(client))[str(broken)]["state"] == "loaded"


@pytest.mark.model
async def test_readiness_waits_for_the_preloaded_models_only(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(os.urandom(1 << 20))
    env = {"LLM_ALLOWED_MODELS": f"{EMBEDDED_MODEL},{broken}", "LLM_PRELOAD_MODELS": str(broken)}
    async with serving(ready=False, **env) as client:
        ready = await wait_until_async(
            lambda: client.get("/health/ready"),
            until=lambda ready: "failed" in ready.text,
            timeout=60,
            what="readiness to report the preloaded model's failed load",
        )
        assert ready.status_code == 503 and ready.json()["reason"].startswith(f"failed ({broken}): ")
        # The default model is not preloaded here: it loads on its first request, and readiness ignores it.
        assert (await cards(client))[EMBEDDED_MODEL]["state"] == "not_loaded"
        assert (await generate(client, EMBEDDED_MODEL)).status_code == 200
        assert (await client.get("/health/ready")).status_code == 503


@pytest.mark.model
async def test_operators_load_and_unload_behind_the_api_keys(second_model: str) -> None:
    env = {"LLM_ALLOWED_MODELS": f"{EMBEDDED_MODEL},{second_model}", "LLM_API_KEYS": KEY}
    auth = {"Authorization": f"Bearer {KEY}"}
    async with serving(ready=False, **env) as client:
        await wait_ready(client)
        route = f"/api/llms/{second_model}"  # the id is an absolute path: the URL has '//' after llms
        assert (await client.post(f"{route}/load")).status_code == 401
        loaded = await client.post(f"{route}/load", headers=auth)
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["id"] == second_model and loaded.json()["state"] == "loaded"
        assert loaded.json()["loads"] == 1
        again = await client.post(f"{route}/load", headers=auth)
        assert again.json()["loads"] == 1  # already loaded: nothing to do
        unloaded = await client.post(f"{route}/unload", headers=auth)
        assert unloaded.status_code == 200 and unloaded.json()["state"] == "not_loaded"
        assert (await cards(client, **auth))[second_model]["state"] == "not_loaded"
        assert (await client.post(f"{route}/unload", headers=auth)).json()["state"] == "not_loaded"

        unknown = await client.post("/api/llms/org/absent:model.gguf/load", headers=auth)
        assert "org/absent:model.gguf" in assert_error(unknown, 404, "model_not_found", "model")["message"]
        assert_error(await client.post(f"{route}/explode", headers=auth), 404, "not_found")
        assert_error(await client.post("/api/llms/load", headers=auth), 404, "not_found")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"LLM_PRELOAD_MODELS": "org/other"}, "LLM_PRELOAD_MODELS"),
        (
            {"LLM_ALLOWED_MODELS": "org/a,org/b", "LLM_PRELOAD_MODELS": "org/a,org/b", "LLM_MAX_LOADED_MODELS": "1"},
            "LLM_MAX_LOADED_MODELS",
        ),
        ({"LLM_MODEL_RETRY_SECONDS": "0"}, "LLM_MODEL_RETRY_SECONDS"),
    ],
)
def test_bad_multi_model_settings_stop_start_up(env: dict[str, str], variable: str) -> None:
    from llm_inference.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as raised:
        load_settings(env)
    assert raised.value.lines[0].startswith(f"{variable}=")
