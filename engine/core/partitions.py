"""Correlation domains and the partition table: which engine partition sees which element (pure).

Theory of operation
-------------------
Scale-out splits the network, not the messages: every alarm and sample about one element must reach
the same core, and so must those of every element its correlation may join. The topology is cut
into **correlation domains** below the core/platform layer:

1. **Global elements** are those whose failure concerns a large share of the network: an element
   with more than ``global_share`` of all customers at or below it (of all elements, when the
   topology has no customers), every
   platform element of a service type and everything a platform element needs, and any element the
   operator names. Ancestors of a global element are global (their cone is larger). They all go to
   the one ``global`` partition.
2. The other elements are joined (union-find) with every non-global element they depend on (required
   or a member of a redundancy group, so a group and what it feeds stay together) and with every
   non-global element of the same site (a site's power feeds the site: a mains failure and the
   alarms it explains stay together). Each connected set is a domain, named by its smallest id.
3. Domains go to ``count`` partitions ``p0`` … ``p{count-1}`` by an explicit table, balanced by
   customers (largest domain first onto the least loaded partition; ties by elements, then name).

Everything is deterministic: the same topology and settings give the same table, byte for byte, on
every engine (``PartitionTable.digest``). The table is data: an operator may move a domain to another
partition, and the cluster keeps the table it was started with (``engine cluster status`` shows it).

``route(table, payload)`` is the stateless router's decision: the partition(s) of one inbound
message, by its element (``ne_id``, TMF642 ``alarmedObject.id``, a sample's ``target``); a batch of
samples is split by partition; anything that names no known element goes to ``global``, whose core
then rejects it with the usual dead-letter reason. ``route_all`` adds a copy of every alarm about a
global element for each domain partition below it.

Across partitions, ``CoreIncidents`` is the global partition's merge of the parts the domain
partitions send it (``contribution``) into its own incidents (see its docstring).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from engine.errors import EngineError
from engine.model.timeutil import format_time
from engine.model.topology import Topology

GLOBAL = "global"
TABLE_FORMAT = 1


class PartitionError(EngineError):
    """A partition table that cannot be used (bad count, unknown domain, table of another topology)."""


def partition_names(count: int) -> tuple[str, ...]:
    """The domain partitions' names: ``p0`` … ``p{count-1}`` (the ``global`` partition comes on top)."""
    return tuple(f"p{i}" for i in range(count))


@dataclass(frozen=True, slots=True)
class Domain:
    id: str  # the smallest element id in the domain
    elements: tuple[str, ...]  # sorted
    customers: int
    above: tuple[str, ...] = ()  # the global elements its elements depend on, sorted


@dataclass(frozen=True, slots=True)
class Domains:
    """The topology cut into correlation domains, plus the global elements above them."""

    global_elements: tuple[str, ...]  # sorted
    domains: tuple[Domain, ...]  # by id

    def domain_of(self) -> dict[str, str]:
        return {ne: d.id for d in self.domains for ne in d.elements}


class _UnionFind:
    def __init__(self, items: Iterable[str]) -> None:
        self.parent = {x: x for x in items}

    def find(self, x: str) -> str:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # the smaller id becomes the root: deterministic whatever the order of unions
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self.parent[hi] = lo


def correlation_domains(
    topology: Topology, *, global_share: float = 0.05, global_elements: Iterable[str] = ()
) -> Domains:
    """Cut ``topology`` into correlation domains below its global (core and platform) elements."""
    if not 0.0 < global_share <= 1.0:
        raise PartitionError(f"global_share must be in (0, 1], got {global_share}")
    named = set(global_elements)
    unknown = sorted(named - set(topology.elements))
    if unknown:
        raise PartitionError(f"global_elements: unknown element(s) {', '.join(unknown)}")
    own_customers = {access: sum(g.count for g in topology.groups_at(access)) for access in topology.elements}
    customers_below = dict(own_customers)
    elements_below = dict.fromkeys(topology.elements, 1)
    for ne in topology.elements:
        for up in topology.ancestors(ne):
            customers_below[up] += own_customers[ne]
            elements_below[up] += 1
    total_customers = sum(own_customers.values())
    total_elements = len(topology.elements)
    glob: set[str] = set(named)
    for ne in topology.elements:
        if total_customers:  # by customers; a topology without customers: by elements
            large = customers_below[ne] > global_share * total_customers
        else:
            large = elements_below[ne] > max(1.0, global_share * total_elements)
        if large:
            glob.add(ne)
        if topology.platform_services(ne):
            glob.add(ne)
    for ne in list(glob):
        glob.update(topology.ancestors(ne))
    local = sorted(ne for ne in topology.elements if ne not in glob)
    uf = _UnionFind(local)
    by_site: dict[str, str] = {}
    for ne in local:
        el = topology.element(ne)
        for item in el.depends_on:
            for up in item:
                if up not in glob:
                    uf.union(ne, up)
        if el.site is not None:
            first = by_site.setdefault(el.site, ne)
            uf.union(first, ne)
    members: dict[str, list[str]] = {}
    for ne in local:
        members.setdefault(uf.find(ne), []).append(ne)
    domains = tuple(
        Domain(
            id=root,
            elements=tuple(els),
            customers=sum(own_customers[e] for e in els),
            above=tuple(sorted({up for e in els for up in topology.ancestors(e) if up in glob})),
        )
        for root, els in sorted(members.items())
    )
    return Domains(global_elements=tuple(sorted(glob)), domains=domains)


@dataclass(frozen=True)
class PartitionTable:
    """Domains → partitions, and from it element → partition. Build with ``partition_table``."""

    count: int
    assignment: Mapping[str, str]  # domain id -> partition name
    domains: Domains

    def __post_init__(self) -> None:
        names = set(partition_names(self.count))
        known = {d.id for d in self.domains.domains}
        for domain, part in self.assignment.items():
            if domain not in known:
                raise PartitionError(f"partition table names unknown domain {domain!r}")
            if part not in names:
                raise PartitionError(f"domain {domain!r} is assigned to unknown partition {part!r}")
        missing = sorted(known - set(self.assignment))
        if missing:
            raise PartitionError(f"partition table lacks domain(s) {', '.join(missing[:5])}")
        by_element = dict.fromkeys(self.domains.global_elements, GLOBAL)
        for d in self.domains.domains:
            for ne in d.elements:
                by_element[ne] = self.assignment[d.id]
        object.__setattr__(self, "_by_element", by_element)
        below: dict[str, set[str]] = {}
        for d in self.domains.domains:
            for up in d.above:
                below.setdefault(up, set()).add(self.assignment[d.id])
        object.__setattr__(self, "_below", {g: tuple(sorted(ps)) for g, ps in below.items()})

    @property
    def partitions(self) -> tuple[str, ...]:
        """Every partition: the domain partitions, then ``global``."""
        return (*partition_names(self.count), GLOBAL)

    def partition_of(self, ne_id: str) -> str:
        """The partition of an element; ``global`` for an element the topology lacks."""
        by_element: dict[str, str] = getattr(self, "_by_element")  # noqa: B009
        return by_element.get(ne_id, GLOBAL)

    def below(self, ne_id: str) -> tuple[str, ...]:
        """The domain partitions holding an element that depends on global element ``ne_id``."""
        below: dict[str, tuple[str, ...]] = getattr(self, "_below")  # noqa: B009
        return below.get(ne_id, ())

    def load(self) -> dict[str, dict[str, int]]:
        """Per partition: domains, elements and customers it holds."""
        out = {p: {"domains": 0, "elements": 0, "customers": 0} for p in self.partitions}
        out[GLOBAL]["elements"] = len(self.domains.global_elements)
        for d in self.domains.domains:
            row = out[self.assignment[d.id]]
            row["domains"] += 1
            row["elements"] += len(d.elements)
            row["customers"] += d.customers
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "partitions": self.count,
            "global": list(self.domains.global_elements),
            "assignment": dict(sorted(self.assignment.items())),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json()).hexdigest()[:16]

    @classmethod
    def from_json(cls, raw: bytes, domains: Domains) -> PartitionTable:
        """A stored table applied to this topology's domains: refuses a table of another topology."""
        try:
            data = orjson.loads(raw)
            count, assignment, glob = data["partitions"], data["assignment"], data["global"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise PartitionError(f"stored partition table is not readable: {exc}") from None
        if data.get("format") != TABLE_FORMAT:
            raise PartitionError(
                f"stored partition table format {data.get('format')!r} is not {TABLE_FORMAT}"
            )
        if tuple(glob) != domains.global_elements:
            raise PartitionError("stored partition table has other global elements than this topology")
        if not isinstance(count, int) or count < 1:
            raise PartitionError(f"stored partition table has a bad partition count {count!r}")
        return cls(count=count, assignment=dict(assignment), domains=domains)


def partition_table(domains: Domains, count: int) -> PartitionTable:
    """Assign domains to ``count`` partitions, balanced by customers (then elements)."""
    if not 1 <= count <= 1024:
        raise PartitionError(f"partition count must be 1..1024, got {count}")
    names = partition_names(count)
    load = dict.fromkeys(names, (0, 0))
    assignment: dict[str, str] = {}
    order = sorted(domains.domains, key=lambda d: (-d.customers, -len(d.elements), d.id))
    for d in order:
        target = min(names, key=lambda p: (load[p], int(p[1:])))
        assignment[d.id] = target
        c, e = load[target]
        load[target] = (c + d.customers, e + len(d.elements))
    return PartitionTable(count=count, assignment=assignment, domains=domains)


def _element_of(item: Mapping[str, Any]) -> object:
    ne = item.get("ne_id")
    if ne is None and isinstance(obj := item.get("alarmedObject"), Mapping):
        ne = obj.get("id")
    if ne is None:
        ne = item.get("target")
    return ne


def route(table: PartitionTable, payload: bytes) -> list[tuple[str, bytes]]:
    """The partition(s) one inbound message goes to, with the payload each gets.

    A single alarm or sample goes whole to its element's partition. A batch ``{"samples": [...]}``
    is split by partition (each part keeps the order of its samples). Malformed JSON, a payload
    naming no known element, or anything else the router cannot place goes whole to ``global``.
    (``route_all`` adds the copies of alarms about global elements.)"""
    return [(p, part) for p, part, copy in route_all(table, payload) if not copy]


def route_all(table: PartitionTable, payload: bytes) -> list[tuple[str, bytes, bool]]:
    """``route``, plus the copies of an alarm about a global element: one for every domain
    partition below that element (``copy`` True), so that their cores see the health of the
    core and platform elements above them and correlate their own alarms under it."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return [(GLOBAL, payload, False)]
    if not isinstance(data, dict):
        return [(GLOBAL, payload, False)]
    samples = data.get("samples")
    if isinstance(samples, list) and len(data) == 1:
        parts: dict[str, list[Any]] = {}
        for s in samples:
            ne = _element_of(s) if isinstance(s, dict) else None
            part = table.partition_of(ne) if isinstance(ne, str) else GLOBAL
            parts.setdefault(part, []).append(s)
        if len(parts) <= 1:
            return [(next(iter(parts), GLOBAL), payload, False)]
        return [(p, orjson.dumps({"samples": items}), False) for p, items in parts.items()]
    ne = _element_of(data)
    if not isinstance(ne, str):
        return [(GLOBAL, payload, False)]
    home = table.partition_of(ne)
    out = [(home, payload, False)]
    if home == GLOBAL and "target" not in data:  # an alarm (not a sample) about a global element
        out += [(p, payload, True) for p in table.below(ne)]
    return out


# -- across partitions ------------------------------------------------------------------------------
RESOLVED_KEPT = 3600.0  # seconds a resolved core incident still ignores late contributions
PENDING_KEPT = 3600.0  # seconds contributions wait for a core incident that never comes


def contributes(table: PartitionTable, partition: str, record: Mapping[str, Any]) -> bool:
    """True when a domain partition's incident record belongs to the global partition's incident:
    its root is an alarm about a global element (a copy the router sent down), so the partition
    hands its part (alarms and why) to the global partition instead of publishing it."""
    if partition == GLOBAL:
        return False
    root = record.get("root_cause") or {}
    ne = root.get("ne_id")
    return isinstance(ne, str) and ne in table.domains.global_elements


def contribution(partition: str, seq: int, index: int, record: Mapping[str, Any]) -> dict[str, Any]:
    """The summary a domain partition sends the global partition for ``record`` (input ``seq``)."""
    return {
        "incident_id": record["incident_id"],
        "partition": partition,
        "seq": seq,
        "index": index,
        "event": record["event"],
        "alarms": list(record["alarms"]),
        "suppressed": list(record["suppressed"]),
    }


class CoreIncidents:
    """The global partition's incidents with the domain partitions' parts in them (pure).

    The global partition's core opens an incident for a core or platform root with the impact of
    everything below it (every engine holds the whole topology). The domain partitions below see
    a copy of that root alarm, so their cores correlate their own alarms under it; their records of
    that incident are not published but sent here as contributions (``contribution``), in the
    global partition's stream, so a replay merges exactly as the owner did. Each core record of the
    global partition goes out with the contributed alarms and suppressions added (and the count per
    partition in ``partitions``); a contribution that changes an open incident's alarms publishes
    an ``updated`` version. Versions are counted here, so they stay consecutive. When a core
    incident is resolved as merged into another, its parts move along into that one (alarms and
    suppressions joined per partition), as do contributions to it that arrive later.
    State: ``dump``/``load``, saved with the partition's snapshot."""

    def __init__(self) -> None:
        self._core: dict[str, dict[str, Any]] = {}  # incident -> its latest core record (unresolved)
        self._parts: dict[str, dict[str, dict[str, Any]]] = {}  # incident -> partition -> contribution
        self._versions: dict[str, int] = {}  # incident -> last version published
        self._since: dict[str, float] = {}  # incident -> when contributions first came (no core record)
        self._done: dict[str, float] = {}  # resolved incident -> when
        self._merged_into: dict[str, str] = {}  # resolved as merged -> the incident it went into

    def core_records(self, records: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """The global core's records, each with the contributions to its incident merged in."""
        out = []
        for rec in records:
            inc = rec["incident_id"]
            # never below the core's own version (a snapshot without this state, say)
            self._versions[inc] = max(self._versions.get(inc, 0), rec["version"] - 1)
            out.append(self._merged(rec, inc, rec["event"], rec["time"]))
            if rec["event"] == "resolved":
                into = rec.get("merged_into") if rec.get("resolution") == "merged" else None
                parts = self._parts.get(inc, {})
                self._forget(inc, now)
                if isinstance(into, str) and into != inc and into not in self._done:
                    self._merged_into[inc] = into
                    changed = [self._absorb(into, part, c, now) for part, c in sorted(parts.items())]
                    if any(changed) and into in self._core:
                        out.append(self._merged(self._core[into], into, "updated", rec["time"]))
            else:
                self._core[inc] = rec
        return out

    def contribute(self, summary: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
        """Apply a domain partition's contribution: an ``updated`` record when it changes the alarms
        of an open core incident; nothing for a stale, repeated or late one (a late one for an
        incident merged into another goes to that one)."""
        inc, part = summary["incident_id"], summary["partition"]
        if inc in self._done:
            into = self._merged_into.get(inc)
            if into is None or into in self._done:
                return []
            # late for an incident merged into another: its alarms belong to that one now
            new = {k: summary[k] for k in ("seq", "index", "alarms", "suppressed")}
            if not self._absorb(into, part, new, now) or into not in self._core:
                return []
            return [self._merged(self._core[into], into, "updated", format_time(now))]
        parts = self._parts.setdefault(inc, {})
        old = parts.get(part)
        if old is not None and (old["seq"], old["index"]) >= (summary["seq"], summary["index"]):
            return []  # a replayed or repeated summary
        new = {k: summary[k] for k in ("seq", "index", "alarms", "suppressed")}
        parts[part] = new
        self._prune(now)
        core = self._core.get(inc)
        if core is None:
            self._since.setdefault(inc, now)
            return []
        if old is not None and (old["alarms"], old["suppressed"]) == (new["alarms"], new["suppressed"]):
            return []
        return [self._merged(core, inc, "updated", format_time(now))]

    def _absorb(self, inc: str, part: str, c: Mapping[str, Any], now: float) -> bool:
        """Add the part ``c`` of partition ``part`` (of an incident merged into ``inc``) to ``inc``'s
        part of that partition: alarms and suppressions joined (a later contribution of that
        partition to ``inc`` replaces the whole part: its core merged the same way). True when
        that changes ``inc``'s alarms."""
        parts = self._parts.setdefault(inc, {})
        old = parts.get(part)
        if old is None:
            new = {k: c[k] for k in ("seq", "index", "alarms", "suppressed")}
        else:
            suppressed = {e["alarm_id"]: e for e in old["suppressed"]}
            for e in c["suppressed"]:
                suppressed.setdefault(e["alarm_id"], e)
            seq, index = max((old["seq"], old["index"]), (c["seq"], c["index"]))
            new = {
                "seq": seq,
                "index": index,
                "alarms": sorted(set(old["alarms"]) | set(c["alarms"])),
                "suppressed": [suppressed[k] for k in sorted(suppressed)],
            }
        parts[part] = new
        if inc not in self._core:
            self._since.setdefault(inc, now)
        return old is None or set(old["alarms"]) != set(new["alarms"])

    def _merged(self, core: dict[str, Any], inc: str, event: str, time: str) -> dict[str, Any]:
        version = self._versions[inc] = self._versions.get(inc, 0) + 1
        rec = dict(core, event=event, version=version, time=time)
        parts = self._parts.get(inc)
        if not parts:
            return rec
        alarms = set(core["alarms"])
        suppressed = {e["alarm_id"]: e for e in core["suppressed"]}
        for c in parts.values():
            alarms.update(c["alarms"])
            for e in c["suppressed"]:
                suppressed.setdefault(e["alarm_id"], e)
        rec["alarms"] = sorted(alarms)
        rec["suppressed"] = [suppressed[k] for k in sorted(suppressed)]
        rec["partitions"] = {GLOBAL: len(core["alarms"])} | {
            p: len(parts[p]["alarms"]) for p in sorted(parts)
        }
        return rec

    def _forget(self, inc: str, now: float) -> None:
        self._core.pop(inc, None)
        self._parts.pop(inc, None)
        self._versions.pop(inc, None)
        self._since.pop(inc, None)
        self._done[inc] = now
        self._prune(now)

    def _prune(self, now: float) -> None:
        for inc in [i for i, t in self._done.items() if now - t > RESOLVED_KEPT]:
            del self._done[inc]
            self._merged_into.pop(inc, None)
        for inc in [i for i, t in self._since.items() if now - t > PENDING_KEPT and i not in self._core]:
            del self._since[inc]
            self._parts.pop(inc, None)

    def dump(self) -> dict[str, Any]:
        return {
            "core": self._core,
            "parts": self._parts,
            "versions": self._versions,
            "since": self._since,
            "done": self._done,
            "merged_into": self._merged_into,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self._core = dict(state.get("core", {}))
        self._parts = {inc: dict(parts) for inc, parts in state.get("parts", {}).items()}
        self._versions = dict(state.get("versions", {}))
        self._since = dict(state.get("since", {}))
        self._done = dict(state.get("done", {}))
        self._merged_into = dict(state.get("merged_into", {}))
