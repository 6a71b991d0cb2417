"""Shared fixtures: the real app on the real embedded model, in-process and as a real Granian process; a fake
hub; and the rule of the fast lane (make test-fast): a test that needs the model or a server says so."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import llama_cpp
import pytest
from litestar.testing import AsyncTestClient

from llm_inference.app import create_app
from llm_inference.engines.llamacpp.engine import LlamaCppEngine  # importing it routes llama.cpp's log too
from llm_inference.model_spec import embedded_model_path
from llm_inference.settings import Settings, load_settings
from tests.fake_hub import FakeHub
from tests.polling import wait_until_async
from tests.server import ServerProcess

# Small limits keep the suite fast on two cores; everything else is the service's defaults.
TEST_ENV = {
    "LLM_CONTEXT_LENGTH": "1024",
    "LLM_DEFAULT_MAX_TOKENS": "24",
    "LLM_LOG_FORMAT": "pretty",
    "LLM_MAX_REQUEST_BYTES": "65536",
}


# The fast lane (make test-fast) runs every test not marked `model` (nor `slow`, model-free but long). A test that
# loads the real model or starts a server is marked, by `pytestmark = pytest.mark.model` for a whole module or
# `@pytest.mark.model`; one that is not marked may do neither: it fails at once, naming the mark it lacks, instead
# of quietly making the fast lane slow.
_MODEL_FREE = pytest.StashKey[pytest.MonkeyPatch]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("model") is not None:
        return

    def refuse(*_: object, **__: object) -> NoReturn:
        raise RuntimeError(f"{item.nodeid} loads the model or starts a server: mark it @pytest.mark.model")

    # Before the test's fixtures are set up, so that a fixture of a wider scope (the session's `client`) is
    # refused as well when this test is the first to ask for it.
    patch = item.stash[_MODEL_FREE] = pytest.MonkeyPatch()
    patch.setattr(LlamaCppEngine, "load", refuse)
    patch.setattr(llama_cpp, "llama_model_quantize", refuse)
    patch.setattr(ServerProcess, "start", refuse)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    if (patch := item.stash.get(_MODEL_FREE, None)) is not None:
        patch.undo()


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


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    """A local hub serving the embedded model (tests/fake_hub.py), its download held back until the test sets
    `release`; `fake_hub.spec` names the model, `fake_hub.environment(hf_home)` points the service at the hub."""
    with FakeHub() as hub:
        yield hub
