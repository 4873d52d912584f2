"""Rule tests: ``engine rules test FILE…`` replays small timelines on the virtual clock and checks
the incident records against expectations. The format is documented in ``docs/rule-tests.md``.

Each test case runs on a fresh :class:`~engine.core.pipeline.Pipeline`: steps are fed in order at
``start + at``, due timers fire between them (as in ``engine/tools/replay.py``), then the pipeline is
drained so the final ``resolved`` records appear. Exit status: 0 all passed, 1 a test failed,
2 a test file is broken (its errors name the file, the line and what is wrong).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
import yaml

from engine.core.pipeline import Pipeline
from engine.core.settings import CoreSettings, core_settings_from_data
from engine.errors import ConfigError, EngineError
from engine.model.timeutil import format_time, parse_duration, parse_time
from engine.model.topology import Topology, load_topology, topology_from_dict
from engine.model.yamlsource import Locator, load_file
from engine.rules.schema import SEVERITIES, Ruleset, load_rulesets
from engine.service.cliargs import Parser, input_path
from engine.service.terminal import printable

START = parse_time("2026-01-01T00:00:00Z")
"""Virtual time of ``at: 0s`` in every test."""

Path_ = tuple[str | int, ...]
EVENTS = ("opened", "updated", "resolved")
STATES = ("outage", "degraded", "at_risk")


class TestFileError(ConfigError):
    """A rule test file is wrong: ``source: line N: path: reason``."""

    __test__ = False  # not a pytest class


# --- the parsed form ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """An exact value or an inclusive range; ``fmt`` renders values in messages."""

    exact: float | None = None
    at_least: float | None = None
    at_most: float | None = None
    fmt: Callable[[float], str] = field(default=lambda v: f"{v:g}", compare=False)

    def check(self, value: float) -> str | None:
        if self.exact is not None and value != self.exact:
            return f"expected {self.fmt(self.exact)}, got {self.fmt(value)}"
        if self.at_least is not None and value < self.at_least:
            return f"expected at least {self.fmt(self.at_least)}, got {self.fmt(value)}"
        if self.at_most is not None and value > self.at_most:
            return f"expected at most {self.fmt(self.at_most)}, got {self.fmt(value)}"
        return None


@dataclass(frozen=True)
class SetExpect:
    exact: frozenset[str] | None = None
    count: Bound | None = None
    includes: frozenset[str] = frozenset()
    excludes: frozenset[str] = frozenset()

    def check(self, seen: set[str]) -> list[str]:
        out: list[str] = []
        if self.exact is not None and seen != self.exact:
            missing, extra = sorted(self.exact - seen), sorted(seen - self.exact)
            parts = [
                f"missing {_few(missing)}" if missing else "",
                f"unexpected {_few(extra)}" if extra else "",
            ]
            out.append("not the expected set: " + "; ".join(p for p in parts if p))
        if self.count is not None and (msg := self.count.check(len(seen))):
            out.append(f"count {msg}")
        if missing := sorted(self.includes - seen):
            out.append(f"missing {_few(missing)}")
        if present := sorted(self.excludes & seen):
            out.append(f"unexpected {_few(present)}")
        return out


@dataclass(frozen=True)
class OpenedExpect:
    root: str
    state: str | None = None
    priority: Bound | None = None
    score: Bound | None = None
    suppressed: SetExpect | None = None
    reason_contains: str | None = None
    reasons: tuple[tuple[str, str], ...] = ()  # (suppressed alarm, text its reason contains)
    customers: Bound | None = None
    severity: str | None = None
    opened_at: Bound | None = None
    updates: Bound | None = None
    overrides: frozenset[str] | None = None
    explanation_contains: str | None = None


@dataclass(frozen=True)
class ResolvedExpect:
    root: str
    resolution: str | None = None
    at: Bound | None = None


@dataclass(frozen=True)
class NotificationExpect:
    """One record of the notification stream, in order: its event and root, optionally when, the
    priority and the state it carried."""

    event: str
    root: str
    at: Bound | None = None
    priority: Bound | None = None
    state: str | None = None


COUNTERS = (
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
)
"""Engine counters (``Pipeline.summary()``) a test may check with ``counters``."""


@dataclass(frozen=True)
class Expect:
    incidents: Bound | None = None
    opened: tuple[OpenedExpect, ...] = ()
    resolved: tuple[ResolvedExpect, ...] = ()
    not_opened: tuple[str, ...] = ()
    dead_letters: Bound | None = None
    counters: tuple[tuple[str, Bound], ...] = ()
    notifications: tuple[NotificationExpect, ...] | None = None


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


# --- parsing ------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, path: Path, locator: Locator) -> None:
        self.path = path
        self.loc = locator

    def fail(self, where: Path_, reason: str) -> TestFileError:
        line = self.loc.line(where)
        dotted = _dotted(where)
        location = f"line {line}: {dotted}" if line and dotted else (f"line {line}" if line else dotted)
        return TestFileError(str(self.path), location, reason)

    def mapping(self, value: Any, where: Path_, allowed: Sequence[str], what: str = "key") -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail(
                    (*where, key), f"unknown {what} {key!r} (expected one of {', '.join(allowed)})"
                )
        return dict(value)

    def string(self, value: Any, where: Path_) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a non-empty string, got {_kind(value)}")
        return value

    def strings(self, value: Any, where: Path_) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list of strings, got {_kind(value)}")
        return [self.string(v, (*where, i)) for i, v in enumerate(value)]

    def number(self, value: Any, where: Path_) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"expected a number, got {_kind(value)}")
        return float(value)

    def duration(self, value: Any, where: Path_) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.fail(where, f"bad duration: {exc}") from None

    def bound(self, value: Any, where: Path_, *, duration: bool = False) -> Bound:
        conv = self.duration if duration else self.number
        fmt: Callable[[float], str] = _fmt_duration if duration else (lambda v: f"{v:g}")
        if isinstance(value, Mapping):
            m = self.mapping(value, where, ("at_least", "at_most"), "bound")
            if not m:
                raise self.fail(where, "expected at_least and/or at_most")
            lo = conv(m["at_least"], (*where, "at_least")) if "at_least" in m else None
            hi = conv(m["at_most"], (*where, "at_most")) if "at_most" in m else None
            return Bound(at_least=lo, at_most=hi, fmt=fmt)
        return Bound(exact=conv(value, where), fmt=fmt)

    # the document ------------------------------------------------------------------------------
    def document(self, data: Any) -> TestFile:
        doc = self.mapping(data, (), ("topology", "rulesets", "config", "tests"))
        if "topology" not in doc:
            raise self.fail((), "missing 'topology' (a path relative to this file, or a mapping)")
        topology = self.topology(doc["topology"])
        rulesets = self.rulesets(doc.get("rulesets"))
        settings = self.settings(doc.get("config"))
        if "tests" not in doc:
            raise self.fail((), "missing 'tests'")
        raw_tests = doc["tests"]
        if not isinstance(raw_tests, list) or not raw_tests:
            raise self.fail(("tests",), f"expected a non-empty list of tests, got {_kind(raw_tests)}")
        tests = tuple(self.test(t, ("tests", i)) for i, t in enumerate(raw_tests))
        names = [t.name for t in tests]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise self.fail(("tests", i, "name"), f"duplicate test name {name!r}")
        return TestFile(self.path, topology, rulesets, settings, tests)

    def topology(self, value: Any) -> Topology:
        where: Path_ = ("topology",)
        if isinstance(value, str):
            target = self.path.parent / value
            if not target.is_file():
                raise self.fail(where, f"topology file not found: {target}")
            try:
                return load_topology(target)
            except ConfigError as exc:
                raise self.fail(where, f"bad topology: {exc}") from None
        if isinstance(value, Mapping):
            try:
                return topology_from_dict(value, source=f"{self.path}: topology")
            except ConfigError as exc:
                detail = f"{exc.location}: {exc.reason}" if exc.location else exc.reason
                raise self.fail(where, f"bad topology: {detail}") from None
        raise self.fail(where, f"expected a path or a mapping, got {_kind(value)}")

    def rulesets(self, value: Any) -> tuple[Ruleset, ...]:
        where: Path_ = ("rulesets",)
        if value is None:
            paths: list[str] = []
        elif isinstance(value, str):
            paths = [self.string(value, where)]
        else:
            paths = self.strings(value, where)
        try:
            return tuple(load_rulesets([self.path.parent / p for p in paths] or None))
        except ConfigError as exc:
            raise self.fail(where, f"bad ruleset: {exc}") from None

    def settings(self, value: Any) -> CoreSettings:
        try:
            return core_settings_from_data(value, str(self.path))
        except ConfigError as exc:
            parts = [int(p) if p.isdigit() else p for p in exc.location.split(".") if p]
            raise self.fail(("config", *parts), exc.reason) from None

    def test(self, value: Any, where: Path_) -> TestCase:
        t = self.mapping(value, where, ("name", "timeline", "expect"))
        for key in ("name", "timeline", "expect"):
            if key not in t:
                raise self.fail(where, f"missing {key!r}")
        name = self.string(t["name"], (*where, "name"))
        timeline = t["timeline"]
        if not isinstance(timeline, list) or not timeline:
            raise self.fail(
                (*where, "timeline"), f"expected a non-empty list of steps, got {_kind(timeline)}"
            )
        steps: list[Step] = []
        for i, raw in enumerate(timeline):
            step = self.step(raw, (*where, "timeline", i))
            if steps and step.at < steps[-1].at:
                raise self.fail(
                    (*where, "timeline", i, "at"),
                    f"steps go back in time ({_fmt_duration(step.at)} after {_fmt_duration(steps[-1].at)}); "
                    "set event_time in the alarm to deliver it late",
                )
            steps.append(step)
        return TestCase(name, tuple(steps), self.expect(t["expect"], (*where, "expect")))

    def step(self, value: Any, where: Path_) -> Step:
        s = self.mapping(value, where, ("at", "alarm", "clear", "samples", "topic", "payload"), "step key")
        if "at" not in s:
            raise self.fail(where, "missing 'at' (a duration from the test's start)")
        at = self.duration(s["at"], (*where, "at"))
        kinds = [k for k in ("alarm", "clear", "samples", "payload") if k in s]
        if len(kinds) != 1:
            raise self.fail(where, "a step needs exactly one of alarm, clear, samples or topic+payload")
        kind = kinds[0]
        topic = self.string(s["topic"], (*where, "topic")) if "topic" in s else None
        when = format_time(START + at)
        body = s[kind]
        if kind == "payload":
            if topic is None:
                raise self.fail(where, "a raw payload needs a 'topic'")
            if not isinstance(body, Mapping | str | list):
                raise self.fail((*where, kind), f"expected a mapping or a string, got {_kind(body)}")
            return Step(at, topic, body)
        if not isinstance(body, Mapping):
            raise self.fail((*where, kind), f"expected a mapping, got {_kind(body)}")
        payload = dict(body)
        if kind == "samples":
            if isinstance(payload.get("samples"), list):  # a batch
                payload["samples"] = [
                    {"time": when, **x} if isinstance(x, Mapping) else x for x in payload["samples"]
                ]
                default_topic = "soc/probes/batch"
            else:
                payload.setdefault("time", when)
                default_topic = f"soc/probes/{payload.get('probe_id', 'unknown')}"
        else:
            if "ne_id" not in payload:
                raise self.fail((*where, kind), "missing 'ne_id'")
            payload.setdefault("event_time", when)
            if kind == "clear":
                payload["severity"] = "cleared"
            default_topic = f"soc/alarms/{payload['ne_id']}"
        return Step(at, topic or default_topic, payload)

    def expect(self, value: Any, where: Path_) -> Expect:
        e = self.mapping(
            value,
            where,
            ("incidents", "opened", "resolved", "not_opened", "dead_letters", "counters", "notifications"),
            "expectation",
        )
        return Expect(
            incidents=self.bound(e["incidents"], (*where, "incidents")) if "incidents" in e else None,
            opened=tuple(
                self.opened(x, (*where, "opened", i)) for i, x in enumerate(self.items(e, "opened", where))
            ),
            resolved=tuple(
                self.resolved(x, (*where, "resolved", i))
                for i, x in enumerate(self.items(e, "resolved", where))
            ),
            not_opened=tuple(self.strings(e["not_opened"], (*where, "not_opened")))
            if "not_opened" in e
            else (),
            dead_letters=self.bound(e["dead_letters"], (*where, "dead_letters"))
            if "dead_letters" in e
            else None,
            counters=self.counters(e["counters"], (*where, "counters")) if "counters" in e else (),
            notifications=tuple(
                self.notification(x, (*where, "notifications", i))
                for i, x in enumerate(self.items(e, "notifications", where))
            )
            if "notifications" in e
            else None,
        )

    def notification(self, value: Any, where: Path_) -> NotificationExpect:
        n = self.mapping(value, where, ("event", "root", "at", "priority", "state"), "key")
        for key in ("event", "root"):
            if key not in n:
                raise self.fail(where, f"missing {key!r} (each notification names its event and root)")
        event = self.string(n["event"], (*where, "event"))
        if event not in EVENTS:
            raise self.fail((*where, "event"), f"{event!r} is not one of {', '.join(EVENTS)}")
        state = self.state(n["state"], (*where, "state")) if "state" in n else None
        return NotificationExpect(
            event=event,
            root=self.string(n["root"], (*where, "root")),
            at=self.bound(n["at"], (*where, "at"), duration=True) if "at" in n else None,
            priority=self.bound(n["priority"], (*where, "priority")) if "priority" in n else None,
            state=state,
        )

    def counters(self, value: Any, where: Path_) -> tuple[tuple[str, Bound], ...]:
        m = self.mapping(value, where, COUNTERS, "counter")
        if not m:
            raise self.fail(where, f"expected one or more of {', '.join(COUNTERS)}")
        return tuple((name, self.bound(m[name], (*where, name))) for name in m)

    def items(self, e: Mapping[str, Any], key: str, where: Path_) -> list[Any]:
        value = e.get(key, [])
        if not isinstance(value, list):
            raise self.fail((*where, key), f"expected a list, got {_kind(value)}")
        return value

    def opened(self, value: Any, where: Path_) -> OpenedExpect:
        keys = (
            "root",
            "state",
            "priority",
            "score",
            "suppressed",
            "reason_contains",
            "reasons",
            "customers",
            "severity",
            "opened_at",
            "updates",
            "overrides",
            "explanation_contains",
        )
        o = self.mapping(value, where, keys, "expectation")
        if "root" not in o:
            raise self.fail(where, "missing 'root' (the alarm key of the incident's root)")
        return OpenedExpect(
            root=self.string(o["root"], (*where, "root")),
            state=self.state(o["state"], (*where, "state")) if "state" in o else None,
            priority=self.bound(o["priority"], (*where, "priority")) if "priority" in o else None,
            score=self.bound(o["score"], (*where, "score")) if "score" in o else None,
            suppressed=self.set_expect(o["suppressed"], (*where, "suppressed"))
            if "suppressed" in o
            else None,
            reason_contains=(
                self.string(o["reason_contains"], (*where, "reason_contains"))
                if "reason_contains" in o
                else None
            ),
            reasons=self.reasons(o["reasons"], (*where, "reasons")) if "reasons" in o else (),
            customers=self.bound(o["customers"], (*where, "customers")) if "customers" in o else None,
            severity=self.severity(o["severity"], (*where, "severity")) if "severity" in o else None,
            opened_at=self.bound(o["opened_at"], (*where, "opened_at"), duration=True)
            if "opened_at" in o
            else None,
            updates=self.bound(o["updates"], (*where, "updates")) if "updates" in o else None,
            overrides=frozenset(self.strings(o["overrides"], (*where, "overrides")))
            if "overrides" in o
            else None,
            explanation_contains=self.string(o["explanation_contains"], (*where, "explanation_contains"))
            if "explanation_contains" in o
            else None,
        )

    def reasons(self, value: Any, where: Path_) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, Mapping) or not value:
            raise self.fail(where, f"expected a mapping of alarm key to reason text, got {_kind(value)}")
        return tuple((self.string(k, where), self.string(v, (*where, str(k)))) for k, v in value.items())

    def state(self, value: Any, where: Path_) -> str:
        name = self.string(value, where)
        if name not in STATES:
            raise self.fail(where, f"{name!r} is not a state (expected one of {', '.join(STATES)})")
        return name

    def severity(self, value: Any, where: Path_) -> str:
        name = self.string(value, where)
        if name not in SEVERITIES:
            raise self.fail(where, f"{name!r} is not a severity (expected one of {', '.join(SEVERITIES)})")
        return name

    def set_expect(self, value: Any, where: Path_) -> SetExpect:
        if isinstance(value, list):
            return SetExpect(exact=frozenset(self.strings(value, where)))
        m = self.mapping(value, where, ("count", "includes", "excludes"), "expectation")
        if not m:
            raise self.fail(where, "expected count, includes and/or excludes")
        return SetExpect(
            count=self.bound(m["count"], (*where, "count")) if "count" in m else None,
            includes=frozenset(self.strings(m["includes"], (*where, "includes")))
            if "includes" in m
            else frozenset(),
            excludes=frozenset(self.strings(m["excludes"], (*where, "excludes")))
            if "excludes" in m
            else frozenset(),
        )

    def resolved(self, value: Any, where: Path_) -> ResolvedExpect:
        r = self.mapping(value, where, ("root", "resolution", "at"), "expectation")
        if "root" not in r:
            raise self.fail(where, "missing 'root' (the alarm key of the incident's root)")
        resolution = None
        if "resolution" in r:
            resolution = self.string(r["resolution"], (*where, "resolution"))
            if resolution not in ("cleared", "merged"):
                raise self.fail((*where, "resolution"), f"{resolution!r} is not one of 'cleared' or 'merged'")
        return ResolvedExpect(
            root=self.string(r["root"], (*where, "root")),
            resolution=resolution,
            at=self.bound(r["at"], (*where, "at"), duration=True) if "at" in r else None,
        )


def load_test_file(path: Path) -> TestFile:
    """Parse and validate one test file. Raises ``ConfigError`` (``TestFileError``) with the line."""
    data, locator = load_file(path, TestFileError)
    return _Parser(path, locator).document(data)


# --- running ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    records: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: int = 0
    rejected: list[str] = field(default_factory=list)  # each dead letter: topic, field and reason
    counters: dict[str, Any] = field(default_factory=dict)  # Pipeline.summary() at the end


def run_case(tf: TestFile, case: TestCase) -> Outcome:
    """Run one test case on a fresh pipeline and return every record it produced."""
    pipeline = Pipeline(tf.topology, list(tf.rulesets), tf.settings)
    out = Outcome()
    try:
        for step in case.steps:
            t = START + step.at
            out.records.extend(r.to_wire() for r in pipeline.advance_to(t).records)
            payload = step.payload if isinstance(step.payload, str) else orjson.dumps(step.payload)
            d = pipeline.feed(step.topic, payload, t)
            out.records.extend(r.to_wire() for r in d.records)
            out.dead_letters += len(d.dead_letters)
            out.rejected.extend(_rejection(dl) for dl in d.dead_letters)
        out.records.extend(r.to_wire() for r in pipeline.drain().records)
        out.counters = pipeline.summary()
    finally:
        pipeline.close()
    return out


def check(expect: Expect, outcome: Outcome) -> list[str]:
    """The unmet expectations, each as one line; empty when the test passes."""
    records = outcome.records
    latest: dict[str, dict[str, Any]] = {}  # incident → its last opened/updated record
    updates: dict[str, int] = {}  # incident → number of its `updated` records
    for rec in records:
        if rec.get("event") in ("opened", "updated"):
            latest[rec["incident_id"]] = rec
        if rec.get("event") == "updated":
            updates[rec["incident_id"]] = updates.get(rec["incident_id"], 0) + 1
    problems: list[str] = []
    if expect.incidents is not None and (msg := expect.incidents.check(len(latest))):
        problems.append(f"incidents: {msg}")
    for o in expect.opened:
        candidates = [r for r in latest.values() if _root(r) == o.root]
        if not candidates:
            problems.append(f"opened {o.root}: no incident with this root")
            continue
        results = [_check_opened(o, r, updates.get(r["incident_id"], 0)) for r in candidates]
        if not any(not res for res in results):
            problems.extend(f"opened {o.root}: {msg}" for msg in results[0])
    for x in expect.resolved:
        resolved = [r for r in records if r.get("event") == "resolved" and _root(r) == x.root]
        if not resolved:
            problems.append(f"resolved {x.root}: no resolved record with this root")
            continue
        results = [_check_resolved(x, r) for r in resolved]
        if not any(not res for res in results):
            problems.extend(f"resolved {x.root}: {msg}" for msg in results[0])
    for key in expect.not_opened:
        if any(_root(r) == key for r in latest.values()):
            problems.append(f"not_opened: {key} became an incident of its own")
    if expect.dead_letters is not None and (msg := expect.dead_letters.check(outcome.dead_letters)):
        problems.append(f"dead_letters: {msg}")
    elif expect.dead_letters is None and outcome.dead_letters:
        # a typo in the timeline (an unknown element, a bad severity) would otherwise test nothing
        shown = _few(outcome.rejected, 3, sep="; ")
        problems.append(
            f"dead_letters: {outcome.dead_letters} message(s) rejected and the test expects none "
            f"(say `dead_letters: N` if that is the point): {shown}"
        )
    if expect.notifications is not None:
        problems.extend(_check_notifications(expect.notifications, records))
    for name, bound in expect.counters:
        value = outcome.counters.get(name)
        if not isinstance(value, int | float):
            problems.append(f"counters: {name}: the engine does not report this counter")
        elif msg := bound.check(value):
            problems.append(f"counters: {name}: {msg}")
    return problems


def _check_opened(o: OpenedExpect, rec: Mapping[str, Any], updates: int) -> list[str]:
    out: list[str] = []
    if o.state is not None and rec.get("state") != o.state:
        out.append(f"state: expected {o.state}, got {rec.get('state')}")
    if o.priority is not None and (msg := o.priority.check(rec["priority"])):
        out.append(f"priority: {msg}")
    if o.score is not None and (msg := o.score.check(rec["score"])):
        out.append(f"score: {msg}")
    suppressed = rec.get("suppressed", [])
    if o.suppressed is not None:
        out.extend(f"suppressed: {msg}" for msg in o.suppressed.check({s["alarm_id"] for s in suppressed}))
    if o.reason_contains is not None:
        if not suppressed:
            out.append(f"reason_contains: no suppressed alarm to mention {o.reason_contains!r}")
        for s in suppressed:
            if o.reason_contains not in s["reason"]:
                out.append(f"reason_contains: {s['alarm_id']}: {s['reason']!r} lacks {o.reason_contains!r}")
                break
    by_key = {s["alarm_id"]: s["reason"] for s in suppressed}
    for key, text in o.reasons:
        if key not in by_key:
            out.append(f"reasons: {key} is not suppressed in this incident")
        elif text not in by_key[key]:
            out.append(f"reasons: {key}: {by_key[key]!r} lacks {text!r}")
    if o.customers is not None and (msg := o.customers.check(rec["impact"]["customers"]["total"])):
        out.append(f"customers: {msg}")
    breakdown = rec.get("priority_breakdown") or {}
    if o.severity is not None:
        seen = (breakdown.get("severity") or {}).get("value")
        if seen != o.severity:
            out.append(f"severity: expected {o.severity}, got {seen}")
    if o.opened_at is not None:
        if rec.get("opened_at") is None:
            out.append("opened_at: the incident has no opening time")
        elif msg := o.opened_at.check(_since_start(rec["opened_at"])):
            out.append(f"opened_at: {msg}")
    if o.updates is not None and (msg := o.updates.check(updates)):
        out.append(f"updates: {msg}")
    if o.overrides is not None:
        applied = {str(x.get("rule")) for x in breakdown.get("overrides", [])}
        if applied != o.overrides:
            missing, extra = sorted(o.overrides - applied), sorted(applied - o.overrides)
            parts = [
                f"missing {_few(missing)}" if missing else "",
                f"unexpected {_few(extra)}" if extra else "",
            ]
            out.append("overrides: " + "; ".join(p for p in parts if p))
    if o.explanation_contains is not None and not any(
        o.explanation_contains in line for line in rec.get("explanation", [])
    ):
        out.append(f"explanation_contains: no explanation line contains {o.explanation_contains!r}")
    return out


def _since_start(time: str) -> float:
    """Seconds from the test's start to a record's time, to the millisecond (records carry ms)."""
    return round(parse_time(time) - START, 3)


def _rejection(dead_letter: Mapping[str, Any]) -> str:
    errors = dead_letter.get("errors") or [{}]
    first = errors[0]
    where = f"{first.get('field')}: " if first.get("field") else ""
    return f"{dead_letter.get('topic')}: {where}{first.get('reason')}"


def _notification(rec: Mapping[str, Any]) -> str:
    at = _fmt_duration(_since_start(rec["time"]))
    return f"{rec.get('event')} {_root(rec)} at {at} P{rec.get('priority')} {rec.get('state')}"


def _check_notifications(
    expected: Sequence[NotificationExpect], records: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The notification stream is exactly the expected one, record by record, in order."""
    out: list[str] = []
    for i, (x, rec) in enumerate(zip(expected, records, strict=False)):
        got = _notification(rec)
        if rec.get("event") != x.event or _root(rec) != x.root:
            out.append(f"notifications[{i}]: expected {x.event} {x.root}, got {got}")
            continue
        if x.at is not None and (msg := x.at.check(_since_start(rec["time"]))):
            out.append(f"notifications[{i}] ({x.event} {x.root}): at: {msg}")
        if x.priority is not None and (msg := x.priority.check(rec["priority"])):
            out.append(f"notifications[{i}] ({x.event} {x.root}): priority: {msg}")
        if x.state is not None and rec.get("state") != x.state:
            out.append(
                f"notifications[{i}] ({x.event} {x.root}): state: expected {x.state}, got {rec.get('state')}"
            )
    if len(records) > len(expected):
        extra = [_notification(r) for r in records[len(expected) :]]
        out.append(f"notifications: {len(extra)} more than expected: {_few(extra, sep='; ')}")
    elif len(records) < len(expected):
        missing = [f"{x.event} {x.root}" for x in expected[len(records) :]]
        out.append(f"notifications: {len(missing)} fewer than expected, missing: {_few(missing, sep='; ')}")
    return out


def _check_resolved(x: ResolvedExpect, rec: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    if x.resolution is not None and rec.get("resolution") != x.resolution:
        out.append(f"resolution: expected {x.resolution}, got {rec.get('resolution')}")
    if x.at is not None and (msg := x.at.check(_since_start(rec["time"]))):
        out.append(f"at: {msg}")
    return out


def describe(outcome: Outcome) -> list[str]:
    """What was seen, one line per incident: root, state, priority, score, suppressed count, end."""
    latest: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    for rec in outcome.records:
        if rec.get("event") in ("opened", "updated"):
            latest[rec["incident_id"]] = rec
        elif rec.get("event") == "resolved":
            ends[rec["incident_id"]] = rec
    lines = []
    for iid, rec in latest.items():
        line = (
            f"{iid} root {_root(rec)} state {rec.get('state')} P{rec.get('priority')} "
            f"score {rec.get('score')} suppressed {len(rec.get('suppressed', []))}"
        )
        if (end := ends.get(iid)) is not None:
            line += f", resolved {end.get('resolution')} at {_fmt_duration(_since_start(end['time']))}"
        lines.append(line)
    if not lines:
        lines.append("no incidents")
    if outcome.dead_letters:
        lines.append(f"{outcome.dead_letters} dead letter(s)")
    return lines


def run_files(paths: Sequence[Path], *, out: TextIO, err: TextIO | None = None) -> int:
    """Run every test of every file; write ``PASS``/``FAIL`` lines and a summary to ``out``, errors
    to ``err`` (default ``out``). Returns the exit status, as ``engine rules check`` does: 0 all
    passed, 1 a test failed, 2 bad usage: no test file, or a file is broken (nothing is run then)."""
    err = out if err is None else err
    files: list[TestFile] = []
    broken = False
    found, skipped = discover(paths)
    for path in skipped:
        print(f"skip {path}: a topology document, not a test file", file=out)
    for path in found:
        try:
            files.append(load_test_file(path))
        except ConfigError as exc:
            broken = True
            print(printable(f"error: {exc}"), file=err)
    if broken or not files:
        if not files and not broken:
            where = ", ".join(str(p) for p in paths)
            print(f"error: no test file (*.yaml, *.yml) in {where}", file=err)
        return 2
    passed = failed = 0
    for tf in files:
        for case in tf.tests:
            try:
                outcome = run_case(tf, case)
                problems = check(case.expect, outcome)
            except EngineError as exc:  # the engine refused something at run time
                outcome, problems = Outcome(), [f"engine error: {exc}"]
            if problems:
                failed += 1
                print(f"FAIL {printable(case.name)}", file=out)
                for p in problems:
                    print(f"  - {printable(p)}", file=out)
                print("  seen:", file=out)
                for line in describe(outcome):
                    print(f"    {printable(line)}", file=out)
            else:
                passed += 1
                print(f"PASS {printable(case.name)}", file=out)
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed else 0


def discover(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """The test files among ``paths`` (files, or folders of ``*.yaml``/``*.yml``, sorted), and the
    topology documents found in those folders, which are skipped: a folder of tests may keep the
    topology its tests share. A file named explicitly is always taken as a test file."""
    found: list[Path] = []
    skipped: list[Path] = []
    for p in paths:
        if p.is_dir():
            for f in sorted([*p.glob("*.yaml"), *p.glob("*.yml")]):
                (skipped if _is_topology_document(f) else found).append(f)
        else:
            found.append(p)  # a missing file is reported by the loader
    return found, skipped


def _is_topology_document(path: Path) -> bool:
    """A mapping with ``elements`` and none of a test file's keys. Unreadable or malformed files are
    not topologies: the test-file loader reports what is wrong with them."""
    try:
        data = yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, Mapping) and "elements" in data and not {"tests", "topology"} & set(data)


def main(argv: list[str] | None = None) -> int:
    """``engine rules test FILE…``: FILE is a test file or a folder of ``*.yaml`` test files."""
    parser = Parser(prog="engine rules test", description="run rule tests on virtual time")
    parser.add_argument(
        "files", nargs="+", type=input_path, metavar="FILE", help="test file or folder of *.yaml"
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # the parser has printed the usage error (2) or the help (0)
        return exc.code if isinstance(exc.code, int) else 2
    return run_files(args.files, out=sys.stdout, err=sys.stderr)


# --- helpers ------------------------------------------------------------------------------------


def _root(rec: Mapping[str, Any]) -> str:
    return str(rec.get("root_cause", {}).get("alarm_id"))


def _few(keys: Sequence[str], limit: int = 5, *, sep: str = ", ") -> str:
    shown = sep.join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _fmt_duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _dotted(where: Path_) -> str:
    out = ""
    for part in where:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
