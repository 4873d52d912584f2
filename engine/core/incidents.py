"""Incidents: one per root-cause group, with their lifecycle, impact, priority and records.

Theory of operation
-------------------
An incident belongs to a *top root*: an alarm that no rule explains. Every alarm a rule explains
(directly or through a chain: core → aggregation → access) belongs to the incident of the top of its
chain, as a suppressed symptom with the reason. The whole lifecycle is this table; nothing else in
the code base changes ``Incident.phase``.

========== ============================== ========== =========================================
phase      on                             next       record emitted
========== ============================== ========== =========================================
pending    settle elapsed                 open       opened (with every symptom gathered so far)
pending    explained by another root      (gone)     none: the group merges silently
open       impact/priority/alarms change  open       updated (at most one per update_interval)
open       root cleared                   clearing   none yet
open       explained by another root      merged     resolved, resolution "merged", merged_into
clearing   root re-raised                 open       updated (same incident, note in explanation)
clearing   hold_down elapsed              resolved   resolved; still-active symptoms re-surface
========== ============================== ========== =========================================

A pending incident whose root already cleared still opens at settle time (the outage happened) and
resolves after the hold-down. While clearing, impact and priority stay as they were when the root
cleared, so the ``resolved`` record says what was resolved.

``IncidentBook`` is pure: it takes alarm changes and explanations with ``now`` and returns records.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any, Literal

from engine.core.alarms import ActiveAlarm
from engine.core.containment import Quarantine
from engine.core.forms.correlator import Explanation
from engine.core.forms.maintenance import Calendar
from engine.core.forms.overrides import Overrides
from engine.core.forms.synthetic import raised_by, service_scope
from engine.core.impact import Health, Impact, ImpactCounts, compute_impact, with_service_levels
from engine.core.priority import Priority, PriorityInput, add_points, assess, explain
from engine.core.settings import IncidentSettings, PrioritySettings
from engine.model.timeutil import format_time
from engine.model.topology import Topology

Phase = Literal["pending", "open", "clearing", "resolved"]
PART = "incidents"  # the part's name in the quarantine
EFFECT_HEALTH = {"outage": Health.DOWN, "degraded": Health.DEGRADED}
SEVERITY_ORDER = ("indeterminate", "warning", "minor", "major", "critical")


@dataclass(frozen=True, slots=True)
class Suppression:
    root: str  # the alarm key that explains it directly
    rule: str  # qualified rule name
    relation: str  # a correlate relation, or the form: group, inhibit, threshold, pair
    delay: float  # symptom time - root time, seconds
    detail: str = ""  # the form's words for why (key values, window)


@dataclass
class Incident:
    id: str
    root: str  # alarm key of the top root
    created: float
    phase: Phase = "pending"
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
    acknowledged: dict[str, Any] | None = None  # {"by", "at", "note"} once an operator acknowledged it
    grouping_rules: set[str] = field(default_factory=set)
    scheduled: float | None = None  # the due time of its live entry in the book's timer heap
    kind: str = "root"  # "group": anchored by a group rule; resolves when no member is active
    settle: float | None = None  # per-incident settle (a group's wait); None: the settings'
    interval: float | None = None  # per-incident update interval (a group's interval)
    hold_until: float | None = None  # stays pending until then (a pair's window, a maintenance window)
    maintenance: str | None = None  # the maintenance rule that held it back, while it does
    sla: dict[str, Any] | None = None  # SLA facts of its impact at the last assessment
    sla_due: float | None = None  # when the time left before a breach reaches its next milestone
    muted_until: float | None = None  # open, root under maintenance: no `updated` before this


def incident_id(root_key: str, first_seen: float) -> str:
    """Stable across replays and restarts: derived from the root identity and its first event time."""
    digest = hashlib.blake2b(f"{root_key}|{first_seen:.3f}".encode(), digest_size=8).hexdigest()
    return f"inc-{digest}"


class IncidentBook:
    def __init__(
        self,
        topology: Topology,
        settings: IncidentSettings,
        priority: PrioritySettings,
        alarm: Callable[[str], ActiveAlarm | None],
        own_health: Mapping[str, Health],
        *,
        service_health: Mapping[str, Mapping[str, Health]] | None = None,
        calendar: Calendar | None = None,
        overrides: Overrides | None = None,
        parts: Callable[[str], frozenset[str]] | None = None,
        sla: Callable[[Impact, float], dict[str, Any] | None] | None = None,
        sla_milestones: Sequence[float] = (),
        quarantine: Quarantine | None = None,
    ) -> None:
        self._topology = topology
        # An incident whose step raises is quarantined alone (``engine.core.containment``); the others go on.
        self._quarantine = quarantine if quarantine is not None else Quarantine()
        self._settings = settings
        self._priority = priority
        self._alarm = alarm
        self._own = own_health
        self._service_health = service_health if service_health is not None else {}
        self._calendar = calendar
        self._overrides = overrides
        self._parts = parts or (lambda _key: frozenset())
        self._sla = sla
        # Seconds-to-breach values at which an open incident is re-assessed (its urgency steps, the
        # breach itself), highest first: SLA urgency grows with time, not only with alarms.
        self._sla_milestones = tuple(sorted({float(m) for m in sla_milestones if m >= 0}, reverse=True))
        self._parent: dict[str, Suppression] = {}  # symptom key -> why it is suppressed
        self._by_top: dict[str, Incident] = {}  # top root key -> incident
        self._incident_of: dict[str, Incident] = {}  # every member key -> incident
        self._watch: dict[str, set[str]] = {}  # element -> top roots whose impact includes it
        self._timers: list[tuple[float, int, str]] = []  # (due, seq, top root key), lazily invalidated
        self._seq = 0
        self.opened = 0
        self.resolved = 0
        self.merged = 0
        self.discarded = 0  # pending incidents dropped: transients (pair), cleared in maintenance
        self.held_back = 0  # openings deferred by a maintenance window
        # Called with an incident about to be forgotten and its `resolved` record, while the book
        # still holds everything about it (members, suppressions): post-mortems (the daemon keeps
        # its explanation). It only reads; it changes nothing, so decisions are the same with or
        # without one.
        self.on_resolved: Callable[[Incident, dict[str, Any]], None] | None = None

    # -- queries -------------------------------------------------------------------------------
    def incidents(self) -> Iterable[Incident]:
        return self._by_top.values()

    def incident_of(self, key: str) -> Incident | None:
        return self._incident_of.get(key)

    def suppression(self, key: str) -> Suppression | None:
        return self._parent.get(key)

    def next_due(self) -> float | None:
        while self._timers:
            due, _, top = self._timers[0]
            inc = self._by_top.get(top)
            if inc is not None and self._due(inc) == due:
                return due
            heapq.heappop(self._timers)  # stale entry: the incident moved on or is gone
        return None

    def _due(self, inc: Incident) -> float | None:
        """When this incident next needs `tick`, from its phase and timers (and, while it is
        quarantined, not before its retry)."""
        due = self._phase_due(inc)
        return self._quarantine.due(PART, due, inc.id) if self._quarantine else due

    def _phase_due(self, inc: Incident) -> float | None:
        if inc.phase == "pending":
            due = inc.created + (inc.settle if inc.settle is not None else self._settings.settle)
            return max(due, inc.hold_until) if inc.hold_until is not None else due
        if inc.phase == "clearing" and inc.clear_since is not None:
            return inc.clear_since + self._settings.hold_down
        if inc.phase == "open":
            update = None
            if inc.dirty:
                update = inc.created if inc.last_emit is None else inc.last_emit + self._interval(inc)
                if inc.muted_until is not None:
                    update = max(update, inc.muted_until)
            if inc.sla_due is not None:
                return inc.sla_due if update is None else min(update, inc.sla_due)
            return update
        return None

    def _interval(self, inc: Incident) -> float:
        return inc.interval if inc.interval is not None else self._settings.update_interval

    def _schedule(self, inc: Incident) -> None:
        due = self._due(inc)
        if due is not None and inc.scheduled != due:
            inc.scheduled = due
            self._seq += 1
            heapq.heappush(self._timers, (due, self._seq, inc.root))

    # -- alarm changes -------------------------------------------------------------------------
    def raised(self, alarm: ActiveAlarm, explanations: list[Explanation], now: float) -> list[dict[str, Any]]:
        """A new occurrence, with the pairs the rules matched for it (either side)."""
        records: list[dict[str, Any]] = []
        inc = self._incident_of.get(alarm.key)
        if inc is not None:  # re-raise of a member or root
            if (inc.root == alarm.key or inc.kind == "group") and inc.clear_since is not None:
                if inc.phase == "clearing":
                    inc.phase = "open"
                inc.clear_since = None
                inc.reraised += 1
            self._touch(inc)
        records.extend(self.explain(explanations, now))
        if alarm.key not in self._incident_of and alarm.effect != "none":
            self._new_incident(alarm.key, now)
        return records

    def explain(self, explanations: Iterable[Explanation], now: float) -> list[dict[str, Any]]:
        """Apply pairs the rules decided (root explains symptom), in rule order."""
        records: list[dict[str, Any]] = []
        for ex in sorted(explanations, key=Explanation.sort_key):
            records.extend(self._explain(ex, now))
        return records

    def start_group(self, key: str, wait: float | None, interval: float | None, now: float) -> None:
        """``key`` anchors a group: its incident (created if its effect is none) is a group incident."""
        inc = self._incident_of.get(key)
        if inc is None:
            alarm = self._alarm(key)
            if alarm is None or not alarm.active or key in self._parent:
                return
            inc = self._new_incident(key, now)
        if inc.root != key or inc.phase != "pending":
            return  # already part of something larger, or notified: leave it as it is
        inc.kind = "group"
        inc.settle, inc.interval = wait, interval
        self._schedule(inc)

    def hold(self, key: str, until: float) -> None:
        """Keep the pending incident rooted at ``key`` from opening before ``until`` (a pair's window)."""
        inc = self._by_top.get(key)
        if inc is not None and inc.phase == "pending":
            inc.hold_until = max(until, inc.hold_until or until)
            self._schedule(inc)

    def discard(self, key: str) -> list[str]:
        """Drop the pending incident rooted at ``key`` without a record (a transient). Returns its
        other members, which the caller correlates again. An incident already notified stays."""
        inc = self._by_top.get(key)
        if inc is None or inc.phase != "pending":
            return []
        self.discarded += 1
        return [m for m in self._dissolve(inc) if m != key]

    def changed(self, alarm: ActiveAlarm) -> None:
        """Severity, effect or flapping changed: the incident is recomputed at the next flush."""
        inc = self._incident_of.get(alarm.key)
        if inc is not None:
            self._touch(inc)
        elif alarm.active and alarm.effect != "none" and alarm.key not in self._parent:
            self._new_incident(alarm.key, alarm.last_seen)

    def cleared(self, alarm: ActiveAlarm, now: float) -> None:
        """Call before the element's own health forgets the alarm, so the assessment can be frozen."""
        inc = self._incident_of.get(alarm.key)
        if inc is None:
            return
        inc.dirty = True
        if inc.kind == "group":  # a group ends with its last active member, a root incident with its root
            ends = not any(a.key != alarm.key for a in self._active_members(inc))
        else:
            ends = inc.root == alarm.key
        if ends and inc.phase in ("pending", "open"):
            self._refresh(inc, now, still_active=alarm)  # freeze impact and priority as they were
            if inc.phase == "open":
                inc.phase = "clearing"
            inc.clear_since = now
        self._schedule(inc)

    def health_changed(self, ne_id: str) -> None:
        """An element's own health changed: incidents whose impact reaches below it are re-assessed.

        This is how two incidents meet: agg-1 down alone leaves olt-7 at risk; when agg-2 goes down
        in another incident, olt-7 is down and agg-1's incident must say so too.
        """
        if not self._watch:
            return
        for x in (ne_id, *self._topology.descendants(ne_id)):
            for top in self._watch.get(x, ()):
                inc = self._by_top.get(top)
                if inc is not None and inc.phase == "open":
                    self._touch(inc)

    def acknowledge(self, incident_id: str, by: str, note: str | None, now: float) -> dict[str, Any] | None:
        """An operator took the incident: an `updated` record says so at once. None if not open.

        Idempotent: the same ``by`` again with the same note (or none) changes nothing and returns
        the incident's ``current`` record (same version, nothing to deliver); another person, or a
        new note, is a new acknowledgement and a new version."""
        inc = next((i for i in self._by_top.values() if i.id == incident_id), None)
        if inc is None or inc.phase not in ("open", "clearing"):
            return None
        before = inc.acknowledged
        if before is not None and before["by"] == by and (note is None or note == before["note"]):
            return self.record(inc, "current", now)
        inc.acknowledged = {"by": by, "at": format_time(now), "note": note}
        return self._emit(inc, "updated", now)

    # -- snapshot ------------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this book is (JSON-ready)."""
        incidents = []
        for inc in self._by_top.values():
            d = {f.name: getattr(inc, f.name) for f in fields(inc)}
            d["members"] = sorted(inc.members)
            d["grouping_rules"] = sorted(inc.grouping_rules)
            d["impact"] = _impact_dump(inc.impact) if inc.impact is not None else None
            d["priority"] = (
                {
                    "priority": inc.priority.priority,
                    "score": inc.priority.score,
                    "breakdown": inc.priority.breakdown,
                }
                if inc.priority is not None
                else None
            )
            incidents.append(d)
        return {
            "incidents": incidents,
            "parent": [
                [k, sup.root, sup.rule, sup.relation, sup.delay, sup.detail]
                for k, sup in self._parent.items()
            ],
            "timers": [list(t) for t in self._timers],
            "seq": self._seq,
            "counters": [self.opened, self.resolved, self.merged, self.discarded, self.held_back],
        }

    def load(self, state: Mapping[str, Any]) -> int:
        """Restore a dump. Incidents whose root alarm is gone (element removed) are dropped."""
        dropped = 0
        for d in state["incidents"]:
            if self._alarm(d["root"]) is None:
                dropped += 1
                continue
            impact = _impact_load(d["impact"]) if d["impact"] is not None else None
            priority = Priority(**d["priority"]) if d["priority"] is not None else None
            inc = Incident(
                **{
                    **d,
                    "members": set(d["members"]),  # verbatim: a member may outlive its alarm's retention
                    "grouping_rules": set(d["grouping_rules"]),
                    "impact": None,
                    "priority": priority,
                }
            )
            self._by_top[inc.root] = inc
            for m in inc.members:
                self._incident_of[m] = inc
            self._rewatch(inc, impact)
            inc.impact = impact
        self._parent = {p[0]: Suppression(*p[1:]) for p in state["parent"] if p[0] in self._incident_of}
        self._timers = [(due, seq, top) for due, seq, top in state["timers"]]
        heapq.heapify(self._timers)
        self._seq = state["seq"]
        self.opened, self.resolved, self.merged, self.discarded, self.held_back = state["counters"]
        return dropped

    # -- time ----------------------------------------------------------------------------------
    def tick(self, now: float) -> tuple[list[dict[str, Any]], list[str]]:
        """Open settled incidents, resolve held-down ones, flush updates.

        Returns the records and the keys of every member of the incidents that resolved: the
        caller retracts their correlation facts (a resolved root explains nothing more) and
        re-submits those still active to correlation.
        """
        records: list[dict[str, Any]] = []
        released: list[str] = []
        while (due := self.next_due()) is not None and due <= now:
            _, _, top = heapq.heappop(self._timers)
            inc = self._by_top[top]
            inc.scheduled = None
            reschedule = self._quarantine.run(
                PART,
                inc.id,
                now,
                partial(self._step, inc, now, records, released),
                True,
                poison=partial(self._describe, inc),
            )
            if reschedule:
                self._schedule(inc)
        return records, released

    def _step(self, inc: Incident, now: float, records: list[dict[str, Any]], released: list[str]) -> bool:
        """One due incident: open, resolve or update it. False when it needs no new timer."""
        if inc.phase == "pending":
            if self._maintained(inc, now):
                return False
            if inc.maintenance is not None and inc.clear_since is not None:
                self.discarded += 1  # raised and cleared inside the maintenance window
                released.extend(m for m in self._dissolve(inc) if m != inc.root)
                return False
            records.append(self._open(inc, now))
        elif inc.phase == "clearing":
            records.append(self._emit(inc, "resolved", now))
            if self.on_resolved is not None:
                self.on_resolved(inc, records[-1])
            released.extend(self._dissolve(inc))
            self.resolved += 1
            return False
        else:
            if inc.sla_due is not None and now >= inc.sla_due:
                inc.sla_due = None  # an SLA milestone: re-assessed at its next update slot
                inc.dirty = True
            if self._update_due(inc, now) and not self._muted(inc, now):
                self._refresh(inc, now)
                if self._signature(inc) != inc.signature:
                    records.append(self._emit(inc, "updated", now))
                inc.dirty = False
        return True

    def _describe(self, inc: Incident) -> str:
        """What an operator needs to find a quarantined incident's poison: its root and members."""
        members = sorted(inc.members)
        more = f" and {len(members) - 5} more" if len(members) > 5 else ""
        return f"incident {inc.id} ({inc.phase}), root {inc.root}, members {', '.join(members[:5])}{more}"

    def _maintained(self, inc: Incident, now: float) -> bool:
        """A maintenance window covers the root: hold the incident until the window ends."""
        covering = self._covering(inc, now)
        if covering is None:
            return False
        if inc.maintenance is None:
            self.held_back += 1
        inc.maintenance, inc.hold_until = covering
        self._schedule(inc)
        return True

    def maintenance_changed(self) -> None:
        """The calendar changed at run time (a silence added, changed or expired): every incident
        held back or muted by maintenance is looked at again at its next slot, which may be now."""
        for inc in self._by_top.values():
            if inc.phase == "pending" and inc.maintenance is not None:
                inc.hold_until = None
            elif inc.phase == "open" and inc.muted_until is not None:
                inc.muted_until = None
            else:
                continue
            self._schedule(inc)

    def _muted(self, inc: Incident, now: float) -> bool:
        """An open incident whose root a maintenance window covers sends no `updated` until the
        window ends (then one, if anything changed meanwhile). Its resolution is never held."""
        covering = self._covering(inc, now)
        if covering is None or covering[1] <= now:  # a window ending now mutes nothing
            inc.muted_until = None
            return False
        inc.muted_until = covering[1]
        return True

    def _covering(self, inc: Incident, now: float) -> tuple[str, float] | None:
        """The maintenance window covering the incident's root now (rule, end), if any."""
        if not self._calendar:
            return None
        root = self._alarm(inc.root)
        return self._calendar.covering(root.ne_id, now) if root is not None else None

    def _open(self, inc: Incident, now: float) -> dict[str, Any]:
        if inc.clear_since is None:
            self._refresh(inc, now)
            inc.phase = "open"
        else:
            inc.phase = "clearing"
        inc.opened_at = now
        self.opened += 1
        record = self._emit(inc, "opened", now)
        self._schedule(inc)
        return record

    def _update_due(self, inc: Incident, now: float) -> bool:
        if inc.phase != "open" or not inc.dirty:
            return False
        return inc.last_emit is None or now >= inc.last_emit + self._interval(inc)

    def _touch(self, inc: Incident) -> None:
        """Mark an incident changed; it is re-assessed at its next update slot."""
        inc.dirty = True
        self._schedule(inc)

    # -- internals -----------------------------------------------------------------------------
    def _new_incident(self, key: str, now: float) -> Incident:
        alarm = self._alarm(key)
        first_seen = alarm.first_seen if alarm is not None else now
        inc = Incident(id=incident_id(key, first_seen), root=key, created=now)
        if alarm is None or not alarm.active:
            inc.clear_since = now  # a cleared root that still explains late symptoms: hold-down runs
        inc.members.add(key)
        self._by_top[key] = inc
        self._incident_of[key] = inc
        self._schedule(inc)
        return inc

    def _top(self, key: str) -> str:
        seen = {key}
        while key in self._parent:
            key = self._parent[key].root
            if key in seen:  # defensive: _explain never creates cycles
                break
            seen.add(key)
        return key

    def _explain(self, ex: Explanation, now: float) -> list[dict[str, Any]]:
        if ex.root == ex.symptom or ex.symptom in self._parent:
            return []  # an alarm keeps its first explanation: stable incidents
        top = self._top(ex.root)
        if top == ex.symptom:
            return []  # would make a cycle: the symptom already explains the root
        root_inc = self._by_top.get(top)
        if root_inc is not None and root_inc.phase == "resolved":
            return []
        root_alarm = self._alarm(ex.root)
        if root_alarm is None:
            return []
        if root_inc is None:  # a root with no effect of its own gets an incident once it explains something
            root_inc = self._new_incident(top, now)
        self._parent[ex.symptom] = Suppression(
            ex.root,
            ex.rule.qualified,
            ex.rule.relation or ex.rule.form,
            round(ex.symptom_time - ex.root_time, 3),
            ex.detail,
        )
        root_inc.grouping_rules.add(ex.rule.qualified)
        self._touch(root_inc)
        records: list[dict[str, Any]] = []
        old = self._by_top.pop(ex.symptom, None)
        if old is not None:  # the symptom was a top root: its whole group moves
            for member in old.members:
                root_inc.members.add(member)
                self._incident_of[member] = root_inc
            root_inc.grouping_rules |= old.grouping_rules
            if old.phase in ("open", "clearing"):
                if root_inc.phase == "pending":
                    # An incident already notified is absorbed: notify the absorber now, so that
                    # `merged_into` always names an incident the receivers have seen.
                    records.append(self._open(root_inc, now))
                old.phase = "resolved"
                self._rewatch(old, None)
                self.merged += 1
                records.append(self._emit(old, "resolved", now, resolution="merged", merged_into=root_inc.id))
                if self.on_resolved is not None:  # its members and their suppressions are still whole
                    self.on_resolved(old, records[-1])
        else:
            root_inc.members.add(ex.symptom)
            self._incident_of[ex.symptom] = root_inc
        return records

    def _dissolve(self, inc: Incident) -> list[str]:
        inc.phase = "resolved"
        self._rewatch(inc, None)
        del self._by_top[inc.root]
        released: list[str] = []
        for member in sorted(inc.members):
            self._incident_of.pop(member, None)
            self._parent.pop(member, None)
            released.append(member)
        return released

    def _active_members(self, inc: Incident, still_active: ActiveAlarm | None = None) -> list[ActiveAlarm]:
        out = []
        for key in sorted(inc.members):
            alarm = self._alarm(key)
            if alarm is not None and (alarm.active or alarm is still_active):
                out.append(alarm)
        return out

    def _refresh(self, inc: Incident, now: float, still_active: ActiveAlarm | None = None) -> None:
        active = self._active_members(inc, still_active)
        seeds = sorted({a.ne_id for a in active if a.effect in EFFECT_HEALTH})
        if not seeds and inc.impact is not None:
            return  # nothing active carries an effect any more: keep the last assessment
        # An incident whose every alarm with an effect concerns one service (the engine's per-service
        # KQI alarms) affects that service's subscriptions only.
        scoped = {service_scope(a.key) for a in active if a.effect in EFFECT_HEALTH}
        only = frozenset(x for x in scoped if x) if scoped and None not in scoped else None
        # their own levels count then: element health leaves them out
        own = with_service_levels(self._own, self._service_health, only) if only is not None else self._own
        impact = compute_impact(self._topology, own, seeds, only_services=only)
        self._rewatch(inc, impact)
        inc.impact = impact
        root = self._alarm(inc.root)
        fallback = "degraded" if root is not None and root.effect == "degraded" else "at_risk"
        if root is not None and root.effect == "outage" and not impact.elements:
            fallback = "outage"
        inc.state = impact.state or fallback
        ranks = [SEVERITY_ORDER.index(a.severity) for a in active if a.severity in SEVERITY_ORDER]
        if ranks:
            inc.severity = SEVERITY_ORDER[max(ranks)]
        max_crit = max(
            (
                self._topology.service_types[s].criticality
                for s in impact.services
                if s in self._topology.service_types
            ),
            default=0,
        )
        inc.priority = assess(
            PriorityInput(
                state=inc.state,
                customers_by_tier=impact.by_tier,
                tier_weights={t.name: t.weight for t in self._topology.tiers.values()},
                max_criticality=max_crit,
                severity=inc.severity,
            ),
            self._priority,
        )
        if self._sla is not None and (still_active is None or inc.sla is None):
            # At the root's clear the assessment is frozen: the SLA facts stay those last notified.
            inc.sla = self._sla(impact, now)
            inc.sla_due = self._next_milestone(inc.sla, now) if still_active is None else None
        if inc.sla is not None and inc.sla["points"] > 0:
            inc.priority = add_points(inc.priority, "sla", inc.sla["points"], inc.sla, self._priority)
        if self._overrides:
            inc.priority, inc.severity = self._overrides.apply(
                inc.priority, inc.severity, impact, self._parts(inc.root)
            )

    def _next_milestone(self, sla: Mapping[str, Any] | None, now: float) -> float | None:
        """When the soonest breach's time left reaches the next milestone below it, if the outage
        lasts: then the urgency (and the score) has moved a step, or the breach has happened."""
        left = sla.get("seconds_to_breach") if sla else None
        if left is None:
            return None
        below = [m for m in self._sla_milestones if m < left]
        return now + (left - below[0]) if below else None

    def _rewatch(self, inc: Incident, impact: Impact | None) -> None:
        old = inc.impact.elements if inc.impact is not None else {}
        new = impact.elements if impact is not None else {}
        for x in old:
            if x not in new and x in self._watch:
                self._watch[x].discard(inc.root)
                if not self._watch[x]:
                    del self._watch[x]
        for x in new:
            self._watch.setdefault(x, set()).add(inc.root)

    def _signature(self, inc: Incident) -> str:
        p = inc.priority
        active = tuple((a.key, a.severity, a.flapping) for a in self._active_members(inc))
        return repr(
            (
                inc.phase,
                inc.state,
                p.priority if p else None,
                p.score if p else None,
                inc.impact.to_record() if inc.impact else None,
                tuple(sorted(inc.members)),
                active,
                inc.reraised,
                inc.acknowledged,
                # an SLA breach is news even when the score is already at its ceiling
                (inc.sla["customers_down"], inc.sla["customers_breached"]) if inc.sla else None,
            )
        )

    def _emit(self, inc: Incident, event: str, now: float, **extra: Any) -> dict[str, Any]:
        inc.version += 1
        inc.last_emit = now
        inc.signature = self._signature(inc)
        inc.dirty = False
        return self.record(inc, event, now, **extra)

    def record(self, inc: Incident, event: str, now: float, **extra: Any) -> dict[str, Any]:
        """The JSON record of an incident transition (also used by queries)."""
        root = self._alarm(inc.root)
        el = self._topology.element(root.ne_id) if root is not None else None
        p = inc.priority
        alarms: list[str] = []
        suppressed: list[dict[str, Any]] = []
        flapping: list[str] = []
        for key in sorted(inc.members):
            a = self._alarm(key)
            alarms.append(key)
            if a is not None and a.flapping:
                flapping.append(key)
            sup = self._parent.get(key)
            if sup is not None:
                suppressed.append(self._suppressed_entry(key, a, sup))
        rec: dict[str, Any] = {
            "incident_id": inc.id,
            "event": event,
            "version": inc.version,
            "time": format_time(now),
            "priority": p.priority if p else 5,
            "score": p.score if p else 0.0,
            "state": inc.state,
            "severity": inc.severity,  # the worst active member's, or a priority rule's override
            "root_cause": {
                "ne_id": root.ne_id if root else None,
                "alarm_id": inc.root,
                "probable_cause": root.probable_cause if root else None,
                "severity": root.severity if root else None,
                "element_type": el.type if el else None,
                "site": el.site if el else None,
                "region": el.region if el else None,
                "active": bool(root and root.active),
                "rule": sorted(inc.grouping_rules)[0] if inc.grouping_rules else None,
            },
            "impact": inc.impact.to_record() if inc.impact else _empty_impact(),
            "alarms": alarms,
            "suppressed": suppressed,
            "flapping": flapping,
            "opened_at": format_time(inc.opened_at) if inc.opened_at is not None else None,
            "acknowledged": dict(inc.acknowledged) if inc.acknowledged else None,
            "priority_breakdown": dict(p.breakdown) if p else {},
            "sla": dict(inc.sla) if inc.sla else None,
            "explanation": self._explanation(inc, root, suppressed),
        }
        if root is not None and root.threshold_info is not None:
            rec["root_cause"]["threshold_info"] = dict(root.threshold_info)
        if event == "resolved":
            rec["resolved_at"] = format_time(now)
            rec["resolution"] = extra.get("resolution", "cleared")
            if "merged_into" in extra:
                rec["merged_into"] = extra["merged_into"]
        return rec

    def _suppressed_entry(self, key: str, a: ActiveAlarm | None, sup: Suppression) -> dict[str, Any]:
        root = self._alarm(sup.root)
        where = {
            "downstream_of": f"{a.ne_id if a else '?'} is at or below {root.ne_id if root else '?'}",
            "upstream_of": f"{a.ne_id if a else '?'} is at or above {root.ne_id if root else '?'}",
            "same_element": f"same element {a.ne_id if a else '?'}",
            "same_site": f"same site {self._site(a)}",
            "same_region": f"same region {self._region(a)}",
            "same_service_path": "on a path of the same service type",
        }.get(sup.relation, sup.detail or sup.relation)
        entry: dict[str, Any] = {
            "alarm_id": key,
            "ne_id": a.ne_id if a else None,
            "probable_cause": a.probable_cause if a else None,
            "state": "active" if a and a.active else "cleared",
            "root": sup.root,
            "rule": sup.rule,
            "reason": f"explained by {sup.root} (rule {sup.rule}: {where}, {sup.delay:+.1f} s from the root)",
        }
        if a is not None and a.threshold_info is not None:
            entry["threshold_info"] = dict(a.threshold_info)  # the evidence: which KPI, how far
        return entry

    def _site(self, a: ActiveAlarm | None) -> str:
        return (self._topology.element(a.ne_id).site or "?") if a else "?"

    def _region(self, a: ActiveAlarm | None) -> str:
        return (self._topology.element(a.ne_id).region or "?") if a else "?"

    def _explanation(
        self, inc: Incident, root: ActiveAlarm | None, suppressed: list[dict[str, Any]]
    ) -> list[str]:
        lines: list[str] = []
        if root is not None:
            el = self._topology.element(root.ne_id)
            where = ", ".join(
                x for x in (el.type, f"site {el.site}" if el.site else "", el.region or "") if x
            )
            lines.append(
                f"root cause: {root.probable_cause} ({root.severity}, effect {root.effect}) on {root.ne_id} "
                f"({where}); no rule explains it"
            )
            if root.flapping:
                lines.append(f"the root alarm is flapping ({root.count} raises in this occurrence)")
            if root.text and root.key.startswith("rule:"):
                lines.append(f"raised by rule {raised_by(inc.root)}: {root.text}")
        if inc.kind == "group":
            lines.append("a group incident: it resolves when none of its alarms is active")
        if inc.maintenance is not None:
            lines.append(f"held back by maintenance window {inc.maintenance} until it ended")
        if suppressed:
            by_rule: dict[str, int] = {}
            for s in suppressed:
                by_rule[s["rule"]] = by_rule.get(s["rule"], 0) + 1
            parts = ", ".join(f"{n} by {rule}" for rule, n in sorted(by_rule.items()))
            lines.append(f"{len(suppressed)} alarm(s) suppressed as symptoms: {parts}")
        if inc.reraised:
            lines.append(f"the root was re-raised {inc.reraised} time(s) during the hold-down; same incident")
        if inc.impact is not None:
            im = inc.impact
            tiers = ", ".join(f"{t} {n}" for t, n in im.by_tier.items())
            services = ", ".join(f"{s} {n}" for s, n in im.services.items())
            lines.append(
                f"impact: {len(im.elements)} element(s) affected; {im.customers} customer(s)"
                + (f" ({tiers})" if tiers else "")
                + (f"; services {services}" if services else "")
                + f"; state {inc.state}"
            )
        if inc.priority is not None:
            lines.append(explain(inc.priority))
        return lines


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


def _empty_impact() -> dict[str, Any]:
    return {"elements": 0, "services": {}, "customers": {"total": 0, "by_tier": {}}, "by_state": {}}
