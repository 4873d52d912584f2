"""The ``pair`` form: an alarm expects a matching one, or its own clear, within a window.

SEC's PairWithWindow. The *first* alarm of a key (``equal`` fields) opens a pending pair until
``t + window`` (event time, on the engine's clock):

* the *second* arrives in time (a matching alarm with the same key, or the first's own clear with
  ``second: clear``): the pair completes. With ``on_pair: discard`` the first alarm was a
  transient: its incident, held back for the window, is dropped without a notification. With
  ``on_pair: {raise: …}`` an *event* is raised (and cleared at once) on the first alarm's element:
  other rules can count it (three link bounces in ten minutes → a threshold rule's escalation).
* the window passes first: with ``on_timeout`` a synthetic escalation alarm is raised on the first
  alarm's element and the first alarm becomes a suppressed member of the escalation's incident.
  The escalation clears when the first alarm clears or the second finally arrives.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
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
)
from engine.core.forms.keys import describe, key_of
from engine.core.forms.synthetic import Synthetic, clear_alarm, raise_alarm, raised_by
from engine.model.messages import Alarm
from engine.model.timeutil import format_time
from engine.rules.compiler import CompiledRule
from engine.rules.schema import OnPair, Pair

_Slot = tuple[str, tuple[str, ...]]


@dataclass
class PairOutcome:
    """What one step decided, gathered as it goes (frozen into an ``Outcome`` when it returns)."""

    synthetics: list[Synthetic] = field(default_factory=list)
    explanations: list[Explanation] = field(default_factory=list)
    discards: list[tuple[str, str]] = field(default_factory=list)  # (first alarm key, rule)
    holds: list[tuple[str, float]] = field(default_factory=list)  # (first alarm key, until)

    def extend(self, other: PairOutcome) -> None:
        self.synthetics.extend(other.synthetics)
        self.explanations.extend(other.explanations)
        self.discards.extend(other.discards)
        self.holds.extend(other.holds)

    def frozen(self) -> Outcome:
        if not (self.synthetics or self.explanations or self.discards or self.holds):
            return NOTHING
        return Outcome(
            holds=tuple(self.holds),
            alarms=tuple(self.synthetics),
            members=tuple(self.explanations),
            discards=tuple(self.discards),
        )


def _second_words(spec: Pair) -> str:
    return "its clear" if spec.second == "clear" else "the matching alarm"


class Pairs(BaseForm):
    name = "pairs"
    reads_samples = False  # alarms only
    rule_form: str | None = "pair"

    def __init__(self, ctx: FormContext) -> None:
        self._rules = {r.qualified: r for r in ctx.rules_of("pair")}
        self._topology = ctx.topology
        self._pending: dict[_Slot, tuple[str, float, str]] = {}  # -> (first key, deadline, ne)
        self._escalated: dict[_Slot, tuple[str, Alarm]] = {}  # -> (first key, escalation alarm)
        self._timers: list[tuple[float, str, tuple[str, ...]]] = []
        self.paired = 0
        self.timeouts = 0

    def _spec(self, q: str) -> Pair:
        spec = self._rules[q].rule.pair
        assert isinstance(spec, Pair)
        return spec

    def observe(self, fact: Fact, now: float) -> Outcome:
        """A first alarm opens a pair, a second (or the first's clear) completes it: arrivals only."""
        if not self._rules:
            return NOTHING
        if isinstance(fact, Raised):
            return self._observe(fact.alarm, fact.parts, fact.t).frozen() if fact.arrival else NOTHING
        if isinstance(fact, Cleared):
            return self.cleared(fact.alarm, fact.alarm.cleared_time or now).frozen()
        return NOTHING

    def _observe(self, alarm: ActiveAlarm, parts: frozenset[str], t: float) -> PairOutcome:
        out = PairOutcome()
        for q in self._rules:
            if raised_by(alarm.key) == q:
                continue
            spec = self._spec(q)
            key = key_of(alarm, spec.equal, self._topology)
            if spec.second == "clear":
                key = (*key, alarm.key)  # each alarm waits for its own clear
            slot = (q, key)
            if f"{q}#second" in parts:
                pending = self._pending.get(slot)
                if pending is not None and pending[0] != alarm.key and t <= pending[1]:
                    out.extend(self._complete(q, slot, t))
                    continue
                escalated = self._escalated.get(slot)
                if escalated is not None and escalated[0] != alarm.key:
                    del self._escalated[slot]
                    out.synthetics.append(
                        clear_alarm(escalated[1], rule=q, t=t, text=f"{alarm.key} arrived after the window")
                    )
                    continue
            if f"{q}#first" in parts and slot not in self._pending and slot not in self._escalated:
                deadline = t + spec.window
                self._pending[slot] = (alarm.key, deadline, alarm.ne_id)
                heapq.heappush(self._timers, (deadline, q, key))
                if spec.discards:
                    out.holds.append((alarm.key, deadline))
        return out

    def cleared(self, alarm: ActiveAlarm, t: float) -> PairOutcome:
        """The first alarm's clear completes ``second: clear`` pairs and clears its escalations."""
        out = PairOutcome()
        for slot, (first, deadline, _) in sorted(self._pending.items()):
            if first == alarm.key and self._spec(slot[0]).second == "clear" and t <= deadline:
                out.extend(self._complete(slot[0], slot, t))
        for slot, (first, escalation) in sorted(self._escalated.items()):
            if first == alarm.key:
                del self._escalated[slot]
                out.synthetics.append(clear_alarm(escalation, rule=slot[0], t=t, text=f"{first} cleared"))
        return out

    def _complete(self, q: str, slot: _Slot, t: float) -> PairOutcome:
        first, deadline, ne = self._pending.pop(slot)
        self.paired += 1
        out = PairOutcome()
        spec = self._spec(q)
        if isinstance(spec.on_pair, OnPair):
            # an event: raised and cleared at once, so each completed pair is a new occurrence
            # that threshold and group rules count as an arrival
            second = _second_words(spec)
            text = f"{first} followed by {second} after {t - (deadline - spec.window):g}s"
            # numbered: every completed pair is an event of its own (rules count identities)
            scope = f"{first}#{self.paired}"
            syn = raise_alarm(spec.on_pair.raise_, rule=q, scope=scope, ne_id=ne, t=t, text=text)
            out.synthetics.append(syn)
            out.synthetics.append(clear_alarm(syn.alarm, rule=q, t=t, text=f"{text} (an event)"))
        if spec.discards:
            out.discards.append((first, q))
        return out

    def next_due(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def idle(self) -> bool:
        return not self._rules and not self._timers and not self._pending and not self._escalated

    def tick(self, now: float) -> Outcome:
        if not self._timers or self._timers[0][0] > now:
            return NOTHING  # nothing due (most ticks: the core flushes after every message)
        return self._tick(now).frozen()

    def _tick(self, now: float) -> PairOutcome:
        out = PairOutcome()
        while self._timers and self._timers[0][0] <= now:
            due, q, key = heapq.heappop(self._timers)
            slot = (q, key)
            pending = self._pending.get(slot)
            if pending is None or pending[1] != due:
                continue
            del self._pending[slot]
            first, deadline, ne = pending
            spec = self._spec(q)
            self.timeouts += 1
            if spec.on_timeout is None:
                continue
            second = _second_words(spec)
            equal = describe(spec.equal, key[: len(spec.equal)])
            text = f"{first} not followed by {second} within {spec.window:g}s ({equal})"
            syn = raise_alarm(spec.on_timeout.raise_, rule=q, scope=first, ne_id=ne, t=deadline, text=text)
            self._escalated[slot] = (first, syn.alarm)
            out.synthetics.append(syn)
            out.explanations.append(
                Explanation(
                    syn.alarm.alarm_id or "",
                    first,
                    self._rules[q],
                    deadline,
                    deadline - spec.window,
                    detail=f"escalated: no pair within {spec.window:g}s",
                )
            )
        return out

    def counters(self) -> dict[str, int]:
        return {"pair_timeouts": self.timeouts, "pairs_completed": self.paired}

    def explain(self, rule: CompiledRule, seen: Seen) -> Verdict:
        a, sup = seen.alarm, seen.sup
        q = rule.qualified
        if seen.synthetic == q:
            return Verdict(True, f"raised by this rule (an escalation): {a.text or ''}")
        spec = self._spec(q)
        first, second = f"{q}#first" in seen.fired, f"{q}#second" in seen.fired
        said = []
        decided = False
        awaited = "its own clear" if spec.second == "clear" else "a matching second alarm"
        kd = describe(spec.equal, key_of(a, spec.equal, self._topology))
        if first:
            deadline = a.first_seen + spec.window
            if sup is not None and sup.rule == q:
                decided = True
                said.append(f"first side matched: escalated ({sup.detail or 'no pair'}) as {sup.root}")
            elif spec.second == "clear" and a.cleared_time is not None and a.cleared_time <= deadline:
                dropped = spec.discards and seen.inc is None
                decided = dropped
                said.append(
                    f"first side matched: its clear came {a.cleared_time - a.first_seen:g} s later, within "
                    f"the {spec.window:g} s window: the pair completed"
                    + (", a transient: its incident was dropped (on_pair: discard)" if dropped else "")
                )
            elif a.active and seen.clock < deadline:
                said.append(f"first side matched: waiting for {awaited} until {format_time(deadline)}")
            else:
                timeout = ", else an escalation" if spec.on_timeout is not None else ""
                said.append(
                    f"first side matched ({kd}): it expected {awaited} within {spec.window:g} s{timeout}; "
                    "no pair decision about it is visible now"
                )
        if second:
            said.append(f"second side matched: it completes a pair pending with {kd}, if one was open")
        if not (first or second):
            said.append("neither side matched")
        return Verdict(decided, "; ".join(said))

    def transient(self, seen: Seen) -> str | None:
        """An alarm that left no incident: dropped as a transient by a pair rule, if one could have."""
        a = seen.alarm
        if a.cleared_time is None:
            return None
        for q, rule in sorted(self._rules.items(), key=lambda item: item[1].order):
            spec = self._spec(q)
            if (
                spec.discards
                and spec.second == "clear"
                and f"{q}#first" in seen.fired
                and a.cleared_time - a.first_seen <= spec.window
            ):
                return (
                    f"dropped as a transient by {rule.qualified}: it cleared "
                    f"{a.cleared_time - a.first_seen:g} s after it was raised, within the pair's "
                    f"{spec.window:g} s window"
                )
        return None

    def dump(self) -> dict[str, Any]:
        return {
            "pending": [[q, list(k), f, d, ne] for (q, k), (f, d, ne) in self._pending.items()],
            "escalated": [
                [q, list(k), f, a.model_dump(mode="json")] for (q, k), (f, a) in self._escalated.items()
            ],
            "timers": [[d, q, list(k)] for d, q, k in self._timers],
            "counters": [self.paired, self.timeouts],
        }

    def load(self, state: Mapping[str, Any]) -> None:
        keep = self._rules
        self._pending = {(q, tuple(k)): (f, d, ne) for q, k, f, d, ne in state["pending"] if q in keep}
        self._escalated = {
            (q, tuple(k)): (f, Alarm.model_validate(a, strict=False))
            for q, k, f, a in state["escalated"]
            if q in keep
        }
        self._timers = [(d, q, tuple(k)) for d, q, k in state["timers"] if q in keep]
        heapq.heapify(self._timers)
        self.paired, self.timeouts = state["counters"]
