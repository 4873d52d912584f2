"""The join of one ``neighbour`` relation: candidates meet through the elements between them.

A ``neighbour:<k>`` rule pairs a root on element ``r`` with a symptom on ``s`` when ``s`` is within
``k`` links of ``r`` (in any direction) and is neither ``r`` nor above nor below it
(``Topology.neighbours``; the relation is symmetric). Entering a symptom into the scope of every
neighbour of its element, as the other relations' scopes do, costs one entry per neighbour: a storm
on the N dependents of one hub made about N² entries (each leaf has N − 1 siblings).

Here each candidate is kept once, under its own element, and each element holding candidates is
indexed under the elements of its *ball*: itself and the elements one link from it, for both roles.
Two elements are at most ``k`` links apart exactly when one's ball meets the other's ``k − 1``
links out (a path of at most ``k`` links has a point at most 1 link from one end and at most
``k − 1`` from the other), so an alarm finds the other side's elements by looking ``k − 1`` links
out, or, when the other side holds fewer elements than that look-out, by testing each of their
balls against it; the exact condition (not the same element, neither above nor below) keeps the
pairs. Under a hub, a leaf's ball is the leaf and the hub: a candidate on a leaf costs two index
entries whatever its role and however many siblings it has, and for ``k = 2`` finds what the hub
met with two look-ups. An alarm on a hub tests the other side's few elements rather than look up
each of its many dependents.

For ``k = 3`` a leaf's look-out (2 links) holds every sibling: building it for each alarm of a
storm on N leaves is N² work even when the other side is one root. The look-out is the union of the
balls of the elements ``k − 2`` links out (a leaf's: itself and its hub), so an alarm goes through
those balls instead, each by its members' look-ups or, when the other side holds fewer elements,
by testing their balls against it: a leaf facing one root costs a few tests. What going through
costs an element beyond what its look-out would (at most one step per member, and per element of
the other side) is added up while it holds candidates; once it reaches what building the look-out
costs (the walk over the same balls: ``BUILD_FACTOR``), the look-out is built and remembered, as
a ski rental buys once the rent paid reaches the price: an alarm on a hub (one link from all of
its dependents) facing a few elements goes through its dependents' balls three or four times,
then looks out; a leaf whose look-out would save nothing (the other side holds more elements
than its balls) never builds it. No element pays more than about twice the cheaper of the two.
When every leaf holds both roles the pairs themselves are N² (every two leaves are neighbours),
and so is the join's work.

Memory: one entry per candidate, and per element holding candidates one index entry per element of
its ball (a hub's ball holds its dependents); the balls and look-outs computed are remembered up to
``BALLS_BUDGET`` members per relation, and the balls of elements holding candidates while they do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from engine.model.topology import Topology

__all__ = ["BALLS_BUDGET", "BUILD_FACTOR", "Neighbourhood"]

BALLS_BUDGET = 1_000_000  # ball members remembered per relation (the topology does not change)
# An element's look-out is built once going through balls has cost this many times the building
BUILD_FACTOR = 1

ROOT, SYMPTOM = "root", "sym"

C = TypeVar("C")


class Neighbourhood(Generic[C]):
    """The candidates (``C``) of one neighbour relation, by role and element, and the ball index."""

    __slots__ = ("_at", "_balls", "_known", "_known_size", "_met", "_reach", "_spent", "_topology")

    def __init__(self, topology: Topology, hops: int) -> None:
        self._topology = topology
        self._reach = hops - 1  # how far an arriving alarm looks out for the other side's balls
        # role -> element -> alarm key -> candidate
        self._at: dict[str, dict[str, dict[str, C]]] = {ROOT: {}, SYMPTOM: {}}
        # role -> ball element -> the elements holding candidates of that role whose ball has it
        self._met: dict[str, dict[str, set[str]]] = {ROOT: {}, SYMPTOM: {}}
        # (radius, element) -> the elements within radius links: remembered up to ``BALLS_BUDGET``
        # members in all (``_known``); the balls (radius 1) of elements holding candidates are kept
        # while they do (``_balls``, by role), so that ``remove`` takes out what ``add`` put in
        self._known: dict[tuple[int, str], frozenset[str]] = {}
        self._known_size = 0
        self._balls: dict[tuple[str, str], frozenset[str]] = {}
        # element -> the work its alarms went through balls instead of building their look-out
        # (``_through``), while it holds candidates and until the look-out is built
        self._spent: dict[str, int] = {}

    def _within(self, radius: int, ne_id: str) -> frozenset[str]:
        k = (radius, ne_id)
        found = self._known.get(k)
        if found is None:
            found = frozenset(self._topology.within(ne_id, radius))
            if self._known_size + len(found) <= BALLS_BUDGET:
                self._known[k] = found
                self._known_size += len(found)
        return found

    def others(self, role: str, ne_id: str) -> Iterator[C]:
        """The candidates of the other role that an alarm on ``ne_id`` in ``role`` pairs with: on a
        neighbour of ``ne_id`` (order unspecified)."""
        other = SYMPTOM if role == ROOT else ROOT
        met = self._met[other]
        if not met:
            return
        at = self._at[other]
        reach = self._reach
        look_out = self._known.get((reach, ne_id))
        found: set[str] = set()
        if look_out is None and reach > 1:
            found = self._through(ne_id, other)
        else:
            if look_out is None:
                look_out = self._within(reach, ne_id)
            if len(look_out) <= len(at):
                for m in look_out:
                    hit = met.get(m)
                    if hit:
                        found |= hit
            else:  # fewer elements on the other side than to look up (an alarm on a hub)
                balls = self._balls
                found = {y for y in at if y != ne_id and not look_out.isdisjoint(balls[(other, y)])}
        if not found:
            return
        topology = self._topology
        above = topology.ancestors(ne_id)
        if not topology.dependents(ne_id):  # nothing is below ``ne_id`` (a leaf)
            for y in found:
                if y != ne_id and y not in above:
                    yield from at[y].values()
            return
        for y in found:
            if y != ne_id and y not in above and ne_id not in topology.ancestors(y):
                yield from at[y].values()

    def _through(self, ne_id: str, other: str) -> set[str]:
        """The elements holding candidates of role ``other`` whose ball meets the look-out of
        ``ne_id`` (not built): the union of the balls of the elements ``reach - 1`` links out, each
        met by looking up its members or, when the other side holds fewer elements, by testing
        their balls against it, until every element of the other side is met. What this costs
        beyond what the look-out would is added up for ``ne_id`` while it holds candidates; once it
        reaches ``BUILD_FACTOR`` times the walk over those balls that building the look-out takes,
        the look-out is built (remembered within the budget) for the alarms that come after."""
        at, met, balls = self._at[other], self._met[other], self._balls
        n = len(at)
        found: set[str] = set()
        spent = walk = 0
        for z in self._within(self._reach - 1, ne_id):
            ball = self._within(1, z)
            size = len(ball)
            walk += size
            if len(found) == n:  # every element of the other side is met: no more to look for
                spent += 1
                continue
            if size <= n:
                spent += size
                for m in ball:
                    hit = met.get(m)
                    if hit:
                        found |= hit
            else:
                spent += n
                found.update(y for y in at if y not in found and not ball.isdisjoint(balls[(other, y)]))
        # what going through cost beyond what the look-out would: at most one step per member
        # (``walk`` bounds them) and at most one per element of the other side
        extra = spent - min(walk, n)
        if extra > 0:
            extra += self._spent.get(ne_id, 0)
            if extra >= BUILD_FACTOR * walk:
                self._spent.pop(ne_id, None)
                self._within(self._reach, ne_id)
            else:
                self._spent[ne_id] = extra
        return found

    def add(self, role: str, ne_id: str, key: str, candidate: C) -> None:
        """Keep a candidate (after ``others``: it never pairs with what enters after it here)."""
        own = self._at[role].get(ne_id)
        if own is None:
            own = self._at[role][ne_id] = {}
            ball = self._balls[(role, ne_id)] = self._within(1, ne_id)
            met = self._met[role]
            for m in ball:
                hit = met.get(m)
                if hit is None:
                    met[m] = {ne_id}
                else:
                    hit.add(ne_id)
        own[key] = candidate

    def remove(self, role: str, ne_id: str, key: str) -> None:
        own = self._at[role][ne_id]
        del own[key]
        if own:
            return
        del self._at[role][ne_id]
        if ne_id not in self._at[ROOT] and ne_id not in self._at[SYMPTOM]:
            self._spent.pop(ne_id, None)
        met = self._met[role]
        for m in self._balls.pop((role, ne_id)):
            hit = met[m]
            hit.discard(ne_id)
            if not hit:
                del met[m]

    def elements(self) -> int:
        """Elements holding candidates, per role, summed (the relation's scopes in use)."""
        return len(self._at[ROOT]) + len(self._at[SYMPTOM])

    def inner_sizes(self) -> dict[str, int]:
        """What the maps by role hold (``engine.core.state_sizes`` counts only their two roles):
        elements holding candidates and the candidates (``_at[role]``, ``_at[role][*]``), ball
        elements indexed and their entries (``_met[role]``, ``_met[role][*]``)."""
        out: dict[str, int] = {}
        for name, by_role in (("_at", self._at), ("_met", self._met)):
            for role, held in by_role.items():
                out[f"{name}[{role}]"] = len(held)
                out[f"{name}[{role}][*]"] = sum(map(len, held.values()))
        return out
