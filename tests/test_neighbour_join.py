"""The ``neighbour`` join (``engine.core.forms.neighbourhood``) pairs exactly what the relation means.

The join finds a root's and a symptom's elements through the elements between them instead of a scope
per neighbour. Its pairs are compared, on random topologies with redundancy groups and random storms
(an alarm may match the root side, the symptom side or both, raised in any order, before and after
its partners), with a brute-force reference: every root and symptom of different elements whose
distance in the undirected ``depends_on`` graph, walked here on its own, is at most ``hops``, and
neither of which needs the other. Each pair the correlator makes is an ``Explanation`` or counted
``outside_window``; with the incident book kept out (``explained`` answers no), both sets must match
the reference's exactly, and explain's scopes (``Correlator.scopes``) must say "in scope" for exactly
the same pairs.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import orjson
import pytest

from bench.scenarios import alarm
from engine.core.forms import neighbourhood
from engine.core.forms.base import Explanation
from engine.core.pipeline import Pipeline
from engine.model.topology import topology_from_dict
from engine.rules.schema import ruleset_from_data
from engine.tools.replay import Replayer
from tests.test_neighbour import _random_topology

WINDOW, LEAD = 6.0, 2.0
ROOT_CAUSES, SYMPTOM_CAUSES = {"a", "c"}, {"b", "c"}


def _graph(topology: dict[str, Any]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Undirected links and the transitive upstreams of every element, from the raw document."""
    links: dict[str, set[str]] = {e["id"]: set() for e in topology["elements"]}
    needs: dict[str, set[str]] = {}
    for e in topology["elements"]:
        for item in e.get("depends_on", []):
            for u in [item] if isinstance(item, str) else item:
                links[e["id"]].add(u)
                links[u].add(e["id"])
                needs.setdefault(e["id"], set()).add(u)
    above: dict[str, set[str]] = {}
    for ne in links:
        seen: set[str] = set()
        stack = [ne]
        while stack:
            for u in needs.get(stack.pop(), ()):
                if u not in seen:
                    seen.add(u)
                    stack.append(u)
        above[ne] = seen
    return links, above


def _distances(links: dict[str, set[str]], start: str) -> dict[str, int]:
    far = {start: 0}
    queue = deque([start])
    while queue:
        x = queue.popleft()
        for y in links[x]:
            if y not in far:
                far[y] = far[x] + 1
                queue.append(y)
    return far


def _storm(rnd: random.Random, elements: list[str], n: int) -> list[tuple[str, str, float]]:
    """``n`` alarms (element, cause, seconds), one per element and cause, over 0-15 s."""
    picked = rnd.sample([(ne, cause) for ne in elements for cause in "abc"], n)
    return sorted(((ne, cause, round(rnd.uniform(0, 15), 3)) for ne, cause in picked), key=lambda x: x[2])


def _joined(topology: dict[str, Any], hops: int, storm: list[tuple[str, str, float]]) -> tuple[Any, ...]:
    correlate = {
        "root": {"probable_cause": sorted(ROOT_CAUSES)},
        "symptom": {"probable_cause": sorted(SYMPTOM_CAUSES)},
        "relation": "neighbour",
        "hops": hops,
        "window": f"{WINDOW:g}s",
        "lead": f"{LEAD:g}s",
    }
    rs = ruleset_from_data({"name": "n", "rules": [{"name": "near", "correlate": correlate}]}, "<test>")
    pipeline = Pipeline(topology_from_dict(topology), [rs])
    pipeline.correlator.explained = lambda _key: False  # every pair within the window is made
    made: list[Explanation] = []
    explain = pipeline.incidents.explain

    def keeping(explanations: Any, now: float) -> Any:
        explanations = list(explanations)
        made.extend(explanations)
        return explain(explanations, now)

    pipeline.incidents.explain = keeping  # type: ignore[method-assign]
    lines = [orjson.dumps(alarm(ne, cause, t)) for ne, cause, t in storm]
    Replayer(pipeline, emit=lambda _r: None).run(lines)
    c = pipeline.correlator
    pairs = {(e.root, e.symptom) for e in made}
    assert len(pairs) == len(made)  # each pair once
    scoped = {
        (f"{r}:{rc}", f"{s}:{sc}")
        for r, rc, _ in storm
        for s, sc, _ in storm
        if rc in ROOT_CAUSES
        and sc in SYMPTOM_CAUSES
        and c.scopes(f"neighbour:{hops}", r, "root") & c.scopes(f"neighbour:{hops}", s, "sym")
    }
    counts = (c.firings, c.outside_window)
    pipeline.close()
    return pairs, counts, scoped


def _reference(topology: dict[str, Any], hops: int, storm: list[tuple[str, str, float]]) -> tuple[Any, ...]:
    links, above = _graph(topology)
    inside: set[tuple[str, str]] = set()
    outside = 0
    related: set[tuple[str, str]] = set()
    for r, rc, rt in storm:
        if rc not in ROOT_CAUSES:
            continue
        far = _distances(links, r)
        for s, sc, st in storm:
            if sc not in SYMPTOM_CAUSES or s == r or far.get(s, hops + 1) > hops:
                continue
            if s in above[r] or r in above[s]:
                continue
            related.add((f"{r}:{rc}", f"{s}:{sc}"))
            if rt - LEAD <= st <= rt + WINDOW:
                inside.add((f"{r}:{rc}", f"{s}:{sc}"))
            else:
                outside += 1
    return inside, (len(related), outside), related


# ``BUILD_FACTOR``: the default, 0 (an element's look-out of ``hops - 1`` links is built after its
# first alarm went through the balls one link nearer: the look-out serves every later one) and a
# large one (never built: every alarm goes through the balls)
FACTORS = [neighbourhood.BUILD_FACTOR, 0, 10**9]


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("hops", [2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_the_join_pairs_exactly_the_neighbours(
    seed: int, hops: int, factor: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random network and storm: the pairs made (and counted outside the window) are the brute-force
    reference's, and explain's scopes relate exactly those root and symptom alarms, whichever way
    an alarm looks out."""
    monkeypatch.setattr(neighbourhood, "BUILD_FACTOR", factor)
    rnd = random.Random(seed * 10 + hops)
    topology = _random_topology(seed)
    elements = [e["id"] for e in topology["elements"]]
    storm = _storm(rnd, elements, 70)
    pairs, counts, scoped = _joined(topology, hops, storm)
    want, want_counts, related = _reference(topology, hops, storm)
    assert len(want) > 20  # the storm pairs plenty
    assert want_counts[1] > 0  # some outside the window
    assert pairs == want
    assert counts == want_counts
    assert scoped == related


def _star(leaves: int) -> dict[str, Any]:
    elements: list[dict[str, Any]] = [{"id": "hub", "type": "agg"}]
    elements += [{"id": f"l{i}", "type": "olt", "depends_on": ["hub"]} for i in range(leaves)]
    return {"elements": elements}


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
@pytest.mark.parametrize("factor", FACTORS)
def test_a_hub_storm_pairs_every_leaf_with_the_root_through_the_hub(
    factor: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A star: a root on one leaf explains a link-down on every other leaf (not on the hub above it),
    for both distances."""
    monkeypatch.setattr(neighbourhood, "BUILD_FACTOR", factor)
    storm = [("l0", "a", 1.0), ("hub", "b", 1.5)] + [(f"l{i}", "b", 2.0 + i / 1000) for i in range(300)]
    for hops in (2, 3):
        pairs, _, _ = _joined(_star(300), hops, storm)
        assert pairs == {("l0:a", f"l{i}:b") for i in range(1, 300)}, hops


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
@pytest.mark.parametrize("factor", FACTORS)
def test_a_storm_of_roots_and_symptoms_on_every_leaf(factor: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A star under ``hops: 3``, every leaf's alarm both a root and a symptom, then roots on the
    hub and on a few leaves: every two leaves pair (the other side holds more elements than a
    leaf's ball), never the hub with a leaf below it; the reference's pairs, whichever way."""
    monkeypatch.setattr(neighbourhood, "BUILD_FACTOR", factor)
    topology = _star(60)
    storm = [(f"l{i}", "c", 1.0 + i / 100) for i in range(60)]
    storm += [("hub", "a", 1.7)] + [(f"l{i}", "a", 1.8 + i / 100) for i in range(0, 60, 7)]
    pairs, counts, _ = _joined(topology, 3, storm)
    want, want_counts, _ = _reference(topology, 3, storm)
    assert len(want) > 60 * 59
    assert (pairs, counts) == (want, want_counts)


def _tree(switches: int, fan: int) -> dict[str, Any]:
    elements: list[dict[str, Any]] = [{"id": "hub", "type": "router"}]
    elements += [{"id": f"s{j}", "type": "agg", "depends_on": ["hub"]} for j in range(switches)]
    elements += [
        {"id": f"l{i}", "type": "olt", "depends_on": [f"s{i // fan}"]} for i in range(switches * fan)
    ]
    return {"elements": elements}


LEAF_STORMS = {
    # a star, a link-down on each leaf facing one root: its look-out would hold every sibling
    "one root": (_star(300), [("l0", "a", 1.0)] + [(f"l{i}", "b", 2.0 + i / 1000) for i in range(300)]),
    # a tree, every leaf both a root and a symptom: the other side outnumbers a leaf's balls
    "every leaf": (_tree(3, 40), [(f"l{i}", "c", 1.0 + i / 1000) for i in range(120)]),
}


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
@pytest.mark.parametrize("storm", sorted(LEAF_STORMS))
def test_a_leaf_storm_builds_no_look_out(storm: str) -> None:
    """Under ``hops: 3`` an alarm on a leaf meets the other side through its own ball and its
    parent's, never through a look-out of 2 links (every sibling: N² work for N leaves facing one
    root; no saving when the other side outnumbers its balls): none is built, and the pairs are
    the reference's."""
    topology, alarms = LEAF_STORMS[storm]
    kept: list[Any] = []
    real = neighbourhood.Neighbourhood.__init__

    def keep(self: Any, *args: Any) -> None:
        real(self, *args)
        kept.append(self)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(neighbourhood.Neighbourhood, "__init__", keep)
        pairs, counts, _ = _joined(topology, 3, alarms)
    assert (pairs, counts) == _reference(topology, 3, alarms)[:2]
    assert len(pairs) > 100
    (near,) = kept
    assert not [k for k in near._known if k[0] == 2]  # no look-out of 2 links built


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
@pytest.mark.parametrize("hops", [2, 3])
def test_the_same_pairs_when_no_ball_is_remembered(hops: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the budget of remembered balls, an element's ball is kept only while it holds candidates:
    the pairs are the reference's all the same."""
    monkeypatch.setattr(neighbourhood, "BALLS_BUDGET", 0)
    rnd = random.Random(hops)
    topology = _random_topology(7)
    storm = _storm(rnd, [e["id"] for e in topology["elements"]], 90)
    pairs, counts, _ = _joined(topology, hops, storm)
    want, want_counts, _ = _reference(topology, hops, storm)
    assert len(want) > 20
    assert (pairs, counts) == (want, want_counts)


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_alarms_on_a_hub_build_its_look_out_once_going_through_costs_as_much(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under ``hops: 3`` an alarm on a hub goes through the balls of its dependents, as many as its
    look-out holds: after a few such alarms the look-out is built and remembered, and the rest use
    it (at most about twice the cheaper way's cost, whichever the number of alarms)."""
    raw = _star(300)
    raw["elements"] += [{"id": "core", "type": "router"}]
    raw["elements"] += [{"id": "hub2", "type": "agg", "depends_on": ["core"]}]
    raw["elements"][0]["depends_on"] = ["core"]
    near: neighbourhood.Neighbourhood[str] = neighbourhood.Neighbourhood(topology_from_dict(raw), 3)
    near.add("root", "hub2", "r", "r")
    passes = 0
    real = neighbourhood.Neighbourhood._through

    def counting(self: Any, ne_id: str, other: str) -> set[str]:
        nonlocal passes
        passes += 1
        return real(self, ne_id, other)

    monkeypatch.setattr(neighbourhood.Neighbourhood, "_through", counting)
    for i in range(20):
        assert list(near.others("sym", "hub")) == ["r"]  # hub2 is 2 links away, via core
        near.add("sym", "hub", f"s{i}", f"s{i}")
    assert 1 < passes < 5  # built after a few passes, used by the alarms after them
    assert (2, "hub") in near._known
    assert not [k for k in near._known if k[0] == 2 and k[1] != "hub"]


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("budget", [neighbourhood.BALLS_BUDGET, 0])
@pytest.mark.parametrize("hops", [2, 3])
def test_candidates_leave_and_enter_in_any_order(
    hops: int, budget: int, factor: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Neighbourhood`` alone, under random entries and removals (alarms expiring, re-raised): what an
    alarm meets is always the reference's neighbours among the candidates present, and nothing is
    left once every candidate has gone (with and without remembered balls)."""
    monkeypatch.setattr(neighbourhood, "BALLS_BUDGET", budget)
    monkeypatch.setattr(neighbourhood, "BUILD_FACTOR", factor)
    raw = _random_topology(11)
    links, above = _graph(raw)
    near: neighbourhood.Neighbourhood[str] = neighbourhood.Neighbourhood(topology_from_dict(raw), hops)
    rnd = random.Random(hops * 7 + budget)
    elements = sorted(links)
    live: dict[str, tuple[str, str]] = {}  # key -> (role, element)

    def related(x: str, y: str) -> bool:
        return (
            x != y
            and _distances(links, x).get(y, hops + 1) <= hops
            and y not in above[x]
            and x not in above[y]
        )

    for step in range(600):
        if live and rnd.random() < 0.45:
            key = rnd.choice(sorted(live))
            role, ne = live.pop(key)
            near.remove(role, ne, key)
        else:
            key = f"k{step}"
            role, ne = rnd.choice(["root", "sym"]), rnd.choice(elements)
            other = "sym" if role == "root" else "root"
            want = {k for k, (r, y) in live.items() if r == other and related(ne, y)}
            assert set(near.others(role, ne)) == want, step
            near.add(role, ne, key, key)
            live[key] = (role, ne)
    for key, (role, ne) in sorted(live.items()):
        near.remove(role, ne, key)
    assert near.elements() == 0
    assert not any(near._met.values())  # every index entry went with its element
    assert not near._balls  # and every ball kept for it
    assert not near._spent  # and what going through cost each element
