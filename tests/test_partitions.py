"""Correlation domains, the partition table and the router's decision (pure, no NATS)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine.cli import main
from engine.core.partitions import (
    GLOBAL,
    CoreIncidents,
    PartitionError,
    PartitionTable,
    contributes,
    contribution,
    correlation_domains,
    partition_table,
    route,
    route_all,
)
from engine.model.topology import Topology, load_topology, topology_from_dict


@pytest.fixture(scope="module")
def example() -> Topology:
    return load_topology("examples/topology.yaml")


def _regional(sites: int = 6, olts_per_site: int = 3, customers_per_olt: int = 10) -> dict[str, Any]:
    """Two core routers, a platform SBC, per site a redundant pair of aggregation switches, a site
    power element and OLTs that depend on the pair and on the power."""
    elements: list[dict[str, Any]] = [
        {"id": "core-1", "type": "router", "depends_on": []},
        {"id": "core-2", "type": "router", "depends_on": []},
        {"id": "sbc-1", "type": "sbc", "depends_on": ["core-1"]},
    ]
    customers = []
    for s in range(sites):
        site = f"site-{s}"
        elements += [
            {"id": f"agg-{s}a", "type": "switch", "site": site, "depends_on": [["core-1", "core-2"]]},
            {"id": f"agg-{s}b", "type": "switch", "site": site, "depends_on": [["core-1", "core-2"]]},
            {"id": f"pwr-{s}", "type": "power", "site": site, "depends_on": []},
        ]
        for o in range(olts_per_site):
            olt = f"olt-{s}-{o}"
            elements.append(
                {
                    "id": olt,
                    "type": "olt",
                    "site": site,
                    "depends_on": [[f"agg-{s}a", f"agg-{s}b"], f"pwr-{s}"],
                }
            )
            customers += [
                {"id": f"c-{s}-{o}-{k}", "tier": "gold", "access": olt, "services": ["internet"]}
                for k in range(customers_per_olt * (s + 1))
            ]
    return {
        "service_types": {"internet": {"criticality": 3}, "voip": {"criticality": 5, "platform": ["sbc-1"]}},
        "elements": elements,
        "customers": customers,
    }


def test_redundancy_groups_and_site_power_stay_in_one_domain(example: Topology) -> None:
    """agg-1 and agg-2 (a redundancy group), the OLT they feed, its site's power and the cell behind
    it are one domain; the core router and the platform SBC are global."""
    domains = correlation_domains(example)
    of = domains.domain_of()
    assert {of[ne] for ne in ("agg-1", "agg-2", "olt-7", "pwr-c", "cell-c1")} == {"agg-1"}
    assert {"core-1", "sbc-1"} <= set(domains.global_elements)
    assert not set(domains.global_elements) & set(of)
    assert len(of) + len(domains.global_elements) == len(example.elements)


def test_domains_by_site_with_global_share() -> None:
    """Each site is one domain (pair, power, OLTs); the cores above every site and the platform are
    global. An element above ``global_share`` of the customers is global: with the default 5 %, an
    OLT with 9.5 % of the customers is global, an aggregation pair with 4.8 % is not; with 50 %,
    only the cores and the platform."""
    topo = topology_from_dict(_regional())
    small = set(correlation_domains(topo).global_elements)
    assert {"core-1", "core-2", "sbc-1", "olt-5-0", "agg-5a"} <= small
    assert "agg-0a" not in small
    domains = correlation_domains(topo, global_share=0.5)
    assert domains.global_elements == ("core-1", "core-2", "sbc-1")
    assert [d.id for d in domains.domains] == [f"agg-{s}a" for s in range(6)]
    assert all(len(d.elements) == 6 for d in domains.domains)
    assert [d.customers for d in domains.domains] == [30 * (s + 1) for s in range(6)]
    named = correlation_domains(topo, global_share=0.5, global_elements=["pwr-0"])
    assert "pwr-0" in named.global_elements
    with pytest.raises(PartitionError, match="unknown element"):
        correlation_domains(topo, global_elements=["nope"])
    with pytest.raises(PartitionError, match="global_share"):
        correlation_domains(topo, global_share=0)


def test_table_is_deterministic_and_balanced_by_customers() -> None:
    """The same topology, in any element order, gives the same table (same digest); domains go
    largest first to the least loaded partition, so loads differ by at most the largest domain."""
    data = _regional(sites=9)
    a = partition_table(correlation_domains(topology_from_dict(data), global_share=0.5), 3)
    shuffled = dict(
        data, elements=list(reversed(data["elements"])), customers=list(reversed(data["customers"]))
    )
    b = partition_table(correlation_domains(topology_from_dict(shuffled), global_share=0.5), 3)
    assert a.to_json() == b.to_json()
    assert a.digest == b.digest
    assert len(a.domains.domains) == 9
    loads = [row["customers"] for p, row in a.load().items() if p != GLOBAL]
    assert sum(loads) == sum(d.customers for d in a.domains.domains)
    assert max(loads) - min(loads) <= max(d.customers for d in a.domains.domains)
    assert a.partitions == ("p0", "p1", "p2", GLOBAL)
    assert a.partition_of("core-1") == GLOBAL
    assert a.partition_of("olt-8-0") == a.partition_of("agg-8b") == a.partition_of("pwr-8")
    assert a.partition_of("not-an-element") == GLOBAL


def test_stored_table_is_kept_checked_and_editable(example: Topology) -> None:
    """A stored table applies to the topology it was made for: an operator may move a domain;
    a table of another topology, an unknown partition or a missing domain is refused by name."""
    domains = correlation_domains(example)
    table = partition_table(domains, 4)
    again = PartitionTable.from_json(table.to_json(), domains)
    assert again.assignment == table.assignment
    edited = orjson.loads(table.to_json())
    edited["assignment"]["agg-1"] = "p3"
    moved = PartitionTable.from_json(orjson.dumps(edited), domains)
    assert moved.partition_of("olt-7") == "p3"
    edited["assignment"]["agg-1"] = "p9"
    with pytest.raises(PartitionError, match="unknown partition 'p9'"):
        PartitionTable.from_json(orjson.dumps(edited), domains)
    del edited["assignment"]["agg-1"]
    with pytest.raises(PartitionError, match="lacks domain"):
        PartitionTable.from_json(orjson.dumps(edited), domains)
    other = correlation_domains(topology_from_dict(_regional()))
    with pytest.raises(PartitionError, match="other global elements"):
        PartitionTable.from_json(table.to_json(), other)
    with pytest.raises(PartitionError, match="not readable"):
        PartitionTable.from_json(b"{", domains)
    with pytest.raises(PartitionError, match=r"1\.\.1024"):
        partition_table(domains, 0)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"ne_id": "olt-7", "severity": "critical"}, ["agg-1"]),
        ({"alarmedObject": {"id": "olt-7"}, "perceivedSeverity": "major"}, ["agg-1"]),
        ({"probe_id": "p", "target": "olt-001", "metrics": {}}, ["olt-001"]),
        ({"ne_id": "core-1"}, [GLOBAL]),
        ({"ne_id": "olt-999"}, [GLOBAL]),
        ({"ne_id": 7}, [GLOBAL]),
        ([1, 2], [GLOBAL]),
    ],
)
def test_route_by_element(example: Topology, payload: object, expected: list[str]) -> None:
    """A message goes whole to its element's partition; anything unplaceable to global, whose
    core rejects it with the usual dead-letter reason."""
    table = partition_table(correlation_domains(example), 4)
    want = [d if d == GLOBAL else table.assignment[d] for d in expected]
    raw = orjson.dumps(payload)
    assert route(table, raw) == [(p, raw) for p in want]


def test_route_splits_sample_batches(example: Topology) -> None:
    """A batch of samples is split by partition, each part in its original order; malformed JSON
    goes whole to global."""
    table = partition_table(correlation_domains(example), 4)
    samples = [{"target": t, "n": i} for i, t in enumerate(["olt-001", "olt-7", "olt-001", "core-1", "x"])]
    parts = dict(route(table, orjson.dumps({"samples": samples})))
    p001, p7 = table.partition_of("olt-001"), table.partition_of("olt-7")
    assert p001 != p7
    assert [s["n"] for s in orjson.loads(parts[p001])["samples"]] == [0, 2]
    assert [s["n"] for s in orjson.loads(parts[p7])["samples"]] == [1]
    assert [s["n"] for s in orjson.loads(parts[GLOBAL])["samples"]] == [3, 4]
    one = orjson.dumps({"samples": samples[:1]})
    assert route(table, one) == [(p001, one)]
    assert route(table, b"{not json") == [(GLOBAL, b"{not json")]


def test_route_copies_alarms_of_global_elements_to_the_partitions_below(example: Topology) -> None:
    """An alarm about a global element goes to global, and a copy to every domain partition holding
    an element that depends on it (so their cores correlate under it); a sample about it does not,
    nor does an alarm about a domain element."""
    table = partition_table(correlation_domains(example), 4)
    below = {table.partition_of(ne) for ne in example.descendants("agg-3")} - {GLOBAL}
    assert below
    assert table.below("agg-3") == tuple(sorted(below))
    assert set(table.below("core-1")) == set(table.partitions) - {GLOBAL}
    alarm = orjson.dumps({"ne_id": "agg-3", "severity": "critical"})
    assert route_all(table, alarm) == [(GLOBAL, alarm, False), *((p, alarm, True) for p in sorted(below))]
    sample = orjson.dumps({"probe_id": "p", "target": "agg-3", "metrics": {}})
    assert route_all(table, sample) == [(GLOBAL, sample, False)]
    local = orjson.dumps({"ne_id": "olt-7"})
    assert route_all(table, local) == [(table.partition_of("olt-7"), local, False)]
    assert table.below("olt-7") == ()


def _core(inc: str, event: str, version: int, alarms: list[str], t: str = "t") -> dict[str, Any]:
    return {
        "incident_id": inc,
        "event": event,
        "version": version,
        "time": t,
        "root_cause": {"ne_id": "core-1", "alarm_id": alarms[0]},
        "alarms": alarms,
        "suppressed": [{"alarm_id": a, "root": alarms[0]} for a in alarms[1:]],
    }


def test_core_incidents_merge_contributions_with_consecutive_versions(example: Topology) -> None:
    """The global partition's record carries the domain partitions' alarms and suppressions; a
    contribution that adds alarms to an open incident publishes an `updated` version; a repeated,
    stale or late (after resolution) contribution publishes nothing; the state survives dump/load."""
    table = partition_table(correlation_domains(example), 4)
    root = "core-1:los"
    domain_rec = _core("inc-x", "opened", 1, [root, "olt-001:ld"])
    assert contributes(table, "p0", domain_rec)
    assert not contributes(table, GLOBAL, domain_rec)
    assert not contributes(table, "p0", dict(domain_rec, root_cause={"ne_id": "olt-7"}))
    merger = CoreIncidents()
    early = contribution("p1", 5, 0, domain_rec)
    assert merger.contribute(early, 10.0) == []  # the core incident is not open yet: kept
    (opened,) = merger.core_records([_core("inc-x", "opened", 1, [root, "agg-3:ld"])], 11.0)
    assert (opened["version"], opened["event"]) == (1, "opened")
    assert opened["alarms"] == sorted([root, "agg-3:ld", "olt-001:ld"])
    assert [e["alarm_id"] for e in opened["suppressed"]] == ["agg-3:ld", "olt-001:ld"]
    assert opened["partitions"] == {GLOBAL: 2, "p1": 2}
    assert merger.contribute(early, 12.0) == []  # repeated (a successor's replay)
    more = contribution("p2", 3, 1, _core("inc-x", "updated", 2, [root, "olt-002:ld"]))
    (updated,) = merger.contribute(more, 13.0)
    assert (updated["version"], updated["event"]) == (2, "updated")
    assert "olt-002:ld" in updated["alarms"]
    assert (
        merger.contribute(contribution("p2", 4, 0, _core("inc-x", "updated", 3, [root, "olt-002:ld"])), 14)
        == []
    )
    assert (
        merger.contribute(contribution("p2", 2, 0, _core("inc-x", "opened", 1, [root])), 15.0) == []
    )  # stale
    copy = CoreIncidents()
    copy.load(orjson.loads(orjson.dumps(merger.dump())))
    (resolved,) = copy.core_records([_core("inc-x", "resolved", 3, [root, "agg-3:ld"])], 16.0)
    assert (resolved["version"], resolved["event"]) == (3, "resolved")
    assert resolved["partitions"] == {GLOBAL: 2, "p1": 2, "p2": 2}
    late = contribution("p3", 9, 0, _core("inc-x", "updated", 4, [root, "olt-003:ld"]))
    assert copy.contribute(late, 17.0) == []
    (alone,) = copy.core_records([_core("inc-y", "opened", 1, ["core-1:other"])], 18.0)
    assert "partitions" not in alone
    assert alone["version"] == 1


def test_core_incidents_merged_into_another_take_their_domain_parts_along() -> None:
    """A global incident resolved as merged into another hands that one its domain partitions'
    parts (joined with the parts it already had): the absorbing incident's next version carries
    every domain alarm of both, and a contribution to the merged incident that comes late goes to
    the absorbing one too. The state survives dump/load."""
    root_a, root_b = "core-2:los", "core-1:los"
    merger = CoreIncidents()
    merger.core_records([_core("inc-a", "opened", 1, [root_a])], 1.0)
    merger.core_records([_core("inc-b", "opened", 1, [root_b])], 1.0)
    assert merger.contribute(
        contribution("p0", 4, 0, _core("inc-a", "updated", 2, [root_a, "olt-001:ld"])), 2.0
    )
    assert merger.contribute(
        contribution("p1", 5, 0, _core("inc-b", "updated", 2, [root_b, "olt-002:ld"])), 2.0
    )
    assert merger.contribute(
        contribution("p1", 6, 0, _core("inc-a", "updated", 3, [root_a, "olt-003:ld"])), 3.0
    )
    merged = dict(_core("inc-a", "resolved", 2, [root_a]), resolution="merged", merged_into="inc-b")
    resolved, updated = merger.core_records([merged], 4.0)
    assert (resolved["incident_id"], resolved["event"]) == ("inc-a", "resolved")
    assert (updated["incident_id"], updated["event"], updated["version"]) == ("inc-b", "updated", 3)
    assert set(updated["alarms"]) == {root_b, root_a, "olt-001:ld", "olt-002:ld", "olt-003:ld"}
    assert {e["alarm_id"] for e in updated["suppressed"]} == {"olt-001:ld", "olt-002:ld", "olt-003:ld"}
    assert updated["partitions"] == {GLOBAL: 1, "p0": 2, "p1": 4}
    copy = CoreIncidents()
    copy.load(orjson.loads(orjson.dumps(merger.dump())))
    late = contribution("p2", 7, 0, _core("inc-a", "updated", 3, [root_a, "olt-004:ld"]))
    (again,) = copy.contribute(late, 5.0)
    assert (again["incident_id"], again["version"]) == ("inc-b", 4)
    assert "olt-004:ld" in again["alarms"]
    # the core's own next record of the absorbing incident keeps them all
    (final,) = copy.core_records([_core("inc-b", "resolved", 3, [root_b, root_a])], 6.0)
    assert final["version"] == 5
    assert {"olt-001:ld", "olt-002:ld", "olt-003:ld", "olt-004:ld", root_a} <= set(final["alarms"])
    assert copy.contribute(late, 7.0) == []  # both resolved: nothing more


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--partitions", "0"], "error: partition count must be 1..1024, got 0"),
        (["--global-element", "zz"], "error: global_elements: unknown element(s) zz"),
        (["--global-share", "2"], "error: global_share must be in (0, 1], got 2.0"),
    ],
)
def test_cluster_table_command_refuses_bad_arguments(
    args: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`engine cluster table` names what is wrong, exit status 2, no traceback."""
    assert main(["cluster", "table", "--topology", "examples/topology.yaml", *args]) == 2
    assert capsys.readouterr().err.strip() == error


def test_cluster_table_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`engine cluster table` prints each partition's load and the global elements; `--json` the
    table as the cluster stores it."""
    assert main(["cluster", "table", "--topology", "examples/topology.yaml", "--partitions", "4"]) == 0
    out = capsys.readouterr().out
    assert "6 domains, 4 partitions + global" in out
    assert "global elements: agg-3, core-1, sbc-1" in out
    assert main(["cluster", "table", "--topology", "examples/topology.yaml", "--json"]) == 0
    table = orjson.loads(capsys.readouterr().out)
    assert table["partitions"] == 4
    assert table["assignment"]["agg-1"] in {"p0", "p1", "p2", "p3"}


def test_run_refuses_a_cluster_url_that_is_not_nats(capsys: pytest.CaptureFixture[str]) -> None:
    """`engine run --cluster` takes nats:// URLs only."""
    assert main(["run", "--topology", "examples/topology.yaml", "--cluster", "mqtt://x:1883"]) == 2
    assert "cluster.servers: expected nats://host:port, got 'mqtt://x:1883'" in capsys.readouterr().err
