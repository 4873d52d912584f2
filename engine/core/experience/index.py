"""The Customer Experience Index (0–100 per customer): each KQI scores by its status (met 100, at_risk 60,
violated 0, unknown excluded); a service is the weighted mean of its KQI scores (100 when none is
known), capped by the service's health (DOWN → 0, DEGRADED → at most 50); a customer is the weighted
mean of its services. Bands: good ≥ 80, fair ≥ 60, poor ≥ 40, bad below. See ``docs/sla.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.core.impact import Health

__all__ = [
    "Band",
    "Experience",
    "ExperienceSettings",
    "KqiScore",
    "KqiStatus",
    "customer_down",
    "customer_experience",
    "experience_band",
    "service_experience",
]

KqiStatus = Literal["met", "at_risk", "violated", "unknown"]
Band = Literal["good", "fair", "poor", "bad"]

_STATUSES: frozenset[str] = frozenset(get_args(KqiStatus))
_SCORED = ("violated", "at_risk", "met")  # from worst to best
_BANDS: tuple[Band, Band, Band] = ("good", "fair", "poor")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass(frozen=True, slots=True)
class KqiScore:
    """One KQI of one service of one customer, as the caller computed it.

    ``category`` (accessibility | retainability | integrity | availability) and ``value``/``target``
    are carried for display; only ``status`` and ``weight`` enter the index. ``unknown`` KQIs (no data)
    and zero-weight KQIs are left out of the mean.
    """

    name: str
    category: str
    status: KqiStatus
    weight: float = 1.0
    value: float | None = None
    target: float | None = None

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            known = ", ".join(sorted(_STATUSES))
            raise ValueError(f"KQI {self.name!r}: status must be one of {known}, got {self.status!r}")
        if not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"KQI {self.name!r}: weight must be a finite number ≥ 0, got {self.weight}")


_Score = Annotated[float, Field(ge=0, le=100)]
_Weight = Annotated[float, Field(gt=0)]


class ExperienceSettings(_Strict):
    """Scores, health caps, service weights and bands of the CEI; every default is a convention."""

    status_scores: Mapping[str, float] = Field(
        default_factory=lambda: {"met": 100.0, "at_risk": 60.0, "violated": 0.0},
        description="score of a KQI by status; `unknown` KQIs are excluded, never scored",
    )
    down_cap: _Score = 0.0  # a service whose health is DOWN scores at most this
    degraded_cap: _Score = 50.0  # … DEGRADED
    at_risk_cap: _Score = 100.0  # … AT_RISK: no cap by default (redundancy lost, nothing felt yet)
    service_weights: Mapping[str, _Weight] = Field(
        default_factory=lambda: {"voice": 1.0, "voip": 1.0, "internet": 1.0, "iptv": 0.7}
    )
    default_service_weight: _Weight = 1.0  # services not listed in `service_weights`
    bands: tuple[float, float, float] = (80.0, 60.0, 40.0)  # good ≥ [0], fair ≥ [1], poor ≥ [2], else bad

    @model_validator(mode="after")
    def _check(self) -> ExperienceSettings:
        scores = self.status_scores
        if set(scores) != set(_SCORED):
            raise ValueError(f"status_scores needs exactly {', '.join(_SCORED)}, got {sorted(scores)}")
        values = [scores[s] for s in _SCORED]
        if any(not (math.isfinite(v) and 0 <= v <= 100) for v in values) or values != sorted(values):
            raise ValueError("status_scores must be within 0..100 with violated ≤ at_risk ≤ met")
        if not self.down_cap <= self.degraded_cap <= self.at_risk_cap:
            raise ValueError("caps must satisfy down_cap ≤ degraded_cap ≤ at_risk_cap")
        bands = self.bands
        if any(not 0 <= b <= 100 for b in bands) or any(a <= b for a, b in pairwise(bands)):
            raise ValueError("bands must be strictly decreasing scores within 0..100 (good threshold first)")
        return self

    def cap(self, health: Health) -> float:
        """The most a service in this health can score."""
        if health == Health.DOWN:
            return self.down_cap
        if health == Health.DEGRADED:
            return self.degraded_cap
        if health == Health.AT_RISK:
            return self.at_risk_cap
        return 100.0

    def service_weight(self, service: str) -> float:
        return self.service_weights.get(service, self.default_service_weight)


@dataclass(frozen=True, slots=True)
class Experience:
    """A customer's CEI. ``services``: per-service index (rounded to 0.1), by service name.

    ``worst_service``: the lowest-scoring service (ties: the heavier weight, then the name); ``None``
    without services. ``at_risk``: services whose health is AT_RISK (not capped by default, listed so
    the lost redundancy shows).
    """

    index: float
    band: Band
    services: Mapping[str, float]
    worst_service: str | None
    at_risk: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "band": self.band,
            "services": dict(self.services),
            "worst_service": self.worst_service,
            "at_risk": list(self.at_risk),
        }


def service_experience(kqis: Sequence[KqiScore], health: Health, settings: ExperienceSettings) -> float:
    """Weighted mean of the scores of the known KQIs (100 if none), capped by ``health``. Not rounded."""
    scores = settings.status_scores
    total = weight = 0.0
    for k in kqis:
        if k.status != "unknown" and k.weight > 0:
            total += k.weight * scores[k.status]
            weight += k.weight
    base = total / weight if weight > 0 else 100.0
    return min(base, settings.cap(Health(health)))


def experience_band(index: float, settings: ExperienceSettings) -> Band:
    for band, threshold in zip(_BANDS, settings.bands, strict=True):
        if index >= threshold:
            return band
    return "bad"


def customer_experience(
    services: Mapping[str, tuple[Sequence[KqiScore], Health]], settings: ExperienceSettings
) -> Experience:
    """The CEI of one customer: the service-weighted mean of ``service_experience``, rounded to 0.1.

    The band is taken from the rounded index, so the figure shown and its band always agree. A customer
    without services has index 100 ("good") and no worst service.
    """
    per: dict[str, float] = {}
    total = weight = 0.0
    for name in sorted(services):
        kqis, health = services[name]
        score = service_experience(kqis, health, settings)
        per[name] = score
        w = settings.service_weight(name)
        total += w * score
        weight += w
    index = round(total / weight, 1) if weight > 0 else 100.0
    worst = min(per, key=lambda s: (per[s], -settings.service_weight(s), s)) if per else None
    at_risk = tuple(name for name in per if Health(services[name][1]) == Health.AT_RISK)
    return Experience(
        index=index,
        band=experience_band(index, settings),
        services={name: round(score, 1) for name, score in per.items()},
        worst_service=worst,
        at_risk=at_risk,
    )


def customer_down(healths: Iterable[Health]) -> bool:
    """The SLA outage test: a customer is down when any of its services is DOWN."""
    return any(Health(h) == Health.DOWN for h in healths)
