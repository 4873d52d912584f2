"""The alarm lifecycle: deduplication, clear pairing, re-raise, flapping, severity changes, effects.

Theory of operation
-------------------
``AlarmTable.apply(alarm, now)`` turns one validated message into zero or more ``AlarmChange`` s,
the only things correlation ever sees:

========= ===================================================================================
raised    a new occurrence of an identity (first raise, or raise after clear)
repeated  the same raise again while active: count and last_seen move, nothing else
severity  a raise with another severity while active (the effect may change with it)
cleared   the active occurrence cleared
flapping  the identity crossed N raise/clear transitions within the window: from now on its
          raises and clears are absorbed and it stays one active, flapping alarm
unflapped no transition for the quiet period (found by ``tick``); a ``cleared`` follows if the
          last absorbed transition was a clear
forgotten a cleared alarm's ``retain`` ran out (found by ``tick``): the table no longer holds it,
          and what other parts keep about its key can go (nothing is decided from it)
========= ===================================================================================

Clears for unknown identities are counted and remembered for ``retain`` seconds: a raise that
arrives later but carries an *older* event time than that clear (reordered delivery) is applied
and immediately cleared, so it does not stay active for ever. A raise older than the clear of the
identity's last occurrence is stale and ignored.

Lifecycle timers (flapping, retention) run on ``now``; correlation windows use event times.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any, Literal

from engine.core.notices import AlarmNotice
from engine.core.settings import AlarmSettings, Effect, EffectRule
from engine.model.messages import SEVERITY_RANK, Alarm, PlainAlarm
from engine.model.twins import twin_built

# ``late_clear``: the raise just applied is older than a clear that arrived before it (an orphan
# clear): whoever applies the changes applies ``AlarmTable.late_clear`` after the raise's own, so the
# raise is seen raised (its health, its correlation, its incident) before it is cleared
ChangeKind = Literal[
    "raised", "repeated", "severity", "cleared", "flapping", "unflapped", "forgotten", "late_clear"
]


@lru_cache(maxsize=256)
def _folded(causes: tuple[str, ...]) -> frozenset[str]:
    """A rule's probable causes in lower case (made once per distinct tuple of causes)."""
    return frozenset(c.lower() for c in causes)


def classify(alarm: Alarm, rules: tuple[EffectRule, ...]) -> Effect:
    """The effect of an alarm on its element: the first matching rule wins (probable causes
    compared in lower case). ``AlarmTable`` compiles its rules once and calls ``_classify``."""
    return _classify(_compiled(rules), alarm.probable_cause, alarm.event_type, alarm.severity)


# A rule of ``classify`` as plain values: (probable causes in lower case, event types, severities,
# effect), None for a field the rule leaves out.
_Compiled = tuple[frozenset[str] | None, frozenset[str] | None, frozenset[str] | None, Effect]


def _compiled(rules: tuple[EffectRule, ...]) -> tuple[_Compiled, ...]:
    """The rules as ``_classify`` reads them (a settings model's attributes are slow to read)."""
    return tuple(
        (
            None if r.probable_cause is None else _folded(r.probable_cause),
            None if r.event_type is None else frozenset(r.event_type),
            None if r.severity is None else frozenset(r.severity),
            r.effect,
        )
        for r in rules
    )


def _classify(rules: tuple[_Compiled, ...], cause: str, event_type: str, severity: str) -> Effect:
    """``classify`` on compiled rules and the alarm's fields."""
    cause = cause.lower()
    for causes, event_types, severities, effect in rules:
        if causes is not None and cause not in causes:
            continue
        if event_types is not None and event_type not in event_types:
            continue
        if severities is not None and severity not in severities:
            continue
        return effect
    return "none"


def alarm_key(alarm: Alarm | PlainAlarm) -> str:
    """A short, stable, human-readable id for an alarm identity."""
    if alarm.alarm_id is not None:
        return alarm.alarm_id
    parts = [alarm.ne_id, alarm.probable_cause]
    if alarm.specific_problem:
        parts.append(alarm.specific_problem)
    return ":".join(parts)


def _threshold(alarm: Alarm | PlainAlarm) -> dict[str, Any] | None:
    info = alarm.threshold_info
    return info.model_dump(exclude_none=True) if info is not None else None


@dataclass(slots=True)
class ActiveAlarm:
    """The engine's view of one alarm identity. Owned and mutated by ``AlarmTable`` only."""

    key: str
    ne_id: str
    probable_cause: str
    event_type: str
    specific_problem: str | None
    severity: str
    effect: Effect
    text: str | None
    first_seen: float  # event time of this occurrence's first raise
    last_seen: float  # event time of the latest raise
    occurrence: int = 1
    count: int = 1  # raises (including duplicates) in this occurrence
    active: bool = True  # as correlation sees it (a flapping alarm stays active)
    flapping: bool = False
    cleared_time: float | None = None  # event time of the clear
    cleared_at: float | None = None  # `now` of the clear
    raw_active: bool = True  # the element's last word, even while flapping
    transitions: deque[float] = field(default_factory=deque)
    last_transition: float = 0.0
    threshold_info: dict[str, Any] | None = None  # X.733 threshold info of the latest raise (JSON-ready)

    @property
    def occurrence_id(self) -> str:
        return f"{self.key}#{self.occurrence}"

    @property
    def severity_rank(self) -> int:
        return SEVERITY_RANK[self.severity]


@dataclass(frozen=True, slots=True)
class AlarmChange:
    kind: ChangeKind
    alarm: ActiveAlarm
    previous_effect: Effect | None = None

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(self, kind: ChangeKind, alarm: ActiveAlarm, previous_effect: Effect | None = None) -> None:
        self.kind = kind  # type: ignore[misc]
        self.alarm = alarm  # type: ignore[misc]
        self.previous_effect = previous_effect  # type: ignore[misc]


twin_built(AlarmChange)


@dataclass
class AlarmCounters:
    raise_messages: int = 0  # every non-clear alarm message applied
    raised: int = 0  # new occurrences
    repeated: int = 0
    severity_changes: int = 0
    cleared: int = 0
    clear_unknown: int = 0
    stale: int = 0  # raises and clears older than the occurrence they would change
    stale_clears: int = 0  # of which clears
    flapping: int = 0
    absorbed: int = 0  # transitions absorbed while flapping


class AlarmTable:
    def __init__(self, settings: AlarmSettings) -> None:
        self._settings = settings
        # read per message; the settings are frozen (a pydantic model's attributes are slow to read)
        self._effects = _compiled(settings.effects)
        self._retain = settings.retain
        self._flap_window = settings.flapping.window
        self._flap_transitions = settings.flapping.transitions
        self._quiet_period = settings.flapping.quiet_period
        self._alarms: dict[str, ActiveAlarm] = {}
        # key -> the (raised, cleared) changes of the alarm the table holds under it, made at its
        # first raise or clear and given again for every later one (frozen, of the same record:
        # equal to new ones); dropped with the alarm
        self._changes: dict[str, tuple[AlarmChange, AlarmChange]] = {}
        # ``get(key)``: the alarm of that identity, or None. The dictionary's own ``get`` (it is
        # never replaced, ``load`` refills it): the core's parts call it millions of times a replay.
        self.get: Callable[[str], ActiveAlarm | None] = self._alarms.get
        self._orphan_clears: dict[str, tuple[float, float]] = {}  # key -> (event time, now)
        self._timers: list[tuple[float, int, str, str]] = []  # (due, seq, kind, key)
        self._seq = 0
        self.counters = AlarmCounters()
        # (kind, key, event time, the time it lost against) for clears matching nothing and stale
        # raises and clears: the caller drains it after each apply (metrics, rate-limited logs).
        self.notices: list[AlarmNotice] = []

    # -- queries -------------------------------------------------------------------------------
    def active(self) -> Iterator[ActiveAlarm]:
        return (a for a in self._alarms.values() if a.active)

    def held(self) -> list[ActiveAlarm]:
        """Every alarm the table holds (active ones and cleared ones within their retention), in
        the order ``dump`` lists them: the table's own records, not copies."""
        return list(self._alarms.values())

    def __len__(self) -> int:
        return len(self._alarms)

    def next_due(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    # -- snapshot ------------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this table is (JSON-ready)."""
        alarms = []
        for a in self._alarms.values():
            d = {f.name: getattr(a, f.name) for f in fields(a)}
            d["transitions"] = list(a.transitions)
            alarms.append(d)
        return {
            "alarms": alarms,
            "orphans": [[k, t, n] for k, (t, n) in self._orphan_clears.items()],
            "timers": [list(t) for t in self._timers],
            "seq": self._seq,
            "counters": asdict(self.counters),
        }

    def load(self, state: Mapping[str, Any], keep: Callable[[str], bool]) -> frozenset[str]:
        """Restore a dump; alarms whose element ``keep`` refuses are dropped. Returns their keys."""
        dropped: set[str] = set()
        self._alarms.clear()
        self._changes.clear()
        for d in state["alarms"]:
            if not keep(d["ne_id"]):
                dropped.add(d["key"])
                continue
            rec = ActiveAlarm(**{**d, "transitions": deque(d["transitions"])})
            self._alarms[rec.key] = rec
        self._orphan_clears = {k: (t, n) for k, t, n in state["orphans"]}
        self._timers = [(due, seq, kind, key) for due, seq, kind, key in state["timers"]]
        heapq.heapify(self._timers)
        self._seq = state["seq"]
        self.counters = AlarmCounters(**state["counters"])
        return frozenset(dropped)

    # -- input ---------------------------------------------------------------------------------
    def apply(
        self, alarm: Alarm | PlainAlarm, now: float, *, effect: Effect | None = None
    ) -> list[AlarmChange]:
        """Apply a raise or clear (the alarm's model, or its fields as the decoder checked them).
        ``effect`` overrides the effect table (alarms the rules raise)."""
        key = alarm_key(alarm)
        if alarm.severity == "cleared":  # (``is_clear``, without a property read through pydantic)
            return self._clear(key, alarm.event_time, now)
        self.counters.raise_messages += 1
        return self._raise(key, alarm, now, effect)

    def tick(self, now: float) -> list[AlarmChange]:
        """Fire due timers: flapping ends, cleared alarms and orphan clears are forgotten (a
        ``forgotten`` change for each alarm the table drops)."""
        out: list[AlarmChange] = []
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, key = heapq.heappop(self._timers)
            rec = self._alarms.get(key)
            if kind == "unflap" and rec is not None and rec.flapping:
                if now - rec.last_transition >= self._quiet_period:
                    out.extend(self._unflap(rec, now))
                else:
                    self._schedule(rec.last_transition + self._quiet_period, "unflap", key)
            elif kind == "forget":
                if (
                    rec is not None
                    and not rec.active
                    and rec.cleared_at is not None
                    and now - rec.cleared_at >= self._retain
                ):
                    del self._alarms[key]
                    self._changes.pop(key, None)
                    out.append(AlarmChange("forgotten", rec))
                orphan = self._orphan_clears.get(key)
                if orphan is not None and now - orphan[1] >= self._retain:
                    del self._orphan_clears[key]
        return out

    # -- internals -----------------------------------------------------------------------------
    def _raise(
        self, key: str, alarm: Alarm | PlainAlarm, now: float, effect: Effect | None = None
    ) -> list[AlarmChange]:
        # (the alarm's fields read once each: a pydantic model's attributes are slow to read)
        severity = alarm.severity
        t = alarm.event_time
        rec = self._alarms.get(key)
        if rec is None:
            effect = effect or _classify(self._effects, alarm.probable_cause, alarm.event_type, severity)
            rec = self._new(key, alarm, effect)
            self._alarms[key] = rec
            self.counters.raised += 1
            changes = [self._changes_of(rec)[0]]
            if self._orphan_clears and self._owes_clear(key, t):
                changes.append(AlarmChange("late_clear", rec))
            return changes
        if rec.flapping:
            return self._absorb(rec, t, now, raised=True)
        if rec.active:
            rec.count += 1
            if t > rec.last_seen:  # noqa: PLR1730 (``max``, without its call: per message)
                rec.last_seen = t
            if alarm.threshold_info is not None:
                rec.threshold_info = _threshold(alarm)  # the latest observation, whatever the severity
            if severity != rec.severity:
                previous = rec.effect
                rec.severity = severity
                # (classified only here: a repeat of the same severity, the usual raise, needs no effect)
                rec.effect = effect or _classify(
                    self._effects, alarm.probable_cause, alarm.event_type, severity
                )
                rec.text = alarm.text or rec.text
                self.counters.severity_changes += 1
                return [AlarmChange("severity", rec, previous)]
            self.counters.repeated += 1
            return [AlarmChange("repeated", rec)]
        # Re-raise after clear, unless the raise is older than that clear (late delivery).
        if rec.cleared_time is not None and t < rec.cleared_time:
            self.counters.stale += 1
            self.notices.append(AlarmNotice("stale_raise", key, t, rec.cleared_time))
            return []
        rec.occurrence += 1
        rec.severity = severity
        rec.effect = effect or _classify(self._effects, alarm.probable_cause, alarm.event_type, severity)
        rec.text = alarm.text
        rec.threshold_info = _threshold(alarm)
        rec.first_seen = rec.last_seen = t
        rec.count = 1
        rec.active = rec.raw_active = True
        rec.cleared_time = rec.cleared_at = None
        self.counters.raised += 1
        changes = [self._changes_of(rec)[0]]
        if self._transition(rec, now):
            changes.extend(self._start_flapping(rec, now))
        if self._orphan_clears and self._owes_clear(key, t):
            changes.append(AlarmChange("late_clear", rec))
        return changes

    def _owes_clear(self, key: str, t: float) -> bool:
        """Whether a clear of ``key`` that arrived before this raise (event time ``t``) clears it: one
        no older than the raise (kept for ``late_clear``); an older one cleared an earlier raise
        and is dropped."""
        orphan = self._orphan_clears.get(key)
        if orphan is None:
            return False
        if t <= orphan[0]:
            return True
        del self._orphan_clears[key]
        return False

    def late_clear(self, key: str, now: float) -> list[AlarmChange]:
        """Apply the clear a ``late_clear`` change announced (its own event time), once the raise's
        changes have been applied: a clear delivered before its raise clears that raise."""
        orphan = self._orphan_clears.pop(key, None)
        if orphan is None:
            return []
        return self._clear(key, orphan[0], now)

    def _clear(self, key: str, t: float, now: float) -> list[AlarmChange]:
        """A clear of ``key`` with event time ``t`` (all a clear reads of its alarm)."""
        rec = self._alarms.get(key)
        if rec is None or (not rec.active and not rec.flapping):
            if rec is None or (rec.cleared_time is not None and t > rec.cleared_time):
                self.counters.clear_unknown += 1
                self.notices.append(AlarmNotice("clear_unknown", key, t))
                self._orphan_clears[key] = (t, now)
                self._schedule(now + self._retain, "forget", key)
            return []
        if t < rec.first_seen:
            self.counters.stale += 1  # a clear older than this occurrence belongs to an earlier one
            self.counters.stale_clears += 1
            self.notices.append(AlarmNotice("stale_clear", key, t, rec.first_seen))
            return []
        if rec.flapping:
            return self._absorb(rec, t, now, raised=False)
        if self._transition(rec, now):
            # The clear completes the flapping threshold: the alarm stays active, flapping.
            rec.raw_active = False
            rec.cleared_time = t
            return self._start_flapping(rec, now)
        self._mark_cleared(rec, t, now)
        return [self._changes_of(rec)[1]]

    def _changes_of(self, rec: ActiveAlarm) -> tuple[AlarmChange, AlarmChange]:
        """The ``raised`` and ``cleared`` changes of ``rec`` (made once while the table holds it)."""
        pair = self._changes.get(rec.key)
        if pair is None or pair[0].alarm is not rec:
            pair = self._changes[rec.key] = (AlarmChange("raised", rec), AlarmChange("cleared", rec))
        return pair

    def _mark_cleared(self, rec: ActiveAlarm, event_time: float, now: float) -> None:
        rec.active = rec.raw_active = False
        rec.cleared_time = event_time
        rec.cleared_at = now
        self.counters.cleared += 1
        self._schedule(now + self._retain, "forget", rec.key)

    def _new(self, key: str, alarm: Alarm | PlainAlarm, effect: Effect) -> ActiveAlarm:
        return ActiveAlarm(
            key=key,
            ne_id=alarm.ne_id,
            probable_cause=alarm.probable_cause,
            event_type=alarm.event_type,
            specific_problem=alarm.specific_problem,
            severity=alarm.severity,
            effect=effect,
            text=alarm.text,
            first_seen=alarm.event_time,
            last_seen=alarm.event_time,
            threshold_info=_threshold(alarm),
        )

    def _transition(self, rec: ActiveAlarm, now: float) -> bool:
        """Record a raise/clear transition; True when the alarm starts flapping."""
        rec.transitions.append(now)
        rec.last_transition = now
        while rec.transitions and rec.transitions[0] < now - self._flap_window:
            rec.transitions.popleft()
        return not rec.flapping and len(rec.transitions) >= self._flap_transitions

    def _start_flapping(self, rec: ActiveAlarm, now: float) -> list[AlarmChange]:
        rec.flapping = True
        rec.active = True
        self.counters.flapping += 1
        self._schedule(now + self._quiet_period, "unflap", rec.key)
        return [AlarmChange("flapping", rec)]

    def _absorb(self, rec: ActiveAlarm, t: float, now: float, *, raised: bool) -> list[AlarmChange]:
        """A raise or clear (event time ``t``) of a flapping alarm: counted, nothing changes."""
        self.counters.absorbed += 1
        rec.last_transition = now
        rec.raw_active = raised
        if raised:
            rec.count += 1
            if t > rec.last_seen:  # noqa: PLR1730 (``max``, without its call: per message)
                rec.last_seen = t
        else:
            rec.cleared_time = t
        return []

    def _unflap(self, rec: ActiveAlarm, now: float) -> list[AlarmChange]:
        rec.flapping = False
        rec.transitions.clear()
        out = [AlarmChange("unflapped", rec)]
        if not rec.raw_active:
            self._mark_cleared(rec, rec.cleared_time if rec.cleared_time is not None else now, now)
            out.append(self._changes_of(rec)[1])
        return out

    def _schedule(self, due: float, kind: str, key: str) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, kind, key))
