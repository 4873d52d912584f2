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
registry. ``flow.Flow`` carries each alarm change and each timer's work through the parts;
``query.CoreQuery`` is what the rest of the engine reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from mypy_extensions import mypyc_attr

from engine.core.alarms import AlarmTable
from engine.core.containment import Quarantine
from engine.core.decisions import Decisions, MessageOutcome, Stats, fault_dead_letter
from engine.core.eventtime import EventTimes
from engine.core.flow import Flow
from engine.core.forms.base import FormContext
from engine.core.forms.correlator import Correlator
from engine.core.forms.maintenance import Calendar
from engine.core.forms.overrides import Overrides
from engine.core.forms.registry import FORMS, Builder, Forms
from engine.core.health import ElementHealth
from engine.core.incident_stages import sla_milestones
from engine.core.incidents import Incident, IncidentBook, IncidentRecord
from engine.core.kpi import KpiStore
from engine.core.quality import ServiceQuality
from engine.core.query import CoreQuery
from engine.core.settings import CoreSettings
from engine.core.snapshot import SNAPSHOT_FORMAT, restore, snapshot
from engine.core.state_sizes import state_sizes
from engine.core.views import summary
from engine.errors import EngineError, InvalidMessage
from engine.model.messages import (
    Alarm,
    Decoded,
    Decoder,
    PlainAlarm,
    Routes,
    dead_letter_record,
    kpi_sample,
)
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
]

_ALARM = MessageOutcome("alarm")
STUCK_TICKS = 10_000  # ticks at one due time before `advance_to` calls a timer stuck
F = TypeVar("F")


# ``engine.tools.offline.ReplayedPipeline`` and tests derive from it (engine.compiled)
@mypyc_attr(allow_interpreted_subclasses=True)
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
            known_elements=topology.elements,  # (a mapping: tested without a Python call)
            known_services=topology.service_types,
            known_customers=topology.has_customer,
        )
        self.alarms = AlarmTable(self.settings.alarms)
        # A part that raises is quarantined alone and retried with backoff (engine.core.containment).
        self.quarantine = Quarantine()
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
            # SLA facts only where customers are tracked (elsewhere ``sla_facts`` always says None)
            sla=self.quality.sla_facts if self.quality.tracks_sla else None,
            sla_milestones=sla_milestones(self.settings.quality.sla.urgency),
            quarantine=self.quarantine,
            live_health=self.health.live,
        )
        # the join makes no pair for an alarm the book already explains (it would be ignored)
        self.correlator.explained = self.incidents.explained
        self.kpis = KpiStore()
        self.flow = Flow(
            alarms=self.alarms,
            forms=self.forms,
            correlator=self.correlator,
            health=self.health,
            quality=self.quality,
            incidents=self.incidents,
            quarantine=self.quarantine,
        )
        self.clock = 0.0  # the latest `now` seen; time never goes backwards inside the core
        self._query = CoreQuery(self)
        # the explanations' matcher (``explain_match.matcher_for``), made on first use: kept here, as
        # a class compiled by mypyc cannot be a weak dictionary's key (``engine.compiled``)
        self.explain_matcher: Any = None

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
        self,
        topic: str,
        payload: bytes | str | Mapping[str, Any],
        now: float,
        *,
        flush: bool = True,
        parsed: dict[str, Any] | None = None,
    ) -> Decisions:
        """Decode one message and apply it at ``now``, the time it was received. Never raises: bad
        input becomes a dead letter, and so does a message whose application fails inside the core
        (a bug: contained, counted, the core goes on).

        ``flush=False`` leaves the timers that are due by ``now`` for the next ``tick``: the daemon
        applies a restart's backlog that way, so a timer that fell due while it was down (a symptom's
        incident opening) waits until the backlog (its root) is in. ``parsed``: what
        ``orjson.loads(payload)`` makes of the payload, when the caller holds it already (the
        replay: ``Decoder.read``)."""
        received = now
        now = self._advance(now)
        out = Decisions()
        try:
            decoded = self.decoder.read(topic, payload, parsed)
            if isinstance(decoded, Decoded):
                decoded = self.times.on_time(decoded, received, out)
            else:  # an alarm: its model alone
                decoded = self.times.alarm(topic, decoded, received, out)
        except InvalidMessage as err:
            messages = self.stats.messages
            messages["invalid"] = messages.get("invalid", 0) + 1
            self.stats.invalid_reasons[err.errors[0][0] or "message"] += 1
            out.dead_letters.append(dead_letter_record(topic, payload, err, now=now))
            out.message = MessageOutcome("invalid")
            return self._done(out, now)
        self.flow.last_input = (topic, payload)
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
            out.records.extend(self.flow.flush(now))
        return self._done(out, now)

    def _apply(
        self,
        decoded: Alarm | PlainAlarm | Decoded,
        topic: str,
        payload: bytes | str | Mapping[str, Any],
        now: float,
        out: Decisions,
    ) -> None:
        if not isinstance(decoded, Decoded):  # an alarm
            messages = self.stats.messages
            messages["alarm"] = messages.get("alarm", 0) + 1
            out.message = _ALARM  # frozen: one object for every alarm message
            self.times.late(topic, decoded.event_time, "alarm", decoded.ne_id, out)
            out.records.extend(self.flow.alarm(decoded, now))
            return
        messages = self.stats.messages
        messages["samples"] = messages.get("samples", 0) + 1
        out.message = MessageOutcome("samples")
        rows = decoded.rows
        if rows:
            self.times.late(topic, rows[0]["time"], "sample of", rows[0]["target"], out)
        if self.flow.reads_samples:  # a form reads samples: each goes through all, in turn
            for row in rows:
                self.kpis.observe_many((row,))
                self.quality.observe_row(row)
                out.records.extend(self.flow.sample(kpi_sample(row), now))
        else:  # nothing but the store and the KQI windows reads them: one pass each, on the rows
            self.kpis.observe_many(rows, decoded.metric_names, decoded.columns)
            self.quality.observe_many(rows, decoded.metric_names, decoded.columns)
        self.stats.samples += len(rows)
        out.message = MessageOutcome("samples", len(rows), len(decoded.rejected))
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

    # -- time ----------------------------------------------------------------------------------
    def tick(self, now: float) -> Decisions:
        """Advance time: flapping ends, facts expire, incidents open, update and resolve."""
        return self._tick(now, Decisions())

    def _tick(self, now: float, out: Decisions) -> Decisions:
        """``tick``, its decisions added to ``out`` (``advance_to`` collects every tick's in one)."""
        now = self._advance(now)
        out.records.extend(self.flow.alarms_tick(now))
        out.records.extend(self.flow.flush(now))
        return self._done(out, now)

    def next_due(self) -> float | None:
        if self.quarantine.held:
            dues = [d for d in self._dues().values() if d]
            return min(dues) if dues else None
        # the same as ``_dues`` without its dictionaries or a list (called after every message): the
        # first smallest of the parts' due times, as ``min`` would pick it
        best = self.alarms.next_due() or None
        for f in self.forms.scheduled:  # a form keeping BaseForm's ``next_due`` says None
            if (d := f.next_due()) and (best is None or d < best):
                best = d
        if (d := self.incidents.next_due()) and (best is None or d < best):
            best = d
        if (d := self.quality.next_due()) and (best is None or d < best):
            best = d
        return best

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

    def advance_to(self, t: float, *, due: float | None = None) -> Decisions:
        """Fire every timer due at or before ``t``, in time order (replay, rule tests, drain).

        ``due``: what ``next_due()`` answered just before, with nothing fed or ticked since, when
        the caller asked it (the replay asks before each event and advances only when a timer is
        due): not asked again (about 7,000 instructions a call).

        Raises ``EngineError`` naming the parts whose timer does not move when the same due time
        comes back ``STUCK_TICKS`` times in a row: a bug, reported instead of spinning forever."""
        out = Decisions()
        last, repeats = None, 0
        if due is None:
            due = self.next_due()
        while due is not None and due <= t:
            repeats = repeats + 1 if due == last else 0
            if repeats > STUCK_TICKS:
                raise EngineError(self.stuck(due))
            last = due
            # ``out.extend(self.tick(...))`` without a ``Decisions`` per tick: each list grows in the
            # same order
            self._tick(due if due > self.clock else self.clock, out)
            due = self.next_due()
        return out

    def stuck(self, due: float) -> str:
        """Which parts report ``due`` and do not move past it (for the error and the daemon's log)."""
        names = sorted(name for name, d in self._dues().items() if d is not None and d <= due)
        return f"timer stuck at {format_time(due)}: {', '.join(names) or 'unknown part'} does not advance"

    def _advance(self, now: float) -> float:
        if now > self.clock:  # noqa: PLR1730 (``max``, without its call: twice per message)
            self.clock = now
        return self.clock

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
        self.incidents.reschedule()  # a quarantined incident's timer waited for its retry

    def summary(self) -> dict[str, Any]:
        """Every counter of the run (``engine.core.views.summary``)."""
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

    def state_sizes(self) -> dict[str, int]:
        """The length of every container the core's parts hold, by attribute path
        (``engine.core.state_sizes``): what a long run must keep bounded. For tests and benchmarks."""
        return state_sizes(self)

    def close(self) -> None:
        """Free the rule engine's state (durable-rules holds it outside Python's memory)."""
        self.forms.close()
