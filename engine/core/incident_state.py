"""``Incident``: what the incident book knows about one incident, and its snapshot form.

The fields are the book's working state; ``phase`` changes only through ``engine.core.lifecycle``.
``dump_incident``/``load_incident`` are the snapshot form (JSON-ready), which also reads incidents
written by snapshot format 2 (an acknowledgement's time as RFC 3339 text, fewer stage fields).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from engine.core.experience.sla import SlaFacts
from engine.core.impact import Health, Impact, ImpactCounts
from engine.core.incident_records import Acknowledgement
from engine.core.lifecycle import Phase
from engine.core.priority import Priority
from engine.core.settings import IncidentSettings
from engine.model.timeutil import parse_time


@dataclass
class Incident:
    id: str
    root: str  # alarm key of the top root
    created: float
    phase: Phase = "pending"  # changed by engine.core.lifecycle.fire only
    members: set[str] = field(default_factory=set)  # alarm keys, root included
    version: int = 0
    opened_at: float | None = None
    clear_since: float | None = None
    last_emit: float | None = None
    dirty: bool = True
    reraised: int = 0
    impact: Impact | None = None
    priority: Priority | None = None
    state: str = "at_risk"
    severity: str = "indeterminate"
    signature: str | None = None  # what the last emitted record said, to skip no-change updates
    acknowledged: Acknowledgement | None = None  # once an operator acknowledged it
    grouping_rules: set[str] = field(default_factory=set)
    scheduled: float | None = None  # the due time of its live entry in the book's timer heap
    kind: str = "root"  # "group": anchored by a group rule; resolves when no member is active
    settle: float | None = None  # per-incident settle (a group's wait); None: the settings'
    interval: float | None = None  # per-incident update interval (a group's interval)
    hold_until: float | None = None  # stays pending until then (a pair's window, a maintenance window)
    maintenance: str | None = None  # the maintenance rule that held it back, while it does
    sla: SlaFacts | None = None  # SLA facts of its impact at the last assessment
    sla_due: float | None = None  # when the time left before a breach reaches its next milestone
    sla_milestone: float | None = None  # that milestone (seconds to breach)
    escalation: str | None = None  # why the SLA stage last re-assessed it ("SLA milestone: ...")
    muted_until: float | None = None  # open, root under maintenance: no `updated` before this
    muted_by: str | None = None  # the maintenance rule that mutes it, while it does


def incident_id(root_key: str, first_seen: float) -> str:
    """Stable across replays and restarts: derived from the root identity and its first event time."""
    digest = hashlib.blake2b(f"{root_key}|{first_seen:.3f}".encode(), digest_size=8).hexdigest()
    return f"inc-{digest}"


def phase_due(inc: Incident, settings: IncidentSettings) -> float | None:
    """When the incident next needs the book's tick, from its phase and timers: a pending one at
    settle (or the end of its hold), a clearing one at the end of the hold-down, an open one at its
    next update slot (not before a maintenance mute ends) or SLA milestone."""
    if inc.phase == "pending":
        due = inc.created + (inc.settle if inc.settle is not None else settings.settle)
        return max(due, inc.hold_until) if inc.hold_until is not None else due
    if inc.phase == "clearing" and inc.clear_since is not None:
        return inc.clear_since + settings.hold_down
    if inc.phase == "open":
        update = None
        if inc.dirty:
            update = inc.created if inc.last_emit is None else inc.last_emit + update_interval(inc, settings)
            if inc.muted_until is not None:
                update = max(update, inc.muted_until)
        if inc.sla_due is not None:
            return inc.sla_due if update is None else min(update, inc.sla_due)
        return update
    return None


def update_interval(inc: Incident, settings: IncidentSettings) -> float:
    return inc.interval if inc.interval is not None else settings.update_interval


def describe(inc: Incident) -> str:
    """What an operator needs to find a quarantined incident's poison: its root and members."""
    members = sorted(inc.members)
    more = f" and {len(members) - 5} more" if len(members) > 5 else ""
    return f"incident {inc.id} ({inc.phase}), root {inc.root}, members {', '.join(members[:5])}{more}"


def dump_incident(inc: Incident) -> dict[str, Any]:
    d = {f.name: getattr(inc, f.name) for f in fields(inc)}
    d["members"] = sorted(inc.members)
    d["grouping_rules"] = sorted(inc.grouping_rules)
    d["impact"] = _impact_dump(inc.impact) if inc.impact is not None else None
    d["priority"] = (
        {"priority": inc.priority.priority, "score": inc.priority.score, "breakdown": inc.priority.breakdown}
        if inc.priority is not None
        else None
    )
    d["acknowledged"] = asdict(inc.acknowledged) if inc.acknowledged is not None else None
    d["sla"] = inc.sla.to_wire() if inc.sla is not None else None
    return d


def load_incident(d: Mapping[str, Any]) -> tuple[Incident, Impact | None]:
    """An incident as dumped, and its impact (which the caller sets once it watched it)."""
    ack = d.get("acknowledged")
    inc = Incident(
        **{
            **d,
            "members": set(d["members"]),  # verbatim: a member may outlive its alarm's retention
            "grouping_rules": set(d["grouping_rules"]),
            "impact": None,
            "priority": Priority(**d["priority"]) if d["priority"] is not None else None,
            "acknowledged": Acknowledgement(ack["by"], parse_time(ack["at"]), ack["note"]) if ack else None,
            "sla": SlaFacts(**d["sla"]) if d.get("sla") else None,
        }
    )
    return inc, _impact_load(d["impact"]) if d["impact"] is not None else None


def _impact_dump(im: Impact) -> dict[str, Any]:
    return {
        "elements": {ne: int(h) for ne, h in im.elements.items()},
        "state": im.state,
        "services": dict(im.services),
        "customers": im.customers,
        "by_tier": dict(im.by_tier),
        "by_state": {
            k: {"customers": c.customers, "services": dict(c.services), "by_tier": dict(c.by_tier)}
            for k, c in im.by_state.items()
        },
    }


def _impact_load(d: Mapping[str, Any]) -> Impact:
    return Impact(
        elements={ne: Health(h) for ne, h in d["elements"].items()},
        state=d["state"],
        services=d["services"],
        customers=d["customers"],
        by_tier=d["by_tier"],
        by_state={k: ImpactCounts(**c) for k, c in d["by_state"].items()},
    )
