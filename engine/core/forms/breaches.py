"""The ``kpi_threshold`` form: KPI samples beyond a threshold for a while raise a QoS alarm.

For every rule and every target element in its scope, the value compared is the latest sample
(``aggregate: last``) or an aggregate over the samples of the last ``over`` seconds (``mean``,
``max``, ``min``, ``p95`` by nearest rank). When it is beyond the threshold (``above`` /
``below``) on every sample for at least ``for`` seconds, an X.733 ``qualityOfServiceAlarm`` is
raised on the target (``probable_cause`` thresholdCrossed, ``specific_problem`` the metric, text
with the observed value and threshold, the rule's effect — ``degraded`` by default, so the services
through the element are degraded and the breach correlates like any alarm: an outage upstream
becomes its root). It clears when the value comes back past ``clear`` (hysteresis; default the
threshold itself). Evaluation happens on sample arrival, with sample times (like Prometheus's
``for``, but driven by the data rather than by an evaluation interval).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.core.forms.base import NOTHING, BaseForm, Fact, FormContext, Outcome, Seen, Verdict
from engine.core.forms.synthetic import Synthetic, clear_alarm, raise_alarm
from engine.core.kqi import aggregate as kqi_aggregate
from engine.model.messages import Alarm, KpiSample, ThresholdInfo
from engine.rules.compiler import CompiledRule
from engine.rules.schema import Emit, KpiThreshold


@dataclass
class _State:
    window: deque[tuple[float, float]] = field(default_factory=deque)
    since: float | None = None  # first sample time of the current breach
    raised: Alarm | None = None


def aggregate(kind: str, values: Sequence[float]) -> float:
    """``last``, ``mean``, ``max``, ``min`` or ``p95`` (nearest rank) of a non-empty window: the KQI
    windows' own aggregation, so a KPI rule and a KQI read the same numbers the same way."""
    value = kqi_aggregate(kind, list(values))
    assert value is not None  # the window holds at least the sample just observed
    return value


class Breaches(BaseForm):
    name = "breaches"
    rule_form: str | None = "kpi_threshold"

    def __init__(self, ctx: FormContext) -> None:
        self._rules = ctx.rules_of("kpi_threshold")
        self._names = {r.qualified for r in self._rules}
        self._topology = ctx.topology
        self._by_metric: dict[str, list[CompiledRule]] = {}
        for r in self._rules:
            spec = r.rule.kpi_threshold
            assert isinstance(spec, KpiThreshold)
            self._by_metric.setdefault(spec.metric, []).append(r)
        self.reads_samples = bool(self._by_metric)  # without kpi_threshold rules, samples are not offered
        self._state: dict[tuple[str, str], _State] = {}
        self._in_scope: dict[tuple[str, str, str | None], bool] = {}
        self.raised = 0

    def observe(self, fact: Fact, now: float) -> Outcome:
        """KPI samples only: an alarm is never a KPI value."""
        if not self._by_metric or not isinstance(fact, KpiSample):  # (a model: a slow isinstance)
            return NOTHING
        raised = self._observe(fact)
        return Outcome(alarms=tuple(raised)) if raised else NOTHING

    def counters(self) -> dict[str, int]:
        return {"kpi_breaches": self.raised}

    def idle(self) -> bool:
        return not self._by_metric and not self._state

    def explain(self, rule: CompiledRule, seen: Seen) -> Verdict:
        if seen.synthetic == rule.qualified:
            return Verdict(True, f"raised by this rule: {seen.alarm.text or ''}".rstrip(": "))
        return Verdict(False, "evaluates KPI samples, not alarms")

    def _observe(self, sample: KpiSample) -> list[Synthetic]:
        out: list[Synthetic] = []
        for metric in sorted(sample.metrics):
            for rule in self._by_metric.get(metric, ()):
                spec = rule.rule.kpi_threshold
                assert isinstance(spec, KpiThreshold)
                if not self._applies(rule, spec, sample.target, sample.service):
                    continue
                syn = self._evaluate(rule, spec, sample.target, sample.metrics[metric], sample.time)
                if syn is not None:
                    out.append(syn)
        return out

    def _applies(self, rule: CompiledRule, spec: KpiThreshold, target: str, service: str | None) -> bool:
        cache = (rule.qualified, target, service)
        hit = self._in_scope.get(cache)
        if hit is None:
            sc = spec.scope
            el = self._topology.element(target)
            hit = (
                rule.in_scope(self._topology, target)
                and (not sc.target or target in sc.target)
                and (not sc.element_type or el.type in sc.element_type)
                and (not sc.site or el.site in sc.site)
                and (not sc.region or el.region in sc.region)
                and (
                    not sc.service_type
                    # a sample naming its service is judged by that service's rules only; one that
                    # does not, by the rules of every service crossing its target
                    or (service in sc.service_type if service else False)
                    or (not service and bool(set(sc.service_type) & self._topology.services_through(target)))
                )
            )
            self._in_scope[cache] = hit
        return hit

    def _evaluate(
        self, rule: CompiledRule, spec: KpiThreshold, target: str, value: float, t: float
    ) -> Synthetic | None:
        st = self._state.setdefault((rule.qualified, target), _State())
        if spec.aggregate != "last" and spec.over is not None:
            st.window.append((t, value))
            while st.window and st.window[0][0] <= t - spec.over:
                st.window.popleft()
            value = aggregate(spec.aggregate, [v for _, v in st.window])
        op = ">" if spec.above is not None else "<"
        what = (
            spec.metric
            if spec.aggregate == "last"
            else f"{spec.aggregate}({spec.metric}) over {spec.over:g}s"
        )
        if st.raised is not None:
            if spec.cleared(value):
                raised, st.raised, st.since = st.raised, None, None
                return clear_alarm(
                    raised,
                    rule=rule.qualified,
                    t=t,
                    text=f"{what} = {value:.4g}, back past {spec.clear_value:g}",
                )
            return None
        if not spec.breaching(value):
            st.since = None
            return None
        if st.since is None:
            st.since = t
        if t - st.since < spec.for_:
            return None
        self.raised += 1
        emit = Emit(
            probable_cause=spec.probable_cause,
            severity=spec.severity,
            event_type="qualityOfServiceAlarm",
            specific_problem=spec.metric,
            effect=spec.effect,
        )
        held = f" for {t - st.since:g}s" if spec.for_ else ""
        text = (
            f"{what} = {value:.4g} {op} {spec.threshold:g}{held} "
            f"(threshold {spec.threshold:g}, clear {spec.clear_value:g})"
        )
        info = ThresholdInfo(
            indicator=spec.metric,
            direction="up" if spec.above is not None else "down",
            observed_value=value,
            threshold=spec.threshold,
            clear=spec.clear_value,
            granularity=(
                "last sample" if spec.aggregate == "last" else f"{spec.aggregate} over {spec.over:g}s"
            )
            + (f", held {spec.for_:g}s" if spec.for_ else ""),
        )
        syn = raise_alarm(
            emit, rule=rule.qualified, scope=target, ne_id=target, t=t, text=text, threshold_info=info
        )
        st.raised = syn.alarm
        return syn

    def active(self) -> int:
        return sum(1 for s in self._state.values() if s.raised is not None)

    def dump(self) -> dict[str, Any]:
        return {
            "state": [
                [
                    q,
                    target,
                    [list(e) for e in s.window],
                    s.since,
                    s.raised.model_dump(mode="json") if s.raised else None,
                ]
                for (q, target), s in self._state.items()
            ],
            "raised": self.raised,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self._state = {}
        for q, target, window, since, raised in state["state"]:
            if q not in self._names or target not in self._topology:
                continue
            alarm = Alarm.model_validate(raised, strict=False) if raised is not None else None
            self._state[(q, target)] = _State(deque((t, v) for t, v in window), since, alarm)
        self.raised = state["raised"]
