"""The join of one ``neighbour`` relation: candidates meet through the elements between them.

A ``neighbour:<k>`` rule pairs a root on element ``r`` with a symptom on ``s`` when ``s`` is within
``k`` links of ``r`` (in any direction) and is neither ``r`` nor above nor below it
(``Topology.neighbours``; the relation is symmetric). Entering a symptom into the scope of every
neighbour of its element, as the other relations' scopes do, costs one entry per neighbour: a storm
on the N dependents of one hub made about N² entries (each leaf has N − 1 siblings).

Here each candidate is kept once, under its own element, and each element holding candidates is
indexed under the elements of its *ball*: the elements at most ``k − 1`` links from it for a root,
at most 1 link for a symptom. Two elements are at most ``k`` links apart exactly when a root's ball
and a symptom's ball share an element (a path of at most ``k`` links has a point at most ``k − 1``
links from one end and at most 1 from the other), so an alarm finds the other side's elements
through its own ball, and the exact condition (not the same element, neither above nor below) keeps
the pairs. Under a hub, a leaf's ball is the leaf and the hub: a symptom on a leaf costs two index
entries and a look-up of the roots met at the hub, however many siblings it has. The work of an
alarm is its ball plus the elements met; the latter are all paired but for those above or below.

Memory: one entry per candidate, and per element holding candidates one index entry per element of
its ball (a hub's ball holds its dependents; for ``k = 3``, a root's ball reaches two links); the
balls computed are remembered up to ``BALLS_BUDGET`` members per relation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from engine.model.topology import Topology

__all__ = ["BALLS_BUDGET", "Neighbourhood"]

BALLS_BUDGET = 1_000_000  # ball members remembered per relation (the topology does not change)

ROOT, SYMPTOM = "root", "sym"

C = TypeVar("C")


class Neighbourhood(Generic[C]):
    """The candidates (``C``) of one neighbour relation, by role and element, and the ball index."""

    __slots__ = ("_at", "_balls", "_known", "_known_size", "_last", "_met", "_radius", "_topology")

    def __init__(self, topology: Topology, hops: int) -> None:
        self._topology = topology
        self._radius = {ROOT: hops - 1, SYMPTOM: 1}
        # role -> element -> alarm key -> candidate
        self._at: dict[str, dict[str, dict[str, C]]] = {ROOT: {}, SYMPTOM: {}}
        # role -> ball element -> the elements holding candidates of that role whose ball has it
        self._met: dict[str, dict[str, set[str]]] = {ROOT: {}, SYMPTOM: {}}
        # (role, element) -> its ball: remembered up to ``BALLS_BUDGET`` members in all (``_known``),
        # else while the element holds candidates (``_balls``), or for ``others``' ``add`` (``_last``)
        self._known: dict[tuple[str, str], tuple[str, ...]] = {}
        self._known_size = 0
        self._balls: dict[tuple[str, str], tuple[str, ...]] = {}
        self._last: tuple[tuple[str, str], tuple[str, ...]] | None = None

    def _ball(self, role: str, ne_id: str) -> tuple[str, ...]:
        k = (role, ne_id)
        ball = self._known.get(k) or self._balls.get(k)
        if ball is None:
            if self._last is not None and self._last[0] == k:
                return self._last[1]
            ball = tuple(self._topology.within(ne_id, self._radius[role]))
            if self._known_size + len(ball) <= BALLS_BUDGET:
                self._known[k] = ball
                self._known_size += len(ball)
            else:
                self._last = (k, ball)
        return ball

    def others(self, role: str, ne_id: str) -> Iterator[C]:
        """The candidates of the other role that an alarm on ``ne_id`` in ``role`` pairs with: on a
        neighbour of ``ne_id`` (order unspecified)."""
        other = SYMPTOM if role == ROOT else ROOT
        met = self._met[other]
        if not met:
            return
        found: set[str] = set()
        for m in self._ball(role, ne_id):
            hit = met.get(m)
            if hit:
                found |= hit
        if not found:
            return
        above = self._topology.ancestors(ne_id)
        at = self._at[other]
        for y in found:
            if y != ne_id and y not in above and ne_id not in self._topology.ancestors(y):
                yield from at[y].values()

    def add(self, role: str, ne_id: str, key: str, candidate: C) -> None:
        """Keep a candidate (after ``others``: it never pairs with what enters after it here)."""
        own = self._at[role].get(ne_id)
        if own is None:
            own = self._at[role][ne_id] = {}
            ball = self._ball(role, ne_id)
            if (role, ne_id) not in self._known:
                self._balls[(role, ne_id)] = ball
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
        for m in self._balls.pop((role, ne_id), None) or self._known[(role, ne_id)]:
            hit = met[m]
            hit.discard(ne_id)
            if not hit:
                del met[m]

    def elements(self) -> int:
        """Elements holding candidates, per role, summed (the relation's scopes in use)."""
        return len(self._at[ROOT]) + len(self._at[SYMPTOM])
