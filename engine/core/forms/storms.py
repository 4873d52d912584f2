"""The ``threshold`` form: ``count`` matching alarms per key within ``window`` raise one storm alarm.

SEC's SingleWithThreshold, made an incident: when the ``count``-th matching alarm of a key arrives
within ``window`` (event times) of the oldest one counted, a synthetic alarm (the rule's
``raise``) is raised on the element of the alarm that completed the count, and every counted alarm
becomes a suppressed member of the storm's incident. While the storm lasts, further matching
alarms of the key join it. The storm alarm clears ``window`` after the last matching alarm: once
per window, never one storm per alarm. Alarms the rule itself raised are never counted.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.core.alarms import ActiveAlarm
from engine.core.forms.base import (
    NOTHING,
    BaseForm,
    Explanation,
    Fact,
    FormContext,
    Outcome,
    Raised,
    Seen,
    Verdict,
    few,
)
from engine.core.forms.keys import describe, key_of, scope_id
from engine.core.forms.synthetic import Synthetic, clear_alarm, raise_alarm, raised_by, synthetic_id
from engine.model.messages import Alarm
from engine.model.timeutil import format_time
from engine.rules.compiler import CompiledRule
from engine.rules.schema import Threshold

_Slot = tuple[str, tuple[str, ...]]


@dataclass
class _Storm:
    alarm: Alarm
    until: float  # clears at this time unless another matching alarm extends it
    members: int


class Storms(BaseForm):
    name = "storms"
    reads_samples = False  # alarms only
    rule_form: str | None = "threshold"

    def __init__(self, ctx: FormContext) -> None:
        self._rules = ctx.rules_of("threshold")
        self._names = {r.qualified: r for r in self._rules}
        self._topology = ctx.topology
        self._recent: dict[_Slot, deque[tuple[float, str]]] = {}
        self._firing: dict[_Slot, _Storm] = {}
        self._timers: list[tuple[float, str, tuple[str, ...]]] = []
        self.fired = 0

    def observe(self, fact: Fact, now: float) -> Outcome:
        """Arrivals only: an alarm that changed severity or re-surfaced is not counted again."""
        if not isinstance(fact, Raised) or not fact.arrival or not self._rules:
            return NOTHING
        raised, members = self._observe(fact.alarm, fact.parts, fact.t)
        if not (raised or members):
            return NOTHING
        return Outcome(alarms=tuple(raised), members=tuple(members))

    def _observe(
        self, alarm: ActiveAlarm, parts: frozenset[str], t: float
    ) -> tuple[list[Synthetic], list[Explanation]]:
        raised: list[Synthetic] = []
        explanations: list[Explanation] = []
        for rule in self._rules:
            q = rule.qualified
            if f"{q}#match" not in parts or raised_by(alarm.key) == q:
                continue
            spec = rule.rule.threshold
            assert isinstance(spec, Threshold)
            key = key_of(alarm, spec.by, self._topology)
            slot = (q, key)
            storm = self._firing.get(slot)
            if storm is not None:
                storm.until = max(storm.until, t + spec.window)
                storm.members += 1
                heapq.heappush(self._timers, (storm.until, q, key))
                explanations.append(self._member(rule, storm, (alarm.key, t), spec, key))
                continue
            recent = self._recent.setdefault(slot, deque())
            if any(k == alarm.key for _, k in recent):
                continue  # one count per alarm identity
            recent.append((t, alarm.key))
            while recent and recent[0][0] < t - spec.window:
                recent.popleft()
            if len(recent) < spec.count:
                heapq.heappush(self._timers, (t + spec.window, q, key))
                continue
            self.fired += 1
            text = (
                f"{len(recent)} alarms within {spec.window:g}s ({describe(spec.by, key)}), "
                f"first at {format_time(recent[0][0])}"
            )
            syn = raise_alarm(spec.raise_, rule=q, scope=scope_id(key), ne_id=alarm.ne_id, t=t, text=text)
            storm = _Storm(syn.alarm, t + spec.window, len(recent))
            self._firing[slot] = storm
            heapq.heappush(self._timers, (storm.until, q, key))
            raised.append(syn)
            explanations.extend(self._member(rule, storm, (k, tk), spec, key) for tk, k in recent)
            del self._recent[slot]
        return raised, explanations

    def _member(
        self,
        rule: CompiledRule,
        storm: _Storm,
        member: tuple[str, float],
        spec: Threshold,
        kv: tuple[str, ...],
    ) -> Explanation:
        key, t = member
        root = synthetic_id(rule.qualified, scope_id(kv))
        detail = (
            f"part of a storm: at least {spec.count} alarms within {spec.window:g}s ({describe(spec.by, kv)})"
        )
        return Explanation(root, key, rule, storm.alarm.event_time, t, detail=detail)

    def next_due(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def idle(self) -> bool:
        return not self._rules and not self._timers and not self._firing and not self._recent

    def tick(self, now: float) -> Outcome:
        """Storms whose window passed without a new alarm clear; stale counts are dropped."""
        out: list[Synthetic] = []
        while self._timers and self._timers[0][0] <= now:
            due, q, key = heapq.heappop(self._timers)
            slot = (q, key)
            storm = self._firing.get(slot)
            if storm is not None and storm.until <= due:
                del self._firing[slot]
                out.append(
                    clear_alarm(
                        storm.alarm, rule=q, t=storm.until, text=f"storm over: {storm.members} alarm(s)"
                    )
                )
            recent = self._recent.get(slot)
            if recent is not None and recent[-1][0] + self._window(q) <= due:
                del self._recent[slot]
        return Outcome(alarms=tuple(out)) if out else NOTHING

    def counters(self) -> dict[str, int]:
        return {"storms": self.fired}

    def explain(self, rule: CompiledRule, seen: Seen) -> Verdict:
        a, sup = seen.alarm, seen.sup
        q = rule.qualified
        if seen.synthetic == q:
            members = seen.explains.get(q, [])
            tail = f"; {few(members)} in it" if members else ""
            return Verdict(True, f"raised by this rule (the storm alarm): {a.text or ''}{tail}")
        if f"{q}#match" not in seen.fired:
            return Verdict(False, "did not match")
        spec = rule.rule.threshold
        assert isinstance(spec, Threshold)
        kd = describe(spec.by, key_of(a, spec.by, self._topology))
        if sup is not None and sup.rule == q:
            return Verdict(True, f"matched: part of the storm {sup.root} ({sup.detail or kd})")
        if sup is not None:
            return Verdict(
                False,
                f"matched and counted ({kd}), but it was already explained by {sup.root} through {sup.rule}",
            )
        return Verdict(
            False,
            f"matched and counted ({kd}), but no storm took it: fewer than {spec.count} matching alarms "
            f"arrived within {spec.window:g} s of each other",
        )

    def _window(self, q: str) -> float:
        spec = self._names[q].rule.threshold
        assert isinstance(spec, Threshold)
        return spec.window

    def dump(self) -> dict[str, Any]:
        return {
            "recent": [[q, list(k), [list(e) for e in d]] for (q, k), d in self._recent.items()],
            "firing": [
                [q, list(k), s.alarm.model_dump(mode="json"), s.until, s.members]
                for (q, k), s in self._firing.items()
            ],
            "timers": [[d, q, list(k)] for d, q, k in self._timers],
            "fired": self.fired,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        keep = self._names
        self._recent = {
            (q, tuple(k)): deque((t, a) for t, a in d) for q, k, d in state["recent"] if q in keep
        }
        self._firing = {
            (q, tuple(k)): _Storm(Alarm.model_validate(a, strict=False), until, n)
            for q, k, a, until, n in state["firing"]
            if q in keep
        }
        self._timers = [(d, q, tuple(k)) for d, q, k in state["timers"] if q in keep]
        heapq.heapify(self._timers)
        self.fired = state["fired"]
