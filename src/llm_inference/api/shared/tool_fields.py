"""The tool fields both chat surfaces share (tools, tool_choice, parallel_tool_calls and the history's calls
and results) onto the service's ToolsInput, with a 422 naming each field that breaks a rule; and the
server-side tool rounds an answer reports (`tool_rounds`, the same on both)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from llm_inference.api.shared import schemas
from llm_inference.api.shared.schemas import NamedToolChoice, Tool, ToolChoice
from llm_inference.errors import InvalidParameter
from llm_inference.service import ToolRound
from llm_inference.service.tools import ToolsInput, ToolSpec


def tools_input(
    tools: Sequence[Tool] | None,
    choice: ToolChoice | None,
    parallel: bool | None,
    *,
    function_param: str = "tools[{}].function",
    choice_name_param: str = "tool_choice.function.name",
) -> ToolsInput | None:
    """The request's tools and how the model must choose among them; None when it offers none.

    `function_param` (formatted with the tool's index) and `choice_name_param` name the fields where the
    request holds a function's definition and a named choice's name (elsewhere in the Responses API's shape)."""
    if not tools:
        if choice not in (None, "none", "auto"):
            raise InvalidParameter(
                "tool_choice: asks for tool calls, but the request has no tools", param="tool_choice"
            )
        return None
    specs = []
    names: set[str] = set()
    for index, tool in enumerate(tools):
        function, param = tool.function, function_param.format(index)
        if function.name in names:
            raise InvalidParameter(f"{param}.name: {function.name!r} is defined twice", param=f"{param}.name")
        names.add(function.name)
        specs.append(
            ToolSpec(function.name, function.description, function.parameters, f"{param}.parameters", tool.server)
        )
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise InvalidParameter(
                f"{choice_name_param}: {choice.function.name!r} is not among the tools", param=choice_name_param
            )
        return ToolsInput(tuple(specs), "function", choice.function.name, parallel is not False)
    return ToolsInput(tuple(specs), choice or "auto", None, parallel is not False)


def check_message(param: str, role: str, has_calls: bool, tool_call_id: str | None, has_content: bool) -> None:
    """A history message's tool fields: calls only on an assistant turn, which alone may then have no content;
    a tool message names the call it answers."""
    if has_calls and role != "assistant":
        raise InvalidParameter(
            f"{param}.tool_calls: only an assistant message has tool calls", param=f"{param}.tool_calls"
        )
    if (tool_call_id is None) == (role == "tool"):
        rule = "is required on a tool message" if role == "tool" else "goes only on a tool message"
        raise InvalidParameter(f"{param}.tool_call_id: {rule}", param=f"{param}.tool_call_id")
    if not has_content and not has_calls:
        rule = "is required (it may be left out only on an assistant message with tool_calls)"
        raise InvalidParameter(f"{param}.content: {rule}", param=f"{param}.content")


def tool_rounds(rounds: tuple[ToolRound, ...]) -> list[schemas.ToolRound] | msgspec.UnsetType:
    """The rounds as the `tool_rounds` field both surfaces add to a chat's answer; unset (left out) for none."""
    if not rounds:
        return msgspec.UNSET
    return [
        schemas.ToolRound(
            calls=[schemas.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in r.calls],
            results=[schemas.ToolResult(x.tool_call_id, x.content) for x in r.results],
        )
        for r in rounds
    ]
