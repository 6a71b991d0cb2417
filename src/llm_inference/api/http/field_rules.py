"""The rule a request field must meet, worded by us from the request schema itself.

Error messages state these rules rather than passing a library's wording through, so a dependency that
rewords its errors cannot change the API's documented messages.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec.inspect as mi

_PATH_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def _bounds(info: Any, unit: str = "") -> str:
    parts = []
    for name, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        value = getattr(info, name, None)
        if value is not None:
            parts.append(f"{symbol} {value}{unit}")
    return " and ".join(parts)


def _length(info: Any, unit: str) -> str:
    low, high = info.min_length, info.max_length
    if low is not None and high is not None:
        return f"of {low} to {high} {unit}"
    if low is not None:
        return f"of at least {low} {unit}" if low != 1 or unit != "characters" else "that is not empty"
    if high is not None:
        return f"of at most {high} {unit}"
    return ""


def describe(info: mi.Type) -> str:
    """A phrase for what a value of this type must be: "an integer >= 1", "one of user, assistant"."""
    match info:
        case mi.Metadata():
            return describe(info.type)
        case mi.BoolType():
            return "true or false"
        case mi.IntType():
            return " ".join(filter(None, ["an integer", _bounds(info)]))
        case mi.FloatType():
            return " ".join(filter(None, ["a number", _bounds(info)]))
        case mi.StrType():
            return " ".join(filter(None, ["a string", _length(info, "characters")]))
        case mi.ListType():
            items = describe(info.item_type)
            length = _length(info, "items")
            return " ".join(filter(None, ["an array", length, f"whose items are each {items}"]))
        case mi.LiteralType():
            return "one of " + ", ".join(str(value) for value in info.values)
        case mi.StructType() | mi.DictType():
            return "an object"
        case mi.UnionType():
            return " or ".join(describe(t) for t in info.types if not isinstance(t, mi.NoneType))
        case mi.NoneType():
            return "null"
    return "a valid value"


def field_type(root: mi.Type, path: str) -> mi.Type | None:
    """The type at a field path such as "messages[0].content" below a request struct, or None."""
    current: mi.Type | None = root
    for name, index in _PATH_STEP.findall(path):
        current = _step(current, name, index)
        if current is None:
            return None
    return current


def _tagged(info: mi.UnionType) -> list[mi.StructType]:
    """The options of a tagged union of structs (the message kinds, told apart by `role`), or []."""
    options = [t for t in info.types if not isinstance(t, mi.NoneType)]
    if options and all(isinstance(t, mi.StructType) and t.tag_field for t in options):
        return [t for t in options if isinstance(t, mi.StructType)]
    return []


def _step(info: mi.Type | None, name: str, index: str) -> mi.Type | None:
    if isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType) and name and (kinds := _tagged(info)) and name == kinds[0].tag_field:
        # The tag is no field of any option: its rule is to be one of the options' tags.
        return mi.LiteralType(tuple(sorted(str(kind.tag) for kind in kinds)))
    if isinstance(info, mi.UnionType):  # Optional fields, or a list-or-string like stop
        for option in info.types:
            found = _step(option, name, index)
            if found is not None:
                return found
        return None
    if index and isinstance(info, mi.ListType):
        return info.item_type
    if name and isinstance(info, mi.StructType):
        return next((field.type for field in info.fields if field.encode_name == name), None)
    return None


def field_names(info: mi.Type | None) -> list[str]:
    """The fields a struct (or an optional struct) accepts, in declaration order; for a tagged union, the tag
    and then every kind's fields."""
    if isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType) and (kinds := _tagged(info)):
        names = [str(kinds[0].tag_field)]
        for kind in kinds:
            names += [field.encode_name for field in kind.fields if field.encode_name not in names]
        return names
    if isinstance(info, mi.UnionType):
        info = next((t for t in info.types if isinstance(t, mi.StructType)), None)
    return [field.encode_name for field in info.fields] if isinstance(info, mi.StructType) else []


def request_type_info(annotation: Any) -> mi.Type | None:
    try:
        return mi.type_info(annotation)
    except (TypeError, ValueError):
        return None


def _lenient_only(info: mi.Type, value: Any, path: str) -> str | None:
    """Where `value` holds a bool or a number that only lenient conversion accepts (0 or "true" for a bool,
    "5" for a number), or None. An integral float such as 5.0 is an integer by JSON Schema, so it passes."""
    if isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType):
        if value is None and any(isinstance(t, mi.NoneType) for t in info.types):
            return None
        found = [_lenient_only(t, value, path) for t in info.types if not isinstance(t, mi.NoneType)]
        return None if None in found else found[0]
    if isinstance(info, mi.BoolType):
        return None if isinstance(value, bool) else path
    if isinstance(info, mi.IntType | mi.FloatType):
        return path if isinstance(value, str | bool) else None
    if isinstance(info, mi.ListType) and isinstance(value, list):
        return next(
            (p for i, item in enumerate(value) if (p := _lenient_only(info.item_type, item, f"{path}[{i}]"))), None
        )
    if isinstance(info, mi.StructType) and isinstance(value, dict):
        for field in info.fields:
            if field.encode_name in value:
                inner = f"{path}.{field.encode_name}" if path else field.encode_name
                found_path = _lenient_only(field.type, value[field.encode_name], inner)
                if found_path is not None:
                    return found_path
    return None


def lenient_only(info: mi.Type, value: Any) -> str | None:
    """The field path of the first value only lenient conversion would accept, or None."""
    return _lenient_only(info, value, "")
