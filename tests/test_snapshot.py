"""Snapshot and restore of the core: a restored pipeline continues exactly as the original would."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.scenarios import T0, alarm, clear, example_topology, fiber_cut, site_power_failure
from engine.core.incident_records import Acknowledgement
from engine.core.pipeline import Pipeline
from engine.core.settings import CoreSettings, core_settings_from_data
from engine.errors import EngineError
from engine.model.timeutil import format_time
from engine.model.topology import Topology, topology_from_dict
from engine.rules.schema import load_rulesets, ruleset_from_data
from engine.tools.datasets.pcic import convert
from engine.tools.replay import event_time

PCIC = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "pcic2021" / "24V_439N_Microwave"


def _drive(p: Pipeline, lines: Sequence[dict[str, Any]], out: list[bytes]) -> None:
    for line in lines:
        t = event_time(line)
        assert t is not None
        while (due := p.next_due()) is not None and due <= t:
            out.extend(orjson.dumps(r.to_wire()) for r in p.tick(due).records)
        out.extend(
            orjson.dumps(r.to_wire()) for r in p.feed(line["topic"], orjson.dumps(line["payload"]), t).records
        )


def _finish(p: Pipeline, out: list[bytes]) -> None:
    out.extend(orjson.dumps(r.to_wire()) for r in p.drain().records)


def _split_run(
    topo: Topology, lines: Sequence[dict[str, Any]], cut: int, core: CoreSettings, rulesets: Any
) -> list[bytes]:
    out: list[bytes] = []
    first = Pipeline(topo, rulesets, core)
    _drive(first, lines[:cut], out)
    blob = first.snapshot()
    first.close()
    second = Pipeline(topo, rulesets, core)
    second.restore(blob)
    _drive(second, lines[cut:], out)
    _finish(second, out)
    second.close()
    return out


def _scenario() -> list[dict[str, Any]]:
    """Fiber cut, power failure, redundancy, flapping and a re-raise, interleaved in time."""
    lines = list(fiber_cut())
    lines += [
        {**x, "payload": {**x["payload"], "event_time": T0 + 400 + i}}
        for i, x in enumerate(site_power_failure())
    ]
    lines += [
        alarm("agg-1", "lossOfSignal", 500, "critical"),
        alarm("agg-2", "lossOfSignal", 530, "critical"),
    ]
    for i in range(8):
        lines.append(alarm("olt-010", "linkDown", 3000 + i * 20.0, "critical"))
        lines.append(clear("olt-010", "linkDown", 3010 + i * 20.0))
    lines += [clear("agg-1", "lossOfSignal", 2500), alarm("agg-1", "lossOfSignal", 2600, "critical")]
    lines += [clear("agg-1", "lossOfSignal", 4000), clear("agg-2", "lossOfSignal", 4001)]
    return sorted(lines, key=lambda x: event_time(x) or 0.0)


def test_restore_at_every_cut_point_continues_byte_identically() -> None:
    """Whatever the moment of the snapshot, the records after a restore are those of an uninterrupted run."""
    topo = topology_from_dict(example_topology())
    rulesets = load_rulesets(None)
    core = core_settings_from_data({"incidents": {"settle": "10s", "update_interval": "2s"}})
    lines = _scenario()
    whole: list[bytes] = []
    p = Pipeline(topo, rulesets, core)
    _drive(p, lines, whole)
    _finish(p, whole)
    assert len(whole) > 10
    for cut in range(0, len(lines) + 1, 3):
        assert _split_run(topo, lines, cut, core, rulesets) == whole, f"cut at {cut}"


@pytest.mark.slow
@pytest.mark.skipif(not PCIC.is_dir(), reason=f"dataset not found at {PCIC}")
def test_restore_on_a_real_alarm_log_continues_byte_identically() -> None:
    """5,000 rows of the PCIC 24V log, cut at four points: the records are those of one run."""
    conv = convert(PCIC, limit=5000)
    topo = topology_from_dict(conv.topology)
    core = core_settings_from_data(conv.config)
    rulesets = load_rulesets(None)
    lines = conv.events
    whole: list[bytes] = []
    p = Pipeline(topo, rulesets, core)
    _drive(p, lines, whole)
    _finish(p, whole)
    for cut in (1234, 3333, 5555, 8765):
        assert _split_run(topo, lines, cut, core, rulesets) == whole, f"cut at {cut}"
    # And a restored pipeline's own snapshot is the one it was restored from.
    p = Pipeline(topo, rulesets, core)
    _drive(p, lines[:3333], [])
    blob = p.snapshot()
    q = Pipeline(topo, rulesets, core)
    q.restore(blob)
    assert q.snapshot() == blob


_BY_SITE: dict[str, Any] = {
    "name": "by-site",
    "group": {"match": {"event_type": "environmentalAlarm"}, "by": ["site"], "window": "10m", "wait": "1m"},
}


def test_restore_into_a_changed_topology_drops_state_on_removed_elements() -> None:
    """A reload whose topology lost an element keeps everything else and says what it dropped:
    the element's alarms go, and its incident, taken as its root cleared at the reload, resolves
    after the hold-down with a record (before, it vanished: its receivers never heard the end)."""
    data = example_topology()
    topo = topology_from_dict(data)
    p = Pipeline(topo, load_rulesets(None))
    for line in (alarm("olt-050", "linkDown", 0, "critical"), alarm("olt-001", "linkDown", 1, "critical")):
        p.feed(line["topic"], orjson.dumps(line["payload"]), T0 + 1)
    opened = {r.incident_id: r.root_cause.alarm_id for r in p.tick(T0 + 100).records if r.event == "opened"}
    assert sorted(opened.values()) == ["olt-001:linkDown", "olt-050:linkDown"]
    smaller = {**data, "elements": [e for e in data["elements"] if e["id"] != "olt-050"]}
    smaller["customers"] = [c for c in data["customers"] if c["access"] != "olt-050"]
    q = Pipeline(topology_from_dict(smaller), load_rulesets(None))
    assert q.restore(p.snapshot()) == {"alarms_dropped": 1, "incidents_root_removed": 1}
    assert [a.key for a in q.alarms.active()] == ["olt-001:linkDown"]
    phases = {i.root: i.phase for i in q.incidents.incidents()}
    assert phases == {"olt-001:linkDown": "open", "olt-050:linkDown": "clearing"}
    hold_down = CoreSettings().incidents.hold_down
    records = q.tick(T0 + 100 + hold_down).records
    assert [(r.event, r.root_cause.alarm_id) for r in records] == [("resolved", "olt-050:linkDown")]
    assert [i.root for i in q.incidents.incidents() if i.phase != "resolved"] == ["olt-001:linkDown"]


def test_the_symptoms_of_a_removed_root_surface_as_incidents_of_their_own() -> None:
    """An aggregation switch leaves the topology (its OLTs re-homed to the core) while its outage
    holds three OLT symptoms: the outage resolves after the hold-down and the three OLTs' alarms,
    still active on elements that still exist, become incidents (before, they stayed in no
    incident, for good)."""
    data = example_topology()
    olts = [e["id"] for e in data["elements"] if e["depends_on"] == ["agg-3"]][:3]
    assert len(olts) == 3
    p = Pipeline(topology_from_dict(data), load_rulesets(None))
    lines = [alarm("agg-3", "lossOfSignal", 0, "critical")] + [alarm(o, "linkDown", 1) for o in olts]
    for line in lines:
        p.feed(line["topic"], orjson.dumps(line["payload"]), T0 + 1)
    records = p.tick(T0 + 200).records
    assert [(r.event, r.root_cause.alarm_id, len(r.alarms)) for r in records] == [
        ("opened", "agg-3:lossOfSignal", 4)
    ]
    rehomed = [
        {**e, "depends_on": ["core-1" if d == "agg-3" else d for d in e["depends_on"]]}
        for e in data["elements"]
        if e["id"] != "agg-3"
    ]
    smaller = {**data, "elements": rehomed}
    q = Pipeline(topology_from_dict(smaller), load_rulesets(None))
    assert q.restore(p.snapshot()) == {"alarms_dropped": 1, "incidents_root_removed": 1}
    events = []
    while (due := q.next_due()) is not None and due <= T0 + 1000:
        events += [(r.event, r.root_cause.alarm_id) for r in q.tick(due).records if r.event != "updated"]
    assert events == [("resolved", "agg-3:lossOfSignal")] + [("opened", f"{o}:linkDown") for o in olts]


def test_a_group_whose_members_all_left_the_topology_resolves() -> None:
    """A group lives on its other members; when none is left (every member's element removed, the
    others cleared), it is taken as its last member cleared at the reload and resolves."""
    data = example_topology()
    rules = [*load_rulesets(None), ruleset_from_data({"name": "t", "rules": [_BY_SITE]}, "<test>")]
    p = Pipeline(topology_from_dict(data), rules)
    env = "environmentalAlarm"
    for line in (
        alarm("olt-011", "highTemperature", 0, event_type=env),
        alarm("olt-016", "fanFailure", 20, event_type=env),
    ):
        p.feed(line["topic"], orjson.dumps(line["payload"]), T0 + 20)
    p.tick(T0 + 200)
    gone = ("olt-011", "olt-016")
    smaller = {**data, "elements": [e for e in data["elements"] if e["id"] not in gone]}
    smaller["customers"] = [c for c in data["customers"] if c["access"] not in gone]
    q = Pipeline(topology_from_dict(smaller), rules)
    assert q.restore(p.snapshot()) == {"alarms_dropped": 2, "incidents_root_removed": 1}
    events = []
    while (due := q.next_due()) is not None and due <= T0 + 2000:
        events += [(r.event, r.root_cause.alarm_id) for r in q.tick(due).records]
    assert events == [("resolved", "olt-011:highTemperature")]
    assert [i.phase for i in q.incidents.incidents()] == []


def test_a_quarantined_incident_whose_root_left_the_topology_resolves_at_its_retry() -> None:
    """The incident's timer is set once the quarantine is loaded: it waits for the retry, then
    resolves (it was set before, then taken for stale once the quarantine said later: no timer)."""
    data = example_topology()
    p = Pipeline(topology_from_dict(data), load_rulesets(None))
    line = alarm("olt-050", "linkDown", 0, "critical")
    p.feed(line["topic"], orjson.dumps(line["payload"]), T0 + 1)
    p.tick(T0 + 100)
    (inc,) = p.incidents.incidents()
    p.quarantine.failed("incidents", inc.id, ValueError("boom"), T0 + 100, "a test")
    state = orjson.loads(p.snapshot())
    for part in state["quarantine"]:
        part["retry_at"] = T0 + 5000
    smaller = {**data, "elements": [e for e in data["elements"] if e["id"] != "olt-050"]}
    smaller["customers"] = [c for c in data["customers"] if c["access"] != "olt-050"]
    q = Pipeline(topology_from_dict(smaller), load_rulesets(None))
    assert q.restore(orjson.dumps(state)) == {"alarms_dropped": 1, "incidents_root_removed": 1}
    events = []
    while (due := q.next_due()) is not None and due <= T0 + 10000:
        events += [(due - T0, r.event) for r in q.tick(due).records]
    assert events == [(5000.0, "resolved")]


def test_a_group_whose_first_member_was_forgotten_survives_a_restore() -> None:
    """A group incident is keyed by its first member. When that alarm clears and the table forgets
    it (``retain``) while the others are still active, the group stays open; a restore (every
    daemon restart) kept only incidents whose root alarm it still held, so the group vanished
    without a ``resolved`` record. Restored at any point, the records are those of one run."""
    topo = topology_from_dict(example_topology())
    rules = [
        *load_rulesets(None),
        ruleset_from_data(
            {
                "name": "t",
                "rules": [_BY_SITE],
            },
            "<test>",
        ),
    ]
    core = core_settings_from_data({"alarms": {"retain": "2m"}})
    env = "environmentalAlarm"
    lines = [
        alarm("olt-011", "highTemperature", 0, event_type=env),
        alarm("olt-016", "fanFailure", 20, event_type=env),  # same site: one group
        clear("olt-011", "highTemperature", 100),  # forgotten at 220: the group's key has no alarm
        alarm("olt-030", "linkDown", 600, "minor"),  # (lines to cut at, later on)
        alarm("olt-031", "linkDown", 900, "minor"),
        clear("olt-016", "fanFailure", 1800),
        clear("olt-030", "linkDown", 1900),
        clear("olt-031", "linkDown", 1900),
    ]
    whole: list[bytes] = []
    p = Pipeline(topo, rules, core)
    _drive(p, lines, whole)
    _finish(p, whole)
    resolved = [r for r in map(orjson.loads, whole) if r["event"] == "resolved"]
    assert "olt-011:highTemperature" in [r["root_cause"]["alarm_id"] for r in resolved]
    for cut in range(3, len(lines)):
        assert _split_run(topo, lines, cut, core, rules) == whole, f"cut at line {cut}"
    p = Pipeline(topo, rules, core)
    _drive(p, lines[:4], [])
    assert p.alarms.get("olt-011:highTemperature") is None  # forgotten before the snapshot
    q = Pipeline(topo, rules, core)
    assert q.restore(p.snapshot()) == {"alarms_dropped": 0, "incidents_root_removed": 0}


def test_acknowledge_emits_an_updated_record_and_survives_a_restore() -> None:
    """POST /ack's core side: an `updated` with who and when; unknown or closed incidents give None."""
    topo = topology_from_dict(example_topology())
    p = Pipeline(topo, load_rulesets(None))
    line = alarm("olt-001", "linkDown", 0, "critical")
    p.feed(line["topic"], orjson.dumps(line["payload"]), T0)
    (opened,) = p.tick(T0 + 60).records
    rec = p.acknowledge(opened.incident_id, "noc-alice", "on it", T0 + 70)
    assert rec is not None
    assert rec.acknowledged is not None
    assert (rec.event, rec.version, rec.acknowledged.by) == ("updated", 2, "noc-alice")
    assert rec.to_wire()["acknowledged"] == {
        "by": "noc-alice",
        "at": "2026-01-01T00:01:10.000Z",
        "note": "on it",
    }
    assert p.acknowledge("inc-unknown", "x", None, T0 + 71) is None
    q = Pipeline(topo, load_rulesets(None))
    q.restore(p.snapshot())
    (inc,) = q.incidents.incidents()
    assert inc.acknowledged == Acknowledgement("noc-alice", T0 + 70, "on it")


def test_a_format_2_snapshot_still_restores_and_continues_the_same() -> None:
    """A snapshot written before typed records (format 2: an acknowledgement's time as RFC 3339
    text, no stage reasons on incidents) restores, and the core goes on exactly as the one that
    wrote it: the same records, byte for byte, to the resolution."""
    topo = topology_from_dict(example_topology())
    p = Pipeline(topo, load_rulesets(None))
    line = alarm("olt-001", "linkDown", 0, "critical")
    p.feed(line["topic"], orjson.dumps(line["payload"]), T0)
    (opened,) = p.tick(T0 + 60).records
    assert p.acknowledge(opened.incident_id, "noc-alice", "on it", T0 + 70.25) is not None
    state = orjson.loads(p.snapshot())
    assert state["format"] == 4
    state["format"] = 2  # and the forms as format 2 kept them: the correlator and silences beside
    state["correlator"] = state["forms"].pop("correlator")
    state["silences"] = state["forms"].pop("maintenance")
    for inc in state["incidents"]["incidents"]:
        inc["acknowledged"]["at"] = format_time(inc["acknowledged"]["at"])
        for key in ("sla_milestone", "escalation", "muted_by"):
            del inc[key]
    q = Pipeline(topo, load_rulesets(None))
    q.restore(orjson.dumps(state))
    (inc,) = q.incidents.incidents()
    assert inc.acknowledged == Acknowledgement("noc-alice", T0 + 70.25, "on it")
    cleared = clear("olt-001", "linkDown", 100)
    after = []
    for core in (p, q):
        out = core.feed(cleared["topic"], orjson.dumps(cleared["payload"]), T0 + 100)
        out.extend(core.advance_to(T0 + 3600))
        after.append([orjson.dumps(r.to_wire()) for r in out.records])
    assert after[0] == after[1]
    assert [orjson.loads(r)["event"] for r in after[0]] == ["resolved"]


def test_a_snapshot_of_another_format_is_refused() -> None:
    """Restoring state written by an incompatible version fails loudly, not silently."""
    p = Pipeline(topology_from_dict(example_topology()), load_rulesets(None))
    with pytest.raises(EngineError, match="snapshot format"):
        p.restore(orjson.dumps({"format": 999}))


def _forms_scenario() -> tuple[list[dict[str, Any]], list[Any]]:
    """Every stateful form at once: group, inhibit, storm, pair (both outcomes), KPI breach, override."""
    forms = ruleset_from_data(
        {
            "name": "forms",
            "rules": [
                {"name": "grp", "group": {"match": {"event_type": "environmentalAlarm"}, "by": ["site"]}},
                {
                    "name": "inh",
                    "inhibit": {
                        "source": {"probable_cause": "mainsFailure"},
                        "target": {"severity": {"at_most": "major"}},
                        "equal": ["site"],
                    },
                },
                {
                    "name": "storm",
                    "threshold": {
                        "match": {"probable_cause": "linkDown"},
                        "by": ["region"],
                        "count": 4,
                        "window": "1m",
                        "raise": {"probable_cause": "alarmStorm"},
                    },
                },
                {
                    "name": "bounce",
                    "pair": {"first": {"probable_cause": "portFlap"}, "window": "2m", "on_pair": "discard"},
                },
                {
                    "name": "restart",
                    "pair": {
                        "first": {"probable_cause": "coldStart"},
                        "second": {"probable_cause": "restartComplete"},
                        "equal": ["ne_id"],
                        "window": "3m",
                        "on_timeout": {"raise": {"probable_cause": "restartFailed", "effect": "outage"}},
                    },
                },
                {
                    "name": "lat",
                    "kpi_threshold": {"metric": "latency_ms", "above": 150, "clear": 120, "for": "30s"},
                },
                {"name": "vip", "priority": {"when": {"services": ["voip"]}, "raise": 1}},
            ],
        },
        "<forms>",
    )
    env = "environmentalAlarm"
    lines = [
        alarm("olt-001", "highTemperature", 0, event_type=env),
        alarm("olt-006", "fanFailure", 10, event_type=env),
        alarm("pwr-c", "mainsFailure", 20, "critical"),
        alarm("olt-7", "equipmentMalfunction", 25, "minor"),
        *[alarm(f"olt-{i:03d}", "linkDown", 30 + i, "minor") for i in range(10, 16)],
        alarm("olt-020", "portFlap", 40, "major"),
        clear("olt-020", "portFlap", 70),
        alarm("olt-021", "portFlap", 45, "major"),
        alarm("olt-022", "coldStart", 50, "warning"),
        alarm("olt-023", "coldStart", 50, "warning"),
        alarm("olt-022", "restartComplete", 100, "warning"),
        clear("pwr-c", "mainsFailure", 600),
        clear("olt-001", "highTemperature", 700),
        clear("olt-006", "fanFailure", 700),
        clear("olt-023", "coldStart", 1200),
        *[clear(f"olt-{i:03d}", "linkDown", 1300) for i in range(10, 16)],
    ]
    for i, v in enumerate([100, 160, 170, 180, 140, 110, 100]):
        lines.append(
            {
                "topic": "soc/probes/p1",
                "payload": {
                    "probe_id": "p1",
                    "target": "sbc-1",
                    "time": T0 + 200 + 20 * i,
                    "metrics": {"latency_ms": v},
                },
            }
        )
    return sorted(lines, key=lambda x: event_time(x) or 0.0), [forms, *load_rulesets(None)]


def test_restore_with_every_rule_form_continues_byte_identically() -> None:
    lines, rulesets = _forms_scenario()
    topo = topology_from_dict(example_topology())
    core = CoreSettings()
    whole: list[bytes] = []
    p = Pipeline(topo, rulesets, core)
    _drive(p, lines, whole)
    _finish(p, whole)
    summary = p.summary()
    p.close()
    # every form took part
    assert summary["storms"] == 1
    assert summary["pairs_completed"] == 2
    assert summary["pair_timeouts"] == 2  # olt-021's flap never cleared; olt-023 never restarted
    assert summary["kpi_breaches"] == 1
    assert summary["inhibited"] >= 1
    assert summary["incidents_discarded"] == 1
    for cut in range(len(lines) + 1):
        assert _split_run(topo, lines, cut, core, rulesets) == whole, f"cut at {cut}"


GOLDEN_FORMAT_2 = Path(__file__).parent / "golden" / "snapshot-format2.json"


def test_a_format_2_snapshot_still_restores_and_continues_byte_identically() -> None:
    """A snapshot written before the forms shared one interface (format 2: the correlator's state
    and the silences beside ``forms``) restores into today's pipeline and continues exactly as an
    uninterrupted run. The golden file was written by the format-2 code at the first line of the
    forms scenario after T0 + 60 s: a storm firing, pairs pending, inhibitions and groups held."""
    lines, rulesets = _forms_scenario()
    topo = topology_from_dict(example_topology())
    cut = next(i for i, x in enumerate(lines) if (event_time(x) or 0.0) > T0 + 60)
    whole: list[bytes] = []
    p = Pipeline(topo, rulesets, CoreSettings())
    _drive(p, lines, whole)
    _finish(p, whole)
    p.close()
    first: list[bytes] = []
    p = Pipeline(topo, rulesets, CoreSettings())
    _drive(p, lines[:cut], first)
    p.close()
    blob = GOLDEN_FORMAT_2.read_bytes()
    assert orjson.loads(blob)["format"] == 2
    assert "correlator" in orjson.loads(blob)
    rest: list[bytes] = []
    q = Pipeline(topo, rulesets, CoreSettings())
    assert q.restore(blob) == {"alarms_dropped": 0, "incidents_root_removed": 0}
    _drive(q, lines[cut:], rest)
    _finish(q, rest)
    q.close()
    assert first + rest == whole
    assert orjson.loads(q.snapshot())["format"] == 4


def test_restore_with_service_quality_state_continues_byte_identically() -> None:
    """KQI windows, quality alarms, inference and SLA downtime all survive a snapshot."""

    def s(target: str, t: float, service: str, customer: str | None, **m: float) -> dict[str, Any]:
        payload: dict[str, Any] = {"probe_id": "p", "target": target, "time": T0 + t, "metrics": m}
        payload["service"] = service
        if customer:
            payload["customer"] = customer
        return {"topic": "soc/probes/p", "payload": payload}

    lines: list[dict[str, Any]] = [alarm("olt-002", "lossOfSignal", 5, "critical")]
    for i in range(12):
        t = 15.0 * i
        lines.append(s("sbc-1", t, "voip", None, latency_ms=180.0 + 20 * i))
        lines += [
            s("olt-7", t + 1, "internet", c, latency_ms=300.0) for c in ("c-00001", "c-00002", "c-00003")
        ]
        lines += [s("olt-001", t + 2, "internet", c, latency_ms=20.0) for c in ("c-00021", "c-00022")]
    lines += [clear("olt-002", "lossOfSignal", 400)]
    lines = sorted(lines, key=lambda x: event_time(x) or 0.0)
    topo = topology_from_dict(example_topology())
    rulesets = load_rulesets(None)
    core = CoreSettings()
    whole: list[bytes] = []
    p = Pipeline(topo, rulesets, core)
    _drive(p, lines, whole)
    _finish(p, whole)
    assert p.quality.inferred >= 1
    assert p.quality.evaluations >= 3
    p.close()
    assert any(b"rule:quality:sbc-1:voip" in r for r in whole)
    assert any(b"rule:inference:olt-7:internet" in r for r in whole)
    assert any(b'"tier_breaching_first":"platinum"' in r for r in whole)
    for cut in range(0, len(lines) + 1, 4):
        assert _split_run(topo, lines, cut, core, rulesets) == whole, f"cut at {cut}"


def test_acknowledging_again_is_idempotent() -> None:
    """The same person acknowledging again (same note, or none) makes no new version: the answer
    is the `current` record; another person, or a new note, is a new `updated` version."""
    p = Pipeline(topology_from_dict(example_topology()), load_rulesets(None))
    line = alarm("olt-001", "linkDown", 0, "critical")
    p.feed(line["topic"], orjson.dumps(line["payload"]), T0)
    (opened,) = p.tick(T0 + 60).records
    iid = opened.incident_id
    first = p.acknowledge(iid, "noc-alice", "on it", T0 + 70)
    assert first is not None
    assert (first.event, first.version) == ("updated", 2)
    for again in (
        p.acknowledge(iid, "noc-alice", "on it", T0 + 80),
        p.acknowledge(iid, "noc-alice", None, T0 + 81),
    ):
        assert again is not None
        assert (again.event, again.version, again.acknowledged) == ("current", 2, first.acknowledged)
    noted = p.acknowledge(iid, "noc-alice", "fibre team dispatched", T0 + 90)
    assert noted is not None
    assert (noted.event, noted.version) == ("updated", 3)
    bob = p.acknowledge(iid, "noc-bob", None, T0 + 100)
    assert bob is not None
    assert bob.acknowledged is not None
    assert (bob.event, bob.version, bob.acknowledged.by) == ("updated", 4, "noc-bob")
