"""Settings of the pure core: alarm effects and flapping, incident timers, the priority model.

Loaded from the ``core`` section of the engine's YAML config (or a file with just these keys); every
field has a documented default, so an empty document is a valid configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.core.experience import ExperienceSettings, SlaSettings
from engine.core.kqi import KqiCatalog
from engine.errors import ConfigError
from engine.model.timeutil import Duration1d, Duration7d, Duration30d, Duration366d
from engine.model.wording import dotted, first_problem, type_name
from engine.model.yamlsource import Locator

Effect = Literal["outage", "degraded", "none"]
SeverityName = Literal["critical", "major", "minor", "warning", "indeterminate"]
EventTypeName = Literal[
    "communicationsAlarm",
    "qualityOfServiceAlarm",
    "processingErrorAlarm",
    "equipmentAlarm",
    "environmentalAlarm",
]

# X.733 probable causes (and a few common vendor names) that mean "this element no longer carries traffic".
OUTAGE_CAUSES = (
    "lossOfSignal",
    "lossOfFrame",
    "communicationsSubsystemFailure",
    "equipmentMalfunction",
    "powerProblem",
    "receiveFailure",
    "receiverFailure",
    "transmitFailure",
    "transmitterFailure",
    "underlyingResourceUnavailable",
    "linkDown",
    "nodeDown",
    "mainsFailure",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class EffectRule(_Strict):
    """First matching rule gives an alarm's effect on its element. Absent fields match anything."""

    probable_cause: tuple[str, ...] | None = None
    event_type: tuple[EventTypeName, ...] | None = None
    severity: tuple[SeverityName, ...] | None = None
    effect: Effect

    @field_validator("probable_cause", "event_type", "severity", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


DEFAULT_EFFECTS: tuple[EffectRule, ...] = (
    EffectRule(probable_cause=OUTAGE_CAUSES, severity=("critical", "major"), effect="outage"),
    EffectRule(
        event_type=("qualityOfServiceAlarm",), severity=("critical", "major", "minor"), effect="degraded"
    ),
    EffectRule(severity=("critical", "major", "minor"), effect="degraded"),
    EffectRule(effect="none"),
)


class FlappingSettings(_Strict):
    transitions: int = Field(
        6, ge=2, description="raise/clear transitions within `window` that make an alarm flap"
    )
    window: Duration1d = 600.0
    quiet: Duration1d | None = None  # no transition for this long ends flapping; default: window

    @property
    def quiet_period(self) -> float:
        return self.quiet if self.quiet is not None else self.window


class AlarmSettings(_Strict):
    effects: tuple[EffectRule, ...] = DEFAULT_EFFECTS
    flapping: FlappingSettings = Field(default_factory=FlappingSettings)
    retain: Duration30d = 3600.0  # how long a cleared alarm (and an unmatched clear) is remembered

    @model_validator(mode="after")
    def _catch_all(self) -> AlarmSettings:
        if not self.effects:
            raise ValueError("effects needs at least one rule (the last one usually has only `effect`)")
        return self


class IncidentSettings(_Strict):
    settle: Duration1d = 30.0  # a new incident waits this long for its symptoms before it is notified
    hold_down: Duration7d = 300.0  # roots must stay clear this long before the incident resolves
    update_interval: Duration1d = 5.0  # at most one `updated` per incident per interval


class PrioritySettings(_Strict):
    """Score = 100 × Σ weight × component; every component is monotonic in what it measures."""

    weights: Mapping[str, float] = Field(
        default_factory=lambda: {"state": 0.25, "customers": 0.45, "criticality": 0.15, "severity": 0.15}
    )
    state_factor: Mapping[str, float] = Field(
        default_factory=lambda: {"outage": 1.0, "degraded": 0.6, "at_risk": 0.3}
    )
    severity_factor: Mapping[str, float] = Field(
        default_factory=lambda: {
            "critical": 1.0,
            "major": 0.75,
            "minor": 0.5,
            "warning": 0.25,
            "indeterminate": 0.25,
        }
    )
    reference_impact: float = Field(
        10000.0,
        gt=1.0,
        description="tier-weighted customers at which the customer component saturates",
    )
    bands: tuple[float, float, float, float] = (80.0, 60.0, 40.0, 20.0)  # P1 ≥ bands[0], P2 ≥ bands[1], …

    @model_validator(mode="after")
    def _check(self) -> PrioritySettings:
        keys = {"state", "customers", "criticality", "severity"}
        if set(self.weights) != keys:
            raise ValueError(f"weights needs exactly {sorted(keys)}, got {sorted(self.weights)}")
        if any(w < 0 for w in self.weights.values()) or abs(sum(self.weights.values()) - 1.0) > 1e-9:
            raise ValueError("weights must be non-negative and sum to 1")
        if set(self.state_factor) != {"outage", "degraded", "at_risk"}:
            raise ValueError("state_factor needs outage, degraded and at_risk")
        sf = self.state_factor
        if not (0 <= sf["at_risk"] <= sf["degraded"] <= sf["outage"] <= 1):
            raise ValueError("state_factor must satisfy 0 ≤ at_risk ≤ degraded ≤ outage ≤ 1")
        order = ("indeterminate", "warning", "minor", "major", "critical")
        if set(self.severity_factor) != set(order):
            raise ValueError(f"severity_factor needs {', '.join(order)}")
        values = [self.severity_factor[s] for s in order]
        if values != sorted(values) or not all(0 <= v <= 1 for v in values):
            raise ValueError("severity_factor must be within 0..1 and not decrease with severity")
        bands = self.bands
        if any(not 0 <= b <= 100 for b in bands) or any(a <= b for a, b in pairwise(bands)):
            raise ValueError("bands must be strictly decreasing scores within 0..100 (P1 threshold first)")
        return self


class InferenceSettings(_Strict):
    """Locating degradations nobody alarmed (``engine.core.inference``)."""

    enabled: bool = True
    min_degraded: int = Field(3, ge=1)  # degraded paths an element must carry to be suspected
    min_confidence: float = Field(0.5, ge=0.0, le=1.0)


class QualitySettings(_Strict):
    """KQIs, inference, customer experience and SLAs (``engine.core.quality``)."""

    kqis: KqiCatalog = Field(default_factory=KqiCatalog.defaults)  # config: {services: {type: [kqi…]}}
    evaluate_every: Duration1d = 60.0
    element_alarms: Literal["auto", "on", "off"] = "auto"  # auto: off when rulesets have kpi_threshold rules
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    experience: ExperienceSettings = Field(default_factory=ExperienceSettings)
    sla: SlaSettings = Field(default_factory=SlaSettings)
    sla_points: float = Field(15.0, ge=0.0, le=100.0)  # priority points at full SLA urgency

    @field_validator("kqis", mode="before")
    @classmethod
    def _over_the_defaults(cls, v: Any) -> Any:
        """``kqis: {services: {type: [kqi…]}}`` in a config replaces the KQIs of the service types it
        lists (an empty list: none) and keeps the default catalog's for the others."""
        if isinstance(v, Mapping) and isinstance(v.get("services"), Mapping):
            return {**v, "services": {**KqiCatalog.defaults().services, **v["services"]}}
        return v


class ClockSettings(_Strict):
    """How far an event's own time (an alarm's ``event_time``, a sample's ``time``) may be from the
    time the engine received it. Beyond ``max_ahead`` (later) or ``max_behind`` (earlier; None: no
    limit), the event is applied at the receive time (``clamp``) or refused as a dead letter
    (``reject``)."""

    max_ahead: Duration366d = 300.0
    ahead: Literal["clamp", "reject"] = "clamp"
    max_behind: Duration366d | None = None
    behind: Literal["clamp", "reject"] = "clamp"


class CoreSettings(_Strict):
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    priority: PrioritySettings = Field(default_factory=PrioritySettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    reorder_tolerance: Duration1d = 5.0  # replay: events up to this much out of order are re-sorted
    clock: ClockSettings = Field(default_factory=ClockSettings)


def core_settings_from_data(
    data: Any, source: str = "<inline>", locator: Locator | None = None
) -> CoreSettings:
    """Validate a mapping; a full engine config's ``core`` section is taken if present."""
    if data is None:
        return CoreSettings()
    if not isinstance(data, Mapping):
        raise ConfigError(source, "", f"expected a mapping of settings, got {type_name(data)}")
    prefix: tuple[str, ...] = ()
    if "core" in data:
        prefix = ("core",)
        data = data["core"] or {}
        if not isinstance(data, Mapping):
            raise ConfigError(source, "core", f"expected a mapping, got {type_name(data)}")
        # A full engine config carries other sections (broker, receivers…); they belong to the daemon.
    try:
        return CoreSettings.model_validate(data)
    except ValidationError as exc:
        inner, reason = first_problem(exc, CoreSettings)
        loc = (*prefix, *inner)
        path = dotted(loc)
        line = locator.line(loc) if locator else None
        where = f"line {line}: {path}" if line else path
        raise ConfigError(source, where, reason) from None
