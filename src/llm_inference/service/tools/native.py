"""Placeholder until the native parsers land (hermes, llama3_json, mistral)."""

from __future__ import annotations

from llm_inference.service.tools.events import ContentText, ToolEvent, ToolOutputParser


class _Plain:
    def feed(self, text: str) -> list[ToolEvent]:
        return [ContentText(text)] if text else []

    def finish(self) -> list[ToolEvent]:
        return []


def native_parser(format_name: str, tool_names: frozenset[str]) -> ToolOutputParser:
    return _Plain()
