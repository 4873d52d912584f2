"""The pure core, end to end: ``feed(topic, payload, now)`` and ``tick(now)`` return decisions.

Like h11's connection, the pipeline does no I/O and reads no clock. An adapter (replay, MQTT, HTTP)
feeds it messages with the time it received them and calls ``tick`` when ``next_due()`` says a
timer is due. Everything it decides comes back in ``Decisions``: incident records to publish and
dead-letter records for rejected input. Same inputs, same times → same decisions, byte for byte.

Data flow: messages.Decoder → eventtime.EventTimes → alarms.AlarmTable → the rule forms, in the
order of their registry (``engine.core.forms.registry``: the correlator on durable-rules, group,
threshold, pair, inhibit, kpi_threshold; each observes the fact and returns an ``Outcome``) →
incidents.IncidentBook (impact, priority; maintenance and priority overrides) → records. KPI samples
→ kpi.KpiStore, quality.ServiceQuality and the forms. The pipeline names no form: it loops over the
registry; ``views`` builds what the HTTP API shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

from engine.core.alarms import ActiveAlarm, AlarmChange, AlarmTable
from engine.core.containment import Quarantine
from engine.core.decisions import Decisions, MessageOutcome, Stats, fault_dead_letter
from engine.core.eventtime import EventTimes
from engine.core.experience import UrgencySettings
from engine.core.forms.base import Cleared, Fact, Form, FormContext, Outcome, Raised, Released
from engine.core.forms.correlator import Correlator
from engine.core.forms.maintenance import Calendar
from engine.core.forms.overrides import Overrides
from engine.core.forms.registry import FORMS, Builder, Forms
from engine.core.forms.synthetic import Synthetic
from engine.core.health import ElementHealth
from engine.core.impact import Health, HealthView
from engine.core.incidents import Incident, IncidentBook, IncidentRecord
from engine.core.kpi import KpiStore
from engine.core.quality import ServiceQuality
from engine.core.query import CoreQuery
from engine.core.settings import CoreSettings
from engine.core.snapshot import SNAPSHOT_FORMAT, restore, snapshot
from engine.core.views import customer_view, element_view, summary
from engine.errors import EngineError, InvalidMessage
from engine.model.messages import Alarm, Decoded, Decoder, Routes, dead_letter_record, payload_excerpt
from engine.model.timeutil import format_time
from engine.model.topology import Topology
from engine.rules.compiler import Program, compile_rulesets
from engine.rules.schema import Ruleset, builtin_rulesets, fallback_last

__all__ = [
    "SNAPSHOT_FORMAT",
    "Decisions",
    "MessageOutcome",
    "Pipeline",
    "Stats",
    "fault_dead_letter",
    "sla_milestones",
]

STUCK_TICKS = 10_000  # ticks at one due time before `advance_to` calls a timer stuck
F = TypeVar("F")


def sla_milestones(urgency: UrgencySettings) -> tuple[float, ...]:
    """Seconds to breach at which an open incident's SLA urgency is re-assessed while its outage
    lasts: a third and two thirds of the way from ``horizon`` to ``urgent``, ``urgent`` (full
    urgency) and 0 (the breach). Four steps at most per incident, so the score follows the clock
    without an ``updated`` record every minute."""
    step = (urgency.horizon - urgency.urgent) / 3
    return (urgency.urgent + 2 * step, urgency.urgent + step, urgency.urgent, 0.0)


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
        forms: Sequence[Builder] = FORMS,
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
        self.stats = Stats()
        self.times = EventTimes(self.settings, self.stats)
        ctx = FormContext(self.program, topology, self.alarms.get, grace=self.settings.reorder_tolerance)
        self.forms = Forms(forms, ctx)
        self.correlator = self.form(Correlator)
        self.calendar = self.form(Calendar)
        self.health = ElementHealth(topology, self.alarms.get)
        mode = self.settings.quality.element_alarms
        kpi_rules = any(r.form == "kpi_threshold" for r in self.program.rules.values())
        self.quality = ServiceQuality(
            topology,
            self.settings.quality,
            element_alarms=mode == "on" or (mode == "auto" and not kpi_rules),
            quarantine=self.quarantine,
        )
        self.incidents = IncidentBook(
            topology,
            self.settings.incidents,
            self.settings.priority,
            self.alarms.get,
            self.health.own,
            service_health=self.health.by_service,
            calendar=self.calendar,
            overrides=self.forms.find(Overrides),
            parts=self.correlator.parts,
            sla=self.quality.sla_facts,
            sla_milestones=sla_milestones(self.settings.quality.sla.urgency),
            quarantine=self.quarantine,
        )
        self.kpis = KpiStore()
        self.clock = 0.0  # the latest `now` seen; time never goes backwards inside the core
        self._query = CoreQuery(self)

    @property
    def query(self) -> CoreQuery:
        """The core's read-only query interface (``engine.core.query``): what anything outside the
        core may read of its state."""
        return self._query

    def form(self, kind: type[F]) -> F:
        """The pipeline's form of that class (``EngineError`` when its registry has none)."""
        found = self.forms.find(kind)
        if found is None:
            raise EngineError(f"the form registry has no {kind.__name__}: the pipeline needs one")
        return found

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
            decoded = self.times.on_time(self.decoder.decode(topic, payload), received, out)
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
            self.times.late(topic, decoded.alarm.event_time, f"alarm {decoded.alarm.ne_id}", out)
            out.records.extend(self.apply_alarm(decoded.alarm, now))
            return
        self.stats.messages["samples"] += 1
        out.message = MessageOutcome("samples")
        if decoded.samples:
            self.times.late(topic, decoded.samples[0].time, f"sample of {decoded.samples[0].target}", out)
        for sample in decoded.samples:
            self.kpis.observe(sample)
            self.quality.observe(sample)
            out.records.extend(self._observe(sample, now))
        self.stats.samples += len(decoded.samples)
        out.message = MessageOutcome("samples", len(decoded.samples), len(decoded.rejected))
        if decoded.rejected:
            self.stats.samples_rejected += len(decoded.rejected)
            partial = InvalidMessage(topic, list(decoded.rejected))
            out.dead_letters.append(dead_letter_record(topic, payload, partial, now=now))

    def _done(self, out: Decisions, now: float) -> Decisions:
        """Collect what the parts reported during this step: alarm notices and new faults."""
        if self.alarms.notices:
            for notice in self.alarms.notices:
                self.stats.notices[notice.kind] += 1
                out.notices.append(notice)
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

    # -- time ----------------------------------------------------------------------------------
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
        text, _ = payload_excerpt(payload)
        return f"latest input before the failure: {topic} {text[:400]}"

    def next_due(self) -> float | None:
        dues = [d for d in self._dues().values() if d]
        return min(dues) if dues else None

    def _dues(self) -> dict[str, float | None]:
        """Each timed part's next due time, by name; a quarantined part's is its retry."""
        dues = {
            "alarms": self.alarms.next_due(),
            **self.forms.next_due(),
            "incidents": self.incidents.next_due(),
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

    def _advance(self, now: float) -> float:
        self.clock = max(self.clock, now)
        return self.clock

    # -- the forms -----------------------------------------------------------------------------
    def _on_change(self, change: AlarmChange, now: float) -> list[IncidentRecord]:
        alarm = change.alarm
        if change.kind == "raised":
            self.health.index(alarm)
            self._update_health(alarm.ne_id, now)
            return self._correlate(alarm, now, arrival=True)
        if change.kind == "cleared":
            self.incidents.cleared(alarm, now)
            self._update_health(alarm.ne_id, now)
            return self._observe(Cleared(alarm), now)
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
        """Every form looks at an alarm occurrence (``t``: as of when; default its first raise), with
        the rule parts it matches. Thresholds count and pairs wait for *arrivals* (new occurrences)
        only: an alarm that re-surfaces or changes severity is not a new event for them."""
        parts = self.correlator.classify(alarm)
        when = alarm.first_seen if t is None else t
        return self._observe(Raised(alarm, parts, when, arrival), now)

    def _observe(self, fact: Fact, now: float) -> list[IncidentRecord]:
        """Every form observes the fact, then their outcomes are applied in registry order; the
        explanations of a raised alarm go with its raise, so it joins the incident that explains it."""
        outcomes = self.forms.observe(fact, now)
        if isinstance(fact, Raised):
            explanations = [ex for o in outcomes for ex in o.explanations]
            records = self.incidents.raised(fact.alarm, explanations, now)
            for o in outcomes:
                if o:
                    records.extend(self._outcome(o, now, with_explanations=False))
            return records
        records = []
        for o in outcomes:
            if o:
                records.extend(self._outcome(o, now))
        return records

    def _outcome(self, o: Outcome, now: float, *, with_explanations: bool = True) -> list[IncidentRecord]:
        records: list[IncidentRecord] = []
        if with_explanations and o.explanations:
            records.extend(self.incidents.explain(o.explanations, now))
        for start in o.starts:
            self.incidents.start_group(start.anchor, start.wait, start.interval, now)
        for key, until in o.holds:
            self.incidents.hold(key, until)
        for syn in o.alarms:
            records.extend(self._apply_synthetic(syn, now))
        if o.members:
            records.extend(self.incidents.explain(o.members, now))
        for key, _rule in o.discards:
            records.extend(self._resurface(self.incidents.discard(key, now), now))
        return records

    def _resurface(self, released: list[str], now: float) -> list[IncidentRecord]:
        """Alarms whose incident went away: facts go; those still active are correlated again, as of now."""
        records: list[IncidentRecord] = []
        for key in released:
            records.extend(self._observe(Released(key), now))
        for key in released:
            alarm = self.alarms.get(key)
            if alarm is not None and alarm.active:
                records.extend(self._correlate(alarm, now, t=now))
        return records

    def _flush(self, now: float) -> list[IncidentRecord]:
        """Every timed part's due work, each contained: a part that raises is quarantined (and
        retried with backoff) while the others go on."""
        records: list[IncidentRecord] = []
        for form in self.forms.timed:
            records.extend(self._contained(form.name, now, partial(self._tick, form, now)))
        if (due := self.quality.next_due()) is not None and due <= now:
            records.extend(self._contained("quality", now, partial(self._quality_tick, now)))
        records.extend(self._contained("incidents", now, partial(self._incidents_tick, now)))
        return records

    def _tick(self, form: Form, now: float) -> list[IncidentRecord]:
        return self._outcome(form.tick(now), now)

    def _quality_tick(self, now: float) -> list[IncidentRecord]:
        records: list[IncidentRecord] = []
        for syn in self.quality.tick(now, self.health.alarmed()):
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

    # -- health --------------------------------------------------------------------------------
    def _update_health(self, ne_id: str, now: float) -> None:
        changed, own_changed = self.health.update(ne_id)
        if changed:
            self.incidents.health_changed(ne_id)
        if own_changed and self.quality.tracks_sla:
            self.quality.health_changed(ne_id, self.health_view(), now)

    def own_health(self) -> dict[str, Health]:
        """Each element's own health from its active alarms (a copy; elements at OK are absent)."""
        return dict(self.health.own)

    def health_view(self, service: str | None = None) -> HealthView:
        """Effective health of the network, for one service type when given (``ElementHealth.view``)."""
        return self.health.view(service)

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
        result = self.calendar.silences.command(command, now)
        if "error" not in result:
            self.incidents.maintenance_changed()
        return result

    def on_resolved(self, hook: Callable[[Incident, IncidentRecord], None] | None) -> None:
        """Call ``hook(incident, record)`` as each incident resolves, before its state goes (the
        daemon's post-mortem explanations, ``engine.core.explain.PostMortems``)."""
        self.incidents.on_resolved = hook

    def retry_quarantined(self) -> None:
        """Forget every quarantined part: each is tried again at once (a reload does this)."""
        self.quarantine.load(())

    # -- views (engine.core.views) -------------------------------------------------------------
    def element_view(self, ne_id: str) -> dict[str, Any] | None:
        return element_view(self, ne_id)

    def customer_view(self, customer_id: str) -> dict[str, Any] | None:
        return customer_view(self, customer_id)

    def summary(self) -> dict[str, Any]:
        return summary(self)

    # -- snapshot (engine.core.snapshot) -------------------------------------------------------
    def snapshot(self) -> bytes:
        """The core's whole state as JSON bytes: restoring it into a pipeline built from the same
        topology and rulesets continues exactly as this one would (same records, byte for byte)."""
        return snapshot(self)

    def restore(self, blob: bytes) -> dict[str, int]:
        """Load a snapshot into this fresh pipeline (``engine.core.snapshot.restore``): the counts of
        alarms and incidents dropped because their elements left the topology."""
        return restore(self, blob)

    def close(self) -> None:
        """Free the rule engine's state (durable-rules holds it outside Python's memory)."""
        self.forms.close()
