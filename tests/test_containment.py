"""Containment in the pure core: poison and faults in one timed part never stop incident handling.

Each case replays the same ordinary fiber cut (it opens, is updated by a late symptom and resolves
after the hold-down) behind a poison: samples no probe can measure, or a fault injected into one
timed part. The fiber cut's records must be exactly those of a clean run (same events, same times),
the faulty part must be named in a dead letter, and the failure must not be retried in a tight loop.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.scenarios import T0, alarm, clear, example_topology, fiber_cut
from engine.core.alarms import AlarmTable
from engine.core.containment import GIVE_UP, Quarantine
from engine.core.experience import SlaTracker
from engine.core.forms.base import BaseForm
from engine.core.forms.correlator import Correlator
from engine.core.forms.groups import Groups
from engine.core.forms.pairs import Pairs
from engine.core.forms.storms import Storms
from engine.core.incidents import Incident, IncidentBook
from engine.core.kpi import KpiStore
from engine.core.kqi import KqiState, KqiWindows
from engine.core.pipeline import Pipeline
from engine.core.quality import ServiceQuality
from engine.model.timeutil import format_time
from engine.model.topology import topology_from_dict
from engine.rules.schema import load_rulesets
from tests.harness import Run, run

ROOT = Path(__file__).resolve().parents[1]


def sample(t: float, target: str = "olt-020", **metrics: float) -> dict[str, Any]:
    """A voip KPI sample replay line at T0 + t."""
    payload = {
        "probe_id": "p-1",
        "target": target,
        "service": "voip",
        "time": format_time(T0 + t),
        "metrics": metrics or {"latency_ms": 20.0, "jitter_ms": 2.0, "loss_pct": 0.1},
    }
    return {"topic": f"soc/probes/{target}", "payload": payload}


POISON = [sample(0.2, latency_ms=1e308), sample(0.3, latency_ms=1e308)]
# Healthy samples keep service quality (KQI windows, SLA) busy throughout; a lone alarm on olt-7 is
# an incident of its own, the target of the per-incident fault.
BACKGROUND = [sample(float(t)) for t in range(0, 600, 20)] + [
    alarm("olt-7", "equipmentMalfunction", 0.5, "major"),
    clear("olt-7", "equipmentMalfunction", 900.0),
]


def cut() -> list[dict[str, Any]]:
    """A fiber cut of 40 OLTs under agg-3, one more symptom after the opening (an `updated`), the
    repair at 1800 s."""
    lines = fiber_cut(olts=40)
    lines.append(alarm("olt-045", "linkDown", 120.0, "critical"))
    lines.append(clear("olt-045", "linkDown", 1801.5))
    return lines


def cut_records(r: Run) -> list[tuple[str, str, int, int | None]]:
    """The fiber cut incident's records: (event, time, version, priority)."""
    return [
        (rec["event"], rec["time"], rec["version"], rec["priority"])
        for rec in r.records
        if rec["root_cause"]["ne_id"] == "agg-3"
    ]


def replay(lines: list[dict[str, Any]]) -> Run:
    return run(
        sorted(lines, key=lambda line: str(line["payload"].get("event_time") or line["payload"]["time"]))
    )


@pytest.fixture(scope="module")
def clean() -> list[tuple[str, str, int, int | None]]:
    records = cut_records(replay(BACKGROUND + cut()))
    events = [e for e, *_ in records]
    assert events[0] == "opened"
    assert "updated" in events
    assert events[-1] == "resolved"
    assert records[0][1] == format_time(T0 + 1.2 + 30)  # settle 30 s after the root
    assert records[-1][1] == format_time(T0 + 1800 + 300)  # hold-down 5 min after the repair
    return records


def test_two_1e308_latency_samples_are_refused_and_the_fiber_cut_runs_on_time(
    clean: list[tuple[str, str, int, int | None]],
) -> None:
    """The issue's poison: two finite latencies of 1e308 ms. They are refused at the edge, naming
    the metric, the value and the range; the fiber cut after them opens, updates and resolves on
    time, and nothing is quarantined."""
    r = replay(POISON + BACKGROUND + cut())
    assert cut_records(r) == clean
    reasons = [e["reason"] for d in r.dead for e in d["errors"]]
    assert reasons == ["1e+308 is outside the allowed range 0 to 3.6e+06 ms"] * 2
    assert [e["field"] for d in r.dead for e in d["errors"]] == ["metrics.latency_ms"] * 2
    assert r.pipeline is not None
    assert r.pipeline.summary()["quarantined"] == []


def _raise(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("injected fault")


def _scope_fault(original: Callable[..., list[KqiState]]) -> Callable[..., list[KqiState]]:
    def evaluate(self: KqiWindows, scope: str, service: str, now: float) -> list[KqiState]:
        if scope == "ne:olt-020/voip":
            raise OverflowError("intermediate overflow in fsum")
        return original(self, scope, service, now)

    return evaluate


def _incident_fault(original: Callable[..., bool]) -> Callable[..., bool]:
    def step(self: IncidentBook, inc: Incident, now: float, *args: Any) -> bool:
        if inc.root.startswith("olt-7:"):
            raise ZeroDivisionError("injected into one incident")
        return original(self, inc, now, *args)

    return step


# (case, class, method, patched implementation, the dead letter's topic)
FAULTS: list[tuple[str, type, str, Callable[[Any], Any], str]] = [
    ("alarm table", AlarmTable, "tick", lambda _orig: _raise, "<core:alarms>"),
    ("correlator", Correlator, "tick", lambda _orig: _raise, "<core:correlator>"),
    ("group rules", Groups, "tick", lambda _orig: _raise, "<core:groups>"),
    ("threshold rules", Storms, "tick", lambda _orig: _raise, "<core:storms>"),
    ("pair rules", Pairs, "tick", lambda _orig: _raise, "<core:pairs>"),
    ("service quality", ServiceQuality, "tick", lambda _orig: _raise, "<core:quality>"),
    ("SLA tracker", SlaTracker, "tick", lambda _orig: _raise, "<core:sla>"),
    ("one KQI window", KqiWindows, "evaluate", _scope_fault, "<core:quality[ne:olt-020/voip]>"),
    ("one incident", IncidentBook, "_step", _incident_fault, "<core:incidents[inc-"),
]


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
@pytest.mark.parametrize("fault", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_fault_in_one_timed_part_is_quarantined_and_the_fiber_cut_runs_on_time(
    monkeypatch: pytest.MonkeyPatch,
    clean: list[tuple[str, str, int, int | None]],
    fault: tuple[str, type, str, Callable[[Any], Any], str],
) -> None:
    """A part that raises on every call is quarantined with a dead letter naming it, its error and
    its poison; it is retried with a backoff (a handful of failures over the half hour, not one per
    tick), and the fiber cut opens, updates and resolves exactly as in a clean run."""
    case, cls, method, patch, topic = fault
    monkeypatch.setattr(cls, method, patch(getattr(cls, method)))
    if issubclass(cls, BaseForm):  # in use: an idle form (no rule of its form loaded) is not ticked
        monkeypatch.setattr(cls, "idle", lambda _self: False)
    r = replay(BACKGROUND + cut())
    assert cut_records(r) == clean, case
    faults = [d for d in r.dead if d["topic"].startswith(topic)]
    assert faults, f"no dead letter for {topic}: {[d['topic'] for d in r.dead]}"
    first = faults[0]
    assert "quarantined (failure 1)" in first["errors"][0]["reason"]
    assert first["quarantine"]["error"].split(":")[0] in (
        "RuntimeError",
        "OverflowError",
        "ZeroDivisionError",
    )
    assert first["payload"]  # the poison, as far as the core can name it
    assert r.pipeline is not None
    failures = r.pipeline.quarantine.failures
    assert 1 <= failures <= 2 * GIVE_UP, f"{failures} failures: retried in a loop"
    assert r.pipeline.summary()["part_failures"] == failures


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_a_quarantined_kqi_window_names_its_content_and_heals_when_the_poison_leaves() -> None:
    """The dead letter of a KQI window names the window's content (the poison value); once the
    scope evaluates again, the quarantine is lifted by itself."""
    calls = {"n": 0}
    original = KqiWindows.evaluate

    def flaky(self: KqiWindows, scope: str, service: str, now: float) -> list[KqiState]:
        if scope == "ne:olt-020/voip" and calls["n"] < 3:
            calls["n"] += 1
            raise OverflowError("intermediate overflow in fsum")
        return original(self, scope, service, now)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KqiWindows, "evaluate", flaky)
        r = replay(BACKGROUND)
    window = [d for d in r.dead if d["topic"] == "<core:quality[ne:olt-020/voip]>"]
    assert len(window) == 3
    assert window[0]["payload"].startswith("KQI window ne:olt-020/voip: jitter_ms: ")
    assert "latency_ms: " in window[0]["payload"]
    assert r.pipeline is not None
    assert r.pipeline.quarantine.faults() == []  # healed


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_a_message_whose_application_raises_is_a_dead_letter_and_the_core_goes_on(
    monkeypatch: pytest.MonkeyPatch, clean: list[tuple[str, str, int, int | None]]
) -> None:
    """A bug met while applying one message (here: the KPI store) dead-letters that message with
    the error; every later message and timer works (replay ends without a traceback)."""
    original = KpiStore.observe_many

    def observe_many(self: KpiStore, samples: Any, *known: Any) -> None:
        if any(s["target"] == "olt-033" for s in samples):
            raise KeyError("injected")
        original(self, samples, *known)

    monkeypatch.setattr(KpiStore, "observe_many", observe_many)
    r = replay([sample(0.4, target="olt-033"), *BACKGROUND, *cut()])
    assert cut_records(r) == clean
    (dl,) = [d for d in r.dead if d["topic"] == "soc/probes/olt-033"]
    assert dl["errors"][0]["reason"] == "internal error while applying it: KeyError: 'injected'"
    assert r.pipeline is not None
    assert r.pipeline.summary()["internal_errors"] == 1


def test_engine_replay_of_two_poison_samples_exits_cleanly_and_reports_the_dead_letters(
    tmp_path: Path,
) -> None:
    """`engine replay` of the issue's two 1e308 samples exits 0 without a traceback; the summary
    counts the dead letters and shows the reason of each, `--dead-letters` has both."""
    events = tmp_path / "poison.jsonl"
    events.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in POISON))
    dead = tmp_path / "dead.jsonl"
    args = ["replay", str(events), "--topology", "examples/topology.yaml", "--dead-letters", str(dead)]
    done = subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    summary = orjson.loads(done.stderr)
    assert summary["dead_letters"] == 2
    assert (
        summary["dead_letter_examples"]
        == ["soc/probes/olt-020: metrics.latency_ms: 1e+308 is outside the allowed range 0 to 3.6e+06 ms"] * 2
    )
    assert len(dead.read_bytes().splitlines()) == 2


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_an_incident_quarantined_at_its_opening_opens_after_a_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload (snapshot into a fresh pipeline, then every quarantined part tried again) must not
    leave a quarantined incident without a timer: its heap entry waited for the retry time, which
    no longer applies once the quarantine is emptied. It opens at the next tick, as it would have
    without the fault."""
    topology = topology_from_dict(example_topology())
    pipeline = Pipeline(topology, load_rulesets(None))
    line = alarm("agg-1", "lossOfSignal", 0.0, "critical")
    pipeline.feed(line["topic"], orjson.dumps(line["payload"]), T0)
    failures = [RuntimeError("injected once")]
    open_incident = IncidentBook._open

    def open_failing_once(self: IncidentBook, inc: Incident, now: float) -> Any:
        if failures:
            raise failures.pop()
        return open_incident(self, inc, now)

    monkeypatch.setattr(IncidentBook, "_open", open_failing_once)
    due = pipeline.next_due()
    assert due is not None
    assert not pipeline.advance_to(due).records  # the opening failed: quarantined
    assert pipeline.quarantine.faults()

    fresh = Pipeline(topology, load_rulesets(None))
    fresh.restore(pipeline.snapshot())
    fresh.retry_quarantined()
    again = fresh.next_due()
    assert again is not None
    assert again <= due  # due at once, not at the retry time, nor never
    opened = fresh.advance_to(again).records
    assert [(r.event, r.root_cause.ne_id) for r in opened] == [("opened", "agg-1")]


def test_held_is_the_quarantine_map_through_loads() -> None:
    """``held``, which the pipeline, the flow and the incident book test after every message
    instead of calling ``bool(quarantine)``, stays the quarantine's own map across ``load`` (a
    snapshot restored, a reload's retry): refilled, never replaced."""
    q = Quarantine()
    held = q.held
    q.failed("quality", "", ValueError("poison"), 1.0, "")
    assert held
    assert q.held is held
    dumped = q.dump()
    q.load(())
    assert not held
    assert not q
    assert q.held is held
    q.load(dumped)
    assert list(held) == [("quality", "")]
    assert q.held is held
