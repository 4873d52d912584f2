"""The ``neighbour`` relation of correlate rules: a symptom within ``hops`` links of the root's element,
in any direction, neither on it nor above nor below it (what the miner measures as ``neighbour``).

On the example topology (``bench.scenarios.example_topology``)::

    core-1 ─┬─ agg-1 ─┐
            ├─ agg-2 ─┴─ olt-7 ── cell-c1        olt-7 also needs pwr-c
            ├─ agg-3 ─── olt-001 … olt-050
            └─ sbc-1

agg-3 → agg-1 is 2 links (through core-1), agg-3 → olt-7 3, agg-3 → cell-c1 4; agg-3 → olt-001 is 1
link but below it, agg-3 → core-1 1 link but above it."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from bench.scenarios import T0, alarm, example_topology
from engine.core.explain import explain_alarm, render
from engine.core.pipeline import Pipeline
from engine.core.settings import CoreSettings
from engine.errors import RulesetError
from engine.model.topology import MAX_HOPS, topology_from_dict
from engine.rules.compiler import compile_rulesets
from engine.rules.schema import Ruleset, parse_ruleset, ruleset_from_data
from engine.tools.mining import mine_lines
from engine.tools.mining.rules import ruleset_document
from engine.tools.mining.stats import NEIGHBOUR, CoOccurrence
from engine.tools.offline import replay_pipeline
from tests.harness import run
from tests.test_mining import TOPOLOGY as MINED_TOPOLOGY
from tests.test_mining import alarm as _line
from tests.test_snapshot import _drive, _finish, _split_run

ROOT = "agg-3:equipmentMalfunction"


def _rules(**correlate: Any) -> list[Ruleset]:
    spec = {
        "root": {"probable_cause": "equipmentMalfunction"},
        "symptom": {"probable_cause": "linkDown"},
        "relation": "neighbour",
        **correlate,
    }
    return [ruleset_from_data({"name": "n", "rules": [{"name": "near", "correlate": spec}]}, "<test>")]


def _storm() -> list[dict[str, Any]]:
    """The root on agg-3, link-downs 1 to 4 links from it, one before it (within the lead)."""
    return [
        alarm("agg-2", "linkDown", 0.5),  # 2 links, 0.7 s before the root
        alarm("agg-3", "equipmentMalfunction", 1.2, "critical"),
        alarm("agg-1", "linkDown", 2.0),  # 2 links
        alarm("sbc-1", "linkDown", 2.5),  # 2 links
        alarm("olt-7", "linkDown", 3.0),  # 3 links
        alarm("cell-c1", "linkDown", 4.0),  # 4 links
        alarm("olt-001", "linkDown", 5.0),  # 1 link, below
        alarm("core-1", "linkDown", 6.0),  # 1 link, above
        alarm("agg-3", "linkDown", 7.0),  # the same element
    ]


def _suppressed(**correlate: Any) -> dict[str, str]:
    r = run(_storm(), rulesets=_rules(**correlate))
    (opened,) = [o for o in r.events("opened") if o["root_cause"]["alarm_id"] == ROOT]
    last = r.last(opened["incident_id"])
    return {s["alarm_id"]: s["reason"] for s in last["suppressed"]}


def test_two_hops_joins_alarms_two_links_apart_and_not_three() -> None:
    """Default hops (2): the siblings under core-1 are explained by agg-3's root, before or after it;
    olt-7 (3 links), cell-c1 (4), and what is above, below or on agg-3 are not neighbours."""
    for spec in ({}, {"hops": 2}):
        got = _suppressed(**spec)
        assert sorted(got) == ["agg-1:linkDown", "agg-2:linkDown", "sbc-1:linkDown"], spec
        assert "rule n/near: agg-1 is within 2 links of agg-3, +0.8 s from the root" in got["agg-1:linkDown"]
        assert "agg-2 is within 2 links of agg-3, -0.7 s from the root" in got["agg-2:linkDown"]


def test_three_hops_also_joins_three_links_apart_and_not_four() -> None:
    got = _suppressed(hops=3)
    assert sorted(got) == ["agg-1:linkDown", "agg-2:linkDown", "olt-7:linkDown", "sbc-1:linkDown"]
    assert "olt-7 is within 3 links of agg-3" in got["olt-7:linkDown"]


def test_each_distance_has_its_own_scopes_and_the_relation_names_its_hops() -> None:
    """Two rules of different hops in one ruleset: each joins by its own distance."""
    near = {"root": {"probable_cause": "equipmentMalfunction"}, "relation": "neighbour"}
    rs = ruleset_from_data(
        {
            "name": "n",
            "rules": [
                {"name": "two", "correlate": {**near, "symptom": {"probable_cause": "linkDown"}}},
                {"name": "three", "correlate": {**near, "symptom": {"probable_cause": "x"}, "hops": 3}},
            ],
        },
        "<test>",
    )
    program = compile_rulesets([rs])
    assert program.rules["n/two"].relation == "neighbour:2"
    assert program.rules["n/three"].relation == "neighbour:3"
    assert set(program.max_window) == {"neighbour:2", "neighbour:3"}
    lines = [*_storm(), alarm("olt-7", "x", 3.5), alarm("cell-c1", "x", 3.6)]
    r = run(lines, rulesets=[rs])
    (opened,) = [o for o in r.events("opened") if o["root_cause"]["alarm_id"] == ROOT]
    rules = {s["alarm_id"]: s["rule"] for s in r.last(opened["incident_id"])["suppressed"]}
    assert rules == {
        "agg-1:linkDown": "n/two",
        "agg-2:linkDown": "n/two",
        "sbc-1:linkDown": "n/two",
        "olt-7:x": "n/three",
    }


def test_explain_says_where_a_neighbour_must_be() -> None:
    topo = topology_from_dict(example_topology())
    lines = (orjson.dumps(x) for x in _storm())
    p = replay_pipeline(topo, _rules(), CoreSettings(), lines, until=T0 + 60)
    try:
        ex = explain_alarm(p.query, "agg-1:linkDown")
        sup = ex["decision"]["suppressed"]
        assert (sup["root"], sup["rule"], sup["relation"]) == (ROOT, "n/near", "neighbour:2")
        (near,) = [x for x in ex["rules"] if x["rule"] == "n/near"]
        assert near["relation"] == "neighbour:2"
        assert f"symptom side matched: explained by {ROOT} (neighbour:2, +0.8 s" in near["outcome"]
        far = explain_alarm(p.query, "olt-7:linkDown")
        (near,) = [x for x in far["rules"] if x["rule"] == "n/near"]
        assert not near["decided"]
        assert (
            "symptom side matched, but no root within its window: no alarm within 2 links of olt-7 "
            "(neither on it, nor above, nor below it) matches the root side"
        ) in near["outcome"]
        root = explain_alarm(p.query, ROOT)
        (near,) = [x for x in root["rules"] if x["rule"] == "n/near"]
        assert (
            "root side matched: explains 3 alarm(s) (agg-1:linkDown, agg-2:linkDown, sbc-1:linkDown)"
        ) in near["outcome"]
        assert "[decided] n/near (correlate neighbour:2)" in render(ex)
    finally:
        p.close()


def test_a_restore_keeps_the_neighbour_candidates() -> None:
    """A snapshot between the root and its symptoms: the restored correlator pairs them the same."""
    topo = topology_from_dict(example_topology())
    rulesets = _rules(hops=3)
    lines = _storm()
    whole: list[bytes] = []
    p = Pipeline(topo, rulesets, CoreSettings())
    _drive(p, lines, whole)
    _finish(p, whole)
    p.close()
    assert any(b"is within 3 links of agg-3" in r for r in whole)
    for cut in range(len(lines) + 1):
        assert _split_run(topo, lines, cut, CoreSettings(), rulesets) == whole, f"cut at {cut}"


def _random_topology(seed: int) -> dict[str, Any]:
    """A random DAG with redundancy groups and elements of no link."""
    rnd = random.Random(seed)
    elements: list[dict[str, Any]] = []
    for i in range(60):
        deps: list[Any] = []
        if i and rnd.random() < 0.9:
            deps.append(f"e{rnd.randrange(i)}")
        if i > 2 and rnd.random() < 0.3:
            deps.append([f"e{j}" for j in sorted(set(rnd.sample(range(i), 2)))])
        elements.append({"id": f"e{i}", "type": "x", "depends_on": deps})
    return {"elements": elements}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_rule_neighbour_is_a_mined_neighbour(seed: int) -> None:
    """The topology's neighbours (what a rule joins) are exactly the miner's ``neighbour`` relation,
    so a mined neighbour rule means in replay what it meant in mining."""
    topo = topology_from_dict(_random_topology(seed))
    for hops in range(1, MAX_HOPS + 1):
        miner = CoOccurrence(topo, hops=hops)
        for ne in topo.elements:
            mined = {z for z, relation in miner.related(ne) if relation == NEIGHBOUR}
            assert set(topo.neighbours(ne, hops)) == mined, (ne, hops)
    assert topo.neighbours("e5", 1) == ()  # one link away is always above or below


VALID = """\
name: t
rules:
  - name: near
    correlate:
      root: {probable_cause: a}
      relation: neighbour
      hops: 2
"""


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            VALID.replace("hops: 2", "hops: 1"),
            "line 7: rule 'near', rules[0].correlate.hops: hops must be within 2..3, got 1",
        ),
        (VALID.replace("hops: 2", "hops: 4"), "rules[0].correlate.hops: hops must be within 2..3, got 4"),
        (VALID.replace("hops: 2", "hops: two"), "line 7: rule 'near', rules[0].correlate.hops: "),
        (VALID.replace("hops: 2", "hops: 2.5"), "rules[0].correlate.hops: "),
        (VALID.replace("hops: 2", "hops: true"), "rules[0].correlate.hops: "),
        (
            VALID.replace("neighbour", "same_site"),
            "line 7: rule 'near', rules[0].correlate.hops: hops applies to relation neighbour only, not to "
            "same_site",
        ),
        (
            VALID.replace("neighbour", "neighbor"),
            "line 6: rule 'near', rules[0].correlate.relation: 'neighbor' is not one of 'downstream_of', "
            "'upstream_of', 'same_element', 'same_site', 'same_region', 'same_service_path' or 'neighbour'",
        ),
    ],
    ids=["one", "four", "word", "float", "bool", "other-relation", "unknown-relation"],
)
def test_bad_hops_get_precise_errors(text: str, fragment: str) -> None:
    with pytest.raises(RulesetError) as info:
        parse_ruleset(text, "t.yaml")
    assert fragment in str(info.value)
    assert not info.value.more  # one mistake, one error (a wrong relation does not also blame hops)


def test_hops_is_optional_and_read_back() -> None:
    rs = parse_ruleset(VALID.replace("      hops: 2\n", ""), "t.yaml")
    assert compile_rulesets([rs]).rules["t/near"].relation == "neighbour:2"
    rs = parse_ruleset(VALID.replace("hops: 2", "hops: 3"), "t.yaml")
    assert compile_rulesets([rs]).rules["t/near"].relation == "neighbour:3"


# --- mined neighbour rules ------------------------------------------------------------------------


def _sibling_history(seed: int = 5, bursts: int = 40, t0: float = 1_700_000_000.0) -> list[bytes]:
    """``bursts`` times: ``fanFail`` on one access element, then ``tempHigh`` on one of its siblings
    (two links away through agg) 2-20 s later; ``noise`` at random on unlinked elements."""
    rng = random.Random(seed)
    events: list[tuple[float, bytes]] = []
    for k in range(bursts):
        t = t0 + k * 3 * 3600 + rng.randint(0, 600)
        i, j = rng.sample(range(4), 2)
        d = t + rng.randint(2, 20)
        events += [(t, _line(t, f"acc-{i}", "fanFail")), (d, _line(d, f"acc-{j}", "tempHigh"))]
        events += [(t + 60, _line(t + 60, f"acc-{i}", "fanFail", clear=True))]
        events += [(d + 60, _line(d + 60, f"acc-{j}", "tempHigh", clear=True))]
    for _ in range(bursts * 2):
        t = t0 + rng.uniform(0, bursts * 3 * 3600)
        ne = f"far-{rng.randrange(4)}"
        events += [(t, _line(t, ne, "noise")), (t + 5, _line(t + 5, ne, "noise", clear=True))]
    events.sort(key=lambda e: e[0])
    return [line for _, line in events]


def test_the_miner_writes_its_neighbour_rules_with_the_hops_it_measured_and_replay_joins_them() -> None:
    topo = topology_from_dict(MINED_TOPOLOGY)
    mined, _ = mine_lines(_sibling_history(), topo)
    (rule,) = [r for r in mined.rules if r.relation == NEIGHBOUR]
    assert (rule.root, rule.symptom) == ("fanFail", "tempHigh")
    assert not mined.unexpressed
    doc = ruleset_document(mined, name="mined", source="h", params={})
    (written,) = [r for r in doc["rules"] if r["correlate"]["relation"] == NEIGHBOUR]
    assert written["name"] == "fanfail-explains-temphigh-neighbour"
    assert written["correlate"]["hops"] == 2
    assert "(neighbour within 2 links)" in written["description"]
    rs = ruleset_from_data(doc, "mined")
    later = _sibling_history(seed=99, bursts=3, t0=1_800_000_000.0)
    r = run((orjson.loads(x) for x in later), topology=topo, rulesets=[rs])
    opened = [o for o in r.events("opened") if o["root_cause"]["probable_cause"] == "fanFail"]
    assert len(opened) == 3
    for o in opened:
        (sup,) = r.last(o["incident_id"])["suppressed"]
        assert sup["probable_cause"] == "tempHigh"
        assert sup["rule"] == "mined/fanfail-explains-temphigh-neighbour"
        assert f"{sup['ne_id']} is within 2 links of {o['root_cause']['ne_id']}" in sup["reason"]
    assert not [o for o in r.events("opened") if o["root_cause"]["probable_cause"] == "tempHigh"]


def test_neighbour_rules_mined_farther_than_the_language_allows_are_reported_not_written() -> None:
    topo = topology_from_dict(MINED_TOPOLOGY)
    mined, _ = mine_lines(_sibling_history(), topo, hops=MAX_HOPS + 1)
    assert not [r for r in mined.rules if r.relation == NEIGHBOUR]
    assert [(r.root, r.symptom) for r in mined.unexpressed] == [("fanFail", "tempHigh")]
    doc = ruleset_document(mined, name="mined", source="h", params={})
    assert all(r["correlate"]["relation"] != NEIGHBOUR for r in doc["rules"])
    mined, _ = mine_lines(_sibling_history(), topo, hops=3)
    assert [r for r in mined.rules if r.relation == NEIGHBOUR]
    doc = ruleset_document(mined, name="mined", source="h", params={})
    assert [r["correlate"]["hops"] for r in doc["rules"] if r["correlate"]["relation"] == NEIGHBOUR] == [3]
