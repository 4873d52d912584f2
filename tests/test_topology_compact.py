"""The compact customer form (``customer_groups``): it loads to the same topology as the customers listed
one by one, in canonical order or not, alone or beside ``customers``; every bad entry is named; and
``engine topology compact`` converts a file (run for real, as ``python -m engine``)."""

from __future__ import annotations

import copy
import gc
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from engine.errors import TopologyError
from engine.model import topology as topology_module
from engine.model.topology import Customer, Topology, load_topology, topology_from_dict
from engine.tools.topology import compact_file

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "topology.yaml"

Doc = dict[str, Any]


def listed(seed: int = 3, n: int = 400) -> Doc:
    """A small network with customers one by one: shuffled, named, services in both orders."""
    rng = random.Random(seed)
    elements: list[dict[str, Any]] = [{"id": "core", "type": "router"}]
    elements += [{"id": f"agg-{k}", "type": "switch", "depends_on": ["core"]} for k in range(3)]
    access = [f"olt-{k}" for k in range(12)]
    elements += [{"id": ne, "type": "olt", "depends_on": [["agg-0", "agg-1"]]} for ne in access]
    elements.insert(1, {"id": "late", "type": "olt", "depends_on": ["agg-2"]})  # an upstream listed later
    lists = (["internet"], ["voip", "internet"], ["internet", "voip"], ["iptv"], ["voip", "iptv", "internet"])
    customers = []
    for i in range(n):
        c: dict[str, Any] = {
            "id": f"c-{rng.randrange(10**9):09d}-{i}",
            "tier": rng.choice(["platinum", "gold", "silver", "bronze"]),
            "access": rng.choice([*access, "late"]),
            "services": list(rng.choice(lists)),
        }
        if rng.random() < 0.1:
            c["name"] = f"Customer {i}"
        customers.append(c)
    return {
        "service_types": {
            "internet": {"criticality": 3},
            "voip": {"criticality": 5, "platform": ["agg-2"]},
            "iptv": {"criticality": 2},
        },
        "elements": elements,
        "customers": customers,
    }


def compacted(doc: Doc) -> Doc:
    out = {k: v for k, v in doc.items() if k != "customers"}
    out["customer_groups"] = topology_from_dict(doc).compact_customers()
    return out


def assert_same(a: Topology, b: Topology) -> None:
    """Everything the engine reads: elements, order, customers one by one, groups (and their order)."""
    assert a.elements == b.elements
    assert a.topo_order() == b.topo_order()
    assert a.customer_count() == b.customer_count()
    assert sorted(a.customer_ids()) == sorted(b.customer_ids())
    assert all(a.customer(c) == b.customer(c) for c in a.customer_ids())
    assert list(a.all_groups()) == list(b.all_groups())
    assert all(a.groups_at(ne) == b.groups_at(ne) for ne in a.elements)


def test_the_compact_form_loads_to_the_same_topology() -> None:
    """Canonical ``customer_groups`` (as the converter writes them) give the same elements, customers
    (services in their listed order, names) and groups as the same customers listed one by one."""
    doc = listed()
    compact = compacted(doc)
    groups = compact["customer_groups"]
    assert sum(len(g["ids"]) for g in groups) == len(doc["customers"])
    assert any("names" in g for g in groups)
    assert_same(topology_from_dict(doc), topology_from_dict(compact))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_entries_in_any_order_or_split_give_the_same_groups(seed: int) -> None:
    """Entries shuffled, split in two, or merged with customers listed one by one: the groups are
    counted as for listed customers, with the same result."""
    doc = listed(seed)
    want = topology_from_dict(doc)
    rng = random.Random(seed)
    groups = compacted(doc)["customer_groups"]
    split = []
    for g in groups:
        if len(g["ids"]) > 1 and "names" not in g:
            half = len(g["ids"]) // 2
            split += [{**g, "ids": g["ids"][:half]}, {**g, "ids": g["ids"][half:]}]
        else:
            split.append(g)
    rng.shuffle(split)
    shuffled = {**compacted(doc), "customer_groups": split}
    assert_same(want, topology_from_dict(shuffled))
    both = {**compacted(doc), "customers": doc["customers"][:50]}
    both["customer_groups"] = topology_from_dict(
        {**doc, "customers": doc["customers"][50:]}
    ).compact_customers()
    assert_same(want, topology_from_dict(both))


def test_the_example_topology_through_the_compact_form(tmp_path: Path) -> None:
    """The bundled example, compacted to JSON and to YAML, loads to the same topology."""
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    want = load_topology(EXAMPLE)
    compact = compacted(doc)
    (tmp_path / "t.json").write_bytes(orjson.dumps(compact))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(compact), encoding="utf-8")
    assert_same(want, load_topology(tmp_path / "t.json"))
    assert_same(want, load_topology(tmp_path / "t.yaml"))
    # in canonical order the groups come straight from the entries; shuffled, they are counted
    assert topology_module._Loader("t", compact).direct is not None
    shuffled = {**compact, "customer_groups": compact["customer_groups"][::-1]}
    assert topology_module._Loader("t", shuffled).direct is None
    assert_same(want, topology_from_dict(shuffled))


def small() -> Doc:
    return {
        "service_types": {"voip": {"criticality": 5}, "internet": {"criticality": 3}},
        "elements": [{"id": "olt-7", "type": "olt"}, {"id": "olt-8", "type": "olt"}],
        "customers": [{"id": "c-1", "tier": "gold", "access": "olt-7", "services": ["voip"]}],
        "customer_groups": [
            {"access": "olt-7", "tier": "gold", "services": ["internet"], "ids": ["c-2", "c-3"]},
            {"access": "olt-8", "tier": "gold", "services": ["internet"], "ids": ["c-4"]},
        ],
    }


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def mutate(doc: Doc) -> None:
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = copy.deepcopy(value)

    return mutate


G = "customer_groups"
REJECTIONS = [
    pytest.param(_set((G,), {"olt-7": []}), G, "expected a list, got mapping", id="not-a-list"),
    pytest.param(
        _set((G, 1), ["olt-8"]),
        f"{G}[1]",
        "expected a mapping, got list",
        id="entry-not-a-mapping",
    ),
    pytest.param(
        _set((G, 1, "phone"), "555"),
        f"{G}[1] (olt-8).phone",
        "unknown field (expected one of access, tier, services, ids, names)",
        id="unknown-field",
    ),
    pytest.param(_set((G, 1, "ids"), []), f"{G}[1] (olt-8).ids", "must not be empty", id="no-ids"),
    pytest.param(
        _set((G, 1, "access"), "olt-9"), f"{G}[1] (olt-9).access", "unknown element 'olt-9'", id="access"
    ),
    pytest.param(
        _set((G, 1, "tier"), "gld"),
        f"{G}[1] (olt-8).tier",
        "tier 'gld' is not defined (known: bronze, gold, platinum, silver)",
        id="tier",
    ),
    pytest.param(
        _set((G, 1, "services"), ["internet", "vod"]),
        f"{G}[1] (olt-8).services[1]",
        "unknown service type 'vod' (known: internet, voip)",
        id="service",
    ),
    pytest.param(
        _set((G, 1, "services"), []),
        f"{G}[1] (olt-8).services",
        "must list at least one service type",
        id="services",
    ),
    pytest.param(
        _set((G, 0, "ids", 1), 7),
        f"{G}[0] (olt-7).ids[1]",
        "expected a string, got integer",
        id="id-not-a-string",
    ),
    pytest.param(  # the second entry takes the fast path (its tier, element, services known)
        _set((G, 1, "ids"), ["c-4", 7.5]),
        f"{G}[1] (olt-8).ids[1]",
        "expected a string, got number",
        id="id-not-a-string-fast-path",
    ),
    pytest.param(
        _set((G, 1, "ids"), ["c-4", ""]),
        f"{G}[1] (olt-8).ids[1]",
        "must not be empty",
        id="id-empty",
    ),
    pytest.param(
        _set((G, 1, "ids"), ["c-4", "c-5", "c-4"]),
        f"{G}[1] (olt-8).ids[2]",
        "duplicate customer id 'c-4' (first at customer_groups[1].ids[0])",
        id="duplicate-in-an-entry",
    ),
    pytest.param(
        _set((G, 1, "ids"), ["c-4", "c-3"]),
        f"{G}[1] (olt-8).ids[1]",
        "duplicate customer id 'c-3' (first at customer_groups[0].ids[1])",
        id="duplicate-across-entries",
    ),
    pytest.param(
        _set((G, 1, "ids"), ["c-1"]),
        f"{G}[1] (olt-8).ids[0]",
        "duplicate customer id 'c-1' (first at customers[0])",
        id="duplicate-of-a-listed-customer",
    ),
    pytest.param(
        _set((G, 1, "names"), ["Acme", None]),
        f"{G}[1] (olt-8).names",
        "must have one entry per id (1), got 2",
        id="names-not-one-per-id",
    ),
    pytest.param(
        _set((G, 1, "names"), [5]),
        f"{G}[1] (olt-8).names[0]",
        "expected a string or null, got integer",
        id="name-not-a-string",
    ),
    pytest.param(
        _set((G, 1, "names"), {"c-4": "Acme"}),
        f"{G}[1] (olt-8).names",
        "expected a list, got mapping",
        id="names-a-mapping",
    ),
    pytest.param(
        _set(
            (G, 1), {"access": "olt-8", "tier": "gold", "services": ["internet"], "ids": [7], "names": ["A"]}
        ),
        f"{G}[1] (olt-8).ids[0]",
        "expected a string, got integer",
        id="named-id-not-a-string",
    ),
]


def test_an_entry_like_one_seen_before_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """In ``small()`` the second entry's tier, element and services are all known from the first: it is
    not validated by pydantic (which the rejections above rely on for it: bad ids are found after)."""
    full: list[int] = []
    validate = topology_module._Loader.customer_group

    def spy(self: Any, i: int, g: object) -> Any:
        full.append(i)
        return validate(self, i, g)

    monkeypatch.setattr(topology_module._Loader, "customer_group", spy)
    topology_from_dict(small())
    assert full == [0]


@pytest.mark.parametrize(("mutate", "location", "reason"), REJECTIONS)
def test_bad_entries_are_rejected_naming_the_entry(mutate: Any, location: str, reason: str) -> None:
    """Each mistake in ``customer_groups`` is a TopologyError naming the entry (its index and access
    element), the field and the reason, whether the entry took the fast path or pydantic's."""
    doc = small()
    topology_from_dict(copy.deepcopy(doc))  # the unbroken document loads
    mutate(doc)
    with pytest.raises(TopologyError) as info:
        topology_from_dict(doc, source="topo.json")
    err = info.value
    assert (err.source, err.location, err.reason) == ("topo.json", location, reason)


def engine(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_engine_topology_compact_converts_a_file(tmp_path: Path, suffix: str) -> None:
    """``engine topology compact IN OUT`` writes OUT that loads to the same topology, says what it did,
    and converting its own output again changes nothing."""
    out = tmp_path / f"compact{suffix}"
    r = engine("topology", "compact", EXAMPLE, out)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith(f"{out}: 1,020 customers in ")
    assert_same(load_topology(EXAMPLE), load_topology(out))
    again = tmp_path / f"again{suffix}"
    assert engine("topology", "compact", out, again).returncode == 0
    assert again.read_bytes() == out.read_bytes()


def test_engine_topology_compact_refuses_bad_input_and_overwriting(tmp_path: Path) -> None:
    """A bad IN exits 2 with the usual ``file: item: reason``; OUT being IN, or of an unknown type, too."""
    bad = tmp_path / "bad.json"
    doc = small()
    doc["customer_groups"][1]["ids"] = ["c-3"]
    bad.write_bytes(orjson.dumps(doc))
    r = engine("topology", "compact", bad, tmp_path / "out.json")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == (
        f"error: {bad}: customer_groups[1] (olt-8).ids[0]: duplicate customer id 'c-3' "
        "(first at customer_groups[0].ids[1])\n"
    )
    assert not (tmp_path / "out.json").exists()
    r = engine("topology", "compact", EXAMPLE, EXAMPLE)
    assert (r.returncode, r.stderr) == (
        2,
        f"error: argument OUT: {EXAMPLE} is also IN: it would be overwritten\n",
    )
    r = engine("topology", "compact", EXAMPLE, tmp_path / "out.txt")
    assert r.returncode == 2
    assert (
        r.stderr
        == f"error: {tmp_path / 'out.txt'}: unsupported file type '.txt' (use .yaml, .yml or .json)\n"
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        pytest.param("absent.json", None, id="missing"),
        pytest.param("t.txt", "elements: []", id="unsupported-type"),
        pytest.param("t.json", '{"elements": [}', id="bad-json"),
        pytest.param("t.yaml", "elements: [\n", id="bad-yaml"),
    ],
)
def test_compact_reads_its_input_as_load_topology_does(tmp_path: Path, name: str, text: str | None) -> None:
    """An IN that cannot be read, of another type or not well-formed: the same message as ``load_topology``
    gives (one reader for both), exit 2, nothing written."""
    src = tmp_path / name
    if text is not None:
        src.write_text(text, encoding="utf-8")
    with pytest.raises(TopologyError) as info:
        load_topology(src)
    with pytest.raises(TopologyError) as compacting:
        compact_file(src, tmp_path / "out.json")
    assert str(compacting.value) == str(info.value)
    if text is not None:  # (the command line refuses a missing IN itself, as for any input file)
        r = engine("topology", "compact", src, tmp_path / "out.json")
        assert (r.returncode, r.stdout, r.stderr) == (2, "", f"error: {info.value}\n")
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_the_collector_as_it_was(tmp_path: Path, enabled: bool) -> None:
    """The collector is paused while a file is read and built, and left as found, also after an error."""
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"elements": [{"id": "a"}]}')
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        load_topology(EXAMPLE)
        assert gc.isenabled() is enabled
        with pytest.raises(TopologyError):
            load_topology(bad)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


# --- the compact form by access element (``customers_by_access``) ---------------------------------


def by_access(doc: Doc) -> Doc:
    out = {k: v for k, v in doc.items() if k != "customers"}
    out["customers_by_access"] = topology_from_dict(doc).customers_by_access()
    return out


def _fast_path_taken(doc: Doc, monkeypatch: pytest.MonkeyPatch) -> bool:
    taken: list[bool] = []
    columns = topology_module._Loader._by_access_columns

    def spy(self: Any, items: Any) -> Any:
        found = columns(self, items)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(topology_module._Loader, "_by_access_columns", spy)
    topology_from_dict(doc)
    monkeypatch.undo()
    return taken == [True]


def test_the_form_by_access_loads_to_the_same_topology(monkeypatch: pytest.MonkeyPatch) -> None:
    """``customers_by_access`` as the converter writes it (services and ids as strings, named customers
    as ``[id, name]``) gives the same topology as the customers listed one by one and as
    ``customer_groups``, ids in the same order as the latter; its usual entries take the column path,
    and in canonical order its groups come straight from the entries."""
    doc = listed()
    form = by_access(doc)
    entries = form["customers_by_access"]
    assert len({e["access"] for e in entries}) == len(entries)
    groups = [g for e in entries for g in e["groups"]]
    assert any(isinstance(g[2], list) for g in groups)
    assert any(isinstance(g[2], str) for g in groups)
    assert any(isinstance(c, list) for g in groups if isinstance(g[2], list) for c in g[2])
    assert len(groups) == len(compacted(doc)["customer_groups"])
    loaded = topology_from_dict(form)
    assert_same(topology_from_dict(doc), loaded)
    in_groups = topology_from_dict(compacted(doc))
    assert list(loaded.customer_ids()) == list(in_groups.customer_ids())
    assert _fast_path_taken(form, monkeypatch)
    assert topology_from_dict(form).customers_by_access() == entries
    # (``listed()`` has both orders of a service set at one element and tier: counted, not canonical)
    example = by_access(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    assert topology_module._Loader("t", example).direct is not None
    assert topology_module._Loader("t", form).direct is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_form_by_access_in_any_order_split_or_mixed(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries shuffled, groups split or shuffled within an entry, an element in two entries, or
    beside customers listed one by one: the groups are counted, with the same result."""
    doc = listed(seed)
    want = topology_from_dict(doc)
    rng = random.Random(seed)
    entries = by_access(doc)["customers_by_access"]
    shuffled = []
    for e in entries:
        groups = []
        for tier, services, ids in e["groups"]:
            if isinstance(ids, str) and " " in ids:
                first, rest = ids.split(" ", 1)
                groups += [[tier, services, rest], [tier, services, first]]
            else:
                groups.append([tier, services, ids])
        rng.shuffle(groups)
        half = len(groups) // 2
        shuffled += [{"access": e["access"], "groups": groups[:half]}] if half else []
        shuffled.append({"access": e["access"], "groups": groups[half:]})
    rng.shuffle(shuffled)
    form = {**by_access(doc), "customers_by_access": shuffled}
    assert _fast_path_taken(form, monkeypatch)
    assert topology_module._Loader("t", form).direct is None
    assert_same(want, topology_from_dict(form))
    mixed = {**by_access({**doc, "customers": doc["customers"][50:]}), "customers": doc["customers"][:50]}
    assert_same(want, topology_from_dict(mixed))
    assert topology_module._Loader("t", mixed).direct is None
    three = {
        **mixed,
        "customer_groups": compacted({**doc, "customers": doc["customers"][:50]})["customer_groups"],
    }
    three["customers"] = []
    assert_same(want, topology_from_dict(three))


def test_the_form_by_access_with_lists_and_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Services and ids may be lists (needed when a name or an id holds a space): checked entry by entry,
    the same topology; the converter writes lists only there."""
    doc = listed(4, 60)
    doc["service_types"]["video on demand"] = {"criticality": 2}
    doc["customers"][0]["services"] = ["video on demand", "internet"]
    doc["customers"][1]["id"] = "ACME 1"
    want = topology_from_dict(doc)
    form = by_access(doc)
    groups = [g for e in form["customers_by_access"] for g in e["groups"]]
    assert ["video on demand", "internet"] in [g[1] for g in groups]
    assert any(isinstance(g[2], list) and "ACME 1" in g[2] for g in groups)
    assert sum(isinstance(g[1], list) for g in groups) == 1
    assert not _fast_path_taken(form, monkeypatch)
    assert_same(want, topology_from_dict(form))
    # every group written as lists: the same again
    for e in form["customers_by_access"]:
        e["groups"] = [
            [t, s.split(" ") if isinstance(s, str) else s, c.split(" ") if isinstance(c, str) else c]
            for t, s, c in e["groups"]
        ]
    assert_same(want, topology_from_dict(form))


def small_by_access() -> Doc:
    return {
        "service_types": {"voip": {"criticality": 5}, "internet": {"criticality": 3}},
        "elements": [{"id": "olt-7", "type": "olt"}, {"id": "olt-8", "type": "olt"}],
        "customers": [{"id": "c-1", "tier": "gold", "access": "olt-7", "services": ["voip"]}],
        "customers_by_access": [
            {"access": "olt-7", "groups": [["gold", "internet", "c-2 c-3"]]},
            {"access": "olt-8", "groups": [["gold", "internet voip", ["c-4", ["c-5", "Acme"]]]]},
        ],
    }


A = "customers_by_access"
REJECTIONS_BY_ACCESS = [
    pytest.param(_set((A,), {"olt-7": []}), A, "expected a list, got mapping", id="not-a-list"),
    pytest.param(
        _set((A, 1), ["olt-8"]), f"{A}[1]", "expected a mapping, got list", id="entry-not-a-mapping"
    ),
    pytest.param(
        _set((A, 1, "phone"), "555"),
        f"{A}[1] (olt-8).phone",
        "unknown field (expected one of access, groups)",
        id="unknown-field",
    ),
    pytest.param(_set((A, 1, "groups"), []), f"{A}[1] (olt-8).groups", "must not be empty", id="no-groups"),
    pytest.param(
        _set((A, 1, "groups", 0), "gold internet c-4"),
        f"{A}[1] (olt-8).groups[0]",
        "expected a list, got string",
        id="group-not-a-list",
    ),
    pytest.param(
        _set((A, 1, "groups", 0), ["gold", "internet", "c-4", "c-5"]),
        f"{A}[1] (olt-8).groups[0]",
        "expected [tier, services, ids], got a list of 4",
        id="group-of-four",
    ),
    pytest.param(
        _set((A, 1, "groups", 0), ["gold", "c-4"]),
        f"{A}[1] (olt-8).groups[0]",
        "expected [tier, services, ids], got a list of 2",
        id="group-of-two",
    ),
    pytest.param(
        _set((A, 1, "access"), "olt-9"), f"{A}[1] (olt-9).access", "unknown element 'olt-9'", id="access"
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 0), "gld"),
        f"{A}[1] (olt-8).groups[0].tier",
        "tier 'gld' is not defined (known: bronze, gold, platinum, silver)",
        id="tier",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 0), 4),
        f"{A}[1] (olt-8).groups[0].tier",
        "expected a string, got integer",
        id="tier-not-a-string",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 1), "internet vod"),
        f"{A}[1] (olt-8).groups[0].services[1]",
        "unknown service type 'vod' (known: internet, voip)",
        id="service",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 1), "internet  voip"),
        f"{A}[1] (olt-8).groups[0].services[1]",
        "unknown service type '' (known: internet, voip)",
        id="services-two-spaces",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 1), "voip voip"),
        f"{A}[1] (olt-8).groups[0].services[1]",
        "service type 'voip' listed twice",
        id="service-twice",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 1), []),
        f"{A}[1] (olt-8).groups[0].services",
        "must list at least one service type",
        id="no-services",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 1), ["internet", 3]),
        f"{A}[1] (olt-8).groups[0].services[1]",
        "expected a string, got integer",
        id="service-not-a-string",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 1), {"internet": 1}),
        f"{A}[1] (olt-8).groups[0].services",
        "expected a string or a list, got mapping",
        id="services-a-mapping",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 2), 7),
        f"{A}[1] (olt-8).groups[0].ids",
        "expected a string or a list, got integer",
        id="ids-a-number",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 2), []), f"{A}[1] (olt-8).groups[0].ids", "must not be empty", id="no-ids"
    ),
    pytest.param(  # a number among strings and lists
        _set((A, 1, "groups"), [["gold", "voip", 1001], ["gold", "internet", ["c-4"]]]),
        f"{A}[1] (olt-8).groups[0].ids",
        "expected a string or a list, got integer",
        id="ids-a-number-beside-a-list",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 2), ""),
        f"{A}[1] (olt-8).groups[0].ids[0]",
        "must not be empty",
        id="ids-empty",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 2), "c-4  c-5"),
        f"{A}[1] (olt-8).groups[0].ids[1]",
        "must not be empty",
        id="ids-two-spaces",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 2), ["c-4", 7.5]),
        f"{A}[1] (olt-8).groups[0].ids[1]",
        "expected an id or [id, name], got number",
        id="id-not-a-string",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 2), ["c-4", ["c-5", None]]),
        f"{A}[1] (olt-8).groups[0].ids[1]",
        "expected an id or [id, name], got list",
        id="name-not-a-string",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 2), ["c-4", ""]),
        f"{A}[1] (olt-8).groups[0].ids[1]",
        "must not be empty",
        id="id-in-a-list-empty",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 2), "c-4 c-6 c-4"),
        f"{A}[1] (olt-8).groups[0].ids[2]",
        "duplicate customer id 'c-4' (first at customers_by_access[1].groups[0].ids[0])",
        id="duplicate-in-a-group",
    ),
    pytest.param(
        _set((A, 1, "groups", 0, 2), ["c-4", ["c-3", "Acme"]]),
        f"{A}[1] (olt-8).groups[0].ids[1]",
        "duplicate customer id 'c-3' (first at customers_by_access[0].groups[0].ids[1])",
        id="duplicate-across-entries",
    ),
    pytest.param(
        _set((A, 0, "groups", 0, 2), "c-2 c-1"),
        f"{A}[0] (olt-7).groups[0].ids[1]",
        "duplicate customer id 'c-1' (first at customers[0])",
        id="duplicate-of-a-listed-customer",
    ),
    pytest.param(
        _set(
            ("customer_groups",),
            [{"access": "olt-8", "tier": "gold", "services": ["voip"], "ids": ["c-9", "c-5"]}],
        ),
        f"{A}[1] (olt-8).groups[0].ids[1]",
        "duplicate customer id 'c-5' (first at customer_groups[0].ids[1])",
        id="duplicate-of-a-grouped-customer",
    ),
]


@pytest.mark.parametrize(("mutate", "location", "reason"), REJECTIONS_BY_ACCESS)
def test_bad_entries_by_access_are_rejected_naming_the_entry(mutate: Any, location: str, reason: str) -> None:
    """Each mistake in ``customers_by_access`` is a TopologyError naming the entry (its index and access
    element), the group, the field and the reason, whichever path found it."""
    doc = small_by_access()
    topology_from_dict(copy.deepcopy(doc))  # the unbroken document loads
    mutate(doc)
    with pytest.raises(TopologyError) as info:
        topology_from_dict(doc, source="topo.json")
    err = info.value
    assert (err.source, err.location, err.reason) == ("topo.json", location, reason)


def test_an_empty_form_by_access_loads() -> None:
    doc = {**small_by_access(), "customers_by_access": []}
    assert topology_from_dict(doc).customer_count() == 1
    doc["customers"] = []
    assert topology_from_dict(doc).all_groups() == ()


def test_the_small_form_by_access_takes_the_column_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``small_by_access()`` (a named customer, strings and a list) is usual: the column path takes it,
    so that the rejections above are found by both paths (the columns give up, the check names)."""
    doc = small_by_access()
    assert _fast_path_taken(doc, monkeypatch)
    topo = topology_from_dict(doc)
    assert topo.customer("c-5") == Customer("c-5", "gold", "olt-8", ("internet", "voip"), "Acme")
    assert topo.customer("c-3") == Customer("c-3", "gold", "olt-7", ("internet",), None)
    assert list(topo.customer_ids()) == ["c-1", "c-2", "c-3", "c-4", "c-5"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_engine_topology_compact_writes_either_form(tmp_path: Path, suffix: str) -> None:
    """The converter writes ``customers_by_access`` by default and ``customer_groups`` with ``--form``;
    each converts to the other and back to the same bytes, and all load to the same topology."""
    by = tmp_path / f"by{suffix}"
    grouped = tmp_path / f"grouped{suffix}"
    assert engine("topology", "compact", EXAMPLE, by).returncode == 0
    r = engine("topology", "compact", "--form", "customer_groups", by, grouped)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith(f"{grouped}: 1,020 customers in 306 groups")
    back = tmp_path / f"back{suffix}"
    assert engine("topology", "compact", grouped, back).returncode == 0
    assert back.read_bytes() == by.read_bytes()
    loaded = {"customers_by_access", "customer_groups"}
    docs = [
        orjson.loads(by.read_bytes()) if suffix == ".json" else yaml.safe_load(by.read_text())
        for by in (by, grouped)
    ]
    assert [loaded & set(d) for d in docs] == [{"customers_by_access"}, {"customer_groups"}]
    want = load_topology(EXAMPLE)
    assert_same(want, load_topology(by))
    assert_same(want, load_topology(grouped))
    assert list(load_topology(by).customer_ids()) == list(load_topology(grouped).customer_ids())
