"""Topology and inventory: network elements and their dependencies, service types, tiers, customers.

Loaded from one YAML or JSON file (same schema), validated up front: every problem is a
``TopologyError`` naming the file, the item (``elements[4] (olt-7).depends_on[0][1]``) and the reason.

Customers come one by one (``customers``: a mapping each), in the compact form
(``customers_by_access``: one entry per access element, its groups as ``[tier, services, ids]``, the
services and ids separated by spaces) or in the earlier compact form (``customer_groups``: one entry
per access element, tier and service list, with the ids of its customers), or several of these; the
loaded topology is the same. A compact file in canonical order (what ``engine topology compact``
writes: access elements in file order, tiers in tier order, service sets sorted) gives its groups
directly, without counting the customers again.

``depends_on`` items are required upstreams; a list item is a redundancy group (any one member is
enough). Customers are held compactly (one dict entry each, no object) and aggregated into
``CustomerGroup`` s, one per access element, tier and service set: impact is computed over groups.
"""

from __future__ import annotations

import gc
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import add, attrgetter, lt, mul
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, NamedTuple, NoReturn, cast

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from engine.errors import TopologyError
from engine.model.twins import twin_of
from engine.model.wording import first_problem, type_name, unknown_field

DEFAULT_TIERS = MappingProxyType({"platinum": 8.0, "gold": 4.0, "silver": 2.0, "bronze": 1.0})
_BY_ACCESS = "customers_by_access"
_TOP_KEYS = ("customer_groups", "customers", _BY_ACCESS, "elements", "service_types", "tiers")
_CUSTOMER_KEYS = ("customer_groups", "customers", _BY_ACCESS)
_NO_LABELS: Mapping[str, str] = MappingProxyType({})
# Descendant sets are cached (the topology is static) up to this many members in all: a tree of 50,000
# elements needs a few hundred thousand; a 100,000-element chain would need five billion.
DESCENDANTS_BUDGET = 1_000_000
MAX_HOPS = 3
"""The farthest a ``neighbour`` may be (``Topology.neighbours``). Each hop multiplies a neighbourhood
by the branching: on the bench's generated 50,000-element network, within 2 hops an element has 39
neighbours at the median and 975 at most, within 3 hops 1,008 and 20,205 (on the PCIC microwave
networks, 0 and 7, then 1 and 19). A neighbour rule's symptom enters one correlation scope per
neighbour, so 4 hops would put most of a region in each."""
# Neighbour tuples are cached up to this many members in all (8 bytes each: 16 MB), then computed on
# demand: 2 hops of every element of the bench's network take 3.4 million, 3 hops 78 million.
NEIGHBOURS_BUDGET = 2_000_000


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


# ``CustomerGroup`` s are built by the hundred thousand at load: setting the slots directly costs about
# half the frozen dataclass's ``__init__`` (four ``object.__setattr__`` calls); same objects.
_new_object = object.__new__
_set_access, _set_tier, _set_services, _set_count = (
    CustomerGroup.__dict__[name].__set__ for name in ("access", "tier", "services", "count")
)


# ``Element`` s and ``CustomerGroup`` s are made by the hundred thousand at load, each through its twin
# (``engine.model.twins``): the same slots, not frozen, filled by plain attribute stores (CPython's
# specialised slot store, no call), then made the frozen class by ``__class__`` assignment. The same
# objects as the constructors make (``tests/test_topology.py`` compares them); callgrind, 100,000
# groups: 2,670 instructions each against 3,620 by four slot setters (``_make_group``) and 6,410 by the
# frozen ``__init__``. Every field must be stored: one left out is an ``AttributeError`` when read.
_ElementTwin = twin_of(Element)
_GroupTwin = twin_of(CustomerGroup)


def _make_group(access: str, tier: str, services: frozenset[str], count: int) -> CustomerGroup:
    g: CustomerGroup = _new_object(CustomerGroup)
    _set_access(g, access)
    _set_tier(g, tier)
    _set_services(g, services)
    _set_count(g, count)
    return g


_SINK: deque[object] = deque(maxlen=0)
_consume = _SINK.extend  # runs an iterator (of slot setters) to its end, keeping nothing
# ``customers_by_access`` as columns, one item per group: element, tier and row numbers, number of ids,
# then the ids (fresh strings or not), the names given and each entry's element and number of groups.
_ByAccess = tuple[
    list[int], list[int], list[int], list[int], list[Any], bool, list[tuple[str, str]], list[tuple[int, int]]
]
# The same from the one-pass path: each id's packed value, the ids (fresh), the names given, and the groups
# per element when in canonical order.
_ByAccessFast = tuple[
    list[int], list[str], list[tuple[str, str]], dict[str, tuple["CustomerGroup", ...]] | None
]


def _joined_ids(customers: list[Any], names: list[tuple[str, str]]) -> str | None:
    """A list of ids and ``[id, name]`` pairs as one string of ids separated by spaces, its names added to
    ``names``; ``None`` if it is empty or holds anything else (an id with a space, not a string)."""
    ids: list[str] = []
    for c in customers:
        cid = c
        if type(c) is list and len(c) == 2 and type(c[0]) is str and type(c[1]) is str:
            names.append((c[0], c[1]))
            cid = c[0]
        if type(cid) is not str or not cid or " " in cid:
            return None
        ids.append(cid)
    return " ".join(ids) if ids else None


# --- validation models (shape and types; references are checked afterwards) -----------------------


_ONLY_STR = frozenset({str})


def _dep_item(value: object) -> tuple[str, ...]:
    """A ``depends_on`` item: an element id, or a list of them (a redundancy group)."""
    if type(value) is str and value:  # the usual item, and a group of distinct ids: no generator
        return (value,)
    if (
        type(value) is list
        and value
        and set(map(type, value)) == _ONLY_STR
        and "" not in value
        and len(set(value)) == len(value)
    ):
        return tuple(value)
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


class _AccessEntryModel(_Model):
    access: str
    groups: Annotated[list[list[Any]], Field(min_length=1)]


class _CustomerGroupModel(_Model):
    access: str
    tier: str
    services: list[str]
    ids: Annotated[list[_Id], Field(min_length=1)]
    names: list[str | None] | None = None


# An element checked: id, type, site, region, depends_on, name, labels.
_PlainElement = tuple[
    str, str, str | None, str | None, tuple[tuple[str, ...], ...], str | None, Mapping[str, str] | None
]
_ELEMENT_KEYS = frozenset(_ElementModel.model_fields)


def _plain_elements(items: object) -> list[_PlainElement] | None:
    """The elements as ``_ElementModel`` would take them, checked without pydantic (a hundred thousand
    models are slow to build); ``None`` when anything is unusual, for pydantic to check and word."""
    if type(items) is not list:
        return None
    out: list[_PlainElement] = []
    add = out.append
    keys = _ELEMENT_KEYS
    try:
        for e in items:
            if type(e) is not dict or not keys.issuperset(e):
                return None
            ne_id, ne_type, site, region = e["id"], e["type"], e.get("site"), e.get("region")
            deps, name, labels = e.get("depends_on", ()), e.get("name"), e.get("labels")
            if type(ne_id) is not str or type(ne_type) is not str or not ne_id or not ne_type:
                return None
            if (site is not None and (type(site) is not str or not site)) or (
                region is not None and (type(region) is not str or not region)
            ):
                return None
            if (name is not None and type(name) is not str) or (type(deps) is not list and deps != ()):
                return None
            if labels is not None and (
                type(labels) is not dict
                or not all(type(k) is str and type(v) is str for k, v in labels.items())
            ):
                return None
            if labels is None and "labels" in e:
                return None
            add((ne_id, ne_type, site, region, tuple(map(_dep_item, deps)), name, labels))
    except (KeyError, ValueError):
        return None
    return out


def _as_plain(em: _ElementModel) -> _PlainElement:
    return (em.id, em.type, em.site, em.region, tuple(em.depends_on), em.name, em.labels)


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
            label = "access" if loc[0] in ("customer_groups", _BY_ACCESS) else "id"  # no id of its own
            ident = node.get(label) if depth == 1 and isinstance(node, dict) else None
            out += f"[{key}]" + (f" ({ident})" if isinstance(ident, str) and ident else "")
        else:
            out += f".{key}" if out else str(key)
            node = node.get(key) if isinstance(node, dict) else None
    return out


# --- loading ------------------------------------------------------------------------------------


def load_topology(path: str | Path) -> Topology:
    """Read and validate a ``.yaml``/``.yml``/``.json`` topology file. Raises ``TopologyError``."""
    with collector_paused():
        source, data, _ = read_topology_file(path)
        topology = topology_from_dict(data, source=source)
        del data  # before the collector is back: its next collection would walk the whole document
    return topology


class TopologyFile(NamedTuple):
    """A topology file read and parsed, not yet validated: its name, its document and its size in bytes."""

    source: str
    data: Any
    size: int


def read_topology_file(path: str | Path) -> TopologyFile:
    """Read and parse a ``.yaml``/``.yml``/``.json`` topology file (not validated: ``topology_from_dict``
    does that). A file that cannot be read, of another type or not well-formed is a ``TopologyError``
    (``file: line 3, column 7: reason``). The file's bytes are dropped before returning, so that only
    the document is alive while it is validated; call it inside ``collector_paused()`` for a big file,
    and drop the document once done with it (its memory is most of a load's peak)."""
    p = Path(path)
    source, suffix = str(p), p.suffix.lower()
    try:  # a missing file is named as missing, whatever its name ends with
        raw = p.read_bytes()
    except OSError as exc:
        raise TopologyError(source, "", f"cannot read file: {exc.strerror or exc}") from None
    if suffix not in (".yaml", ".yml", ".json"):
        raise TopologyError(source, "", f"unsupported file type {suffix!r} (use .yaml, .yml or .json)")
    size = len(raw)
    return TopologyFile(source, _parse(source, suffix, raw), size)


class collector_paused:  # (lower case: used as a function, ``with collector_paused():``)
    """The garbage collector off inside the block (as it was before, after): a million fresh containers
    would otherwise set off full collections again and again while a big topology is parsed and built.
    Its first collection once back walks every container made meanwhile and still alive: drop the
    document before the block ends. (A class: a generator's exit would make an exception object, and
    with it that collection, inside the block's last line.)"""

    def __enter__(self) -> None:
        self._enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._enabled:
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
        given = {k: v for k, v in data.items() if k not in _CUSTOMER_KEYS and v is not None}
        plain = _plain_elements(given.get("elements"))  # pydantic checks the rest (and these, if not)
        try:
            doc = _DocModel.model_validate({**given, "elements": []} if plain is not None else given)
        except ValidationError as exc:
            self.invalid(exc)
        elements = plain if plain is not None else [_as_plain(em) for em in doc.elements]
        weights = DEFAULT_TIERS if doc.tiers is None else {n: t.weight for n, t in doc.tiers.items()}
        self.tiers = {n: Tier(n, float(w)) for n, w in weights.items()}
        self.index: dict[str, int] = {}
        for i, em in enumerate(elements):
            if em[0] in self.index:
                first = f"first at elements[{self.index[em[0]]}]"
                self.fail(f"elements[{i}] ({em[0]}).id", f"duplicate element id {em[0]!r} ({first})")
            self.index[em[0]] = i
        self.upstreams_first = True  # every element's upstreams come before it in the file
        self.elements = self.made_elements(elements)
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
        self.row_sets: list[frozenset[str]] = []  # each row's services as a set (equal sets: one object)
        self.row_keys: list[tuple[str, ...]] = []  # each row's services sorted (the groups' order)
        self.sets: dict[frozenset[str], frozenset[str]] = {}
        self.packed: dict[str, int] = {}
        self.names: dict[str, str] = {}
        self.listed = 0  # customers from ``customers`` (they come first in ``packed``)
        self.direct: dict[str, tuple[CustomerGroup, ...]] | None = None  # from canonical customer_groups
        self.customers(data.get("customers"))
        self.customer_groups(data.get("customer_groups"))
        self.customers_by_access(data.get(_BY_ACCESS))

    def fail(self, where: str, reason: str) -> NoReturn:
        raise TopologyError(self.source, where, reason)

    def invalid(
        self, exc: ValidationError, prefix: tuple[str | int, ...] = (), model: type[BaseModel] = _DocModel
    ) -> NoReturn:
        """The first pydantic error, as a ``TopologyError`` with a readable location."""
        loc, reason = first_problem(exc, model)
        raise TopologyError(self.source, _where(self.data, prefix + loc), reason) from None

    def made_elements(self, elements: list[_PlainElement]) -> dict[str, Element]:
        """The ``Element`` s, each made as ``_ElementTwin`` says (as ``Element(...)``, without the frozen
        ``__init__``'s cost), its upstreams checked: when each is listed before it, nothing else to do."""
        made: dict[str, Any] = {}
        twin, element_type, no_labels = _ElementTwin, Element, _NO_LABELS
        flat, get = chain.from_iterable, self.index.get
        for i, (ne_id, ne_type, site, region, deps, name, labels) in enumerate(elements):
            if deps and (
                max(map(get, flat(deps), repeat(i))) >= i  # an upstream unknown or listed later
                or (len(deps) > 1 and len(set(map(frozenset, deps))) < len(deps))  # an item twice
            ):
                self.check_depends_on(i, ne_id, deps)  # an unknown or repeated upstream is an error
                self.upstreams_first = False  # and one listed later, a walk of the graph in ``topo_order``
            e = twin()
            e.id = ne_id
            e.type = ne_type
            e.site = site
            e.region = region
            e.depends_on = deps
            e.name = name
            e.labels = MappingProxyType(dict(labels)) if labels else no_labels
            e.__class__ = element_type
            made[ne_id] = e
        return made

    def check_depends_on(self, i: int, ne_id: str, deps: tuple[tuple[str, ...], ...]) -> None:
        """Name the first unknown upstream or repeated item of an element's ``depends_on``."""
        seen: set[frozenset[str]] = set()
        for j, item in enumerate(deps):
            where = f"elements[{i}] ({ne_id}).depends_on[{j}]"
            for k, upstream in enumerate(item):
                if upstream not in self.index:
                    self.fail(where + (f"[{k}]" if len(item) > 1 else ""), f"unknown element {upstream!r}")
            if frozenset(item) in seen:
                self.fail(where, "listed twice")
            seen.add(frozenset(item))

    def topo_order(self) -> tuple[str, ...]:
        """Depth-first post-order (upstreams first), iterative; a back edge is a cycle, shown as a path.
        When every element's upstreams come before it in the file, that order is the file's."""
        if self.upstreams_first:
            return tuple(self.elements)
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
        rows, names = self.row_index, self.names
        ids: list[str] = []
        values: list[int] = []
        add_id, add_value = ids.append, values.append
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
            add_id(cid)
            add_value(value)
            if name is not None:
                names["".join((cid, ""))] = "".join((name, ""))  # copies (see ``_insert``)
        if not self._insert(ids, values):  # a duplicate: the first one, and where it was first
            seen: dict[str, int] = {}
            for i, cid in enumerate(ids):
                if cid in seen:
                    first = f"first at customers[{seen[cid]}]"
                    self.fail(f"customers[{i}] ({cid}).id", f"duplicate customer id {cid!r} ({first})")
                seen[cid] = i
        self.listed = len(self.packed)

    def customer(self, i: int, c: object) -> tuple[str, int, str | None]:
        """Validate one customer fully (pydantic for the shape, then references); returns its packed row."""
        try:
            m = _CustomerModel.model_validate(c)
        except ValidationError as exc:
            self.invalid(exc, ("customers", i), _CustomerModel)
        row, t, a = self.references(f"customers[{i}] ({m.id})", m.tier, m.access, m.services)
        return m.id, (row * len(self.tier_names) + t) * len(self.access_ids) + a, m.name

    def references(self, where: str, tier: str, access: str, services: list[Any]) -> tuple[int, int, int]:
        """Tier, access element and service list checked: their row, tier and element numbers."""
        t = self.tier_index.get(tier)
        if t is None:
            known = ", ".join(sorted(self.tier_index)) or "none"
            self.fail(f"{where}.tier", f"tier {tier!r} is not defined (known: {known})")
        a = self.index.get(access)
        if a is None:
            self.fail(f"{where}.access", f"unknown element {access!r}")
        row = self.row_index.get(tuple(services))
        if row is None:
            row = self.row_index[tuple(services)] = self.service_row(where, services)
        return row, t, a

    def customer_groups(self, items: object) -> None:
        """The compact form: the same fast path per entry (a group of customers) as ``customers`` per
        customer; the ids are checked, copied and inserted together at the end (``_insert``)."""
        if items is None:
            return
        if not isinstance(items, list):
            self.fail("customer_groups", f"expected a list, got {type_name(items)}")
        n_el, n_tier, index, tier_index = (
            len(self.access_ids),
            len(self.tier_names),
            self.index,
            self.tier_index,
        )
        rows, access_ids, tier_names = self.row_index, self.access_ids, self.tier_names
        row_sets, row_keys = self.row_sets, self.row_keys
        id_lists: list[list[Any]] = []
        values: list[int] = []
        add_ids, add_value = id_lists.append, values.append
        new, group_type = _new_object, CustomerGroup
        set_access, set_tier, set_services, set_count = _set_access, _set_tier, _set_services, _set_count
        direct: dict[str, tuple[CustomerGroup, ...]] = {}
        here: list[CustomerGroup] = []  # the current access element's groups
        last_at = last_a = last_row = -1  # the previous entry's element and tier, element, row
        canonical = not self.packed  # customers listed one by one are counted; so are these, then
        for i, g in enumerate(items):
            try:  # as in ``customers``: a failed lookup means "not known to be valid"
                ids, services, n = g["ids"], g["services"], len(g)
                row, t, a = rows[tuple(services)], tier_index[g["tier"]], index[g["access"]]
                named = g["names"] if n == 5 else None
                fast = type(g) is dict and type(ids) is list and bool(ids) and type(services) is list
                fast = fast and (n == 4 or type(named) is list)
            except (KeyError, TypeError):
                fast = False
            if not fast:
                row, t, a, ids, named = self.customer_group(i, g)
            add_ids(ids)
            add_value((row * n_tier + t) * n_el + a)
            if named:
                self.group_names(i, g, ids, named)
            if canonical:  # (element, tier, sorted services) strictly increasing; the element and
                at = a * n_tier + t  # tier compared as one number, the services only when those are equal
                if at > last_at or (at == last_at and row_keys[row] > row_keys[last_row]):
                    if a != last_a and here:
                        direct[access_ids[last_a]] = tuple(here)
                        here = []
                    group = new(group_type)  # as ``_make_group``, inline
                    set_access(group, access_ids[a])
                    set_tier(group, tier_names[t])
                    set_services(group, row_sets[row])
                    set_count(group, len(ids))
                    here.append(group)
                    last_at, last_a, last_row = at, a, row
                else:
                    canonical = False
        if here:
            direct[access_ids[last_a]] = tuple(here)
        self.direct = direct if canonical else None
        flat = list(chain.from_iterable(id_lists))
        if not self._insert(flat, chain.from_iterable(map(repeat, values, map(len, id_lists)))):
            self.misplaced_id(items, id_lists)

    def _insert(self, ids: list[Any], values: Iterable[int], *, fresh: bool = False) -> bool:
        """Add ``ids`` with their values to ``packed``, copied (one join and one split: fresh strings
        side by side, so the parsed document's memory can all go back) unless ``fresh`` (made by the
        loader already). False when one is not a string, is empty or is there already (``packed`` is
        then unusable: the load fails)."""
        if fresh:
            copies = ids
        else:
            try:
                text = "\0".join(ids)
            except TypeError:  # not a string
                return False
            if text.count("\0") == len(ids) - 1:  # no id holds the separator
                copies = text.split("\0") if ids else []
            else:
                copies = ["".join((cid, "")) for cid in ids]
            del text
        size, packed = len(self.packed), self.packed
        if size:
            packed.update(zip(copies, values, strict=False))
        else:
            # A non-string key while it fills makes CPython keep each key's hash beside it in the table
            # (a dict of string keys only reads it from the string: a cache miss per collision and per
            # key when it grows): a million ids go in in 0.32 s instead of 0.46 (the bench's network).
            # The same dict after; it stays in that layout (8 bytes more an entry).
            mixed: dict[object, int] = packed  # type: ignore[assignment]
            mixed[None] = 0
            packed.update(zip(copies, values, strict=False))
            del mixed[None]
        return len(packed) == size + len(ids) and "" not in packed

    def misplaced_id(self, items: list[Any], id_lists: list[list[Any]]) -> NoReturn:
        """The first id of ``customer_groups`` that is not a non-empty string or was seen before."""
        listed = self.data.get("customers") or []
        seen = {c["id"]: f"customers[{k}]" for k, c in enumerate(listed)}
        for i, g in enumerate(items):
            self.check_ids(i, g, id_lists[i])
            for j, cid in enumerate(id_lists[i]):
                if cid in seen:
                    reason = f"duplicate customer id {cid!r} (first at {seen[cid]})"
                    self.fail(f"{self.group_where(i, g)}.ids[{j}]", reason)
                seen[cid] = f"customer_groups[{i}].ids[{j}]"
        raise AssertionError("a bad customer id was counted but not found")  # pragma: no cover

    def customers_by_access(self, items: object) -> None:
        """The compact form by access element (``customers_by_access``): one entry per access element,
        its groups as ``[tier, services, ids]``, services and ids as space-separated strings (or lists).
        Usual entries are taken in one pass (``_by_access_columns``); anything unusual is checked entry
        by entry (``_by_access_checked``), which names the first problem."""
        if items is None:
            return
        if type(items) is not list:
            self.fail(_BY_ACCESS, f"expected a list, got {type_name(items)}")
        canonical = not self.packed  # customers given in another section too are counted
        fast = self._by_access_columns(items)
        per_id: Iterable[int]
        if fast is not None:
            per_id, ids, names, direct = fast
            fresh = True
        else:
            access_of, tiers, rows, counts, ids, fresh, names, entries = self._by_access_checked(items)
            n_el, n_tier = len(self.access_ids), len(self.tier_names)
            values = list(
                map(add, map(mul, map(add, map(mul, rows, repeat(n_tier)), tiers), repeat(n_el)), access_of)
            )
            direct = None
            if canonical and self._ascending(access_of, tiers, rows):
                direct = self._direct_groups(access_of, tiers, rows, counts, entries)
            per_id = chain.from_iterable(map(repeat, values, counts))
        if not self._insert(ids, per_id, fresh=fresh):
            self.misplaced_by_access(items)
        for cid, name in names:
            self.names["".join((cid, ""))] = "".join((name, ""))
        self.direct = direct

    def _by_access_columns(self, items: list[Any]) -> _ByAccessFast | None:
        """The entries in one pass, when every entry is usual and valid: a mapping of ``access`` (a known
        element) and ``groups`` (lists of three: a known tier, known services separated by spaces, ids
        separated by spaces or a list of ids and ``[id, name]`` pairs without spaces); ``None``
        otherwise, with nothing kept but the service rows met (the checked path meets them in the same
        order). Each id's packed value (a list per group, ``[value] * n``: no ``repeat`` parsing its
        arguments); the ids split here (fresh strings), whether unique and not empty checked as they
        are inserted; and, while the groups come in canonical order
        (and no other section gave customers), their ``CustomerGroup`` s per element, else ``None``."""
        index, tier_index, access_ids, tier_names = (
            self.index,
            self.tier_index,
            self.access_ids,
            self.tier_names,
        )
        n_el, n_tier = len(access_ids), len(tier_names)
        known: dict[str, tuple[int, tuple[str, ...], frozenset[str]]] = {}  # services → row, sort key, set
        values: list[int] = []  # each id's packed value
        texts: list[str] = []  # each group's ids, separated by spaces
        names: list[tuple[str, str]] = []
        add_values, add_text = values.extend, texts.append
        canonical = not self.packed
        direct: dict[str, tuple[CustomerGroup, ...]] = {}
        twin, group_type = _GroupTwin, CustomerGroup
        last_at, last_key = -1, cast(tuple[str, ...], ())
        here: list[Any]
        try:
            for e in items:
                if type(e) is not dict or len(e) != 2:
                    return None
                a, gs = index[e["access"]], e["groups"]
                if type(gs) is not list or not gs:
                    return None
                ne, here, at_a = access_ids[a], [], a * n_tier
                for g in gs:
                    if type(g) is not list:
                        return None
                    tier, services, customers = g  # groups of other lengths: ValueError
                    t = tier_index[tier]
                    kind = known.get(services)
                    if kind is None:
                        kind = self.services_of(services)
                        if kind is None:
                            return None
                        known[services] = kind
                    row, key, service_set = kind
                    if type(customers) is not str:
                        customers = _joined_ids(customers, names) if type(customers) is list else None
                        if customers is None:
                            return None
                    n = customers.count(" ") + 1
                    add_text(customers)
                    add_values([(row * n_tier + t) * n_el + a] * n)
                    if canonical:  # (element, tier, sorted services) strictly increasing; the element and
                        at = at_a + t  # tier compared as one number, the services only when those are equal
                        if at > last_at or (at == last_at and key > last_key):
                            group = twin()  # a ``CustomerGroup`` (see ``_GroupTwin``)
                            group.access = ne
                            group.tier = tier_names[t]
                            group.services = service_set
                            group.count = n
                            group.__class__ = group_type
                            here.append(group)
                            last_at, last_key = at, key
                        else:
                            canonical = False
                if canonical:  # an element's entries are consecutive (canonical order)
                    direct[ne] = direct[ne] + tuple(here) if ne in direct else tuple(here)
        except (KeyError, TypeError, ValueError):
            return None
        ids = " ".join(texts).split(" ") if texts else []
        return values, ids, names, direct if canonical else None

    def services_of(self, services: object) -> tuple[int, tuple[str, ...], frozenset[str]] | None:
        """A group's services (usual: known, each once, separated by spaces): its row, sort key and set."""
        if type(services) is not str:
            return None
        parts = services.split(" ")
        if not self.usual_services(parts):
            return None
        row = self.service_row_of(services, parts)
        return row, self.row_keys[row], self.row_sets[row]

    def usual_services(self, parts: list[str]) -> bool:
        known = self.services
        return all(s in known for s in parts) and len(set(parts)) == len(parts)

    def service_row_of(self, where: str, services: list[str]) -> int:
        row = self.row_index.get(tuple(services))
        if row is None:
            row = self.row_index[tuple(services)] = self.service_row(where, services)
        return row

    def _by_access_checked(self, items: list[Any]) -> _ByAccess:
        """The entries checked one by one (a problem is a ``TopologyError`` naming it), as columns."""
        access_of: list[int] = []
        tiers: list[int] = []
        rows: list[int] = []
        counts: list[int] = []
        ids: list[Any] = []
        names: list[tuple[str, str]] = []
        entries: list[tuple[int, int]] = []
        for i, e in enumerate(items):
            try:
                m = _AccessEntryModel.model_validate(e)
            except ValidationError as exc:
                self.invalid(exc, (_BY_ACCESS, i), _AccessEntryModel)
            where = f"{_BY_ACCESS}[{i}] ({m.access})"
            a = self.index.get(m.access)
            if a is None:
                self.fail(f"{where}.access", f"unknown element {m.access!r}")
            for j, g in enumerate(m.groups):
                at = f"{where}.groups[{j}]"
                if len(g) != 3:
                    self.fail(at, f"expected [tier, services, ids], got a list of {len(g)}")
                tier, services, customers = g
                if type(tier) is not str:
                    self.fail(f"{at}.tier", f"expected a string, got {type_name(tier)}")
                if type(services) is str:
                    services = services.split(" ")
                elif type(services) is list:
                    for k, s in enumerate(services):
                        if type(s) is not str:
                            self.fail(f"{at}.services[{k}]", f"expected a string, got {type_name(s)}")
                else:
                    self.fail(f"{at}.services", f"expected a string or a list, got {type_name(services)}")
                row, t, _ = self.references(at, tier, m.access, services)
                group_ids = self.checked_ids(f"{at}.ids", customers, names)
                access_of.append(a)
                tiers.append(t)
                rows.append(row)
                counts.append(len(group_ids))
                ids += group_ids
            entries.append((a, len(m.groups)))
        return access_of, tiers, rows, counts, ids, False, names, entries

    def checked_ids(self, where: str, customers: object, names: list[tuple[str, str]]) -> list[str]:
        """A group's ids: a string of ids separated by single spaces, or a list of ids and
        ``[id, name]`` pairs; its names are added to ``names``."""
        if type(customers) is str:
            found = customers.split(" ")
        elif type(customers) is list:
            if not customers:
                self.fail(where, "must not be empty")
            found = []
            for k, c in enumerate(customers):
                if type(c) is list and len(c) == 2 and type(c[0]) is str and type(c[1]) is str:
                    names.append((c[0], c[1]))
                    found.append(c[0])
                elif type(c) is str:
                    found.append(c)
                else:
                    self.fail(f"{where}[{k}]", f"expected an id or [id, name], got {type_name(c)}")
        else:
            self.fail(where, f"expected a string or a list, got {type_name(customers)}")
        for k, cid in enumerate(found):
            if not cid:
                self.fail(f"{where}[{k}]", "must not be empty")
        return found

    def misplaced_by_access(self, items: list[Any]) -> NoReturn:
        """The first id of ``customers_by_access`` that is empty or was seen before (the entries are
        valid otherwise: checked already)."""
        seen = {c["id"]: f"customers[{k}]" for k, c in enumerate(self.data.get("customers") or [])}
        for i, g in enumerate(self.data.get("customer_groups") or []):
            for j, cid in enumerate(g["ids"]):
                seen[cid] = f"customer_groups[{i}].ids[{j}]"
        for i, e in enumerate(items):
            for j, g in enumerate(e["groups"]):
                where = f"{_BY_ACCESS}[{i}] ({e['access']}).groups[{j}].ids"
                for k, cid in enumerate(self.checked_ids(where, g[2], [])):
                    if cid in seen:
                        self.fail(f"{where}[{k}]", f"duplicate customer id {cid!r} (first at {seen[cid]})")
                    seen[cid] = f"{_BY_ACCESS}[{i}].groups[{j}].ids[{k}]"
        raise AssertionError("a bad customer id was counted but not found")  # pragma: no cover

    def _ascending(self, access_of: list[int], tiers: list[int], rows: list[int]) -> bool:
        """The groups in canonical order: (element, tier, sorted services) strictly increasing."""
        ranked = sorted(set(self.row_keys))
        rank = [ranked.index(k) for k in self.row_keys]
        n_tier, n_rank = len(self.tier_names), len(ranked)
        keys = list(
            map(
                add,
                map(mul, map(add, map(mul, access_of, repeat(n_tier)), tiers), repeat(n_rank)),
                map(rank.__getitem__, rows),
            )
        )
        return all(map(lt, keys, keys[1:]))

    def _direct_groups(
        self,
        access_of: list[int],
        tiers: list[int],
        rows: list[int],
        counts: list[int],
        entries: list[tuple[int, int]],
    ) -> dict[str, tuple[CustomerGroup, ...]]:
        """One ``CustomerGroup`` per group of a canonical file, made and filled column by column."""
        groups: list[CustomerGroup] = list(map(_new_object, repeat(CustomerGroup, len(counts))))
        access_ids, tier_names, row_sets = self.access_ids, self.tier_names, self.row_sets
        _consume(map(_set_access, groups, map(access_ids.__getitem__, access_of)))
        _consume(map(_set_tier, groups, map(tier_names.__getitem__, tiers)))
        _consume(map(_set_services, groups, map(row_sets.__getitem__, rows)))
        _consume(map(_set_count, groups, counts))
        direct: dict[str, tuple[CustomerGroup, ...]] = {}
        start = 0
        for a, n in entries:  # an element's entries are consecutive (canonical order)
            ne = access_ids[a]
            here = tuple(groups[start : start + n])
            direct[ne] = direct[ne] + here if ne in direct else here
            start += n
        return direct

    def customer_group(self, i: int, g: object) -> tuple[int, int, int, list[str], list[str | None] | None]:
        """Validate one entry of ``customer_groups`` fully: its row, tier, element, ids and names."""
        try:
            m = _CustomerGroupModel.model_validate(g)
        except ValidationError as exc:
            self.invalid(exc, ("customer_groups", i), _CustomerGroupModel)
        row, t, a = self.references(f"customer_groups[{i}] ({m.access})", m.tier, m.access, m.services)
        return row, t, a, m.ids, m.names

    def group_where(self, i: int, g: Any) -> str:
        return f"customer_groups[{i}] ({g['access']})"

    def check_ids(self, i: int, g: Any, ids: list[Any]) -> None:
        """Worded as pydantic words the same mistakes (``_CustomerGroupModel``)."""
        for j, cid in enumerate(ids):
            if type(cid) is not str:
                self.fail(f"{self.group_where(i, g)}.ids[{j}]", f"expected a string, got {type_name(cid)}")
            if not cid:
                self.fail(f"{self.group_where(i, g)}.ids[{j}]", "must not be empty")

    def group_names(self, i: int, g: Any, ids: list[str], named: list[Any]) -> None:
        """``names``: one per id, in the same order, ``null`` for a customer without one. (A mapping
        id → name would make every id a JSON key, and orjson's cache of recent keys would keep some of
        them, scattered over the parsed document's memory, which could then not go back.)"""
        self.check_ids(i, g, ids)
        where = f"{self.group_where(i, g)}.names"
        if len(named) != len(ids):
            self.fail(where, f"must have one entry per id ({len(ids)}), got {len(named)}")
        names = self.names
        for j, (cid, name) in enumerate(zip(ids, named, strict=True)):
            if name is not None:
                if type(name) is not str:
                    self.fail(f"{where}[{j}]", f"expected a string or null, got {type_name(name)}")
                names["".join((cid, ""))] = "".join((name, ""))

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
        as_set = frozenset(services)
        self.row_sets.append(self.sets.setdefault(as_set, as_set))
        self.row_keys.append(tuple(sorted(services)))
        return len(self.rows) - 1

    def groups(self) -> dict[str, tuple[CustomerGroup, ...]]:
        """Per access element (file order): one group per tier and service set, sorted by both."""
        if self.direct is not None:
            return self.direct
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
                _make_group(access[a], tiers[t], ranked[s], n) for (t, s), n in sorted(counts.items())
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
        self._neighbours: dict[tuple[str, int], tuple[str, ...]] = {}
        self._neighbours_size = 0
        self._position: dict[str, int] | None = None
        self._dependents, self._sites, self._regions = _graph_indices(loaded.elements)
        self._dependents_view = MappingProxyType(self._dependents)
        platform = _multimap((ne, st.name) for st in self.service_types.values() for ne in st.platform)
        self._platform = {ne: frozenset(names) for ne, names in platform.items()}
        self._platform_view = MappingProxyType(self._platform)
        self._groups_at = loaded.groups()
        self._groups = tuple(chain.from_iterable(self._groups_at.values()))
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

    def neighbours(self, ne_id: str, hops: int) -> tuple[str, ...]:
        """Elements within ``hops`` links of ``ne_id`` in any direction (``depends_on``, every member
        of a redundancy group, and dependents) that are neither ``ne_id`` nor above it (its
        ``ancestors``) nor below it (its ``descendants``): a sibling, a cousin, a neighbour's
        upstream. The ``neighbour`` relation of correlate rules, and of the miner
        (``engine.tools.mining.stats``). Sorted; cached up to ``NEIGHBOURS_BUDGET`` members in all."""
        if not 1 <= hops <= MAX_HOPS:
            raise ValueError(f"hops must be within 1..{MAX_HOPS}, got {hops}")
        k = (ne_id, hops)
        cached = self._neighbours.get(k)
        if cached is not None:
            return cached
        above = self.ancestors(ne_id)
        # below ``ne_id`` means ``ne_id`` is among its ancestors (no descendant set is built)
        found = tuple(
            sorted(
                y
                for y in self.within(ne_id, hops)
                if y != ne_id and y not in above and ne_id not in self.ancestors(y)
            )
        )
        if self._neighbours_size + len(found) <= NEIGHBOURS_BUDGET:
            self._neighbours[k] = found
            self._neighbours_size += len(found)
        return found

    def within(self, ne_id: str, hops: int) -> set[str]:
        """``ne_id`` and every element at most ``hops`` links from it in any direction
        (``depends_on``, every member of a redundancy group, and dependents), whatever their
        relation to it (``neighbours`` keeps those neither above nor below). Not cached."""
        seen = {ne_id}
        frontier = [ne_id]
        for _ in range(hops):
            nxt: list[str] = []
            for x in frontier:
                for item in self.elements[x].depends_on:
                    nxt.extend(u for u in item if u not in seen)
                    seen.update(item)
                for d in self._dependents.get(x, ()):
                    if d not in seen:
                        seen.add(d)
                        nxt.append(d)
            frontier = nxt
        return seen

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

    def compact_customers(self) -> list[dict[str, Any]]:
        """The topology's customers in the compact form (``customer_groups``), in canonical order: access
        elements in file order, tiers in tier order, service sets sorted, ids in load order. Loading the
        result gives the same customers and groups, the groups without counting the customers again."""
        access_ids, tier_names, rows, names = (
            self._access_ids,
            self._tier_names,
            self._rows,
            self._names,
        )
        n_el, n_tier = len(access_ids), len(tier_names)
        by_value: dict[int, list[str]] = {}
        for cid, value in self._packed.items():
            ids = by_value.get(value)
            if ids is None:
                by_value[value] = [cid]
            else:
                ids.append(cid)
        keys = [tuple(sorted(r)) for r in rows]
        decoded = []
        for value, ids in by_value.items():
            rest, a = divmod(value, n_el)
            row, t = divmod(rest, n_tier)
            decoded.append((a, t, keys[row], row, ids))
        decoded.sort(key=lambda d: d[:4])
        out: list[dict[str, Any]] = []
        for a, t, _, row, ids in decoded:
            entry: dict[str, Any] = {
                "access": access_ids[a],
                "tier": tier_names[t],
                "services": list(rows[row]),
                "ids": ids,
            }
            if any(cid in names for cid in ids):
                entry["names"] = [names.get(cid) for cid in ids]
            out.append(entry)
        return out

    def customers_by_access(self) -> list[dict[str, Any]]:
        """The topology's customers in the compact form by access element (``customers_by_access``), in
        canonical order (as ``compact_customers``): one entry per access element, its groups as
        ``[tier, services, ids]``, the services and the ids separated by single spaces (a list where
        a name or an id holds a space; a group with names lists its ids, a named one as ``[id, name]``)."""
        out: list[dict[str, Any]] = []
        for g in self.compact_customers():
            services: str | list[str] = g["services"]
            if not any(" " in s for s in services):
                services = " ".join(services)
            ids: list[str] = g["ids"]
            named: list[str | None] | None = g.get("names")
            customers: str | list[Any]
            if named is not None:
                customers = [
                    cid if name is None else [cid, name] for cid, name in zip(ids, named, strict=True)
                ]
            elif any(" " in cid for cid in ids):
                customers = ids
            else:
                customers = " ".join(ids)
            group = [g["tier"], services, customers]
            if out and out[-1]["access"] == g["access"]:
                out[-1]["groups"].append(group)
            else:
                out.append({"access": g["access"], "groups": [group]})
        return out

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


_depends_on, _site, _region = attrgetter("depends_on"), attrgetter("site"), attrgetter("region")
_Index = dict[str, tuple[str, ...]]


def _graph_indices(elements: Mapping[str, Element]) -> tuple[_Index, _Index, _Index]:
    """Each element's dependents, each site's and each region's elements: sorted distinct ids, keys in
    the order of their first mention in the file (as ``_multimap`` gives them). The elements are walked
    in sorted id order, so that each list comes out sorted, with no sort (or set) per key."""
    dependents: dict[str, list[str]] = {}
    sites: dict[str, list[str]] = {}
    regions: dict[str, list[str]] = {}
    for ne in sorted(elements):
        e = elements[ne]
        for item in e.depends_on:
            for u in item:
                found = dependents.get(u)
                if found is None:
                    dependents[u] = [ne]
                elif found[-1] is not ne:  # (an upstream in two items of one element: once)
                    found.append(ne)
        if (site := e.site) is not None:
            found = sites.get(site)
            if found is None:
                sites[site] = [ne]
            else:
                found.append(ne)
        if (region := e.region) is not None:
            found = regions.get(region)
            if found is None:
                regions[region] = [ne]
            else:
                found.append(ne)
    els = elements.values()
    first = (
        dict.fromkeys(chain.from_iterable(chain.from_iterable(map(_depends_on, els)))),
        dict.fromkeys(map(_site, els)),
        dict.fromkeys(map(_region, els)),
    )
    return tuple(  # type: ignore[return-value]
        {key: tuple(made[key]) for key in order if key is not None}
        for order, made in zip(first, (dependents, sites, regions), strict=True)
    )


def _multimap(pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """``(key, value)`` pairs → key → sorted distinct values."""
    out: dict[str, set[str]] = {}
    for key, value in pairs:
        out.setdefault(key, set()).add(value)
    return {key: tuple(sorted(values)) for key, values in out.items()}
