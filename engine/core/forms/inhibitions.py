"""The ``inhibit`` form: while a source alarm is active, target alarms with equal key fields are
suppressed (Alertmanager's inhibit_rules, with the target attached to the source's incident).

A target raised while a source is active, or active when a source is raised, becomes a suppressed
member of the source's incident with the reason. Clears are never swallowed: a target's clear is
applied and shown like any other. When the source clears, its incident resolves after the
hold-down and targets still active re-surface (they are correlated again, as of that moment).
As in Alertmanager, an alarm matching both the source and the target side of a rule cannot be
inhibited by an alarm for which the same is true (itself included): two such alarms never mute
each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.core.alarms import ActiveAlarm
from engine.core.forms.base import (
    NOTHING,
    BaseForm,
    Cleared,
    Explanation,
    Fact,
    FormContext,
    Outcome,
    Raised,
    Seen,
    Verdict,
    few,
)
from engine.core.forms.keys import describe, key_of
from engine.rules.compiler import CompiledRule
from engine.rules.schema import Inhibit

_Slot = tuple[str, tuple[str, ...]]


class Inhibitions(BaseForm):
    name = "inhibitions"
    reads_samples = False  # alarms only
    rule_form: str | None = "inhibit"

    def __init__(self, ctx: FormContext) -> None:
        self._rules = ctx.rules_of("inhibit")
        self._names = {r.qualified for r in self._rules}
        self._topology = ctx.topology
        self._sources: dict[_Slot, dict[str, float]] = {}  # (rule, key) -> active source -> time
        self._targets: dict[_Slot, dict[str, float]] = {}
        self._of: dict[str, list[tuple[str, _Slot]]] = {}  # alarm key -> where it is indexed
        self._both: dict[str, set[str]] = {}  # alarm key -> rules whose both sides it matches
        self.inhibited = 0

    def observe(self, fact: Fact, now: float) -> Outcome:
        if isinstance(fact, Raised):
            found = self._observe(fact.alarm, fact.parts, fact.t)
            return Outcome(explanations=tuple(found)) if found else NOTHING
        if isinstance(fact, Cleared):
            self.cleared(fact.alarm.key)
        return NOTHING

    def _observe(self, alarm: ActiveAlarm, parts: frozenset[str], t: float) -> list[Explanation]:
        self.cleared(alarm.key)  # re-index from the alarm's current fields
        out: list[Explanation] = []
        for rule in self._rules:
            is_source = f"{rule.qualified}#source" in parts
            is_target = f"{rule.qualified}#target" in parts
            if not (is_source or is_target):
                continue
            spec = rule.rule.inhibit
            assert isinstance(spec, Inhibit)
            both = is_source and is_target
            if both:
                self._both.setdefault(alarm.key, set()).add(rule.qualified)
            key = key_of(alarm, spec.equal, self._topology)
            slot = (rule.qualified, key)
            why = f"inhibited while the source is active ({describe(spec.equal, key)} equal)"
            if is_target:
                sources = {
                    k: st
                    for k, st in self._sources.get(slot, {}).items()
                    if k != alarm.key and not (both and rule.qualified in self._both.get(k, ()))
                }
                if sources:
                    src = min(sources, key=lambda k: (sources[k], k))
                    out.append(Explanation(src, alarm.key, rule, sources[src], t, detail=why))
                    self.inhibited += 1
                self._targets.setdefault(slot, {})[alarm.key] = t
                self._of.setdefault(alarm.key, []).append(("target", slot))
            if is_source:
                for target, tt in sorted(self._targets.get(slot, {}).items()):
                    if target != alarm.key and not (both and rule.qualified in self._both.get(target, ())):
                        out.append(Explanation(alarm.key, target, rule, t, tt, detail=why))
                        self.inhibited += 1
                self._sources.setdefault(slot, {})[alarm.key] = t
                self._of.setdefault(alarm.key, []).append(("source", slot))
        return out

    def idle(self) -> bool:
        return not self._rules and not (self._of or self._sources or self._targets or self._both)

    def cleared(self, key: str) -> None:
        """The alarm is no longer active (or is re-indexed): it neither inhibits nor waits any more."""
        self._both.pop(key, None)
        for role, slot in self._of.pop(key, ()):
            index = self._sources if role == "source" else self._targets
            held = index.get(slot)
            if held is not None:
                held.pop(key, None)
                if not held:
                    del index[slot]

    def counters(self) -> dict[str, int]:
        return {"inhibited": self.inhibited}

    def explain(self, rule: CompiledRule, seen: Seen) -> Verdict:
        a, sup = seen.alarm, seen.sup
        q = rule.qualified
        src, tgt = f"{q}#source" in seen.fired, f"{q}#target" in seen.fired
        spec = rule.rule.inhibit
        assert isinstance(spec, Inhibit)
        kd = describe(spec.equal, key_of(a, spec.equal, self._topology))
        decided = False
        said = []
        if tgt:
            if sup is not None and sup.rule == q:
                decided = True
                said.append(f"target side matched: inhibited by {sup.root} while it is active ({kd} equal)")
            elif sup is not None:
                said.append(
                    f"target side matched, but it was already explained by {sup.root} through {sup.rule}"
                )
            else:
                said.append(f"target side matched, but no source with {kd} was active when it was raised")
        if src:
            mine = seen.explains.get(q, [])
            if mine:
                decided = True
                said.append(f"source side matched: inhibits {few(mine)}")
            else:
                cleared = "" if a.active else " (it has cleared: it inhibits nothing any more)"
                said.append(f"source side matched, but it inhibits no target with {kd}{cleared}")
        if not (src or tgt):
            said.append("neither source nor target matched")
        return Verdict(decided, "; ".join(said))

    def active_sources(self) -> int:
        return sum(len(v) for v in self._sources.values())

    def dump(self) -> dict[str, Any]:
        return {
            "of": {k: [[role, q, list(key)] for role, (q, key) in v] for k, v in self._of.items()},
            "sources": [[q, list(k), dict(v)] for (q, k), v in self._sources.items()],
            "targets": [[q, list(k), dict(v)] for (q, k), v in self._targets.items()],
            "inhibited": self.inhibited,
            "both": {k: sorted(v) for k, v in self._both.items()},
        }

    def load(self, state: Mapping[str, Any]) -> None:
        keep = self._names
        self._sources = {(q, tuple(k)): dict(v) for q, k, v in state["sources"] if q in keep}
        self._targets = {(q, tuple(k)): dict(v) for q, k, v in state["targets"] if q in keep}
        self._of = {
            k: [(role, (q, tuple(key))) for role, q, key in v if q in keep] for k, v in state["of"].items()
        }
        self.inhibited = state["inhibited"]
        self._both = {k: {q for q in v if q in keep} for k, v in state["both"].items()}
