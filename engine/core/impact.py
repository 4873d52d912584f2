"""Health propagation over the dependency graph, and the customer impact of an incident. Pure.

Each element has an *own* health (from its active alarms); its *effective* health is the worst of its
own and what its dependencies contribute. A required dependency passes its effective health on; a
redundancy group passes on the health of its best member, except that a group whose best member is OK
but which has a member in trouble makes its dependents AT_RISK (redundancy lost).

The impact of an incident is measured over its *cone* — the elements carrying its alarms and everything
that depends on them — with health computed from the global own-state map, so two separate failures
of both members of a redundant pair make their shared dependent DOWN in both incidents. Customers are
counted per ``CustomerGroup``, never one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from heapq import heappop, heappush
from operator import itemgetter
from typing import Any, Literal
from weakref import WeakKeyDictionary

from engine.model.topology import Topology
from engine.model.twins import twin_built


class Health(IntEnum):
    OK = 0
    AT_RISK = 1
    DEGRADED = 2
    DOWN = 3


ImpactState = Literal["outage", "degraded", "at_risk"]
_STATES: tuple[tuple[Health, ImpactState], ...] = (
    (Health.DOWN, "outage"),
    (Health.DEGRADED, "degraded"),
    (Health.AT_RISK, "at_risk"),
)
_OK = Health.OK


def state_of(health: Health) -> ImpactState | None:
    """DOWN → ``"outage"``, DEGRADED → ``"degraded"``, AT_RISK → ``"at_risk"``, OK → ``None``."""
    return next((name for level, name in _STATES if level == health), None)


def _level(own: Health, depends_on: tuple[tuple[str, ...], ...], levels: Mapping[str, Health]) -> Health:
    """An element's effective health: its own, raised by what each ``depends_on`` item contributes
    (``levels``: the upstreams' effective health, elements at OK absent or OK)."""
    value = own
    for item in depends_on:
        if len(item) == 1:
            contribution = levels.get(item[0], _OK)
        else:
            members = [levels.get(u, _OK) for u in item]
            best = min(members)
            contribution = best if best or max(members) == _OK else Health.AT_RISK
        value = max(value, contribution)
    return value


class HealthView:
    """Effective health of elements given each element's *own* state (from its active alarms).

    An element's health depends only on its ancestors, so it is evaluated on demand, upwards through
    ``depends_on``, and memoised: asking for an incident's cone costs the cone and its ancestors,
    whatever else is unhealthy in the network. Iterative: a 100 000-element chain does not touch the
    recursion limit. Elements the topology does not know have just their own state. ``own`` is read
    as asked, not copied: make a view, use it, drop it (``LiveHealth`` is the view kept up to date).
    """

    __slots__ = ("_memo", "_own", "_topology")

    def __init__(self, topology: Topology, own: Mapping[str, Health]) -> None:
        self._topology = topology
        self._own = own
        self._memo: dict[str, Health] = {}

    def health(self, ne_id: str) -> Health:
        """Effective health of ``ne_id`` (see the module docstring for the rules)."""
        memo = self._memo
        known = memo.get(ne_id)
        if known is not None:
            return known
        own, elements = self._own, self._topology.elements
        if not own or ne_id not in elements:
            return Health(own.get(ne_id, _OK))
        stack = [ne_id]
        while stack:
            ne = stack[-1]
            if ne in memo:
                stack.pop()
                continue
            deps = elements[ne].depends_on
            pending = [u for item in deps for u in item if u not in memo]
            if pending:
                stack.extend(pending)
                continue
            memo[ne] = _level(Health(own.get(ne, _OK)), deps, memo)
            stack.pop()
        return memo[ne_id]

    def service(self, topology: Topology, access: str, service_type: str) -> Health:
        """A customer's service level: the worst of its access element and the service's platform."""
        platform = topology.service_types[service_type].platform
        return max([self.health(access), *(self.health(x) for x in platform)])


class _Upstream(dict[str, str | None]):
    """Per element its one upstream when its ``depends_on`` is one required element, else None
    (made on first ask: the topology is static)."""

    __slots__ = ("_topology",)

    def __init__(self, topology: Topology) -> None:
        super().__init__()
        self._topology = topology

    def __missing__(self, ne_id: str) -> str | None:
        deps = self._topology.elements[ne_id].depends_on
        found = self[ne_id] = deps[0][0] if len(deps) == 1 and len(deps[0]) == 1 else None
        return found


class _Below(dict[str, tuple[tuple[str, ...], tuple[str, ...]]]):
    """Per element its dependents in two: those whose one upstream it is (``_Upstream``), and the
    others (made on first ask: the topology is static)."""

    __slots__ = ("_topology", "_up")

    def __init__(self, topology: Topology, up: _Upstream) -> None:
        super().__init__()
        self._topology = topology
        self._up = up

    def __missing__(self, ne_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        dependents = self._topology.dependents(ne_id)
        up = self._up
        singles = tuple(d for d in dependents if up[d] is not None)
        found = self[ne_id] = (singles, tuple(d for d in dependents if up[d] is None))
        return found


class _Ancestors(dict[str, frozenset[str]]):
    """``Topology.ancestors`` per element, read as a plain dict (from C once known)."""

    __slots__ = ("_topology",)

    def __init__(self, topology: Topology) -> None:
        super().__init__()
        self._topology = topology

    def __missing__(self, ne_id: str) -> frozenset[str]:
        found = self[ne_id] = self._topology.ancestors(ne_id)
        return found


class LiveHealth(HealthView):
    """The effective health of the whole network, kept up to date as own states change: call
    ``changed(ne)`` after ``own[ne]`` changed (``own`` is read by reference, never copied; its values
    are ``Health``), and ``reset()`` after ``own`` was replaced wholesale.

    The topology is static, so a change is pushed down the dependency graph in topological order and
    stops where levels stop changing: the work is proportional to the elements whose level changed,
    not to the size of the network or to what else is unhealthy. ``impact(seeds)`` is
    ``compute_impact`` over these levels, cached per seed list until an element of its cone changes
    level (each change stamps the changed elements and their ancestors, the seeds whose cone it
    touches, with a new version).
    """

    __slots__ = (
        "_above",
        "_below",
        "_cache",
        "_cache_size",
        "_levels",
        "_pending",
        "_stamps",
        "_up",
        "version",
    )

    def __init__(self, topology: Topology, own: Mapping[str, Health], *, cache_size: int = 4096) -> None:
        self._topology = topology
        self._own = own
        self._memo = {}
        self._levels: dict[str, Health] = {}  # elements whose effective health is not OK
        self._stamps: dict[str, int] = {}  # element -> version at which its cone last changed level
        # seed list -> (version made at, its cone in sorted order, the impact); least recently used first
        self._cache: dict[tuple[str, ...], tuple[int, tuple[str, ...], Impact]] = {}
        self._cache_size = cache_size
        # element -> its one upstream, None unless its ``depends_on`` is one required element (most
        # of a tree-shaped access network): its level is then max(own, that upstream's)
        self._up = _Upstream(topology)
        self._below = _Below(topology, self._up)  # per element its dependents, by shape
        self._above = _Ancestors(topology)
        # (element, its level before): the one element whose new level has not been carried below it
        # yet (``changed``); carried before anything reads the levels or another element changes
        self._pending: tuple[str, Health] | None = None
        self.version = 0
        self.reset()

    def health(self, ne_id: str) -> Health:
        if self._pending is not None:
            self._settle()
        return self._levels.get(ne_id, _OK)

    def reset(self) -> None:
        """Recompute every level from ``own``; forget every cached impact."""
        topology = self._topology
        view = HealthView(topology, self._own)
        unhealthy = [ne for ne, h in self._own.items() if h != _OK]
        levels = {ne: Health(self._own[ne]) for ne in unhealthy if ne not in topology}
        for ne in sorted(cone(topology, unhealthy)):
            if (h := view.health(ne)) != _OK:
                levels[ne] = h
        self._levels = levels
        self._pending = None  # (every level computed afresh)
        self._stamps.clear()
        self._cache.clear()
        self.version += 1

    def changed(self, ne_id: str) -> int:
        """``own[ne_id]`` changed: update the levels below it. Returns how many elements changed level."""
        if self._pending is not None:
            self._settle()
        moved = self.change(ne_id)
        return self._settle() if self._pending is not None else moved

    def changing(self, ne_id: str) -> None:
        """``own[ne_id]`` is about to change (``change``): a pending change of another element is
        carried below it first, while ``own`` is as that change found it."""
        if (pending := self._pending) is not None and pending[0] != ne_id:
            self._settle()

    def change(self, ne_id: str) -> int:
        """``own[ne_id]`` changed (``changing(ne_id)`` was called before it did): update its level.
        Returns 1 when its level changed, 0 when it did not (nothing below it can move then).

        The levels below it follow before anything reads the levels (``health``, ``impact``) or
        another element changes (``changing``, ``changed``): an element whose level changes and
        changes back in between (an alarm raised and cleared at once, the usual pair of a replay)
        moves nothing below it and stamps nothing, where ``changed`` walks down twice, moving every
        level below it and back. Nothing can tell the two apart: the levels are the same, and an
        impact whose cone the two walks stamped would be found made of the same levels and given
        back as it was (``tests/test_impact.py`` compares the two)."""
        pending = self._pending
        if pending is not None and pending[0] != ne_id:  # (``changing`` not called: carried now)
            self._settle()
            pending = None
        own, levels, topology = self._own, self._levels, self._topology
        elements = topology.elements
        if ne_id not in elements:  # in no cone: just its own state
            level = own.get(ne_id, _OK)
            if level != _OK:
                levels[ne_id] = level
            else:
                levels.pop(ne_id, None)
            return 1
        # the element itself first: often its level does not move (something above it is as bad or
        # worse) and nothing below it can move then; or nothing depends on it
        up = self._up
        level = own.get(ne_id, _OK)
        if (u := up[ne_id]) is not None:  # one upstream: ``_level`` without its loop
            if (contribution := levels.get(u, _OK)) > level:
                level = contribution
        else:
            level = self._evaluate(ne_id, elements[ne_id].depends_on)
        current = levels.get(ne_id, _OK)
        if level == current:
            return 0
        if level != _OK:
            levels[ne_id] = level
        else:
            del levels[ne_id]
        if pending is None:
            self._pending = (ne_id, current)
        elif level == pending[1]:  # back to its level before the pending change: nothing to carry
            self._pending = None
        return 1

    def _settle(self) -> int:
        """Carry the pending element's level below it (``change``): every element below it is
        evaluated once, after every upstream of it that changes; the changed ones and everything
        above them are stamped with a new version. Returns how many changed level, itself included."""
        pending = self._pending
        assert pending is not None
        self._pending = None
        ne_id = pending[0]
        own, levels, topology = self._own, self._levels, self._topology
        elements = topology.elements
        level = levels.get(ne_id, _OK)
        changed = [ne_id]
        tops = [ne_id]  # the changed elements whose one upstream did not change (``_stamp``)
        singles, multis = self._below[ne_id]
        if singles or multis:
            # Below it, each element is evaluated once, after every upstream of it that changes. One
            # with one upstream (``_Below``: most of a tree-shaped access network) is reached once,
            # from that upstream just evaluated, whose new level comes with it: it waits on a stack,
            # in any order. One with more waits on a heap in topological order, taken only when the
            # stack is empty: whatever could still change one of its upstreams is then on the heap,
            # above it in that order, and taken first.
            below = self._below
            stack: list[tuple[Health, tuple[str, ...]]] = [(level, singles)] if singles else []
            heap: list[tuple[int, str]] = []
            queued: set[str] = set()
            position: Mapping[str, int] | None = None
            while True:
                if multis:
                    if position is None:
                        position = topology.position()
                    for d in multis:
                        if d not in queued:
                            queued.add(d)
                            heappush(heap, (position[d], d))
                    multis = ()
                if stack:
                    upstream, elements_below = stack.pop()
                    for ne in elements_below:
                        level = own.get(ne, _OK)
                        if upstream > level:  # noqa: PLR1730 (``max``, without its call: the hot loop)
                            level = upstream
                        if level == levels.get(ne, _OK):
                            continue
                        if level != _OK:
                            levels[ne] = level
                        else:
                            del levels[ne]
                        changed.append(ne)
                        singles, more = below[ne]
                        if singles:
                            stack.append((level, singles))
                        if more:
                            multis = (*multis, *more)
                    continue
                if not heap:
                    break
                ne = heappop(heap)[1]
                level = self._evaluate(ne, elements[ne].depends_on)  # (more than one upstream)
                if level == levels.get(ne, _OK):
                    continue
                if level != _OK:
                    levels[ne] = level
                else:
                    del levels[ne]
                changed.append(ne)
                tops.append(ne)
                singles, multis = below[ne]
                if singles:
                    stack.append((level, singles))
        self._stamp(changed, tops)
        return len(changed)

    def _evaluate(self, ne: str, depends_on: tuple[tuple[str, ...], ...]) -> Health:
        """An element's effective level from its own and its upstreams' current levels (``_level``
        over the live levels; once per change, not in ``changed``'s loop)."""
        return _level(self._own.get(ne, _OK), depends_on, self._levels)

    def _stamp(self, changed: list[str], tops: list[str]) -> None:
        """A new version for the changed elements and everything above them (their ``ancestors``):
        the seeds of every cone that holds one of them. Only the ``tops`` (the changed elements
        whose one upstream did not change too) add ancestors of their own: another's are its one
        upstream, changed, and that upstream's ancestors."""
        version = self.version = self.version + 1
        stamps = self._stamps
        for ne in changed:  # (stored one by one: no set of them, no dictionary made to merge)
            stamps[ne] = version
        ancestors = self._above
        for ne in tops:
            for above in ancestors[ne]:
                stamps[above] = version

    def impact(self, seeds: Iterable[str]) -> Impact:
        """``compute_impact(topology, own, seeds)`` from the live levels; the same object again while
        no element of the seeds' cone changed level."""
        if self._pending is not None:  # (``changed``: the levels below it first)
            self._settle()
        key = tuple(seeds)
        cache = self._cache
        entry = cache.pop(key, None)
        levels = self._levels
        if entry is None:
            members = tuple(sorted(cone(self._topology, key)))
            affected = {ne: h for ne in members if (h := levels.get(ne)) is not None}
            impact = _impact(self._topology, affected, None)
        else:
            made, members, impact = entry
            stamps = self._stamps
            for s in key:  # (``all`` over a generator, without the generator)
                if stamps.get(s, 0) > made:
                    break
            else:
                cache[key] = entry  # now the most recently used
                return impact
            last = impact.elements
            # When every element of the cone was affected and still is, at the same level (most
            # asks after a change elsewhere: an outage takes everything below it down), one
            # comparison in C says so; else the cone's levels are made again, one lookup at a time.
            if len(last) != len(members) or not last.items() <= levels.items():
                affected = {ne: h for ne in members if (h := levels.get(ne)) is not None}
                if affected != last:
                    impact = _impact(self._topology, affected, None)
            # else (either way): the cone's levels are those the cached impact was made of (levels
            # changed and came back between two asks): the impact is a function of them alone, in
            # the same order, so the same object comes back (73 % of the recomputations on 24V's
            # readme conversion), and its identity tells the assessor and the incident's signature
            # that nothing changed
        cache[key] = (self.version, members, impact)
        if len(cache) > self._cache_size:
            del cache[next(iter(cache))]
        return impact


def with_service_levels(
    own: Mapping[str, Health], by_service: Mapping[str, Mapping[str, Health]], services: Iterable[str]
) -> Mapping[str, Health]:
    """Elements' own health plus the levels that alarms about one of ``services`` put on them (the
    engine's per-service KQI alarms): the network as those services see it. ``own`` itself when
    none applies."""
    extra = [by_service[s] for s in services if by_service.get(s)]
    if not extra:
        return own
    merged = dict(own)
    for levels in extra:
        for ne, level in levels.items():
            merged[ne] = max(merged.get(ne, _OK), level)
    return merged


@dataclass(frozen=True, slots=True)
class ImpactCounts:
    """Customers whose worst level is this state, subscriptions at this level, customers per tier."""

    customers: int
    services: Mapping[str, int]
    by_tier: Mapping[str, int]

    def to_record(self) -> dict[str, Any]:
        return {"customers": self.customers, "services": dict(self.services), "by_tier": dict(self.by_tier)}


@dataclass(frozen=True, slots=True)
class Impact:
    """What an incident does: affected elements in its cone and the customers behind them.

    ``state`` is the worst customer-service level or, when no customer is affected, the worst element
    level; ``None`` when nothing is affected. ``services`` counts affected subscriptions (any level),
    ``customers``/``by_tier`` distinct affected customers; ``by_state`` splits all three by level.
    """

    elements: Mapping[str, Health]
    state: ImpactState | None
    services: Mapping[str, int]
    customers: int
    by_tier: Mapping[str, int]
    by_state: Mapping[str, ImpactCounts]

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(  # noqa: PLR0917 (the dataclass's parameters, positional as there)
        self,
        elements: Mapping[str, Health],
        state: ImpactState | None,
        services: Mapping[str, int],
        customers: int,
        by_tier: Mapping[str, int],
        by_state: Mapping[str, ImpactCounts],
    ) -> None:
        self.elements = elements  # type: ignore[misc]
        self.state = state  # type: ignore[misc]
        self.services = services  # type: ignore[misc]
        self.customers = customers  # type: ignore[misc]
        self.by_tier = by_tier  # type: ignore[misc]
        self.by_state = by_state  # type: ignore[misc]

    def to_record(self) -> dict[str, Any]:
        """JSON-ready, with a deterministic key order."""
        return {
            "elements": len(self.elements),
            "services": dict(self.services),
            "customers": {"total": self.customers, "by_tier": dict(self.by_tier)},
            "by_state": {name: counts.to_record() for name, counts in self.by_state.items()},
        }


twin_built(Impact)


@dataclass(frozen=True, slots=True)
class _Totals:
    customers: int
    by_tier: tuple[tuple[str, int], ...]
    services: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class _Index:
    """What impact needs beyond the topology's own indices; built once per topology."""

    totals: Mapping[str, _Totals]  # access element → its customers, summed over its groups
    by_set: Mapping[tuple[frozenset[str], str], int]  # (service set, tier) → customers, network-wide


_INDEX: WeakKeyDictionary[Topology, _Index] = WeakKeyDictionary()


def _index(topology: Topology) -> _Index:
    index = _INDEX.get(topology)
    if index is None:
        # Access element by access element (the order of ``all_groups``): sums per tier and service in
        # dicts holding every name from the start (plain subscripts; names in order, zeros dropped after)
        # and per (service set, tier) network-wide (a few dozen keys: a miss is rare).
        totals: dict[str, _Totals] = {}
        by_set: dict[tuple[frozenset[str], str], int] = {}
        no_tiers = dict.fromkeys(sorted(topology.tiers), 0)
        no_services = dict.fromkeys(sorted(topology.service_types), 0)
        counted = itemgetter(1)
        for access in topology.elements:
            groups = topology.groups_at(access)
            if not groups:
                continue
            tiers, services = no_tiers.copy(), no_services.copy()
            for g in groups:
                n, tier, group_services = g.count, g.tier, g.services
                tiers[tier] += n
                for s in group_services:
                    services[s] += n
                key = (group_services, tier)
                try:
                    by_set[key] += n
                except KeyError:
                    by_set[key] = n
            totals[access] = _Totals(
                sum(tiers.values()),
                tuple(filter(counted, tiers.items())),
                tuple(filter(counted, services.items())),
            )
        index = _INDEX[topology] = _Index(totals, by_set)
    return index


def subscriptions_hit(
    topology: Topology, elements: Mapping[str, Health], tiers: Iterable[str], services: Iterable[str]
) -> bool:
    """Whether some customer of one of ``tiers`` has a subscription to one of ``services`` affected.

    A subscription (customer, service) is affected when the customer's access element is affected or
    a platform element of that service is (``elements``: an impact's affected elements). This is the
    joint condition "a platinum voice service is hit", which separate counts per tier and per service
    cannot tell (a platinum internet customer and a bronze voice customer are not it).
    """
    want_tiers, want_services = set(tiers), frozenset(services)
    bad = {ne for ne, h in elements.items() if h != _OK}
    platform_hit = {s for ne in bad for s in topology.platform_services(ne)} & want_services
    if platform_hit and any(
        tier in want_tiers and set_ & platform_hit for set_, tier in _index(topology).by_set
    ):
        return True
    return any(
        g.tier in want_tiers and g.services & want_services for ne in bad for g in topology.groups_at(ne)
    )


def cone(topology: Topology, seeds: Iterable[str]) -> set[str]:
    """The seeds the topology knows, and everything depending on them, transitively."""
    found = {ne for ne in seeds if ne in topology}
    for ne in list(found):
        found |= topology.descendants(ne)  # cached: the topology is static
    return found


class _Tally:
    """Counters per level (index = ``Health``); index 0 collects OK and is never reported."""

    __slots__ = ("customers", "services", "tiers")

    def __init__(self) -> None:
        self.customers = [0, 0, 0, 0]
        self.tiers: list[dict[str, int]] = [{}, {}, {}, {}]
        self.services: list[dict[str, int]] = [{}, {}, {}, {}]

    def add_access(self, level: Health, totals: _Totals) -> None:
        """Everyone behind an access element, every service at the access element's level."""
        self.customers[level] += totals.customers
        tiers, services = self.tiers[level], self.services[level]
        for tier, n in totals.by_tier:
            tiers[tier] = tiers.get(tier, 0) + n
        for s, n in totals.services:
            services[s] = services.get(s, 0) + n

    def add(
        self, services: frozenset[str], tier: str, n: int, access: Health, hit: Mapping[str, Health]
    ) -> None:
        """``n`` customers: each service at max(access level, its platform level), customers at the worst."""
        worst = access
        for s in services:
            level = max(access, hit.get(s, _OK))
            self.services[level][s] = self.services[level].get(s, 0) + n
            worst = max(worst, level)
        self.customers[worst] += n
        self.tiers[worst][tier] = self.tiers[worst].get(tier, 0) + n

    def impact(self, affected: dict[str, Health]) -> Impact:
        by_state: dict[str, ImpactCounts] = {}
        services: dict[str, int] = {}
        tiers: dict[str, int] = {}
        for level, name in _STATES:
            level_services = {s: n for s, n in sorted(self.services[level].items()) if n}
            level_tiers = {t: n for t, n in sorted(self.tiers[level].items()) if n}
            if self.customers[level] or level_services:
                by_state[name] = ImpactCounts(self.customers[level], level_services, level_tiers)
            for s, n in level_services.items():
                services[s] = services.get(s, 0) + n
            for t, n in level_tiers.items():
                tiers[t] = tiers.get(t, 0) + n
        state = next((name for level, name in _STATES if self.customers[level]), None)
        if state is None and affected:
            state = state_of(max(affected.values()))
        customers = sum(self.customers[1:])
        return Impact(
            affected, state, dict(sorted(services.items())), customers, dict(sorted(tiers.items())), by_state
        )


def compute_impact(
    topology: Topology,
    own: Mapping[str, Health],
    seeds: Iterable[str],
    *,
    only_services: frozenset[str] | None = None,
) -> Impact:
    """The impact of an incident whose alarms sit on ``seeds``, given every element's own health.

    A customer group counts when its access element is affected (in the cone and not OK) or one of its
    services is *platform-hit* (a platform element of the service is affected); each service is at
    max(access level, worst affected platform element), the group's customers at their worst service.
    Levels outside the cone (another incident's) do not count here. Unknown seeds are ignored.

    Cost: the affected access elements' precomputed totals; when a platform is hit, also their groups,
    plus one pass over the network-wide (service set, tier) counts for everyone else.

    ``only_services``: only subscriptions of these service types count (an incident whose alarms concern
    one service, such as a voice KQI alarm: the internet customers behind the element are fine);
    customers without any of them are not affected. Costs the affected access elements' groups.
    """
    view = HealthView(topology, own)
    affected = {ne: h for ne in sorted(cone(topology, seeds)) if (h := view.health(ne)) != _OK}
    return _impact(topology, affected, only_services)


def _impact(topology: Topology, affected: dict[str, Health], only: frozenset[str] | None) -> Impact:
    """``compute_impact`` once the affected elements of the cone are known (in sorted order)."""
    hit = _hit(topology, affected, only)
    if only is not None:
        return _service_impact(topology, affected, hit, only)
    tally, index = _Tally(), _index(topology)
    # the affected access elements, in the order of ``affected`` (sorted); looked for one by one
    # only when there are some (found in C first, from the smaller side: a network without customers
    # has none, and an outage high in the tree affects many elements that are not access elements)
    totals = index.totals
    found = totals.keys() & affected.keys()
    accesses = [(ne, level, totals[ne]) for ne, level in affected.items() if ne in found] if found else []
    for _, level, t in accesses:
        tally.add_access(level, t)
    if hit:
        worst_hit = {s: max((hit.get(x, _OK) for x in s), default=_OK) for s, _ in index.by_set}
        elsewhere = {key: n for key, n in index.by_set.items() if worst_hit[key[0]] != _OK}
        for ne, level, _ in accesses:
            for g in topology.groups_at(ne):
                if worst_hit[g.services] != _OK:
                    elsewhere[g.services, g.tier] -= g.count
                    if worst_hit[g.services] > level:  # add_access counted it too low: redo it
                        tally.add(g.services, g.tier, -g.count, level, {})
                        tally.add(g.services, g.tier, g.count, level, hit)
        for (services, tier), n in elsewhere.items():  # behind access elements that are fine
            if n:
                tally.add(services, tier, n, _OK, hit)
    return tally.impact(affected)


def _hit(
    topology: Topology, affected: Mapping[str, Health], only: frozenset[str] | None
) -> dict[str, Health]:
    """The services whose platform the affected elements hit (of ``only``, when given), at the worst
    level of their affected platform elements."""
    hit: dict[str, Health] = {}
    platform = topology.platform_elements()
    for ne in affected if len(affected) <= len(platform) else sorted(platform.keys() & affected.keys()):
        services = platform.get(ne)
        if services:
            h = affected[ne]
            for s in services if only is None else services & only:
                hit[s] = max(h, hit.get(s, _OK))
    return hit


def _service_impact(
    topology: Topology, affected: dict[str, Health], hit: dict[str, Health], only: frozenset[str]
) -> Impact:
    """``compute_impact`` counting only subscriptions of the ``only`` service types."""
    tally = _Tally()
    elsewhere = dict(_index(topology).by_set) if hit else {}
    for ne, level in affected.items():
        for g in topology.groups_at(ne):
            if hit:
                elsewhere[g.services, g.tier] -= g.count
            if sub := g.services & only:
                tally.add(sub, g.tier, g.count, level, hit)
    for (set_, tier), n in sorted(elsewhere.items(), key=lambda kv: (sorted(kv[0][0]), kv[0][1])):
        sub = set_ & only
        if n and sub and any(s in hit for s in sub):
            tally.add(sub, tier, n, _OK, hit)
    return tally.impact(affected)
