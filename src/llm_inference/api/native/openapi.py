"""Makes the served OpenAPI document say exactly what the service accepts and answers (schemathesis checks).

Litestar's generator drops every bound equal to 0 (`minimum: 0`, `exclusiveMinimum: 0`) and the bounds of
items inside a union, so its schemas accept requests the service refuses. msgspec validates the requests,
and its own JSON Schema of the same Structs is exact; it replaces Litestar's. Limits that come from settings
(max_tokens, stop sequences), API keys and rate limits are added here because they vary by deployment.
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec
from litestar import Litestar

from llm_inference.api import health
from llm_inference.api.http import errors
from llm_inference.api.http.auth import is_exempt
from llm_inference.api.native import schemas
from llm_inference.models.registry import ModelEntry
from llm_inference.settings import Settings

SECURITY_SCHEME = "apiKey"
STREAMABLE_PATHS = frozenset({"/api/generate", "/api/chat"})
NO_NUL = "^[^\\x00]*$"
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
_STATE_UNAVAILABLE = "The shared store (LLM_STATE_URL) does not answer; see Retry-After"
# One Server-Sent Event as OpenAPI 3.1 tools read a text/event-stream schema (3.2 calls it itemSchema): its
# data is a JSON object (a delta, done or error event) or the terminator [DONE]; `: ping` comments are no
# event.
SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"const": "message"},
        "data": {
            "anyOf": [
                {"const": "[DONE]"},
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "oneOf": [
                            {"$ref": f"#/components/schemas/{name}"}
                            for name in ("DeltaEvent", "DoneEvent", "ErrorEvent")
                        ]
                    },
                },
            ]
        },
    },
}


def _structs() -> list[type[msgspec.Struct]]:
    """The documented Structs: the /api schemas, the error body and the probes' (those they name come along)."""
    return [
        t
        for module in (schemas, errors, health)
        for _, t in inspect.getmembers(module, inspect.isclass)
        if issubclass(t, msgspec.Struct) and t.__module__ == module.__name__
    ]


def _non_null(prop: dict[str, Any]) -> dict[str, Any]:
    """The schema of an optional field's value: msgspec writes `T | None` as anyOf [T, null]."""
    return next(s for s in prop.get("anyOf", [prop]) if s.get("type") != "null")


def _settings_limits(components: dict[str, Any], settings: Settings) -> None:
    # Text the engine is given may not hold NUL characters (service/prepare.py refuses them with a clearer
    # message than a pattern error would give, so the rule is stated here rather than in the Struct).
    components["GenerateRequest"]["properties"]["prompt"]["pattern"] = NO_NUL
    for turn in ("SystemMessage", "UserMessage", "AssistantTurn", "ToolMessage"):
        components[turn]["properties"]["content"]["pattern"] = NO_NUL
    components["ToolMessage"]["properties"]["tool_call_id"]["pattern"] = NO_NUL
    for name in ("id", "name", "arguments"):
        components["ToolCall"]["properties"][name]["pattern"] = NO_NUL
    _non_null(components["CreateSessionRequest"]["properties"]["system"])["pattern"] = NO_NUL
    components["TokenizeRequest"]["properties"]["text"]["pattern"] = NO_NUL
    components["TokenizeRequest"]["oneOf"] = [{"required": ["text"]}, {"required": ["messages"]}]
    prompts = components["BatchGenerateRequest"]["properties"]["prompts"]
    prompts["items"]["pattern"] = NO_NUL
    prompts["maxItems"] = settings.max_batch_prompts
    for name in ("GenerateRequest", "ChatRequest", "BatchGenerateRequest"):
        properties = components[name]["properties"]
        _non_null(properties["max_tokens"])["maximum"] = settings.max_tokens_limit
        stop_list = next(s for s in _non_null(properties["stop"])["anyOf"] if s["type"] == "array")
        stop_list["maxItems"] = settings.max_stop_sequences
        properties["format"] = FORMAT_FIELD
        _non_null(properties["top_logprobs"])["maximum"] = settings.max_top_logprobs
        # Token ids are checked against the model's vocabulary, which the document cannot know: it shows ids
        # below 10,000, which every served vocabulary has.
        bias = _non_null(properties["logit_bias"])
        bias["propertyNames"] = {"pattern": "^[0-9]{1,4}$"}
        bias["additionalProperties"] = {"type": "number", "minimum": -100, "maximum": 100}
        bias["maxProperties"] = settings.max_logit_bias
        if name == "ChatRequest":
            properties["tools"] = TOOLS_FIELD
            properties["tool_choice"] = TOOL_CHOICE_FIELD
        # ignore_eos would go on past the end of the JSON: refused together (service/prepare.py).
        components[name]["not"] = {
            "required": ["format", "ignore_eos"],
            "properties": {"format": {"not": {"type": "null"}}, "ignore_eos": {"const": True}},
        }


# `format` takes a JSON Schema in the subset docs/structured-outputs.md lists; its rules (which keywords go
# together, required among properties, bounds) are more than a document can state, so the document shows the
# simplest schemas, every one of which is accepted: a bare type (or none: any JSON object).
BARE_TYPE = {
    "type": "object",
    "properties": {"type": {"enum": ["object", "array", "string", "number", "integer", "boolean", "null"]}},
    "additionalProperties": False,
}
FORMAT_FIELD = {
    "anyOf": [
        {"const": "json"},
        BARE_TYPE,
        {"type": "null"},
    ],
    "description": '"json" for any JSON object, or a JSON Schema the output will match. The subset served '
    "(properties, required, additionalProperties, items, enum, const, anyOf, $ref, length bounds, ...) is "
    "in docs/structured-outputs.md; anything else is refused with 400 unsupported_parameter naming the "
    "keyword. Shown here: the simplest such schemas.",
    "default": None,
}


# Tools, as `format`: the rules beyond a document (distinct names, a named choice among the tools, parameters
# in the structured-output subset) are stated in the descriptions, and the document shows what is always
# accepted: one function whose parameters are a bare type, chosen by auto or none.
TOOLS_FIELD = {
    "anyOf": [
        {
            "type": "array",
            "maxItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "type": {"const": "function"},
                    "function": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                            "description": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                            "parameters": BARE_TYPE,
                        },
                        "required": ["name"],
                        "additionalProperties": False,
                    },
                },
                "required": ["type", "function"],
                "additionalProperties": False,
            },
        },
        {"type": "null"},
    ],
    "description": "Functions the model may call, in OpenAI's shape: up to 128 with distinct names; `parameters` a "
    "JSON Schema in the structured-output subset (docs/tool-calling.md), `server: true` for one the service "
    "runs itself. Shown here: one function with the simplest parameters.",
    "default": None,
}
TOOL_CHOICE_FIELD = {
    "anyOf": [{"enum": ["none", "auto"]}, {"type": "null"}],
    "description": 'auto (the default with tools): answer or call; none: answer. With tools, also "required" (call '
    'one or more) or {"type": "function", "function": {"name": ...}} (call that one).',
    "default": None,
}


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _responses(document: dict[str, Any], settings: Settings, auth: bool, limited: bool) -> None:
    for path, method, operation in _operations(document):
        responses = operation.setdefault("responses", {})
        if method == "post":
            responses.setdefault("415", {"description": "The body is not declared as JSON (UTF-8)", **_ERROR})
        if path.endswith("/stream"):
            responses["200"]["content"] = {"text/event-stream": {"schema": SSE_EVENT}}
        elif path in STREAMABLE_PATHS:  # `"stream": true` in the body
            content = responses["200"]["content"]
            # The handler returns `Response | Stream`: Litestar writes the Stream as an empty schema beside the
            # JSON one, which would let any JSON through; the stream has its own media type.
            json_schema = content["application/json"]["schema"]
            content["application/json"]["schema"] = next(s for s in json_schema.get("oneOf", [json_schema]) if s)
            content["text/event-stream"] = {"schema": SSE_EVENT}
        if is_exempt(path, settings.auth_exempt_paths):
            continue
        if auth:
            operation["security"] = [{SECURITY_SCHEME: []}]
            responses.setdefault("401", {"description": "Missing or invalid API key; see WWW-Authenticate", **_ERROR})
        if limited:
            responses.setdefault(
                "429",
                {
                    "description": "Rate limit (LLM_RATE_LIMIT_PER_MINUTE), token budget (LLM_TOKENS_PER_MINUTE) or "
                    "overload; see Retry-After",
                    **_ERROR,
                },
            )
            if settings.state_url and settings.rate_limit_on_state_failure == "closed":
                responses.setdefault("503", {"description": _STATE_UNAVAILABLE, **_ERROR})
        if settings.state_url and path.startswith("/api/sessions"):
            responses.setdefault("503", {"description": _STATE_UNAVAILABLE, **_ERROR})


def _optional_bodies(document: dict[str, Any]) -> None:
    # A handler's `data: T | None = None` reads as a required body of T or null; what it means is a body
    # that may be left out (api/http/json_body.py lets such a route through without one).
    body = document["paths"]["/api/sessions"]["post"]["requestBody"]
    body["required"] = False
    schema = body["content"]["application/json"]["schema"]
    body["content"]["application/json"]["schema"] = next(s for s in schema["oneOf"] if s.get("type") != "null")


def correct_openapi(app: Litestar, settings: Settings, auth: bool, limited: bool = False) -> None:
    """Correct the document before it is first served; /openapi.json and the Swagger UI both read it.

    The corrected parts are put back as plain dicts, which Litestar's serializer passes through as they are.
    """
    openapi = app.openapi_schema
    document = openapi.to_schema()
    _, exact = msgspec.json.schema_components(_structs(), ref_template="#/components/schemas/{name}")
    components = document.setdefault("components", {})
    schemas_in_use = components.setdefault("schemas", {})
    schemas_in_use.update(exact)  # the stream events come along: the SSE description refers to them
    _settings_limits(schemas_in_use, settings)
    _optional_bodies(document)
    if auth:
        components["securitySchemes"] = {SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}}
    _responses(document, settings, auth, limited)
    openapi.paths, openapi.components = document["paths"], components
    _bound_token_ids_once_loaded(app, schemas_in_use["DetokenizeRequest"]["properties"]["tokens"]["items"])


def _bound_token_ids_once_loaded(app: Litestar, token_id: dict[str, Any]) -> None:
    """A token id's real bound is the model's vocabulary, known once it has loaded: then the document says so
    (for the default model; another allowed model's ids are checked against its own vocabulary)."""
    registry = app.state.service.registry

    def on_loaded(entry: ModelEntry) -> None:
        vocab_size = entry.vocab_size()
        if entry.spec.id != registry.default_model or vocab_size is None:
            return
        token_id["maximum"] = vocab_size - 1
        # Litestar renders the document on its first request and keeps that; render it anew with the bound.
        plugin: object = app.plugins.get("OpenAPIPlugin")
        if hasattr(plugin, "_openapi_schema"):
            plugin._openapi_schema = None

    registry.on_loaded.append(on_loaded)
