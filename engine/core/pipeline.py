"""The pure core, end to end: ``feed(topic, payload, now)`` and ``tick(now)`` return decisions.

Like h11's connection, the pipeline does no I/O and reads no clock. An adapter (replay, MQTT, HTTP)
feeds it messages with the time it received them and calls ``tick`` when ``next_due()`` says a
timer is due. Everything it decides comes back in ``Decisions``: incident records to publish and
dead-letter records for rejected input. Same inputs, same times → same decisions, byte for byte.

Data flow: messages.Decoder → alarms.AlarmTable → rules.Correlator (durable-rules) →
incidents.IncidentBook (impact, priority) → records; KPI samples → kpi.KpiStore.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal

import orjson

from engine.core.alarms import ActiveAlarm, AlarmChange, AlarmTable
from engine.core.containment import Fault, Quarantine
from engine.core.experience import UrgencySettings
from engine.core.forms.breaches import Breaches
from engine.core.forms.correlator import Correlator, Explanation
from engine.core.forms.groups import Groups
from engine.core.forms.inhibitions import Inhibitions
from engine.core.forms.maintenance import Calendar
from engine.core.forms.overrides import Overrides
from engine.core.forms.pairs import PairOutcome, Pairs
from engine.core.forms.silences import Silence
from engine.core.forms.storms import Storms
from engine.core.forms.synthetic import QUALITY_SOURCES, Synthetic, raised_by, service_scope
from engine.core.impact import Health, HealthView, with_service_levels
from engine.core.incidents import EFFECT_HEALTH, Incident, IncidentBook, IncidentRecord
from engine.core.kpi import KpiStore
from engine.core.quality import ServiceQuality
from engine.core.query import CoreQuery
from engine.core.settings import CoreSettings
from engine.errors import EngineError, InvalidMessage
from engine.model.messages import Alarm, Decoded, Decoder, KpiSample, Routes, _excerpt, dead_letter_record
from engine.model.timeutil import format_time
from engine.model.topology import Element, Topology
from engine.rules.compiler import Program, compile_rulesets
from engine.rules.schema import Ruleset, builtin_rulesets, fallback_last

SNAPSHOT_FORMAT = 3
# Formats restore still reads: 2 kept an incident's acknowledgement time as RFC 3339 text
# (``engine.core.incident_state.load_incident`` reads both).
SNAPSHOT_READS = (2, SNAPSHOT_FORMAT)
STUCK_TICKS = 10_000  # ticks at one due time before `advance_to` calls a timer stuck
_HEALTH = {Health.OK: "ok", Health.AT_RISK: "at_risk", Health.DEGRADED: "degraded", Health.DOWN: "down"}


def sla_milestones(urgency: UrgencySettings) -> tuple[float, ...]:
    """Seconds to breach at which an open incident's SLA urgency is re-assessed while its outage
    lasts: a third and two thirds of the way from ``horizon`` to ``urgent``, ``urgent`` (full
    urgency) and 0 (the breach). Four steps at most per incident, so the score follows the clock
    without an ``updated`` record every minute."""
    step = (urgency.horizon - urgency.urgent) / 3
    return (urgency.urgent + 2 * step, urgency.urgent + step, urgency.urgent, 0.0)


def _element_record(el: Element) -> dict[str, Any]:
    return {
        "id": el.id,
        "type": el.type,
        "name": el.name,
        "site": el.site,
        "region": el.region,
        "depends_on": [list(item) if len(item) > 1 else item[0] for item in el.depends_on],
        "labels": dict(el.labels),
    }


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    """What became of the message one ``feed`` took: ``kind`` ``alarm`` or ``samples`` (decoded,
    valid and applied: accepted) or ``invalid`` (refused whole: dead-lettered). ``samples``: the
    samples of a batch applied, ``rejected``: those refused (dead-lettered together); ``failed``: its
    application raised inside the core (a bug: dead-lettered, counted, the core went on)."""

    kind: Literal["alarm", "samples", "invalid"]
    samples: int = 0
    rejected: int = 0
    failed: bool = False

    @property
    def accepted(self) -> bool:
        return self.kind != "invalid"


@dataclass
class Decisions:
    """What one ``feed`` or ``tick`` decided: incident records, dead letters, the parts of the core
    that failed (``faults``: each is also a dead letter) and ``notices``: inputs applied but worth an
    operator's eye (a clear that matches nothing, a stale raise or clear, an event out of order, an
    event time clamped to the receive time), each ``{"kind", "topic", "alarm"|"target", "event_time",
    "detail"}``. ``message``: what became of the message a ``feed`` took (None for anything else)."""

    records: list[IncidentRecord] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    message: MessageOutcome | None = None

    def extend(self, other: Decisions) -> None:
        self.records.extend(other.records)
        self.dead_letters.extend(other.dead_letters)
        self.faults.extend(other.faults)
        self.notices.extend(other.notices)


@dataclass
class Stats:
    messages: Counter[str] = field(default_factory=Counter)  # by outcome: alarm, samples, invalid
    invalid_reasons: Counter[str] = field(default_factory=Counter)  # by first field in error
    samples: int = 0
    samples_rejected: int = 0
    notices: Counter[str] = field(default_factory=Counter)  # by kind (see Decisions.notices)
    internal_errors: int = 0  # messages whose application raised (dead-lettered, core went on)


def fault_dead_letter(fault: Fault, now: float) -> dict[str, Any]:
    """The dead letter of a quarantined part: which part (and item), what it raised, what poisoned
    it and when it is tried again. Its topic is ``<core:part[item]>``."""
    retry = (
        f"retried at {format_time(fault.retry_at)}"
        if fault.retry_at is not None
        else f"no more retries after {fault.failures} failures: a reload tries it again"
    )
    reason = f"{fault.error}; quarantined (failure {fault.failures}), the rest of the core goes on; {retry}"
    err = InvalidMessage(f"<core:{fault.name}>", [(fault.name, reason)])
    record = dead_letter_record(err.topic, fault.poison, err, now=now)
    record["quarantine"] = fault.to_record()
    return record


def _alarm_notice(kind: str, key: str, t: float, other: float | None) -> dict[str, Any]:
    if kind == "clear_unknown":
        detail = "a clear that matches no active alarm (never raised, already cleared or forgotten)"
    elif kind == "stale_raise":
        detail = f"a raise older than the last clear of its alarm ({format_time(other or 0.0)}): ignored"
    else:
        detail = f"a clear older than the active occurrence (raised {format_time(other or 0.0)}): ignored"
    return {"kind": kind, "alarm": key, "event_time": format_time(t), "detail": detail}


class Pipeline:
    def __init__(
        self,
        topology: Topology,
        rulesets: Sequence[Ruleset],
        settings: CoreSettings | None = None,
        *,
        routes: Routes | None = None,
        max_bytes: int = 65536,
        max_batch: int = 1000,
    ) -> None:
        self.settings = settings or CoreSettings()
        self.topology = topology
        builtins = builtin_rulesets(inference=self.settings.quality.inference.enabled)
        self.program: Program = compile_rulesets(fallback_last([*rulesets, *builtins]))
        self.decoder = Decoder(
            routes=routes or Routes(),
            max_bytes=max_bytes,
            max_batch=max_batch,
            known_elements=topology,
            known_services=topology.service_types,
            known_customers=topology.has_customer,
        )
        self.alarms = AlarmTable(self.settings.alarms)
        # A part that raises is quarantined alone and retried with backoff (engine.core.containment).
        self.quarantine = Quarantine()
        self._last_input: tuple[str, Any] | None = None  # (topic, payload): named when a part fails
        self._event_watermark = 0.0  # the latest event time applied: older by > tolerance is late
        self.correlator = Correlator(self.program, topology, grace=self.settings.reorder_tolerance)
        self._own: dict[str, Health] = {}  # element -> its own health, from alarms about the element
        # service type -> element -> health, from alarms about one service on the element (the
        # engine's per-service KQI alarms): they degrade that service through the element only
        self._own_by_service: dict[str, dict[str, Health]] = {}
        self._by_element: dict[str, set[str]] = {}
        rules = list(self.program.rules.values())
        mode = self.settings.quality.element_alarms
        kpi_rules = any(r.form == "kpi_threshold" for r in rules)
        self.quality = ServiceQuality(
            topology,
            self.settings.quality,
            element_alarms=mode == "on" or (mode == "auto" and not kpi_rules),
            quarantine=self.quarantine,
        )
        self.groups = Groups(rules, topology)
        self.inhibitions = Inhibitions(rules, topology)
        self.storms = Storms(rules, topology)
        self.pairs = Pairs(rules, topology)
        self.breaches = Breaches(rules, topology)
        self.calendar = Calendar(rules, topology)
        self.incidents = IncidentBook(
            topology,
            self.settings.incidents,
            self.settings.priority,
            self.alarms.get,
            self._own,
            service_health=self._own_by_service,
            calendar=self.calendar,
            overrides=Overrides(rules, topology),
            parts=self.correlator.parts,
            sla=self.quality.sla_facts,
            sla_milestones=sla_milestones(self.settings.quality.sla.urgency),
            quarantine=self.quarantine,
        )
        self.kpis = KpiStore()
        self.stats = Stats()
        self.clock = 0.0  # the latest `now` seen; time never goes backwards inside the core
        self._query = CoreQuery(self)

    @property
    def query(self) -> CoreQuery:
        """The core's read-only query interface (``engine.core.query``): what anything outside the
        core may read of its state."""
        return self._query

    # -- input ---------------------------------------------------------------------------------
    def feed(
        self, topic: str, payload: bytes | str | Mapping[str, Any], now: float, *, flush: bool = True
    ) -> Decisions:
        """Decode one message and apply it at ``now``, the time it was received. Never raises: bad
        input becomes a dead letter, and so does a message whose application fails inside the core
        (a bug: contained, counted, the core goes on).

        ``flush=False`` leaves the timers that are due by ``now`` for the next ``tick``: the daemon
        applies a restart's backlog that way, so a timer that fell due while it was down (a symptom's
        incident opening) waits until the backlog (its root) is in."""
        received = now
        now = self._advance(now)
        out = Decisions()
        try:
            decoded = self._on_time(self.decoder.decode(topic, payload), received, out)
        except InvalidMessage as err:
            self.stats.messages["invalid"] += 1
            self.stats.invalid_reasons[err.errors[0][0] or "message"] += 1
            out.dead_letters.append(dead_letter_record(topic, payload, err, now=now))
            out.message = MessageOutcome("invalid")
            return self._done(out, now)
        self._last_input = (topic, payload)
        try:
            self._apply(decoded, topic, payload, now, out)
        except Exception as exc:  # containment: the message is the poison; it is named and dropped
            self.stats.internal_errors += 1
            if out.message is not None:
                out.message = replace(out.message, failed=True)
            reason = f"internal error while applying it: {type(exc).__name__}: {exc}"
            failure = InvalidMessage(topic, [("", reason)])
            out.dead_letters.append(dead_letter_record(topic, payload, failure, now=now))
        if flush:
            out.records.extend(self._flush(now))
        return self._done(out, now)

    def _apply(
        self,
        decoded: Decoded,
        topic: str,
        payload: bytes | str | Mapping[str, Any],
        now: float,
        out: Decisions,
    ) -> None:
        if decoded.alarm is not None:
            self.stats.messages["alarm"] += 1
            out.message = MessageOutcome("alarm")
            self._late(topic, decoded.alarm.event_time, f"alarm {decoded.alarm.ne_id}", out)
            out.records.extend(self.apply_alarm(decoded.alarm, now))
        else:
            self.stats.messages["samples"] += 1
            out.message = MessageOutcome("samples")
            if decoded.samples:
                self._late(topic, decoded.samples[0].time, f"sample of {decoded.samples[0].target}", out)
            for sample in decoded.samples:
                self.kpis.observe(sample)
                self.quality.observe(sample)
                for syn in self.breaches.observe(sample):
                    out.records.extend(self._apply_synthetic(syn, now))
            self.stats.samples += len(decoded.samples)
            out.message = MessageOutcome("samples", len(decoded.samples), len(decoded.rejected))
            if decoded.rejected:
                self.stats.samples_rejected += len(decoded.rejected)
                partial = InvalidMessage(topic, list(decoded.rejected))
                out.dead_letters.append(dead_letter_record(topic, payload, partial, now=now))

    # -- event times against the receive time ----------------------------------------------------
    def _on_time(self, decoded: Decoded, received: float, out: Decisions) -> Decoded:
        """Event times beyond ``core.clock`` bounds of the receive time: clamped to it (a notice)
        or refused (``InvalidMessage``), per ``clock.ahead`` / ``clock.behind``."""
        if decoded.alarm is not None:
            t = self._clock_check(decoded.topic, "event_time", decoded.alarm.event_time, received, out)
            if t is None:
                return decoded
            alarm = decoded.alarm.model_copy(update={"event_time": t})
            return Decoded(decoded.topic, decoded.kind, alarm, (), ())
        samples: list[KpiSample] = []
        changed = False
        rejected = list(decoded.rejected)
        # Positions are those of the batch when none of it was rejected (else they are unknown here).
        batch = len(decoded.samples) > 1 or bool(decoded.rejected)
        for i, sample in enumerate(decoded.samples):
            field_name = ("samples[].time" if decoded.rejected else f"samples[{i}].time") if batch else "time"
            try:
                t = self._clock_check(decoded.topic, field_name, sample.time, received, out)
            except InvalidMessage as err:
                rejected.extend(err.errors)
                changed = True
                continue
            if t is not None:
                changed = True
            samples.append(sample if t is None else sample.model_copy(update={"time": t}))
        if not changed:
            return decoded
        if not samples:
            raise InvalidMessage(decoded.topic, rejected)
        return Decoded(decoded.topic, decoded.kind, None, tuple(samples), tuple(rejected))

    def _clock_check(
        self, topic: str, field_name: str, t: float, received: float, out: Decisions
    ) -> float | None:
        """None when ``t`` is within bounds, else the receive time (clamp) or ``InvalidMessage``."""
        c = self.settings.clock
        if t > received + c.max_ahead:
            kind, policy, bound = "clock_ahead", c.ahead, f"core.clock.max_ahead {c.max_ahead:g} s"
            gap = f"{t - received:.0f} s ahead of"
        elif c.max_behind is not None and t < received - c.max_behind:
            kind, policy, bound = "clock_behind", c.behind, f"core.clock.max_behind {c.max_behind:g} s"
            gap = f"{received - t:.0f} s behind"
        else:
            return None
        detail = f"{format_time(t)} is {gap} the receive time {format_time(received)} ({bound})"
        if policy == "reject":
            self.stats.notices[kind + "_rejected"] += 1
            raise InvalidMessage(topic, [(field_name, detail)])
        self.stats.notices[kind] += 1
        out.notices.append(
            {
                "kind": kind,
                "topic": topic,
                "field": field_name,
                "event_time": format_time(t),
                "detail": detail + "; applied at the receive time",
            }
        )
        return received

    def _late(self, topic: str, t: float, what: str, out: Decisions) -> None:
        """An event older than the latest one applied by more than ``reorder_tolerance``: applied at
        the current clock (its own time still orders it among its alarm's raises and clears)."""
        tolerance = self.settings.reorder_tolerance
        if t < self._event_watermark - tolerance:
            self.stats.notices["late"] += 1
            out.notices.append(
                {
                    "kind": "late",
                    "topic": topic,
                    "event_time": format_time(t),
                    "detail": f"{what} at {format_time(t)} arrived after events up to "
                    f"{format_time(self._event_watermark)} (reorder tolerance {tolerance:g} s)",
                }
            )
        else:
            self._event_watermark = max(self._event_watermark, t)

    def _done(self, out: Decisions, now: float) -> Decisions:
        """Collect what the parts reported during this step: alarm notices and new faults."""
        if self.alarms.notices:
            for kind, key, t, other in self.alarms.notices:
                self.stats.notices[kind] += 1
                out.notices.append(_alarm_notice(kind, key, t, other))
            self.alarms.notices.clear()
        for fault in self.quarantine.take():
            out.faults.append(fault)
            out.dead_letters.append(fault_dead_letter(fault, now))
        return out

    def apply_alarm(self, alarm: Alarm, now: float) -> list[IncidentRecord]:
        """Apply a validated alarm (the HTTP and replay adapters may call this directly)."""
        records: list[IncidentRecord] = []
        for change in self.alarms.apply(alarm, now):
            records.extend(self._on_change(change, now))
        return records

    def _apply_synthetic(self, syn: Synthetic, now: float) -> list[IncidentRecord]:
        """An alarm a rule raised or cleared (storm, escalation, KPI breach) goes the normal way."""
        records: list[IncidentRecord] = []
        for change in self.alarms.apply(syn.alarm, now, effect=syn.effect):
            records.extend(self._on_change(change, now))
        return records

    def tick(self, now: float) -> Decisions:
        """Advance time: flapping ends, facts expire, incidents open, update and resolve."""
        now = self._advance(now)
        out = Decisions()
        out.records.extend(self._contained("alarms", now, partial(self._alarms_tick, now)))
        out.records.extend(self._flush(now))
        return self._done(out, now)

    def _alarms_tick(self, now: float) -> list[IncidentRecord]:
        records: list[IncidentRecord] = []
        for change in self.alarms.tick(now):
            records.extend(self._on_change(change, now))
        return records

    def _contained(
        self, part: str, now: float, fn: Callable[[], list[IncidentRecord]]
    ) -> list[IncidentRecord]:
        """A whole part's step, quarantined when it raises (named with the latest input)."""
        return self.quarantine.run(part, "", now, fn, [], poison=self._poison)

    def _poison(self) -> str:
        if self._last_input is None:
            return "no input yet"
        topic, payload = self._last_input
        text, _ = _excerpt(payload)
        return f"latest input before the failure: {topic} {text[:400]}"

    def next_due(self) -> float | None:
        dues = [d for d in self._dues().values() if d]
        return min(dues) if dues else None

    def _dues(self) -> dict[str, float | None]:
        """Each timed part's next due time, by name; a quarantined part's is its retry."""
        dues = {
            "alarms": self.alarms.next_due(),
            "correlator": self.correlator.next_due(),
            "incidents": self.incidents.next_due(),
            "storms": self.storms.next_due(),
            "pairs": self.pairs.next_due(),
            "quality": self.quality.next_due(),
        }
        if self.quarantine:
            return {name: self.quarantine.due(name, due) for name, due in dues.items()}
        return dues

    def drain(self, *, limit: float = 366 * 86400.0) -> Decisions:
        """Advance the clock until nothing is pending (end of a replay), at most ``limit`` seconds."""
        return self.advance_to(self.clock + limit)

    def advance_to(self, t: float) -> Decisions:
        """Fire every timer due at or before ``t``, in time order (replay, rule tests, drain).

        Raises ``EngineError`` naming the parts whose timer does not move when the same due time
        comes back ``STUCK_TICKS`` times in a row: a bug, reported instead of spinning forever."""
        out = Decisions()
        last, repeats = None, 0
        while (due := self.next_due()) is not None and due <= t:
            repeats = repeats + 1 if due == last else 0
            if repeats > STUCK_TICKS:
                raise EngineError(self.stuck(due))
            last = due
            out.extend(self.tick(max(due, self.clock)))
        return out

    def stuck(self, due: float) -> str:
        """Which parts report ``due`` and do not move past it (for the error and the daemon's log)."""
        names = sorted(name for name, d in self._dues().items() if d is not None and d <= due)
        return f"timer stuck at {format_time(due)}: {', '.join(names) or 'unknown part'} does not advance"

    # -- internals -----------------------------------------------------------------------------
    def _advance(self, now: float) -> float:
        self.clock = max(self.clock, now)
        return self.clock

    def _on_change(self, change: AlarmChange, now: float) -> list[IncidentRecord]:
        alarm = change.alarm
        if change.kind == "raised":
            self._index(alarm)
            self._update_health(alarm.ne_id, now)
            return self._correlate(alarm, now, arrival=True)
        if change.kind == "cleared":
            self.correlator.cleared(alarm, now)
            self.incidents.cleared(alarm, now)
            self._update_health(alarm.ne_id, now)
            self.inhibitions.cleared(alarm.key)
            return self._pair_outcome(self.pairs.cleared(alarm, alarm.cleared_time or now), now)
        if change.kind == "severity":
            # Facts carry severity and effect: re-assert them; new pairs may form (minor → critical).
            if change.previous_effect != alarm.effect:
                self._update_health(alarm.ne_id, now)
            self.incidents.changed(alarm)
            return self._correlate(alarm, now)
        if change.kind in ("flapping", "unflapped"):
            self.incidents.changed(alarm)
        return []

    def _correlate(
        self, alarm: ActiveAlarm, now: float, t: float | None = None, *, arrival: bool = False
    ) -> list[IncidentRecord]:
        """Every rule form looks at an alarm occurrence (``t``: as of when; default its first raise).

        Thresholds count and pairs wait for *arrivals* (new occurrences) only: an alarm that
        re-surfaces or changes severity is not a new event for them."""
        explanations = self.correlator.observe(alarm, now, t=t)
        parts = self.correlator.classify(alarm)
        when = alarm.first_seen if t is None else t
        grouped, starts = self.groups.observe(alarm, parts, when, now)
        explanations.extend(grouped)
        explanations.extend(self.inhibitions.observe(alarm, parts, when))
        storms, members = self.storms.observe(alarm, parts, when) if arrival else ([], [])
        paired = self.pairs.observe(alarm, parts, when) if arrival else PairOutcome()
        records = self.incidents.raised(alarm, explanations, now)
        for start in starts:
            self.incidents.start_group(start.anchor, start.wait, start.interval, now)
        for syn in storms:
            records.extend(self._apply_synthetic(syn, now))
        records.extend(self._explain(members, now))
        records.extend(self._pair_outcome(paired, now))
        return records

    def _explain(self, explanations: list[Explanation], now: float) -> list[IncidentRecord]:
        return self.incidents.explain(explanations, now) if explanations else []

    def _pair_outcome(self, out: PairOutcome, now: float) -> list[IncidentRecord]:
        records: list[IncidentRecord] = []
        for key, until in out.holds:
            self.incidents.hold(key, until)
        for syn in out.synthetics:
            records.extend(self._apply_synthetic(syn, now))
        records.extend(self._explain(out.explanations, now))
        for key, _rule in out.discards:
            records.extend(self._resurface(self.incidents.discard(key), now))
        return records

    def _resurface(self, released: list[str], now: float) -> list[IncidentRecord]:
        """Alarms whose incident went away: facts go; those still active are correlated again, as of now."""
        records: list[IncidentRecord] = []
        for key in released:
            self.correlator.forget(key)
            self.groups.release(key)
        for key in released:
            alarm = self.alarms.get(key)
            if alarm is not None and alarm.active:
                records.extend(self._correlate(alarm, now, t=now))
        return records

    def _flush(self, now: float) -> list[IncidentRecord]:
        """Every timed part's due work, each contained: a part that raises is quarantined (and
        retried with backoff) while the others go on."""
        contained = self._contained
        contained("correlator", now, partial(self._correlator_tick, now))
        contained("groups", now, partial(self._groups_tick, now))
        records = contained("storms", now, partial(self._storms_tick, now))
        records.extend(contained("pairs", now, partial(self._pairs_tick, now)))
        if (due := self.quality.next_due()) is not None and due <= now:
            records.extend(contained("quality", now, partial(self._quality_tick, now)))
        records.extend(contained("incidents", now, partial(self._incidents_tick, now)))
        return records

    def _correlator_tick(self, now: float) -> list[IncidentRecord]:
        self.correlator.tick(now)
        return []

    def _groups_tick(self, now: float) -> list[IncidentRecord]:
        self.groups.tick(now)
        return []

    def _storms_tick(self, now: float) -> list[IncidentRecord]:
        records: list[IncidentRecord] = []
        for syn in self.storms.tick(now):
            records.extend(self._apply_synthetic(syn, now))
        return records

    def _pairs_tick(self, now: float) -> list[IncidentRecord]:
        return self._pair_outcome(self.pairs.tick(now), now)

    def _quality_tick(self, now: float) -> list[IncidentRecord]:
        records: list[IncidentRecord] = []
        for syn in self.quality.tick(now, self._alarmed()):
            records.extend(self._apply_synthetic(syn, now))
        return records

    def _incidents_tick(self, now: float) -> list[IncidentRecord]:
        records, released = self.incidents.tick(now)
        # A resolved incident explains nothing more: its alarms' facts go; those still active are
        # correlated again, as of now, and may form new incidents.
        while released:
            records.extend(self._resurface(released, now))
            more, released = self.incidents.tick(now)
            records.extend(more)
        return records

    def _alarmed(self) -> set[str]:
        """Elements with an active alarm that has an effect, other than service quality's own."""
        out = set()
        for ne, keys in self._by_element.items():
            for key in keys:
                a = self.alarms.get(key)
                if (
                    a is not None
                    and a.active
                    and a.effect != "none"
                    and raised_by(key) not in QUALITY_SOURCES
                ):
                    out.add(ne)
                    break
        return out

    def _index(self, alarm: ActiveAlarm) -> None:
        self._by_element.setdefault(alarm.ne_id, set()).add(alarm.key)

    def _update_health(self, ne_id: str, now: float) -> None:
        worst = Health.OK
        per_service: dict[str, Health] = {}
        keys = self._by_element.get(ne_id, set())
        for key in list(keys):
            a = self.alarms.get(key)
            if a is None:
                keys.discard(key)
                continue
            if a.active and a.effect in EFFECT_HEALTH:
                level = EFFECT_HEALTH[a.effect]
                service = service_scope(key)
                if service is None:
                    worst = max(worst, level)
                else:
                    per_service[service] = max(per_service.get(service, Health.OK), level)
        before = self._own.get(ne_id, Health.OK)
        if worst == Health.OK:
            self._own.pop(ne_id, None)
        else:
            self._own[ne_id] = worst
        services_before = {s: m[ne_id] for s, m in self._own_by_service.items() if ne_id in m}
        for service in set(services_before) | set(per_service):
            levels = self._own_by_service.setdefault(service, {})
            if service in per_service:
                levels[ne_id] = per_service[service]
            else:
                levels.pop(ne_id, None)
            if not levels:
                del self._own_by_service[service]
        if worst != before or services_before != per_service:
            self.incidents.health_changed(ne_id)
        if worst != before and self.quality.tracks_sla:
            self.quality.health_changed(ne_id, self.health_view(), now)

    def own_health(self) -> dict[str, Health]:
        """Each element's own health from its active alarms (a copy; elements at OK are absent)."""
        return dict(self._own)

    def health_view(self, service: str | None = None) -> HealthView:
        """Effective health of the network, for one service type when given: the element-level
        alarms plus those about that service only (a voice KQI alarm degrades voice, not internet)."""
        services = () if service is None else (service,)
        return HealthView(self.topology, with_service_levels(self._own, self._own_by_service, services))

    # -- commands ------------------------------------------------------------------------------
    def acknowledge(self, incident_id: str, by: str, note: str | None, now: float) -> IncidentRecord | None:
        """An operator acknowledged an open incident: returns its `updated` record, None if not open,
        its `current` record (no new version) when the same person acknowledges it again."""
        now = self._advance(now)
        return self.incidents.acknowledge(incident_id, by, note, now)

    def silence(self, command: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Add, update or expire a silence (a maintenance window added at run time, see
        ``engine.core.forms.silences``). ``command`` is ``{"op": "set", "silence": {...}, "replaces": id}``
        or ``{"op": "expire", "id": id}``. Returns ``{"id": ...}`` or ``{"error": ..., "not_found": bool}``;
        incidents held or muted by maintenance are re-assessed at their next tick."""
        now = self._advance(now)
        silences = self.calendar.silences
        if command["op"] == "expire":
            sid = str(command["id"])
            error = silences.expire(sid, now)
            result: dict[str, Any] = {"id": sid} if error is None else {"error": error}
        else:
            new = Silence.from_json(command["silence"])
            got, error = silences.set(new, now, replaces=command.get("replaces"))
            result = {"id": got} if error is None else {"error": error}
        if error is None:
            self.incidents.maintenance_changed()
        else:
            result["not_found"] = error.endswith("not found")
        return result

    def on_resolved(self, hook: Callable[[Incident, IncidentRecord], None] | None) -> None:
        """Call ``hook(incident, record)`` as each incident resolves, before its state goes (the
        daemon's post-mortem explanations, ``engine.core.explain.PostMortems``)."""
        self.incidents.on_resolved = hook

    def retry_quarantined(self) -> None:
        """Forget every quarantined part: each is tried again at once (a reload does this)."""
        self.quarantine.load(())

    # -- views (for the HTTP API) --------------------------------------------------------------
    def element_view(self, ne_id: str) -> dict[str, Any] | None:
        """An element, its health, its active alarms and the incidents that involve it now."""
        if ne_id not in self.topology:
            return None
        el = self.topology.element(ne_id)
        view = self.health_view()
        alarms = []
        for key in sorted(self._by_element.get(ne_id, ())):
            a = self.alarms.get(key)
            if a is None or not a.active:
                continue
            sup = self.incidents.suppression(key)
            alarms.append(
                {
                    "alarm_id": key,
                    "severity": a.severity,
                    "probable_cause": a.probable_cause,
                    "event_type": a.event_type,
                    "effect": a.effect,
                    "first_seen": format_time(a.first_seen),
                    "last_seen": format_time(a.last_seen),
                    "count": a.count,
                    "flapping": a.flapping,
                    "suppressed_by": sup.root if sup else None,
                }
            )
        return {
            "element": _element_record(el),
            "health": {
                "own": _HEALTH[self._own.get(ne_id, Health.OK)],
                "effective": _HEALTH[view.health(ne_id)],
                # alarms about one service on this element (KQI alarms): that service only
                "services": {
                    s: _HEALTH[levels[ne_id]]
                    for s, levels in sorted(self._own_by_service.items())
                    if ne_id in levels
                },
            },
            "alarms": alarms,
            "incidents": self._incidents_touching({ne_id}),
        }

    def customer_view(self, customer_id: str) -> dict[str, Any] | None:
        """A customer, the state of each of its services, and the incidents affecting it now."""
        if not self.topology.has_customer(customer_id):
            return None
        c = self.topology.customer(customer_id)
        services = {}
        touching = {c.access}
        for s in c.services:
            touching.update(self.topology.service_types[s].platform)
            level = self.health_view(s).service(self.topology, c.access, s)
            services[s] = _HEALTH[level]
        return {
            "customer": {
                "id": c.id,
                "name": c.name,
                "tier": c.tier,
                "access": c.access,
                "services": list(c.services),
            },
            "services": services,
            "incidents": self._incidents_touching(touching),
        }

    def _incidents_touching(self, elements: set[str]) -> list[dict[str, Any]]:
        out = []
        for inc in self.incidents.incidents():
            if inc.phase == "resolved":
                continue
            affected = set(inc.impact.elements) if inc.impact is not None else set()
            on = {a.ne_id for k in inc.members if (a := self.alarms.get(k)) is not None}
            if elements & (affected | on):
                p = inc.priority
                out.append(
                    {
                        "incident_id": inc.id,
                        "phase": inc.phase,
                        "state": inc.state,
                        "priority": p.priority if p else None,
                        "score": p.score if p else None,
                        "root": inc.root,
                    }
                )
        return sorted(out, key=lambda r: (r["priority"] or 9, r["incident_id"]))

    # -- snapshot ------------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The core's whole state as JSON bytes: restoring it into a pipeline built from the same
        topology and rulesets continues exactly as this one would (same records, byte for byte)."""
        state = {
            "format": SNAPSHOT_FORMAT,
            "clock": self.clock,
            "alarms": self.alarms.dump(),
            "incidents": self.incidents.dump(),
            "correlator": self.correlator.dump(),
            "own": {ne: int(h) for ne, h in self._own.items()},
            "own_by_service": {
                s: {ne: int(h) for ne, h in m.items()} for s, m in self._own_by_service.items()
            },
            "by_element": {ne: sorted(keys) for ne, keys in self._by_element.items()},
            "kpis": self.kpis.dump(),
            "forms": {
                "groups": self.groups.dump(),
                "inhibitions": self.inhibitions.dump(),
                "storms": self.storms.dump(),
                "pairs": self.pairs.dump(),
                "breaches": self.breaches.dump(),
            },
            "quality": self.quality.dump(),
            "silences": self.calendar.silences.dump(),
            "quarantine": self.quarantine.dump(),
            "event_watermark": self._event_watermark,
            "stats": {
                "messages": dict(self.stats.messages),
                "invalid_reasons": dict(self.stats.invalid_reasons),
                "samples": self.stats.samples,
                "samples_rejected": self.stats.samples_rejected,
                "notices": dict(self.stats.notices),
                "internal_errors": self.stats.internal_errors,
            },
        }
        return orjson.dumps(state)

    def restore(self, blob: bytes) -> dict[str, int]:
        """Load a snapshot into this fresh pipeline. Re-asserts the correlation facts into
        durable-rules without applying what they match again. With a changed topology, state on
        elements that no longer exist is dropped; the counts are returned."""
        state = orjson.loads(blob)
        if state.get("format") not in SNAPSHOT_READS:
            raise EngineError(
                f"snapshot format {state.get('format')!r} is not {SNAPSHOT_FORMAT}: cannot restore"
            )
        self.clock = state["clock"]
        dropped_alarms = self.alarms.load(state["alarms"], keep=lambda ne: ne in self.topology)
        self._by_element = {ne: set(keys) for ne, keys in state["by_element"].items() if ne in self.topology}
        self._own.clear()
        self._own.update({ne: Health(h) for ne, h in state["own"].items() if ne in self.topology})
        self._own_by_service.clear()
        for service, levels in state.get("own_by_service", {}).items():
            kept = {ne: Health(h) for ne, h in levels.items() if ne in self.topology}
            if kept:
                self._own_by_service[service] = kept
        dropped_incidents = self.incidents.load(state["incidents"])
        self.correlator.load(state["correlator"], self.alarms.get)
        self.kpis.load(state["kpis"])
        forms = state["forms"]
        self.groups.load(forms["groups"])
        self.inhibitions.load(forms["inhibitions"])
        self.storms.load(forms["storms"])
        self.pairs.load(forms["pairs"])
        self.breaches.load(forms["breaches"])
        self.quality.load(state["quality"])
        self.calendar.silences.load(state.get("silences", ()))
        self.quarantine.load(state.get("quarantine", ()))
        self._event_watermark = state.get("event_watermark", 0.0)
        st = state["stats"]
        self.stats.messages = Counter(st["messages"])
        self.stats.invalid_reasons = Counter(st["invalid_reasons"])
        self.stats.samples, self.stats.samples_rejected = st["samples"], st["samples_rejected"]
        self.stats.notices = Counter(st.get("notices", {}))
        self.stats.internal_errors = st.get("internal_errors", 0)
        return {"alarms_dropped": dropped_alarms, "incidents_dropped": dropped_incidents}

    def close(self) -> None:
        """Free the rule engine's state (durable-rules holds it outside Python's memory)."""
        self.correlator.close()

    def summary(self) -> dict[str, Any]:
        c = self.alarms.counters
        alarms_in = self.stats.messages["alarm"]
        opened = self.incidents.opened
        return {
            "messages": sum(self.stats.messages.values()),
            "alarm_messages": alarms_in,
            "sample_messages": self.stats.messages["samples"],
            "samples": self.stats.samples,
            "invalid": self.stats.messages["invalid"],
            "samples_rejected": self.stats.samples_rejected,
            "alarms_raised": c.raised,
            "alarms_repeated": c.repeated,
            "alarms_cleared": c.cleared,
            "clears_unknown": c.clear_unknown,
            "stale": c.stale,
            "stale_clears": c.stale_clears,
            "late_events": self.stats.notices["late"],
            "clock_clamped": self.stats.notices["clock_ahead"] + self.stats.notices["clock_behind"],
            "clock_rejected": self.stats.notices["clock_ahead_rejected"]
            + self.stats.notices["clock_behind_rejected"],
            "internal_errors": self.stats.internal_errors,
            "part_failures": self.quarantine.failures,
            "quarantined": [f.name for f in self.quarantine.faults()],
            "flapping": c.flapping,
            "incidents_opened": opened,
            "incidents_resolved": self.incidents.resolved,
            "incidents_merged": self.incidents.merged,
            "incidents_discarded": self.incidents.discarded,
            "incidents_held_by_maintenance": self.incidents.held_back,
            "storms": self.storms.fired,
            "pair_timeouts": self.pairs.timeouts,
            "pairs_completed": self.pairs.paired,
            "inhibited": self.inhibitions.inhibited,
            "kpi_breaches": self.breaches.raised,
            "kqi_evaluations": self.quality.evaluations,
            "degradations_inferred": self.quality.inferred,
            "raise_messages": c.raise_messages,
            "compression": round(c.raise_messages / opened, 2) if opened else None,
            "occurrences_per_incident": round(c.raised / opened, 2) if opened else None,
            "rule_firings": self.correlator.host.firings,
        }
