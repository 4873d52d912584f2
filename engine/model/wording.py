"""Plain words for validation errors: one vocabulary for every document the engine reads.

Messages (MQTT, HTTP), topologies, rulesets, core and engine settings and rule-test files are all
validated by pydantic; this module turns its errors into the same one-line reasons everywhere, so a
missing field reads ``field required`` whether it is missing from an alarm or from a rule:

=====================  ==================================================================
pydantic error          reason
=====================  ==================================================================
missing                 ``field required``
extra_forbidden         ``unknown field`` (``unknown field (expected one of a, b)`` when the
                        model is known)
a wrong type            ``expected a mapping, got list`` (a value that would not convert is
                        shown: ``expected an integer, got 'ten'``)
literal / enum          ``'fatal' is not one of 'critical', 'major' or 'minor'``
ge / le / gt / lt       ``must be at least 1, got 0`` (at most, more than, less than)
too short / too long    ``must not be empty``; ``has 300 entries, limit is 256``
a validator's error     its own text (``Value error, `` dropped)
=====================  ==================================================================

Values are named by their type in YAML/JSON terms: ``null``, ``boolean``, ``integer``, ``number``,
``string``, ``list``, ``mapping`` (``json_type_name`` gives JSON Schema's words for the request
bodies the HTTP APIs check against their OpenAPI specifications). Locations are dotted paths with
indices (``rules[2].match.severity``); each caller adds its own file, line and item names around them.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

__all__ = [
    "EXPECTED",
    "Loc",
    "dotted",
    "first_problem",
    "json_type_name",
    "known_fields",
    "one_of",
    "problems",
    "reason",
    "type_name",
    "unknown_field",
]

Loc = tuple[int | str, ...]

_TYPE_NAMES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "list",
    tuple: "list",
    dict: "mapping",
    type(None): "null",
}


def type_name(value: object) -> str:
    """What ``value`` is, in YAML/JSON terms: null, boolean, integer, number, string, list, mapping."""
    name = _TYPE_NAMES.get(type(value))
    if name is not None:
        return name
    if isinstance(value, Mapping):
        return "mapping"
    return type(value).__name__


def json_type_name(value: object) -> str:
    """What ``value`` is in JSON Schema terms (boolean, number, string, object, array, null): the
    words of the OpenAPI specifications whose request bodies the HTTP APIs check by hand (TMF642,
    Alertmanager), so that their refusals read like their specs."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


_JSON_TYPE_NAMES: dict[type, str] = {dict: "object", list: "array", str: "string", type(None): "null"}


EXPECTED: Mapping[str, str] = types.MappingProxyType(
    {  # pydantic error type -> what was expected
        "string_type": "a string",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "an integer",
        "float_type": "a number",
        "float_parsing": "a number",
        "finite_number": "a finite number",
        "list_type": "a list",
        "tuple_type": "a list",
        "set_type": "a list",
        "frozen_set_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
        "dataclass_type": "a mapping",
    }
)
_SHOWN = frozenset({"bool_parsing", "int_parsing", "int_from_float", "float_parsing", "finite_number"})
"""Errors of a value that would not convert: the value itself is shown, not its type."""

_BOUNDS = {
    "greater_than_equal": "at least",
    "less_than_equal": "at most",
    "greater_than": "more than",
    "less_than": "less than",
}
_LIMIT = 15
"""``unknown field`` lists the known ones up to this many."""


def reason(err: ErrorDetails | Mapping[str, Any], model: type[BaseModel] | None = None) -> str:
    """One pydantic error in plain words. With the validated ``model``, an unknown field's reason
    names the known ones."""
    kind = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    value: Any = err.get("input")
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        loc = tuple(err["loc"])
        known = known_fields(model, loc[:-1]) if model is not None else None
        if known is not None and len(known) > _LIMIT:
            known = None
        return unknown_field(None, known)  # the location ends with the field's name
    if kind in ("literal_error", "enum"):
        expected = ctx.get("expected", "")
        if isinstance(value, str):
            return f"{value!r} is not one of {expected}"
        return f"expected one of {expected}, got {type_name(value)}"
    if kind == "float_type" and type(value) is int:
        return "number out of range"  # an integer too large for a float
    if kind in EXPECTED:
        got = repr(value) if kind in _SHOWN else type_name(value)
        return f"expected {EXPECTED[kind]}, got {got}"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "")
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"must be {_BOUNDS[kind]} {bound}, got {value!r}"
    if kind in ("string_too_short", "too_short"):
        least = ctx.get("min_length", 1)
        if least <= 1:
            return "must not be empty"
        unit = "characters" if kind == "string_too_short" else "entries"
        return f"must have at least {least} {unit}"
    if kind == "string_too_long":
        return f"is {len(value)} characters, limit is {ctx['max_length']}"
    if kind == "too_long":
        return f"has {len(value)} entries, limit is {ctx['max_length']}"
    if kind == "string_pattern_mismatch":
        return f"{value!r} does not match {ctx['pattern']}"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if msg.startswith("Input should be "):
        return f"must be {msg.removeprefix('Input should be ')}, got {type_name(value)}"
    return msg


def one_of(choices: Sequence[str]) -> str:
    """``'a', 'b' or 'c'``: choices as pydantic's literal errors list them."""
    quoted = [repr(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def unknown_field(name: object = None, known: Sequence[str] | None = None) -> str:
    """``unknown field``, ``unknown field 'colour'`` when the location does not end with the name,
    with ``(expected one of …)`` listing ``known``."""
    text = "unknown field" if name is None else f"unknown field {name!r}"
    if known:
        text += f" (expected one of {', '.join(known)})"
    return text


def dotted(loc: Sequence[int | str], prefix: str = "") -> str:
    """``('rules', 2, 'match')`` → ``rules[2].match``; pydantic's validator steps (``function-…``)
    and mapping-key markers (``[key]``) are left out."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]" or part.startswith("function-"):
            continue
        else:
            out += f".{part}" if out else part
    return out


def problems(exc: ValidationError, model: type[BaseModel] | None = None) -> list[tuple[Loc, str]]:
    """Every error of ``exc`` as ``(loc, reason)``, in pydantic's order."""
    return [(tuple(e["loc"]), reason(e, model)) for e in exc.errors(include_url=False)]


def first_problem(exc: ValidationError, model: type[BaseModel] | None = None) -> tuple[Loc, str]:
    """The first error of ``exc`` as ``(loc, reason)``."""
    return problems(exc, model)[0]


def known_fields(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[str, ...] | None:
    """The field names (aliases where set) of the model found at ``loc`` under ``model``, or None
    when the path does not lead to exactly one model (a union of models, a plain mapping)."""
    target: Any = model
    for part in loc:
        target = _step(target, part)
        if target is None:
            return None
    target = _unwrap(target)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        return None
    return tuple(f.alias or name for name, f in target.model_fields.items())


def _step(annotation: Any, part: int | str) -> Any:
    """The annotation one step (a field name, an index, a mapping key) inside ``annotation``."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(part, str):
            return None
        for name, f in annotation.model_fields.items():
            if part in (name, f.alias):
                return f.annotation
        return None
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if origin in (list, tuple, set, frozenset, Sequence) and isinstance(part, int) and len(args) == 1:
        return args[0]
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    return None


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, …]`` → X; ``X | None`` → X; other unions stay (they are ambiguous)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation
