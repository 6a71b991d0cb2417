"""Every invalid field of a request body at once, as JSON Schema validators report every failure.

msgspec (and so Litestar) stops at the first invalid value, so a client with three wrong fields would fix one
per round trip. When a body fails, each field is converted on its own, the way Litestar converts the whole
body (not strict), and each failure is reported in msgspec's own detail format, located at its full path, for
api/http/errors.py to word.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec
import msgspec.inspect as mi

from llm_inference.api.http import field_rules


def failures(annotation: Any, info: mi.Type, value: Any) -> list[str]:
    """msgspec-style details ("Expected `int`, got `str` - at `$.max_tokens`") for every invalid field of
    `value` as a body of type `annotation` (`info`: msgspec's description of it), in the body's order, then the
    missing fields; empty if it is valid field by field (a rule across fields is left to the whole body's
    conversion). A valid body costs one conversion and one walk, as a body that Litestar converts would."""
    try:
        msgspec.convert(value, annotation, strict=False, str_keys=True)
    except msgspec.ValidationError:
        return _failures(annotation, value, "")
    return [] if field_rules.lenient_only(info, value) is None else _failures(annotation, value, "")


def _bare(annotation: Any) -> Any:
    """The type under Annotated[...] and an optional's `| None`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [option for option in get_args(annotation) if option is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def located(detail: str, path: str) -> str:
    """msgspec's detail for a value found at `path` of the body, its own location (if any) appended."""
    message, _, inner = detail.partition(" - at `$")
    where = (path + inner.rstrip("`")).lstrip(".")
    return f"{message} - at `$.{where}`" if where else message


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _failures(annotation: Any, value: Any, path: str) -> list[str]:
    bare = _bare(annotation)
    if isinstance(bare, type) and issubclass(bare, msgspec.Struct) and isinstance(value, dict):
        return _struct_failures(bare, value, path)
    try:
        msgspec.convert(value, annotation, strict=False, str_keys=True)
    except msgspec.ValidationError as exc:
        if get_origin(bare) is list and isinstance(value, list):
            (item_type,) = get_args(bare)
            found = [f for i, item in enumerate(value) for f in _failures(item_type, item, f"{path}[{i}]")]
            if found:
                return found
        return [located(str(exc), path)]
    info = field_rules.request_type_info(annotation)
    lenient = field_rules.lenient_only(info, value) if info is not None else None
    if lenient is None:
        return []
    # lenient_only's path is relative to the value: "" for the value itself, "[2]" or "name" below it.
    where = path + lenient if not lenient or lenient.startswith("[") else _join(path, lenient)
    return [located("wrong type", where)]


def _struct_failures(struct: type[msgspec.Struct], value: dict[str, Any], path: str) -> list[str]:
    config = struct.__struct_config__
    fields = {field.encode_name: field for field in msgspec.structs.fields(struct)}
    found = []
    for name, item in value.items():
        field = fields.get(name)
        if field is not None:
            found += _failures(field.type, item, _join(path, name))
        elif config.forbid_unknown_fields and name != config.tag_field:
            found.append(located(f"Object contains unknown field `{name}`", path))
    for name, field in fields.items():
        if field.required and name not in value:
            found.append(located(f"Object missing required field `{name}`", path))
    return found
