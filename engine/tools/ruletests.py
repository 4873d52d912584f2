"""Rule tests: ``engine rules test FILE…`` replays small timelines on the virtual clock and checks
the incident records against expectations. The format is documented in ``docs/rule-tests.md`` and
modelled in ``engine.tools.ruletestfile``, which loads a file.

Each test case runs on a fresh :class:`~engine.core.pipeline.Pipeline`: steps are fed in order at
``start + at``, due timers fire between them (as in ``engine/tools/replay.py``), then the pipeline is
drained so the final ``resolved`` records appear. Exit status: 0 all passed, 1 a test failed,
2 a test file is broken (its errors name the file, the line and what is wrong).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from engine.core.pipeline import Pipeline
from engine.errors import ConfigError, EngineError
from engine.model.messages import DeadLetter, payload_bytes
from engine.model.timeutil import parse_time
from engine.service.cliargs import Parser, input_path
from engine.service.terminal import printable
from engine.tools.ruletestfile import (
    START,
    Expect,
    NotificationExpect,
    OpenedExpect,
    ResolvedExpect,
    TestCase,
    TestFile,
    TestFileError,
    check_exact_set,
    few,
    load_test_file,
)
from engine.tools.ruletestfile import fmt_duration as _fmt_duration

__all__ = [
    "TestFileError",
    "check",
    "describe",
    "discover",
    "load_test_file",
    "main",
    "run_case",
    "run_files",
]

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
            # (``payload_bytes``: a step may nest deeper than orjson writes; the test file's loader
            # stops well short of where the standard library fails too, and gives strings as keys)
            payload = step.payload if isinstance(step.payload, str) else payload_bytes(step.payload)
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
        shown = few(outcome.rejected, 3, sep="; ")
        problems.append(
            f"dead_letters: {outcome.dead_letters} message(s) rejected and the test expects none "
            f"(say `dead_letters: N` if that is the point): {shown}"
        )
    if expect.notifications is not None:
        problems.extend(_check_notifications(expect.notifications, records))
    for name, bound in expect.counters.items():
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
        keys = {s["alarm_id"] for s in suppressed}
        spec = o.suppressed
        wrong = check_exact_set(spec, keys) if isinstance(spec, frozenset) else spec.check(keys)
        out.extend(f"suppressed: {msg}" for msg in wrong)
    if o.reason_contains is not None:
        if not suppressed:
            out.append(f"reason_contains: no suppressed alarm to mention {o.reason_contains!r}")
        for s in suppressed:
            if o.reason_contains not in s["reason"]:
                out.append(f"reason_contains: {s['alarm_id']}: {s['reason']!r} lacks {o.reason_contains!r}")
                break
    by_key = {s["alarm_id"]: s["reason"] for s in suppressed}
    for key, text in o.reasons.items():
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
                f"missing {few(missing)}" if missing else "",
                f"unexpected {few(extra)}" if extra else "",
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


def _rejection(dead_letter: DeadLetter) -> str:
    first, reason = dead_letter.errors[0] if dead_letter.errors else ("", None)
    where = f"{first}: " if first else ""
    return f"{dead_letter.topic}: {where}{reason}"


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
        out.append(f"notifications: {len(extra)} more than expected: {few(extra, sep='; ')}")
    elif len(records) < len(expected):
        missing = [f"{x.event} {x.root}" for x in expected[len(records) :]]
        out.append(f"notifications: {len(missing)} fewer than expected, missing: {few(missing, sep='; ')}")
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
