"""Read-side views of a pipeline: an element, a customer (for the HTTP API) and the run's summary.

Read-only: nothing here changes the core's state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.core.impact import Health
from engine.model.timeutil import format_time
from engine.model.topology import Element

if TYPE_CHECKING:
    from engine.core.pipeline import Pipeline

HEALTH_WORDS = {Health.OK: "ok", Health.AT_RISK: "at_risk", Health.DEGRADED: "degraded", Health.DOWN: "down"}


def element_record(el: Element) -> dict[str, Any]:
    return {
        "id": el.id,
        "type": el.type,
        "name": el.name,
        "site": el.site,
        "region": el.region,
        "depends_on": [list(item) if len(item) > 1 else item[0] for item in el.depends_on],
        "labels": dict(el.labels),
    }


def element_view(p: Pipeline, ne_id: str) -> dict[str, Any] | None:
    """An element, its health, its active alarms and the incidents that involve it now."""
    if ne_id not in p.topology:
        return None
    el = p.topology.element(ne_id)
    health = p.health
    view = health.view()
    alarms = []
    for key in sorted(health.by_element.get(ne_id, ())):
        a = p.alarms.get(key)
        if a is None or not a.active:
            continue
        sup = p.incidents.suppression(key)
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
        "element": element_record(el),
        "health": {
            "own": HEALTH_WORDS[health.own.get(ne_id, Health.OK)],
            "effective": HEALTH_WORDS[view.health(ne_id)],
            # alarms about one service on this element (KQI alarms): that service only
            "services": {
                s: HEALTH_WORDS[levels[ne_id]]
                for s, levels in sorted(health.by_service.items())
                if ne_id in levels
            },
        },
        "alarms": alarms,
        "incidents": incidents_touching(p, {ne_id}),
    }


def customer_view(p: Pipeline, customer_id: str) -> dict[str, Any] | None:
    """A customer, the state of each of its services, and the incidents affecting it now."""
    topo = p.topology
    if not topo.has_customer(customer_id):
        return None
    c = topo.customer(customer_id)
    services = {}
    touching = {c.access}
    for s in c.services:
        touching.update(topo.service_types[s].platform)
        level = p.health.view(s).service(topo, c.access, s)
        services[s] = HEALTH_WORDS[level]
    return {
        "customer": {
            "id": c.id,
            "name": c.name,
            "tier": c.tier,
            "access": c.access,
            "services": list(c.services),
        },
        "services": services,
        "incidents": incidents_touching(p, touching),
    }


def incidents_touching(p: Pipeline, elements: set[str]) -> list[dict[str, Any]]:
    """Unresolved incidents whose impact or alarms touch one of ``elements``, most urgent first."""
    out = []
    for inc in p.incidents.incidents():
        if inc.phase == "resolved":
            continue
        affected = set(inc.impact.elements) if inc.impact is not None else set()
        on = {a.ne_id for k in inc.members if (a := p.alarms.get(k)) is not None}
        if elements & (affected | on):
            pr = inc.priority
            out.append(
                {
                    "incident_id": inc.id,
                    "phase": inc.phase,
                    "state": inc.state,
                    "priority": pr.priority if pr else None,
                    "score": pr.score if pr else None,
                    "root": inc.root,
                }
            )
    return sorted(out, key=lambda r: (r["priority"] or 9, r["incident_id"]))


def summary(p: Pipeline) -> dict[str, Any]:
    """The run's counters: messages, alarms, incidents, each form's, service quality's, firings."""
    c = p.alarms.counters
    stats = p.stats
    opened = p.incidents.opened
    return {
        "messages": sum(stats.messages.values()),
        "alarm_messages": stats.messages.get("alarm", 0),
        "sample_messages": stats.messages.get("samples", 0),
        "samples": stats.samples,
        "invalid": stats.messages.get("invalid", 0),
        "samples_rejected": stats.samples_rejected,
        "alarms_raised": c.raised,
        "alarms_repeated": c.repeated,
        "alarms_cleared": c.cleared,
        "clears_unknown": c.clear_unknown,
        "stale": c.stale,
        "stale_clears": c.stale_clears,
        "late_events": stats.notices["late"],
        "clock_clamped": stats.notices["clock_ahead"] + stats.notices["clock_behind"],
        "clock_rejected": stats.notices["clock_ahead_rejected"] + stats.notices["clock_behind_rejected"],
        "internal_errors": stats.internal_errors,
        "part_failures": p.quarantine.failures,
        "quarantined": [f.name for f in p.quarantine.faults()],
        "flapping": c.flapping,
        "incidents_opened": opened,
        "incidents_resolved": p.incidents.resolved,
        "incidents_merged": p.incidents.merged,
        "incidents_discarded": p.incidents.discarded,
        "incidents_held_by_maintenance": p.incidents.held_back,
        **p.forms.counters(),  # storms, pair_timeouts, pairs_completed, inhibited, kpi_breaches
        "kqi_evaluations": p.quality.evaluations,
        "degradations_inferred": p.quality.inferred,
        "raise_messages": c.raise_messages,
        "compression": round(c.raise_messages / opened, 2) if opened else None,
        "occurrences_per_incident": round(c.raised / opened, 2) if opened else None,
        "rule_firings": p.correlator.firings,
    }
