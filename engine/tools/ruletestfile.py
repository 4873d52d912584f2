"""The rule-test file format (``docs/rule-tests.md``): pydantic models of the document, and
``load_test_file``, which validates one file and loads what it names (topology, rulesets, core
settings). Every error names the file, the line and the path of the item
(``t.yaml: line 14: tests[0].expect.opened[0].state: 'outtage' is not one of …``), in the words of
``engine.model.wording``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from engine.core.settings import CoreSettings
from engine.errors import ConfigError
from engine.model.timeutil import Duration, format_time, parse_duration, parse_time
from engine.model.topology import Topology, load_topology, topology_from_dict
from engine.model.wording import Loc, dotted, one_of, problems, type_name
from engine.model.yamlsource import Locator, load_file
from engine.rules.schema import SEVERITIES, Ruleset, load_rulesets

__all__ = [
    "COUNTERS",
    "EVENTS",
    "START",
    "STATES",
    "Bound",
    "DurationBound",
    "Expect",
    "NotificationExpect",
    "OpenedExpect",
    "ResolvedExpect",
    "SetExpect",
    "Step",
    "TestCase",
    "TestFile",
    "TestFileError",
    "fmt_duration",
    "load_test_file",
]

START = parse_time("2026-01-01T00:00:00Z")
"""Virtual time of ``at: 0s`` in every test."""

State = Literal["outage", "degraded", "at_risk"]
Event = Literal["opened", "updated", "resolved"]
Counter = Literal[
    "alarms_raised",
    "alarms_cleared",
    "flapping",
    "incidents_opened",
    "incidents_resolved",
    "incidents_merged",
    "incidents_discarded",
    "incidents_held_by_maintenance",
    "storms",
    "pairs_completed",
    "pair_timeouts",
    "inhibited",
    "kpi_breaches",
]
STATES: tuple[str, ...] = get_args(State)
EVENTS: tuple[str, ...] = get_args(Event)
COUNTERS: tuple[str, ...] = get_args(Counter)
"""Engine counters (``Pipeline.summary()``) a test may check with ``counters``."""


class TestFileError(ConfigError):
    """A rule test file is wrong: ``source: line N: path: reason``."""

    __test__ = False  # not a pytest class


def fmt_duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


# --- value types --------------------------------------------------------------------------------


class _Model(BaseModel):
    """A part of the file: unknown keys refused, and a key given no value (``state:``) is an error,
    not the same as leaving the key out."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls._nullable:
            raise ValueError("expected a value, got null")
        return value


Text = Annotated[str, Field(min_length=1)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]


def _severity(value: str) -> str:
    if value not in SEVERITIES:
        raise ValueError(f"{value!r} is not one of {one_of(SEVERITIES)}")
    return value


Severity = Annotated[Text, AfterValidator(_severity)]


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number or a bound (at_least, at_most), got {type_name(value)}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


class Bound(_Model):
    """An exact value (a plain number in the file) or an inclusive range."""

    exact: Number | None = None
    at_least: Number | None = None
    at_most: Number | None = None

    @model_validator(mode="before")
    @classmethod
    def _exact(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            if not data:
                raise ValueError("expected at_least and/or at_most")
            return data
        return {"exact": cls.scalar(data)}

    @staticmethod
    def scalar(value: object) -> float:
        return _number(value)

    @staticmethod
    def fmt(value: float) -> str:
        return f"{value:g}"

    def check(self, value: float) -> str | None:
        lo, hi = self.at_least, self.at_most
        if self.exact is not None and value != self.exact:
            return f"expected {self.fmt(self.exact)}, got {self.fmt(value)}"
        if lo is not None and value < lo:
            return f"expected at least {self.fmt(lo)}, got {self.fmt(value)}"
        if hi is not None and value > hi:
            return f"expected at most {self.fmt(hi)}, got {self.fmt(value)}"
        return None


class DurationBound(Bound):
    """A bound of durations from the test's start: ``5m``, or ``{at_least: 30s, at_most: 2m}``."""

    exact: Duration | None = None
    at_least: Duration | None = None
    at_most: Duration | None = None

    @staticmethod
    def scalar(value: object) -> float:
        return parse_duration(value)

    @staticmethod
    def fmt(value: float) -> str:
        return fmt_duration(value)


class SetExpect(_Model):
    """``{count, includes, excludes}``; a plain list in the file is ``exact``: exactly that set."""

    count: Bound | None = None
    includes: frozenset[Text] = frozenset()
    excludes: frozenset[Text] = frozenset()

    @model_validator(mode="after")
    def _some(self) -> SetExpect:
        if not self.model_fields_set:
            raise ValueError("expected count, includes and/or excludes")
        return self

    def check(self, seen: set[str]) -> list[str]:
        out: list[str] = []
        if self.count is not None and (msg := self.count.check(len(seen))):
            out.append(f"count {msg}")
        if missing := sorted(self.includes - seen):
            out.append(f"missing {few(missing)}")
        if present := sorted(self.excludes & seen):
            out.append(f"unexpected {few(present)}")
        return out


def check_exact_set(expected: frozenset[str], seen: set[str]) -> list[str]:
    if seen == expected:
        return []
    missing, extra = sorted(expected - seen), sorted(seen - expected)
    parts = [f"missing {few(missing)}" if missing else "", f"unexpected {few(extra)}" if extra else ""]
    return ["not the expected set: " + "; ".join(p for p in parts if p)]


def few(keys: list[str], limit: int = 5, *, sep: str = ", ") -> str:
    shown = sep.join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


_LIST, _MAPPING = "<list>", "<mapping>"
_TAGS = frozenset({_LIST, _MAPPING, "[key]"})
"""Tags of the two shapes of a value that is a list or a mapping, and pydantic's marker of a mapping
key: parts of an error's ``loc`` that name no item of the file."""


def _shape(value: Any) -> str:
    return _MAPPING if isinstance(value, Mapping | BaseModel) else _LIST


SetOrList = Annotated[
    Annotated[frozenset[Text], Tag(_LIST)] | Annotated[SetExpect, Tag(_MAPPING)],
    Discriminator(_shape),
]


# --- expectations -------------------------------------------------------------------------------


class OpenedExpect(_Model):
    root: Text
    state: State | None = None
    priority: Bound | None = None
    score: Bound | None = None
    suppressed: SetOrList | None = None
    reason_contains: Text | None = None
    reasons: Annotated[dict[Text, Text], Field(min_length=1)] = Field(default_factory=dict)
    customers: Bound | None = None
    severity: Severity | None = None
    opened_at: DurationBound | None = None
    updates: Bound | None = None
    overrides: frozenset[Text] | None = None
    explanation_contains: Text | None = None


class ResolvedExpect(_Model):
    root: Text
    resolution: Literal["cleared", "merged"] | None = None
    at: DurationBound | None = None


class NotificationExpect(_Model):
    """One record of the notification stream, in order: its event and root, optionally when, the
    priority and the state it carried."""

    event: Event
    root: Text
    at: DurationBound | None = None
    priority: Bound | None = None
    state: State | None = None


class Expect(_Model):
    incidents: Bound | None = None
    opened: tuple[OpenedExpect, ...] = ()
    resolved: tuple[ResolvedExpect, ...] = ()
    not_opened: tuple[Text, ...] = ()
    dead_letters: Bound | None = None
    counters: Annotated[dict[Counter, Bound], Field(min_length=1)] = Field(default_factory=dict)
    notifications: tuple[NotificationExpect, ...] | None = None


# --- the timeline and the document --------------------------------------------------------------


def _not_empty(items: tuple[Any, ...]) -> tuple[Any, ...]:
    """A list that must have items (checked once they are valid: pydantic's ``min_length`` would
    also report a list whose items are wrong as empty)."""
    if not items:
        raise ValueError("must not be empty")
    return items


def _payload(value: Any) -> Any:
    if not isinstance(value, Mapping | str | list):
        raise ValueError(f"expected a mapping or a string, got {type_name(value)}")
    return value


def _ne_id(value: dict[str, Any]) -> dict[str, Any]:
    if "ne_id" not in value:
        raise ValueError("ne_id: field required")
    return value


class _Step(_Model):
    at: Duration
    alarm: Annotated[dict[str, Any], AfterValidator(_ne_id)] | None = None
    clear: Annotated[dict[str, Any], AfterValidator(_ne_id)] | None = None
    samples: dict[str, Any] | None = None
    topic: Text | None = None
    payload: Annotated[Any, AfterValidator(_payload)] = None

    @model_validator(mode="after")
    def _one_kind(self) -> _Step:
        kinds = [k for k in ("alarm", "clear", "samples", "payload") if k in self.model_fields_set]
        if len(kinds) != 1:
            raise ValueError("a step needs exactly one of alarm, clear, samples or topic+payload")
        if kinds == ["payload"] and self.topic is None:
            raise ValueError("a raw payload needs a 'topic'")
        return self


class _Test(_Model):
    name: Text
    timeline: Annotated[tuple[_Step, ...], AfterValidator(_not_empty)]
    expect: Expect


def _path_list(value: Any) -> Any:
    """One path or a list of them; none (``rulesets:`` left empty) is the built-in default."""
    return [value] if isinstance(value, str) else [] if value is None else value


def _path_or_mapping(value: Any) -> Any:
    if not isinstance(value, str | Mapping):
        raise ValueError(f"expected a path or a mapping, got {type_name(value)}")
    return value


class _File(_Model):
    _nullable = frozenset({"rulesets", "config"})  # `rulesets:` and `config:` left empty: the defaults
    topology: Annotated[Any, AfterValidator(_path_or_mapping)]
    rulesets: Annotated[tuple[Text, ...], BeforeValidator(_path_list)] = ()
    config: Any = None
    tests: Annotated[tuple[_Test, ...], AfterValidator(_not_empty)]


# --- the loaded form ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    at: float
    topic: str
    payload: Any  # a mapping (sent as JSON) or a string (sent as is: malformed input)


@dataclass(frozen=True)
class TestCase:
    name: str
    steps: tuple[Step, ...]
    expect: Expect

    __test__ = False


@dataclass(frozen=True)
class TestFile:
    path: Path
    topology: Topology
    rulesets: tuple[Ruleset, ...]
    settings: CoreSettings
    tests: tuple[TestCase, ...]

    __test__ = False


def load_test_file(path: Path) -> TestFile:
    """Parse and validate one test file. Raises ``TestFileError`` naming the file, line and item."""
    data, locator = load_file(path, TestFileError)
    fail = _Failer(path, locator)
    try:
        doc = _File.model_validate(data)
    except ValidationError as exc:  # the first in the file; a missing key after the others
        found = [
            (fail.line(loc) or sys.maxsize, reason == "field required", n, loc, reason)
            for n, (loc, reason) in enumerate(problems(exc, _File))
        ]
        *_, loc, reason = min(found)
        raise fail(loc, reason) from None
    topology = _topology(path, doc.topology, fail)
    try:
        rulesets = tuple(load_rulesets([path.parent / p for p in doc.rulesets] or None))
    except ConfigError as exc:
        raise fail(("rulesets",), f"bad ruleset: {exc}") from None
    try:
        settings = CoreSettings() if doc.config is None else CoreSettings.model_validate(doc.config)
    except ValidationError as exc:
        loc, reason = problems(exc, CoreSettings)[0]
        raise fail(("config", *loc), reason) from None
    tests = tuple(_test(t, ("tests", i), fail) for i, t in enumerate(doc.tests))
    names = [t.name for t in tests]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise fail(("tests", i, "name"), f"duplicate test name {name!r}")
    return TestFile(path, topology, rulesets, settings, tests)


class _Failer:
    """``TestFileError`` s of one file: ``line N: path: reason``."""

    def __init__(self, path: Path, locator: Locator) -> None:
        self.path, self.locator = path, locator

    def line(self, loc: Loc) -> int | None:
        return self.locator.line(_items(loc))

    def __call__(self, loc: Loc, reason: str) -> TestFileError:
        loc = _items(loc)
        line = self.locator.line(loc)
        where = dotted(loc)
        location = f"line {line}: {where}" if line and where else (f"line {line}" if line else where)
        return TestFileError(str(self.path), location, reason)


def _items(loc: Loc) -> Loc:
    """An error's ``loc`` without the parts that name no item of the file."""
    return tuple(p for p in loc if isinstance(p, int) or not (p in _TAGS or p.startswith("function-")))


def _topology(
    path: Path, value: str | Mapping[str, Any], fail: Callable[[Loc, str], TestFileError]
) -> Topology:
    where: Loc = ("topology",)
    if isinstance(value, str):
        target = path.parent / value
        if not target.is_file():
            raise fail(where, f"topology file not found: {target}")
        try:
            return load_topology(target)
        except ConfigError as exc:
            raise fail(where, f"bad topology: {exc}") from None
    try:
        return topology_from_dict(value, source=f"{path}: topology")
    except ConfigError as exc:
        detail = f"{exc.location}: {exc.reason}" if exc.location else exc.reason
        raise fail(where, f"bad topology: {detail}") from None


def _test(t: _Test, where: Loc, fail: Callable[[Loc, str], TestFileError]) -> TestCase:
    steps: list[Step] = []
    for i, s in enumerate(t.timeline):
        if steps and s.at < steps[-1].at:
            raise fail(
                (*where, "timeline", i, "at"),
                f"steps go back in time ({fmt_duration(s.at)} after {fmt_duration(steps[-1].at)}); "
                "set event_time in the alarm to deliver it late",
            )
        steps.append(_step(s))
    return TestCase(t.name, tuple(steps), t.expect)


def _step(s: _Step) -> Step:
    """The message a step sends: times filled in from ``at``, the default topic of its kind."""
    when = format_time(START + s.at)
    if "payload" in s.model_fields_set:
        assert s.topic is not None  # _Step._one_kind
        return Step(s.at, s.topic, s.payload)
    if s.samples is not None:
        payload = dict(s.samples)
        if isinstance(payload.get("samples"), list):  # a batch
            payload["samples"] = [
                {"time": when, **x} if isinstance(x, Mapping) else x for x in payload["samples"]
            ]
            default_topic = "soc/probes/batch"
        else:
            payload.setdefault("time", when)
            default_topic = f"soc/probes/{payload.get('probe_id', 'unknown')}"
        return Step(s.at, s.topic or default_topic, payload)
    body = s.alarm if s.alarm is not None else s.clear
    assert body is not None  # _Step._one_kind
    payload = {**body}
    payload.setdefault("event_time", when)
    if s.clear is not None:
        payload["severity"] = "cleared"
    return Step(s.at, s.topic or f"soc/alarms/{payload['ne_id']}", payload)
