"""Topology and inventory: network elements and their dependencies, service types, tiers, customers.

Loaded from one YAML or JSON file (same schema), validated up front: every problem is a
``TopologyError`` naming the file, the item (``elements[4] (olt-7).depends_on[0][1]``) and the reason.

``depends_on`` items are required upstreams; a list item is a redundancy group (any one member is
enough). Customers are held compactly (one dict entry each, no object) and aggregated into
``CustomerGroup`` s, one per access element, tier and service set: impact is computed over groups.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, NoReturn

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from engine.errors import TopologyError
from engine.model.wording import first_problem, type_name, unknown_field

DEFAULT_TIERS = MappingProxyType({"platinum": 8.0, "gold": 4.0, "silver": 2.0, "bronze": 1.0})
_TOP_KEYS = ("customers", "elements", "service_types", "tiers")
_NO_LABELS: Mapping[str, str] = MappingProxyType({})
# Descendant sets are cached (the topology is static) up to this many members in all: a tree of 50,000
# elements needs a few hundred thousand; a 100,000-element chain would need five billion.
DESCENDANTS_BUDGET = 1_000_000


@dataclass(frozen=True, slots=True)
class Element:
    """A network element. Each ``depends_on`` item is a tuple: length 1 = required, more = any-of."""

    id: str
    type: str
    site: str | None = None
    region: str | None = None
    depends_on: tuple[tuple[str, ...], ...] = ()
    name: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS, hash=False)


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    weight: float


@dataclass(frozen=True, slots=True)
class ServiceType:
    """``platform``: elements every instance of the service needs (SBC, IPTV middleware…)."""

    name: str
    criticality: int
    platform: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    tier: str
    access: str
    services: tuple[str, ...]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class CustomerGroup:
    """``count`` customers sharing an access element, a tier and a set of services."""

    access: str
    tier: str
    services: frozenset[str]
    count: int


# --- validation models (shape and types; references are checked afterwards) -----------------------


def _dep_item(value: object) -> tuple[str, ...]:
    """A ``depends_on`` item: an element id, or a list of them (a redundancy group)."""
    group = value if isinstance(value, list) else [value]
    if not group or not all(isinstance(m, str) and m for m in group):
        raise ValueError(
            f"expected an element id or a non-empty list of ids (redundancy group), got {value!r}"
        )
    if len(set(group)) < len(group):
        raise ValueError(f"redundancy group lists a member twice: {value!r}")
    return tuple(m for m in group if isinstance(m, str))


_Id = Annotated[str, Field(min_length=1)]
_DepItem = Annotated[tuple[str, ...], PlainValidator(_dep_item)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _TierModel(_Model):
    weight: Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _ServiceTypeModel(_Model):
    criticality: Annotated[int, Field(ge=1, le=5)]
    platform: list[_Id] = Field(default_factory=list)


class _ElementModel(_Model):
    id: _Id
    type: _Id
    site: _Id | None = None
    region: _Id | None = None
    depends_on: list[_DepItem] = Field(default_factory=list)
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class _CustomerModel(_Model):
    id: _Id
    tier: str
    access: str
    services: list[str]
    name: str | None = None


class _DocModel(_Model):
    tiers: dict[str, _TierModel] | None = None
    service_types: dict[str, _ServiceTypeModel] = Field(default_factory=dict)
    elements: list[_ElementModel]


def _where(data: object, loc: Sequence[str | int]) -> str:
    """``('elements', 4, 'depends_on', 0)`` → ``elements[4] (olt-7).depends_on[0]``."""
    out, node = "", data
    for depth, key in enumerate(loc):
        if key == "[key]":  # pydantic's marker: the mapping key itself is wrong
            out += " (key)"
        elif isinstance(key, int) and isinstance(node, list):
            node = node[key] if 0 <= key < len(node) else None
            ident = node.get("id") if depth == 1 and isinstance(node, dict) else None
            out += f"[{key}]" + (f" ({ident})" if isinstance(ident, str) and ident else "")
        else:
            out += f".{key}" if out else str(key)
            node = node.get(key) if isinstance(node, dict) else None
    return out


# --- loading ------------------------------------------------------------------------------------


def load_topology(path: str | Path) -> Topology:
    """Read and validate a ``.yaml``/``.yml``/``.json`` topology file. Raises ``TopologyError``."""
    p = Path(path)
    source, suffix = str(p), p.suffix.lower()
    try:  # a missing file is named as missing, whatever its name ends with
        raw = p.read_bytes()
    except OSError as exc:
        raise TopologyError(source, "", f"cannot read file: {exc.strerror or exc}") from None
    if suffix not in (".yaml", ".yml", ".json"):
        raise TopologyError(source, "", f"unsupported file type {suffix!r} (use .yaml, .yml or .json)")
    enabled = gc.isenabled()
    gc.disable()  # a million fresh containers would otherwise set off full collections again and again
    try:
        return topology_from_dict(_parse(source, suffix, raw), source=source)
    finally:
        if enabled:
            gc.enable()


def _parse(source: str, suffix: str, raw: bytes) -> Any:
    if suffix == ".json":
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise TopologyError(source, f"line {exc.lineno}, column {exc.colno}", exc.msg) from None
    try:
        return yaml.load(raw, Loader=yaml.CSafeLoader)  # the C *safe* loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = ": ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise TopologyError(source, where, reason) from None
    except yaml.YAMLError as exc:
        raise TopologyError(source, "", f"invalid YAML: {exc}") from None


def topology_from_dict(data: Mapping[str, Any], *, source: str = "<inline>") -> Topology:
    """Validate an already parsed document (see the module docstring). Raises ``TopologyError``."""
    return Topology(_Loader(source, data))


class _Loader:
    """One validation pass; customers go to ``packed`` (id → service row, tier, access in mixed radix)."""

    def __init__(self, source: str, data: Mapping[str, Any]) -> None:
        self.source, self.data = source, data
        if not isinstance(data, Mapping):
            self.fail("", f"the top level must be a mapping of {', '.join(_TOP_KEYS)}; got {type_name(data)}")
        for key in data:
            if key not in _TOP_KEYS:
                self.fail(str(key), unknown_field(known=_TOP_KEYS))
        given = {k: v for k, v in data.items() if k != "customers" and v is not None}
        try:
            doc = _DocModel.model_validate(given)
        except ValidationError as exc:
            self.invalid(exc)
        weights = DEFAULT_TIERS if doc.tiers is None else {n: t.weight for n, t in doc.tiers.items()}
        self.tiers = {n: Tier(n, float(w)) for n, w in weights.items()}
        self.index: dict[str, int] = {}
        for i, em in enumerate(doc.elements):
            if em.id in self.index:
                first = f"first at elements[{self.index[em.id]}]"
                self.fail(f"elements[{i}] ({em.id}).id", f"duplicate element id {em.id!r} ({first})")
            self.index[em.id] = i
        self.elements = {em.id: self.element(i, em) for i, em in enumerate(doc.elements)}
        self.services: dict[str, ServiceType] = {}
        for name, st in doc.service_types.items():
            for j, ne in enumerate(st.platform):
                if ne not in self.index:
                    self.fail(f"service_types.{name}.platform[{j}]", f"unknown element {ne!r}")
            self.services[name] = ServiceType(name, st.criticality, tuple(dict.fromkeys(st.platform)))
        self.order = self.topo_order()
        self.access_ids, self.tier_names = list(self.elements), tuple(self.tiers)
        self.tier_index = {t: i for i, t in enumerate(self.tier_names)}
        self.rows: list[tuple[str, ...]] = []
        self.row_index: dict[tuple[str, ...], int] = {}
        self.packed: dict[str, int] = {}
        self.names: dict[str, str] = {}
        self.customers(data.get("customers"))

    def fail(self, where: str, reason: str) -> NoReturn:
        raise TopologyError(self.source, where, reason)

    def invalid(self, exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> NoReturn:
        """The first pydantic error, as a ``TopologyError`` with a readable location."""
        model = _DocModel if not prefix else _CustomerModel
        loc, reason = first_problem(exc, model)
        raise TopologyError(self.source, _where(self.data, prefix + loc), reason) from None

    def element(self, i: int, em: _ElementModel) -> Element:
        seen: set[frozenset[str]] = set()
        for j, item in enumerate(em.depends_on):
            where = f"elements[{i}] ({em.id}).depends_on[{j}]"
            for k, upstream in enumerate(item):
                if upstream not in self.index:
                    self.fail(where + (f"[{k}]" if len(item) > 1 else ""), f"unknown element {upstream!r}")
            if frozenset(item) in seen:
                self.fail(where, "listed twice")
            seen.add(frozenset(item))
        labels = MappingProxyType(dict(em.labels)) if em.labels else _NO_LABELS
        return Element(em.id, em.type, em.site, em.region, tuple(em.depends_on), em.name, labels)

    def topo_order(self) -> tuple[str, ...]:
        """Depth-first post-order (upstreams first), iterative; a back edge is a cycle, shown as a path."""
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        order: list[str] = []
        flat = {
            ne: tuple(dict.fromkeys(u for it in e.depends_on for u in it)) for ne, e in self.elements.items()
        }
        for root in self.elements:
            if root in state:
                continue
            state[root] = 1
            stack = [(root, iter(flat[root]))]
            while stack:
                node, upstreams = stack[-1]
                for u in upstreams:
                    mark = state.get(u)
                    if mark is None:
                        state[u] = 1
                        stack.append((u, iter(flat[u])))
                        break
                    if mark == 1:
                        path = [n for n, _ in stack]
                        cycle = " -> ".join([*path[path.index(u) :], u])
                        self.fail(f"elements[{self.index[u]}] ({u}).depends_on", f"dependency cycle: {cycle}")
                else:
                    stack.pop()
                    state[node] = 2
                    order.append(node)
        return tuple(order)

    def customers(self, items: object) -> None:
        """A fast path for valid customers whose tier, access and services were all seen before."""
        if items is None:
            return
        if not isinstance(items, list):
            self.fail("customers", f"expected a list, got {type_name(items)}")
        n_el, n_tier, index, tier_index = (
            len(self.access_ids),
            len(self.tier_names),
            self.index,
            self.tier_index,
        )
        rows, packed, names = self.row_index, self.packed, self.names
        for i, c in enumerate(items):
            try:  # a lookup fails (KeyError, TypeError) on anything not already known to be valid
                cid, n, services = c["id"], len(c), c["services"]
                value = (rows[tuple(services)] * n_tier + tier_index[c["tier"]]) * n_el + index[c["access"]]
                fast = type(c) is dict and type(cid) is str and cid != "" and type(services) is list
                name = c["name"] if n == 5 else None
                fast = fast and (n == 4 or type(name) is str)
            except (KeyError, TypeError):
                fast = False
            if not fast:
                cid, value, name = self.customer(i, c)
            if cid in packed:
                first = f"first at customers[{list(packed).index(cid)}]"
                self.fail(f"customers[{i}] ({cid}).id", f"duplicate customer id {cid!r} ({first})")
            cid = "".join((cid, ""))  # a copy, so the parsed document's memory can all go back
            packed[cid] = value
            if name is not None:
                names[cid] = "".join((name, ""))

    def customer(self, i: int, c: object) -> tuple[str, int, str | None]:
        """Validate one customer fully (pydantic for the shape, then references); returns its packed row."""
        try:
            m = _CustomerModel.model_validate(c)
        except ValidationError as exc:
            self.invalid(exc, ("customers", i))
        where = f"customers[{i}] ({m.id})"
        t = self.tier_index.get(m.tier)
        if t is None:
            known = ", ".join(sorted(self.tier_index)) or "none"
            self.fail(f"{where}.tier", f"tier {m.tier!r} is not defined (known: {known})")
        a = self.index.get(m.access)
        if a is None:
            self.fail(f"{where}.access", f"unknown element {m.access!r}")
        row = self.row_index.get(tuple(m.services))
        if row is None:
            row = self.row_index[tuple(m.services)] = self.service_row(where, m.services)
        return m.id, (row * len(self.tier_names) + t) * len(self.access_ids) + a, m.name

    def service_row(self, where: str, services: list[Any]) -> int:
        if not services:
            self.fail(f"{where}.services", "must list at least one service type")
        for j, s in enumerate(services):
            if type(s) is not str:
                self.fail(f"{where}.services[{j}]", f"expected a string, got {type_name(s)}")
            if s not in self.services:
                known = ", ".join(sorted(self.services)) or "none"
                self.fail(f"{where}.services[{j}]", f"unknown service type {s!r} (known: {known})")
            if s in services[:j]:
                self.fail(f"{where}.services[{j}]", f"service type {s!r} listed twice")
        self.rows.append(tuple(services))
        return len(self.rows) - 1

    def groups(self) -> dict[str, tuple[CustomerGroup, ...]]:
        """Per access element (file order): one group per tier and service set, sorted by both."""
        n_el, n_tier, access, tiers = (
            len(self.access_ids),
            len(self.tier_names),
            self.access_ids,
            self.tier_names,
        )
        sets = [frozenset(r) for r in self.rows]
        ranked = sorted(set(sets), key=sorted)
        rank = [ranked.index(s) for s in sets]
        by_access: dict[int, dict[tuple[int, int], int]] = {}
        for p, n in Counter(self.packed.values()).items():
            rest, a = divmod(p, n_el)
            row, t = divmod(rest, n_tier)
            counts = by_access.setdefault(a, {})
            counts[t, rank[row]] = counts.get((t, rank[row]), 0) + n
        return {
            access[a]: tuple(
                CustomerGroup(access[a], tiers[t], ranked[s], n) for (t, s), n in sorted(counts.items())
            )
            for a, counts in sorted(by_access.items())
        }


class Topology:
    """The loaded inventory; read-only. Build it with ``load_topology`` or ``topology_from_dict``."""

    source: str
    tiers: Mapping[str, Tier]
    service_types: Mapping[str, ServiceType]
    elements: Mapping[str, Element]

    def __init__(self, loaded: _Loader) -> None:
        self.source = loaded.source
        self.tiers = MappingProxyType(loaded.tiers)
        self.service_types = MappingProxyType(loaded.services)
        self.elements = MappingProxyType(loaded.elements)
        self._order = loaded.order
        self._access_ids, self._tier_names, self._rows = loaded.access_ids, loaded.tier_names, loaded.rows
        self._packed, self._names = loaded.packed, loaded.names
        self._ancestors: dict[str, frozenset[str]] = {}
        self._descendants: dict[str, frozenset[str]] = {}
        self._descendants_size = 0
        self._position: dict[str, int] | None = None
        els = self.elements.values()
        self._dependents = _multimap((u, e.id) for e in els for item in e.depends_on for u in item)
        self._dependents_view = MappingProxyType(self._dependents)
        self._sites = _multimap((e.site, e.id) for e in els if e.site is not None)
        self._regions = _multimap((e.region, e.id) for e in els if e.region is not None)
        platform = _multimap((ne, st.name) for st in self.service_types.values() for ne in st.platform)
        self._platform = {ne: frozenset(names) for ne, names in platform.items()}
        self._platform_view = MappingProxyType(self._platform)
        self._groups_at = loaded.groups()
        self._groups = tuple(g for gs in self._groups_at.values() for g in gs)
        self._through: dict[str, frozenset[str]] | None = None

    def __contains__(self, ne_id: object) -> bool:
        return ne_id in self.elements

    def element(self, ne_id: str) -> Element:
        """The element; ``KeyError`` if unknown."""
        return self.elements[ne_id]

    def ancestors(self, ne_id: str) -> frozenset[str]:
        """Everything ``ne_id`` needs, directly or transitively, including every redundancy-group member."""
        cached = self._ancestors.get(ne_id)
        if cached is None:
            seen: set[str] = set()
            stack = [ne_id]
            while stack:
                new = {u for item in self.elements[stack.pop()].depends_on for u in item} - seen
                seen |= new
                stack.extend(new)
            cached = self._ancestors[ne_id] = frozenset(seen)
        return cached

    def dependents(self, ne_id: str) -> tuple[str, ...]:
        """Elements listing ``ne_id`` in ``depends_on`` (alone or in a group), sorted."""
        return self._dependents.get(ne_id, ())

    def dependents_index(self) -> Mapping[str, tuple[str, ...]]:
        """``dependents`` of every element that has any."""
        return self._dependents_view

    def descendants(self, ne_id: str) -> frozenset[str]:
        """Everything that depends on ``ne_id``, directly or transitively (cached, see
        ``DESCENDANTS_BUDGET``)."""
        cached = self._descendants.get(ne_id)
        if cached is not None:
            return cached
        seen: set[str] = set()
        frontier = [ne_id]
        while frontier:
            new = {d for ne in frontier for d in self._dependents.get(ne, ())} - seen
            seen |= new
            frontier = list(new)
        found = frozenset(seen)
        if self._descendants_size + len(found) <= DESCENDANTS_BUDGET:
            self._descendants[ne_id] = found
            self._descendants_size += len(found)
        return found

    def elements_at_site(self, site: str) -> tuple[str, ...]:
        return self._sites.get(site, ())

    def elements_in_region(self, region: str) -> tuple[str, ...]:
        return self._regions.get(region, ())

    def customer(self, customer_id: str) -> Customer:
        """The customer, rebuilt from the compact store; ``KeyError`` if unknown."""
        rest, a = divmod(self._packed[customer_id], len(self._access_ids))
        row, t = divmod(rest, len(self._tier_names))
        name = self._names.get(customer_id)
        return Customer(customer_id, self._tier_names[t], self._access_ids[a], self._rows[row], name)

    def has_customer(self, customer_id: str) -> bool:
        return customer_id in self._packed

    def customer_ids(self) -> Iterable[str]:
        """Every customer id, in load order."""
        return iter(self._packed)

    def customer_count(self) -> int:
        return len(self._packed)

    def groups_at(self, access: str) -> tuple[CustomerGroup, ...]:
        return self._groups_at.get(access, ())

    def all_groups(self) -> Sequence[CustomerGroup]:
        return self._groups

    def platform_services(self, ne_id: str) -> frozenset[str]:
        """Service types whose platform includes ``ne_id``."""
        return self._platform.get(ne_id, frozenset())

    def platform_elements(self) -> Mapping[str, frozenset[str]]:
        """Every platform element and the service types whose platform includes it."""
        return self._platform_view

    def topo_order(self) -> tuple[str, ...]:
        """Every element after everything it depends on."""
        return self._order

    def position(self) -> Mapping[str, int]:
        """Each element's index in ``topo_order`` (built on first use)."""
        if self._position is None:
            self._position = {ne: i for i, ne in enumerate(self._order)}
        return self._position

    def services_through(self, ne_id: str) -> frozenset[str]:
        """Service types whose paths cross ``ne_id``: it is on the service's platform or something the
        platform depends on, or customers of the service hang below it (their access or upstream)."""
        if self._through is None:
            through: dict[str, set[str]] = {}
            for st in self.service_types.values():
                for p in st.platform:
                    for x in (p, *self.ancestors(p)):
                        through.setdefault(x, set()).add(st.name)
            for access, groups in self._groups_at.items():
                carried = {s for g in groups for s in g.services}
                for x in (access, *self.ancestors(access)):
                    through.setdefault(x, set()).update(carried)
            self._through = {ne: frozenset(s) for ne, s in through.items()}
        return self._through.get(ne_id, frozenset())


def _multimap(pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """``(key, value)`` pairs → key → sorted distinct values."""
    out: dict[str, set[str]] = {}
    for key, value in pairs:
        out.setdefault(key, set()).add(value)
    return {key: tuple(sorted(values)) for key, values in out.items()}
