"""The agent and structured-output clients people already have, driven against /v1 of a real Granian process on
the embedded model: LangChain (bind_tools, with_structured_output), instructor (TOOLS, JSON, JSON_SCHEMA),
LiteLLM (a required tool, whole and streamed), pydantic-ai (a tool, structured outputs, both in one run) and
openai-agents with its default model (OpenAIResponsesModel, over /v1/responses) and its chat-completions model (a
function tool, whole and streamed; structured output after a tool). The model is tiny: what is
asserted is structure (calls parse, name an offered function, their arguments validate and the tool really
runs, outputs validate against their model), never the sense of an answer. Every request body a client sends is
printed, so a failure's report shows exactly what the client asked for and what the server refused."""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Annotated, Any, Literal

import agents
import httpx
import instructor
import openai
import pydantic_ai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.api.openai.conftest import MODEL
from tests.server import ServerProcess

pytestmark = pytest.mark.model

ASK_WEATHER = "What is the weather like in Paris today?"
ASK_PERSON = "Describe a person with a name and an age."
WEATHER_REPORT = "18 degrees Celsius and sunny"
TIMEOUT = 180  # a loaded two-core machine makes a few tokens slow


class GetWeather(BaseModel):
    """The current weather in a city."""

    city: str = Field(min_length=1, max_length=20)
    unit: Literal["celsius", "fahrenheit"]


class Person(BaseModel):
    name: str = Field(min_length=1, max_length=12)
    age: int


class Weather(BaseModel):
    city: str = Field(max_length=20)
    degrees: int


WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": GetWeather.__doc__,
        "parameters": GetWeather.model_json_schema() | {"additionalProperties": False},
    },
}


# The exchanges, printed: pytest shows a failed test's output, so its report holds the exact bodies.
def show_request(request: httpx.Request) -> None:
    print(">", request.method, request.url.path, request.content.decode())


def show_refusal(response: httpx.Response) -> None:
    if response.status_code >= 400:
        print("<", response.status_code, response.read().decode())


async def show_request_async(request: httpx.Request) -> None:
    show_request(request)


async def show_refusal_async(response: httpx.Response) -> None:
    if response.status_code >= 400:
        print("<", response.status_code, (await response.aread()).decode())


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    hooks: Any = {"request": [show_request], "response": [show_refusal]}
    with httpx.Client(timeout=TIMEOUT, event_hooks=hooks) as client:
        yield client


@pytest.fixture
async def openai_async(server: ServerProcess) -> AsyncIterator[openai.AsyncOpenAI]:
    hooks: Any = {"request": [show_request_async], "response": [show_refusal_async]}
    async with httpx.AsyncClient(timeout=TIMEOUT, event_hooks=hooks) as http:
        yield openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, http_client=http)


@pytest.fixture
def chat(server: ServerProcess, http_client: httpx.Client) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL,
        base_url=server.url + "/v1",
        api_key="none",  # type: ignore[arg-type]
        temperature=0,
        max_tokens=64,  # type: ignore[call-arg]
        max_retries=0,
        http_client=http_client,
    )


@tool
def get_time(timezone: Annotated[str, Field(max_length=24)]) -> str:
    """The time in a timezone."""
    return f"12:00 in {timezone}"


def check_langchain_calls(message: AIMessage) -> None:
    assert message.tool_calls and not message.invalid_tool_calls, message
    for call in message.tool_calls:
        if call["name"] == "GetWeather":
            GetWeather.model_validate(call["args"])
        else:
            assert call["name"] == "get_time", call
            assert get_time.invoke(call).content.startswith("12:00 in ")  # the tool runs on the parsed arguments


@pytest.mark.parametrize("tool_choice", ["GetWeather", "required"])
def test_langchain_bind_tools_returns_parsed_calls(chat: ChatOpenAI, tool_choice: str) -> None:
    """A pydantic model and a @tool function as tools; a named function and "required" (LangChain's "any"). The
    @tool function named is in the streamed test."""
    bound = chat.bind_tools([GetWeather, get_time], tool_choice=tool_choice, parallel_tool_calls=False)
    message = bound.invoke(ASK_WEATHER)
    assert isinstance(message, AIMessage)
    check_langchain_calls(message)
    assert len(message.tool_calls) == 1
    if tool_choice == "GetWeather":
        assert message.tool_calls[0]["name"] == "GetWeather"


def test_langchain_bind_tools_streams_calls_that_add_up(chat: ChatOpenAI) -> None:
    bound = chat.bind_tools([GetWeather, get_time], tool_choice="get_time")
    chunks = list(bound.stream(ASK_WEATHER))
    assert len(chunks) > 2  # streamed, not one block
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert isinstance(whole, AIMessageChunk)
    check_langchain_calls(whole)
    assert [call["name"] for call in whole.tool_calls] == ["get_time"]


# method="json_schema" (and json_mode with a dict schema) are in test_structured.py.
@pytest.mark.parametrize("method", ["function_calling", "json_mode"])
def test_langchain_with_structured_output_returns_a_model(chat: ChatOpenAI, method: Any) -> None:
    # JSON mode constrains to JSON, not to the schema, and LangChain sends no schema: the prompt names the keys.
    ask = [
        ("system", 'Answer with a JSON object with the keys "name" (a string) and "age" (an integer).'),
        ("user", ASK_PERSON),
    ]
    person = chat.with_structured_output(Person, method=method).invoke(ask)
    assert isinstance(person, Person)


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON, instructor.Mode.JSON_SCHEMA])
def test_instructor_returns_a_validated_model(
    server: ServerProcess, http_client: httpx.Client, mode: instructor.Mode
) -> None:
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, http_client=http_client)
    client = instructor.from_openai(sdk, mode=mode)
    person = client.chat.completions.create(
        model=MODEL,
        response_model=Person,
        messages=[{"role": "user", "content": ASK_PERSON}],
        max_tokens=64,
        temperature=0,
        max_retries=0,  # one attempt: a reask would hide an answer that did not validate
    )
    assert isinstance(person, Person)


@pytest.fixture(scope="module")
def litellm() -> ModuleType:
    # Without this, importing litellm fetches its model cost map from the network (and waits when it can't).
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return importlib.import_module("litellm")


def test_litellm_calls_a_required_tool_whole_and_streamed(
    server: ServerProcess, http_client: httpx.Client, litellm: Any
) -> None:
    request: Any = {
        "model": "openai/" + MODEL,
        "api_base": server.url + "/v1",
        "api_key": "none",
        "client": openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, http_client=http_client),
        "messages": [{"role": "user", "content": ASK_WEATHER}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_tokens": 64,
        "temperature": 0,
    }
    whole = litellm.completion(**request).choices[0]
    assert whole.finish_reason == "tool_calls", whole
    [call] = whole.message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    GetWeather.model_validate_json(call.function.arguments)

    chunks = list(litellm.completion(**request, stream=True))
    assert len(chunks) > 2
    streamed = litellm.stream_chunk_builder(chunks, messages=request["messages"]).choices[0]
    assert streamed.finish_reason == "tool_calls", streamed
    [piecewise] = streamed.message.tool_calls
    assert (piecewise.function.name, piecewise.function.arguments) == (call.function.name, call.function.arguments)


def pydantic_ai_model(client: openai.AsyncOpenAI) -> OpenAIChatModel:
    return OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))


def tool_on_the_first_step_only(ctx: pydantic_ai.RunContext[None]) -> pydantic_ai.ModelSettings:
    """A call forced on the first request, then none: the run must end however little the model says. Static
    "required" would force a call on every step (pydantic-ai refuses it); this is its documented per-step way."""
    return pydantic_ai.ModelSettings(
        max_tokens=64, temperature=0, parallel_tool_calls=False, tool_choice="required" if ctx.run_step == 1 else "none"
    )


def weather_agent(client: openai.AsyncOpenAI, output_type: Any, calls: list[Any]) -> pydantic_ai.Agent[None, Any]:
    agent = pydantic_ai.Agent(
        pydantic_ai_model(client), output_type=output_type, model_settings=tool_on_the_first_step_only
    )

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        calls.append(city)
        return WEATHER_REPORT

    return agent


async def test_pydantic_ai_agent_calls_its_tool_and_finishes(openai_async: openai.AsyncOpenAI) -> None:
    calls: list[Any] = []
    result = await weather_agent(openai_async, str, calls).run(ASK_WEATHER)
    assert len(calls) == 1 and isinstance(calls[0], str), calls  # pydantic-ai validated the arguments, then ran it
    assert isinstance(result.output, str)


@pytest.mark.parametrize("output", ["tool", "native", "prompted"])
async def test_pydantic_ai_structured_output(openai_async: openai.AsyncOpenAI, output: str) -> None:
    """Its three output modes: an output tool (the default, tool_choice required), a json_schema response_format,
    and a schema in the prompt with a json_object response_format."""
    output_type: Any = {
        "tool": Person,
        "native": pydantic_ai.NativeOutput(Person),
        "prompted": pydantic_ai.PromptedOutput(Person),
    }[output]
    settings = pydantic_ai.ModelSettings(max_tokens=64, temperature=0, parallel_tool_calls=False)
    agent = pydantic_ai.Agent(pydantic_ai_model(openai_async), output_type=output_type, model_settings=settings)
    result = await agent.run(ASK_PERSON)
    assert isinstance(result.output, Person)


# Not PromptedOutput here: its json_object bounds no key, and after a tool round the tiny model answers JSON of its
# own shape (it echoes the tool result), which would test the model's sense, not the service.
@pytest.mark.parametrize("output", ["tool", "native"])
async def test_pydantic_ai_structured_output_after_a_tool(openai_async: openai.AsyncOpenAI, output: str) -> None:
    """A tool and a structured output in one run: the first request carries the tools with tool_choice "required"
    (native: and a json_schema response_format), the second tool_choice "none" (native: and the response_format;
    tool: the output tool, required)."""
    output_type: Any = {"tool": Weather, "native": pydantic_ai.NativeOutput(Weather)}[output]
    calls: list[Any] = []
    result = await weather_agent(openai_async, output_type, calls).run(ASK_WEATHER)
    assert len(calls) == 1 and isinstance(calls[0], str), calls
    assert isinstance(result.output, Weather)


# The Agents SDK's default model speaks the Responses API; the other, chat completions.
OPENAI_AGENTS_MODELS = {"responses": agents.OpenAIResponsesModel, "chat_completions": agents.OpenAIChatCompletionsModel}


def openai_agents_model(client: openai.AsyncOpenAI, api: str) -> agents.Model:
    agents.set_tracing_disabled(True)  # its traces go to OpenAI's servers
    return OPENAI_AGENTS_MODELS[api](model=MODEL, openai_client=client)


def weather_function_tool(calls: list[Any]) -> agents.FunctionTool:
    @agents.function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        calls.append(city)
        return WEATHER_REPORT

    return get_weather


@pytest.mark.parametrize("api", list(OPENAI_AGENTS_MODELS))
@pytest.mark.parametrize("streamed", [False, True])
async def test_openai_agents_function_tool(openai_async: openai.AsyncOpenAI, streamed: bool, api: str) -> None:
    calls: list[Any] = []
    agent = agents.Agent(
        name="weather",
        instructions="You answer questions about the weather.",
        model=openai_agents_model(openai_async, api),
        tools=[weather_function_tool(calls)],
        model_settings=agents.ModelSettings(tool_choice="required", max_tokens=64, temperature=0),
        tool_use_behavior="stop_on_first_tool",  # "required" on every turn would call tools until max_turns
    )
    if streamed:
        run: Any = agents.Runner.run_streamed(agent, ASK_WEATHER, max_turns=2)
        events = [event async for event in run.stream_events()]
        assert any(event.type == "raw_response_event" for event in events)
    else:
        run = await agents.Runner.run(agent, ASK_WEATHER, max_turns=2)
    assert len(calls) == 1 and isinstance(calls[0], str), calls  # the SDK validated the arguments, then ran it
    assert run.final_output == WEATHER_REPORT


class NoMoreTools(agents.AgentHooks[Any]):
    """After the tool ran, tool_choice "none": the next turn must answer, in the output type's schema."""

    async def on_tool_end(self, context: Any, agent: agents.Agent[Any], tool: Any, result: object) -> None:
        agent.model_settings = dataclasses.replace(agent.model_settings, tool_choice="none")


@pytest.mark.parametrize("api", list(OPENAI_AGENTS_MODELS))
async def test_openai_agents_structured_output_after_a_function_tool(
    openai_async: openai.AsyncOpenAI, api: str
) -> None:
    """Tools and an output_type in one agent: each request carries the tools and a json_schema output format
    (response_format; on the Responses API text.format), the first with tool_choice "required", the second with
    "none" and the call and its output in the input."""
    calls: list[Any] = []
    agent = agents.Agent(
        name="weather",
        model=openai_agents_model(openai_async, api),
        tools=[weather_function_tool(calls)],
        output_type=Weather,
        # One call: greedy, the 135M model repeats a call to fill an open list until max_tokens cuts the last.
        model_settings=agents.ModelSettings(
            tool_choice="required", parallel_tool_calls=False, max_tokens=64, temperature=0
        ),
        reset_tool_choice=False,  # it would reset to auto, where the tiny model may call tools until max_turns
        hooks=NoMoreTools(),
    )
    run = await agents.Runner.run(agent, ASK_WEATHER, max_turns=3)
    assert len(calls) == 1 and isinstance(calls[0], str), calls
    assert isinstance(run.final_output, Weather)
