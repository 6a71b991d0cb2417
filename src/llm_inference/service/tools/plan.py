"""How one chat request's tools reach the model and come back: which format (the template's own, or the
generic JSON one), the messages and tool definitions the template renders, the constraint on the answer and
the parser that reads calls out of it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llm_inference.engines.base import ChatMessage
from llm_inference.engines.constraints import OutputConstraint
from llm_inference.service.tools import generic
from llm_inference.service.tools.events import ToolOutputParser
from llm_inference.service.tools.native import native_parser
from llm_inference.service.tools.spec import ToolsInput

GENERIC = "generic"
NATIVE_FORMATS = ("hermes", "llama3_json", "mistral")
FORMATS = ("auto", GENERIC, *NATIVE_FORMATS)


@dataclass(frozen=True, slots=True)
class ToolPlan:
    native: bool  # the template writes tools and calls itself
    description: str | None  # the generic format's system text (None: none to add)
    template_tools: tuple[dict[str, Any], ...] | None  # tool definitions for templates that render them
    constraint: OutputConstraint | None
    parser: Callable[[], ToolOutputParser] | None  # None: the answer is plain text (no tools offered)
    server_tools: frozenset[str] = frozenset()

    def present(self, messages: Sequence[ChatMessage]) -> tuple[list[ChatMessage], Sequence[dict[str, Any]] | None]:
        """The messages and tools the chat template renders (service/truncation's Presenter)."""
        shown = list(messages) if self.native else generic.plain_history(messages, self.description is not None)
        if self.description is not None:
            shown = generic.with_system_text(shown, self.description)
        return shown, self.template_tools


def tool_format(setting: str, template_format: str | None) -> str:
    """LLM_TOOL_CALL_FORMAT, or with `auto` the template's own format where it has one known here."""
    if setting != "auto":
        return setting
    return template_format or GENERIC


def plan(
    tools: ToolsInput | None,
    setting: str,
    template_format: str | None,
    response_format: OutputConstraint | None = None,
) -> ToolPlan:
    """The plan for a chat; with no tools (or tool_choice none) only how its history is shown to the template.
    `response_format` (structured outputs) then constrains the answer as usual; with tools it constrains the
    answer branch of the generic format, and a call that must be made is a call whatever it says."""
    fmt = tool_format(setting, template_format)
    native = fmt != GENERIC
    if tools is None or tools.mode == "none" or not tools.tools:
        return ToolPlan(native, None, None, None, None)
    server = frozenset(tool.name for tool in tools.tools if tool.server)
    if native and tools.mode == "auto" and response_format is None:
        names = frozenset(tool.name for tool in tools.tools)
        offered = tuple(tool.definition() for tool in tools.tools)
        return ToolPlan(True, None, offered, None, lambda: native_parser(fmt, names), server)
    # A call that must be made is constrained to the generic JSON whatever the template's own format (as vLLM's
    # server does for `required` and named functions): every call then parses; so is an answer that must
    # match a response_format beside the calls. The template still shows the tools its own way where it has one.
    definitions = tuple(tool.definition() for tool in tools.tools) if native else None
    structured = response_format is not None and tools.mode == "auto"
    description = None if native else generic.system_text(tools, structured)
    if tools.mode == "function":
        name = tools.function
        assert name is not None
        parser: Callable[[], ToolOutputParser] = lambda: generic.NamedCallParser(name)  # noqa: E731
    else:
        parser = functools.partial(generic.GenericParser, structured)
    return ToolPlan(native, description, definitions, generic.constraint(tools, response_format), parser, server)
