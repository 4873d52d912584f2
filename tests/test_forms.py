"""The stateful rule forms on the pure core: group, inhibit, threshold, pair, kpi_threshold,
maintenance and priority overrides (timelines on virtual time, exact figures)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.scenarios import T0, alarm, clear
from engine.core.forms.pairs import Pairs
from engine.core.forms.storms import Storms
from engine.core.pipeline import Pipeline
from engine.errors import RulesetError
from engine.model.timeutil import format_time, parse_time
from engine.model.topology import topology_from_dict
from engine.rules.schema import Ruleset, load_rulesets, ruleset_from_data
from tests.harness import Run, run


def rules(*items: dict[str, Any], name: str = "t") -> list[Ruleset]:
    return [ruleset_from_data({"name": name, "rules": list(items)}, "<test>")]


def sample(target: str, t: float, **metrics: float) -> dict[str, Any]:
    return {
        "topic": f"soc/probes/p-{target}",
        "payload": {
            "probe_id": f"p-{target}",
            "target": target,
            "time": format_time(T0 + t),
            "metrics": metrics,
        },
    }


def at(record: dict[str, Any], key: str = "time") -> float:
    return parse_time(record[key]) - T0


def pipe(r: Run) -> Pipeline:
    assert r.pipeline is not None
    return r.pipeline


def roots(r: Run, event: str = "opened") -> list[str]:
    return [rec["root_cause"]["alarm_id"] for rec in r.events(event)]


# --- group ---------------------------------------------------------------------------------------

GROUP = {
    "name": "by-site",
    "group": {"match": {"event_type": "environmentalAlarm"}, "by": ["site"], "window": "10m", "wait": "1m"},
}


def test_group_gathers_alarms_of_a_site_into_one_incident_after_group_wait() -> None:
    lines = [
        alarm("olt-001", "highTemperature", 0, event_type="environmentalAlarm"),
        alarm("olt-006", "fanFailure", 20, event_type="environmentalAlarm"),  # same site d1
        alarm("olt-002", "highTemperature", 30, event_type="environmentalAlarm"),  # site d2: own group
        alarm("olt-011", "humidity", 11 * 60, event_type="environmentalAlarm"),  # d1, after the window
    ]
    r = run(lines, rulesets=rules(GROUP))
    opened = {rec["root_cause"]["alarm_id"]: rec for rec in r.events("opened")}
    assert sorted(opened) == ["olt-001:highTemperature", "olt-002:highTemperature", "olt-011:humidity"]
    first = opened["olt-001:highTemperature"]
    assert at(first) == 60.0  # group wait, not the 30 s settle
    assert [s["alarm_id"] for s in first["suppressed"]] == ["olt-006:fanFailure"]
    assert "grouped by site=site-d1" in first["suppressed"][0]["reason"]
    assert "a group incident" in " ".join(first["explanation"])


def test_group_incident_resolves_when_its_last_member_clears_not_its_anchor() -> None:
    lines = [
        alarm("olt-001", "highTemperature", 0, event_type="environmentalAlarm"),
        alarm("olt-006", "fanFailure", 20, event_type="environmentalAlarm"),
        clear("olt-001", "highTemperature", 120),
        clear("olt-006", "fanFailure", 600),
    ]
    r = run(lines, rulesets=rules(GROUP))
    assert len(r.incident_ids()) == 1
    (resolved,) = r.events("resolved")
    assert at(resolved) == 600 + 300  # last member's clear + hold-down


# --- inhibit ------------------------------------------------------------------------------------

INHIBIT = {
    "name": "power-inhibits-site",
    "inhibit": {
        "source": {"probable_cause": "mainsFailure"},
        "target": {"severity": {"at_most": "major"}},
        "equal": ["site"],
    },
}


def test_inhibit_suppresses_targets_while_the_source_is_active_and_they_resurface_after() -> None:
    lines = [
        alarm("olt-7", "equipmentMalfunction", 0, "minor"),  # before the source: inhibited when it comes
        alarm("pwr-c", "mainsFailure", 10, "critical"),
        alarm("cell-c1", "temperature", 20, "major"),
        alarm("olt-001", "temperature", 20, "major"),  # another site: not inhibited
        clear("pwr-c", "mainsFailure", 600),
        clear("olt-001", "temperature", 601),
    ]
    r = run(lines, rulesets=rules(INHIBIT))
    opened = {rec["root_cause"]["alarm_id"]: rec for rec in r.events("opened")}
    power = opened["pwr-c:mainsFailure"]
    assert sorted(s["alarm_id"] for s in power["suppressed"]) == [
        "cell-c1:temperature",
        "olt-7:equipmentMalfunction",
    ]
    assert "inhibited while the source is active (site=site-c equal)" in power["suppressed"][0]["reason"]
    assert "olt-001:temperature" in opened
    # After the source's incident resolves (clear + hold-down), still-active targets re-surface.
    later = [rec for rec in r.events("opened") if at(rec) > 600]
    assert sorted(rec["root_cause"]["alarm_id"] for rec in later) == [
        "cell-c1:temperature",
        "olt-7:equipmentMalfunction",
    ]
    assert all(at(rec) >= 900 for rec in later)


def test_inhibit_never_swallows_a_targets_clear() -> None:
    lines = [
        alarm("pwr-c", "mainsFailure", 0, "critical"),
        alarm("olt-7", "equipmentMalfunction", 5, "major"),
        clear("olt-7", "equipmentMalfunction", 100),
        alarm("pwr-c", "mainsFailure", 200, "critical"),  # a repeat makes an update after the clear
    ]
    r = run(lines, rulesets=rules(INHIBIT))
    last = r.last(r.events("opened")[0]["incident_id"])
    (sup,) = last["suppressed"]
    assert sup["alarm_id"] == "olt-7:equipmentMalfunction"
    assert sup["state"] == "cleared"


# --- threshold (storm) --------------------------------------------------------------------------

STORM: dict[str, Any] = {
    "name": "link-storm",
    "threshold": {
        "match": {"probable_cause": "linkDown"},
        "by": ["region"],
        "count": 5,
        "window": "1m",
        "raise": {"probable_cause": "alarmStorm", "severity": "major"},
    },
}


def test_threshold_raises_one_storm_per_window_with_the_counted_alarms_suppressed() -> None:
    lines = [alarm(f"olt-{i:03d}", "linkDown", i * 5, "minor") for i in range(1, 9)]  # 8 in 40 s
    lines += [clear(f"olt-{i:03d}", "linkDown", 300) for i in range(1, 9)]
    r = run(lines, rulesets=rules(STORM))
    storm_key = "rule:t/link-storm:south"
    assert roots(r) == [storm_key]  # minor linkDown has effect degraded, yet nothing else opens
    last = r.last(r.events("opened")[0]["incident_id"])
    assert len(last["suppressed"]) == 8
    assert "at least 5 alarms within 60s (region=south)" in last["suppressed"][0]["reason"]
    assert "5 alarms within 60s" in " ".join(last["explanation"])
    p = pipe(r)
    assert p.form(Storms).fired == 1
    # the storm alarm clears one window after the last counted alarm; its incident resolves 5 min later
    (resolved,) = r.events("resolved")
    assert at(resolved) == 40 + 60 + 300


def test_a_storm_whose_alarms_outlive_it_does_not_recount_them() -> None:
    """When the storm is over, its still-active alarms re-surface one by one, not as a new storm."""
    lines = [alarm(f"olt-{i:03d}", "linkDown", i * 5, "minor") for i in range(1, 9)]
    r = run(lines, rulesets=rules(STORM))
    assert roots(r)[0] == "rule:t/link-storm:south"
    assert len(roots(r)) == 1 + 8
    p = pipe(r)
    assert p.form(Storms).fired == 1


def test_threshold_below_count_raises_nothing() -> None:
    lines = [alarm(f"olt-{i:03d}", "linkDown", i * 20, "warning") for i in range(1, 6)]  # 5 over 80 s
    r = run(lines, rulesets=rules(STORM))
    assert r.records == []


# --- pair ---------------------------------------------------------------------------------------

TRANSIENT = {
    "name": "link-bounce",
    "pair": {
        "first": {"probable_cause": "linkDown"},
        "second": "clear",
        "window": "2m",
        "on_pair": "discard",
    },
}
ESCALATE = {
    "name": "restart-must-complete",
    "pair": {
        "first": {"probable_cause": "coldStart"},
        "second": {"probable_cause": "restartComplete"},
        "equal": ["ne_id"],
        "window": "5m",
        "on_timeout": {
            "raise": {"probable_cause": "restartFailed", "severity": "critical", "effect": "outage"}
        },
    },
}


def test_pair_discard_drops_a_transient_that_clears_within_the_window() -> None:
    lines = [alarm("olt-001", "linkDown", 0, "critical"), clear("olt-001", "linkDown", 90)]
    r = run(lines, rulesets=rules(TRANSIENT))
    assert r.records == []
    p = pipe(r)
    assert p.incidents.discarded == 1
    assert p.form(Pairs).paired == 1


def test_pair_discard_holds_the_incident_for_the_window_then_opens_it() -> None:
    lines = [alarm("olt-001", "linkDown", 0, "critical"), clear("olt-001", "linkDown", 200)]
    r = run(lines, rulesets=rules(TRANSIENT))
    (opened,) = r.events("opened")
    assert at(opened) == 120.0  # held for the pair's window instead of the 30 s settle


def test_pair_on_its_own_clear_escalates_each_alarm_that_stays() -> None:
    rule = {
        "name": "must-clear",
        "pair": {
            "first": {"probable_cause": "linkDown"},
            "window": "1m",
            "on_timeout": {"raise": {"probable_cause": "linkDownTooLong", "severity": "critical"}},
        },
    }
    lines = [
        alarm("olt-001", "linkDown", 0, "warning"),
        alarm("olt-002", "linkDown", 1, "warning"),
        clear("olt-002", "linkDown", 30),
        clear("olt-001", "linkDown", 500),
    ]
    r = run(lines, rulesets=rules(rule))
    assert roots(r) == ["rule:t/must-clear:olt-001:linkDown"]
    (opened,) = r.events("opened")
    assert "olt-001:linkDown not followed by its clear within 60s" in " ".join(opened["explanation"])
    p = pipe(r)
    assert p.form(Pairs).paired == 1
    assert p.form(Pairs).timeouts == 1


def test_pair_timeout_escalates_and_the_escalation_clears_with_the_first() -> None:
    lines = [
        alarm("olt-002", "coldStart", 0, "warning"),
        alarm("olt-002", "restartComplete", 30, "warning"),  # completes the first pair
        alarm("olt-003", "coldStart", 0, "warning"),  # never completes
        clear("olt-003", "coldStart", 900),
    ]
    r = run(lines, rulesets=rules(ESCALATE))
    assert roots(r) == ["rule:t/restart-must-complete:olt-003:coldStart"]
    (opened,) = r.events("opened")
    assert opened["state"] == "outage"
    assert [s["alarm_id"] for s in opened["suppressed"]] == ["olt-003:coldStart"]
    assert at(opened) == 300 + 30  # escalation at the window's end, then settle
    (resolved,) = r.events("resolved")
    assert at(resolved) == 900 + 300


# --- kpi threshold ------------------------------------------------------------------------------

LATENCY = {
    "name": "latency",
    "kpi_threshold": {
        "metric": "latency_ms",
        "above": 150,
        "clear": 120,
        "for": "1m",
        "scope": {"element_type": "olt"},
    },
}


def test_kpi_threshold_with_for_duration_and_hysteresis() -> None:
    values = [100, 160, 170, 180, 140, 130, 110]  # every 30 s
    lines = [sample("olt-001", i * 30, latency_ms=v) for i, v in enumerate(values)]
    r = run(lines, rulesets=rules(LATENCY))
    (opened,) = r.events("opened")
    root = opened["root_cause"]
    assert root["alarm_id"] == "rule:t/latency:olt-001"
    assert root["probable_cause"] == "thresholdCrossed"
    assert opened["state"] == "degraded"
    assert "latency_ms = 180 > 150 for 60s" in " ".join(opened["explanation"])
    assert root["threshold_info"] == {  # X.733 threshold info: what crossed, how far, what clears it
        "indicator": "latency_ms",
        "direction": "up",
        "observed_value": 180.0,
        "threshold": 150.0,
        "clear": 120.0,
        "granularity": "last sample, held 60s",
    }
    # breach from 30 s; held 60 s at 90 s; raised at 90 s, opened after settle; 140 and 130 stay
    # above the clear value 120, 110 clears it at 180 s → resolved 300 s later
    assert at(opened) == 90 + 30
    (resolved,) = r.events("resolved")
    assert at(resolved) == 180 + 300


def test_kpi_breach_below_an_outage_is_its_symptom() -> None:
    lines = [
        alarm("agg-3", "lossOfSignal", 0, "critical"),
        sample("olt-001", 0, latency_ms=900),
        sample("olt-001", 61, latency_ms=950),
    ]
    r = run(lines, rulesets=[*rules(LATENCY), *load_default()])
    (opened,) = r.events("opened")
    assert opened["root_cause"]["ne_id"] == "agg-3"
    last = r.last(opened["incident_id"])
    assert [s["alarm_id"] for s in last["suppressed"]] == ["rule:t/latency:olt-001"]
    assert last["suppressed"][0]["threshold_info"]["observed_value"] == 950.0  # the evidence, in figures
    assert "threshold_info" not in last["root_cause"]  # a loss of signal crosses no threshold


def load_default() -> list[Ruleset]:
    return load_rulesets(None)


def test_kpi_threshold_mean_over_a_window() -> None:
    rule = {
        "name": "mos",
        "kpi_threshold": {"metric": "mos", "below": 3.6, "aggregate": "mean", "over": "2m", "clear": 3.8},
    }
    values = [4.2, 3.0, 3.0, 3.0, 4.4, 4.4, 4.4]  # every 30 s; mean over the last 2 min (4 samples)
    lines = [sample("sbc-1", i * 30, mos=v) for i, v in enumerate(values)]
    r = run(lines, rulesets=rules(rule))
    # means: 4.2, 3.6, 3.4 (raised at 60 s), 3.3, 3.35, 3.7, 4.05 (cleared at 180 s)
    (opened,) = r.events("opened")
    assert at(opened) == 60 + 30
    assert "mean(mos) over 120s = 3.4 < 3.6" in " ".join(opened["explanation"])
    (resolved,) = r.events("resolved")
    assert at(resolved) == 180 + 300


# --- maintenance --------------------------------------------------------------------------------

MAINT = {
    "name": "agg-3-works",
    "maintenance": {
        "scope": {"elements": ["agg-3"]},
        "schedule": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"},
    },
}


def test_maintenance_holds_back_an_incident_that_clears_inside_the_window() -> None:
    lines = [alarm("agg-3", "lossOfSignal", 60, "critical"), clear("agg-3", "lossOfSignal", 1200)]
    r = run(lines, rulesets=[*rules(MAINT), *load_default()])
    assert r.records == []
    p = pipe(r)
    assert p.incidents.held_back == 1
    assert p.incidents.discarded == 1


def test_maintenance_notifies_what_is_still_active_at_the_windows_end() -> None:
    lines = [alarm("agg-3", "lossOfSignal", 60, "critical"), alarm("olt-001", "linkDown", 61, "critical")]
    r = run(lines, rulesets=[*rules(MAINT), *load_default()])
    (opened,) = r.events("opened")
    assert at(opened) == 3600.0
    assert [s["alarm_id"] for s in opened["suppressed"]] == ["olt-001:linkDown"]
    assert "held back by maintenance window t/agg-3-works" in " ".join(opened["explanation"])


def test_maintenance_never_suppresses_a_resolution() -> None:
    lines = [
        alarm("agg-3", "lossOfSignal", -600, "critical"),  # opened before the window
        clear("agg-3", "lossOfSignal", 600),  # cleared inside it
    ]
    r = run(lines, rulesets=[*rules(MAINT), *load_default()])
    assert len(r.events("opened")) == 1
    (resolved,) = r.events("resolved")
    assert at(resolved) == 900.0


# --- priority override --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ne", "override", "expected"),
    [
        # agg-1 alone: P3 (olt-7 and its 20 customers at risk); agg-3: P1 (outage, 1,000 customers)
        ("agg-1", {"when": {"services": ["voip"]}, "set": 1}, 1),
        ("agg-3", {"when": {"root": {"element_type": "switch"}}, "lower": 2}, 3),
        ("agg-1", {"when": {"root": {"element_type": "olt"}}, "set": 1}, 3),  # root does not match
        ("agg-1", {"when": {"tiers": ["platinum"]}, "set": 1}, 3),  # no platinum behind olt-7: unchanged
        ("agg-1", {"when": {"tiers": ["gold", "platinum"]}, "set": 1}, 1),  # 2 gold
        ("agg-1", {"when": {"min_customers": 10}, "raise": 2}, 1),
        ("agg-1", {"when": {"min_customers": 21}, "raise": 2}, 3),
        ("agg-1", {"when": {"customers": ["c-00004"]}, "raise": 1}, 2),  # behind olt-7
        ("agg-3", {"when": {"customers": ["c-00004"]}, "lower": 1}, 1),  # not behind agg-3
        ("agg-1", {"when": {"customers": ["c-99999"]}, "raise": 1}, 3),  # unknown id: never affected
    ],
)
def test_priority_override(ne: str, override: dict[str, Any], expected: int) -> None:
    r = run(
        [alarm(ne, "lossOfSignal", 0, "critical")],
        rulesets=[*rules({"name": "o", "priority": override}, name="ov"), *load_default()],
    )
    (opened,) = r.events("opened")
    assert opened["priority"] == expected, opened["priority_breakdown"]
    applied = opened["priority_breakdown"].get("overrides", [])
    assert bool(applied) == (expected != {"agg-1": 3, "agg-3": 1}[ne])


def test_priority_override_of_severity() -> None:
    override = {"when": {"root": {"ne_id": "agg-3"}}, "severity": "warning"}
    r = run(
        [alarm("agg-3", "lossOfSignal", 0, "critical")],
        rulesets=[*rules({"name": "o", "priority": override}, name="ov"), *load_default()],
    )
    (opened,) = r.events("opened")
    assert opened["priority_breakdown"]["overrides"] == [{"rule": "ov/o", "from": 1, "to": 1}]


def test_an_alarm_matching_both_sides_is_not_inhibited_by_another_such_alarm() -> None:
    """Alertmanager's rule: with source and target overlapping, two alarms matching both never mute
    each other; a target-only alarm is still inhibited."""
    rule = {
        "name": "site-alarms",
        "inhibit": {
            "source": {"severity": {"at_least": "major"}},
            "target": {"severity": {"at_least": "minor"}},
            "equal": ["site"],
        },
    }
    lines = [
        alarm("pwr-c", "mainsFailure", 0, "critical"),  # both sides
        alarm("olt-7", "equipmentMalfunction", 5, "major"),  # both sides: not inhibited by pwr-c
        alarm("cell-c1", "highTemperature", 6, "minor"),  # target only: inhibited
    ]
    r = run(lines, rulesets=rules(rule))
    opened = {rec["root_cause"]["alarm_id"]: rec for rec in r.events("opened")}
    assert sorted(opened) == ["olt-7:equipmentMalfunction", "pwr-c:mainsFailure"]
    last = r.last(opened["pwr-c:mainsFailure"]["incident_id"])
    assert [s["alarm_id"] for s in last["suppressed"]] == ["cell-c1:highTemperature"]


def test_a_priority_rule_severity_is_the_incidents_severity() -> None:
    override = {"when": {"root": {"ne_id": "agg-3"}}, "lower": 1, "severity": "warning"}
    r = run(
        [alarm("agg-3", "lossOfSignal", 0, "critical")],
        rulesets=[*rules({"name": "o", "priority": override}, name="ov"), *load_default()],
    )
    (opened,) = r.events("opened")
    assert opened["severity"] == "warning"
    assert opened["root_cause"]["severity"] == "critical"  # the alarm itself is unchanged
    assert opened["priority"] == 2


# --- ruleset scope (defaults.scope) --------------------------------------------------------------


def scoped(scope: dict[str, Any], *items: dict[str, Any]) -> list[Ruleset]:
    return [ruleset_from_data({"name": "t", "defaults": {"scope": scope}, "rules": list(items)}, "<test>")]


def test_a_ruleset_scope_limits_a_threshold_rule_to_the_elements_in_scope() -> None:
    """The same 8 link-downs in the south storm under a south-scoped ruleset and do not under a
    north-scoped one (there, each is an incident of its own)."""
    lines = [alarm(f"olt-{i:03d}", "linkDown", i * 5, "minor") for i in range(1, 9)]
    lines += [clear(f"olt-{i:03d}", "linkDown", 300) for i in range(1, 9)]
    south = run(lines, rulesets=scoped({"region": "south"}, STORM))
    assert roots(south) == ["rule:t/link-storm:south"]
    north = run(lines, rulesets=scoped({"region": "north"}, STORM))
    assert pipe(north).form(Storms).fired == 0
    assert len(roots(north)) == 8


def test_a_rules_own_condition_wins_over_the_ruleset_scope() -> None:
    """The scope says north; the rule says south for the same field: the rule's condition holds."""
    spec: dict[str, Any] = {**STORM["threshold"], "match": {"probable_cause": "linkDown", "region": "south"}}
    storm = {"name": "link-storm", "threshold": spec}
    lines = [alarm(f"olt-{i:03d}", "linkDown", i * 5, "minor") for i in range(1, 9)]
    lines += [clear(f"olt-{i:03d}", "linkDown", 300) for i in range(1, 9)]
    r = run(lines, rulesets=scoped({"region": "north"}, storm))
    assert roots(r) == ["rule:t/link-storm:south"]


def test_a_ruleset_scope_applies_to_both_sides_of_a_correlate_rule() -> None:
    """agg-3 (a switch) explains the OLTs below it; scoped to `element_type: {not: olt}`, its rule can
    still take agg-3 as a root but no OLT as a symptom, so every alarm opens its own incident."""
    rule = {
        "name": "topo",
        "correlate": {"root": {"effect": "outage"}, "symptom": {}, "relation": "downstream_of"},
    }
    lines = [alarm("agg-3", "lossOfSignal", 0, "critical"), alarm("olt-001", "linkDown", 1, "critical")]
    unscoped = run(lines, rulesets=rules(rule))
    assert roots(unscoped) == ["agg-3:lossOfSignal"]
    r = run(lines, rulesets=scoped({"element_type": {"not": "olt"}}, rule))
    assert sorted(roots(r)) == ["agg-3:lossOfSignal", "olt-001:linkDown"]


def test_a_ruleset_scope_limits_kpi_threshold_and_maintenance_rules() -> None:
    """KPI thresholds and maintenance windows match elements: a `region: north` scope keeps the
    latency rule off olt-001 (south) and keeps agg-3's (south) works from holding anything back."""
    lines = [sample("olt-001", i * 30, latency_ms=200) for i in range(5)]
    assert len(run(lines, rulesets=rules(LATENCY)).events("opened")) == 1
    assert run(lines, rulesets=scoped({"region": "north"}, LATENCY)).records == []

    outage = [alarm("agg-3", "lossOfSignal", 60, "critical")]
    held = run(outage, rulesets=[*rules(MAINT), *load_default()])
    assert at(held.events("opened")[0]) == 3600.0
    free = run(outage, rulesets=[*scoped({"region": "north"}, MAINT), *load_default()])
    assert at(free.events("opened")[0]) == 60 + 30  # the settle time: no window covers agg-3


def test_a_ruleset_scope_limits_priority_overrides_to_roots_in_scope() -> None:
    override = {"name": "p", "priority": {"set": 1}}
    outage = [alarm("agg-3", "lossOfSignal", 0, "critical")]
    assert (
        run(outage, rulesets=[*scoped({"site": "site-d"}, override), *load_default()]).events("opened")[0][
            "priority"
        ]
        == 1
    )
    other = run(outage, rulesets=[*scoped({"site": "site-a"}, override), *load_default()])
    assert "overrides" not in other.events("opened")[0]["priority_breakdown"]


@pytest.mark.parametrize(
    ("scope", "reason"),
    [
        ({"severity": "major"}, "'severity' cannot scope a ruleset"),
        ({"region": {"regex": "("}}, "invalid regex"),
        ({"colour": "red"}, "unknown field 'colour'"),
    ],
)
def test_a_bad_ruleset_scope_is_refused_with_the_field(scope: dict[str, Any], reason: str) -> None:
    with pytest.raises(RulesetError) as info:
        scoped(scope, STORM)
    assert "defaults.scope" in str(info.value)
    assert reason in str(info.value)


JOINT_TOPOLOGY = {
    "service_types": {"voip": {"criticality": 5, "platform": ["sbc"]}, "internet": {"criticality": 3}},
    "elements": [
        {"id": "core", "type": "router", "depends_on": []},
        {"id": "sbc", "type": "sbc", "depends_on": ["core"]},
        {"id": "olt-a", "type": "olt", "depends_on": ["core"]},
        {"id": "olt-b", "type": "olt", "depends_on": ["core"]},
    ],
    "customers": [
        {"id": "plat-internet", "tier": "platinum", "access": "olt-a", "services": ["internet"]},
        {"id": "bronze-voip", "tier": "bronze", "access": "olt-a", "services": ["voip"]},
        {"id": "plat-voip", "tier": "platinum", "access": "olt-b", "services": ["voip", "internet"]},
    ],
}


@pytest.mark.parametrize(
    ("ne", "applies"),
    [
        ("olt-a", False),  # a platinum internet customer and a bronze voice one: not platinum voice
        ("olt-b", True),  # the platinum voice customer's access
        ("sbc", True),  # the voice platform: every voice subscription, the platinum one included
    ],
)
def test_a_priority_rule_with_tiers_and_services_needs_one_subscription_of_both(
    ne: str, applies: bool
) -> None:
    """`when: {tiers: [platinum], services: [voip]}` holds only when some platinum customer's voice
    service is affected, not when platinum and voice are affected on different customers."""
    override = {
        "name": "platinum-voice-first",
        "priority": {"when": {"tiers": ["platinum"], "services": ["voip"]}, "set": 1},
    }
    r = run(
        [alarm(ne, "lossOfSignal", 0, "critical")],
        topology=topology_from_dict(JOINT_TOPOLOGY),
        rulesets=[*rules(override), *load_default()],
    )
    (opened,) = r.events("opened")
    applied = [o["rule"] for o in opened["priority_breakdown"].get("overrides", [])]
    assert applied == (["t/platinum-voice-first"] if applies else [])


def test_maintenance_mutes_updates_of_an_incident_opened_before_it_until_its_end() -> None:
    """agg-3's outage opens at -70 s, before the works (settle 30 s from -100 s); an OLT alarm joins
    it inside the window at 100 s, the platinum customers' SLA is breached at 1,196 s (-100 +
    1,296 s of budget) and the OLT alarm clears at 3,500 s: no `updated` for any of them (planned
    work is not news); one `updated` at the window's end (3,600 s) carries what changed; the
    resolution comes when due, never held."""
    lines = [
        alarm("agg-3", "lossOfSignal", -100, "critical"),
        alarm("olt-001", "linkDown", 100, "critical"),
        clear("olt-001", "linkDown", 3500),
        clear("agg-3", "lossOfSignal", 4000),
    ]
    r = run(lines, rulesets=[*rules(MAINT), *load_default()])
    assert [(x["event"], at(x)) for x in r.records] == [
        ("opened", -70.0),
        ("updated", 3600.0),
        ("resolved", 4300.0),
    ]
    update = r.records[1]
    assert [s["alarm_id"] for s in update["suppressed"]] == ["olt-001:linkDown"]
    assert update["sla"]["customers_breached"] > 0


BOUNCE = {
    "name": "link-bounce",
    "pair": {
        "first": {"probable_cause": "linkDown"},
        "window": "1m",
        "on_pair": {"raise": {"probable_cause": "linkBounced", "severity": "warning"}, "discard": True},
    },
}
BOUNCING = {
    "name": "bouncing-link",
    "threshold": {
        "match": {"probable_cause": "linkBounced"},
        "by": ["ne_id"],
        "count": 3,
        "window": "15m",
        "raise": {"probable_cause": "linkUnstable", "severity": "major", "effect": "degraded"},
    },
}


def test_a_completed_pair_raises_an_event_that_a_threshold_rule_counts() -> None:
    """SEC's PairWithWindow + SingleWithThreshold: each link-down of olt-001 that clears within a
    minute is a discarded transient and raises a `linkBounced` event (raised and cleared at once: a
    new occurrence each time). The third bounce within 15 min makes the threshold rule escalate:
    one incident, rooted at the storm alarm, holding the three bounce events. Bounces are 4 min
    apart (t = 0, 240, 480 s), so the alarm table never marks the link as flapping."""
    lines = []
    for t in (0, 240, 480):
        lines += [alarm("olt-001", "linkDown", t, "critical"), clear("olt-001", "linkDown", t + 20)]
    r = run(lines, rulesets=rules(BOUNCE, BOUNCING))
    assert roots(r) == ["rule:t/bouncing-link:olt-001"]
    last = r.last(r.events("opened")[0]["incident_id"])
    assert [s["alarm_id"] for s in last["suppressed"]] == [
        f"rule:t/link-bounce:olt-001:linkDown#{n}" for n in (1, 2, 3)
    ]
    assert "3 alarms within 900s (ne_id=olt-001)" in " ".join(last["explanation"])
    p = pipe(r)
    assert (p.form(Pairs).paired, p.incidents.discarded, p.form(Storms).fired) == (3, 3, 1)
