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
by testing their balls against it: a leaf facing one root costs a few tests. The look-out is built
(and remembered) only when that costs at most ``BUILD_FACTOR`` times going through the balls (an
alarm on a hub, whose dependents' balls are nearly all of it). When every leaf holds both roles the
pairs themselves are N² (every two leaves are neighbours), and so is the join's work.

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
# An alarm builds its look-out when that costs at most this many times going through its balls
BUILD_FACTOR = 2

ROOT, SYMPTOM = "root", "sym"

C = TypeVar("C")


class Neighbourhood(Generic[C]):
    """The candidates (``C``) of one neighbour relation, by role and element, and the ball index."""

    __slots__ = ("_at", "_balls", "_known", "_known_size", "_met", "_reach", "_topology")

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
        through: frozenset[str] | None = None
        if look_out is None and reach > 1:
            # Building the look-out walks every ball of the elements ``reach - 1`` links out (a
            # leaf's: its hub's, every sibling); meeting the other side through each such ball
            # costs at most its size and at most one test per element on the other side. Build
            # (and remember) the look-out only when it costs at most ``BUILD_FACTOR`` times that
            # (an alarm on a hub, met again later); otherwise go through the balls (a leaf facing
            # a few roots).
            inner = self._within(reach - 1, ne_id)
            sizes = [len(self._within(1, z)) for z in inner]
            n = len(at)
            if sum(sizes) > BUILD_FACTOR * sum(size if size < n else n for size in sizes):
                through = inner
        found: set[str] = set()
        if through is not None:
            found = self._through(through, other)
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
        above = self._topology.ancestors(ne_id)
        for y in found:
            if y != ne_id and y not in above and ne_id not in self._topology.ancestors(y):
                yield from at[y].values()

    def _through(self, inner: frozenset[str], other: str) -> set[str]:
        """The elements holding candidates of role ``other`` whose ball meets the ball of an element
        of ``inner`` (the look-out's union, never built): through each ball, by looking up its
        members or, when the other side holds fewer elements, by testing their balls against it."""
        at, met, balls = self._at[other], self._met[other], self._balls
        n = len(at)
        found: set[str] = set()
        for z in inner:
            ball = self._within(1, z)
            if len(ball) <= n:
                for m in ball:
                    hit = met.get(m)
                    if hit:
                        found |= hit
            else:
                found.update(y for y in at if y not in found and not ball.isdisjoint(balls[(other, y)]))
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
