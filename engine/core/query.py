"""The core's read-only query interface: what reports, explanations, metrics and the APIs may ask.

``Pipeline.query`` gives one ``CoreQuery``. Its methods answer questions about the core's state
(alarms, incidents, health, service quality, counters, rule firings, quarantined parts) with
immutable data (frozen dataclasses, fresh JSON-ready dicts and lists, copies of counters) or
read-only views (``AlarmView``: the table's own alarm, typed so that nothing outside the core can
assign to it; ``HealthView``). Nothing here changes the core's state, and nothing outside
``engine/core`` reads the pipeline's parts (``alarms``, ``incidents``, ``quality``, ``correlator``…)
or anything private of the core: ``tests/test_core_surface.py`` walks the code and fails when one
does. What changes the core goes through ``Pipeline``'s commands (``feed``, ``tick``,
``acknowledge``, ``silence``, ``restore``); what one message became comes back in its
``Decisions.message``.

Answers are as of the last item applied: read them between two items (the daemon's HTTP handlers
run on its event loop, between two items of its core task), never while one is applied.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from engine.core.containment import Fault
from engine.core.explain_match import Matcher, matcher_for
from engine.core.impact import Health, HealthView, Impact
from engine.core.incidents import Suppression
from engine.core.settings import CoreSettings, Effect
from engine.core.views import customer_view, element_view
from engine.model.messages import Decoded
from engine.model.topology import Topology
from engine.rules.compiler import CompiledRule

if TYPE_CHECKING:
    from engine.core.alarms import ActiveAlarm
    from engine.core.forms.base import Form
    from engine.core.forms.silences import Silence
    from engine.core.incident_records import IncidentRecord
    from engine.core.incidents import Incident
    from engine.core.kqi import KqiState
    from engine.core.pipeline import Pipeline

__all__ = ["AlarmView", "CoreQuery", "CoreStats", "Firings", "IncidentSummary"]

OPEN_PHASES = ("open", "clearing")


class AlarmView(Protocol):
    """One alarm identity as the core holds it now (``engine.core.alarms.ActiveAlarm``), read-only."""

    @property
    def key(self) -> str: ...
    @property
    def ne_id(self) -> str: ...
    @property
    def probable_cause(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def specific_problem(self) -> str | None: ...
    @property
    def severity(self) -> str: ...
    @property
    def effect(self) -> Effect: ...
    @property
    def text(self) -> str | None: ...
    @property
    def first_seen(self) -> float: ...  # event time of this occurrence's first raise
    @property
    def last_seen(self) -> float: ...  # event time of the latest raise
    @property
    def occurrence(self) -> int: ...
    @property
    def count(self) -> int: ...  # raises (duplicates included) in this occurrence
    @property
    def active(self) -> bool: ...  # as correlation sees it (a flapping alarm stays active)
    @property
    def flapping(self) -> bool: ...
    @property
    def cleared_time(self) -> float | None: ...  # event time of the clear
    @property
    def threshold_info(self) -> Mapping[str, Any] | None: ...  # X.733 threshold info (JSON-ready)


@dataclass(frozen=True, slots=True)
class IncidentSummary:
    """An incident as the core holds it now (not its published record: that is the store's)."""

    id: str
    root: str  # the root alarm's key
    phase: str  # pending, open, clearing, resolved
    state: str  # outage, degraded, at_risk
    severity: str
    members: frozenset[str]  # alarm keys, the root included
    impact: Impact | None
    priority: int | None
    score: float | None

    @property
    def open(self) -> bool:
        return self.phase in OPEN_PHASES


@dataclass(frozen=True, slots=True)
class CoreStats:
    """The core's message counters (copies): messages by outcome (alarm, samples, invalid), invalid
    messages by the first field in error, samples applied and refused, notices by kind and messages
    whose application raised inside the core."""

    messages: Mapping[str, int]
    invalid_reasons: Mapping[str, int]
    samples: int
    samples_rejected: int
    notices: Mapping[str, int]
    internal_errors: int

    def top_invalid_reasons(self, n: int) -> dict[str, int]:
        """The ``n`` most frequent invalid reasons, most frequent first (ties in first-seen order)."""
        ranked = sorted(self.invalid_reasons.items(), key=lambda item: item[1], reverse=True)
        return dict(ranked[:n])


@dataclass(frozen=True, slots=True)
class Firings:
    """Correlation rule firings since the pipeline was built: in all, and per qualified rule (its
    join plus its condition parts in classification; they sum to ``total``)."""

    total: int
    by_rule: Mapping[str, int]


def _summary(inc: Incident) -> IncidentSummary:
    p = inc.priority
    return IncidentSummary(
        id=inc.id,
        root=inc.root,
        phase=inc.phase,
        state=inc.state,
        severity=inc.severity,
        members=frozenset(inc.members),
        impact=inc.impact,
        priority=p.priority if p is not None else None,
        score=p.score if p is not None else None,
    )


class CoreQuery:
    """Read-only questions to one pipeline (``Pipeline.query``)."""

    __slots__ = ("_p",)

    def __init__(self, pipeline: Pipeline) -> None:
        self._p = pipeline

    # -- time and configuration -----------------------------------------------------------------
    @property
    def clock(self) -> float:
        """The latest time the core has seen (it never goes backwards)."""
        return self._p.clock

    @property
    def topology(self) -> Topology:
        return self._p.topology

    @property
    def settings(self) -> CoreSettings:
        return self._p.settings

    def rules(self) -> tuple[CompiledRule, ...]:
        """Every loaded rule, in their order across the rulesets (the built-in ones included)."""
        return tuple(sorted(self._p.program.rules.values(), key=lambda r: r.order))

    def validate(self, topic: str, payload: bytes | str | Mapping[str, Any]) -> Decoded:
        """Decode and validate a message as ``feed`` would, without applying it. Raises
        ``InvalidMessage`` with the errors ``feed`` would dead-letter."""
        return self._p.decoder.decode(topic, payload)

    # -- alarms ----------------------------------------------------------------------------------
    def alarm(self, key: str) -> AlarmView | None:
        """The alarm identity ``key`` (active or cleared and still remembered), or None."""
        return self._p.alarms.get(key)

    def active_alarms(self) -> list[AlarmView]:
        """The active alarms, in table order (a list: the table may change after this returns)."""
        return list(self._p.alarms.active())

    def active_alarm_count(self) -> int:
        return sum(1 for _ in self._p.alarms.active())

    def suppression(self, key: str) -> Suppression | None:
        """Why the alarm ``key`` is not a root of its own: the alarm and rule that explain it."""
        return self._p.incidents.suppression(key)

    def silenced_by(self, ne_id: str, now: float) -> list[str]:
        """The maintenance rules and silences that cover the element at ``now``."""
        return self._p.calendar.covering_all(ne_id, now)

    def silences(self) -> tuple[Silence, ...]:
        """Every silence the core holds (active, pending and expired ones not yet forgotten)."""
        return tuple(self._p.calendar.silences)

    def silence(self, silence_id: str) -> Silence | None:
        return self._p.calendar.silences.get(silence_id)

    # -- incidents -------------------------------------------------------------------------------
    def incidents(self, *, open_only: bool = False) -> list[IncidentSummary]:
        """The incidents the core holds (pending, open, clearing and recently resolved ones), or
        only the open and clearing ones."""
        book = self._p.incidents
        return [_summary(inc) for inc in book.incidents() if not open_only or inc.phase in OPEN_PHASES]

    def open_incident_counts(self) -> dict[tuple[str, int], int]:
        """How many open and clearing incidents have each (state, priority); those without a
        priority yet are not counted. What ``incidents(open_only=True)`` would give, without
        making a summary of each (the daemon's gauges ask every second, storms included)."""
        counts: dict[tuple[str, int], int] = {}
        for inc in self._p.incidents.incidents():
            p = inc.priority
            if p is not None and inc.phase in OPEN_PHASES:
                key = (inc.state, p.priority)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def clearing(self) -> dict[str, float]:
        """The incidents whose root has cleared and that wait out the hold-down (phase
        ``clearing``): id -> when they resolve unless the root is raised again. Their published
        records, made before the clear, still show the root raised (no record marks the clear)."""
        hold_down = self._p.settings.incidents.hold_down
        return {
            inc.id: inc.clear_since + hold_down
            for inc in self._p.incidents.incidents()
            if inc.phase == "clearing" and inc.clear_since is not None
        }

    def incident_of(self, key: str) -> IncidentSummary | None:
        """The incident the alarm ``key`` belongs to now, if any."""
        inc = self._p.incidents.incident_of(key)
        return _summary(inc) if inc is not None else None

    # -- health ----------------------------------------------------------------------------------
    def health(self, service: str | None = None) -> HealthView:
        """Effective health of the network (for one service type when given): a snapshot."""
        return self._p.health.view(service)

    def own_health(self) -> dict[str, Health]:
        """Each element's own health from its active alarms (a copy; elements at OK are absent)."""
        return dict(self._p.health.own)

    def element(self, ne_id: str) -> dict[str, Any] | None:
        """An element, its health, its active alarms and the incidents that involve it now."""
        return element_view(self._p, ne_id)

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        """A customer, the state of each of its services, and the incidents affecting it now."""
        return customer_view(self._p, customer_id)

    # -- service quality -------------------------------------------------------------------------
    def path_states(self, now: float) -> dict[str, list[KqiState]]:
        """Every measured service path's KQI states at ``now``, by scope (sorted)."""
        return self._p.quality.path_states(now)

    def measured_paths(self) -> dict[str, tuple[str, str]]:
        """Path scope -> (customer, service type), for every path with samples in the windows."""
        return self._p.quality.measured_paths()

    def customer_quality(
        self, customer_id: str, view_for: Callable[[str], HealthView], now: float
    ) -> dict[str, Any]:
        """Experience index, KQIs and SLA state of one customer (JSON-ready)."""
        return self._p.quality.customer(customer_id, view_for, now)

    def time_to_breach(self, group: str, tier: str, now: float) -> float | None:
        """Seconds until the SLA group breaches its tier's availability, None while it is up."""
        return self._p.quality.sla.time_to_breach(group, tier, now)

    def sla_breaches(self) -> list[dict[str, Any]]:
        """The SLA breaches recorded in the current periods (JSON-ready)."""
        return self._p.quality.breach_records()

    def sample_scopes(self) -> list[str]:
        """Scopes holding at least one KPI sample, sorted."""
        return self._p.quality.windows.scopes()

    def sample_series(self, scope: str) -> dict[str, tuple[list[float], list[float]]]:
        """The samples held for one scope, per metric: (times, values), copies sorted by time."""
        return self._p.quality.windows.series(scope)

    def held_series(self) -> Iterator[tuple[str, str, Sequence[float], Sequence[float], int]]:
        """Every series of samples the KQI windows hold, in place (no copy): (scope, metric, times,
        values, start), the samples being ``times[start:]``. Read-only views, valid until the next
        item is applied: walk them at once (the dashboard's chart history)."""
        return self._p.quality.windows.held()

    # -- the core's own state --------------------------------------------------------------------
    def stats(self) -> CoreStats:
        st = self._p.stats
        return CoreStats(
            messages=MappingProxyType(dict(st.messages)),
            invalid_reasons=MappingProxyType(dict(st.invalid_reasons)),
            samples=st.samples,
            samples_rejected=st.samples_rejected,
            notices=MappingProxyType(dict(st.notices)),
            internal_errors=st.internal_errors,
        )

    def summary(self) -> dict[str, Any]:
        """Every counter of the run (``engine replay``'s summary): a fresh dict."""
        return self._p.summary()

    def firings(self) -> Firings:
        c = self._p.correlator
        return Firings(c.firings, MappingProxyType(dict(c.firings_by_rule())))

    def faults(self) -> list[Fault]:
        """The parts of the core quarantined now (frozen; ``Fault.to_wire()`` is the JSON form)."""
        return self._p.quarantine.faults()

    def quarantined(self) -> dict[str, int]:
        """Quarantined items per part of the core (parts with none are absent)."""
        return dict(self._p.quarantine.by_part())

    # -- explanations ----------------------------------------------------------------------------
    def explain_alarm(self, key: str) -> dict[str, Any]:
        """Why the alarm is where it is (``engine.core.explain``). Raises ``explain.NotFound``."""
        from engine.core.explain import explain_alarm  # noqa: PLC0415 (explain imports this module)

        return explain_alarm(self, key)

    def explain_incident(self, incident_id: str) -> dict[str, Any]:
        """Why the incident is what it is (``engine.core.explain``). Raises ``explain.NotFound``."""
        from engine.core.explain import explain_incident  # noqa: PLC0415 (as above)

        return explain_incident(self, incident_id)

    # -- the core's own objects, for its explanations (engine.core.explain) -----------------------
    # Read-only by contract: the explanations (and the forms' ``explain``) read the core's typed
    # state through these, never a pipeline part; nothing here is for the adapters.
    def alarm_state(self, key: str) -> ActiveAlarm | None:
        """The alarm table's own record of ``key`` (``alarm`` is its read-only view)."""
        return self._p.alarms.get(key)

    def alarm_states(self) -> list[ActiveAlarm]:
        """Every alarm the table holds: active ones and cleared ones within their retention."""
        return self._p.alarms.held()  # (not ``dump``: a dict of every field per alarm, per call)

    def alarm_states_on(self, ne_id: str) -> list[ActiveAlarm]:
        """The alarms the table holds on one element (element health's index of them, kept from
        their raise until the table forgets them), in no particular order. A key the index still
        holds for an alarm since forgotten (or raised again on another element) is left out."""
        get = self._p.alarms.get
        keys = self._p.health.by_element.get(ne_id, ())
        return [a for key in keys if (a := get(key)) is not None and a.ne_id == ne_id]

    def elements_with_alarms(self) -> Collection[str]:
        """The elements some alarm held (``alarm_states_on``) may be on: a live view, not a copy."""
        return self._p.health.by_element.keys()

    def incident_state(self, incident_id: str) -> Incident | None:
        """The incident book's live incident of that id (the core forgets resolved ones)."""
        return next((i for i in self._p.incidents.incidents() if i.id == incident_id), None)

    def incident_states(self) -> list[Incident]:
        return list(self._p.incidents.incidents())

    def incident_state_of(self, key: str) -> Incident | None:
        """The live incident the alarm ``key`` belongs to now."""
        return self._p.incidents.incident_of(key)

    def current_record(self, inc: Incident) -> IncidentRecord:
        """The incident's ``current`` record as of the core's clock (no new version)."""
        return self._p.incidents.record(inc, "current", self._p.clock)

    def classified(self, key: str) -> frozenset[str]:
        """The rule parts the correlator classified the alarm into when last raised or changed."""
        return self._p.correlator.parts(key)

    def maintenance_covering(self, ne_id: str, now: float) -> tuple[str, float] | None:
        """The first maintenance rule whose window covers the element at ``now``, and its end."""
        return self._p.calendar.covering(ne_id, now)

    def forms(self) -> tuple[Form, ...]:
        """The pipeline's rule forms, in registry order."""
        return tuple(self._p.forms)

    def form_of_rule(self, rule_form: str) -> Form | None:
        """The form that runs the rules of that form name (``correlate``, ``group`` …), if any."""
        return self._p.forms.of_rule(rule_form)

    def rule(self, qualified: str) -> CompiledRule | None:
        return self._p.program.rules.get(qualified)

    def matcher(self) -> Matcher:
        """The pipeline's explanation matcher (one for its whole life, ``engine.core.explain_match``),
        its cache of fired actions emptied."""
        return matcher_for(self._p)

    def new_matcher(self) -> Matcher:
        """A matcher of its own (a ``PostMortems`` keeps one; ``close()`` frees it)."""
        return Matcher(self._p)
