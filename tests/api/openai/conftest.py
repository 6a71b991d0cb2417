"""The /v1 surface through the real openai SDK, against a real Granian process serving the real model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.server import ServerProcess

MODEL = "smollm2-135m-instruct"
# A system message keeps the 135M model on topic (see tests/api/test_chat.py).
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
SERVER_ENV = {"LLM_DEFAULT_MAX_TOKENS": "24", "LLM_MAX_REQUEST_BYTES": "65536"}


def sdk(url: str, api_key: str = "no-key-needed") -> openai.OpenAI:
    # max_retries=0: a refusal (429, 5xx) must reach the test, not be retried away by the SDK.
    return openai.OpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0, timeout=120)


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("openai-server") / "server.log"
    with ServerProcess(SERVER_ENV, log_path=Path(log)) as process:
        process.wait_for("/health/ready", 200)
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with sdk(server.url) as sync_client:
        yield sync_client


@pytest.fixture
async def async_client(server: ServerProcess) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=server.url + "/v1", api_key="no-key-needed", max_retries=0, timeout=120
    ) as async_sdk:
        yield async_sdk


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    """A plain HTTP client, for what the SDK hides: raw bodies, headers and the /api surface."""
    with httpx.Client(base_url=server.url, timeout=120) as plain:
        yield plain
