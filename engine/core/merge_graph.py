"""The merge graph: which alarm explains which, and which incident each alarm belongs to.

Every alarm a rule explains points at its direct root (a ``Suppression``); following those links
ends at a *top root*, an alarm nothing explains, which owns the incident of the whole chain. The
graph only keeps those links and memberships consistent: an alarm keeps its first explanation, a
link never closes a cycle, and when a top root becomes a symptom its whole incident moves into the
explaining one. What that means for the incidents' phases and records is the book's business
(``engine.core.incidents``, through ``engine.core.lifecycle``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.model.twins import twin_built

if TYPE_CHECKING:
    from engine.core.incidents import Incident


@dataclass(frozen=True, slots=True)
class Suppression:
    root: str  # the alarm key that explains it directly
    rule: str  # qualified rule name
    relation: str  # a correlate relation, or the form: group, inhibit, threshold, pair
    delay: float  # symptom time - root time, seconds
    detail: str = ""  # the form's words for why (key values, window)

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(self, root: str, rule: str, relation: str, delay: float, detail: str = "") -> None:
        self.root = root  # type: ignore[misc]
        self.rule = rule  # type: ignore[misc]
        self.relation = relation  # type: ignore[misc]
        self.delay = delay  # type: ignore[misc]
        self.detail = detail  # type: ignore[misc]


twin_built(Suppression)


class MergeGraph:
    def __init__(self) -> None:
        self._parent: dict[str, Suppression] = {}  # symptom key -> why it is suppressed
        self._by_top: dict[str, Incident] = {}  # top root key -> incident
        self._incident_of: dict[str, Incident] = {}  # every member key -> incident
        # ``suppression(key)``: why ``key`` is a symptom, None for a root or an unknown key (the
        # dictionary's own ``get``: ``_parent`` is never replaced, ``restore`` refills it)
        self.suppression: Callable[[str], Suppression | None] = self._parent.get
        # ``incident_of(key)``: the incident ``key`` is a member of, None if none (the same: its
        # dictionary is never replaced, ``restore`` refills it)
        self.incident_of: Callable[[str], Incident | None] = self._incident_of.get
        # ``rooted_at(top)``: the incident rooted at the top root ``top``, None if none (the same:
        # asked at every step of the book's timers)
        self.rooted_at: Callable[[str], Incident | None] = self._by_top.get

    # -- queries -------------------------------------------------------------------------------
    def incidents(self) -> Iterable[Incident]:
        return self._by_top.values()

    def find(self, incident_id: str) -> Incident | None:
        return next((i for i in self._by_top.values() if i.id == incident_id), None)

    def top(self, key: str) -> str:
        """The top root of ``key``'s chain (``key`` itself when nothing explains it)."""
        seen = {key}
        while key in self._parent:
            key = self._parent[key].root
            if key in seen:  # defensive: ``link`` never creates cycles
                break
            seen.add(key)
        return key

    def can_link(self, root: str, symptom: str) -> bool:
        """An alarm keeps its first explanation, explains nothing of itself, and closes no cycle."""
        return root != symptom and symptom not in self._parent and self.top(root) != symptom

    # -- changes -------------------------------------------------------------------------------
    def add(self, inc: Incident) -> None:
        """A new incident, rooted at its (top) root, with that root as its only member so far."""
        inc.members.add(inc.root)
        self._by_top[inc.root] = inc
        self._incident_of[inc.root] = inc

    def link(self, symptom: str, why: Suppression, into: Incident) -> Incident | None:
        """``why.root`` explains ``symptom``, which joins ``into`` (the incident of the root's top).
        When ``symptom`` was a top root, its whole incident moves into ``into`` and is returned
        (detached from the graph: the caller resolves it)."""
        self._parent[symptom] = why
        into.grouping_rules.add(why.rule)
        old = self._by_top.pop(symptom, None)
        if old is None:
            into.members.add(symptom)
            self._incident_of[symptom] = into
            return None
        for member in old.members:
            into.members.add(member)
            self._incident_of[member] = into
        into.grouping_rules |= old.grouping_rules
        return old

    def dissolve(self, inc: Incident) -> list[str]:
        """Forget ``inc`` and its members' links; returns its members, sorted."""
        del self._by_top[inc.root]
        released: list[str] = []
        for member in sorted(inc.members):
            self._incident_of.pop(member, None)
            self._parent.pop(member, None)
            released.append(member)
        return released

    # -- snapshot ------------------------------------------------------------------------------
    def dump_links(self) -> list[list[Any]]:
        return [[k, s.root, s.rule, s.relation, s.delay, s.detail] for k, s in self._parent.items()]

    def restore(self, incidents: Iterable[Incident], links: Iterable[Sequence[Any]]) -> None:
        """Incidents as loaded (members verbatim), then the links of their members only."""
        for inc in incidents:
            self._by_top[inc.root] = inc
            for m in inc.members:
                self._incident_of[m] = inc
        links = [p for p in links if p[0] in self._incident_of]
        self._parent.clear()
        self._parent.update((p[0], Suppression(*p[1:])) for p in links)

    def links(self) -> Mapping[str, Suppression]:
        return self._parent
