"""Locating unalarmed degradations (engine.core.inference): service paths over a topology and the choice of
the element shared by degraded paths. Scores and confidences are worked by hand in the comments."""

from __future__ import annotations

import random
from typing import Any

import pytest

from engine.core.inference import Inference, Suspect, access_path_elements, infer_location, path_elements
from engine.core.kqi import path_scope
from engine.model.topology import Topology, topology_from_dict

ACCESSES = ("acc-1", "acc-2", "acc-3", "acc-4")


def tree() -> Topology:
    """core → agg-1 → acc-1, acc-2; core → agg-2 → acc-3, acc-4; sbc-1 (the voice platform) on core.
    Three customers per access (c-<access>-<i>), each with internet and voice."""
    doc: dict[str, Any] = {
        "service_types": {
            "internet": {"criticality": 3},
            "voice": {"criticality": 5, "platform": ["sbc-1"]},
        },
        "elements": [
            {"id": "core", "type": "router"},
            {"id": "sbc-1", "type": "sbc", "depends_on": ["core"]},
            {"id": "agg-1", "type": "switch", "depends_on": ["core"]},
            {"id": "agg-2", "type": "switch", "depends_on": ["core"]},
            {"id": "acc-1", "type": "olt", "depends_on": ["agg-1"]},
            {"id": "acc-2", "type": "olt", "depends_on": ["agg-1"]},
            {"id": "acc-3", "type": "olt", "depends_on": ["agg-2"]},
            {"id": "acc-4", "type": "olt", "depends_on": ["agg-2"]},
        ],
        "customers": [
            {"id": f"c-{a}-{i}", "tier": "gold", "access": a, "services": ["internet", "voice"]}
            for a in ACCESSES
            for i in range(3)
        ],
    }
    return topology_from_dict(doc)


TOPO = tree()


def paths(service: str = "internet") -> dict[str, frozenset[str]]:
    """The 12 paths of one service: path:c-<access>-<i>/<service> → elements."""
    return {
        path_scope(f"c-{a}-{i}", service): path_elements(TOPO, f"c-{a}-{i}", service)
        for a in ACCESSES
        for i in range(3)
    }


def under(*accesses: str, service: str = "internet", count: int = 3) -> set[str]:
    return {path_scope(f"c-{a}-{i}", service) for a in accesses for i in range(count)}


# ------------------------------------------------------------------------------------------------ paths


def test_path_elements_follow_dependencies_and_the_platform() -> None:
    assert path_elements(TOPO, "c-acc-3-0", "internet") == {"acc-3", "agg-2", "core"}
    assert path_elements(TOPO, "c-acc-3-0", "voice") == {"acc-3", "agg-2", "core", "sbc-1"}
    assert access_path_elements(TOPO, "acc-3", "voice") == path_elements(TOPO, "c-acc-3-1", "voice")
    with pytest.raises(KeyError):
        path_elements(TOPO, "nobody", "voice")
    with pytest.raises(KeyError):
        path_elements(TOPO, "c-acc-3-0", "iptv")


def test_path_elements_include_every_redundancy_group_member() -> None:
    topo = topology_from_dict(
        {
            "service_types": {"internet": {"criticality": 3}},
            "elements": [
                {"id": "a", "type": "router"},
                {"id": "b", "type": "router"},
                {"id": "olt", "type": "olt", "depends_on": [["a", "b"]]},
            ],
            "customers": [{"id": "c", "tier": "gold", "access": "olt", "services": ["internet"]}],
        }
    )
    assert path_elements(topo, "c", "internet") == {"olt", "a", "b"}


# -------------------------------------------------------------------------------------------- inference


def test_every_path_under_an_aggregation_names_it() -> None:
    """6 degraded (acc-1, acc-2), 6 healthy. agg-1: 6/6 − 0/6 = 1.0. acc-1, acc-2: 3/6 − 0 = 0.5 each
    (tie: same specificity, 3 paths; id order). core: 6/6 − 6/6 = 0, though it carries every degraded
    path. Confidence 6/6 × (1 − 0/6) = 1."""
    inf = infer_location(paths(), under("acc-1", "acc-2"))
    assert inf == Inference(
        element="agg-1",
        degraded_paths=6,
        healthy_paths=6,
        covered=6,
        healthy_through=0,
        confidence=1.0,
        candidates=(
            Suspect("agg-1", 6, 0, 1.0),
            Suspect("acc-1", 3, 0, 0.5),
            Suspect("acc-2", 3, 0, 0.5),
            Suspect("core", 6, 6, 0.0),
        ),
    )


def test_every_path_under_one_access_names_the_access() -> None:
    """3 degraded (acc-3), 9 healthy. acc-3: 3/3 − 0/9 = 1.0; agg-2: 3/3 − 3/9 = 0.667; core: 1 − 9/9 = 0."""
    inf = infer_location(paths(), under("acc-3"))
    assert (inf.element, inf.covered, inf.healthy_through, inf.confidence) == ("acc-3", 3, 0, 1.0)
    assert [(c.element, round(c.score, 3)) for c in inf.candidates] == [
        ("acc-3", 1.0),
        ("agg-2", 0.667),
        ("core", 0.0),
    ]


def test_two_unrelated_branches_give_the_larger_one_with_lower_confidence() -> None:
    """3 degraded under acc-1, 2 under acc-3 (D 5, H 7). acc-1: 3/5 − 0 = 0.6; agg-1: 3/5 − 3/7 = 0.171;
    core: 5/5 − 7/7 = 0; acc-3 and agg-2 have only 2 (< min_degraded 3). Confidence 3/5 × 1 = 0.6."""
    inf = infer_location(paths(), under("acc-1") | under("acc-3", count=2))
    assert (inf.element, inf.degraded_paths, inf.healthy_paths) == ("acc-1", 5, 7)
    assert inf.confidence == pytest.approx(0.6)
    assert [(c.element, round(c.score, 3)) for c in inf.candidates] == [
        ("acc-1", 0.6),
        ("agg-1", 0.171),
        ("core", 0.0),
    ]


def test_partial_degradation_lowers_confidence() -> None:
    """2 of acc-1's 3 paths and 2 of acc-2's (D 4, H 8), min_degraded 3. agg-1: 4/4 − 2/8 = 0.75;
    confidence 4/4 × (1 − 2/6) = 0.667."""
    inf = infer_location(paths(), under("acc-1", "acc-2", count=2))
    assert (inf.element, inf.covered, inf.healthy_through) == ("agg-1", 4, 2)
    assert inf.candidates[0].score == pytest.approx(0.75)
    assert inf.confidence == pytest.approx(2 / 3)


def test_nothing_shared_by_enough_degraded_paths_gives_no_element() -> None:
    """One degraded path under acc-1 and one under acc-3: core has 2 < 3."""
    inf = infer_location(paths(), under("acc-1", "acc-3", count=1))
    assert inf == Inference(None, 2, 10, 0, 0, 0.0, ())


def test_an_element_no_commoner_among_degraded_than_healthy_paths_is_not_named() -> None:
    """One degraded path under each access (D 4, H 8): core has all 4, but also all 8 healthy:
    4/4 − 8/8 = 0 → no element, core stays the only candidate (each agg has 2 < 3)."""
    inf = infer_location(paths(), under(*ACCESSES, count=1))
    assert inf.element is None
    assert inf.candidates == (Suspect("core", 4, 8, 0.0),)


def test_excluded_elements_are_skipped() -> None:
    """agg-1 has an alarm: the best remaining is acc-1 (3/6 = 0.5, tied with acc-2, id order),
    confidence 3/6 × 1 = 0.5."""
    inf = infer_location(paths(), under("acc-1", "acc-2"), exclude={"agg-1"})
    assert (inf.element, inf.covered, inf.confidence) == ("acc-1", 3, 0.5)
    assert "agg-1" not in [c.element for c in inf.candidates]


def test_platform_element_explains_a_service_wide_degradation() -> None:
    """Every voice path degraded (12), every internet path healthy (12). sbc-1: 12/12 − 0 = 1; core
    12/12 − 12/12 = 0; each agg 6/12 − 6/12 = 0; each access 3/12 − 3/12 = 0."""
    inf = infer_location(paths("internet") | paths("voice"), under(*ACCESSES, service="voice"))
    assert (inf.element, inf.covered, inf.healthy_through, inf.confidence) == ("sbc-1", 12, 0, 1.0)


def test_specificity_then_id_break_score_ties() -> None:
    """p1, p2 degraded; p3, p4 healthy. a-wide is on p1..p3: 2/2 − 1/2 = 0.5; z-narrow on p1 only:
    1/2 − 0/2 = 0.5. Equal scores: z-narrow (1 path in total) is more specific than a-wide (3 paths),
    and wins although its id sorts last."""
    p = {
        "p1": frozenset({"a-wide", "z-narrow"}),
        "p2": frozenset({"a-wide"}),
        "p3": frozenset({"a-wide"}),
        "p4": frozenset({"other"}),
    }
    inf = infer_location(p, {"p1", "p2"}, min_degraded=1)
    assert inf.candidates == (Suspect("z-narrow", 1, 0, 0.5), Suspect("a-wide", 2, 1, 0.5))
    assert (inf.element, inf.confidence) == ("z-narrow", 0.5)  # 1/2 × (1 − 0/1)
    # identical path sets (a chain, or a redundancy pair): the id decides
    same = {"q1": frozenset({"x", "y"}), "q2": frozenset({"x", "y"}), "q3": frozenset({"x", "y"})}
    assert infer_location(same, {"q1", "q2", "q3"}).element == "x"


def test_unknown_degraded_ids_are_ignored_and_min_degraded_is_checked() -> None:
    inf = infer_location(paths(), under("acc-3") | {"path:ghost/internet"})
    assert (inf.element, inf.degraded_paths, inf.healthy_paths) == ("acc-3", 3, 9)
    with pytest.raises(ValueError, match="min_degraded"):
        infer_location(paths(), set(), min_degraded=0)


def test_records_are_json_ready() -> None:
    inf = infer_location(paths(), under("acc-1") | under("acc-3", count=2))
    record = inf.to_record()
    assert record["element"] == "acc-1"
    assert record["confidence"] == 0.6
    assert record["candidates"][1] == {"element": "agg-1", "degraded": 3, "healthy": 3, "score": 0.171}
    assert set(record) == {
        "element",
        "degraded_paths",
        "healthy_paths",
        "covered",
        "healthy_through",
        "confidence",
        "candidates",
    }


def test_ten_thousand_paths() -> None:
    """10 000 paths of 10 elements: core, 4 regions, 20 aggregations with 5 line cards each, 200
    accesses of 50 customers, a CPE per path. Everything under acc-17 (50 paths) is degraded, plus 30
    random paths elsewhere. acc-17: 50/80 − 0 = 0.625; its aggregation agg-1 (accesses 10..19) has
    50 + its share of the noise, but ~450 healthy paths, so scores lower."""
    rng = random.Random(7)
    all_paths: dict[str, frozenset[str]] = {}
    for n in range(10_000):
        acc = n // 50
        agg = acc // 10
        elements = {"core", f"region-{agg // 5}", f"agg-{agg}", f"acc-{acc}", f"cpe-{n}"}
        elements |= {f"agg-{agg}-lc{k}" for k in range(5)}
        all_paths[f"p{n}"] = frozenset(elements)
    degraded = {f"p{n}" for n in range(17 * 50, 18 * 50)}
    noise = rng.sample([p for p in all_paths if p not in degraded], 30)
    degraded |= set(noise)
    assert len(next(iter(all_paths.values()))) == 10
    inf = infer_location(all_paths, degraded)
    assert (inf.element, inf.covered, inf.healthy_through) == ("acc-17", 50, 0)
    assert (inf.degraded_paths, inf.healthy_paths) == (80, 9920)
    assert inf.confidence == pytest.approx(50 / 80)
    assert inf.candidates[1].element in {"agg-1", *(f"agg-1-lc{k}" for k in range(5))}
    assert len(inf.candidates) == 5
