"""A client that leaves a /v1 stream frees its engine request and admission slot; a full admission answers the
SDK with a RateLimitError. One request fits this server (1 running, 0 queued), so each freed slot is visible."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from tests.api.openai.conftest import MODEL, QUESTION, SERVER_ENV, sdk
from tests.polling import wait_until
from tests.server import ServerProcess
from tests.test_overload import engine_load

pytestmark = pytest.mark.model

# About 1,500 tokens: tens of seconds of decoding on two cores, far longer than freeing should take.
LONG = {"max_tokens": 1500, "temperature": 0, "extra_body": {"ignore_eos": True}}
FREED_WITHIN_SECONDS = 5


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        **SERVER_ENV,
        "LLM_MAX_CONCURRENT_REQUESTS": "1",
        "LLM_MAX_QUEUED_REQUESTS": "0",
        "LLM_CONTEXT_LENGTH": "2048",
        "LLM_SSE_PING_SECONDS": "0.5",
    }
    with ServerProcess(env, log_path=tmp_path_factory.mktemp("single") / "server.log") as process:
        process.wait_for("/health/ready", 200)
        yield process


def wait_freed(client: openai.OpenAI, url: str) -> float:
    """Seconds until the engine is idle and the one admission slot takes a new request."""

    def state() -> str:
        load = engine_load(url)
        if load != (0, 0):
            return f"engine load (running, waiting) {load}"
        try:
            client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=1)
        except openai.RateLimitError:
            return "engine idle, but the admission slot still taken (429)"
        return "freed"

    started = time.monotonic()
    wait_until(
        state,
        until=lambda seen: seen == "freed",
        timeout=FREED_WITHIN_SECONDS,
        what="the engine idle and the admission slot free",
    )
    return time.monotonic() - started


def test_a_full_admission_is_a_rate_limit_error_and_a_left_stream_frees_everything(single: ServerProcess) -> None:
    with sdk(single.url) as client:
        stream = client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True, **LONG)
        pieces = [chunk.choices[0].delta.content for chunk, _ in zip(stream, range(4), strict=False)]
        assert len(pieces) == 4 and engine_load(single.url)[0] == 1

        with pytest.raises(openai.RateLimitError) as refused:
            client.completions.create(model=MODEL, prompt="Hi", max_tokens=1)
        assert refused.value.code == "overloaded" and refused.value.type == "rate_limit_error"
        assert int(refused.value.response.headers["retry-after"]) >= 1

        stream.close()  # the client leaves mid-stream: its connection closes
        assert wait_freed(client, single.url) < FREED_WITHIN_SECONDS


async def test_an_async_client_that_leaves_frees_everything_too(single: ServerProcess) -> None:
    async with openai.AsyncOpenAI(base_url=single.url + "/v1", api_key="none", max_retries=0) as client:
        stream = await client.completions.create(model=MODEL, prompt="Count: 1, 2, 3,", stream=True, **LONG)
        async for _ in stream:
            break
        await stream.close()
    with sdk(single.url) as sync_client:
        wait_freed(sync_client, single.url)
