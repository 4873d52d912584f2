"""Service quality in the core: KQIs per element and per service path, degradations nobody alarmed,
customer experience and SLAs. Pure: it takes samples, health and ``now``, and returns alarms to raise.

Theory of operation
-------------------
* Every KPI sample feeds the KQI windows (``engine.core.kqi``): on ``ne:<target>/<service>`` (the
  element's samples of that service; ``default`` without one) and, when it names a customer and a
  service, on ``path:<customer>/<service>``.
* Every ``evaluate_every`` seconds (sample time; only while there are samples in the windows or
  alarms of ours active) every scope is evaluated against the KQI catalog:

  - *element* KQIs that miss their target raise one X.733 ``qualityOfServiceAlarm`` per element
    and service type (``performanceDegraded``, specific problem ``<service> quality``, effect
    ``degraded``; minor while every missed KQI is within its limit, major beyond; the text lists
    each missed KQI with value, target and limit) on the element; the services through it are degraded, impact
    and priority follow as for any alarm, and an outage upstream explains it (it is then a symptom:
    the alarm on the path is the root, the KQI breach its evidence). It clears when the KQI is met
    again or has no samples any more;
  - *path* KQIs make a customer's service degraded. When at least ``inference.min_degraded`` paths
    are degraded and the elements on them carry no active alarm with an effect, the most likely
    location is inferred (``engine.core.inference``) and a ``degradedServiceInferred`` alarm is raised
    on it with the evidence in its text; it clears once the degraded paths recover.

* Customers are tracked for availability and time to restore by *customer group* (customers
  sharing an access element, a tier and services share their fate): a group is down when its access
  or a platform element of one of its services is down. ``engine.core.experience.SlaTracker`` keeps the
  downtime (its subjects are group ids, ``group_id``); the time left before a breach feeds the
  priority of incidents (``sla_facts``). While a group is down, ``next_due`` includes the instant
  of its next breach, so the core ticks then and the breach is recorded as it happens, not when
  the outage ends. The voice MOS floor is tracked per customer (its path KQI).
  Breach records name the group (access, tier, services, customers) or, for MOS, the customer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache, partial
from itertools import chain as chained
from operator import itemgetter, methodcaller
from typing import Any

from engine.core.containment import Quarantine
from engine.core.experience import (
    Breach,
    KqiScore,
    SlaFacts,
    SlaTracker,
    breach_urgency,
    customer_experience,
)
from engine.core.forms.synthetic import INFERENCE, QUALITY, Synthetic, clear_alarm, raise_alarm, raised_by
from engine.core.impact import Health, HealthView, Impact
from engine.core.inference import Inference, access_path_elements, infer_location
from engine.core.kqi import (
    VOICE_SERVICES,
    KqiState,
    KqiWindows,
    element_scope,
    path_scope,
    with_derived_mos,
)
from engine.core.settings import QualitySettings
from engine.model.messages import (
    Alarm,
    KpiSample,
    SampleColumns,
    SampleRow,
    ThresholdInfo,
    required_only,
    sample_row,
)
from engine.model.topology import CustomerGroup, Topology
from engine.rules.schema import Emit

INFERRED = "degradedServiceInferred"
QUALITY_PART = "quality"  # names in the quarantine: a KQI scope is an item of "quality"
SLA_PART = "sla"
_SERVICE = methodcaller("get", "service")
_METRICS = itemgetter("metrics")


def group_id(g: CustomerGroup) -> str:
    return f"{g.access}|{g.tier}|{_services_id(g.services)}"


@lru_cache(maxsize=1024)  # a topology has a handful of service sets (its groups share the set objects)
def _services_id(services: frozenset[str]) -> str:
    return "+".join(sorted(services))


class ServiceQuality:
    def __init__(
        self,
        topology: Topology,
        settings: QualitySettings,
        *,
        element_alarms: bool,
        quarantine: Quarantine | None = None,
    ) -> None:
        self._topology = topology
        # A KQI scope whose evaluation raises, or the SLA tracker, is quarantined alone
        # (``engine.core.containment``): the other scopes are evaluated, incidents go on.
        self._quarantine = quarantine if quarantine is not None else Quarantine()
        self.settings = settings
        self.windows = KqiWindows(settings.kqis)
        self.sla = SlaTracker(settings.sla)
        self._element_alarms = element_alarms
        self._elements: dict[str, tuple[str, str]] = {}  # element scope -> (element, service type)
        self._paths: dict[str, tuple[str, str]] = {}  # path scope -> (customer, service)
        self._raised: dict[str, Alarm] = {}  # alarm id -> the alarm we raised (element KQIs, inference)
        self._read_by: dict[str, frozenset[str]] = {}  # service type -> metrics its KQIs read
        self._next: float | None = None
        self._groups = list(topology.all_groups())
        self._by_service: dict[str, list[CustomerGroup]] = {
            s: [g for g in self._groups if s in g.services] for s in topology.service_types
        }
        self._chains = {
            s: frozenset(x for p in st.platform for x in (p, *topology.ancestors(p)))
            for s, st in topology.service_types.items()
        }
        self._accesses = {g.access for g in self._groups}
        self.last_inference: Inference | None = None
        self.inferred = 0
        self.evaluations = 0

    # -- input ---------------------------------------------------------------------------------
    def observe_many(
        self,
        rows: Sequence[SampleRow],
        metric_names: frozenset[str] | None = None,
        columns: SampleColumns | None = None,
    ) -> None:
        """``observe_row`` for each row in order; a sample carrying no metric its service's KQIs read
        is skipped without a call (a feed no KQI reads costs one lookup and one set test per sample),
        and a batch of one service none of whose samples carries one, as a whole. ``metric_names``:
        the metrics every row carries, when the decoder knows it (``Decoded.metric_names``);
        ``columns``: the batch's columns, when the decoder took them (``Decoded.columns``)."""
        read_by = self._read_by
        # the four required fields alone in every row: no service named (the default's)
        plain = columns.required_only if columns is not None else required_only(rows)
        services = {None} if plain else set(map(_SERVICE, rows))
        if len(services) == 1:
            wanted = read_by.get(services.pop() or "default")
            # (a MOS the KQIs read may be derived from other metrics)
            if (
                wanted is not None
                and "mos" not in wanted
                and wanted.isdisjoint(
                    metric_names if metric_names is not None else chained.from_iterable(map(_METRICS, rows))
                )
            ):
                return
        for row in rows:
            wanted = read_by.get(row.get("service") or "default")
            if wanted is not None and "mos" not in wanted and wanted.isdisjoint(row["metrics"]):
                continue
            self.observe_row(row)

    def observe(self, sample: KpiSample) -> None:
        self.observe_row(sample_row(sample))

    def observe_row(self, row: SampleRow) -> None:
        target = row["target"]
        if target not in self._topology:
            return
        named = row.get("service")
        service = named or "default"
        wanted = self._read_by.get(service)
        if wanted is None:
            wanted = self._read_by[service] = frozenset(
                m for k in self.settings.kqis.for_service(service) for m in (k.metric, k.denominator) if m
            )
        if not wanted:
            return  # no KQI of this service reads anything this sample could carry
        metrics: Mapping[str, float] = row["metrics"]
        if "mos" in wanted:  # voice: the G.107 E-model MOS; video: P.1203 mode 0's
            metrics = with_derived_mos(metrics, service)
        read = sorted(wanted.intersection(metrics))
        if not read:
            return
        t = row["time"]
        customer = row.get("customer")
        scopes = [element_scope(target, service)]
        if customer is not None and named is not None:
            scopes.append(path_scope(customer, named))
        for scope in scopes:
            for metric in read:
                self.windows.observe(scope, metric, metrics[metric], t)
        self._elements[scopes[0]] = (target, service)
        if customer is not None and named is not None:
            self._paths[scopes[-1]] = (customer, named)
        if self._next is None:
            self._next = t + self.settings.evaluate_every

    def next_due(self) -> float | None:
        """The next KQI evaluation or, while a customer group is down, the next SLA breach it is
        heading for (``SlaTracker.next_breach``), whichever comes first. Without customer groups
        the SLA tracker is never ticked (``tick``): its breaches are no due time then, and it is not
        asked (twice per message)."""
        if not self._groups:
            return self._next
        breach = self.sla.next_breach()
        if breach is not None:  # (``Quarantine.due`` of None is None)
            breach = self._quarantine.due(SLA_PART, breach)
        if breach is None or (self._next is not None and self._next <= breach):
            return self._next
        return breach

    def tick(self, now: float, alarmed: Iterable[str]) -> list[Synthetic]:
        """Record the SLA breaches that happened by ``now`` (``SlaTracker.tick``: dated when they
        happened) and, when due, evaluate every scope; returns the alarms to raise or clear.
        ``alarmed``: elements with an active alarm with an effect (other than ours): degradations
        there are explained."""
        if self._groups:
            self._quarantine.run(
                SLA_PART, "", now, partial(self.sla.tick, now), None, poison=self.sla.describe
            )
        if self._next is None or now < self._next:
            return []
        self.evaluations += 1
        self.windows.expire(now)
        # Scopes whose samples all left the windows are no longer measured: neither evidence for
        # inference (a silent path is not a healthy one) nor counted in reports.
        live = set(self.windows.scopes())
        for stale in [scope for scope in self._elements if scope not in live]:
            del self._elements[stale]
        for stale in [scope for scope in self._paths if scope not in live]:
            del self._paths[stale]
        out: list[Synthetic] = []
        wanted: dict[str, Synthetic] = {}
        if self._element_alarms:
            for scope, (ne, service) in sorted(self._elements.items()):
                states = self._evaluate(scope, service, now)
                if states is None:  # quarantined: what it said last stands until it is measured again
                    for aid, kept in self._raised.items():
                        if kept.ne_id == ne and kept.specific_problem == f"{service} quality":
                            wanted[aid] = Synthetic(kept, "degraded", QUALITY)
                    continue
                missed = [st for st in states if st.status in ("at_risk", "violated")]
                if missed:
                    syn = self._kqi_alarm(ne, service, missed, now)
                    wanted[syn.alarm.alarm_id or ""] = syn
        paths = self.path_states(now)
        self._mos_floors(paths, now)
        located = self._infer(paths, set(alarmed))
        if located is not None:
            inference, services = located
            for service in services:
                syn = self._inferred_alarm(inference, service, now)
                wanted[syn.alarm.alarm_id or ""] = syn
        for aid, syn in sorted(wanted.items()):
            held = self._raised.get(aid)
            if held is None or held.severity != syn.alarm.severity:
                self._raised[aid] = syn.alarm
                out.append(syn)
        for aid in sorted(set(self._raised) - set(wanted)):
            alarm = self._raised.pop(aid)
            source = raised_by(aid) or QUALITY
            out.append(clear_alarm(alarm, rule=source, t=now, text="quality back within target"))
        busy = bool(live) or bool(self._raised)
        self._next = now + self.settings.evaluate_every if busy else None
        return out

    def _kqi_alarm(self, ne: str, service: str, missed: list[KqiState], now: float) -> Synthetic:
        """One alarm per element and service type: every KQI missing its target, the worst first."""
        missed = sorted(missed, key=lambda st: (st.status != "violated", st.kqi.name))
        parts = []
        for st in missed:
            k = st.kqi
            op = "<" if k.objective == "min" else ">"
            value = "n/a" if st.value is None else f"{st.value:.4g}"
            parts.append(
                f"KQI {k.name} ({k.category}) {k.aggregate} over {k.window:g}s = {value} {op} target "
                f"{k.target:g}"
                + (f" (limit {k.limit:g})" if k.limit is not None else "")
                + f", {st.samples} samples"
            )
        sources = sorted({st.kqi.source for st in missed if st.kqi.source})
        emit = Emit(
            probable_cause="performanceDegraded",
            severity="major" if missed[0].status == "violated" else "minor",
            event_type="qualityOfServiceAlarm",
            specific_problem=f"{service} quality",
            effect="degraded",
        )
        text = "; ".join(parts) + (f" (targets: {'; '.join(sources)})" if sources else "")
        worst = missed[0]
        info = None
        if worst.value is not None:  # X.733 threshold info of the worst KQI: which level it crossed
            k = worst.kqi
            crossed = k.limit if worst.status == "violated" and k.limit is not None else k.target
            info = ThresholdInfo(
                indicator=f"{k.name} ({k.metric})",
                direction="down" if k.objective == "min" else "up",
                observed_value=round(worst.value, 3),
                threshold=crossed,
                clear=k.target,
                granularity=f"{k.aggregate} over {k.window:g}s",
            )
        return raise_alarm(
            emit, rule=QUALITY, scope=f"{ne}:{service}", ne_id=ne, t=now, text=text, threshold_info=info
        )

    def _inferred_alarm(self, inf: Inference, service: str, now: float) -> Synthetic:
        """The degradation located at ``inf.element``, for one service type whose degraded paths
        cross it: its impact is that service's subscriptions there, not the element's every one."""
        assert inf.element is not None
        text = (
            f"no alarm explains {inf.degraded_paths} degraded service path(s); {inf.covered} of them cross "
            f"{inf.element}, and {inf.healthy_through} healthy one(s) do (confidence {inf.confidence:.2f});"
            f" {service} degraded there"
        )
        emit = Emit(
            probable_cause=INFERRED,
            severity="major",
            event_type="qualityOfServiceAlarm",
            specific_problem="inferred",
            effect="degraded",
        )
        return raise_alarm(
            emit, rule=INFERENCE, scope=f"{inf.element}:{service}", ne_id=inf.element, t=now, text=text
        )

    def _mos_floors(self, paths: Mapping[str, list[KqiState]], now: float) -> None:
        """A customer's voice MOS (its voice path's KQI) below its tier's floor is an SLA breach; the
        MOS of other services (video) is on another scale and not held to the voice floor."""
        for scope, states in paths.items():
            customer, service = self._paths[scope]
            if service not in VOICE_SERVICES or not self._topology.has_customer(customer):
                continue
            tier = self._topology.customer(customer).tier
            for st in states:
                if st.kqi.metric == "mos" and st.value is not None and st.status != "unknown":
                    self.sla.observe_mos(customer, tier, st.value, now)

    # -- paths and inference ---------------------------------------------------------------------
    def path_states(self, now: float) -> dict[str, list[KqiState]]:
        """Every measured service path's KQI states, by scope (sorted)."""
        return {
            scope: states
            for scope, (_, service) in sorted(self._paths.items())
            if (states := self._evaluate(scope, service, now)) is not None
        }

    def _evaluate(self, scope: str, service: str, now: float) -> list[KqiState] | None:
        """One scope's KQI states; None while the scope is quarantined because its evaluation raised
        (the window's content is named as the poison)."""
        return self._quarantine.run(
            QUALITY_PART,
            scope,
            now,
            partial(self.windows.evaluate, scope, service, now),
            None,
            poison=partial(self.windows.describe, scope),
        )

    def measured_paths(self) -> dict[str, tuple[str, str]]:
        """Path scope -> (customer, service type), for every path with samples in the windows (as of
        the last evaluation: a path whose samples have all expired is dropped then)."""
        return dict(self._paths)

    def _infer(
        self, states: Mapping[str, list[KqiState]], alarmed: set[str]
    ) -> tuple[Inference, tuple[str, ...]] | None:
        """The located degradation and the service types of its degraded paths that cross the
        element (one alarm each), or None."""
        inf_settings = self.settings.inference
        self.last_inference = None  # the evidence of this evaluation only
        if not inf_settings.enabled or not self._paths:
            return None
        paths: dict[str, frozenset[str]] = {}
        degraded: set[str] = set()
        for scope, kqis in states.items():
            customer, service = self._paths[scope]
            if not self._topology.has_customer(customer) or service not in self._topology.service_types:
                continue
            access = self._topology.customer(customer).access
            paths[scope] = access_path_elements(self._topology, access, service)
            if any(s.status in ("at_risk", "violated") for s in kqis):
                degraded.add(scope)
        if len(degraded) < inf_settings.min_degraded:
            return None
        # Degradations on paths that carry an alarm with an effect are explained by it.
        unexplained = {p for p in degraded if not (paths[p] & alarmed)}
        if len(unexplained) < inf_settings.min_degraded:
            return None
        # The explained ones are no evidence either way: not degraded (the alarm accounts for them)
        # and not healthy (counted as healthy, an unrelated alarm would hide the real location).
        candidates = {p: e for p, e in paths.items() if p in unexplained or p not in degraded}
        elements = set().union(*candidates.values())
        depth = {ne: len(self._topology.ancestors(ne)) for ne in elements}
        inf = infer_location(candidates, unexplained, min_degraded=inf_settings.min_degraded, depth=depth)
        self.last_inference = inf
        if inf.element is None or inf.confidence < inf_settings.min_confidence:
            return None
        self.inferred += 1
        element = inf.element
        return inf, tuple(sorted({self._paths[p][1] for p in unexplained if element in paths[p]}))

    # -- SLAs ----------------------------------------------------------------------------------
    @property
    def tracks_sla(self) -> bool:
        """There are customers to track (a topology without customers has nothing to do here)."""
        return bool(self._groups)

    def health_changed(self, ne_id: str, view: HealthView, now: float) -> None:
        """Re-assess the customer groups an element's health change can touch."""
        if not self._groups:
            return
        touched = {ne_id, *self._topology.descendants(ne_id)}
        groups: dict[str, CustomerGroup] = {}
        for access in touched & self._accesses:
            for g in self._topology.groups_at(access):
                groups[group_id(g)] = g
        for s, chain in self._chains.items():
            if chain & touched:
                for g in self._by_service.get(s, ()):
                    groups[group_id(g)] = g
        for gid in sorted(groups):
            g = groups[gid]
            self.sla.update(gid, g.tier, self._down(g, view), now)

    def _down(self, g: CustomerGroup, view: HealthView) -> bool:
        if view.health(g.access) == Health.DOWN:
            return True
        return any(
            view.health(p) == Health.DOWN
            for s in g.services
            for p in self._topology.service_types[s].platform
        )

    def sla_facts(self, impact: Impact, now: float) -> SlaFacts | None:
        """SLA facts of an incident's impact: customers down, breached, the soonest breach."""
        if not self._groups or not impact.elements:
            return None
        down = {ne for ne, h in impact.elements.items() if h == Health.DOWN}
        if not down:
            return None
        groups: dict[str, CustomerGroup] = {}
        for access in down & self._accesses:
            for g in self._topology.groups_at(access):
                groups[group_id(g)] = g
        for s, st in self._topology.service_types.items():
            if down & set(st.platform):
                for g in self._by_service.get(s, ()):
                    groups[group_id(g)] = g
        soonest: tuple[float, str] | None = None
        upcoming: float | None = None  # the soonest breach still to come
        customers = breached = 0
        for gid, g in sorted(groups.items()):
            if g.tier not in self.settings.sla.tiers:
                continue
            left = self.sla.time_to_breach(gid, g.tier, now)
            if left is None:
                continue
            customers += g.count
            if left <= 0:
                breached += g.count
            elif upcoming is None or left < upcoming:
                upcoming = left
            if soonest is None or left < soonest[0]:
                soonest = (left, g.tier)
        if not customers:
            return None
        urgency = breach_urgency(soonest[0] if soonest else None, self.settings.sla)
        return SlaFacts(
            customers_down=customers,
            customers_breached=breached,
            seconds_to_breach=round(soonest[0], 1) if soonest else None,
            tier_breaching_first=soonest[1] if soonest else None,
            urgency=round(urgency, 3),
            points=round(urgency * self.settings.sla_points, 2),
            next_breach=upcoming if breached else None,
            soonest=soonest[0] if soonest else None,
        )

    # -- views ---------------------------------------------------------------------------------
    def customer(self, customer_id: str, view_for: Callable[[str], HealthView], now: float) -> dict[str, Any]:
        """Experience index and SLA state of one customer (JSON-ready). A service's KQIs are those of
        the customer's path if it is measured, else those of the access element's samples *of that
        service*, else unknown (no data: the service scores 100, its health alone caps it)."""
        c = self._topology.customer(customer_id)
        services: dict[str, tuple[list[KqiScore], Health]] = {}
        kqis: dict[str, list[dict[str, Any]]] = {}
        for s in c.services:
            scope = path_scope(customer_id, s)
            if scope not in self._paths and element_scope(c.access, s) in self._elements:
                scope = element_scope(c.access, s)
            states = self.windows.evaluate(scope, s, now)
            kqis[s] = [st.to_record() for st in states]
            scores = [
                KqiScore(st.kqi.name, st.kqi.category, st.status, st.kqi.weight, st.value, st.kqi.target)
                for st in states
            ]
            health = view_for(s).service(self._topology, c.access, s)  # as this service sees it
            services[s] = (scores, health)
        exp = customer_experience(services, self.settings.experience)
        out: dict[str, Any] = {"experience": exp.to_record(), "kqis": kqis}
        gid = next(
            (
                group_id(g)
                for g in self._topology.groups_at(c.access)
                if g.tier == c.tier and g.services == frozenset(c.services)
            ),
            None,
        )
        if gid is not None and c.tier in self.settings.sla.tiers:
            # Availability and time to restore are the group's; the MOS is the customer's own.
            state = self.sla.state(gid, c.tier, now, mos_of=customer_id).to_record()
            del state["subject"]
            left = self.sla.time_to_breach(gid, c.tier, now)
            state["seconds_to_breach"] = None if left is None else round(left, 1)
            state["group"] = self.group_record(gid)
            state["breaches"] = [
                self.breach_record(b)
                for b in self.sla.breaches()
                if b.subject == (customer_id if b.kind == "mos" else gid)
            ]
            out["sla"] = state
        return out

    def _group(self, gid: str) -> CustomerGroup | None:
        """The topology's group of that ``group_id``: one of its access element's, the element being
        the id up to one of its ``|`` (an element id may hold one too). No index of every group's id:
        it would cost a string per group at start-up for a lookup made by reports only."""
        bar = gid.find("|")
        while bar > 0:
            for g in self._topology.groups_at(gid[:bar]):
                if group_id(g) == gid:
                    return g
            bar = gid.find("|", bar + 1)
        return None

    def group_record(self, gid: str) -> dict[str, Any]:
        """A customer group (a ``group_id``): access element, tier, services and how many customers."""
        g = self._group(gid)
        if g is not None:
            return {"access": g.access, "tier": g.tier, "services": sorted(g.services), "customers": g.count}
        # A group the topology no longer has (state restored under another topology): its id says it.
        access, _, rest = gid.partition("|")
        tier, _, services = rest.partition("|")
        return {
            "access": access,
            "tier": tier,
            "services": services.split("+") if services else [],
            "customers": None,
        }

    def breach_record(self, b: Breach) -> dict[str, Any]:
        """A breach, JSON-ready: availability and time to restore name the customer ``group``
        (``group_record``), a MOS breach the ``customer``."""
        rec = b.to_record()
        subject = rec.pop("subject")
        who: dict[str, Any] = (
            {"customer": subject} if b.kind == "mos" else {"group": self.group_record(subject)}
        )
        return {"at": rec["at"], "kind": rec["kind"], "tier": rec["tier"], **who, "detail": rec["detail"]}

    def breach_records(self) -> list[dict[str, Any]]:
        """Every breach recorded, in the order recorded (``breach_record``)."""
        return [self.breach_record(b) for b in self.sla.breaches()]

    # -- snapshot ------------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {
            "windows": self.windows.dump(),
            "sla": self.sla.dump(),
            "elements": {k: list(v) for k, v in self._elements.items()},
            "paths": {k: list(v) for k, v in self._paths.items()},
            "raised": {k: a.model_dump(mode="json") for k, a in self._raised.items()},
            "next": self._next,
            "counters": [self.inferred, self.evaluations],
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self.windows.load(state["windows"])
        self.sla.load(state["sla"])
        # A state from before element scopes were per service ("services_at", scopes ``ne:<id>``
        # mixing every service's samples) has no per-service element series: they start afresh.
        self._elements = {k: (ne, s) for k, (ne, s) in state.get("elements", {}).items()}
        self._paths = {k: (c, s) for k, (c, s) in state["paths"].items()}
        self._raised = {k: Alarm.model_validate(a, strict=False) for k, a in state["raised"].items()}
        self._next = state["next"]
        self.inferred, self.evaluations = state["counters"]
