"""`engine rules explain`: why the engine did what it did, for one alarm or one incident.

On the pure core (a replayed pipeline on the example topology), on the command line (``python -m
engine`` in a subprocess, as in ``test_cli``) and on a running daemon's HTTP API (real HTTP, as in
``test_daemon``)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from bench.scenarios import T0, alarm, clear, example_topology, fiber_cut, site_power_failure
from engine.core import explain_match
from engine.core.explain import NotFound, PostMortems, explain, explain_alarm, explain_incident, render
from engine.core.forms import explain_correlate
from engine.core.incidents import incident_id
from engine.core.pipeline import Pipeline
from engine.core.settings import CoreSettings
from engine.model.topology import topology_from_dict
from engine.rules.compiler import compile_rulesets, match_definitions
from engine.rules.host import RuleHost
from engine.rules.schema import Ruleset, load_rulesets, ruleset_from_data
from engine.service.daemon import Daemon
from engine.tools.offline import replay_pipeline
from tests.daemon_harness import settings, until, write_config
from tests.test_cli import EXAMPLE_EVENTS, EXAMPLE_TOPOLOGY, ROOT, engine
from tests.test_http import FakeCore, serve

ROOT_KEY = "agg-3:lossOfSignal:port 1/1/1"
TOPO = "default/topology-root-cause"
SITE = "default/site-power-failure"

Replay = Callable[..., Pipeline]


@pytest.fixture
def replay() -> Iterator[Replay]:
    """``replay(lines, rulesets=None, until=None)``: a pipeline as of the end of the lines (not
    drained) or as of T0 + ``until`` seconds; closed after the test."""
    made: list[Pipeline] = []

    def make(
        lines: list[dict[str, Any]], rulesets: list[Ruleset] | None = None, until: float | None = None
    ) -> Pipeline:
        p = replay_pipeline(
            topology_from_dict(example_topology()),
            rulesets or load_rulesets(None),
            CoreSettings(),
            (orjson.dumps(line) for line in lines),
            until=None if until is None else T0 + until,
        )
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def rules(*items: dict[str, Any], name: str = "t") -> list[Ruleset]:
    return [ruleset_from_data({"name": name, "rules": list(items)}, "<test>")]


def rule(ex: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [r for r in ex["rules"] if r["rule"] == name]
    assert len(found) == 1, name
    return found[0]


def part(entry: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [p for p in entry["parts"] if p["part"] == name]
    assert len(found) == 1, name
    return found[0]


def fiber_cut_raises() -> list[dict[str, Any]]:
    return [line for line in fiber_cut() if line["payload"]["severity"] != "cleared"]


# --- alarms -------------------------------------------------------------------------------------


def test_explanations_share_one_matcher_per_pipeline(replay: Replay, monkeypatch: pytest.MonkeyPatch) -> None:
    """A durable host cannot be freed (~200 KB each), so the live explanations of one pipeline
    share one matcher: a hundred answers make one host, each answer the same as the first, and a
    pipeline's matcher goes with the pipeline."""
    made: list[object] = []

    class CountedHost(RuleHost):
        def __init__(self) -> None:
            made.append(self)
            super().__init__()

    monkeypatch.setattr(explain_match, "RuleHost", CountedHost)
    p = replay(fiber_cut_raises(), until=60)
    first = explain_alarm(p.query, "olt-001:linkDown")
    incident = explain_incident(p.query, incident_id(ROOT_KEY, T0 + 1.2))
    for _ in range(50):
        assert explain_alarm(p.query, "olt-001:linkDown") == first
        assert explain_incident(p.query, incident_id(ROOT_KEY, T0 + 1.2)) == incident
    assert len(made) == 1
    other = replay(fiber_cut_raises(), until=60)
    assert explain_alarm(other.query, "olt-001:linkDown") == first
    assert len(made) == 2
    assert isinstance(p.explain_matcher, explain_match.Matcher)
    assert other.explain_matcher is not p.explain_matcher


def test_a_fiber_cut_symptom_is_explained_by_its_root(replay: Replay) -> None:
    """An OLT's link-down under the cut: suppressed by agg-3's loss of signal through the topology
    rule (downstream_of), the symptom side of that rule matched; the site rule's root side did not
    match, and the explanation says which condition failed and on what value."""
    p = replay(fiber_cut_raises(), until=60)
    ex = explain_alarm(p.query, "olt-001:linkDown")
    assert ex["kind"] == "alarm"
    assert ex["alarm"]["effect"] == "outage"
    assert ex["element"] == {
        "id": "olt-001",
        "type": "olt",
        "name": None,
        "site": "site-d1",
        "region": "south",
    }
    sup = ex["decision"]["suppressed"]
    assert (sup["root"], sup["rule"], sup["relation"]) == (ROOT_KEY, TOPO, "downstream_of")
    assert sup["delay"] == -0.15  # raised before its root: within the rule's 30 s lead
    assert "olt-001 is at or below agg-3" in sup["reason"]
    inc = ex["decision"]["incident"]
    assert (inc["role"], inc["root"], inc["phase"]) == ("member", ROOT_KEY, "open")
    assert inc["incident_id"] == incident_id(ROOT_KEY, T0 + 1.2)
    assert ex["decided_by"] == [TOPO]
    assert ex["matched_rules"] == [SITE, TOPO, "topology-cluster/cluster"]  # the fallback matched too

    topo = rule(ex, TOPO)
    assert (topo["form"], topo["relation"], topo["window"], topo["lead"]) == (
        "correlate",
        "downstream_of",
        300.0,
        30.0,
    )
    assert part(topo, "symptom")["matched"]
    assert part(topo, "root")["matched"]  # a critical linkDown has effect outage: a root candidate too
    assert topo["decided"]
    assert f"symptom side matched: explained by {ROOT_KEY} (downstream_of" in topo["outcome"]
    assert "no alarm at or below olt-001 matches the symptom side" in topo["outcome"]

    site = rule(ex, SITE)
    assert not site["decided"]
    root = part(site, "root")
    assert not root["matched"]
    assert root["unmet"] == [
        {
            "field": "probable_cause",
            "condition": "probable_cause one of powerProblem, mainsFailure, powerSupplyFailure",
            "value": "linkDown",
        }
    ]  # severity (critical, at least major) holds: only the cause is named
    assert part(site, "symptom")["matched"]
    assert "no root within its window: no alarm at site site-d1 matches the root side" in site["outcome"]

    why = "\n".join(ex["why"])
    assert f"suppressed: explained by {ROOT_KEY} (rule {TOPO}" in why
    assert f"why not {SITE}: symptom side matched, but no root within its window" in why
    text = render(ex)
    assert text.startswith("alarm olt-001:linkDown  (as of 2026-01-01T00:01:00.000Z)\n")
    assert "[decided] default/topology-root-cause (correlate downstream_of)" in text
    assert "wants probable_cause one of powerProblem, mainsFailure, powerSupplyFailure, is linkDown" in text


def test_the_root_is_explained_by_no_rule_and_explains_its_symptoms(replay: Replay) -> None:
    p = replay(fiber_cut_raises(), until=60)
    ex = explain_alarm(p.query, ROOT_KEY)
    assert ex["decision"]["suppressed"] is None
    assert ex["decision"]["incident"]["role"] == "root"
    explains = ex["decision"]["explains"]
    assert list(explains) == [TOPO]
    assert len(explains[TOPO]) == 50
    topo = rule(ex, TOPO)
    assert part(topo, "root")["matched"]
    assert topo["decided"]
    assert "root side matched: explains 50 alarm(s) (olt-001:linkDown" in topo["outcome"]
    assert "no root within its window: no alarm at or above agg-3 matches the root side" in topo["outcome"]
    assert any("no rule explains it" in line for line in ex["why"])


def test_an_alarm_before_its_root_arrives_is_the_root_of_its_own_pending_incident(replay: Replay) -> None:
    """State as of a moment: 1.1 s in, agg-3's alarm has not come yet (--at semantics)."""
    p = replay(fiber_cut_raises(), until=1.1)
    ex = explain_alarm(p.query, "olt-001:linkDown")
    assert ex["decision"]["suppressed"] is None
    inc = ex["decision"]["incident"]
    assert (inc["role"], inc["phase"]) == ("root", "pending")
    assert "no root within its window: no alarm at or above olt-001" in rule(ex, TOPO)["outcome"]
    with pytest.raises(NotFound):
        explain_alarm(p.query, ROOT_KEY)


def test_an_alarm_matching_no_rule(replay: Replay) -> None:
    strict = {
        "name": "power",
        "correlate": {
            "root": {"probable_cause": "mainsFailure"},
            "symptom": {"element_type": "enodeb", "severity": {"at_least": "major"}},
            "relation": "same_site",
        },
    }
    p = replay([alarm("olt-001", "highTemperature", 0, "warning")], rulesets=rules(strict))
    ex = explain_alarm(p.query, "olt-001:highTemperature")
    assert ex["matched_rules"] == []
    assert ex["decided_by"] == []
    # the built-in service-quality rule is listed too (it did not match either)
    assert [r["rule"] for r in ex["rules"]] == ["t/power", "service-quality/inferred-location"]
    entry = ex["rules"][0]
    assert entry["matched"] is False
    assert part(entry, "root")["unmet"][0]["value"] == "highTemperature"
    assert [u["field"] for u in part(entry, "symptom")["unmet"]] == ["element_type", "severity"]
    assert part(entry, "symptom")["unmet"][1] == {
        "field": "severity",
        "condition": "severity at least major",
        "value": "warning",
    }
    assert ex["decision"]["incident"] is None
    assert "it matched no part of any loaded rule" in ex["why"]
    assert any("its effect is none" in line for line in ex["why"])


# --- incidents ----------------------------------------------------------------------------------


def test_an_incident_lists_its_members_reasons_and_priority_breakdown(replay: Replay) -> None:
    p = replay(site_power_failure(), until=100)
    inc_id = incident_id("pwr-c:mainsFailure", T0)
    ex = explain_incident(p.query, inc_id)
    assert ex["kind"] == "incident"
    assert ex["incident"]["phase"] == "open"
    assert ex["incident"]["kind"] == "root"
    assert ex["record"]["event"] == "current"
    assert ex["record"]["incident_id"] == inc_id
    assert ex["grouping_rules"] == [SITE]
    members = {m["alarm_id"]: m for m in ex["members"]}
    assert next(m["alarm_id"] for m in ex["members"]) == "pwr-c:mainsFailure"
    assert members["pwr-c:mainsFailure"]["role"] == "root"
    olt = members["olt-7:equipmentMalfunction"]
    assert (olt["role"], olt["root"], olt["rule"], olt["relation"], olt["delay"]) == (
        "symptom",
        "pwr-c:mainsFailure",
        SITE,
        "same_site",
        20.0,
    )
    assert "same site site-c" in olt["reason"]
    breakdown = ex["priority"]["breakdown"]
    assert {"state", "customers", "criticality", "severity"} <= set(breakdown)
    assert ex["priority"]["priority"] == ex["record"]["priority"]
    assert ex["overrides"] == []
    assert ex["maintenance"] is None
    assert ex["root"]["alarm"]["alarm_id"] == "pwr-c:mainsFailure"
    assert "3 alarm(s): the root and 2 suppressed (2 by default/site-power-failure)" in ex["why"]
    assert any(line.startswith(f"priority P{ex['priority']['priority']}") for line in ex["why"])
    text = render(ex)
    assert f"incident {inc_id}  (as of 2026-01-01T00:01:40.000Z)" in text
    assert "members (3)" in text
    assert "priority breakdown" in text
    assert explain(p.query, inc_id)["incident"] == ex["incident"]


def test_an_override_is_named_in_the_alarm_and_in_the_incident(replay: Replay) -> None:
    override = {"name": "o", "priority": {"when": {"root": {"element_type": "switch"}}, "lower": 2}}
    p = replay(
        [alarm("agg-3", "lossOfSignal", 0, "critical")],
        rulesets=[*rules(override, name="ov"), *load_rulesets(None)],
        until=60,
    )
    ex = explain_alarm(p.query, "agg-3:lossOfSignal")
    entry = rule(ex, "ov/o")
    assert (entry["form"], entry["decided"]) == ("priority", True)
    assert entry["outcome"].startswith("applied to incident inc-")
    assert "P1 → P3" in entry["outcome"]
    assert ex["decision"]["overrides"] == [{"rule": "ov/o", "from": 1, "to": 3}]
    inc = explain_incident(p.query, ex["decision"]["incident"]["incident_id"])
    assert inc["priority"]["breakdown"]["overrides"] == [{"rule": "ov/o", "from": 1, "to": 3}]
    assert "priority override ov/o: P1 → P3" in inc["why"]


# --- forms --------------------------------------------------------------------------------------

INHIBIT = {
    "name": "power-inhibits-site",
    "inhibit": {
        "source": {"probable_cause": "mainsFailure"},
        "target": {"severity": {"at_most": "major"}},
        "equal": ["site"],
    },
}
STORM = {
    "name": "link-storm",
    "threshold": {
        "match": {"probable_cause": "linkDown"},
        "by": ["region"],
        "count": 5,
        "window": "1m",
        "raise": {"probable_cause": "alarmStorm", "severity": "major"},
    },
}


def test_an_inhibited_alarm_names_the_form_and_its_detail(replay: Replay) -> None:
    lines = [
        alarm("pwr-c", "mainsFailure", 10, "critical"),
        alarm("cell-c1", "temperature", 20, "major"),
        alarm("olt-001", "temperature", 20, "major"),  # another site: not inhibited
    ]
    p = replay(lines, rulesets=rules(INHIBIT), until=60)
    ex = explain_alarm(p.query, "cell-c1:temperature")
    sup = ex["decision"]["suppressed"]
    assert (sup["rule"], sup["relation"], sup["root"]) == (
        "t/power-inhibits-site",
        "inhibit",
        "pwr-c:mainsFailure",
    )
    assert sup["detail"] == "inhibited while the source is active (site=site-c equal)"
    assert ex["decision"]["inhibited"] is True
    entry = rule(ex, "t/power-inhibits-site")
    assert (entry["form"], entry["decided"]) == ("inhibit", True)
    assert [p["part"] for p in entry["parts"]] == ["source", "target"]
    assert not part(entry, "source")["matched"]
    assert part(entry, "target")["matched"]
    assert "target side matched: inhibited by pwr-c:mainsFailure" in entry["outcome"]
    assert ex["decision"]["engine_parts"] == ["t/power-inhibits-site#target"]
    assert ex["decision"]["engine_parts_agree"]

    source = rule(explain_alarm(p.query, "pwr-c:mainsFailure"), "t/power-inhibits-site")
    assert "source side matched: inhibits 1 alarm(s) (cell-c1:temperature)" in source["outcome"]
    other = rule(explain_alarm(p.query, "olt-001:temperature"), "t/power-inhibits-site")
    assert not other["decided"]
    assert "no source with site=site-d1 was active when it was raised" in other["outcome"]


def test_a_storm_member_and_the_storm_alarm(replay: Replay) -> None:
    lines = [alarm(f"olt-{i:03d}", "linkDown", i * 5, "minor") for i in range(1, 9)]
    p = replay(lines, rulesets=rules(STORM), until=50)
    ex = explain_alarm(p.query, "olt-001:linkDown")
    assert ex["decision"]["storm"] == "rule:t/link-storm:south"
    assert ex["decision"]["suppressed"]["relation"] == "threshold"
    entry = rule(ex, "t/link-storm")
    assert entry["decided"]
    assert entry["window"] == 60.0
    assert "part of a storm: at least 5 alarms within 60s (region=south)" in entry["outcome"]
    storm = explain_alarm(p.query, "rule:t/link-storm:south")
    assert storm["alarm"]["raised_by_rule"] == "t/link-storm"
    assert rule(storm, "t/link-storm")["outcome"].startswith("raised by this rule (the storm alarm)")
    assert len(storm["decision"]["explains"]["t/link-storm"]) == 8


def test_a_transient_dropped_by_a_pair_rule_is_inferred(replay: Replay) -> None:
    bounce = {
        "name": "link-bounce",
        "pair": {
            "first": {"probable_cause": "linkDown"},
            "second": "clear",
            "window": "2m",
            "on_pair": "discard",
        },
    }
    p = replay(
        [alarm("olt-001", "linkDown", 0, "critical"), clear("olt-001", "linkDown", 90)],
        rulesets=rules(bounce),
    )
    ex = explain_alarm(p.query, "olt-001:linkDown")
    assert ex["decision"]["incident"] is None
    assert ex["decision"]["transient"].startswith("dropped as a transient by t/link-bounce")
    assert "its incident was dropped (on_pair: discard)" in rule(ex, "t/link-bounce")["outcome"]


def test_the_match_host_reads_facts_exactly_as_the_correlator(replay: Replay) -> None:
    """Regex and service-type conditions become fact properties numbered by the compiler; the
    private match rulesets reuse that numbering, so their verdict equals the engine's classification."""
    items = [
        {
            "name": "loss",
            "correlate": {
                "root": {"probable_cause": {"regex": "^loss"}},
                "symptom": {"service_type": "voip"},
                "relation": "same_region",
            },
        },
        {
            "name": "ports",
            "inhibit": {
                "source": {"specific_problem": {"regex": "port [0-9]/"}},
                "target": {"service_type": {"not": "voip"}},
            },
        },
    ]
    program = compile_rulesets(rules(*items))
    assert [a for d in match_definitions(program).values() for a in (r["run"] for r in d.values())] == [
        "t/loss#root",
        "t/loss#root@probable_cause",
        "t/loss#symptom",
        "t/loss#symptom@service_type",
        "t/ports#source",
        "t/ports#source@specific_problem",
        "t/ports#target",
        "t/ports#target@service_type",
    ]
    p = replay(
        [alarm("agg-3", "lossOfSignal", 0, "critical", sp="port 1/1/1"), alarm("sbc-1", "cpuHigh", 1)],
        rulesets=rules(*items),
        until=5,
    )
    agg = explain_alarm(p.query, "agg-3:lossOfSignal:port 1/1/1")
    assert part(rule(agg, "t/loss"), "root")["matched"]
    assert agg["decision"]["engine_parts"] == ["t/ports#source"]  # voip crosses agg-3: not a target
    assert part(rule(agg, "t/ports"), "target")["unmet"][0]["value"] == ["internet", "voip"]
    assert agg["decision"]["engine_parts_agree"]
    sbc = explain_alarm(p.query, "sbc-1:cpuHigh")
    assert part(rule(sbc, "t/loss"), "symptom")["matched"]
    target = part(rule(sbc, "t/ports"), "target")
    assert target["unmet"] == [
        {"field": "service_type", "condition": "service_type not voip", "value": ["voip"]}
    ]
    assert sbc["decision"]["engine_parts_agree"]


def test_the_matcher_asks_durable_once_per_match_signature(replay: Replay) -> None:
    """A post-mortem asks which rule parts each alarm in a rule's scope matches; the answer depends
    only on the properties some condition reads, so alarms that agree on them share one durable
    round trip, and every answer equals the one a fresh host gives for that alarm's own fact."""
    # the same cause, effect and event type, severities whose answers differ: a signature missing
    # the severity would answer one with the other's
    odd = [alarm(ne, "cpuHigh", 2, sev) for ne, sev in (("sbc-1", "critical"), ("olt-001", "minor"))]
    p = replay([*fiber_cut_raises(), *odd], until=60)
    matcher = explain_match.Matcher(p)
    fresh = explain_match.Matcher(p)
    try:
        alarms = p.query.alarm_states()
        assert len(alarms) >= 10
        answers = {a.key: matcher.fired(a) for a in alarms}
        assert 0 < matcher.asked < len(alarms)  # the ONTs' linkDown alarms agree on every property read
        for a in alarms:
            fact = {**p.correlator.base_fact(a, a.first_seen), "sid": "explain", "id": a.occurrence_id}
            assert answers[a.key] == fresh._host.match(fresh._names, {**fact, "role": "x"}), a.key
        matcher._fired.clear()  # a new explanation: answered from the signatures, durable not asked
        asked = matcher.asked
        assert {a.key: matcher.fired(a) for a in alarms} == answers
        assert matcher.asked == asked
    finally:
        matcher.close()
        fresh.close()


@pytest.mark.parametrize(
    "relation",
    ["downstream_of", "upstream_of", "same_element", "same_site", "same_region", "same_service_path"]
    + [f"neighbour:{hops}" for hops in (2, 3)],  # (one link away is always above or below)
)
def test_the_elements_near_one_hold_every_element_sharing_a_scope_with_it(
    replay: Replay, relation: str
) -> None:
    """ "Why not" looks for the other side of a correlate rule only among the elements the topology
    puts near the alarm's (``_near``) when they are fewer than the elements holding alarms: they
    must include every element the join could pair it with, in either role."""
    p = replay(fiber_cut_raises(), until=60)
    topology, scopes = p.query.topology, p.correlator.scopes
    ids = sorted(topology.elements)
    assert len(ids) > 50
    paired = 0
    for x in ids:
        near = explain_correlate._near(relation, x, topology)
        assert near is not None or relation == "same_service_path"
        if relation in ("downstream_of", "upstream_of"):  # no union built when it would not be fewer
            assert explain_correlate._near(relation, x, topology, fewer_than=len(near or ())) is None
        for mine, theirs in (("root", "sym"), ("sym", "root")):
            own = scopes(relation, x, mine)
            for y in ids:
                if own & scopes(relation, y, theirs):
                    paired += 1
                    assert near is None or y in near, (x, mine, y)
    assert paired > len(ids)  # the premise: the relation pairs elements in this topology


def test_the_alarms_by_element_are_every_alarm_held(replay: Replay) -> None:
    """The explanations find an element's alarms through element health's index of them: the same
    alarms as the table holds, cleared ones within their retention included, none once forgotten."""
    raises = fiber_cut_raises()
    clears = [_clear_of(line, 30.0) for line in raises[:5]]
    for at in (20, 60, 10_000):  # raised; five cleared and retained; the cleared ones forgotten
        p = replay([*raises, *clears], until=at)
        q = p.query
        held = {(a.ne_id, a.key) for a in q.alarm_states()}
        indexed = {(ne, a.key) for ne in q.elements_with_alarms() for a in q.alarm_states_on(ne)}
        assert held == indexed
        assert all(a.ne_id == ne for ne in q.elements_with_alarms() for a in q.alarm_states_on(ne))
        assert len(held) == len(raises) - (5 if at == 10_000 else 0)
    # a key the index still holds under another element (an alarm id raised again elsewhere after a
    # tick that failed half-way): not an alarm on that element
    own = q.alarm_states()[-1].ne_id
    stray = next(a for a in q.alarm_states() if a.ne_id != own)
    p.health.by_element[own].add(stray.key)
    assert stray.key not in {a.key for a in q.alarm_states_on(own)}
    assert q.alarm_states_on(own)  # the premise: it holds alarms of its own


# --- not found ----------------------------------------------------------------------------------


def test_an_unknown_key_or_id_says_what_was_searched_and_suggests(replay: Replay) -> None:
    p = replay(fiber_cut_raises(), until=60)
    with pytest.raises(NotFound) as caught:
        explain_alarm(p.query, "olt-00")
    err = caught.value
    assert isinstance(err, LookupError)
    assert (err.what, err.ident) == ("alarm", "olt-00")
    assert err.suggestions == [f"olt-00{i}:linkDown" for i in range(1, 6)]
    assert "no alarm 'olt-00' (searched 51 alarm(s) held as of 2026-01-01T00:01:00.000Z" in str(err)
    with pytest.raises(NotFound, match="did you mean 'olt-001:linkDown'"):
        explain_alarm(p.query, "olt-001:linkdown")
    inc = incident_id(ROOT_KEY, T0 + 1.2)
    with pytest.raises(NotFound) as caught:
        explain(p.query, inc[:8])
    assert caught.value.suggestions == [inc]
    assert "searched 1 live incident(s)" in str(caught.value)
    assert caught.value.to_dict()["suggestions"] == [inc]


# --- CLI ----------------------------------------------------------------------------------------

REPLAY = ("--replay", EXAMPLE_EVENTS, "--topology", EXAMPLE_TOPOLOGY)
DURING_CUT = "2026-01-01T00:10:00Z"


def test_cli_explains_an_alarm_as_text_and_json() -> None:
    r = engine("rules", "explain", "olt-001:linkDown", *REPLAY, "--at", DURING_CUT)
    assert r.status == 0, r.stderr
    text = r.stdout.decode()
    assert text.startswith("alarm olt-001:linkDown  (as of 2026-01-01T00:10:00.000Z)")
    assert f"suppressed: explained by {ROOT_KEY} (rule {TOPO}" in text
    r = engine("rules", "explain", "olt-001:linkDown", *REPLAY, "--at", DURING_CUT, "--json")
    assert r.status == 0, r.stderr
    ex = orjson.loads(r.stdout)
    assert ex["decision"]["suppressed"]["rule"] == TOPO
    assert ex["decided_by"] == [TOPO]


def test_cli_explains_an_incident_at_the_end_of_the_input_without_draining() -> None:
    """At the end of the example the power incident is clearing (not yet resolved: no drain)."""
    inc = incident_id("pwr-c:mainsFailure", T0 + 3600)
    r = engine("rules", "explain", inc, *REPLAY, "--json")
    assert r.status == 0, r.stderr
    ex = orjson.loads(r.stdout)
    assert ex["as_of"] == "2026-01-01T01:15:10.000Z"  # the last line's time
    assert ex["incident"]["phase"] == "clearing"
    assert ex["incident"]["resolves_at"] == "2026-01-01T01:20:00.000Z"
    assert len(ex["members"]) == 3
    r = engine("rules", "explain", inc, *REPLAY)
    assert r.status == 0, r.stderr
    assert r.stdout.decode().startswith(f"incident {inc}  (as of 2026-01-01T01:15:10.000Z)")


def test_cli_not_found_exits_1_naming_what_was_searched() -> None:
    r = engine("rules", "explain", "olt-001:linkUp", *REPLAY)
    assert r.status == 1
    assert r.stdout == b""
    assert "after replaying examples/fiber-cut.jsonl (to its end, not drained)" in r.stderr
    assert "no alarm 'olt-001:linkUp' (searched" in r.stderr
    assert "did you mean 'olt-001:linkDown'?" in r.stderr
    # The fiber cut's incident resolved before the end of the input: the hint says --at.
    r = engine("rules", "explain", incident_id(ROOT_KEY, T0 + 1.2), *REPLAY)
    assert r.status == 1
    assert "searched 1 live incident(s)" in r.stderr
    assert "--at" in r.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--replay", "missing.jsonl", "--topology", EXAMPLE_TOPOLOGY), "argument --replay: no such file"),
        (("--replay", EXAMPLE_EVENTS, "--topology", "missing.yaml"), "missing.yaml"),
        ((*REPLAY, "--rulesets", "missing-rules.yaml"), "no such file or directory: missing-rules.yaml"),
        ((*REPLAY, "--at", "yesterday"), "--at: not an RFC 3339 time"),
        (("--replay", EXAMPLE_EVENTS), "--replay needs --topology FILE"),
        ((*REPLAY, "--token", "t"), "--token goes with --api"),
        (("--api", "http://127.0.0.1:8080", "--at", DURING_CUT), "--at goes with --replay"),
        ((*REPLAY, "--api", "http://127.0.0.1:8080"), "not allowed with argument"),
        (("--api", "http://127.0.0.1:1"), "cannot ask http://127.0.0.1:1/explain/alarms/x"),
    ],
)
def test_cli_bad_input_exits_2(args: tuple[str, ...], fragment: str) -> None:
    r = engine("rules", "explain", "x", *args)
    assert r.status == 2, (r.stdout, r.stderr)
    assert fragment in r.stderr


# --- HTTP, on a running daemon ------------------------------------------------------------------


async def _cli(*args: str) -> tuple[int, bytes, str]:
    """``python -m engine ARGS`` without blocking the event loop the daemon serves on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err.decode()


async def test_http_explain_endpoints_on_a_running_daemon(tmp_path: Path, topic_prefix: str) -> None:
    """GET /explain/alarms/{key} (URL-encoded: the key holds a space and slashes) and
    /explain/incidents/{id}: 200 with the explanation, 404 with suggestions, 401 without the
    token; `engine rules explain --api` asks the same endpoints."""
    token = "t0ken"
    cfg = write_config(
        tmp_path, broker_url=None, prefix=topic_prefix, extra={"http": {"port": 0, "token": token}}
    )
    auth = {"Authorization": f"Bearer {token}"}
    lines = [fiber_cut_raises()[i] for i in (0, 1, 10)]  # olt-001, olt-002, then agg-3
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        body = b"\n".join(orjson.dumps(line["payload"]) for line in lines)
        headers = {**auth, "Content-Type": "application/x-ndjson"}
        async with http.post(f"{base}/events", data=body, headers=headers) as resp:
            assert resp.status == 202
        await until(
            lambda: any(i.root == ROOT_KEY for i in daemon.pipeline.incidents.incidents()),
            timeout=10,
            what="the fiber cut's incident",
        )
        inc = incident_id(ROOT_KEY, T0 + 1.2)

        async with http.get(f"{base}/explain/alarms/{quote('olt-001:linkDown', safe='')}") as resp:
            assert resp.status == 401
        async with http.get(
            f"{base}/explain/alarms/{quote('olt-001:linkDown', safe='')}", headers=auth
        ) as resp:
            assert resp.status == 200
            ex = await resp.json()
        assert ex["decision"]["suppressed"]["root"] == ROOT_KEY
        assert ex["decision"]["incident"]["incident_id"] == inc
        async with http.get(f"{base}/explain/alarms/{quote(ROOT_KEY, safe='')}", headers=auth) as resp:
            assert resp.status == 200
            assert (await resp.json())["decision"]["explains"][TOPO] == [
                "olt-001:linkDown",
                "olt-002:linkDown",
            ]
        async with http.get(f"{base}/explain/alarms/agg-3:lossOfSignal:port%201/1/1", headers=auth) as resp:
            assert resp.status == 200  # an unencoded "/" in the key is accepted too
            assert (await resp.json())["alarm"]["alarm_id"] == ROOT_KEY
        async with http.get(f"{base}/explain/incidents/{inc}", headers=auth) as resp:
            assert resp.status == 200
            found = await resp.json()
        assert found["kind"] == "incident"
        assert [m["alarm_id"] for m in found["members"]] == [ROOT_KEY, "olt-001:linkDown", "olt-002:linkDown"]

        async with http.get(f"{base}/explain/alarms/olt-001", headers=auth) as resp:
            assert resp.status == 404
            err = await resp.json()
        assert err["error"] == "not found"
        assert err["detail"]["suggestions"] == ["olt-001:linkDown"]
        assert "no alarm 'olt-001'" in err["detail"]["reason"]
        async with http.get(f"{base}/explain/incidents/inc-0000", headers=auth) as resp:
            assert resp.status == 404
            assert "no incident 'inc-0000'" in (await resp.json())["detail"]["reason"]

        status, out, err_text = await _cli(
            "rules", "explain", ROOT_KEY, "--api", base, "--token", token, "--json"
        )
        assert status == 0, err_text
        assert orjson.loads(out)["alarm"]["alarm_id"] == ROOT_KEY
        status, out, err_text = await _cli("rules", "explain", inc, "--api", base, "--token", token)
        assert status == 0, err_text
        assert out.decode().startswith(f"incident {inc}")
        status, out, err_text = await _cli("rules", "explain", "olt-001", "--api", base, "--token", token)
        assert (status, out) == (1, b"")
        assert "no alarm 'olt-001'" in err_text
        assert "did you mean 'olt-001:linkDown'?" in err_text
        status, _, err_text = await _cli("rules", "explain", "olt-001", "--api", base, "--token", "wrong")
        assert status == 2
        assert "HTTP 401 unauthorized: invalid bearer token" in err_text


async def test_explain_endpoints_need_a_core_that_exposes_its_pipeline() -> None:
    """The API's test double (no pipeline) answers 501, in the API's error format."""
    async with serve(FakeCore()) as http:
        for path in ("/explain/alarms/olt-001:linkDown", "/explain/incidents/inc-8d44853b8cfe8679"):
            async with http.get(path) as resp:
                assert resp.status == 501
                assert (await resp.json())["error"] == "not implemented"


def _clear_of(line: dict[str, Any], t: float) -> dict[str, Any]:
    p = line["payload"]
    return clear(p["ne_id"], p["probable_cause"], t, sp=p.get("specific_problem"))


def test_post_mortems_explain_cleared_and_merged_incidents_without_changing_decisions() -> None:
    """With the `on_resolved` hook set, every incident is explained as it resolves: a symptom's
    incident merged into its late root (resolution `merged`, `merged_into`), and the root's once it
    clears; the records are byte-identical to those of a pipeline without the hook."""
    raises = fiber_cut_raises()
    root, symptoms = raises[10], raises[:2]
    clears = [_clear_of(line, 900.0) for line in (*symptoms, root)]
    kept: dict[str, dict[str, Any]] = {}

    def run(with_hook: bool) -> list[bytes]:
        p = Pipeline(topology_from_dict(example_topology()), load_rulesets(None))
        post = PostMortems(p.query, lambda iid, _now, ex: kept.__setitem__(iid, ex))
        if with_hook:
            p.incidents.on_resolved = post
        out = []
        try:
            for line in symptoms:
                out += p.feed(line["topic"], orjson.dumps(line["payload"]), T0 + 2).records
            out += p.tick(T0 + 60).records  # the symptoms' incidents open: no root yet
            out += p.feed(root["topic"], orjson.dumps(root["payload"]), T0 + 61).records
            out += p.tick(T0 + 200).records
            for line in clears:
                out += p.feed(line["topic"], orjson.dumps(line["payload"]), T0 + 900).records
            out += p.tick(T0 + 2000).records
        finally:
            post.close()
            p.close()
        return [orjson.dumps(r.to_wire()) for r in out]

    assert run(with_hook=True) == run(with_hook=False)
    records = [orjson.loads(r) for r in run(with_hook=False)]
    merged = [r for r in records if r.get("resolution") == "merged"]
    assert merged  # the premise: symptom incidents opened, then merged into the root's
    root_inc = incident_id(ROOT_KEY, T0 + 1.2)
    for r in merged:
        ex = kept[r["incident_id"]]
        assert (ex["incident"]["phase"], ex["incident"]["resolution"]) == ("resolved", "merged")
        assert ex["incident"]["merged_into"] == root_inc
        assert ex["why"][-1].startswith(f"resolved at {r['resolved_at']}: merged into {root_inc}")
    ex = kept[root_inc]
    assert (ex["incident"]["phase"], ex["incident"]["resolution"], ex["record"]["event"]) == (
        "resolved",
        "cleared",
        "resolved",
    )
    assert {m["alarm_id"] for m in ex["members"]} >= {ROOT_KEY, "olt-001:linkDown", "olt-002:linkDown"}
    assert not any(line.startswith("clearing:") for line in ex["why"])


async def test_a_resolved_incident_is_still_explained_by_the_running_daemon(
    tmp_path: Path, topic_prefix: str
) -> None:
    """Once an incident resolves, GET /explain/incidents/{id} and `engine rules explain ID --api`
    answer with its explanation as it resolved (they answered 404: the core forgets it)."""
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix)
    lines = [fiber_cut_raises()[i] for i in (0, 1, 10)]
    clears = [_clear_of(line, 5.0) for line in lines]
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        headers = {"Content-Type": "application/x-ndjson"}
        inc = incident_id(ROOT_KEY, T0 + 1.2)
        for batch in (lines, clears):
            body = b"\n".join(orjson.dumps(line["payload"]) for line in batch)
            async with http.post(f"{base}/events", data=body, headers=headers) as resp:
                assert resp.status == 202
            await until(lambda: daemon.store.incident(inc) is not None, timeout=10, what="the incident")
        await until(
            lambda: (daemon.store.incident(inc) or {}).get("event") == "resolved", timeout=20, what="resolved"
        )
        assert inc not in {i.id for i in daemon.pipeline.incidents.incidents()}
        async with http.get(f"{base}/explain/incidents/{inc}") as resp:
            assert resp.status == 200
            found = await resp.json()
        assert (found["incident"]["phase"], found["incident"]["resolution"]) == ("resolved", "cleared")
        assert [m["alarm_id"] for m in found["members"]] == [ROOT_KEY, "olt-001:linkDown", "olt-002:linkDown"]
        status, out, err_text = await _cli("rules", "explain", inc, "--api", base)
        assert status == 0, err_text
        assert out.decode().startswith(f"incident {inc}")
        assert "resolved at" in out.decode()


def test_cli_text_escapes_control_characters_from_alarm_text(tmp_path: Path) -> None:
    """An alarm whose specific problem holds terminal escapes is explained with them escaped:
    `engine rules explain` prints what the element sent, never lets it drive the terminal."""
    payload = {
        "ne_id": "olt-001",
        "severity": "critical",
        "probable_cause": "linkDown",
        "specific_problem": "\x1b[2Jport\x9b1",
        "event_time": "2026-01-01T00:00:01Z",
    }
    events = tmp_path / "evil.jsonl"
    events.write_bytes(orjson.dumps({"topic": "soc/alarms/olt-001", "payload": payload}) + b"\n")
    key = "olt-001:linkDown:\x1b[2Jport\x9b1"
    r = engine("rules", "explain", key, "--replay", events, "--topology", EXAMPLE_TOPOLOGY)
    assert r.status == 0, r.stderr
    text = r.stdout.decode()
    assert "\x1b" not in text
    assert "\x9b" not in text
    assert "olt-001:linkDown:\\x1b[2Jport\\x9b1" in text
