"""/metrics after real generations on the real model: the GenAI histograms, token counters, finish reasons,
running/waiting gauges, model and build info. Concurrency is observed on a real Granian process, where
requests really run side by side."""

from __future__ import annotations

import asyncio
from importlib.metadata import version

import httpx
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import CONTENT_TYPE_LATEST

from llm_inference.app import create_app
from tests.api.sse import parse_events
from tests.conftest import make_settings, wait_ready
from tests.polling import wait_until
from tests.telemetry.conftest import Observed
from tests.telemetry.scrape import Scrape

pytestmark = pytest.mark.model

MODEL = {"model": "smollm2-135m-instruct", "backend": "llamacpp"}


async def scrape(client: AsyncTestClient) -> Scrape:  # type: ignore[type-arg]
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST  # charset once, exposition version given
    return Scrape(response.text)


async def test_generations_count_their_tokens_and_times(client) -> None:
    before = await scrape(client)
    generated = (
        await client.post("/api/generate", json={"prompt": "Once upon a time", "max_tokens": 6, "temperature": 0})
    ).json()
    streamed = await client.post(
        "/api/chat/stream",
        json={"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 5, "temperature": 0},
    )
    done = parse_events(streamed.text)[-1]
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **MODEL, **labels) - before.value(name, **MODEL, **labels)

    usages = [generated["usage"], done["usage"]]
    assert delta("llm_prompt_tokens_total") == sum(u["prompt_tokens"] for u in usages)
    assert delta("llm_generation_tokens_total") == sum(u["completion_tokens"] for u in usages)
    assert delta("llm_request_generation_tokens_sum") == sum(u["completion_tokens"] for u in usages)
    assert delta("llm_request_prompt_tokens_count") == 2
    for operation in ("text_completion", "chat"):
        assert delta("gen_ai_server_time_to_first_token_seconds_count", operation=operation) == 1
        assert delta("gen_ai_server_request_duration_seconds_count", operation=operation, error_type="") == 1
    multi_token = sum(1 for u in usages if u["completion_tokens"] > 1)
    assert delta("gen_ai_server_time_per_output_token_seconds_count") == multi_token
    assert delta("llm_request_queue_time_seconds_count") == 2
    finishes = [generated["finish_reason"], done["finish_reason"]]
    for reason in set(finishes):
        assert delta("llm_requests_finished_total", finish_reason=reason) == finishes.count(reason)
    # The histogram saw the same first-token time the response reported (both clocks start together).
    ttft = delta("gen_ai_server_time_to_first_token_seconds_sum", operation="text_completion")
    assert abs(ttft - generated["timings"]["time_to_first_token_seconds"]) < 0.01
    assert ttft <= delta("gen_ai_server_request_duration_seconds_sum", operation="text_completion")


async def test_histograms_use_the_genai_conventions_bucket_boundaries(client) -> None:
    await client.post("/api/generate", json={"prompt": "Hi", "max_tokens": 3})
    scraped = await scrape(client)
    # The boundaries the GenAI semantic conventions advise for each metric (plus Prometheus' +Inf).
    assert scraped.bucket_bounds("gen_ai_server_time_to_first_token_seconds") == [
        "0.001",
        "0.005",
        "0.01",
        "0.02",
        "0.04",
        "0.06",
        "0.08",
        "0.1",
        "0.25",
        "0.5",
        "0.75",
        "1.0",
        "2.5",
        "5.0",
        "7.5",
        "10.0",
        "+Inf",
    ]
    assert scraped.bucket_bounds("gen_ai_server_time_per_output_token_seconds") == [
        "0.01",
        "0.025",
        "0.05",
        "0.075",
        "0.1",
        "0.15",
        "0.2",
        "0.3",
        "0.4",
        "0.5",
        "0.75",
        "1.0",
        "2.5",
        "+Inf",
    ]
    assert scraped.bucket_bounds("gen_ai_server_request_duration_seconds") == [
        "0.01",
        "0.02",
        "0.04",
        "0.08",
        "0.16",
        "0.32",
        "0.64",
        "1.28",
        "2.56",
        "5.12",
        "10.24",
        "20.48",
        "40.96",
        "81.92",
        "+Inf",
    ]


async def test_model_build_and_process_info(client) -> None:
    scraped = await scrape(client)
    [info] = scraped.matching("llm_model_info", **MODEL)
    assert info.value == 1
    assert info.labels == {**MODEL, "format": "gguf", "context_length": "1024", "quantization": "Q4_1"}
    assert scraped.value("llm_model_state", model=MODEL["model"], state="loaded") == 1
    assert scraped.value("llm_model_state", model=MODEL["model"], state="loading") == 0
    assert scraped.value("llm_model_load_duration_seconds", **MODEL) > 0
    # Health as the probes see it, for alerts: ready, and the engine healthy (one state of three at 1).
    assert (await client.get("/health/ready")).status_code == 200 and scraped.value("llm_ready") == 1
    assert {s.labels["state"]: s.value for s in scraped.matching("llm_engine_state", **MODEL)} == {
        "healthy": 1,
        "stalled": 0,
        "dead": 0,
    }
    [build] = scraped.matching("llm_build_info")
    assert build.labels["version"] == version("llm-inference") and build.value == 1
    assert scraped.value("process_resident_memory_bytes") > 50e6  # the model is in this process


async def test_unknown_routes_and_wrong_methods_are_counted(client) -> None:
    before = await scrape(client)
    assert (await client.get("/no/such/route")).status_code == 404
    assert (await client.get("/api/generate")).status_code == 405
    after = await scrape(client)
    assert (
        after.value("http_requests_total", method="GET", status="404")
        == before.value("http_requests_total", method="GET", status="404") + 1
    )
    # No route handles GET here, so it is counted as unmatched (not one series per path a client invents).
    assert (
        after.value("http_requests_total", route="unmatched", method="GET", status="405")
        == before.value("http_requests_total", route="unmatched", method="GET", status="405") + 1
    )


async def test_a_timed_out_generation_is_counted_as_a_timeout() -> None:
    app = create_app(make_settings(LLM_REQUEST_TIMEOUT_SECONDS="0.3", LLM_MAX_TOKENS_LIMIT="1000"))
    async with AsyncTestClient(app, timeout=120) as client:
        await wait_ready(client)
        response = await client.post(
            "/api/generate", json={"prompt": "Tell a long story.", "max_tokens": 1000, "ignore_eos": True}
        )
        assert response.status_code == 504
        scraped = await scrape(client)
        assert scraped.value("llm_requests_finished_total", **MODEL, finish_reason="timeout") == 1
        assert scraped.value("gen_ai_server_request_duration_seconds_count", **MODEL, error_type="timeout") == 1
        assert scraped.value("gen_ai_server_request_duration_seconds_count", **MODEL, error_type="") == 0
        assert scraped.value("http_requests_total", route="/api/generate", status="504") == 1


async def test_running_and_waiting_follow_the_engine(observed: Observed) -> None:
    """One decode slot (the observed service's) and three streams: one runs while two wait in its queue."""
    labels = {"model": observed.model, "backend": "llamacpp"}
    before = observed.scrape()
    # ignore_eos: each stream must hold its slot long enough for the 50 ms polls to see it, even on a fast CPU.
    body = {
        "prompt": "List the numbers from one to one hundred in words:",
        "max_tokens": 128,
        "temperature": 0,
        "ignore_eos": True,
    }
    async with httpx.AsyncClient(base_url=observed.url, timeout=300) as client:
        streams = [asyncio.create_task(client.post("/api/generate/stream", json=body)) for _ in range(3)]
        seen, kv_usage = set(), set()
        while not all(s.done() for s in streams):
            scraped = Scrape((await client.get("/metrics")).text)
            seen.add(
                (
                    scraped.value("llm_num_requests_running", **labels),
                    scraped.value("llm_num_requests_waiting", **labels),
                )
            )
            kv_usage.add(scraped.value("llm_kv_cache_usage_ratio", **labels))
            await asyncio.sleep(0.05)
        for stream in streams:
            assert parse_events((await stream).text)[-1]["type"] == "done"
    assert (1, 2) in seen, seen  # the first decodes while the other two wait for its slot
    assert all(running <= 1 for running, _ in seen), seen
    after = observed.scrape()
    assert after.value("llm_num_requests_running", **labels) == after.value("llm_num_requests_waiting", **labels) == 0
    # One slot of the 1024-token test context: a running stream holds its prompt and what it generated so far.
    assert any(0.01 < usage <= 1 for usage in kv_usage), kv_usage
    assert after.value("llm_kv_cache_usage_ratio", **labels) == 0

    def delta(name: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("llm_request_queue_time_seconds_count") == 3
    # Served one after another, three like requests queue for 0, 1 and 2 generations' time out of the
    # 1 + 2 + 3 their durations add up to: the queue holds about half of the total.
    assert delta("gen_ai_server_request_duration_seconds_sum") / 4 < delta("llm_request_queue_time_seconds_sum")


def test_a_client_leaving_mid_stream_is_counted_as_cancelled(observed: Observed) -> None:
    labels = {"model": observed.model, "backend": "llamacpp"}
    before = observed.scrape().value("llm_requests_finished_total", **labels, finish_reason="cancelled")
    body = {"prompt": "Write a long essay about the sea.", "max_tokens": 400, "ignore_eos": True}
    with httpx.stream("POST", observed.url + "/api/generate/stream", json=body, timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # one event, then hang up

    # Counted once the server notices the stream closed; the engine frees the slot at its next decode step.
    def cancelled_and_running() -> tuple[float, float]:
        scraped = observed.scrape()
        return (
            scraped.value("llm_requests_finished_total", **labels, finish_reason="cancelled"),
            scraped.value("llm_num_requests_running", **labels),
        )

    cancelled, running = wait_until(
        cancelled_and_running,
        until=lambda seen: seen == (before + 1, 0),
        timeout=60,
        what=f"one more cancelled generation ({before} before) and none running: (cancelled, running)",
        interval=0.1,
    )
    assert cancelled == before + 1
    assert running == 0  # its slot is free again


def test_embeddings_are_measured_and_traced_as_their_own_operation(observed: Observed) -> None:
    labels = {"model": observed.model, "backend": "llamacpp"}
    before = observed.scrape()
    response = httpx.post(observed.url + "/api/embeddings", json={"input": ["one text", "and another"]}, timeout=300)
    assert response.status_code == 200, response.text
    tokens = response.json()["usage"]["prompt_tokens"]
    after = observed.scrape()
    count = "gen_ai_server_request_duration_seconds_count"
    assert (
        after.value(count, **labels, operation="embeddings", error_type="")
        - before.value(count, **labels, operation="embeddings", error_type="")
        == 1
    )
    assert (
        after.value("llm_prompt_tokens_total", **labels) - before.value("llm_prompt_tokens_total", **labels) == tokens
    )
    span = next(
        s
        for s in observed.receiver.wait_for(lambda spans: any(s.name == f"embeddings {observed.model}" for s in spans))
        if s.name.startswith("embeddings")
    )
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert span.attributes["gen_ai.usage.input_tokens"] == tokens
