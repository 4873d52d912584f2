"""The topology and inventory model: loading, every rejection, graph queries and customer groups."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from engine.errors import TopologyError
from engine.model import topology as topology_module
from engine.model.topology import (
    Customer,
    CustomerGroup,
    Element,
    ServiceType,
    Tier,
    Topology,
    load_topology,
    topology_from_dict,
)

# The brief's example, plus the SBC its voip platform names (platform elements must exist).
EXAMPLE = """\
tiers:            # the defaults, spelled out
  platinum: {weight: 8}
  gold: {weight: 4}
  silver: {weight: 2}
  bronze: {weight: 1}
service_types:
  voip: {criticality: 5, platform: [sbc-1]}
  internet: {criticality: 3, platform: []}
elements:
  - {id: core-1, type: router, site: site-a, region: north, depends_on: []}
  - {id: agg-1, type: switch, site: site-b, depends_on: [core-1]}
  - {id: agg-2, type: switch, site: site-b, depends_on: [core-1]}
  - {id: pwr-c, type: power, site: site-c, depends_on: []}
  - {id: olt-7, type: olt, site: site-c, depends_on: [[agg-1, agg-2], pwr-c]}
  - {id: sbc-1, type: sbc, site: site-a, region: north, depends_on: [[core-1]],
     name: SBC 1, labels: {lab: "true"}}
customers:
  - {id: c-1001, tier: gold, access: olt-7, services: [voip, internet]}
"""

Doc = dict[str, Any]
TOP_KEYS = "customer_groups, customers, customers_by_access, elements, service_types, tiers"
Mutation = Callable[[Doc], None]


def example() -> Doc:
    doc: Doc = yaml.safe_load(EXAMPLE)
    return doc


def _set(*path: Any) -> Mutation:
    """``_set("elements", 1, "type", "x")``: set the value at a path (the last argument is the value)."""
    *keys, value = path

    def mutate(doc: Doc) -> None:
        node: Any = doc
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = copy.deepcopy(value)

    return mutate


def _delete(*keys: Any) -> Mutation:
    def mutate(doc: Doc) -> None:
        node: Any = doc
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return mutate


def _add_customer(**fields: Any) -> Mutation:
    def mutate(doc: Doc) -> None:
        doc["customers"].append({"tier": "silver", "access": "olt-7", "services": ["internet"], **fields})

    return mutate


def test_the_example_loads_from_yaml_with_every_field(tmp_path: Path) -> None:
    """The documented example loads: elements, redundancy groups, tiers, service types and customers."""
    path = tmp_path / "topology.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    topo = load_topology(path)
    assert topo.source == str(path)
    assert topo.element("olt-7") == Element(
        id="olt-7", type="olt", site="site-c", region=None, depends_on=(("agg-1", "agg-2"), ("pwr-c",))
    )
    sbc = topo.element("sbc-1")
    assert (sbc.name, dict(sbc.labels), sbc.depends_on) == ("SBC 1", {"lab": "true"}, (("core-1",),))
    assert topo.element("core-1").region == "north"
    assert dict(topo.tiers) == {
        "platinum": Tier("platinum", 8.0),
        "gold": Tier("gold", 4.0),
        "silver": Tier("silver", 2.0),
        "bronze": Tier("bronze", 1.0),
    }
    assert topo.service_types["voip"] == ServiceType("voip", 5, ("sbc-1",))
    assert topo.service_types["internet"] == ServiceType("internet", 3, ())
    assert topo.customer("c-1001") == Customer("c-1001", "gold", "olt-7", ("voip", "internet"), None)
    assert topo.customer_count() == 1
    assert topo.all_groups() == (CustomerGroup("olt-7", "gold", frozenset({"voip", "internet"}), 1),)


def test_the_same_document_as_json_loads_to_the_same_topology(tmp_path: Path) -> None:
    """JSON and YAML share one schema: the example as JSON gives an identical topology."""
    (tmp_path / "t.yaml").write_text(EXAMPLE, encoding="utf-8")
    (tmp_path / "t.json").write_bytes(orjson.dumps(example()))
    from_yaml, from_json = load_topology(tmp_path / "t.yaml"), load_topology(tmp_path / "t.json")
    assert from_json.elements == from_yaml.elements
    assert from_json.tiers == from_yaml.tiers
    assert from_json.service_types == from_yaml.service_types
    assert from_json.all_groups() == from_yaml.all_groups()
    assert from_json.customer("c-1001") == from_yaml.customer("c-1001")
    assert from_json.topo_order() == from_yaml.topo_order()


def test_defaults_apply_when_optional_sections_and_fields_are_absent() -> None:
    """Without ``tiers`` the four default tiers apply; site, region, name, labels, depends_on default."""
    topo = topology_from_dict({"elements": [{"id": "a", "type": "router"}]})
    assert {n: t.weight for n, t in topo.tiers.items()} == {
        "platinum": 8.0,
        "gold": 4.0,
        "silver": 2.0,
        "bronze": 1.0,
    }
    assert topo.element("a") == Element("a", "router")
    assert dict(topo.element("a").labels) == {}
    assert (topo.service_types, topo.customer_count(), topo.all_groups()) == ({}, 0, ())
    assert topo.source == "<inline>"


def test_custom_tiers_replace_the_defaults() -> None:
    """A ``tiers`` section is the whole list: a default tier it leaves out is unknown."""
    doc = example()
    doc["tiers"] = {"vip": {"weight": 10}, "mass": {"weight": 0.5}}
    with pytest.raises(TopologyError, match=r"tier 'gold' is not defined \(known: mass, vip\)"):
        topology_from_dict(doc)
    doc["customers"][0]["tier"] = "vip"
    assert topology_from_dict(doc).tiers["mass"] == Tier("mass", 0.5)


def test_a_one_member_group_is_a_plain_required_dependency() -> None:
    """``[[core-1]]`` and ``[core-1]`` mean the same: one required upstream."""
    topo = topology_from_dict(example())
    assert topo.element("sbc-1").depends_on == topo.element("agg-1").depends_on == (("core-1",),)


REJECTIONS = [
    pytest.param(
        _set("elements", 1, "depends_on", ["core-9"]),
        "elements[1] (agg-1).depends_on[0]",
        "unknown element 'core-9'",
        id="unknown-dependency",
    ),
    pytest.param(
        _set("elements", 4, "depends_on", [["agg-1", "agg-9"], "pwr-c"]),
        "elements[4] (olt-7).depends_on[0][1]",
        "unknown element 'agg-9'",
        id="unknown-group-member",
    ),
    pytest.param(
        _set("customers", 0, "access", "olt-9"),
        "customers[0] (c-1001).access",
        "unknown element 'olt-9'",
        id="unknown-access",
    ),
    pytest.param(
        _set("service_types", "voip", "platform", ["sbc-9"]),
        "service_types.voip.platform[0]",
        "unknown element 'sbc-9'",
        id="unknown-platform-element",
    ),
    pytest.param(
        _set("customers", 0, "tier", "gld"),
        "customers[0] (c-1001).tier",
        "tier 'gld' is not defined (known: bronze, gold, platinum, silver)",
        id="unknown-tier",
    ),
    pytest.param(
        _set("customers", 0, "services", ["voip", "vod"]),
        "customers[0] (c-1001).services[1]",
        "unknown service type 'vod' (known: internet, voip)",
        id="unknown-service",
    ),
    pytest.param(
        _set("elements", 0, "depends_on", ["olt-7"]),
        "elements[0] (core-1).depends_on",
        "dependency cycle: core-1 -> olt-7 -> agg-1 -> core-1",
        id="cycle-through-a-redundancy-group",
    ),
    pytest.param(
        _set("elements", 3, "depends_on", ["pwr-c"]),
        "elements[3] (pwr-c).depends_on",
        "dependency cycle: pwr-c -> pwr-c",
        id="self-dependency",
    ),
    pytest.param(
        _set("elements", 2, "id", "agg-1"),
        "elements[2] (agg-1).id",
        "duplicate element id 'agg-1' (first at elements[1])",
        id="duplicate-element",
    ),
    pytest.param(
        _add_customer(id="c-1001"),
        "customers[1] (c-1001).id",
        "duplicate customer id 'c-1001' (first at customers[0])",
        id="duplicate-customer",
    ),
    pytest.param(
        _set("service_types", "voip", "criticality", 6),
        "service_types.voip.criticality",
        "must be at most 5, got 6",
        id="criticality-above-5",
    ),
    pytest.param(
        _set("service_types", "voip", "criticality", 0),
        "service_types.voip.criticality",
        "must be at least 1, got 0",
        id="criticality-below-1",
    ),
    pytest.param(
        _set("service_types", "voip", "criticality", "high"),
        "service_types.voip.criticality",
        "expected an integer, got string",
        id="criticality-not-a-number",
    ),
    pytest.param(
        _set("tiers", "gold", "weight", 0),
        "tiers.gold.weight",
        "must be more than 0, got 0",
        id="weight-zero",
    ),
    pytest.param(
        _set("tiers", "gold", "weight", -2.5),
        "tiers.gold.weight",
        "must be more than 0, got -2.5",
        id="weight-negative",
    ),
    pytest.param(
        _set("elements", 0, "type", 5),
        "elements[0] (core-1).type",
        "expected a string, got integer",
        id="wrong-type",
    ),
    pytest.param(
        _delete("elements", 0, "type"),
        "elements[0] (core-1).type",
        "field required",
        id="missing-field",
    ),
    pytest.param(
        _set("elements", 1, "depend_on", []),
        "elements[1] (agg-1).depend_on",
        "unknown field (expected one of id, type, site, region, depends_on, name, labels)",
        id="unknown-field",
    ),
    pytest.param(
        _set("elements", 0, "id", ""),
        "elements[0].id",
        "must not be empty",
        id="empty-id",
    ),
    pytest.param(
        _set("elements", 5, "labels", {"lab": True}),
        "elements[5] (sbc-1).labels.lab",
        "expected a string, got boolean",
        id="label-not-a-string",
    ),
    pytest.param(
        _set("elements", 4, "depends_on", [["agg-1", "agg-1"]]),
        "elements[4] (olt-7).depends_on[0]",
        "redundancy group lists a member twice: ['agg-1', 'agg-1']",
        id="group-member-twice",
    ),
    pytest.param(
        _set("elements", 4, "depends_on", [[]]),
        "elements[4] (olt-7).depends_on[0]",
        "expected an element id or a non-empty list of ids (redundancy group), got []",
        id="empty-group",
    ),
    pytest.param(
        _set("elements", 4, "depends_on", [7]),
        "elements[4] (olt-7).depends_on[0]",
        "expected an element id or a non-empty list of ids (redundancy group), got 7",
        id="dependency-not-an-id",
    ),
    pytest.param(
        _set("elements", 4, "depends_on", ["pwr-c", "pwr-c"]),
        "elements[4] (olt-7).depends_on[1]",
        "listed twice",
        id="dependency-twice",
    ),
    pytest.param(
        _set("elements", {"core-1": {"type": "router"}}),
        "elements",
        "expected a list, got mapping",
        id="elements-not-a-list",
    ),
    pytest.param(_delete("elements"), "elements", "field required", id="no-elements"),
    pytest.param(
        _set("customers", 0, "services", []),
        "customers[0] (c-1001).services",
        "must list at least one service type",
        id="no-services",
    ),
    pytest.param(
        _set("customers", 0, "services", ["voip", "voip"]),
        "customers[0] (c-1001).services[1]",
        "service type 'voip' listed twice",
        id="service-twice",
    ),
    pytest.param(
        _set("customers", 0, "services", "voip"),
        "customers[0] (c-1001).services",
        "expected a list, got string",
        id="services-not-a-list",
    ),
    pytest.param(
        _set("customers", 0, "phone", "555"),
        "customers[0] (c-1001).phone",
        "unknown field (expected one of id, tier, access, services, name)",
        id="customer-unknown-field",
    ),
    pytest.param(
        _delete("customers", 0, "access"),
        "customers[0] (c-1001).access",
        "field required",
        id="customer-missing-field",
    ),
    pytest.param(
        _set("customers", 0, "name", 12),
        "customers[0] (c-1001).name",
        "expected a string, got integer",
        id="customer-name-not-a-string",
    ),
    pytest.param(
        _set("customers", 0, "c-1001"),
        "customers[0]",
        "expected a mapping, got string",
        id="customer-not-a-mapping",
    ),
    pytest.param(
        _set("customers", {"c-1001": {}}),
        "customers",
        "expected a list, got mapping",
        id="customers-not-a-list",
    ),
    pytest.param(
        _set("customer", []),
        "customer",
        f"unknown field (expected one of {TOP_KEYS})",
        id="unknown-top-level-key",
    ),
]


@pytest.mark.parametrize(("mutate", "location", "reason"), REJECTIONS)
def test_invalid_documents_are_rejected_with_source_location_and_reason(
    mutate: Mutation, location: str, reason: str
) -> None:
    """Each mistake is a TopologyError naming the source, the exact item and a specific reason."""
    doc = example()
    mutate(doc)
    with pytest.raises(TopologyError) as info:
        topology_from_dict(doc, source="topo.yaml")
    err = info.value
    assert (err.source, err.location, err.reason) == ("topo.yaml", location, reason)


def test_a_rejection_from_a_file_names_the_file(tmp_path: Path) -> None:
    """Through the loader, ``source`` is the file path, and later customers are checked as strictly."""
    doc = example()
    doc["customers"] += [
        {"id": f"c-{i}", "tier": "gold", "access": "olt-7", "services": ["voip"]} for i in range(5)
    ]
    doc["customers"][4]["access"] = "agg-9"
    path = tmp_path / "t.json"
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert str(info.value) == f"{path}: customers[4] (c-3).access: unknown element 'agg-9'"


@pytest.mark.parametrize(
    ("name", "text", "location", "reason"),
    [
        pytest.param(
            "t.yaml",
            "elements:\n  - id: a\n    type: router\n   bad: indentation\n",
            "line 4, column 4",
            "while parsing a block collection: did not find expected '-' indicator",
            id="yaml-indentation",
        ),
        pytest.param(
            "t.yml",
            "elements:\n  - {id: a, type: router\ncustomers: []\n",
            "line 3, column 10",
            "while parsing a flow mapping: did not find expected ',' or '}'",
            id="yaml-unclosed-flow-mapping",
        ),
        pytest.param(
            "t.json",
            '{\n  "elements": [\n    {"id": "a",}\n  ]\n}',
            "line 3, column 15",
            "trailing comma is not allowed",
            id="json-trailing-comma",
        ),
        pytest.param(
            "t.yaml",
            "- a\n- b\n",
            "",
            f"the top level must be a mapping of {TOP_KEYS}; got list",
            id="top-level-list",
        ),
        pytest.param(
            "t.yaml",
            "",
            "",
            f"the top level must be a mapping of {TOP_KEYS}; got null",
            id="empty-file",
        ),
        pytest.param(
            "t.json",
            '"elements"',
            "",
            f"the top level must be a mapping of {TOP_KEYS}; got string",
            id="top-level-string",
        ),
        pytest.param("t.txt", "elements: []", "", "unsupported file type '.txt' (use .yaml, .yml or .json)"),
    ],
)
def test_unparsable_files_are_rejected_with_the_line_when_known(
    tmp_path: Path, name: str, text: str, location: str, reason: str
) -> None:
    """Syntax errors carry the parser's line and column; a top level that is not a mapping is refused."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert (info.value.source, info.value.location, info.value.reason) == (str(path), location, reason)


@pytest.mark.parametrize("name", ["absent.yaml", "absent", "absent.txt"])
def test_a_missing_file_is_a_topology_error(tmp_path: Path, name: str) -> None:
    """An unreadable file is reported like any other topology problem, not as a bare OSError, and
    as missing whatever its name ends with (not as an unsupported type)."""
    with pytest.raises(TopologyError, match="cannot read file: No such file or directory"):
        load_topology(tmp_path / name)


@pytest.fixture
def topo() -> Topology:
    return topology_from_dict(example())


@pytest.mark.parametrize(
    ("ne", "ancestors", "dependents", "descendants"),
    [
        ("core-1", set(), ("agg-1", "agg-2", "sbc-1"), {"agg-1", "agg-2", "olt-7", "sbc-1"}),
        ("agg-1", {"core-1"}, ("olt-7",), {"olt-7"}),
        ("pwr-c", set(), ("olt-7",), {"olt-7"}),
        ("olt-7", {"agg-1", "agg-2", "core-1", "pwr-c"}, (), set()),
        ("sbc-1", {"core-1"}, (), set()),
    ],
)
def test_graph_queries(
    topo: Topology, ne: str, ancestors: set[str], dependents: tuple[str, ...], descendants: set[str]
) -> None:
    """Ancestors include every group member; dependents are direct and sorted; descendants transitive."""
    assert topo.ancestors(ne) == ancestors
    assert topo.ancestors(ne) is topo.ancestors(ne)  # cached
    assert topo.dependents(ne) == dependents
    assert topo.dependents_index().get(ne, ()) == dependents
    assert topo.descendants(ne) == descendants
    assert topo.descendants(ne) is topo.descendants(ne)  # cached: the topology is static


def test_topo_order_puts_every_element_after_what_it_depends_on(topo: Topology) -> None:
    """``topo_order`` lists every element once, each after all its ancestors."""
    order = topo.topo_order()
    assert sorted(order) == sorted(topo.elements)
    position = {ne: i for i, ne in enumerate(order)}
    for ne in order:
        assert all(position[up] < position[ne] for up in topo.ancestors(ne))


@pytest.mark.parametrize(
    ("elements", "order"),
    [
        pytest.param(
            ["core", "agg:core", "olt:agg", "pwr", "dsl:agg,pwr"], "core agg olt pwr dsl", id="file-order"
        ),
        pytest.param(
            ["olt:agg", "dsl:agg,pwr", "agg:core", "core", "pwr"], "core agg olt pwr dsl", id="walked"
        ),
        pytest.param(
            ["dsl:pwr,agg", "pwr", "agg:core", "core"], "pwr core agg dsl", id="walked-in-item-order"
        ),
    ],
)
def test_topo_order_is_the_file_order_when_upstreams_come_first_else_a_walk(
    elements: list[str], order: str
) -> None:
    """Depth first from each element in file order, upstreams in ``depends_on`` order: when every
    upstream is listed before its dependents that is the file's order (taken as it is)."""
    doc = {
        "elements": [
            {"id": e.split(":")[0], "type": "x", "depends_on": e.split(":")[1].split(",") if ":" in e else []}
            for e in elements
        ]
    }
    assert topology_from_dict(doc).topo_order() == tuple(order.split())


def test_lookups_by_site_region_and_platform(topo: Topology) -> None:
    """Site and region lookups are sorted; platform_services names the services an element carries."""
    assert topo.elements_at_site("site-a") == ("core-1", "sbc-1")
    assert topo.elements_at_site("site-c") == ("olt-7", "pwr-c")
    assert topo.elements_at_site("nowhere") == ()
    assert topo.elements_in_region("north") == ("core-1", "sbc-1")
    assert topo.elements_in_region("south") == ()
    assert topo.platform_services("sbc-1") == {"voip"}
    assert topo.platform_services("olt-7") == frozenset()


@pytest.mark.parametrize("seed", range(20))
def test_dependents_sites_and_regions_agree_with_a_plain_walk_key_order_included(seed: int) -> None:
    """The graph's indices (made in one walk of the ids in sorted order) are, key by key and in the order
    of keys, those of a plain walk of the file: per key the sorted distinct ids, keys as first met; an
    upstream named in two items of one element is one dependent; elements made through a twin class
    are plain frozen ``Element`` s."""
    rng = random.Random(seed)
    ids = [f"{rng.choice('abz')}-{i}" for i in rng.sample(range(1000), 60)]
    elements: list[dict[str, Any]] = []
    for k, ne in enumerate(ids):
        e: dict[str, Any] = {"id": ne, "type": "x"}
        if rng.random() < 0.8:
            e["site"] = rng.choice(["s-2", "s-1", "s-10", "S"])
        if rng.random() < 0.6:
            e["region"] = rng.choice(["north", "east", "b"])
        earlier = ids[:k]
        if earlier:
            picks = rng.sample(earlier, min(len(earlier), rng.randint(0, 3)))
            deps: list[Any] = list(picks)
            if len(picks) >= 2 and rng.random() < 0.5:
                deps = [picks[0], [picks[0], picks[1]], *picks[2:]]  # picks[0] twice, in two items
            e["depends_on"] = deps
        elements.append(e)
    rng.shuffle(elements)  # upstreams listed later too
    topo = topology_from_dict({"elements": elements})

    def plain(pairs: list[tuple[str, str]]) -> list[tuple[str, tuple[str, ...]]]:
        out: dict[str, set[str]] = {}
        for key, value in pairs:
            out.setdefault(key, set()).add(value)
        return [(key, tuple(sorted(values))) for key, values in out.items()]

    els = [topo.element(e["id"]) for e in elements]
    deps_pairs = [(u, e.id) for e in els for item in e.depends_on for u in item]
    assert list(topo.dependents_index().items()) == plain(deps_pairs)
    sites = plain([(e.site, e.id) for e in els if e.site is not None])
    assert [(s, topo.elements_at_site(s)) for s, _ in sites] == sites
    regions = plain([(e.region, e.id) for e in els if e.region is not None])
    assert [(r, topo.elements_in_region(r)) for r, _ in regions] == regions
    assert all(type(e) is Element and e == Element(**{f: getattr(e, f) for f in _FIELDS}) for e in els)
    with pytest.raises(AttributeError):
        els[0].site = "x"  # type: ignore[misc]


_FIELDS = ("id", "type", "site", "region", "depends_on", "name", "labels")


def test_unknown_ids_raise_key_error_and_membership_is_by_element_id(topo: Topology) -> None:
    """``element`` and ``customer`` raise KeyError for unknown ids; ``in`` tests element ids only."""
    with pytest.raises(KeyError):
        topo.element("olt-9")
    with pytest.raises(KeyError):
        topo.customer("c-9")
    assert "olt-7" in topo
    assert "olt-9" not in topo
    assert "c-1001" not in topo
    assert topo.has_customer("c-1001")
    assert not topo.has_customer("olt-7")


def test_loaded_objects_are_read_only(topo: Topology) -> None:
    """Elements are frozen and the mappings the topology hands out cannot be changed."""
    with pytest.raises(AttributeError):
        topo.element("olt-7").site = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        topo.elements["x"] = Element("x", "router")  # type: ignore[index]
    with pytest.raises(TypeError):
        topo.element("sbc-1").labels["lab"] = "false"  # type: ignore[index]


def test_customers_are_aggregated_into_groups_per_access_tier_and_service_set() -> None:
    """Customers with the same access, tier and services (in any order) are one group with a count."""
    doc = example()
    doc["elements"].append({"id": "olt-8", "type": "olt", "depends_on": ["agg-2"]})
    rows = [
        ("c-2", "gold", "olt-7", ["internet", "voip"]),
        ("c-3", "gold", "olt-7", ["internet"]),
        ("c-4", "silver", "olt-7", ["voip", "internet"]),
        ("c-5", "gold", "olt-8", ["internet"]),
        ("c-6", "gold", "olt-7", ["voip", "internet"]),
        ("c-7", "platinum", "olt-7", ["internet"]),
    ]
    for cid, tier, access, services in rows:
        doc["customers"].append({"id": cid, "tier": tier, "access": access, "services": services})
    doc["customers"][-1]["name"] = "Acme"
    topo = topology_from_dict(doc)
    both = frozenset({"internet", "voip"})
    assert topo.groups_at("olt-7") == (
        CustomerGroup("olt-7", "platinum", frozenset({"internet"}), 1),
        CustomerGroup("olt-7", "gold", frozenset({"internet"}), 1),
        CustomerGroup("olt-7", "gold", both, 3),
        CustomerGroup("olt-7", "silver", both, 1),
    )
    assert topo.groups_at("olt-8") == (CustomerGroup("olt-8", "gold", frozenset({"internet"}), 1),)
    assert topo.groups_at("agg-1") == ()
    assert list(topo.all_groups()) == [*topo.groups_at("olt-7"), *topo.groups_at("olt-8")]
    assert sum(g.count for g in topo.all_groups()) == topo.customer_count() == 7
    assert topo.customer("c-2") == Customer("c-2", "gold", "olt-7", ("internet", "voip"))
    assert topo.customer("c-7") == Customer("c-7", "platinum", "olt-7", ("internet",), "Acme")


def test_ten_thousand_deep_chain_loads_and_orders_without_recursion() -> None:
    """A 10,000-element dependency chain is validated, ordered and walked iteratively."""
    n = 10_000
    elements = [{"id": "e0", "type": "x"}] + [
        {"id": f"e{i}", "type": "x", "depends_on": [f"e{i - 1}"]} for i in range(1, n)
    ]
    topo = topology_from_dict({"elements": elements[::-1]})  # listed leaf first: the worst case for the walk
    assert topo.topo_order() == tuple(f"e{i}" for i in range(n))
    assert topo.position() == {f"e{i}": i for i in range(n)}
    assert len(topo.ancestors(f"e{n - 1}")) == n - 1
    assert len(topo.descendants("e0")) == n - 1


def test_descendant_sets_are_cached_only_within_their_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``DESCENDANTS_BUDGET`` members in all, descendant sets are computed each time (a long
    chain would otherwise keep a quadratic number of members), with the same answers."""
    monkeypatch.setattr(topology_module, "DESCENDANTS_BUDGET", 5)
    elements = [{"id": "e0", "type": "x"}] + [
        {"id": f"e{i}", "type": "x", "depends_on": [f"e{i - 1}"]} for i in range(1, 10)
    ]
    topo = topology_from_dict({"elements": elements})
    assert topo.descendants("e6") is topo.descendants("e6")  # 3 members: cached
    assert topo.descendants("e0") == {f"e{i}" for i in range(1, 10)}
    assert topo.descendants("e0") is not topo.descendants("e0")  # 9 more would pass 5


def test_a_long_cycle_is_reported_as_its_whole_path() -> None:
    """A cycle is reported from the element where it closes, round to that element again."""
    elements = [{"id": f"e{i}", "type": "x", "depends_on": [f"e{(i + 1) % 4}"]} for i in range(4)]
    with pytest.raises(TopologyError) as info:
        topology_from_dict({"elements": elements})
    assert (info.value.location, info.value.reason) == (
        "elements[0] (e0).depends_on",
        "dependency cycle: e0 -> e1 -> e2 -> e3 -> e0",
    )
