"""The core's read-only query interface (``Pipeline.query``) and each message's outcome in its decisions."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.scenarios import T0, alarm, fiber_cut
from engine.core.kpi import KpiStore
from engine.core.pipeline import MessageOutcome, Pipeline
from engine.core.query import CoreQuery
from engine.core.views import element_view
from engine.model.timeutil import format_time
from engine.model.topology import load_topology
from engine.rules.schema import load_rulesets

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    p = Pipeline(load_topology(ROOT / "examples" / "topology.yaml"), load_rulesets(None))
    yield p
    p.close()


def _feed(p: Pipeline, line: dict[str, Any], t: float) -> MessageOutcome | None:
    p.advance_to(t)
    return p.feed(line["topic"], orjson.dumps(line["payload"]), t).message


def _sample(target: str, t: float, **metrics: Any) -> dict[str, Any]:
    return {"target": target, "probe_id": "p-1", "time": format_time(t), "metrics": metrics}


def test_each_feed_says_what_became_of_its_message(pipeline: Pipeline) -> None:
    """``Decisions.message``: an alarm or a batch of samples accepted (with the samples applied and
    refused), an invalid message refused whole; ticks carry none."""
    assert _feed(pipeline, alarm("agg-3", "lossOfSignal", 1.0, "critical"), T0 + 1) == MessageOutcome("alarm")
    batch = {
        "samples": [_sample("olt-001", T0 + 2, latency_ms=30.0), _sample("nowhere", T0 + 2, latency_ms=1.0)]
    }
    got = pipeline.feed("soc/probes/p-1", orjson.dumps(batch), T0 + 2).message
    assert got == MessageOutcome("samples", samples=1, rejected=1)
    assert got.accepted
    invalid = pipeline.feed("soc/alarms/x", b"{not json", T0 + 3)
    assert invalid.message == MessageOutcome("invalid")
    assert not invalid.message.accepted
    assert len(invalid.dead_letters) == 1
    assert pipeline.tick(T0 + 4).message is None
    assert dict(pipeline.query.stats().messages) == {"alarm": 1, "samples": 1, "invalid": 1}


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_a_message_whose_application_raises_is_accepted_and_failed(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug met while applying a valid message: its kind as validated (the metrics count it
    accepted, as the counters do), ``failed``, and its dead letter."""

    def observe_many(self: KpiStore, samples: Any, *known: Any) -> None:
        raise KeyError("injected")

    monkeypatch.setattr(KpiStore, "observe_many", observe_many)
    d = pipeline.feed("soc/probes/p-1", orjson.dumps(_sample("olt-001", T0, latency_ms=1.0)), T0)
    assert d.message == MessageOutcome("samples", failed=True)
    assert d.dead_letters[0].errors == (("", "internal error while applying it: KeyError: 'injected'"),)


def test_answers_are_copies_or_frozen(pipeline: Pipeline) -> None:
    """What the query returns does not move with the core afterwards, and cannot be changed."""
    q = pipeline.query
    lines = [alarm("agg-3", "lossOfSignal", 1.0, "critical", sp="port 1/1/1")]
    lines += [alarm(f"olt-{i:03d}", "linkDown", 1.0 + i * 0.1, "critical") for i in range(1, 6)]
    for i, line in enumerate(lines):
        _feed(pipeline, line, T0 + 1 + i * 0.1)
    stats = q.stats()
    firings = q.firings()
    active = q.active_alarms()
    pipeline.drain()
    assert stats.messages["alarm"] == 6
    with pytest.raises(TypeError):
        stats.messages["alarm"] = 0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.samples = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        firings.by_rule["x"] = 1  # type: ignore[index]
    assert len(active) == 6
    (inc,) = q.incidents(open_only=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        inc.phase = "resolved"  # type: ignore[misc]
    assert inc.root == "agg-3:lossOfSignal:port 1/1/1"
    assert inc.members == frozenset(a.key for a in active)
    assert q.incident_of("olt-001:linkDown") == inc
    sup = q.suppression("olt-001:linkDown")
    assert sup is not None
    assert sup.root == inc.root


def test_the_query_answers_what_the_core_holds(pipeline: Pipeline) -> None:
    """Each answer matches the core's own state (read here from its parts, as only the core and its
    tests may)."""
    for i, line in enumerate(fiber_cut(olts=5)):
        _feed(pipeline, line, T0 + 1 + i * 0.1)
    q: CoreQuery = pipeline.query
    assert q.clock == pipeline.clock
    assert q.active_alarm_count() == sum(1 for _ in pipeline.alarms.active())
    assert [a.key for a in q.active_alarms()] == [a.key for a in pipeline.alarms.active()]
    assert q.firings().total == pipeline.correlator.firings > 0
    assert dict(q.firings().by_rule) == dict(pipeline.correlator.firings_by_rule())
    assert [r.qualified for r in q.rules()] == [r.qualified for r in pipeline.program.rules.values()]
    assert [i.id for i in q.incidents()] == [i.id for i in pipeline.incidents.incidents()]
    assert q.summary() == pipeline.summary()
    assert q.faults() == []
    # the gauges' counts: what the open incidents' summaries say, counted by (state, priority)
    pipeline.tick(T0 + 40)  # past the settle time: opened
    summaries = [s for s in q.incidents(open_only=True) if s.priority is not None]
    by_key: dict[tuple[str, int], int] = {}
    for s in summaries:
        assert s.priority is not None
        by_key[s.state, s.priority] = by_key.get((s.state, s.priority), 0) + 1
    assert q.open_incident_counts() == by_key
    assert by_key == {("outage", 1): 1}  # the fiber cut, clearing
    assert q.quarantined() == {}
    assert q.element("agg-3") == element_view(pipeline, "agg-3") is not None
    assert q.own_health() == dict(pipeline.health.own) != {}
    assert q.alarm("nope") is None
    # every alarm held (active and cleared within retention), the table's own records in its order
    held = q.alarm_states()
    assert [a.key for a in held] == [d["key"] for d in pipeline.alarms.dump()["alarms"]] != []
    assert all(a is pipeline.alarms.get(a.key) for a in held)
    assert any(not a.active for a in held)
    assert any(a.active for a in held)
    assert q.validate("soc/alarms/x", alarm("agg-3", "x", 1.0)["payload"]).alarm is not None
