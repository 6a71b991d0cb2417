"""Structured outputs: the constraint a request puts on its output (any JSON object, or a JSON Schema), checked
against the subset of JSON Schema every engine enforces, and carried to the engine in a canonical form.

The check is cheap and bounded (it stops at the first keyword outside the subset or past a limit), so the
surfaces run it while decoding the request; turning the schema into an engine's own mechanism (a grammar)
is the engine's job, off the event loop.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from llm_inference.errors import InvalidParameter, UnsupportedParameter

ConstraintKind = Literal["json_object", "json_schema"]

# Bounds a schema must keep, so that neither its grammar nor the per-token work of enforcing it can grow
# without limit (a hostile schema is refused, never compiled for minutes or matched slowly on every token).
MAX_DEPTH = 24  # nested subschemas
MAX_SUBSCHEMAS = 512
MAX_ENUM_VALUES = 128  # per enum
MAX_LITERAL_CHARS = 16_384  # enum and const values together, as JSON text
MAX_ITEMS_BOUND = 64  # minItems / maxItems
MAX_LENGTH_BOUND = 256  # minLength / maxLength

TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
FORMATS = ("date", "time", "date-time", "uuid")
# Keywords that only describe: accepted and left out of the canonical schema.
ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "discriminator",  # OpenAPI's hint on a oneOf; the oneOf itself is enforced
    }
)
SUPPORTED = (
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "format",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "$ref",
    "$defs",
    "definitions",
)
_DEFINITIONS = ("$defs", "definitions")
# Keywords a node may carry beside $ref, anyOf or oneOf (anything else would be silently dropped).
_ALONE = frozenset(_DEFINITIONS)


@dataclass(frozen=True, slots=True)
class OutputConstraint:
    """What the output must be: `json_object` any JSON object; `json_schema` an instance of `schema`, the
    canonical JSON text of a schema in the supported subset (annotations removed, key order kept, since it is
    the order the object's properties are generated in). `param` is where the client sent it, for errors."""

    kind: ConstraintKind
    schema: str | None = None
    param: str = "response_format"

    @property
    def cache_key(self) -> tuple[str, str | None]:
        return (self.kind, self.schema)


def json_object_constraint(param: str) -> OutputConstraint:
    return OutputConstraint("json_object", None, param)


def json_schema_constraint(schema: Any, param: str) -> OutputConstraint:
    """The constraint for a client's JSON Schema; InvalidParameter for a malformed schema, UnsupportedParameter
    (both naming the keyword's path below `param`) for one outside the subset or past a bound."""
    checker = _Checker(schema, param)
    canonical = checker.node(schema, param, depth=0)
    return OutputConstraint("json_schema", json.dumps(canonical, ensure_ascii=False, separators=(",", ":")), param)


def _unsupported(path: str, why: str) -> UnsupportedParameter:
    return UnsupportedParameter(f"{path}: {why}", param=path)


def _invalid(path: str, why: str) -> InvalidParameter:
    return InvalidParameter(f"{path}: {why}", param=path)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    def __init__(self, root: Any, param: str) -> None:
        self.root = root
        self.root_param = param
        self.subschemas = 0
        self.literal_chars = 0

    def node(self, schema: Any, path: str, depth: int) -> dict[str, Any]:
        if not isinstance(schema, dict):
            raise _invalid(path, "must be a JSON Schema object")
        self.subschemas += 1
        if self.subschemas > MAX_SUBSCHEMAS:
            raise _unsupported(path, f"the schema has more than {MAX_SUBSCHEMAS} subschemas")
        if depth > MAX_DEPTH:
            raise _unsupported(path, f"the schema nests deeper than {MAX_DEPTH} levels")
        for key in schema:
            if key not in ANNOTATIONS and key not in SUPPORTED:
                raise _unsupported(
                    f"{path}.{key}",
                    "is not supported by structured outputs; supported keywords are " + ", ".join(SUPPORTED),
                )
        out: dict[str, Any] = {}
        for name in _DEFINITIONS:
            if name in schema:
                out[name] = self.definitions(schema[name], f"{path}.{name}", depth)
        if "$ref" in schema or "anyOf" in schema or "oneOf" in schema:
            return out | self.alternative(schema, path, depth)
        types = self.types(schema, path)
        if len(types) > 1:
            for key in schema:
                if key not in ANNOTATIONS and key not in _ALONE and key != "type":
                    raise _unsupported(f"{path}.{key}", "cannot be combined with a list of types; use anyOf")
            return out | {"type": types}
        if types:
            out["type"] = types[0]
        kind = types[0] if types else None
        if "const" in schema or "enum" in schema:
            return out | self.literals(schema, path)
        if kind in (None, "object") and any(k in schema for k in ("properties", "additionalProperties", "required")):
            return out | self.object(schema, path, depth)
        if kind in (None, "array") and any(k in schema for k in ("items", "minItems", "maxItems")):
            return out | self.array(schema, path, depth)
        if kind in (None, "string") and any(k in schema for k in ("format", "minLength", "maxLength")):
            return out | {"type": "string"} | self.string(schema, path)
        self.only_type(schema, path, kind)
        return out

    def only_type(self, schema: dict[str, Any], path: str, kind: str | None) -> None:
        """Keywords of another type than the one declared: they would not constrain anything here."""
        for key in schema:
            if key not in ANNOTATIONS and key not in _ALONE and key != "type":
                raise _unsupported(f"{path}.{key}", f"does not apply to type {kind!r}")

    def definitions(self, value: Any, path: str, depth: int) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _invalid(path, "must be an object of named schemas")
        return {name: self.node(sub, f"{path}.{name}", depth + 1) for name, sub in value.items()}

    def alternative(self, schema: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        present = [k for k in ("$ref", "anyOf", "oneOf") if k in schema]
        for key in schema:
            if key not in ANNOTATIONS and key not in _ALONE and key != present[0]:
                raise _unsupported(f"{path}.{key}", f"cannot be combined with {present[0]}")
        keyword = present[0]
        if keyword == "$ref":
            return {"$ref": self.ref(schema["$ref"], f"{path}.$ref")}
        options = schema[keyword]
        if not isinstance(options, list) or not options:
            raise _invalid(f"{path}.{keyword}", "must be a non-empty array of schemas")
        return {keyword: [self.node(sub, f"{path}.{keyword}[{i}]", depth + 1) for i, sub in enumerate(options)]}

    def ref(self, ref: Any, path: str) -> str:
        if not isinstance(ref, str):
            raise _invalid(path, "must be a string")
        parts = ref.split("/")
        if len(parts) != 3 or parts[0] != "#" or parts[1] not in _DEFINITIONS:
            raise _unsupported(path, f"{ref!r}: only references to this schema's $defs (#/$defs/Name) are supported")
        target = self.root.get(parts[1]) if isinstance(self.root, dict) else None
        if not isinstance(target, dict) or parts[2] not in target:
            raise _invalid(path, f"{ref!r} names no schema in {parts[1]}")
        return ref

    def types(self, schema: dict[str, Any], path: str) -> list[str]:
        if "type" not in schema:
            return []
        value = schema["type"]
        names = value if isinstance(value, list) else [value]
        if not names or len(set(map(str, names))) != len(names) or any(n not in TYPES for n in names):
            raise _invalid(f"{path}.type", "must be one of " + ", ".join(TYPES) + " (or a list of distinct ones)")
        return list(names)

    def literals(self, schema: dict[str, Any], path: str) -> dict[str, Any]:
        for key in schema:
            if key not in ANNOTATIONS and key not in _ALONE and key not in ("type", "enum", "const"):
                raise _unsupported(f"{path}.{key}", "cannot be combined with enum or const")
        if "const" in schema and "enum" in schema:
            raise _unsupported(f"{path}.const", "cannot be combined with enum")
        if "const" in schema:
            self.literal_text(schema["const"], f"{path}.const")
            return {"const": schema["const"]}
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise _invalid(f"{path}.enum", "must be a non-empty array")
        if len(values) > MAX_ENUM_VALUES:
            raise _unsupported(f"{path}.enum", f"{len(values)} values exceed the limit of {MAX_ENUM_VALUES}")
        for i, value in enumerate(values):
            self.literal_text(value, f"{path}.enum[{i}]")
        return {"enum": values}

    def literal_text(self, value: Any, path: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise _invalid(path, "must be a JSON value")
        self.literal_chars += len(json.dumps(value))
        if self.literal_chars > MAX_LITERAL_CHARS:
            raise _unsupported(path, f"enum and const values exceed {MAX_LITERAL_CHARS} characters in all")

    def object(self, schema: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object"}
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise _invalid(f"{path}.properties", "must be an object of schemas")
        out["properties"] = {
            name: self.node(sub, f"{path}.properties.{name}", depth + 1) for name, sub in properties.items()
        }
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(n, str) for n in required):
            raise _invalid(f"{path}.required", "must be an array of property names")
        for i, name in enumerate(required):
            if name not in properties:
                raise _unsupported(f"{path}.required[{i}]", f"{name!r} is not among the properties")
        if required:
            out["required"] = required
        extra = schema.get("additionalProperties", False)
        if isinstance(extra, dict):
            out["additionalProperties"] = self.node(extra, f"{path}.additionalProperties", depth + 1)
        elif isinstance(extra, bool):
            # Absent means any in JSON Schema; only the declared properties are generated then, which is an
            # instance all the same. true asks for the freedom to add more.
            out["additionalProperties"] = extra
        else:
            raise _invalid(f"{path}.additionalProperties", "must be true, false or a schema")
        self.no_others(schema, path, ("properties", "required", "additionalProperties"))
        return out

    def array(self, schema: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array"}
        # Without items, the bounds still need an item rule: any value (the grammar's generic one).
        out["items"] = self.node(schema.get("items", {}), f"{path}.items", depth + 1)
        out |= self.bounds(schema, path, "minItems", "maxItems", MAX_ITEMS_BOUND)
        self.no_others(schema, path, ("items", "minItems", "maxItems"))
        return out

    def string(self, schema: dict[str, Any], path: str) -> dict[str, Any]:
        if "format" in schema:
            if schema["format"] not in FORMATS:
                raise _unsupported(
                    f"{path}.format", f"{schema['format']!r} is not supported; supported are " + ", ".join(FORMATS)
                )
            self.no_others(schema, path, ("format",))
            return {"format": schema["format"]}
        out = self.bounds(schema, path, "minLength", "maxLength", MAX_LENGTH_BOUND)
        self.no_others(schema, path, ("minLength", "maxLength"))
        return out

    def bounds(self, schema: dict[str, Any], path: str, low_key: str, high_key: str, limit: int) -> dict[str, int]:
        """A pair of length bounds (minItems/maxItems, minLength/maxLength), each checked, low <= high."""
        low = self.bound(schema, low_key, path, limit)
        high = self.bound(schema, high_key, path, limit)
        if low is not None and high is not None and low > high:
            raise _invalid(f"{path}.{low_key}", f"{low} is more than {high_key} {high}")
        return {key: value for key, value in ((low_key, low), (high_key, high)) if value is not None}

    def bound(self, schema: dict[str, Any], key: str, path: str, limit: int) -> int | None:
        if key not in schema:
            return None
        value = schema[key]
        if not _is_int(value) or value < 0:
            raise _invalid(f"{path}.{key}", "must be an integer >= 0")
        if value > limit:
            raise _unsupported(f"{path}.{key}", f"{value} exceeds the limit of {limit}")
        return int(value)

    def no_others(self, schema: dict[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        for key in schema:
            if key not in ANNOTATIONS and key not in _ALONE and key != "type" and key not in allowed:
                raise _unsupported(f"{path}.{key}", f"does not apply together with {', '.join(allowed)}")
