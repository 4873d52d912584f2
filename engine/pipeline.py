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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.alarms import ActiveAlarm, AlarmChange, AlarmTable
from engine.errors import EngineError, InvalidMessage
from engine.impact import Health, HealthView
from engine.incidents import EFFECT_HEALTH, IncidentBook
from engine.kpi import KpiStore
from engine.messages import Alarm, Decoder, Routes, dead_letter_record
from engine.rules.compiler import Program, compile_rulesets
from engine.rules.correlator import Correlator
from engine.rules.schema import Ruleset
from engine.settings import CoreSettings
from engine.timeutil import format_time
from engine.topology import Element, Topology

SNAPSHOT_FORMAT = 1
_HEALTH = {Health.OK: "ok", Health.AT_RISK: "at_risk", Health.DEGRADED: "degraded", Health.DOWN: "down"}


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


@dataclass
class Decisions:
    records: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: Decisions) -> None:
        self.records.extend(other.records)
        self.dead_letters.extend(other.dead_letters)


@dataclass
class Stats:
    messages: Counter[str] = field(default_factory=Counter)  # by outcome: alarm, samples, invalid
    invalid_reasons: Counter[str] = field(default_factory=Counter)  # by first field in error
    samples: int = 0
    samples_rejected: int = 0


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
        self.program: Program = compile_rulesets(rulesets)
        self.decoder = Decoder(
            routes=routes or Routes(),
            max_bytes=max_bytes,
            max_batch=max_batch,
            known_elements=topology,
            known_services=topology.service_types,
            known_customers=topology.has_customer,
        )
        self.alarms = AlarmTable(self.settings.alarms)
        self.correlator = Correlator(self.program, topology, grace=self.settings.reorder_tolerance)
        self._own: dict[str, Health] = {}
        self._by_element: dict[str, set[str]] = {}
        self.incidents = IncidentBook(
            topology, self.settings.incidents, self.settings.priority, self.alarms.get, self._own
        )
        self.kpis = KpiStore()
        self.stats = Stats()
        self.clock = 0.0  # the latest `now` seen; time never goes backwards inside the core

    # -- input ---------------------------------------------------------------------------------
    def feed(self, topic: str, payload: bytes | str | Mapping[str, Any], now: float) -> Decisions:
        """Decode one message and apply it. Never raises for bad input: it becomes a dead letter."""
        now = self._advance(now)
        out = Decisions()
        try:
            decoded = self.decoder.decode(topic, payload)
        except InvalidMessage as err:
            self.stats.messages["invalid"] += 1
            self.stats.invalid_reasons[err.errors[0][0] or "message"] += 1
            out.dead_letters.append(dead_letter_record(topic, payload, err, now=now))
            return out
        if decoded.alarm is not None:
            self.stats.messages["alarm"] += 1
            out.records.extend(self.apply_alarm(decoded.alarm, now))
        else:
            self.stats.messages["samples"] += 1
            for sample in decoded.samples:
                self.kpis.observe(sample)
            self.stats.samples += len(decoded.samples)
            if decoded.rejected:
                self.stats.samples_rejected += len(decoded.rejected)
                partial = InvalidMessage(topic, list(decoded.rejected))
                out.dead_letters.append(dead_letter_record(topic, payload, partial, now=now))
        out.records.extend(self._flush(now))
        return out

    def apply_alarm(self, alarm: Alarm, now: float) -> list[dict[str, Any]]:
        """Apply a validated alarm (the HTTP and replay adapters may call this directly)."""
        records: list[dict[str, Any]] = []
        for change in self.alarms.apply(alarm, now):
            records.extend(self._on_change(change, now))
        return records

    def tick(self, now: float) -> Decisions:
        """Advance time: flapping ends, facts expire, incidents open, update and resolve."""
        now = self._advance(now)
        out = Decisions()
        for change in self.alarms.tick(now):
            out.records.extend(self._on_change(change, now))
        out.records.extend(self._flush(now))
        return out

    def next_due(self) -> float | None:
        dues = [
            d for d in (self.alarms.next_due(), self.correlator.next_due(), self.incidents.next_due()) if d
        ]
        return min(dues) if dues else None

    def drain(self, *, limit: float = 366 * 86400.0) -> Decisions:
        """Advance the clock until nothing is pending (end of a replay), at most ``limit`` seconds."""
        out = Decisions()
        end = self.clock + limit
        while True:
            due = self.next_due()
            if due is None or due > end:
                break
            out.extend(self.tick(max(due, self.clock)))
        return out

    # -- internals -----------------------------------------------------------------------------
    def _advance(self, now: float) -> float:
        self.clock = max(self.clock, now)
        return self.clock

    def _on_change(self, change: AlarmChange, now: float) -> list[dict[str, Any]]:
        alarm = change.alarm
        if change.kind == "raised":
            self._index(alarm)
            self._update_health(alarm.ne_id)
            explanations = self.correlator.observe(alarm, now)
            return self.incidents.raised(alarm, explanations, now)
        if change.kind == "cleared":
            self.incidents.cleared(alarm, now)
            self._update_health(alarm.ne_id)
            return []
        if change.kind == "severity":
            # Facts carry severity and effect: re-assert them; new pairs may form (minor → critical).
            if change.previous_effect != alarm.effect:
                self._update_health(alarm.ne_id)
            explanations = self.correlator.observe(alarm, now)
            self.incidents.changed(alarm)
            return self.incidents.raised(alarm, explanations, now)
        if change.kind in ("flapping", "unflapped"):
            self.incidents.changed(alarm)
        return []

    def _flush(self, now: float) -> list[dict[str, Any]]:
        self.correlator.tick(now)
        records, released = self.incidents.tick(now)
        # A resolved incident explains nothing more: its alarms' facts go; those still active are
        # correlated again, as of now, and may form new incidents.
        while released:
            for key in released:
                self.correlator.forget(key)
            for key in released:
                alarm = self.alarms.get(key)
                if alarm is not None and alarm.active:
                    explanations = self.correlator.observe(alarm, now, t=now)
                    records.extend(self.incidents.raised(alarm, explanations, now))
            more, released = self.incidents.tick(now)
            records.extend(more)
        return records

    def _index(self, alarm: ActiveAlarm) -> None:
        self._by_element.setdefault(alarm.ne_id, set()).add(alarm.key)

    def _update_health(self, ne_id: str) -> None:
        worst = Health.OK
        keys = self._by_element.get(ne_id, set())
        for key in list(keys):
            a = self.alarms.get(key)
            if a is None:
                keys.discard(key)
                continue
            if a.active and a.effect in EFFECT_HEALTH:
                worst = max(worst, EFFECT_HEALTH[a.effect])
        before = self._own.get(ne_id, Health.OK)
        if worst == Health.OK:
            self._own.pop(ne_id, None)
        else:
            self._own[ne_id] = worst
        if worst != before:
            self.incidents.health_changed(ne_id)

    # -- commands ------------------------------------------------------------------------------
    def acknowledge(self, incident_id: str, by: str, note: str | None, now: float) -> dict[str, Any] | None:
        """An operator acknowledged an open incident: returns its `updated` record, None if not open."""
        now = self._advance(now)
        return self.incidents.acknowledge(incident_id, by, note, now)

    # -- views (for the HTTP API) --------------------------------------------------------------
    def element_view(self, ne_id: str) -> dict[str, Any] | None:
        """An element, its health, its active alarms and the incidents that involve it now."""
        if ne_id not in self.topology:
            return None
        el = self.topology.element(ne_id)
        view = HealthView(self.topology, self._own)
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
            },
            "alarms": alarms,
            "incidents": self._incidents_touching({ne_id}),
        }

    def customer_view(self, customer_id: str) -> dict[str, Any] | None:
        """A customer, the state of each of its services, and the incidents affecting it now."""
        if not self.topology.has_customer(customer_id):
            return None
        c = self.topology.customer(customer_id)
        view = HealthView(self.topology, self._own)
        services = {}
        touching = {c.access}
        for s in c.services:
            platform = self.topology.service_types[s].platform
            touching.update(platform)
            level = max([view.health(c.access), *(view.health(x) for x in platform)])
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
            "by_element": {ne: sorted(keys) for ne, keys in self._by_element.items()},
            "kpis": self.kpis.dump(),
            "stats": {
                "messages": dict(self.stats.messages),
                "invalid_reasons": dict(self.stats.invalid_reasons),
                "samples": self.stats.samples,
                "samples_rejected": self.stats.samples_rejected,
            },
        }
        return orjson.dumps(state)

    def restore(self, blob: bytes) -> dict[str, int]:
        """Load a snapshot into this fresh pipeline. Re-asserts the correlation facts into
        durable-rules without applying what they match again. With a changed topology, state on
        elements that no longer exist is dropped; the counts are returned."""
        state = orjson.loads(blob)
        if state.get("format") != SNAPSHOT_FORMAT:
            raise EngineError(
                f"snapshot format {state.get('format')!r} is not {SNAPSHOT_FORMAT}: cannot restore"
            )
        self.clock = state["clock"]
        dropped_alarms = self.alarms.load(state["alarms"], keep=lambda ne: ne in self.topology)
        self._by_element = {ne: set(keys) for ne, keys in state["by_element"].items() if ne in self.topology}
        self._own.clear()
        self._own.update({ne: Health(h) for ne, h in state["own"].items() if ne in self.topology})
        dropped_incidents = self.incidents.load(state["incidents"])
        self.correlator.load(state["correlator"], self.alarms.get)
        self.kpis.load(state["kpis"])
        st = state["stats"]
        self.stats.messages = Counter(st["messages"])
        self.stats.invalid_reasons = Counter(st["invalid_reasons"])
        self.stats.samples, self.stats.samples_rejected = st["samples"], st["samples_rejected"]
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
            "flapping": c.flapping,
            "incidents_opened": opened,
            "incidents_resolved": self.incidents.resolved,
            "incidents_merged": self.incidents.merged,
            "raise_messages": c.raise_messages,
            "compression": round(c.raise_messages / opened, 2) if opened else None,
            "occurrences_per_incident": round(c.raised / opened, 2) if opened else None,
            "rule_firings": self.correlator.host.firings,
        }
