"""Service quality on the pure core: KQI alarms, correlation with path alarms, inference of
degradations nobody alarmed, customer experience, SLA facts and their effect on priority."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import orjson
import pytest

from bench.scenarios import T0, alarm, clear, example_topology
from engine.core.pipeline import Pipeline
from engine.core.quality import ServiceQuality, group_id
from engine.core.reports import customer, customers, services, sla
from engine.core.settings import CoreSettings
from engine.model.timeutil import format_time, parse_time
from engine.model.topology import topology_from_dict
from engine.rules.schema import load_rulesets
from engine.tools.offline import replay_pipeline
from tests.harness import Run, run, settings


def sample(
    target: str, t: float, *, service: str | None = None, customer: str | None = None, **m: float
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "probe_id": f"p-{target}",
        "target": target,
        "time": format_time(T0 + t),
        "metrics": m,
    }
    if service:
        payload["service"] = service
    if customer:
        payload["customer"] = customer
    return {"topic": f"soc/probes/p-{target}", "payload": payload}


def at(record: dict[str, Any]) -> float:
    return parse_time(record["time"]) - T0


def test_an_element_kqi_missing_its_target_degrades_the_service_and_clears_when_met() -> None:
    """voip one-way delay on sbc-1: mean 200 ms misses the 150 ms target (G.114) within the 400 ms limit
    → minor; 500 ms → major; back to 100 ms → cleared, resolved after the hold-down.

    By hand (evaluations every 60 s from the first sample while there are samples or our alarm; a
    tick fires before the samples of its own instant): at 60 s the six 200 ms samples → minor,
    opened after the 30 s settle at 90 s. At 360 s every sample has left the 300 s window: the
    alarm clears and the evaluations stop. The 500 ms samples restart them 60 s after 400 s: at
    460 s six samples of 500 ms > 400 ms → major, the same alarm again: the incident (still in its
    hold-down) is updated. The 100 ms samples come in from 800 s; over [t − 300, t] the mean is at
    820 s (28 × 500 + 2 × 100) / 30 = 473.3 (major), at 880 s (22 × 500 + 8 × 100) / 30 = 393.3 ≤
    400 → minor (updated), at 1,060 s (4 × 500 + 26 × 100) / 30 = 153.3 still > 150, at 1,120 s all
    100 ms → met, cleared; resolved 300 s later at 1,420 s."""
    lines = [sample("sbc-1", 10 * i, service="voip", latency_ms=200.0) for i in range(6)]  # 0..50 s
    lines += [sample("sbc-1", 400 + 10 * i, service="voip", latency_ms=500.0) for i in range(40)]  # to 790 s
    lines += [sample("sbc-1", 800 + 10 * i, service="voip", latency_ms=100.0) for i in range(60)]  # to 1390 s
    r = run(lines)
    (opened,) = r.events("opened")
    root = opened["root_cause"]
    assert root["alarm_id"] == "rule:quality:sbc-1:voip"
    assert root["probable_cause"] == "performanceDegraded"
    assert root["severity"] == "minor"
    assert opened["state"] == "degraded"
    assert opened["impact"]["services"] == {"voip": 255}  # every voip subscriber needs sbc-1
    assert at(opened) == 60 + 30  # first evaluation 60 s after the first sample, then settle
    assert "KQI voip.one_way_delay (integrity) mean over 300s = 200 > target 150 (limit 400)" in " ".join(
        opened["explanation"]
    )
    assert [(at(rec), rec["event"], rec["root_cause"]["severity"]) for rec in r.records] == [
        (90.0, "opened", "minor"),
        (460.0, "updated", "major"),
        (880.0, "updated", "minor"),
        (1420.0, "resolved", "minor"),
    ]
    major = " ".join(r.records[1]["explanation"])
    assert "KQI voip.one_way_delay (integrity) mean over 300s = 500 > target 150 (limit 400)" in major
    minor = " ".join(r.records[2]["explanation"])
    assert "KQI voip.one_way_delay (integrity) mean over 300s = 393.3 > target 150 (limit 400)" in minor


def test_a_kqi_breach_under_an_outage_is_the_outages_evidence_not_an_incident() -> None:
    lines = [alarm("agg-3", "lossOfSignal", 0, "critical")]
    lines += [sample("olt-001", 5 * i, service="internet", latency_ms=900.0) for i in range(30)]
    r = run(lines)
    (opened,) = r.events("opened")
    assert opened["root_cause"]["ne_id"] == "agg-3"
    last = r.last(opened["incident_id"])
    assert [s["alarm_id"] for s in last["suppressed"]] == ["rule:quality:olt-001:internet"]
    assert "default/topology-root-cause" in last["suppressed"][0]["reason"]


def _paths(
    t0: float, degraded: list[tuple[str, str]], healthy: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    lines = []
    for i in range(4):
        t = t0 + 15 * i
        lines += [sample(ne, t, service="internet", customer=c, latency_ms=300.0) for c, ne in degraded]
        lines += [sample(ne, t, service="internet", customer=c, latency_ms=20.0) for c, ne in healthy]
    return lines


DEGRADED = [("c-00001", "olt-7"), ("c-00002", "olt-7"), ("c-00003", "olt-7"), ("c-00005", "olt-7")]
HEALTHY = [("c-00021", "olt-001"), ("c-00022", "olt-001"), ("c-00041", "olt-002"), ("c-00042", "olt-002")]


def test_a_degradation_nobody_alarmed_is_located_on_the_element_its_paths_share() -> None:
    """Four customers behind olt-7 see 300 ms, four elsewhere 20 ms, no alarm anywhere: the engine
    infers olt-7 (shared by every degraded path, by no healthy one) and opens a degraded incident.
    By hand: samples at 0, 15, 30, 45 s; evaluations every 60 s from 60 s find the paths degraded
    (4 samples ≥ min_samples 3) at 60, 120, 180, 240 and 300 s (window [0, 300]): 5 inferences; at
    360 s the samples have left the window."""
    r = run(_paths(0, DEGRADED, HEALTHY), core=settings(quality={"element_alarms": "off"}))
    (opened,) = r.events("opened")
    root = opened["root_cause"]
    assert root["alarm_id"] == "rule:inference:olt-7:internet"
    assert root["probable_cause"] == "degradedServiceInferred"
    assert opened["state"] == "degraded"
    text = " ".join(opened["explanation"])
    assert (
        "no alarm explains 4 degraded service path(s); 4 of them cross olt-7, and 0 healthy one(s) do" in text
    )
    assert "(confidence 1.00)" in text
    p = r.pipeline
    assert p is not None
    assert (p.quality.inferred, p.quality.last_inference) == (5, None)


STALE = [(f"c-{i:05d}", "olt-7") for i in range(6, 14)]  # 8 more internet customers behind olt-7


def _stale_then_degraded(stale: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """HEALTHY every 15 s from 0 to 465 s at 20 ms; ``stale`` at 20 ms from 0 to 45 s, then silent;
    DEGRADED at 300 ms from 400 to 445 s."""
    lines = []
    for i in range(32):
        t = 15.0 * i
        lines += [sample(ne, t, service="internet", customer=c, latency_ms=20.0) for c, ne in HEALTHY]
        if t <= 45:
            lines += [sample(ne, t, service="internet", customer=c, latency_ms=20.0) for c, ne in stale]
        if 400 <= t <= 445:
            lines += [sample(ne, t, service="internet", customer=c, latency_ms=300.0) for c, ne in DEGRADED]
    return lines


@pytest.mark.parametrize("stale", [[], STALE], ids=["no-stale-paths", "8-stale-paths"])
def test_paths_whose_samples_stopped_no_longer_count(stale: list[tuple[str, str]]) -> None:
    """Paths that stopped reporting (their samples left the 300 s windows) are neither healthy nor
    degraded evidence. By hand: evaluations every 60 s from 0 s; the one at 420 s fires before the
    430 s samples (2 degraded samples < min_samples 3), at 480 s the 4 DEGRADED paths (400–445 s)
    are degraded and the 4 HEALTHY ones healthy; the stale ones' last samples (45 s) are older than
    480 − 300 = 180 s. So D = 4, H = 4 and olt-7 carries the 4 degraded and no healthy path:
    confidence 1.00, opened at 480 + 30 s settle. Counted as healthy, the 8 stale paths behind olt-7
    would give H = 12, h(olt-7) = 8, confidence 4/4 × (1 − 8/12) = 0.33 < 0.5: no inference. The
    services report counts the 8 measured paths, not the stale ones."""
    core = settings(quality={"element_alarms": "off"})
    lines = _stale_then_degraded(stale)
    r = run(lines, core=core)
    (opened,) = r.events("opened")
    assert (opened["root_cause"]["alarm_id"], at(opened)) == ("rule:inference:olt-7:internet", 510.0)
    assert (
        "no alarm explains 4 degraded service path(s); 4 of them cross olt-7, and 0 healthy one(s) do "
        "(confidence 1.00)"
    ) in " ".join(opened["explanation"])
    p = replay_pipeline(
        topology_from_dict(example_topology()),
        load_rulesets(None),
        core,
        [orjson.dumps(line) for line in lines],
        until=T0 + 480,
    )
    try:
        kqis = services(p.query, T0 + 480)["services"]["internet"]["kqis"]
        assert (kqis["paths"], kqis["degraded_paths"]) == (8, 4)
        assert sorted(p.quality.measured_paths()) == sorted(
            f"path:{c}/internet" for c, _ in [*DEGRADED, *HEALTHY]
        )
    finally:
        p.close()


def test_no_inference_when_an_alarm_on_the_paths_explains_them() -> None:
    lines = [alarm("olt-7", "highBER", 0, "minor")]  # effect degraded: explains the degraded paths
    lines += _paths(1, DEGRADED, HEALTHY)
    r = run(lines, core=settings(quality={"element_alarms": "off"}))
    assert {rec["root_cause"]["alarm_id"] for rec in r.events("opened")} == {"olt-7:highBER"}


UNDER_AGG_3 = [
    (c, ne)
    for ne, first in (("olt-001", 21), ("olt-002", 41), ("olt-003", 61))
    for c in (
        f"c-{first:05d}",
        f"c-{first + 1:05d}",
    )
]
EXPLAINED = [(f"c-{i:05d}", "olt-004") for i in range(81, 89)]  # 8 customers behind olt-004
OLT_7_HEALTHY = [(f"c-{i:05d}", "olt-7") for i in range(6, 10)]


@pytest.mark.parametrize("explained", [[], EXPLAINED], ids=["nothing-explained", "8-explained-paths"])
def test_degraded_paths_an_alarm_explains_are_no_evidence_either_way(
    explained: list[tuple[str, str]],
) -> None:
    """Two degraded paths behind each of olt-001, olt-002 and olt-003 (all under agg-3), four healthy
    ones behind olt-7 (under agg-1/agg-2), and, with ``explained``, eight degraded paths behind
    olt-004 (also under agg-3) that a minor highBER alarm on olt-004 explains. By hand, the
    explained paths left out: D = 6, H = 4; agg-3 carries the 6 degraded and no healthy path →
    confidence 1.00 (core-1 scores 6/6 − 4/4 = 0; each OLT has 2 < min_degraded 3). Had the 8
    explained paths counted as healthy, H = 12 and h(agg-3) = 8: confidence 6/6 × (1 − 8/14) = 0.43
    < 0.5, no inference. Samples every 15 s from 1 to 46 s; first evaluation with them at 61 s, the
    incident 30 s later."""
    lines = [alarm("olt-004", "highBER", 0, "minor")] if explained else []
    lines += _paths(1, [*UNDER_AGG_3, *explained], OLT_7_HEALTHY)
    r = run(lines, core=settings(quality={"element_alarms": "off"}))
    inferred = [
        rec for rec in r.events("opened") if rec["root_cause"]["alarm_id"].startswith("rule:inference")
    ]
    (opened,) = inferred
    assert (opened["root_cause"]["alarm_id"], at(opened)) == ("rule:inference:agg-3:internet", 91.0)
    assert (
        "no alarm explains 6 degraded service path(s); 6 of them cross agg-3, and 0 healthy one(s) do "
        "(confidence 1.00)"
    ) in " ".join(opened["explanation"])


def test_no_inference_below_min_degraded() -> None:
    r = run(_paths(0, DEGRADED[:2], HEALTHY), core=settings(quality={"element_alarms": "off"}))
    assert r.events("opened") == []


def _platinum_outage(points: float) -> Run:
    return run(
        [alarm("olt-002", "lossOfSignal", 0, "critical"), clear("olt-002", "lossOfSignal", 600)],
        core=settings(quality={"sla_points": points}),
    )


def test_sla_urgency_raises_an_incident_that_will_breach_a_platinum_sla() -> None:
    """olt-002 carries platinum c-00050: its 1,296 s budget (30 d at 99.95 %) is 1,266 s from breach
    when the incident opens at 30 s → urgency (3,600 − 1,266)/(3,600 − 900) = 0.864 → +12.97 points."""
    plain = _platinum_outage(0.0).events("opened")[0]
    urgent = _platinum_outage(15.0).events("opened")[0]
    # the facts do not depend on the points: 20 customers behind olt-002 are down, none breached yet
    assert plain["sla"] == {**urgent["sla"], "points": 0.0}
    assert (plain["sla"]["customers_down"], plain["sla"]["customers_breached"]) == (20, 0)
    assert urgent["sla"]["tier_breaching_first"] == "platinum"
    assert urgent["sla"]["seconds_to_breach"] == 1266.0
    assert urgent["sla"]["urgency"] == 0.864
    assert urgent["score"] == round(plain["score"] + 12.97, 1)
    assert urgent["priority_breakdown"]["sla"]["points"] == 12.97
    assert "SLA urgency 12.97 pts" in " ".join(urgent["explanation"])


def test_customers_breached_follows_every_breach_of_an_outage_not_only_the_first() -> None:
    """olt-002 down from 0 s to 3,000 s, under the default ruleset. Its platinum group (1 customer,
    1,296 s budget) breaches at 1,296 s, its gold group (1 customer, 2,592 s) at 2,592 s. Each breach
    is a re-assessment (the breach milestone, then the next group's breach): an ``updated`` record
    with ``customers_breached`` 1, then 2, and the resolution keeps 2 (before them, at 396 s, the
    urgency milestone of 900 s to breach). (It stayed 1: after the first
    breach no milestone was left, and nothing else re-assessed the incident until its root cleared,
    when the SLA facts are frozen.)"""
    r = run(
        [alarm("olt-002", "lossOfSignal", 0, "critical"), clear("olt-002", "lossOfSignal", 3000)],
        core=settings(),
    )
    got = [(rec["event"], rec["time"], rec["sla"]["customers_breached"]) for rec in r.records]
    assert got == [
        ("opened", format_time(T0 + 30), 0),
        ("updated", format_time(T0 + 396), 0),  # 900 s to breach: full urgency (a milestone)
        ("updated", format_time(T0 + 1296), 1),
        ("updated", format_time(T0 + 2592), 2),
        ("resolved", format_time(T0 + 3300), 2),
    ]


@pytest.mark.parametrize("start", [0.0, 0.03, 0.07])
def test_a_breach_at_a_fraction_of_a_second_is_re_assessed_at_the_breach(start: float) -> None:
    """olt-002 down from ``start`` s, re-assessed at 100 s by a second alarm (its time to breach
    then a fraction of a tenth), cleared at 3,000 s: the platinum breach at ``start`` + 1,296 s and
    the gold one at ``start`` + 2,592 s are each an update. (The milestones ran from the time to
    breach rounded to 0.1 s: at 0.03 s one fell due 0.03 s early, found the time left rounded to 0
    and no milestone below it, and neither breach was ever re-assessed.)"""
    r = run(
        [
            alarm("olt-002", "lossOfSignal", start, "critical"),
            alarm("olt-002", "linkDown", 100.0, "major"),
            clear("olt-002", "lossOfSignal", 3000),
            clear("olt-002", "linkDown", 3000),
        ],
        core=settings(),
    )
    breached = [(rec["time"], rec["sla"]["customers_breached"]) for rec in r.events("updated")]
    assert breached[-2:] == [(format_time(T0 + start + 1296), 1), (format_time(T0 + start + 2592), 2)]
    assert r.events("resolved")[0]["sla"]["customers_breached"] == 2


def test_customer_report_has_experience_and_sla_state() -> None:
    """olt-002 down from 0 s, never cleared; the state as of 600 s (``engine report --at``). By hand:
    c-00050 (platinum, internet only, on olt-002) is down, its one service capped at 0 → index 0.0,
    "bad"; 600 s of its group's 1,296 s budget are used → 696 s to breach (2 h to restore: 6,600 s
    left). olt-002 carries 20 customers (platinum 1, gold 1, silver 5 + 1, bronze 9 + 3; 5 of them
    with voip), every one down with index 0, so the worst-first list starts at the smallest id,
    c-00041. Per tier, 600 s off the budget: gold 2,592 → 1,992 s, silver 12,960 → 12,360 s, bronze
    25,920 → 25,320 s."""
    lines = [orjson.dumps(alarm("olt-002", "lossOfSignal", 0, "critical"))]
    p = replay_pipeline(
        topology_from_dict(example_topology()), load_rulesets(None), CoreSettings(), lines, until=T0 + 600
    )
    try:
        now = T0 + 600
        view = customer(p.query, "c-00050", now)
        assert view is not None
        assert view["customer"]["tier"] == "platinum"
        assert view["services"] == {"internet": "down"}
        assert view["experience"] == {
            "index": 0.0,
            "band": "bad",
            "services": {"internet": 0.0},
            "worst_service": "internet",
            "at_risk": [],
        }
        state = view["sla"]
        assert state["outage_started"] == format_time(T0)
        assert (state["seconds_to_breach"], state["time_to_restore_left"]) == (696.0, 6600.0)
        tiers = sla(p.query, now)["tiers"]
        assert {name: (t["customers_down"], t["seconds_to_first_breach"]) for name, t in tiers.items()} == {
            "bronze": (12, 25320.0),
            "gold": (1, 1992.0),
            "platinum": (1, 696.0),
            "silver": (6, 12360.0),
        }
        worst = customers(p.query, now)
        assert worst["total"] == 20
        assert [(c["customer"], c["experience"]) for c in worst["customers"][:2]] == [
            ("c-00041", 0.0),
            ("c-00042", 0.0),
        ]
        assert {c["experience"] for c in worst["customers"]} == {0.0}
        svc = services(p.query, now)["services"]
        assert svc["internet"]["customers_by_state"] == {"down": 20, "ok": 1000}
        assert svc["voip"]["customers_by_state"] == {"down": 5, "ok": 250}
        assert svc["voip"]["targets"][0]["name"] == "voip.one_way_delay"
    finally:
        p.close()


def _mos_and_outage_lines() -> list[dict[str, Any]]:
    """silver c-00108 (olt-005, voip + internet, alone in its customer group) measures voip MOS 3.3
    every 30 s from 0 to 1,470 s; olt-002 (platinum c-00050, internet, alone in its group) is down
    from 0 to 1,400 s."""
    lines = [alarm("olt-002", "lossOfSignal", 0, "critical")]
    lines += [sample("olt-005", 30 * i, service="voip", customer="c-00108", mos=3.3) for i in range(50)]
    lines.append(clear("olt-002", "lossOfSignal", 1400))
    lines.sort(key=lambda line: str(line["payload"].get("time") or line["payload"].get("event_time")))
    return lines


@cache
def _mos_and_outage() -> Run:
    return run(_mos_and_outage_lines())


MOS_BREACH = {
    "at": "2026-01-01T00:02:00.000Z",
    "kind": "mos",
    "tier": "silver",
    "customer": "c-00108",
    "detail": {"mos": 3.3, "floor": 3.6},
}
PLATINUM_GROUP = {"access": "olt-002", "tier": "platinum", "services": ["internet"], "customers": 1}
AVAILABILITY_BREACH = {
    "at": "2026-01-01T00:21:36.000Z",
    "kind": "availability",
    "tier": "platinum",
    "group": PLATINUM_GROUP,
    "detail": {"budget": 1296.0, "target": 0.9995, "period": 2592000.0},
}


@pytest.mark.parametrize(
    ("customer_id", "mos", "breached", "group", "breaches"),
    [
        (
            "c-00108",
            3.3,
            {"availability": False, "time_to_restore": False, "mos": True},
            {"access": "olt-005", "tier": "silver", "services": ["internet", "voip"], "customers": 1},
            [MOS_BREACH],
        ),
        (
            "c-00050",
            None,
            {"availability": True, "time_to_restore": False, "mos": False},
            PLATINUM_GROUP,
            [AVAILABILITY_BREACH],
        ),
    ],
)
def test_a_customers_view_shows_its_own_mos_and_its_groups_availability(
    customer_id: str,
    mos: float | None,
    breached: dict[str, bool],
    group: dict[str, Any],
    breaches: list[dict[str, Any]],
) -> None:
    """By hand: c-00108's MOS 3.3 is under the silver floor 3.6. KQIs are evaluated every 60 s from
    the first sample; the evaluation at 60 s fires before the 60 s sample is fed (2 samples <
    min_samples 3), so the first known MOS, and the breach, is at 120 s = 00:02:00. c-00050's group
    exhausts the platinum budget 30 d × 0.0005 = 1,296 s at 00:21:36 (down from 0); its 1,400 s
    down are > 1,296 s, so the availability is still breached; it measures no MOS. Each customer
    sees its own MOS breach and its group's availability breach, not the others'."""
    p = _mos_and_outage().pipeline
    assert p is not None
    view = customer(p.query, customer_id, p.clock)
    assert view is not None
    state = view["sla"]
    assert "subject" not in state
    assert "customer_id" not in state
    assert (state["mos"], state["breached"], state["group"]) == (mos, breached, group)
    assert state["breaches"] == breaches


def test_breach_records_name_the_group_or_the_customer() -> None:
    """The breach list of ``report sla`` / ``GET /sla``: availability (and time to restore) breaches
    carry the customer group, MOS breaches the customer, in the order recorded (the MOS at 120 s,
    the availability at the outage's end, 1,400 s, dated 1,296 s; see the test above)."""
    p = _mos_and_outage().pipeline
    assert p is not None
    assert sla(p.query, p.clock)["breaches"] == [MOS_BREACH, AVAILABILITY_BREACH]


PLATINUM_OLT_002 = ("platinum", "olt-002|platinum|internet")
GOLD_OLT_002 = ("gold", "olt-002|gold|internet+voip")


@pytest.mark.parametrize(
    ("until", "breaches", "next_wake"),
    [
        (1305.0, [], 1306.0),
        (1306.0, [], 1306.0),
        (1307.0, [(*PLATINUM_OLT_002, "availability", 1306.0)], 2602.0),
        (
            7211.0,
            [
                (*PLATINUM_OLT_002, "availability", 1306.0),
                (*GOLD_OLT_002, "availability", 2602.0),
                (*PLATINUM_OLT_002, "time_to_restore", 7210.0),
            ],
            12970.0,
        ),
    ],
)
def test_an_availability_breach_is_recorded_as_it_happens_during_the_outage(
    until: float, breaches: list[tuple[str, str, str, float]], next_wake: float
) -> None:
    """olt-002 down from 10 s, cleared only at 9,000 s; the state as of ``until`` (``report sla
    --at``), nothing else happening meanwhile. By hand: the platinum group there (c-00050) has a
    budget of 30 d × 0.0005 = 1,296 s: breached at 10 + 1,296 = 1,306 s, exactly (at 1,306 s the
    budget is used, not exceeded: no breach yet); gold (c-00060's group, 30 d × 0.001 = 2,592 s) at
    2,602 s; platinum's 2 h time to restore at 10 + 7,200 = 7,210 s. The core is woken for each
    (``next_due``: the float just after the breach's instant): after 7,210 s the next is silver's
    budget, 30 d × 0.005 = 12,960 s, at 12,970 s."""
    lines = [alarm("olt-002", "lossOfSignal", 10, "critical"), clear("olt-002", "lossOfSignal", 9000)]
    p = replay_pipeline(
        topology_from_dict(example_topology()),
        load_rulesets(None),
        CoreSettings(),
        [orjson.dumps(line) for line in lines],
        until=T0 + until,
    )
    try:
        got = [(b.tier, b.subject, b.kind, b.at) for b in p.quality.sla.breaches()]
        assert got == [(tier, gid, kind, T0 + at) for tier, gid, kind, at in breaches]
        assert p.quality.next_due() == math.nextafter(T0 + next_wake, math.inf)
    finally:
        p.close()


def _latency_300(service: str, *, path: bool) -> list[dict[str, Any]]:
    """Samples of ``service`` on olt-010 at 300 ms every 10 s from 0 to 50 s: of silver c-00204's
    path (it has voip and internet), or of the element (no customer)."""
    customer_id = "c-00204" if path else None
    return [
        sample("olt-010", 10 * i, service=service, customer=customer_id, latency_ms=300.0) for i in range(6)
    ]


@pytest.mark.parametrize(
    ("lines", "voip", "internet", "index"),
    [
        (
            _latency_300("voip", path=True),
            ("at_risk", 300.0, "path:c-00204/voip"),
            ("unknown", None, "path:c-00204/internet"),
            90.0,
        ),
        (
            _latency_300("voip", path=False),
            ("at_risk", 300.0, "ne:olt-010/voip"),
            ("unknown", None, "path:c-00204/internet"),
            90.0,
        ),
        (
            _latency_300("internet", path=False),
            ("unknown", None, "path:c-00204/voip"),
            ("violated", 300.0, "ne:olt-010/internet"),
            50.0,
        ),
    ],
    ids=["voip-path", "voip-element", "internet-element"],
)
def test_a_service_is_judged_only_on_its_own_samples(
    lines: list[dict[str, Any]],
    voip: tuple[str, float | None, str],
    internet: tuple[str, float | None, str],
    index: float,
) -> None:
    """c-00204's KQIs as of 60 s (element alarms off, so both services are healthy). A service
    without path samples falls back to its access element's samples *of that service*, else its
    KQIs are unknown (no data), never another service's samples. By hand: voip one-way delay 300 ms
    is between the 150 ms target and the 400 ms limit → at_risk (60); its E-model MOS (no jitter, no
    loss) is 3.72 (derived_mos; between docs/qoe-voip.md's 4.33 at 150 ms and 3.22 at 400 ms) ≥ 3.6
    → met (100); the other voip KQIs have no data: voip scores (60 + 100) / 2 = 80 and internet,
    all unknown, 100 → CEI (80 + 100) / 2 = 90.0. Internet latency 300 ms > 100 ms (no limit) →
    violated (0), its only known KQI; voip unknown (100) → CEI (0 + 100) / 2 = 50.0."""
    p = replay_pipeline(
        topology_from_dict(example_topology()),
        load_rulesets(None),
        settings(quality={"element_alarms": "off"}),
        [orjson.dumps(line) for line in lines],
        until=T0 + 60,
    )
    try:
        view = customer(p.query, "c-00204", T0 + 60)
        assert view is not None
        for service, latency, (status, value, scope) in (
            ("voip", "voip.one_way_delay", voip),
            ("internet", "internet.latency", internet),
        ):
            (k,) = [k for k in view["kqis"][service] if k["name"] == latency]
            assert (k["status"], k["value"], k["scope"]) == (status, value, scope)
            if status == "unknown":
                assert {(k["status"], k["samples"]) for k in view["kqis"][service]} == {("unknown", 0)}
        assert view["experience"]["index"] == index
    finally:
        p.close()


def test_an_elements_kqis_of_one_service_do_not_read_another_services_samples() -> None:
    """olt-7 measured for voip at 140 ms and for internet at 80 ms, every 10 s for 2 min: each
    meets its own target (voip 150 ms, internet 100 ms; voip's E-model MOS at 140 ms is above 4.33
    at 150 ms, docs/qoe-voip.md, so ≥ 3.6). Mixed, internet's latency would read (140 + 80) / 2 =
    110 ms > 100 ms and raise a false internet quality alarm on olt-7."""
    lines = []
    for i in range(12):
        lines.append(sample("olt-7", 10 * i, service="voip", latency_ms=140.0))
        lines.append(sample("olt-7", 10 * i, service="internet", latency_ms=80.0))
    r = run(lines)
    assert r.records == []
    p = r.pipeline
    assert p is not None
    # every 60 s from 60 s to 420 s, when the last samples (110 s) have left the 300 s windows
    assert p.quality.evaluations == 7


def test_a_state_saved_before_per_service_element_scopes_still_loads() -> None:
    """An older snapshot's service-quality state (``services_at`` with element scopes mixing the
    services, an SLA tracker dump of version 1) loads: paths and SLA breaches are kept, element
    scopes start afresh. The state is the one of the MOS-and-outage replay above as of 1,450 s:
    c-00108's voip path measured, both breaches recorded."""
    p = replay_pipeline(
        topology_from_dict(example_topology()),
        load_rulesets(None),
        CoreSettings(),
        [orjson.dumps(line) for line in _mos_and_outage_lines()],
        until=T0 + 1450,
    )
    state = p.quality.dump()
    p.close()
    assert state["elements"] == {"ne:olt-005/voip": ["olt-005", "voip"]}
    sla_state = state["sla"]
    old = {
        **{k: v for k, v in state.items() if k != "elements"},
        "services_at": {"ne:olt-005": ["voip"]},
        "sla": {
            "version": 1,
            "customers": sla_state["subjects"],
            "mos": sla_state["mos"],
            "breaches": [
                {("customer_id" if k == "subject" else k): v for k, v in b.items()}
                for b in sla_state["breaches"]
            ],
        },
    }
    fresh = run([]).pipeline
    assert fresh is not None
    fresh.quality.load(old)
    assert fresh.quality.measured_paths() == {"path:c-00108/voip": ("c-00108", "voip")}
    assert fresh.quality.breach_records() == [MOS_BREACH, AVAILABILITY_BREACH]
    assert fresh.quality.dump() == {**state, "elements": {}}


VIDEO_NET = {
    "service_types": {"iptv": {"criticality": 4, "platform": ["he-1"]}, "internet": {"criticality": 3}},
    "elements": [
        {"id": "core", "type": "router"},
        {"id": "he-1", "type": "headend", "depends_on": ["core"]},
        {"id": "olt-v", "type": "olt", "depends_on": ["core"]},
    ],
    "customers": [
        {"id": "v-1", "tier": "gold", "access": "olt-v", "services": ["iptv", "internet"]},
        {"id": "v-2", "tier": "silver", "access": "olt-v", "services": ["internet"]},
    ],
}


def test_video_samples_get_a_p1203_mos_that_their_kqi_judges() -> None:
    """IPTV probes report what a player sees: 800 kbps at 480p 25 fps with 3 stalls of 12 s in all
    over the 60 s measured, and no MOS. `engine qoe video --bitrate-kbps 800 --resolution 853x480
    --fps 25 --stalls 3 --stall-seconds 12` gives MOS 2.707 (the width defaults to 16:9 of the
    height). The engine derives that P.1203 mode 0 MOS, the iptv.mos KQI (≥ 3.5) is violated on the
    element: one iptv KQI alarm, whose incident counts the iptv subscriber v-1 only (v-2 has
    internet only)."""
    metrics = {
        "bitrate_kbps": 800.0,
        "height": 480.0,
        "framerate": 25.0,
        "stalls": 3.0,
        "stall_seconds": 12.0,
    }
    lines = [sample("olt-v", 10 * i, service="iptv", customer="v-1", **metrics) for i in range(12)]
    r = run(lines, topology=topology_from_dict(VIDEO_NET))
    opened = r.events("opened")[0]
    assert opened["root_cause"]["alarm_id"] == "rule:quality:olt-v:iptv"
    info = opened["root_cause"]["threshold_info"]
    assert info["indicator"] == "iptv.mos (mos)"
    assert info["direction"] == "down"
    assert info["observed_value"] == pytest.approx(2.707, abs=0.001)
    assert opened["impact"]["customers"] == {"total": 1, "by_tier": {"gold": 1}}


def test_a_group_record_is_found_by_its_id_even_with_a_bar_in_the_element_id() -> None:
    """``group_record`` finds the topology's group of a ``group_id`` (its element is the id up to one of
    its ``|``, and an element id may hold one); a group the topology does not have is read from its id,
    without a customer count."""
    doc = {
        "service_types": {"internet": {"criticality": 3}, "voip": {"criticality": 5}},
        "elements": [{"id": "olt|1", "type": "olt"}, {"id": "olt", "type": "olt"}],
        "customers": [
            {"id": "a", "tier": "gold", "access": "olt|1", "services": ["voip", "internet"]},
            {"id": "b", "tier": "gold", "access": "olt|1", "services": ["internet", "voip"]},
            {"id": "c", "tier": "gold", "access": "olt", "services": ["internet"]},
        ],
    }
    topo = topology_from_dict(doc)
    q = ServiceQuality(topo, CoreSettings().quality, element_alarms=True)
    assert [group_id(g) for g in topo.all_groups()] == ["olt|1|gold|internet+voip", "olt|gold|internet"]
    assert q.group_record("olt|1|gold|internet+voip") == {
        "access": "olt|1",
        "tier": "gold",
        "services": ["internet", "voip"],
        "customers": 2,
    }
    assert q.group_record("olt|gold|internet")["customers"] == 1
    assert q.group_record("olt|silver|internet") == {
        "access": "olt",
        "tier": "silver",
        "services": ["internet"],
        "customers": None,
    }


def test_batches_leave_the_quality_state_that_observe_row_leaves_for_each_sample() -> None:
    """Batches fed as bytes, taken by the decoder's fast path (their metric names known,
    ``Decoded.metric_names``; a batch naming no service read as the default service's), leave the
    KQI windows and the quality state that ``observe_row`` of each sample in turn leaves: a batch
    of one service whose KQIs read its metrics, of the default service, one no KQI reads, and
    services mixed, each kind twice (a service's KQI metrics are looked up on its first sample)."""
    topology = topology_from_dict(example_topology())
    batched = Pipeline(topology, load_rulesets(None), settings())
    reference = Pipeline(topology, load_rulesets(None), settings())

    def row(target: str, t: float, service: str | None = None, **metrics: float) -> dict[str, Any]:
        item: dict[str, Any] = {
            "probe_id": f"p-{target}",
            "target": target,
            "time": T0 + t,
            "metrics": metrics,
        }
        if service is not None:
            item["service"] = service
        return item

    batches = [
        kind
        for k in (0, 40)
        for kind in (
            [row("olt-7", t, "internet", latency_ms=80.0 + t) for t in range(k, k + 10)],
            [row("olt-001", t, None, available=1.0, latency_ms=5.0) for t in range(k + 10, k + 20)],
            [row("olt-002", t, None, jitter_ms=2.0) for t in range(k + 20, k + 30)],
            [
                row("olt-7", t, ("voip", "internet", None)[t % 3], latency_ms=140.0)
                for t in range(k + 30, k + 40)
            ],
        )
    ]
    try:
        for i, batch in enumerate(batches):
            payload = orjson.dumps({"samples": batch})
            fast = batched.decoder._batch_fast("soc/probes/p", payload)
            assert fast is not None
            assert fast.metric_names is not None
            # flush=False: no evaluation runs (the reference runs none)
            assert batched.feed("soc/probes/p", payload, T0 + 80 + i, flush=False).message is not None
            for item in batch:
                reference.quality.observe_row(item)  # type: ignore[arg-type]  # a row: SampleRow's keys
        got, expected = batched.quality.dump(), reference.quality.dump()
        got["windows"]["counters"].pop()  # the sweep counter: the feed's own clock moved it
        expected["windows"]["counters"].pop()
        assert got == expected
        windows = orjson.dumps(got["windows"]).decode()
        assert "ne:olt-7/internet" in windows  # the internet batch was read, not skipped
        assert "ne:olt-001/default" in windows  # and the default service's
    finally:
        batched.close()
        reference.close()
