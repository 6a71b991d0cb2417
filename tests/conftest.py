"""Shared fixtures: the real app on the real embedded model, in-process and as a real Granian process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import llama_cpp
import pytest
from litestar.testing import AsyncTestClient

import llm_inference.engines.llamacpp.engine  # noqa: F401  # routes llama.cpp's own log (quantize prints a line per tensor)
from llm_inference.app import create_app
from llm_inference.model_spec import embedded_model_path
from llm_inference.settings import Settings, load_settings
from tests.polling import wait_until_async

# Small limits keep the suite fast on two cores; everything else is the service's defaults.
TEST_ENV = {
    "LLM_CONTEXT_LENGTH": "1024",
    "LLM_DEFAULT_MAX_TOKENS": "24",
    "LLM_LOG_FORMAT": "pretty",
    "LLM_MAX_REQUEST_BYTES": "65536",
}


def make_settings(**overrides: str) -> Settings:
    settings, _ = load_settings({**TEST_ENV, **overrides})
    return settings


async def wait_ready(client: AsyncTestClient, timeout: float = 120) -> None:  # type: ignore[type-arg]
    """Until /health/ready answers 200 (the model loads in the background); fails at once if the load failed."""

    async def ready() -> httpx.Response:
        response = await client.get("/health/ready")
        assert "failed" not in response.text, response.text
        return response

    await wait_until_async(
        ready,
        until=lambda response: response.status_code == 200,
        timeout=timeout,
        what="/health/ready to answer 200 (the model loaded)",
        interval=0.1,
    )


@pytest.fixture(scope="session")
async def client() -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    app = create_app(make_settings())
    async with AsyncTestClient(app, timeout=120) as test_client:
        await wait_ready(test_client)
        yield test_client


@pytest.fixture(scope="session")
def service(client: AsyncTestClient):  # type: ignore[no-untyped-def,type-arg]
    return client.app.state.service


@pytest.fixture(scope="session")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second real GGUF model beside the embedded one: the embedded model requantized to Q8_0 with llama.cpp's
    own quantize (a different file, size and quantization). Its id is its absolute path (it contains '/')."""
    path = tmp_path_factory.mktemp("models") / "smollm2-135m-instruct.Q8_0.gguf"
    quantize(embedded_model_path(), path, llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0)
    return str(path)


def quantize(source: Path, target: Path, file_type: int) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = file_type
    params.allow_requantize = True  # the source is itself quantized (Q4_1)
    assert llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params) == 0
