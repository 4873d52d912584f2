"""The ``group`` form: alarms sharing key fields within a window become one incident.

In the spirit of Alertmanager's grouping: the first matching alarm of a key *anchors* the group
and its incident gathers for ``wait`` (group_wait) before it is notified, then sends at most one
update per ``interval`` (group_interval). Every later matching alarm with the same key, raised
within ``window`` of the anchor, joins the anchor's incident as a suppressed member with the
reason. A group incident resolves when none of its members is active any more (after the
hold-down), not when its anchor clears. After the window, or once the group's incident resolved,
the next matching alarm anchors a new group.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.core.alarms import ActiveAlarm
from engine.core.forms.correlator import Explanation
from engine.core.forms.keys import describe, key_of
from engine.model.topology import Topology
from engine.rules.compiler import CompiledRule
from engine.rules.schema import Group


@dataclass(frozen=True, slots=True)
class GroupStart:
    """``anchor`` starts a group: its incident waits ``wait`` and updates every ``interval``."""

    anchor: str
    rule: CompiledRule
    wait: float | None
    interval: float | None


class Groups:
    def __init__(self, rules: Sequence[CompiledRule], topology: Topology) -> None:
        self._rules = [r for r in rules if r.form == "group"]
        self._by_name = {r.qualified: r for r in self._rules}
        self._topology = topology
        self._open: dict[tuple[str, tuple[str, ...]], tuple[str, float]] = {}  # -> (anchor, start)
        self._expiry: list[tuple[float, str, tuple[str, ...]]] = []
        self.joined = 0

    def observe(
        self, alarm: ActiveAlarm, parts: frozenset[str], t: float, now: float
    ) -> tuple[list[Explanation], list[GroupStart]]:
        explanations: list[Explanation] = []
        starts: list[GroupStart] = []
        for rule in self._rules:
            if f"{rule.qualified}#match" not in parts:
                continue
            spec = rule.rule.group
            assert isinstance(spec, Group)
            key = key_of(alarm, spec.by, self._topology)
            held = self._open.get((rule.qualified, key))
            if held is not None and held[0] == alarm.key:
                continue  # the anchor itself, re-observed
            if held is not None and held[1] <= t <= held[1] + rule.window:
                anchor, start = held
                self.joined += 1
                explanations.append(
                    Explanation(
                        anchor, alarm.key, rule, start, t, detail=f"grouped by {describe(spec.by, key)}"
                    )
                )
                continue
            self._open[(rule.qualified, key)] = (alarm.key, t)
            heapq.heappush(self._expiry, (max(now, t) + rule.window, rule.qualified, key))
            starts.append(GroupStart(alarm.key, rule, spec.wait, spec.interval))
        return explanations, starts

    def release(self, key: str) -> None:
        """The anchor's incident resolved: its groups close (the next alarm anchors a new one)."""
        for k in [k for k, (anchor, _) in self._open.items() if anchor == key]:
            del self._open[k]

    def tick(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            due, q, key = heapq.heappop(self._expiry)
            held = self._open.get((q, key))
            if held is not None and held[1] + self._by_name[q].window <= due:
                del self._open[(q, key)]

    def __len__(self) -> int:
        return len(self._open)

    def dump(self) -> dict[str, Any]:
        return {
            "open": [[q, list(k), a, s] for (q, k), (a, s) in self._open.items()],
            "expiry": [[d, q, list(k)] for d, q, k in self._expiry],
            "joined": self.joined,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self._open = {(q, tuple(k)): (a, s) for q, k, a, s in state["open"] if q in self._by_name}
        self._expiry = [(d, q, tuple(k)) for d, q, k in state["expiry"] if q in self._by_name]
        heapq.heapify(self._expiry)
        self.joined = state["joined"]
