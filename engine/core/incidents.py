"""Incidents: one per root-cause group, with their lifecycle, impact, priority and records.

Theory of operation
-------------------
An incident belongs to a *top root*: an alarm that no rule explains. Every alarm a rule explains
(directly or through a chain: core → aggregation → access) belongs to the incident of the top of its
chain, as a suppressed symptom with the reason. ``IncidentBook`` is pure: it takes alarm changes and
explanations with ``now`` and returns typed records (``IncidentRecord``). It orchestrates parts
that each own one concern:

* ``engine.core.lifecycle``: the transition table, the only code that changes ``Incident.phase``;
* ``engine.core.merge_graph``: which alarm explains which, and each alarm's incident;
* ``engine.core.assessment``: impact, state, severity and priority from the active alarms;
* ``engine.core.incident_stages``: maintenance (holds openings, mutes updates) and SLA milestones
  (re-assess as the breach nears), each writing its reason on the incident;
* ``engine.core.incident_records``: the records and their words.

A pending incident whose root already cleared still opens at settle time (the outage happened) and
resolves after the hold-down. While clearing, impact and priority stay as they were when the root
cleared, so the ``resolved`` record says what was resolved.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from engine.core import lifecycle
from engine.core.alarms import ActiveAlarm
from engine.core.assessment import EFFECT_HEALTH, SEVERITY_ORDER, Assessor
from engine.core.containment import Quarantine
from engine.core.experience.sla import SlaFacts
from engine.core.forms.correlator import Explanation
from engine.core.forms.maintenance import Calendar
from engine.core.forms.overrides import Overrides
from engine.core.impact import Health, Impact, LiveHealth
from engine.core.incident_records import (
    Acknowledgement,
    IncidentRecord,
    RecordBuilder,
    RecordEvent,
    Resolution,
)
from engine.core.incident_stages import MaintenanceStage, SlaStage
from engine.core.incident_state import (
    Emitted,
    GroupTimers,
    Incident,
    Signature,
    describe,
    dump_incident,
    incident_id,
    load_incident,
    phase_due,
)
from engine.core.lifecycle import Event, Phase
from engine.core.merge_graph import MergeGraph, Suppression
from engine.core.settings import IncidentSettings, PrioritySettings
from engine.model.topology import Topology

# Re-exported: the book's types, for the pipeline and explain.
__all__ = ["EFFECT_HEALTH", "SEVERITY_ORDER", "Incident", "IncidentBook", "IncidentRecord", "Phase"]
__all__ += ["Suppression", "incident_id"]

PART = "incidents"  # the part's name in the quarantine


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
        sla: Callable[[Impact, float], SlaFacts | None] | None = None,
        sla_milestones: Sequence[float] = (),
        quarantine: Quarantine | None = None,
        live_health: LiveHealth | None = None,
    ) -> None:
        # An incident whose step raises is quarantined alone (``engine.core.containment``); the others go on.
        self._quarantine = quarantine if quarantine is not None else Quarantine()
        self._quarantined = self._quarantine.held  # its truth: anything quarantined (no method call)
        self._settings = settings
        self._alarm = alarm
        # alarm key -> the incident whose end released it, from its release until the flow has
        # correlated it again (``resurfaced``), within one step: an incident it roots then is named
        # after that one too (``_new_incident``)
        self._released_from: dict[str, str] = {}
        self._graph = MergeGraph()
        self._incident_of = self._graph.incident_of
        # ``incident_of(key)``: the incident ``key`` is a member of, None if none (the graph's own
        # dictionary lookup: the flow asks it of every forgotten alarm)
        self.incident_of: Callable[[str], Incident | None] = self._graph.incident_of
        self._rooted_at = self._graph.rooted_at
        self._maintenance = MaintenanceStage(calendar, alarm)
        self._calendar = calendar  # (the same object, changed in place: empty, nothing is muted)
        self._assessor = Assessor(
            topology=topology,
            priority=priority,
            alarm=alarm,
            own_health=own_health,
            service_health=service_health if service_health is not None else {},
            sla=SlaStage(sla, sla_milestones),
            overrides=overrides,
            parts=parts or (lambda _key: frozenset()),
            live=live_health,  # over ``own_health``: impacts cached until their cone changes
        )
        self._records = RecordBuilder(topology, alarm, self._graph.suppression)
        # whether an alarm is a symptom already, so that every later explanation of it is ignored
        # (``MergeGraph.can_link``): the links' own ``__contains__`` (the map is never replaced)
        self.explained: Callable[[str], bool] = self._graph.links().__contains__
        self._timers: list[tuple[float, int, str]] = []  # (due, seq, top root key), lazily invalidated
        self._seq = 0
        # ``next_due``'s answer while nothing quarantined and nothing changed since it was computed
        # (asked about 3.6 times per message, most of them with nothing changed in between), and the
        # incident of the heap entry that gives it (``_next_inc``): every heap entry is due at that
        # time or later, and that entry is valid. So a change to any other incident leaves the answer
        # as it is, but for a new entry due earlier, which ``_schedule`` takes as the answer. The
        # methods called per alarm forget it only when they change that incident (``_schedule``
        # does, and they look before changing it); the others forget it first (``_changing``). A
        # cache, never snapshotted. ``tests/test_incidents_due_cache.py`` checks it against the
        # recomputed answer at every call over the examples and scenarios.
        self._next: float | None = None
        self._next_known = False
        self._next_inc: Incident | None = None
        self.opened = 0
        self.resolved = 0
        self.merged = 0
        self.discarded = 0  # pending incidents dropped: transients (pair), cleared in maintenance
        self.held_back = 0  # openings deferred by a maintenance window
        # Called with an incident about to be forgotten and its `resolved` record, while the book
        # still holds everything about it (members, suppressions): post-mortems (the daemon keeps
        # its explanation). It only reads; it changes nothing, so decisions are the same with or
        # without one.
        self.on_resolved: Callable[[Incident, IncidentRecord], None] | None = None

    # -- queries -------------------------------------------------------------------------------
    def incidents(self) -> Iterable[Incident]:
        return self._graph.incidents()

    def suppression(self, key: str) -> Suppression | None:
        return self._graph.suppression(key)

    def next_due(self) -> float | None:
        if self._next_known and not self._quarantined:
            return self._next
        due = self._next_due()
        if self._quarantined:  # a quarantined incident's due time moves with its retry: not kept
            self._next_known = False
        else:
            self._next, self._next_known = due, True
        return due

    def reschedule(self) -> None:
        """Put every incident's timer at its due time again: after the quarantine was emptied from
        outside (a reload's ``retry_quarantined``), a quarantined incident's heap entry waits for
        a retry time that no longer applies, and ``next_due`` would drop it as stale, leaving the
        incident with no timer at all."""
        for inc in list(self.incidents()):
            self._schedule(inc)
        self._changing()

    def _changing(self) -> None:
        """Forget ``next_due``'s answer: an incident or the timer heap is about to change."""
        self._next_known = False

    def _next_due(self) -> float | None:
        """``next_due`` computed: the top of the heap, its stale entries dropped on the way (its
        incident kept as ``_next_inc``)."""
        while self._timers:
            due, _, top = self._timers[0]
            inc = self._rooted_at(top)
            # ``_due``, its common case (nothing quarantined) without the call
            if (
                inc is not None
                and (self._due(inc) if self._quarantined else phase_due(inc, self._settings)) == due
            ):
                self._next_inc = inc
                return due
            heapq.heappop(self._timers)  # stale entry: the incident moved on or is gone
        self._next_inc = None
        return None

    def _due(self, inc: Incident) -> float | None:
        """When this incident next needs `tick`, from its phase and timers (and, while it is
        quarantined, not before its retry)."""
        due = phase_due(inc, self._settings)
        return self._quarantine.due(PART, due, inc.id) if self._quarantined else due

    def _schedule(self, inc: Incident) -> None:
        """Put ``inc``'s timer at its due time (a new heap entry when that moved). ``next_due``'s
        answer stays unless ``inc`` is the incident that gives it (then it is forgotten) or the new
        entry is due earlier (then that is the answer), as its invariant says (``__init__``)."""
        if self._quarantined:
            self._next_known = False  # (not kept while anything is quarantined)
            due = self._due(inc)
        else:
            if inc is self._next_inc:
                self._next_known = False
            due = phase_due(inc, self._settings)
        if due is not None and inc.scheduled != due:
            inc.scheduled = due
            self._seq += 1
            heapq.heappush(self._timers, (due, self._seq, inc.root))
            if self._next_known and ((answer := self._next) is None or due < answer):
                self._next, self._next_inc = due, inc

    # -- alarm changes -------------------------------------------------------------------------
    def alarm_changed(self, key: str) -> None:
        """Every change of an alarm (``AlarmChange``, of any kind, before it is applied): counted on
        the incident it is a member of, whose records and re-assessments reuse what they derived
        from its members' alarms while neither that count nor the member count moved
        (``Incident.active``), and its records bring up to date only what they show of the members
        whose alarms changed (``Incident.changed_members``, ``Incident.walked``)."""
        inc = self._incident_of(key)
        if inc is not None:
            inc.alarm_changes += 1
            inc.changed_members.add(key)

    def raised(self, alarm: ActiveAlarm, explanations: list[Explanation], now: float) -> list[IncidentRecord]:
        """A new occurrence, with the pairs the rules matched for it (either side)."""
        records: list[IncidentRecord] = []
        inc = self._incident_of(alarm.key)
        if inc is not None:  # re-raise of a member or root
            if inc is self._next_inc:
                self._next_known = False  # (``_changing``, only for the incident of the answer)
            if (inc.root == alarm.key or inc.group is not None) and inc.clear_since is not None:
                lifecycle.fire(inc, Event.ROOT_RERAISED, now)
            self._touch(inc)
        if explanations:  # (most raises come with none)
            records.extend(self.explain(explanations, now))
        if self._incident_of(alarm.key) is None and alarm.effect != "none":
            self._new_incident(alarm.key, now)
        return records

    def explain(self, explanations: Iterable[Explanation], now: float) -> list[IncidentRecord]:
        """Apply pairs the rules decided (root explains symptom), in rule order."""
        self._next_known = False  # ``_changing``, inlined
        records: list[IncidentRecord] = []
        explained = self.explained
        for ex in sorted(explanations, key=Explanation.sort_key):
            # a symptom keeps its first explanation (``_explain``'s first test, without its calls:
            # on a storm's outages each pair comes twice, once per rule they share)
            if not explained(ex.symptom):
                records.extend(self._explain(ex, now))
        return records

    def start_group(self, key: str, wait: float | None, interval: float | None, now: float) -> None:
        """``key`` anchors a group: its incident (created if its effect is none) is a group incident."""
        self._changing()
        inc = self._incident_of(key)
        if inc is None:
            alarm = self._alarm(key)
            if alarm is None or not alarm.active or self._graph.suppression(key) is not None:
                return
            inc = self._new_incident(key, now)
        if inc.root != key or inc.phase != "pending":
            return  # already part of something larger, or notified: leave it as it is
        inc.group = GroupTimers(wait, interval)
        self._schedule(inc)

    def hold(self, key: str, until: float) -> None:
        """Keep the pending incident rooted at ``key`` from opening before ``until`` (a pair's window)."""
        self._changing()
        inc = self._rooted_at(key)
        if inc is not None and inc.phase == "pending":
            inc.hold_until = max(until, inc.hold_until or until)
            self._schedule(inc)

    def discard(self, key: str, now: float) -> list[str]:
        """Drop the pending incident rooted at ``key`` without a record (a transient). Returns its
        other members, which the caller correlates again. An incident already notified stays."""
        self._changing()
        inc = self._rooted_at(key)
        if inc is None or not lifecycle.allows(inc.phase, Event.DISCARDED):
            return []
        self.discarded += 1
        lifecycle.fire(inc, Event.DISCARDED, now)
        return self._release(inc, [m for m in self._dissolve(inc) if m != key])

    def changed(self, alarm: ActiveAlarm, *, became_fault: bool = False) -> None:
        """Severity, effect or flapping changed: the incident is recomputed at the next flush.
        ``became_fault``: the alarm had no effect before this change (a warning raised again as
        critical): an incident made of it starts its fault with the raise that changed it."""
        inc = self._incident_of(alarm.key)
        if inc is not None:
            self._touch(inc)
        elif alarm.active and alarm.effect != "none" and self._graph.suppression(alarm.key) is None:
            start = alarm.last_seen if became_fault else None
            self._new_incident(alarm.key, alarm.last_seen, fault_start=start)

    def cleared(self, alarm: ActiveAlarm, now: float) -> None:
        """Call before the element's own health forgets the alarm, so the assessment can be frozen."""
        inc = self._incident_of(alarm.key)
        if inc is None:
            return
        if inc is self._next_inc:
            self._next_known = False  # (``_changing``, only for the incident of the answer)
        inc.dirty = True
        # (``kind`` "group") a group ends with its last active member, a root incident with its root
        if inc.group is not None:
            ends = not any(a.key != alarm.key for a in self._assessor.active_members(inc))
        else:
            ends = inc.root == alarm.key
        if ends and lifecycle.allows(inc.phase, Event.ROOT_CLEARED):
            self._assessor.refresh(inc, now, still_active=alarm)  # freeze impact and priority as they were
            lifecycle.fire(inc, Event.ROOT_CLEARED, now)
        self._schedule(inc)

    def health_changed(self, ne_id: str) -> None:
        """An element's own health changed: incidents whose impact reaches below it are re-assessed.

        This is how two incidents meet: agg-1 down alone leaves olt-7 at risk; when agg-2 goes down
        in another incident, olt-7 is down and agg-1's incident must say so too.
        """
        for top in self._assessor.watching(ne_id):
            inc = self._rooted_at(top)
            if inc is not None and inc.phase == "open":
                inc.dirty = True  # ``_touch``, inlined (a health change may reach many incidents)
                self._schedule(inc)

    def acknowledge(self, incident_id: str, by: str, note: str | None, now: float) -> IncidentRecord | None:
        """An operator took the incident: an `updated` record says so at once. None if not open.

        Idempotent: the same ``by`` again with the same note (or none) changes nothing and returns
        the incident's ``current`` record (same version, nothing to deliver); another person, or a
        new note, is a new acknowledgement and a new version."""
        self._changing()
        inc = self._graph.find(incident_id)
        if inc is None or not lifecycle.allows(inc.phase, Event.ACKNOWLEDGED):
            return None
        before = inc.acknowledged
        if before is not None and before.by == by and (note is None or note == before.note):
            return self.record(inc, "current", now)
        inc.acknowledged = Acknowledgement(by, now, note)
        lifecycle.fire(inc, Event.ACKNOWLEDGED, now)
        return self._emit(inc, "updated", now)

    # -- snapshot ------------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this book is (JSON-ready)."""
        incidents = [dump_incident(inc) for inc in self._graph.incidents()]
        return {
            "incidents": incidents,
            "parent": self._graph.dump_links(),
            "timers": [list(t) for t in self._timers],
            "seq": self._seq,
            "counters": [self.opened, self.resolved, self.merged, self.discarded, self.held_back],
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore a dump. Every incident is kept, even one whose root alarm the table forgot
        before the dump (as the core that dumped it kept it: a group whose first member cleared
        over ``retain`` ago while the others are still active, say); ``roots_removed`` then ends
        those whose elements left the topology.

        Snapshot format 2 (before typed records) kept an acknowledgement's ``at`` as RFC 3339
        text and had no ``sla_milestone``/``escalation``/``muted_by``: both load."""
        self._changing()
        loaded: list[Incident] = []
        for d in state["incidents"]:
            inc, impact = load_incident(d)
            loaded.append(inc)
            self._assessor.rewatch(inc, impact)
            inc.assessment = replace(inc.assessment, impact=impact)
        self._graph.restore(loaded, state["parent"])
        self._records.clear()
        self._timers = [(due, seq, top) for due, seq, top in state["timers"]]
        heapq.heapify(self._timers)
        self._seq = state["seq"]
        self.opened, self.resolved, self.merged, self.discarded, self.held_back = state["counters"]

    def roots_removed(self, gone: frozenset[str], now: float) -> int:
        """After a restore into a topology without some elements: ``gone`` are the alarms the
        restore dropped for that reason. An incident rooted at one of them (a group: whose members
        are all gone or cleared) is taken as its root cleared at ``now``: it resolves after the
        hold-down with a ``resolved`` record, and its still-active symptoms re-surface then
        (correlated again), as when a root clears; a pending one opens as clearing first, as
        one whose root cleared before its settle. Call it once every part is loaded (its timers
        read the quarantine). Returns how many incidents it ended that way."""
        self._changing()
        removed = 0
        for inc in list(self._graph.incidents()):
            if inc.clear_since is not None or not lifecycle.allows(inc.phase, Event.ROOT_CLEARED):
                continue
            if inc.group is None:
                ends = inc.root in gone
            else:
                ends = not gone.isdisjoint(inc.members) and not self._assessor.active_members(inc)
            if ends:
                removed += 1
                lifecycle.fire(inc, Event.ROOT_CLEARED, now)
                self._touch(inc)
        return removed

    # -- time ----------------------------------------------------------------------------------
    def tick(self, now: float) -> tuple[list[IncidentRecord], list[str]]:
        """Open settled incidents, resolve held-down ones, flush updates.

        Returns the records and the keys of every member of the incidents that resolved: the
        caller retracts their correlation facts (a resolved root explains nothing more) and
        re-submits those still active to correlation.
        """
        records: list[IncidentRecord] = []
        released: list[str] = []
        while (due := self.next_due()) is not None and due <= now:
            _, _, top = heapq.heappop(self._timers)
            self._next_known = False  # ``_changing``, inlined
            inc = self._rooted_at(top)
            assert inc is not None  # next_due just checked it
            inc.scheduled = None
            if self._quarantined:
                reschedule = self._quarantine.run(
                    PART,
                    inc.id,
                    now,
                    partial(self._step, inc, now, records, released),
                    True,
                    poison=partial(describe, inc),
                )
            else:  # nothing quarantined: as ``Quarantine.run`` would, without its closures
                try:
                    reschedule = self._step(inc, now, records, released)
                except Exception as exc:  # containment: this incident's, not the book's
                    self._quarantine.failed(PART, inc.id, exc, now, describe(inc))
                    reschedule = True
            if reschedule:
                self._schedule(inc)
        return records, released

    def _step(self, inc: Incident, now: float, records: list[IncidentRecord], released: list[str]) -> bool:
        """One due incident: open, resolve or update it. False when it needs no new timer."""
        if inc.phase == "pending":
            if self._held(inc, now):
                return False
            if inc.maintenance is not None and inc.clear_since is not None:
                self.discarded += 1  # raised and cleared inside the maintenance window
                lifecycle.fire(inc, Event.DISCARDED, now)
                released.extend(self._release(inc, [m for m in self._dissolve(inc) if m != inc.root]))
                return False
            records.append(self._open(inc, now))
        elif inc.phase == "clearing":
            records.append(self._emit(inc, "resolved", now))
            if self.on_resolved is not None:
                self.on_resolved(inc, records[-1])
            lifecycle.fire(inc, Event.HOLD_DOWN_ELAPSED, now)
            released.extend(self._release(inc, self._dissolve(inc)))
            self.resolved += 1
            return False
        else:
            if inc.milestone is not None and now >= inc.milestone.due:
                # an SLA milestone: re-assessed at its next update slot
                if inc.milestone.seconds_to_breach is not None:
                    inc.escalation = inc.milestone.reason
                inc.milestone = None
                inc.dirty = True
            # an update due (open, changed, its update slot come) and not muted by maintenance
            if inc.phase != "open" or not inc.dirty:
                return True
            at = inc.emitted.at
            if at is not None:
                # ``update_interval``, inlined (asked at every update)
                group = inc.group
                interval = group.interval if group is not None else None
                if not now >= at + (interval if interval is not None else self._settings.update_interval):
                    return True
            if self._calendar:
                if self._muted(inc, now):
                    return True
            else:
                inc.muted = None  # ``_muted`` with an empty calendar: nothing covers its root
            active = self._assessor.refresh(inc, now)
            signature = self._signature(inc, active)
            if not signature.same(inc.emitted.signature):
                lifecycle.fire(inc, Event.UPDATE_DUE, now)
                records.append(self._emit(inc, "updated", now, signature=signature))
            inc.dirty = False
        return True

    def _held(self, inc: Incident, now: float) -> bool:
        """A maintenance window covers the root: hold the incident until the window ends."""
        covered = self._maintenance.hold(inc.root, now)
        if covered is None:
            return False
        if inc.maintenance is None:
            self.held_back += 1
        inc.maintenance, inc.hold_until = covered.rule, covered.until
        self._schedule(inc)
        return True

    def maintenance_changed(self) -> None:
        """The calendar changed at run time (a silence added, changed or expired): every incident
        held back or muted by maintenance is looked at again at its next slot, which may be now."""
        self._changing()
        for inc in self._graph.incidents():
            if inc.phase == "pending" and inc.maintenance is not None:
                inc.hold_until = None
            elif inc.phase == "open" and inc.muted is not None:
                inc.muted = None
            else:
                continue
            self._schedule(inc)

    def _muted(self, inc: Incident, now: float) -> bool:
        """An open incident whose root a maintenance window covers sends no `updated` until the
        window ends (then one, if anything changed meanwhile). Its resolution is never held."""
        inc.muted = self._maintenance.mute(inc.root, now)
        return inc.muted is not None

    def _open(self, inc: Incident, now: float) -> IncidentRecord:
        if inc.clear_since is None:
            self._assessor.refresh(inc, now)
            lifecycle.fire(inc, Event.SETTLED, now)
        else:
            lifecycle.fire(inc, Event.SETTLED_CLEARED, now)
        self.opened += 1
        record = self._emit(inc, "opened", now)
        self._schedule(inc)
        return record

    def _touch(self, inc: Incident) -> None:
        """Mark an incident changed; it is re-assessed at its next update slot."""
        inc.dirty = True
        self._schedule(inc)

    # -- internals -----------------------------------------------------------------------------
    def _new_incident(self, key: str, now: float, *, fault_start: float | None = None) -> Incident:
        alarm = self._alarm(key)
        first_seen = alarm.first_seen if alarm is not None else now
        # an alarm released by the end of the incident it was in (its own merged into that one, or
        # a symptom of it) roots a new incident: an id made with that incident's too, never the id
        # of one merged away earlier (the same in every core that held the same incident: the
        # cluster's partitions agree)
        after = self._released_from.pop(key, None)
        # A cleared root that still explains late symptoms: its hold-down runs from its creation.
        cleared = alarm is None or not alarm.active
        inc = Incident(
            id=incident_id(key, first_seen, after),
            root=key,
            created=now,
            fault_start=first_seen if fault_start is None else fault_start,
            clear_since=now if cleared else None,
        )
        self._graph.add(inc)
        self._schedule(inc)
        return inc

    def _explain(self, ex: Explanation, now: float) -> list[IncidentRecord]:
        # ``MergeGraph.can_link``, inlined with the root's top walked once (it is needed below): an
        # alarm keeps its first explanation, explains nothing of itself, and closes no cycle
        root, symptom = ex.root, ex.symptom
        if root == symptom or self.explained(symptom):
            return []
        top = self._graph.top(root)
        if top == symptom:
            return []  # (stable incidents)
        root_inc = self._rooted_at(top)
        if root_inc is not None and root_inc.phase == "resolved":
            return []
        if self._alarm(ex.root) is None:
            return []
        if root_inc is None:  # a root with no effect of its own gets an incident once it explains something
            root_inc = self._new_incident(top, now)
        why = Suppression(
            ex.root,
            ex.rule.qualified,
            ex.rule.relation or ex.rule.form,
            round(ex.symptom_time - ex.root_time, 3),
            ex.detail,
        )
        self._touch(root_inc)
        old = self._graph.link(ex.symptom, why, root_inc)
        if old is None:
            return []
        old.walked = None  # its root is a symptom now: its last records show it so
        # The symptom was a top root: its whole group moved into root_inc.
        records: list[IncidentRecord] = []
        if old.phase in ("open", "clearing") and root_inc.phase == "pending":
            # An incident already notified is absorbed: notify the absorber now, so that
            # `merged_into` always names an incident the receivers have seen.
            records.append(self._open(root_inc, now))
        notified = lifecycle.fire(old, Event.MERGED, now).emits is not None
        self._assessor.rewatch(old, None)  # notified or not, its impact is watched no more
        if notified:
            self.merged += 1
            records.append(
                self._emit(
                    old,
                    "resolved",
                    now,
                    resolution="merged",
                    merged_into=root_inc.id,
                    merged_root=root_inc.root,
                )
            )
            if self.on_resolved is not None:  # its members and their suppressions are still whole
                self.on_resolved(old, records[-1])
        return records

    def _release(self, inc: Incident, keys: list[str]) -> list[str]:
        """``keys`` leave ``inc`` (which ended) to be correlated again (``_released_from``)."""
        for key in keys:
            self._released_from[key] = inc.id
        return keys

    def resurfaced(self, keys: Iterable[str]) -> None:
        """The flow has correlated the released ``keys`` again: their release is over."""
        for key in keys:
            self._released_from.pop(key, None)

    def _dissolve(self, inc: Incident) -> list[str]:
        self._assessor.rewatch(inc, None)
        self._records.forget(inc.members)
        return self._graph.dissolve(inc)

    def _signature(self, inc: Incident, members: tuple[ActiveAlarm, ...] | None = None) -> Signature:
        """What an `updated` record would say that matters; ``members``: its active members, when
        the caller has them (``Assessor.refresh`` returns them).

        Kept with what it was made of (``Incident.said``): a re-assessment that changed nothing
        (many of them) gets the same object back, which ``Signature.same`` knows at once; its text
        is written only when a snapshot or a loaded text asks for it."""
        assessment = inc.assessment  # (its parts read from it once, not through the properties)
        p = assessment.priority
        if members is None:
            members = self._assessor.active_members(inc)
        kept = inc.said_active
        if kept is not None and kept[0] is members:
            active = kept[1]  # the same active members (``active_members`` kept them): the same view
        else:
            active = tuple([(a.key, a.severity, a.flapping) for a in members])
            inc.said_active = (members, active)
        impact = assessment.impact
        facts = assessment.sla
        sla = (facts.customers_down, facts.customers_breached) if facts else None
        # the parts, but the impact (compared as the same object) and the members (which only
        # grow while the incident lasts: the same count is the same set)
        parts = (
            inc.phase,
            assessment.state,
            p.priority if p else None,
            p.score if p else None,
            len(inc.members),
            active,
            inc.reraised,
            inc.acknowledged,
            sla,
        )
        said = inc.said
        if said is not None and said[0] is impact and said[1] == parts:
            return said[2]
        signature = Signature(impact, parts, inc.sorted_members())
        inc.said = (impact, parts, signature)
        return signature

    def _emit(
        self,
        inc: Incident,
        event: RecordEvent,
        now: float,
        *,
        resolution: Resolution | None = None,
        merged_into: str | None = None,
        merged_root: str | None = None,
        signature: Signature | None = None,
    ) -> IncidentRecord:
        """``signature``: the incident's ``_signature`` now, when the caller just computed it;
        ``merged_root``: with ``merged_into``, that incident's root."""
        if signature is None:
            signature = self._signature(inc)
        inc.emitted = Emitted(inc.emitted.version + 1, now, signature)
        inc.dirty = False
        return self._records.record(
            inc, event, now, resolution=resolution, merged_into=merged_into, merged_root=merged_root
        )

    def record(
        self,
        inc: Incident,
        event: RecordEvent,
        now: float,
        *,
        resolution: Resolution | None = None,
        merged_into: str | None = None,
    ) -> IncidentRecord:
        """The record of an incident transition (``current``: its state now, for queries)."""
        return self._records.record(inc, event, now, resolution=resolution, merged_into=merged_into)
