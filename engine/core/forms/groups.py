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
from collections.abc import Mapping
from typing import Any

from engine.core.alarms import ActiveAlarm
from engine.core.forms.base import (
    NOTHING,
    BaseForm,
    Explanation,
    Fact,
    FormContext,
    GroupStart,
    Outcome,
    Raised,
    Released,
    Seen,
    Verdict,
    few,
)
from engine.core.forms.keys import describe, key_of
from engine.rules.compiler import CompiledRule
from engine.rules.schema import Group

__all__ = ["GroupStart", "Groups"]


class Groups(BaseForm):
    name = "groups"
    reads_samples = False  # alarms only
    rule_form: str | None = "group"

    def __init__(self, ctx: FormContext) -> None:
        self._rules = ctx.rules_of("group")
        self._by_name = {r.qualified: r for r in self._rules}
        self._topology = ctx.topology
        self._open: dict[tuple[str, tuple[str, ...]], tuple[str, float]] = {}  # -> (anchor, start)
        self._expiry: list[tuple[float, str, tuple[str, ...]]] = []
        self.joined = 0

    def observe(self, fact: Fact, now: float) -> Outcome:
        if isinstance(fact, Raised) and self._rules:
            explanations, starts = self._observe(fact.alarm, fact.parts, fact.t, now)
            if explanations or starts:
                return Outcome(explanations=tuple(explanations), starts=tuple(starts))
        elif isinstance(fact, Released):
            self.release(fact.key)
        return NOTHING

    def _observe(
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

    def idle(self) -> bool:
        return not self._rules and not self._open and not self._expiry

    def release(self, key: str) -> None:
        """The anchor's incident resolved: its groups close (the next alarm anchors a new one)."""
        for k in [k for k, (anchor, _) in self._open.items() if anchor == key]:
            del self._open[k]

    def tick(self, now: float) -> Outcome:
        """Groups whose window passed close (no timer of its own: cleaned up as time goes by)."""
        while self._expiry and self._expiry[0][0] < now:
            due, q, key = heapq.heappop(self._expiry)
            held = self._open.get((q, key))
            if held is not None and held[1] + self._by_name[q].window <= due:
                del self._open[(q, key)]
        return NOTHING

    def explain(self, rule: CompiledRule, seen: Seen) -> Verdict:
        a, sup, inc = seen.alarm, seen.sup, seen.inc
        q = rule.qualified
        if f"{q}#match" not in seen.fired:
            return Verdict(False, "did not match")
        spec = rule.rule.group
        assert isinstance(spec, Group)
        kd = describe(spec.by, key_of(a, spec.by, self._topology))
        if sup is not None and sup.rule == q:
            return Verdict(True, f"matched: joined the group anchored by {sup.root} ({sup.detail or kd})")
        if inc is not None and inc.root == a.key and inc.kind == "group":
            joined = seen.explains.get(q, [])
            more = f"; {few(joined)} joined it" if joined else "; nothing joined it"
            return Verdict(True, f"matched: anchors a group ({kd}), a group incident{more}")
        if sup is not None:
            return Verdict(
                False,
                f"matched ({kd}), but it was already explained by {sup.root} through {sup.rule} "
                "(an alarm keeps its first explanation)",
            )
        return Verdict(
            False,
            f"matched ({kd}), but it neither joined nor anchors a group now: the group's window "
            f"({rule.window:g} s) had passed, or its incident was already notified or part of a larger one",
        )

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
