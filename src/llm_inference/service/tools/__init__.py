"""Tool calling: the functions a request offers, how they reach the model (its template's own format or a
generic constrained JSON one), and the calls read back out of its answer."""

from llm_inference.service.tools.events import (
    ContentText,
    ToolArguments,
    ToolCallOpened,
    ToolEvent,
    ToolOutputParser,
    collect,
)
from llm_inference.service.tools.plan import FORMATS, ToolPlan, plan
from llm_inference.service.tools.spec import ToolsInput, ToolSpec

__all__ = [
    "FORMATS",
    "ContentText",
    "ToolArguments",
    "ToolCallOpened",
    "ToolEvent",
    "ToolOutputParser",
    "ToolPlan",
    "ToolSpec",
    "ToolsInput",
    "collect",
    "plan",
]
