"""The native tool-call formats (Hermes/Qwen, Llama 3.x JSON, Mistral) read out of model text, whole and streamed in
every split; and real chat templates detected and rendered with tools."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_inference.engines.base import ChatMessage, ToolCall
from llm_inference.engines.chat_template import ChatTemplate
from llm_inference.service.tools.events import (
    ContentText,
    ToolArguments,
    ToolCallOpened,
    ToolEvent,
    ToolOutputParser,
    collect,
)
from llm_inference.service.tools.native import (
    HermesParser,
    Llama3JsonParser,
    MistralParser,
    mistral_call_id,
    native_parser,
)

TOOLS = frozenset({"get_weather", "get_time"})
Factory = Callable[[], ToolOutputParser]
Result = tuple[str, list[tuple[str, str]]]  # answer text, (name, arguments) of each call


def hermes() -> ToolOutputParser:
    return native_parser("hermes", TOOLS)


def llama() -> ToolOutputParser:
    return native_parser("llama3_json", TOOLS)


def mistral() -> ToolOutputParser:
    return native_parser("mistral", TOOLS)


def run(parser: ToolOutputParser, pieces: list[str]) -> list[ToolEvent]:
    events: list[ToolEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.finish()


def result(events: list[ToolEvent]) -> Result:
    # Ids are random: compare what the calls say, and check the ids on their own.
    text, calls = collect(events)
    assert len({call.id for call in calls}) == len(calls)
    opened = [event.index for event in events if isinstance(event, ToolCallOpened)]
    assert opened == list(range(len(calls)))  # numbered from 0, in order, each opened before its arguments
    for event in events:
        if isinstance(event, ToolArguments):
            assert event.index < len(opened)
    return text, [(call.name, call.arguments) for call in calls]


def parse(factory: Factory, text: str) -> Result:
    """The whole-text result, after checking that every way of streaming `text` gives the same."""
    expected = result(run(factory(), [text]))
    assert result(run(factory(), list(text))) == expected, "one character at a time"
    for cut in range(len(text) + 1):
        assert result(run(factory(), [text[:cut], text[cut:]])) == expected, f"split at {cut}"
    rng = random.Random(text)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 8)))) if len(text) > 1 else []
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert result(run(factory(), pieces)) == expected, f"pieces {pieces}"
    return expected


PARIS = '{"city": "Paris"}'


# Hermes / Qwen


def test_hermes_plain_answer_is_content_verbatim() -> None:
    text = "Paris is sunny today.\n\nEnjoy a < b, and <b>bold</b>.\n"
    assert parse(hermes, text) == (text, [])


def test_hermes_one_call() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert parse(hermes, text) == ("", [("get_weather", PARIS)])


def test_hermes_text_before_and_several_calls_with_layout_whitespace_dropped() -> None:
    text = (
        "Let me look both up.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {"zone": "Europe/Paris"}}\n</tool_call>\n'
    )
    assert parse(hermes, text) == (
        "Let me look both up.",
        [("get_weather", PARIS), ("get_time", '{"zone": "Europe/Paris"}')],
    )


def test_hermes_text_after_a_call_is_content() -> None:
    text = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>\n\nI asked for the time.'
    assert parse(hermes, text) == ("I asked for the time.", [("get_time", "{}")])


def test_hermes_text_on_both_sides_of_a_call_keeps_the_space_between() -> None:
    text = 'First this.\n<tool_call>{"name": "get_time"}</tool_call>\nThen that. \n'
    assert parse(hermes, text) == ("First this.\n\nThen that. \n", [("get_time", "{}")])


def test_hermes_arguments_missing_given_as_a_string_or_not_an_object() -> None:
    assert parse(hermes, '<tool_call>{"name": "get_time"}</tool_call>') == ("", [("get_time", "{}")])
    as_string = '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\":\\"Paris\\"}"}</tool_call>'
    assert parse(hermes, as_string) == ("", [("get_weather", '{"city":"Paris"}')])
    for bad in ('"Paris"', "[1, 2]", '"not json"', "3"):
        text = f'<tool_call>{{"name": "get_weather", "arguments": {bad}}}</tool_call>'
        assert parse(hermes, text) == (text, [])


def test_hermes_arguments_keep_non_ascii_characters() -> None:
    text = '<tool_call>{"name": "get_weather", "arguments": {"city": "Z\\u00fcrich \\u6771\\u4eac"}}</tool_call>'
    assert parse(hermes, text) == ("", [("get_weather", '{"city": "Zürich 東京"}')])


def test_hermes_unterminated_block_is_a_call_if_its_json_is_whole() -> None:
    text = 'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    assert parse(hermes, text) == ("Checking.", [("get_weather", PARIS)])


@pytest.mark.parametrize(
    "block",
    [
        '<tool_call>\n{"name": "get_weather", "argu',  # cut short by max_tokens
        '<tool_call>\n{"name": "get_weather", arguments: {city: Paris}}\n</tool_call>',  # not JSON
        '<tool_call>\n{"name": "delete_everything", "arguments": {}}\n</tool_call>',  # not one of the tools
        '<tool_call>\n{"function": "get_weather"}\n</tool_call>',  # no name
        "<tool_call></tool_call>",
    ],
)
def test_hermes_a_block_that_is_not_a_call_is_given_back_verbatim(block: str) -> None:
    text = f"Here goes:\n{block}"
    assert parse(hermes, text) == (text, [])


def test_hermes_a_bad_block_between_calls_keeps_its_place() -> None:
    good = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    bad = '<tool_call>{"name": "nope"}</tool_call>'
    assert parse(hermes, f"{good}\n{bad}\n{good}") == (bad, [("get_time", "{}"), ("get_time", "{}")])


def test_hermes_streams_answer_text_holding_back_only_what_may_start_a_marker() -> None:
    parser = HermesParser(TOOLS)
    assert parser.feed("The answer is 4") == [ContentText("The answer is 4")]
    assert parser.feed(". Let me check <tool") == [ContentText(". Let me check")]
    assert parser.feed("box> too") == [ContentText(" <toolbox> too")]
    assert parser.feed("\n<tool_call>{") == []
    assert parser.finish() == [ContentText("\n<tool_call>{")]


def test_hermes_a_partial_marker_at_the_end_is_content() -> None:
    assert parse(hermes, "See <tool_ca") == ("See <tool_ca", [])


# Llama 3.x JSON


def test_llama_plain_answer_streams_at_once() -> None:
    parser = Llama3JsonParser(TOOLS)
    assert parser.feed("  ") == []  # the answer's start is not known yet
    assert parser.feed("The weather") == [ContentText("  The weather")]
    assert parser.feed(' is {"fine"}') == [ContentText(' is {"fine"}')]
    assert parser.finish() == []


def test_llama_answer_text_verbatim() -> None:
    for text in ("Sunny, 18 C.\n", "<b>Sunny</b>", "<|python", "   "):
        assert parse(llama, text) == (text, [])


def test_llama_a_call_with_parameters_or_arguments() -> None:
    assert parse(llama, '{"name": "get_weather", "parameters": {"city": "Paris"}}') == ("", [("get_weather", PARIS)])
    assert parse(llama, '\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n') == ("", [("get_weather", PARIS)])
    assert parse(llama, '{"type": "function", "name": "get_time"}') == ("", [("get_time", "{}")])


def test_llama_python_tag_and_several_calls() -> None:
    text = (
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
        '{"name": "get_time", "parameters": {"zone": "UTC"}};'
    )
    assert parse(llama, text) == ("", [("get_weather", PARIS), ("get_time", '{"zone": "UTC"}')])


def test_llama_holds_an_answer_that_starts_like_a_call_to_the_end() -> None:
    parser = Llama3JsonParser(TOOLS)
    assert parser.feed('{"name": "get_weather", ') == []
    assert parser.feed('"parameters": {"city": "Paris"}}') == []
    [opened, arguments] = parser.finish()
    assert isinstance(opened, ToolCallOpened)
    assert (opened.index, opened.name) == (0, "get_weather")
    assert arguments == ToolArguments(0, PARIS)


@pytest.mark.parametrize(
    "text",
    [
        '{"city": "Paris", "temperature": 18}',  # an answer in JSON, not a call
        '{"name": "Bob", "parameters": {"age": 3}}',  # a name that is no tool
        '{"name": "get_weather", "parameters": {"city": "Pa',  # cut short
        '<|python_tag|>{"name": "get_weather", "parameters": "Paris"}',  # arguments not an object
        '{"name": "get_weather", "parameters": {"city": "Paris"}} is what I would call.',  # text after it
        '{"name": "get_time"}; {"name": "nope"}',  # one bad call spoils the answer
    ],
)
def test_llama_json_that_is_not_wholly_calls_is_content_verbatim(text: str) -> None:
    assert parse(llama, text) == (text, [])


# Mistral


def test_mistral_list_form() -> None:
    text = (
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}, '
        '{"name": "get_time", "arguments": {"zone": "UTC"}}]'
    )
    assert parse(mistral, text) == ("", [("get_weather", PARIS), ("get_time", '{"zone": "UTC"}')])


def test_mistral_list_form_after_text_and_with_text_after() -> None:
    text = 'Let me check.\n[TOOL_CALLS][{"name": "get_time", "arguments": {}}]\nOne moment.'
    assert parse(mistral, text) == ("Let me check.\n\nOne moment.", [("get_time", "{}")])


def test_mistral_name_args_form_repeated() -> None:
    text = '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{"zone": "UTC"}'
    assert parse(mistral, text) == ("", [("get_weather", PARIS), ("get_time", '{"zone": "UTC"}')])


def test_mistral_name_args_form_without_the_args_marker() -> None:
    text = '[TOOL_CALLS]get_weather{"city": "Paris"} [TOOL_CALLS]get_time{}'
    assert parse(mistral, text) == ("", [("get_weather", PARIS), ("get_time", "{}")])


@pytest.mark.parametrize(
    "calls",
    [
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Pa',  # cut short
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "nope"}]',
        "[TOOL_CALLS][]",
        '[TOOL_CALLS]nope[ARGS]{"a": 1}',
        '[TOOL_CALLS]get_weather[ARGS]{"city": ',
        "[TOOL_CALLS]get_weather[ARGS][1]",
        "[TOOL_CALLS]",
    ],
)
def test_mistral_calls_that_do_not_parse_are_content_verbatim(calls: str) -> None:
    text = f"Sure. {calls}"
    assert parse(mistral, text) == (text, [])


def test_mistral_a_good_call_then_a_truncated_one() -> None:
    text = '[TOOL_CALLS]get_time[ARGS]{}[TOOL_CALLS]get_weather[ARGS]{"ci'
    assert parse(mistral, text) == ('[TOOL_CALLS]get_weather[ARGS]{"ci', [("get_time", "{}")])


def test_mistral_plain_answer_streams_and_is_verbatim() -> None:
    parser = MistralParser(TOOLS)
    assert parser.feed("It is [TOOL") == [ContentText("It is")]
    assert parser.feed("S] sunny.") == [ContentText(" [TOOLS] sunny.")]
    assert parse(mistral, "A [list] and [TOOL_CALL\n") == ("A [list] and [TOOL_CALL\n", [])


def test_mistral_call_ids_are_what_its_templates_accept() -> None:
    events = run(MistralParser(TOOLS), ["[TOOL_CALLS]get_time[ARGS]{}[TOOL_CALLS]get_time[ARGS]{}"])
    ids = [event.id for event in events if isinstance(event, ToolCallOpened)]
    assert len(ids) == 2 and all(re.fullmatch("[A-Za-z0-9]{9}", id_) for id_ in ids)


def test_native_parser_knows_the_three_formats() -> None:
    assert isinstance(native_parser("hermes", TOOLS), HermesParser)
    assert isinstance(native_parser("llama3_json", TOOLS), Llama3JsonParser)
    assert isinstance(native_parser("mistral", TOOLS), MistralParser)
    with pytest.raises(ValueError, match="pythonic"):
        native_parser("pythonic", TOOLS)


# Real chat templates

TEMPLATES = Path(__file__).parent.parent / "data" / "chat_templates"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def template(name: str) -> ChatTemplate:
    return ChatTemplate((TEMPLATES / name).read_text(encoding="utf-8"), "<s>", "</s>")


def tool_round(call_id: str) -> list[ChatMessage]:
    return [
        ChatMessage("system", "Answer briefly."),
        ChatMessage("user", "What is the weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall(call_id, "get_weather", PARIS),)),
        ChatMessage("tool", "18 C and sunny", tool_call_id=call_id, name="get_weather"),
    ]


@pytest.mark.parametrize(
    ("name", "tool_format", "call_id"),
    [
        ("Qwen-Qwen2.5-7B-Instruct.jinja", "hermes", "call_0123456789abcdef01234567"),
        ("meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3_json", "call_0123456789abcdef01234567"),
        ("mistralai-Mistral-7B-Instruct-v0.3.jinja", "mistral", mistral_call_id()),
    ],
)
def test_a_real_template_is_detected_and_renders_a_tool_round(name: str, tool_format: str, call_id: str) -> None:
    chat = template(name)
    assert chat.tool_format == tool_format
    prompt = chat.render(tool_round(call_id), [WEATHER_TOOL])
    assert "get_weather" in prompt
    assert "The weather in a city" in prompt
    assert "Paris" in prompt and "18 C and sunny" in prompt
    assert "get_weather" not in chat.render(tool_round(call_id)[:2])  # no tools, no tool text


# What these templates show the lead's side still has to do (strict: they fail loudly once it is done).


def test_mistral_template_replays_a_call_with_an_openai_style_id() -> None:
    template("mistralai-Mistral-7B-Instruct-v0.3.jinja").render(tool_round("call_0123456789abcdef01234567"))


@pytest.mark.parametrize("name", ["mistralai-Mistral-7B-Instruct-v0.3.jinja", "Qwen-Qwen2.5-7B-Instruct.jinja"])
def test_tools_render_as_plain_json(name: str) -> None:
    tool = {**WEATHER_TOOL, "function": {**WEATHER_TOOL["function"], "description": "Weather in <city> & 'now'"}}
    prompt = template(name).render(tool_round(mistral_call_id()), [tool])
    assert "Weather in <city> & 'now'" in prompt and "&#34;" not in prompt


def test_llama_3_2_template_is_detected() -> None:
    assert template("meta-llama-Llama-3.2-3B-Instruct.jinja").tool_format == "llama3_json"
