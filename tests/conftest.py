"""Shared fixtures: the real app on the real embedded model, in-process and as a real Granian process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from llm_inference.app import create_app
from llm_inference.settings import Settings, load_settings

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
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        response = await client.get("/health/ready")
        if response.status_code == 200:
            return
        assert "failed" not in response.text, response.text
        await asyncio.sleep(0.1)
    raise TimeoutError("the model did not become ready")


@pytest.fixture(scope="session")
async def client() -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    app = create_app(make_settings())
    async with AsyncTestClient(app, timeout=120) as test_client:
        await wait_ready(test_client)
        yield test_client


@pytest.fixture(scope="session")
def service(client: AsyncTestClient):  # type: ignore[no-untyped-def,type-arg]
    return client.app.state.service
