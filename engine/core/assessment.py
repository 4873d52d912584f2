"""An incident's assessment: impact, state, severity and priority from its active alarms.

``Assessor.refresh`` recomputes them for one incident (the SLA stage adds its points, priority
overrides apply last); it also keeps the *watch*, the elements each incident's impact reaches, so an
element's health change re-assesses exactly the incidents it concerns. With ``live`` (the network's
effective health kept up to date, ``engine.core.impact.LiveHealth``) an incident's impact is computed
again only when an element of its cone changed level; otherwise the same ``Impact`` comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from engine.core.alarms import ActiveAlarm
from engine.core.forms.overrides import Overrides
from engine.core.forms.synthetic import service_scope
from engine.core.impact import Health, Impact, LiveHealth, compute_impact, with_service_levels
from engine.core.incident_stages import SlaStage
from engine.core.incident_state import Assessment
from engine.core.priority import Priority, PriorityInput, add_points, assess
from engine.core.settings import PrioritySettings
from engine.model.topology import Topology

if TYPE_CHECKING:
    from engine.core.incidents import Incident

EFFECT_HEALTH = {"outage": Health.DOWN, "degraded": Health.DEGRADED}
SEVERITY_ORDER = ("indeterminate", "warning", "minor", "major", "critical")
PRIORITIES_KEPT = 4096  # distinct priority inputs remembered (all forgotten when full)
_RANK = {severity: rank for rank, severity in enumerate(SEVERITY_ORDER)}  # ``SEVERITY_ORDER.index``


class Assessor:
    def __init__(
        self,
        *,
        topology: Topology,
        priority: PrioritySettings,
        alarm: Callable[[str], ActiveAlarm | None],
        own_health: Mapping[str, Health],
        service_health: Mapping[str, Mapping[str, Health]],
        sla: SlaStage,
        overrides: Overrides | None,
        parts: Callable[[str], frozenset[str]],
        live: LiveHealth | None = None,
    ) -> None:
        self._topology = topology
        self._live = live  # kept from ``own_health``: impacts are cached there
        self._priority = priority
        self._alarm = alarm
        self._own = own_health
        self._service_health = service_health
        self._sla = sla
        self._overrides = overrides
        self._parts = parts
        self._watch: dict[str, set[str]] = {}  # element -> top roots whose impact includes it
        self._watch_version = 0  # moved by every change of the watch
        # ``watching``'s last answer: (element, the watch's version then, the top roots). An element's
        # health often changes twice in a row (an alarm raised, then cleared) with the watch as it
        # was: the same answer, not looked up again. A cache, never snapshotted.
        self._watching: tuple[str, int, list[str]] | None = None
        self._tier_weights = {t.name: t.weight for t in topology.tiers.values()}
        # (state, customers by tier, criticality, severity) -> the priority ``assess`` gives them: a
        # pure function of those, asked again at most re-assessments (bounded, see PRIORITIES_KEPT)
        self._priorities: dict[tuple[str, tuple[tuple[str, int], ...], int, str], Priority] = {}

    def active_members(
        self, inc: Incident, still_active: ActiveAlarm | None = None
    ) -> tuple[ActiveAlarm, ...]:
        """Its members' alarms that are active (and ``still_active``), in member order. Kept on the
        incident (``Incident.active``) while neither its member count nor ``alarm_changes`` moved
        (which alarm is active changes only through a counted change): the same tuple comes back."""
        members = inc.sorted_members()
        kept = inc.active
        if kept is not None and kept[0] == len(members):
            if still_active is None:
                if kept[1] == inc.alarm_changes:
                    return kept[2]
            elif kept[1] == inc.alarm_changes - 1:
                # The root clearing now (``IncidentBook.cleared``): the one change counted since the
                # kept tuple was made is its clear (a clear is counted before the book hears of it),
                # so it was active then, the same object, and every other member is as it was: the
                # kept tuple is the members active now and ``still_active``.
                return kept[2]
        # the lookups in C (``map`` over the table's ``get``), the test in one comprehension
        if still_active is None:
            found = tuple([a for a in map(self._alarm, members) if a is not None and a.active])
        else:
            found = tuple(
                [a for a in map(self._alarm, members) if a is not None and (a.active or a is still_active)]
            )
        if still_active is None:
            inc.active = (len(members), inc.alarm_changes, found)
        return found

    def watching(self, ne_id: str) -> Iterable[str]:
        """Top roots of the incidents whose impact reaches ``ne_id`` or below it."""
        watch = self._watch
        if not watch:
            return ()
        last = self._watching
        if last is not None and last[0] == ne_id and last[1] == self._watch_version:
            return last[2]
        below = self._topology.descendants(ne_id)
        # the watched elements below ``ne_id``, looked up from the smaller side (the watch is usually
        # far smaller than the descendants of an element high in the tree), their roots joined as
        # they are found (no set of the hits, no tuple of their sets)
        roots = watch.get(ne_id)
        tops = set() if roots is None else set(roots)
        if len(watch) < len(below):
            for x, roots in watch.items():
                if x in below:
                    tops.update(roots)
        else:
            for x in below:
                roots = watch.get(x)
                if roots is not None:
                    tops.update(roots)
        # sorted: the descendants are a set of strings, whose order changes with the process's hash
        # seed, and the incidents are touched (and so scheduled) in this order
        found = sorted(tops)
        self._watching = (ne_id, self._watch_version, found)
        return found

    def refresh(
        self, inc: Incident, now: float, still_active: ActiveAlarm | None = None
    ) -> tuple[ActiveAlarm, ...]:
        """Re-assess ``inc``. ``still_active``: the root clearing now, counted as active once more so
        the assessment freezes as it was (and the SLA facts stay those last notified). Returns the
        active members it assessed (``active_members``), for the signature that follows."""
        active = self.active_members(inc, still_active)
        # what the assessment reads of them, made again only when they are other alarms or changed
        # (``active_members`` gives the same tuple back while they did not)
        derived = inc.derived
        if derived is None or derived[0] is not active:
            seeds = sorted({a.ne_id for a in active if a.effect in EFFECT_HEALTH})
            # An incident whose every alarm with an effect concerns one service (the engine's
            # per-service KQI alarms) affects that service's subscriptions only: asked alarm by
            # alarm until one concerns its element (the first, for an alarm from the network).
            only = None
            if seeds:
                scopes = set()
                for a in active:
                    if a.effect in EFFECT_HEALTH:
                        scope = service_scope(a.key)
                        if scope is None:
                            break
                        scopes.add(scope)
                else:
                    only = frozenset(scopes)
            # the worst severity's rank (``SEVERITY_ORDER.index`` of each, by a dict; -1: none known)
            top = -1
            for a in active:
                rank = _RANK.get(a.severity, -1)
                if rank > top:  # noqa: PLR1730 (``max``, without its call: per active member)
                    top = rank
            derived = inc.derived = (active, seeds, only, top if top >= 0 else None)
        _, seeds, only, top_rank = derived
        last = inc.assessment
        if not seeds and last.impact is not None:
            # Nothing active carries an effect any more. While the root is cleared (the hold-down)
            # the last assessment stays, as it was when the root cleared; a root still raised whose
            # effect went (critical → warning) is assessed again: nothing is down or degraded now
            root_alarm = self._alarm(inc.root)
            if root_alarm is None or not root_alarm.active:
                return active
        # their own levels count then: element health leaves them out
        own = with_service_levels(self._own, self._service_health, only) if only is not None else self._own
        if only is None and self._live is not None:
            impact = self._live.impact(seeds)
        else:
            impact = compute_impact(self._topology, own, seeds, only_services=only)
        # ``_watched``, inlined: whether the watch still lists the root for the last impact's first
        # element (an unchanged impact needs no rewatch unless its entries were dropped meanwhile)
        watched = last.impact
        if watched is not None:
            first = next(iter(watched.elements), None)
            if first is not None and inc.root not in self._watch.get(first, ()):
                watched = None
        if watched is None:
            self.rewatch(inc, impact)  # its entries went (or it had none): all of them again
        elif impact is not watched:
            self.rewatch(inc, impact, whole=False)
        root = self._alarm(inc.root)
        fallback = "degraded" if root is not None and root.effect == "degraded" else "at_risk"
        if root is not None and root.effect == "outage" and not impact.elements:
            fallback = "outage"
        state = impact.state or fallback
        severity = SEVERITY_ORDER[top_rank] if top_rank is not None else last.severity
        plain = self._sla.facts is None and not self._overrides
        kept = inc.assessed
        if (
            plain
            and kept is not None
            and kept[0] is last
            and kept[1] is impact
            and kept[2] == state
            and kept[3] == severity
        ):
            # The last assessment was made of the same impact, state and severity with nothing else
            # moving its priority (no SLA facts, no overrides): the priority below is a function of
            # these (``assess``), so the same assessment would be made again. It stays, the same
            # object (the signature's and the records' kept values are compared by identity).
            return active
        max_crit = (
            max(
                (
                    self._topology.service_types[s].criticality
                    for s in impact.services
                    if s in self._topology.service_types
                ),
                default=0,
            )
            if impact.services
            else 0
        )
        key = (state, tuple(impact.by_tier.items()), max_crit, severity)
        priority = self._priorities.get(key)
        if priority is None:
            priority = assess(
                PriorityInput(
                    state=state,
                    customers_by_tier=impact.by_tier,
                    tier_weights=self._tier_weights,
                    max_criticality=max_crit,
                    severity=severity,
                ),
                self._priority,
            )
            if len(self._priorities) >= PRIORITIES_KEPT:
                self._priorities.clear()
            self._priorities[key] = priority
        sla = last.sla
        if self._sla.facts is not None and (still_active is None or sla is None):
            # At the root's clear the assessment is frozen: the SLA facts stay those last notified.
            sla = self._sla.facts(impact, now)
            inc.milestone = self._sla.milestone(sla, now) if still_active is None else None
        if sla is not None and sla.points > 0:
            priority = add_points(priority, "sla", sla.points, sla.to_wire(), self._priority)
        if self._overrides:
            priority, severity = self._overrides.apply(priority, severity, impact, self._parts(inc.root))
        inc.assessment = assessment = Assessment(impact, state, severity, priority, sla)
        inc.assessed = (assessment, impact, state, severity) if plain else None
        return active

    def rewatch(self, inc: Incident, impact: Impact | None, *, whole: bool = True) -> None:
        """Watch the elements of ``impact`` for ``inc`` instead of those of its current impact.
        ``whole=False``: its current impact's entries are known to be there, so only the elements
        that differ are touched (the same watch in the end)."""
        current = inc.assessment.impact
        old = current.elements if current is not None else {}
        new = impact.elements if impact is not None else {}
        watch, root = self._watch, inc.root
        # the elements it leaves, by one pass over the old ones (no set made of either side: most
        # calls find the same elements at other levels, and leave and add none)
        kept = len(old)
        for x in old:
            if x not in new:
                kept -= 1
                roots = watch.get(x)
                if roots is not None:
                    roots.discard(root)
                    if not roots:
                        del watch[x]
        if kept != len(old):
            self._watch_version += 1
        if not whole and kept == len(new):
            return  # every new element was an old one: the entries are there
        self._watch_version += 1
        for x in new:
            if whole or x not in old:
                roots = watch.get(x)
                if roots is None:
                    watch[x] = {root}
                else:
                    roots.add(root)
