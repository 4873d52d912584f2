"""One vocabulary for validation errors (``engine.model.wording``): every pydantic error kind in plain
words, the field names an unknown field could have been, and no other module reading pydantic's
error details itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.model.wording import (
    dotted,
    json_type_name,
    known_fields,
    problems,
    reason,
    type_name,
    unknown_field,
)

ENGINE = Path(__file__).resolve().parents[1] / "engine"


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    colour: str = "red"
    size: int = 1


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, Field(min_length=1, max_length=5)] = "x"
    count: Annotated[int, Field(ge=1, le=10)] = 1
    weight: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    flag: bool = False
    kind: Literal["a", "b"] = "a"
    items: Annotated[list[str], Field(max_length=2)] = []
    inner: _Inner | None = None
    inners: list[_Inner] = []
    by_name: dict[str, _Inner] = {}
    code: Annotated[str, Field(pattern=r"^[a-z]+$")] = "a"
    checked: int = 0

    @field_validator("checked")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"{v} is odd")
        return v


def _one(data: dict[str, object]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        _Doc.model_validate(data)
    ((loc, text),) = problems(info.value, _Doc)
    return dotted(loc), text


@pytest.mark.parametrize(
    ("data", "where", "says"),
    [
        (
            {"nme": "x"},
            "nme",
            "unknown field (expected one of name, count, weight, flag, kind, items, inner, "
            "inners, by_name, code, checked)",
        ),
        ({"inners": [{}, {"shade": 1}]}, "inners[1].shade", "unknown field (expected one of colour, size)"),
        ({"by_name": {"k": {"shade": 1}}}, "by_name.k.shade", "unknown field (expected one of colour, size)"),
        ({"inner": {"size": None}}, "inner.size", "expected an integer, got null"),
        ({"name": 3}, "name", "expected a string, got integer"),
        ({"name": ""}, "name", "must not be empty"),
        ({"name": "toolong"}, "name", "is 7 characters, limit is 5"),
        ({"count": 0}, "count", "must be at least 1, got 0"),
        ({"count": 11}, "count", "must be at most 10, got 11"),
        ({"count": "3"}, "count", "expected an integer, got string"),
        ({"weight": 0.0}, "weight", "must be more than 0, got 0.0"),
        ({"weight": float("nan")}, "weight", "expected a finite number, got nan"),
        ({"flag": "yes"}, "flag", "expected true or false, got string"),
        ({"kind": "c"}, "kind", "'c' is not one of 'a' or 'b'"),
        ({"kind": 1}, "kind", "expected one of 'a' or 'b', got integer"),
        ({"items": "a"}, "items", "expected a list, got string"),
        ({"items": ["a", "b", "c"]}, "items", "has 3 entries, limit is 2"),
        ({"inner": [1]}, "inner", "expected a mapping, got list"),
        ({"code": "A1"}, "code", "'A1' does not match ^[a-z]+$"),
        ({"checked": 3}, "checked", "3 is odd"),
    ],
)
def test_each_error_kind_reads_the_same_everywhere(data: dict[str, object], where: str, says: str) -> None:
    """Each pydantic error kind has one wording, and its location is a dotted path with indices."""
    assert _one(data) == (where, says)


def test_missing_field_and_unknown_field_without_a_model() -> None:
    """A missing field is ``field required`` at its own path; without the model an unknown field is
    said without the list of known ones."""
    with pytest.raises(ValidationError) as info:
        _Inner.model_validate({"shade": 1})
    assert problems(info.value) == [(("shade",), "unknown field")]
    assert (
        reason({"type": "missing", "loc": ("a",), "msg": "Field required", "input": {}}) == "field required"
    )


def test_type_names_and_helpers() -> None:
    """Values are named in YAML/JSON terms; ``dotted`` drops validator steps and key markers."""
    values: tuple[object, ...] = (None, True, 1, 1.5, "s", [], (), {})
    assert [type_name(v) for v in values] == [
        "null",
        "boolean",
        "integer",
        "number",
        "string",
        "list",
        "list",
        "mapping",
    ]
    assert [json_type_name(v) for v in values] == [
        "null",
        "boolean",
        "number",
        "number",
        "string",
        "array",
        "tuple",
        "object",
    ]
    assert dotted(("rules", 2, "function-after[_check()]", "match", "[key]")) == "rules[2].match"
    assert dotted((0, "x"), "samples") == "samples[0].x"
    assert (
        unknown_field("colour", ("ne_id", "site")) == "unknown field 'colour' (expected one of ne_id, site)"
    )
    assert known_fields(_Doc, ("inners", 0)) == ("colour", "size")
    assert known_fields(_Doc, ("inner",)) == ("colour", "size")
    assert known_fields(_Doc, ("name",)) is None


def test_no_other_module_words_pydantic_errors() -> None:
    """Turning pydantic errors into words is written once: no module but ``engine.model.wording``
    reads an error's message or rewrites pydantic's own phrases."""
    pattern = re.compile(r"""\[["']msg["']\]|Value error, |Input should be""")
    wording = sorted(
        str(p.relative_to(ENGINE))
        for p in ENGINE.rglob("*.py")
        if p.name != "wording.py" and pattern.search(p.read_text(encoding="utf-8"))
    )
    assert wording == []
