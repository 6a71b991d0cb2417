"""What a request asks of tools: the functions the model may call and how it must choose among them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from llm_inference.engines.constraints import json_schema_constraint

ChoiceMode = Literal["none", "auto", "required", "function"]

# A function that takes no parameters: its arguments are the empty object.
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One function. `parameters` is the client's JSON Schema as sent (the chat template shows it to the model);
    `param` names it in errors (`tools[0].function.parameters`)."""

    name: str
    description: str | None
    parameters: dict[str, Any] | None
    param: str
    # Run by the service itself (LLM_TOOL_DISPATCH_URL) rather than returned to the client.
    server: bool = False

    def definition(self) -> dict[str, Any]:
        """OpenAI's tool object, as chat templates take it."""
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = NO_PARAMETERS if self.parameters is None else self.parameters
        return {"type": "function", "function": function}

    def arguments_schema(self) -> dict[str, Any]:
        """The parameters in the checked, canonical form constrained decoding enforces (UnsupportedParameter
        naming the keyword for one outside the supported subset)."""
        if self.parameters is None:
            return NO_PARAMETERS
        canonical = json_schema_constraint(self.parameters, self.param).schema
        assert canonical is not None
        schema: dict[str, Any] = json.loads(canonical)
        return schema


@dataclass(frozen=True, slots=True)
class ToolsInput:
    tools: tuple[ToolSpec, ...]
    mode: ChoiceMode = "auto"
    function: str | None = None  # the function `mode == "function"` names
    parallel: bool = True  # more than one call in an answer

    def named(self) -> ToolSpec:
        return next(tool for tool in self.tools if tool.name == self.function)
