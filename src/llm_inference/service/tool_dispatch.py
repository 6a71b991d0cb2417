"""The service's one outgoing call: a server-executed tool call POSTed to LLM_TOOL_DISPATCH_URL, bounded in time
(LLM_TOOL_DISPATCH_TIMEOUT_SECONDS, the whole exchange) and in the size of its answer (LLM_TOOL_RESULT_MAX_BYTES).

The tool server receives `{"id", "name", "arguments"}` (the arguments as a JSON object) and answers 2xx with
the result: the `content` of a JSON object that has one (text as is, anything else as its JSON), else the body's
text. Every other answer, or none in time, is a ToolDispatchFailed naming the function and the cause.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import httpx

from llm_inference.engines.base import ToolCall
from llm_inference.errors import ToolDispatchFailed, ToolDispatchTimeout
from llm_inference.settings import Settings, read_bearer_token

log = logging.getLogger(__name__)


class _BearerToken:
    """The key file's token, read at start-up and again when the file changes (a rotated Kubernetes Secret), as
    LLM_API_KEYS_FILE is; a file that cannot be read later leaves the last token in force."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._token = read_bearer_token(path)  # checked by the settings: a bad file stops start-up there
        self._version = self._stat()

    def _stat(self) -> tuple[int, int, int]:
        stat = os.stat(self._path)
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def get(self) -> str:
        try:
            version = self._stat()
            if version != self._version:
                self._token, self._version = read_bearer_token(self._path), version
        except (OSError, ValueError) as exc:
            log.warning("tool dispatch key file unreadable; keeping the token read before", extra={"error": repr(exc)})
        return self._token


class ToolDispatcher:
    def __init__(self, settings: Settings) -> None:
        assert settings.tool_dispatch_url is not None
        self.url = settings.tool_dispatch_url
        self.timeout_seconds = settings.tool_dispatch_timeout_seconds
        self.max_bytes = settings.tool_result_max_bytes
        self._token = _BearerToken(settings.tool_dispatch_key_file) if settings.tool_dispatch_key_file else None
        # One client for the service's life: its connections to the tool server are kept and reused.
        self._client = httpx.AsyncClient(timeout=self.timeout_seconds, follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def dispatch(self, call: ToolCall) -> str:
        """The result of one call, as the content of its `tool` message."""
        what = f"tool {call.name!r} (call {call.id})"
        try:
            arguments = json.loads(call.arguments)
        except ValueError:
            raise ToolDispatchFailed(f"{what}: the model's arguments are not valid JSON", outcome="invalid") from None
        # identity: a compressed answer could inflate far past the size bound in one piece before it is counted
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get()}"
        payload = {"id": call.id, "name": call.name, "arguments": arguments}
        try:
            async with asyncio.timeout(self.timeout_seconds):
                async with self._client.stream("POST", self.url, json=payload, headers=headers) as response:
                    if not response.is_success:
                        raise ToolDispatchFailed(
                            f"{what}: LLM_TOOL_DISPATCH_URL answered HTTP {response.status_code}",
                            outcome="error_status",
                        )
                    body = await self._read(response, what)
        except (TimeoutError, httpx.TimeoutException):
            raise ToolDispatchTimeout(
                f"{what}: no answer from LLM_TOOL_DISPATCH_URL within "
                f"LLM_TOOL_DISPATCH_TIMEOUT_SECONDS={self.timeout_seconds:g}",
                outcome="timeout",
            ) from None
        except httpx.HTTPError as exc:
            raise ToolDispatchFailed(
                f"{what}: LLM_TOOL_DISPATCH_URL could not be reached ({type(exc).__name__})", outcome="unreachable"
            ) from None
        content = result_content(body)
        if "\x00" in content:
            raise ToolDispatchFailed(f"{what}: the result has NUL characters in it", outcome="invalid")
        return content

    async def _read(self, response: httpx.Response, what: str) -> bytes:
        too_large = ToolDispatchFailed(
            f"{what}: the result is larger than LLM_TOOL_RESULT_MAX_BYTES={self.max_bytes}", outcome="too_large"
        )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large
        parts, size = [], 0
        async for part in response.aiter_bytes():
            size += len(part)
            if size > self.max_bytes:
                raise too_large
            parts.append(part)
        return b"".join(parts)


def result_content(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    try:
        value: Any = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict) and "content" in value:
        content = value["content"]
        return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return text
