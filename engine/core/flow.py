"""The flow of facts through the core: an alarm change → health, the rule forms, the incident book.

``Pipeline`` decodes a message and hands what it says to its ``Flow``; the flow carries it through
the parts in a fixed order, and its timed parts' due work too. Every decision it makes comes back as
incident records; the order below is part of the decisions (a replay repeats it byte for byte):

* an alarm **raised** → its element's health, then every form observes it (``Raised``, with the
  rule parts the correlator classified it into) before any outcome is applied; the explanations of
  the raise go with it into the book, so it joins the incident that explains it; then the other
  outcomes, in registry order (group starts, holds, alarms the rules raise, members, discards);
* an alarm **cleared** → the book (its assessment freezes), health, then the forms (``Cleared``);
* a **severity** change → health when its effect changed, the book, and the forms again (new pairs
  may form); **flapping** → the book;
* an incident that went away **releases** its alarms: their facts go (``Released``) and those still
  active are correlated again, as of now;
* an alarm **forgotten** by the table (``retain`` after its clear) → its key leaves the element
  index and, unless an incident still holds it, the correlator's classification (else when that
  incident releases it);
* **flush**: each timed form's tick, service quality's, then the book's, each contained (a part that
  raises is quarantined and retried with backoff while the others go on).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from engine.core.alarms import ActiveAlarm, AlarmChange, AlarmTable
from engine.core.containment import Quarantine
from engine.core.forms.base import NOTHING, Cleared, Fact, Form, Outcome, Raised, Released
from engine.core.forms.correlator import Correlator
from engine.core.forms.registry import Forms
from engine.core.forms.synthetic import Synthetic
from engine.core.health import ElementHealth
from engine.core.incidents import IncidentBook, IncidentRecord
from engine.core.quality import ServiceQuality
from engine.model.messages import Alarm, Payload, PlainAlarm, payload_excerpt

__all__ = ["Flow"]


class Flow:
    """Carries alarm changes and timer work through the parts a pipeline owns (it owns none)."""

    def __init__(
        self,
        *,
        alarms: AlarmTable,
        forms: Forms,
        correlator: Correlator,
        health: ElementHealth,
        quality: ServiceQuality,
        incidents: IncidentBook,
        quarantine: Quarantine,
    ) -> None:
        self._alarms = alarms
        self._forms = forms
        self._correlator = correlator
        self._health = health
        self._quality = quality
        self._incidents = incidents
        self._quarantine = quarantine
        self._quarantined = quarantine.held  # its truth: anything quarantined (no method call)
        self._sla_tracked = quality.tracks_sla  # customers to track (the topology's: fixed)
        self.last_input: tuple[str, Payload] | None = None  # (topic, payload): named when a part fails

    # -- alarms --------------------------------------------------------------------------------
    def alarm(self, alarm: Alarm | PlainAlarm, now: float) -> list[IncidentRecord]:
        """A validated alarm (its model, or its fields as the decoder checked them) into the alarm
        table, and each change it makes through the parts."""
        changes = self._alarms.apply(alarm, now)
        if len(changes) == 1:  # the usual message: its one change's records as they are
            return self._on_change(changes[0], now)
        return self._on_changes(changes, now)

    def _on_changes(self, changes: list[AlarmChange], now: float) -> list[IncidentRecord]:
        """Several changes of one message, in order. A ``late_clear`` (always the last) is applied
        even when a change before it fails inside the core (the message is then contained as a
        poison): the clear the table holds for it would otherwise wait for ever, its alarm active."""
        records: list[IncidentRecord] = []
        try:
            for change in changes:
                if change.kind != "late_clear":
                    records.extend(self._on_change(change, now))
        finally:
            for change in changes:
                if change.kind == "late_clear":
                    records.extend(self._on_change(change, now))
        return records

    def sample(self, fact: Fact, now: float) -> list[IncidentRecord]:
        """A KPI sample (already in the KPI store and service quality) through the forms that read
        samples (``Forms.sample_observers``), their outcomes applied in registry order."""
        records: list[IncidentRecord] = []
        for o in self._forms.observe_sample(fact, now):
            if o:
                records.extend(self._outcome(o, now))
        return records

    @property
    def reads_samples(self) -> bool:
        """Whether any form reads KPI samples (else ``sample`` does nothing)."""
        return bool(self._forms.sample_observers)

    def _apply_synthetic(self, syn: Synthetic, now: float) -> list[IncidentRecord]:
        """An alarm a rule raised or cleared (storm, escalation, KPI breach) goes the normal way."""
        return self._on_changes(self._alarms.apply(syn.alarm, now, effect=syn.effect), now)

    def _on_change(self, change: AlarmChange, now: float) -> list[IncidentRecord]:
        alarm = change.alarm
        self._incidents.alarm_changed(alarm.key)  # what its incident derived from it may change
        if change.kind == "raised":
            self._health.index(alarm)
            self._update_health(alarm.ne_id, now)
            return self._correlate(alarm, now, arrival=True)
        if change.kind == "cleared":
            self._incidents.cleared(alarm, now)
            self._update_health(alarm.ne_id, now)
            return self._observe(Cleared(alarm), now)
        if change.kind == "severity":
            # Facts carry severity and effect: re-assert them; new pairs may form (minor → critical).
            if change.previous_effect != alarm.effect:
                self._update_health(alarm.ne_id, now)
            self._incidents.changed(alarm, became_fault=change.previous_effect == "none")
            return self._correlate(alarm, now)
        if change.kind in ("flapping", "unflapped"):
            self._incidents.changed(alarm)
        elif change.kind == "forgotten":
            self._forget(alarm)
        elif change.kind == "late_clear":  # a clear delivered before this raise: now, after it
            records: list[IncidentRecord] = []
            for later in self._alarms.late_clear(alarm.key, now):
                records.extend(self._on_change(later, now))
            return records
        return []

    def _forget(self, alarm: ActiveAlarm) -> None:
        """The alarm table dropped a cleared alarm: nothing keeps its key any more but an incident
        it still belongs to (whose dissolution releases it, ``_resurface``)."""
        keys = self._health.by_element.get(alarm.ne_id)
        if keys is not None:
            keys.discard(alarm.key)
            if not keys:
                del self._health.by_element[alarm.ne_id]
        if self._incidents.incident_of(alarm.key) is None:
            self._correlator.drop_parts(alarm.key)

    def _update_health(self, ne_id: str, now: float) -> None:
        moved, own_changed, changed = self._health.update(ne_id)
        # An incident's impact reads effective levels only (and, for one service's alarms, the
        # service levels): when neither moved, nothing it derives from them changed, and its
        # re-assessment would give it back. Where customers are tracked it reads the time too (its
        # SLA facts), so there every change of health is still news to the book.
        if moved or (changed and self._sla_tracked):
            self._incidents.health_changed(ne_id)
        if own_changed and self._sla_tracked:
            self._quality.health_changed(ne_id, self._health.view(), now)

    # -- the forms -----------------------------------------------------------------------------
    def _correlate(
        self, alarm: ActiveAlarm, now: float, t: float | None = None, *, arrival: bool = False
    ) -> list[IncidentRecord]:
        """Every form looks at an alarm occurrence (``t``: as of when; default its first raise), with
        the rule parts it matches. Thresholds count and pairs wait for *arrivals* (new occurrences)
        only: an alarm that re-surfaces or changes severity is not a new event for them."""
        parts = self._correlator.classify(alarm)
        when = alarm.first_seen if t is None else t
        return self._observe(Raised(alarm, parts, when, arrival), now)

    def _observe(self, fact: Fact, now: float) -> list[IncidentRecord]:
        """Every form observes the fact, then their outcomes are applied in registry order; the
        explanations of a raised alarm go with its raise, so it joins the incident that explains it."""
        outcomes = self._forms.observe(fact, now)
        if isinstance(fact, Raised):
            explanations = [ex for o in outcomes for ex in o.explanations]
            records = self._incidents.raised(fact.alarm, explanations, now)
            for o in outcomes:
                if o is not NOTHING and o:
                    records.extend(self._outcome(o, now, with_explanations=False))
            return records
        records = []
        for o in outcomes:
            if o is not NOTHING and o:
                records.extend(self._outcome(o, now))
        return records

    def _outcome(self, o: Outcome, now: float, *, with_explanations: bool = True) -> list[IncidentRecord]:
        records: list[IncidentRecord] = []
        if with_explanations and o.explanations:
            records.extend(self._incidents.explain(o.explanations, now))
        for start in o.starts:
            self._incidents.start_group(start.anchor, start.wait, start.interval, now)
        for key, until in o.holds:
            self._incidents.hold(key, until)
        for syn in o.alarms:
            records.extend(self._apply_synthetic(syn, now))
        if o.members:
            records.extend(self._incidents.explain(o.members, now))
        for key, _rule in o.discards:
            records.extend(self._resurface(self._incidents.discard(key, now), now))
        return records

    def _resurface(self, released: list[str], now: float) -> list[IncidentRecord]:
        """Alarms whose incident went away: facts go; those still active are correlated again, as of
        now (an incident one of them roots is named after the one that went: ``IncidentBook``)."""
        records: list[IncidentRecord] = []
        try:
            for key in released:
                records.extend(self._observe(Released(key), now))
            for key in released:
                alarm = self._alarms.get(key)
                if alarm is None:
                    self._correlator.drop_parts(key)  # forgotten while its incident lasted
                elif alarm.active:
                    records.extend(self._correlate(alarm, now, t=now))
        finally:  # (even when a part fails: nothing of a release outlives the step)
            self._incidents.resurfaced(released)
        return records

    # -- time ----------------------------------------------------------------------------------
    def alarms_tick(self, now: float) -> list[IncidentRecord]:
        """The alarm table's due work (flapping ends, retention), contained as a whole part."""
        if self._quarantined:
            return self._contained("alarms", now, partial(self._alarms_tick, now))
        try:  # nothing quarantined: as ``Quarantine.run`` would, without its closure
            changes = self._alarms.tick(now)  # (``_alarms_tick``, inlined: once per pipeline tick)
            if not changes:
                return []
            records: list[IncidentRecord] = []
            for change in changes:
                records.extend(self._on_change(change, now))
            return records
        except Exception as exc:
            self._failed("alarms", exc, now)
            return []

    def _alarms_tick(self, now: float) -> list[IncidentRecord]:
        records: list[IncidentRecord] = []
        for change in self._alarms.tick(now):
            records.extend(self._on_change(change, now))
        return records

    def flush(self, now: float) -> list[IncidentRecord]:
        """Every timed part's due work, each contained: a part that raises is quarantined (and
        retried with backoff) while the others go on."""
        if self._quarantined:  # some part is quarantined: each step through ``Quarantine.run``
            return self._flush_contained(now)
        # Nothing quarantined (the usual case, after every message): the same steps, each in its
        # own try, as ``Quarantine.run`` would run them then, without its per-step closures.
        records: list[IncidentRecord] = []
        for form in self._forms.timed:
            try:
                outcome = form.tick(now)
                if outcome is not NOTHING and outcome:
                    records.extend(self._outcome(outcome, now))
            except Exception as exc:  # containment: as ``Quarantine.run``
                self._failed(form.name, exc, now)
        if (due := self._quality.next_due()) is not None and due <= now:
            try:
                records.extend(self._quality_tick(now))
            except Exception as exc:
                self._failed("quality", exc, now)
        try:
            if (due := self._incidents.next_due()) is not None and due <= now:
                records.extend(self._incidents_tick(now))
        except Exception as exc:
            self._failed("incidents", exc, now)
        return records

    def _failed(self, part: str, exc: Exception, now: float) -> None:
        self._quarantine.failed(part, "", exc, now, self._poison())

    def _flush_contained(self, now: float) -> list[IncidentRecord]:
        records: list[IncidentRecord] = []
        for form in self._forms.timed:
            records.extend(self._contained(form.name, now, partial(self._tick, form, now)))
        if (due := self._quality.next_due()) is not None and due <= now:
            records.extend(self._contained("quality", now, partial(self._quality_tick, now)))
        records.extend(self._contained("incidents", now, partial(self._incidents_tick, now)))
        return records

    def _contained(
        self, part: str, now: float, fn: Callable[[], list[IncidentRecord]]
    ) -> list[IncidentRecord]:
        """A whole part's step, quarantined when it raises (named with the latest input)."""
        return self._quarantine.run(part, "", now, fn, [], poison=self._poison)

    def _poison(self) -> str:
        if self.last_input is None:
            return "no input yet"
        topic, payload = self.last_input
        text, _ = payload_excerpt(payload)
        return f"latest input before the failure: {topic} {text[:400]}"

    def _tick(self, form: Form, now: float) -> list[IncidentRecord]:
        return self._outcome(form.tick(now), now)

    def _quality_tick(self, now: float) -> list[IncidentRecord]:
        records: list[IncidentRecord] = []
        for syn in self._quality.tick(now, self._health.alarmed()):
            records.extend(self._apply_synthetic(syn, now))
        return records

    def _incidents_tick(self, now: float) -> list[IncidentRecord]:
        records, released = self._incidents.tick(now)
        # A resolved incident explains nothing more: its alarms' facts go; those still active are
        # correlated again, as of now, and may form new incidents.
        while released:
            records.extend(self._resurface(released, now))
            more, released = self._incidents.tick(now)
            records.extend(more)
        return records
