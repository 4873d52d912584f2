"""Health propagation and customer impact: the rules, redundancy, platforms, and a brute-force check."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import pytest

from engine.core.impact import (
    Health,
    HealthView,
    Impact,
    ImpactCounts,
    LiveHealth,
    compute_impact,
    cone,
    state_of,
)
from engine.model.topology import Topology, topology_from_dict

OK, AT_RISK, DEGRADED, DOWN = Health.OK, Health.AT_RISK, Health.DEGRADED, Health.DOWN

# core-1 feeds a redundant aggregation pair; olt-7 needs either aggregation switch and its site power;
# olt-8 hangs off agg-2 alone. voip needs sbc-1, iptv needs mw-1, which itself sits behind sbc-1.
NETWORK: dict[str, Any] = {
    "service_types": {
        "voip": {"criticality": 5, "platform": ["sbc-1"]},
        "iptv": {"criticality": 2, "platform": ["mw-1"]},
        "internet": {"criticality": 3},
    },
    "elements": [
        {"id": "core-1", "type": "router"},
        {"id": "agg-1", "type": "switch", "depends_on": ["core-1"]},
        {"id": "agg-2", "type": "switch", "depends_on": ["core-1"]},
        {"id": "pwr-c", "type": "power"},
        {"id": "olt-7", "type": "olt", "depends_on": [["agg-1", "agg-2"], "pwr-c"]},
        {"id": "olt-8", "type": "olt", "depends_on": ["agg-2"]},
        {"id": "sbc-1", "type": "sbc", "depends_on": ["core-1"]},
        {"id": "mw-1", "type": "middleware", "depends_on": ["sbc-1"]},
        {"id": "probe-1", "type": "probe"},
    ],
    "customers": [
        {"id": "c-1", "tier": "gold", "access": "olt-7", "services": ["voip", "internet"]},
        {"id": "c-2", "tier": "gold", "access": "olt-7", "services": ["internet", "voip"]},
        {"id": "c-3", "tier": "silver", "access": "olt-7", "services": ["internet"]},
        {"id": "c-4", "tier": "bronze", "access": "olt-8", "services": ["voip", "iptv"]},
        {"id": "c-5", "tier": "platinum", "access": "olt-8", "services": ["internet"]},
    ],
}


@pytest.fixture(scope="module")
def net() -> Topology:
    return topology_from_dict(NETWORK)


def chain(*deps: Any) -> Topology:
    """Elements ``a``, ``b``, ``c`` and ``x`` depending on ``deps``."""
    elements = [{"id": ne, "type": "t"} for ne in "abc"]
    return topology_from_dict({"elements": [*elements, {"id": "x", "type": "t", "depends_on": list(deps)}]})


@pytest.mark.parametrize("level", list(Health))
def test_a_required_dependency_passes_its_health_on(level: Health) -> None:
    """A single required upstream contributes exactly its effective health."""
    assert HealthView(chain("a"), {"a": level}).health("x") == level


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (OK, OK, OK),
        (AT_RISK, OK, AT_RISK),
        (DEGRADED, OK, AT_RISK),
        (DOWN, OK, AT_RISK),
        (AT_RISK, AT_RISK, AT_RISK),
        (DOWN, AT_RISK, AT_RISK),
        (DEGRADED, DEGRADED, DEGRADED),
        (DOWN, DEGRADED, DEGRADED),
        (DOWN, DOWN, DOWN),
    ],
)
def test_a_redundancy_group_passes_on_its_best_member_or_at_risk(
    a: Health, b: Health, expected: Health
) -> None:
    """A group gives its best member's health, but AT_RISK when the best is OK and another is not."""
    assert HealthView(chain(["a", "b"]), {"a": a, "b": b}).health("x") == expected
    assert HealthView(chain(["a", "b"]), {"a": b, "b": a}).health("x") == expected


def test_effective_health_is_the_worst_of_own_and_every_dependency() -> None:
    """Own state and each item combine by max: a degraded element behind a lost group is DOWN."""
    topo = chain(["a", "b"], "c")
    assert HealthView(topo, {"x": DEGRADED, "a": DOWN}).health("x") == DEGRADED
    assert HealthView(topo, {"x": AT_RISK, "c": DEGRADED}).health("x") == DEGRADED
    assert HealthView(topo, {"x": DEGRADED, "a": DOWN, "b": DOWN}).health("x") == DOWN
    assert HealthView(topo, {"unknown": DOWN}).health("unknown") == DOWN
    assert HealthView(topo, {}).health("x") == OK


def test_single_root_outage_takes_everything_behind_it_down(net: Topology) -> None:
    """core-1 down: both aggregation switches, both OLTs and the platforms are down; all customers out."""
    impact = compute_impact(net, {"core-1": DOWN}, ["core-1"])
    assert impact.elements == dict.fromkeys(
        ["agg-1", "agg-2", "core-1", "mw-1", "olt-7", "olt-8", "sbc-1"], DOWN
    )
    assert impact.state == "outage"
    assert impact.customers == 5
    assert impact.by_tier == {"bronze": 1, "gold": 2, "platinum": 1, "silver": 1}
    assert impact.services == {"internet": 4, "iptv": 1, "voip": 3}
    assert list(impact.by_state) == ["outage"]


def test_losing_one_uplink_of_a_redundant_pair_puts_customers_at_risk(net: Topology) -> None:
    """agg-1 down: olt-7 keeps agg-2 and is AT_RISK; its customers are at risk, nobody is out."""
    impact = compute_impact(net, {"agg-1": DOWN}, ["agg-1"])
    assert impact.elements == {"agg-1": DOWN, "olt-7": AT_RISK}
    assert impact.state == "at_risk"
    assert (impact.customers, impact.by_tier) == (3, {"gold": 2, "silver": 1})
    assert impact.by_state == {
        "at_risk": ImpactCounts(3, {"internet": 3, "voip": 2}, {"gold": 2, "silver": 1}),
    }


def test_both_members_failing_separately_make_the_shared_dependent_down_in_each_incident(
    net: Topology,
) -> None:
    """Health uses the global own-state map: two incidents, one per uplink, each see olt-7 DOWN."""
    own = {"agg-1": DOWN, "agg-2": DOWN}
    first = compute_impact(net, own, ["agg-1"])
    assert first.elements == {"agg-1": DOWN, "olt-7": DOWN}
    assert (first.state, first.customers) == ("outage", 3)
    second = compute_impact(net, own, ["agg-2"])
    assert second.elements == {"agg-2": DOWN, "olt-7": DOWN, "olt-8": DOWN}
    assert (second.state, second.customers, second.by_tier["platinum"]) == ("outage", 5, 1)


def test_a_platform_outage_affects_every_subscriber_of_its_services_once(net: Topology) -> None:
    """sbc-1 down hits voip and (through mw-1) iptv everywhere; c-4 has both and counts once."""
    impact = compute_impact(net, {"sbc-1": DOWN}, ["sbc-1"])
    assert impact.elements == {"mw-1": DOWN, "sbc-1": DOWN}
    assert impact.state == "outage"
    assert impact.services == {"iptv": 1, "voip": 3}
    assert (impact.customers, impact.by_tier) == (3, {"bronze": 1, "gold": 2})


@pytest.mark.parametrize(("level", "state"), [(DOWN, "outage"), (DEGRADED, "degraded"), (AT_RISK, "at_risk")])
def test_a_platform_element_hits_its_services_at_its_own_level(
    net: Topology, level: Health, state: str
) -> None:
    """A degraded platform degrades the service, an at-risk one puts it at risk."""
    impact = compute_impact(net, {"sbc-1": level}, ["sbc-1"])
    assert impact.state == state
    assert impact.by_state == {state: ImpactCounts(3, {"iptv": 1, "voip": 3}, {"bronze": 1, "gold": 2})}


def test_each_service_is_at_the_worse_of_its_access_and_its_platform(net: Topology) -> None:
    """olt-7 at risk and sbc-1 down: voip is out, internet at risk; customers count at their worst."""
    impact = compute_impact(net, {"agg-1": DOWN, "sbc-1": DOWN}, ["agg-1", "sbc-1"])
    assert impact.state == "outage"
    assert impact.by_state == {
        "outage": ImpactCounts(3, {"iptv": 1, "voip": 3}, {"bronze": 1, "gold": 2}),
        "at_risk": ImpactCounts(1, {"internet": 3}, {"silver": 1}),
    }
    assert (impact.customers, impact.services) == (4, {"internet": 3, "iptv": 1, "voip": 3})


def test_degradation_propagates_to_dependents_and_their_customers(net: Topology) -> None:
    """A degraded site power degrades olt-7 and everyone behind it."""
    impact = compute_impact(net, {"pwr-c": DEGRADED}, ["pwr-c"])
    assert impact.elements == {"olt-7": DEGRADED, "pwr-c": DEGRADED}
    assert impact.by_state == {
        "degraded": ImpactCounts(3, {"internet": 3, "voip": 2}, {"gold": 2, "silver": 1})
    }


def test_levels_outside_the_cone_belong_to_other_incidents(net: Topology) -> None:
    """A platform down in another incident does not count in this one's customer figures."""
    impact = compute_impact(net, {"pwr-c": DEGRADED, "sbc-1": DOWN}, ["pwr-c"])
    assert impact.elements == {"olt-7": DEGRADED, "pwr-c": DEGRADED}
    assert impact.state == "degraded"
    assert list(impact.by_state) == ["degraded"]


def test_without_customers_the_state_is_the_worst_element_level(net: Topology) -> None:
    """An element serving nobody still gives the incident a state; no affected element means None."""
    impact = compute_impact(net, {"probe-1": DEGRADED}, ["probe-1"])
    assert (impact.elements, impact.state, impact.customers) == ({"probe-1": DEGRADED}, "degraded", 0)
    for own, seeds in [({}, ["core-1"]), ({"core-1": DOWN}, ["no-such-element"]), ({"core-1": DOWN}, [])]:
        nothing = compute_impact(net, own, seeds)
        assert (nothing.elements, nothing.state, nothing.customers, nothing.by_state) == ({}, None, 0, {})


def test_the_record_is_json_ready_with_a_fixed_key_order(net: Topology) -> None:
    """``to_record`` has the documented shape, sorted service and tier keys, states worst first."""
    record = compute_impact(net, {"agg-1": DOWN, "sbc-1": DOWN}, ["agg-1", "sbc-1"]).to_record()
    assert record == {
        "elements": 4,
        "services": {"internet": 3, "iptv": 1, "voip": 3},
        "customers": {"total": 4, "by_tier": {"bronze": 1, "gold": 2, "silver": 1}},
        "by_state": {
            "outage": {
                "customers": 3,
                "services": {"iptv": 1, "voip": 3},
                "by_tier": {"bronze": 1, "gold": 2},
            },
            "at_risk": {"customers": 1, "services": {"internet": 3}, "by_tier": {"silver": 1}},
        },
    }
    assert list(record) == ["elements", "services", "customers", "by_state"]
    assert orjson.loads(orjson.dumps(record)) == record


def test_state_names_and_the_cone() -> None:
    """Health maps to the incident state names; the cone is the known seeds and all their dependents."""
    assert [state_of(h) for h in Health] == [None, "at_risk", "degraded", "outage"]
    topo = topology_from_dict(NETWORK)
    assert cone(topo, ["agg-2", "nope"]) == {"agg-2", "olt-7", "olt-8"}


def test_a_ten_thousand_deep_chain_does_not_hit_the_recursion_limit() -> None:
    """Health is evaluated iteratively: the far end of a 10,000-element chain is reached directly."""
    n = 10_000
    elements = [{"id": "e0", "type": "x"}] + [
        {"id": f"e{i}", "type": "x", "depends_on": [f"e{i - 1}"]} for i in range(1, n)
    ]
    customers = [{"id": "c", "tier": "gold", "access": f"e{n - 1}", "services": ["s"]}]
    topo = topology_from_dict(
        {"service_types": {"s": {"criticality": 1}}, "elements": elements, "customers": customers}
    )
    assert HealthView(topo, {"e0": DEGRADED}).health(f"e{n - 1}") == DEGRADED
    impact = compute_impact(topo, {"e0": DOWN}, ["e0"])
    assert (len(impact.elements), impact.state, impact.customers) == (n, "outage", 1)


# --- randomized: the group arithmetic against a per-customer brute force, and monotonicity ------------


def random_network(rng: random.Random, n_elements: int = 60, n_customers: int = 400) -> Topology:
    elements: list[dict[str, Any]] = []
    for i in range(n_elements):
        deps: list[Any] = []
        seen: set[frozenset[str]] = set()
        for _ in range(rng.choice([0, 1, 1, 2]) if i else 0):
            item = [f"n{m}" for m in rng.sample(range(i), min(i, rng.choice([1, 1, 2, 3])))]
            if frozenset(item) not in seen:
                seen.add(frozenset(item))
                deps.append(item[0] if len(item) == 1 else item)
        elements.append({"id": f"n{i}", "type": "t", "depends_on": deps})
    services = {
        f"s{k}": {"criticality": 3, "platform": [f"n{m}" for m in rng.sample(range(n_elements), k)]}
        for k in range(4)
    }
    customers = [
        {
            "id": f"c{j}",
            "tier": rng.choice(["platinum", "gold", "silver", "bronze"]),
            "access": f"n{rng.randrange(n_elements)}",
            "services": rng.sample(sorted(services), rng.randint(1, 3)),
        }
        for j in range(n_customers)
    ]
    return topology_from_dict({"service_types": services, "elements": elements, "customers": customers})


def brute_force(
    topo: Topology, own: Mapping[str, Health], seeds: Iterable[str], only: frozenset[str] | None = None
) -> dict[str, Any]:
    """The impact record computed the slow way: eager health in topological order, customer by customer
    (``only``: counting only subscriptions of these service types)."""
    health: dict[str, Health] = {}
    for ne in topo.topo_order():
        value = own.get(ne, OK)
        for item in topo.element(ne).depends_on:
            members = [health[u] for u in item]
            best = min(members)
            value = max(value, best if len(item) == 1 or best != OK or max(members) == OK else AT_RISK)
        health[ne] = value
    in_cone = {s for s in seeds if s in topo}
    in_cone |= {d for s in in_cone for d in topo.descendants(s)}
    affected = {ne: health[ne] for ne in in_cone if health[ne] != OK}
    names = {DOWN: "outage", DEGRADED: "degraded", AT_RISK: "at_risk"}
    services: Counter[str] = Counter()
    tiers: Counter[str] = Counter()
    by_state: dict[Health, tuple[Counter[str], Counter[str], Counter[str]]] = {}
    for j in range(topo.customer_count()):
        c = topo.customer(f"c{j}")
        access = affected.get(c.access, OK)
        levels = {
            s: max([access, *(affected.get(p, OK) for p in topo.service_types[s].platform)])
            for s in c.services
            if only is None or s in only
        }
        worst = max(levels.values(), default=OK)
        if worst == OK:
            continue
        tiers[c.tier] += 1
        by_state.setdefault(worst, (Counter(), Counter(), Counter()))[0]["n"] += 1
        by_state[worst][2][c.tier] += 1
        for s, level in levels.items():
            if level != OK:
                services[s] += 1
                by_state.setdefault(level, (Counter(), Counter(), Counter()))[1][s] += 1
    return {
        "elements": len(affected),
        "services": dict(sorted(services.items())),
        "customers": {"total": tiers.total(), "by_tier": dict(sorted(tiers.items()))},
        "by_state": {
            names[level]: {
                "customers": n["n"],
                "services": dict(sorted(s.items())),
                "by_tier": dict(sorted(t.items())),
            }
            for level, (n, s, t) in sorted(by_state.items(), reverse=True)
        },
    }


def random_state(rng: random.Random, topo: Topology, k: int) -> dict[str, Health]:
    return {ne: rng.choice([AT_RISK, DEGRADED, DOWN]) for ne in rng.sample(sorted(topo.elements), k)}


def test_group_arithmetic_matches_a_customer_by_customer_brute_force() -> None:
    """On random networks and failures, the group-based impact equals counting every customer."""
    rng = random.Random(20240601)
    for _ in range(8):
        topo = random_network(rng)
        for _ in range(25):
            own = random_state(rng, topo, rng.randint(1, 6))
            seeds = rng.sample(sorted(own), rng.randint(1, len(own)))
            impact: Impact = compute_impact(topo, own, seeds)
            assert impact.to_record() == brute_force(topo, own, seeds)


def test_impact_restricted_to_services_matches_the_brute_force_and_all_services_change_nothing() -> None:
    """`only_services` (an incident about one service, such as a voice KQI alarm) counts only those
    subscriptions, customer by customer as the brute force does; naming every service type gives
    exactly the unrestricted impact."""
    rng = random.Random(20261202)
    for _ in range(6):
        topo = random_network(rng)
        every = frozenset(topo.service_types)
        for _ in range(20):
            own = random_state(rng, topo, rng.randint(1, 6))
            seeds = rng.sample(sorted(own), rng.randint(1, len(own)))
            only = frozenset(rng.sample(sorted(every), rng.randint(1, 2)))
            got = compute_impact(topo, own, seeds, only_services=only)
            assert got.to_record() == brute_force(topo, own, seeds, only)
            assert compute_impact(topo, own, seeds, only_services=every) == compute_impact(topo, own, seeds)


def test_a_voice_only_degradation_spares_the_internet_customers(net: Topology) -> None:
    """olt-7 degraded for voip only: its two voip customers (c-1, c-2, gold) are degraded; c-3, who
    has internet only, is not affected, and nobody's internet is counted."""
    impact = compute_impact(net, {"olt-7": DEGRADED}, ["olt-7"], only_services=frozenset({"voip"}))
    assert impact.customers == 2
    assert impact.services == {"voip": 2}
    assert impact.by_tier == {"gold": 2}
    assert impact.state == "degraded"


def test_adding_a_down_element_never_lowers_the_impact() -> None:
    """Monotonicity: one more element down (and seeded) never lowers customers, tiers or services."""
    rng = random.Random(7)
    for _ in range(8):
        topo = random_network(rng)
        for _ in range(25):
            own = random_state(rng, topo, rng.randint(0, 5))
            before = compute_impact(topo, own, own)
            extra = rng.choice(sorted(topo.elements))
            after = compute_impact(topo, {**own, extra: DOWN}, [*own, extra])
            assert after.customers >= before.customers
            assert all(after.by_tier.get(t, 0) >= n for t, n in before.by_tier.items())
            assert all(after.services.get(s, 0) >= n for s, n in before.services.items())
            assert all(after.elements.get(ne, OK) >= h for ne, h in before.elements.items())


# --- the live view: levels kept up to date, impacts cached per cone ------------------------------------


def test_live_health_follows_every_change_as_a_fresh_view_would() -> None:
    """Random own levels set and cleared one element at a time: after each change, every element's
    live level is what a fresh ``HealthView`` computes, and the live impact of random seeds is
    ``compute_impact``'s (cached or not)."""
    rng = random.Random(20261206)
    for _ in range(6):
        topo = random_network(rng)
        own: dict[str, Health] = {}
        live = LiveHealth(topo, own)
        names = sorted(topo.elements)
        for _ in range(60):
            ne = rng.choice([*names, "not-in-topology"])
            level = rng.choice([OK, OK, AT_RISK, DEGRADED, DOWN])
            if level == OK:
                own.pop(ne, None)
            else:
                own[ne] = level
            live.changed(ne)
            fresh = HealthView(topo, own)
            assert {x: live.health(x) for x in [*names, "not-in-topology"]} == {
                x: fresh.health(x) for x in [*names, "not-in-topology"]
            }
            for _ in range(3):
                seeds = sorted(rng.sample(names, rng.randint(1, 3)))
                assert live.impact(seeds) == compute_impact(topo, own, seeds)


def test_a_live_impact_is_computed_again_only_when_its_cone_changes(net: Topology) -> None:
    """The same ``Impact`` object comes back while nothing in the seeds' cone changes level (olt-8
    going down is outside agg-1's cone); a change inside the cone (agg-2 down makes olt-7 down, not
    at risk) gives a new one, unless the cone's levels came back to those it was made of; and
    ``reset`` after ``own`` was replaced wholesale gives a new one."""
    own = {"agg-1": DOWN}
    live = LiveHealth(net, own)
    first = live.impact(["agg-1"])
    assert first.elements == {"agg-1": DOWN, "olt-7": AT_RISK}
    own["olt-8"] = DOWN
    assert live.changed("olt-8") == 1
    assert live.impact(["agg-1"]) is first
    own["agg-2"] = DOWN
    assert live.changed("agg-2") == 2  # agg-2 and olt-7 (at risk -> down); olt-8 was down already
    second = live.impact(["agg-1"])
    assert second is not first
    assert second.elements == {"agg-1": DOWN, "olt-7": DOWN}
    # agg-2 up and down again between two asks: olt-7 changed level twice, the cone is stamped, but
    # its levels are those the last impact was made of, so the same object comes back
    del own["agg-2"]
    assert live.changed("agg-2") == 2
    own["agg-2"] = DOWN
    assert live.changed("agg-2") == 2
    assert live.impact(["agg-1"]) is second
    # the same with ``change`` (what the core calls): agg-2's level changes twice, nothing below it
    # moves (carried only when read), and the same object comes back
    live.changing("agg-2")
    del own["agg-2"]
    assert live.change("agg-2") == 1
    live.changing("agg-2")
    own["agg-2"] = DOWN
    assert live.change("agg-2") == 1
    assert live.impact(["agg-1"]) is second
    own.clear()
    own["core-1"] = DEGRADED
    live.reset()
    assert live.impact(["agg-1"]).elements == {"agg-1": DEGRADED, "olt-7": DEGRADED}


def _tree_network(rng: random.Random, n_elements: int, shared: float) -> Topology:
    """A tree (each element below one earlier element), with a share ``shared`` of elements that
    depend on two elements or on a redundancy group instead."""
    elements: list[dict[str, Any]] = [{"id": "n0", "type": "t", "depends_on": []}]
    for i in range(1, n_elements):
        up = [f"n{m}" for m in rng.sample(range(i), min(i, 2))]
        if len(up) == 2 and rng.random() < shared:
            deps: list[Any] = [up] if rng.random() < 0.5 else up
        else:
            deps = [up[0]]
        elements.append({"id": f"n{i}", "type": "t", "depends_on": deps})
    return topology_from_dict({"service_types": {}, "elements": elements, "customers": []})


@pytest.mark.parametrize("shared", [0.0, 0.05, 0.3, 0.8])
def test_live_health_walks_down_trees_and_stamps_every_cone_a_change_touched(shared: float) -> None:
    """A change walks down to elements of one upstream in any order and to the others in topological
    order (``LiveHealth.changed``): every level is a fresh view's, and exactly the elements whose
    level changed and everything above them get the new version (an element whose one upstream
    changed too adds no ancestors of its own: ``_stamp``)."""
    rng = random.Random(int(shared * 100) + 7)
    walks = 0
    for _ in range(4):
        topo = _tree_network(rng, 80, shared)
        own: dict[str, Health] = {}
        live = LiveHealth(topo, own)
        names = sorted(topo.elements)
        for _ in range(80):
            ne = rng.choice(names[: len(names) // 3] if rng.random() < 0.6 else names)
            level = rng.choice([OK, AT_RISK, DEGRADED, DOWN])
            if level == OK:
                own.pop(ne, None)
            else:
                own[ne] = level
            before = {x: live.health(x) for x in names}
            version = live.version
            live.changed(ne)
            fresh = HealthView(topo, own)
            after = {x: live.health(x) for x in names}
            assert after == {x: fresh.health(x) for x in names}
            moved = {x for x in names if before[x] != after[x]}
            if not moved:
                assert live.version == version
                continue
            expected = set(moved)
            for x in moved:
                expected |= topo.ancestors(x)
            stamped = {x for x in names if live._stamps.get(x) == live.version}
            assert stamped == expected
            walks += len(moved) > 2
    assert walks > 20  # changes walked down


@pytest.mark.parametrize("shared", [0.0, 0.3])
def test_live_health_carrying_a_change_when_read_decides_what_carrying_it_at_once_decides(
    shared: float,
) -> None:
    """``change`` carries an element's level below it only when the levels are next read or another
    element changes (and not at all when the element changes back first). Random changes, often the
    same element raised and cleared in a row, read now and then: the levels are a fresh view's, the
    impacts ``compute_impact``'s, and an impact comes back as the same object exactly when it does
    from a ``LiveHealth`` told by ``changed``, which carries each change at once."""
    rng = random.Random(int(shared * 10) + 31)
    toggles = 0
    for _ in range(4):
        topo = _tree_network(rng, 60, shared)
        own_lazy: dict[str, Health] = {}
        own_eager: dict[str, Health] = {}
        lazy, eager = LiveHealth(topo, own_lazy), LiveHealth(topo, own_eager)
        names = sorted(topo.elements)
        last: dict[tuple[str, ...], tuple[Impact, Impact]] = {}
        ne = names[0]
        for _ in range(400):
            if rng.random() < 0.5:  # the same element again: often back to where it was
                toggles += 1
            else:
                ne = rng.choice(names[: len(names) // 3] if rng.random() < 0.6 else names)
            level = rng.choice([OK, OK, AT_RISK, DEGRADED, DOWN])
            lazy.changing(ne)
            for own in (own_lazy, own_eager):
                if level == OK:
                    own.pop(ne, None)
                else:
                    own[ne] = level
            assert lazy.change(ne) == min(eager.changed(ne), 1)
            if rng.random() < 0.25:
                fresh = HealthView(topo, own_lazy)
                assert {x: lazy.health(x) for x in names} == {x: fresh.health(x) for x in names}
            if rng.random() < 0.4:
                seeds = tuple(sorted(rng.sample(names[:20], rng.randint(1, 2))))
                a, b = lazy.impact(seeds), eager.impact(seeds)
                assert a == b == compute_impact(topo, own_lazy, seeds)
                if seeds in last:
                    assert (a is last[seeds][0]) == (b is last[seeds][1])
                last[seeds] = (a, b)
    assert toggles > 500
