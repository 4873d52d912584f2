"""Alarms the rules raise themselves: storms, pair escalations, KPI breaches.

They are ordinary X.733 alarms (``messages.Alarm``) with an ``alarm_id`` in the rule's namespace
(``rule:<ruleset>/<rule>:<scope>``), so they go through the alarm table, correlation, impact and
priority like any other. Their effect comes from the rule, not from the effect table.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.settings import Effect
from engine.model.messages import Alarm, ThresholdInfo
from engine.rules.schema import Emit


@dataclass(frozen=True, slots=True)
class Synthetic:
    alarm: Alarm
    effect: Effect | None  # None for a clear
    rule: str  # qualified rule name


QUALITY, INFERENCE = "quality", "inference"
"""The engine parts that raise alarms of their own (``raised_by``): service quality's per-service KQI
alarms (``rule:quality:<element>:<service>``) and inferred degradations (``rule:inference:<element>``)."""
QUALITY_SOURCES = (QUALITY, INFERENCE)


def synthetic_id(rule: str, scope: str) -> str:
    return f"rule:{rule}:{scope}"[:256]


def raised_by(key: str) -> str | None:
    """What raised a synthetic alarm (the inverse of ``synthetic_id``): a rule's qualified name, or
    an engine part (``quality``, ``inference``); None for an alarm from the network."""
    if not key.startswith("rule:") or key.count(":") < 2:
        return None
    return key.split(":", 2)[1]


def service_scope(key: str) -> str | None:
    """The service type a synthetic alarm is about, for the engine's per-service KQI alarms
    (``rule:quality:<element>:<service>``) and inferred degradations
    (``rule:inference:<element>:<service>``); None for every other alarm (it concerns the element,
    as an inferred degradation raised before they were per service, ``rule:inference:<element>``)."""
    if not key.startswith("rule:"):  # an alarm from the network (asked for each alarm at each
        return None  # health update and re-assessment): ``raised_by`` would say None
    source = raised_by(key)
    if source == QUALITY:
        _, _, rest = key.partition(f"rule:{QUALITY}:")
        return rest.rpartition(":")[2] or None
    if source == INFERENCE:
        _, _, rest = key.partition(f"rule:{INFERENCE}:")
        _, sep, service = rest.rpartition(":")
        return service if sep and service else None
    return None


def raise_alarm(
    emit: Emit,
    *,
    rule: str,
    scope: str,
    ne_id: str,
    t: float,
    text: str,
    threshold_info: ThresholdInfo | None = None,
) -> Synthetic:
    alarm = Alarm(
        ne_id=ne_id,
        severity=emit.severity,
        probable_cause=emit.probable_cause,
        event_type=emit.event_type,
        specific_problem=emit.specific_problem,
        alarm_id=synthetic_id(rule, scope),
        text=(f"{emit.text}: {text}" if emit.text else text)[:4096],
        event_time=t,
        threshold_info=threshold_info,
    )
    return Synthetic(alarm, emit.effect, rule)


def clear_alarm(raised: Alarm, *, rule: str, t: float, text: str) -> Synthetic:
    alarm = raised.model_copy(update={"severity": "cleared", "event_time": t, "text": text[:4096]})
    return Synthetic(alarm, None, rule)
