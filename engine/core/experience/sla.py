"""SLA terms and their records: ``SlaTier`` (availability over a sliding period, time to restore, MOS
floor), ``SlaSettings`` by tier, ``breach_urgency`` (time to a breach → 0..1, a priority component),
``Breach`` and ``SlaState`` (what ``SlaTracker`` reports), ``SlaFacts`` (an incident's SLA facts).
Every default is an operator convention.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.model.timeutil import Duration366d, format_time

__all__ = [
    "Breach",
    "BreachKind",
    "SlaFacts",
    "SlaSettings",
    "SlaState",
    "SlaTier",
    "UrgencySettings",
    "breach_urgency",
]

BreachKind = Literal["availability", "time_to_restore", "mos"]

_DAY = 86400.0
_HOUR = 3600.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_Positive = Annotated[Duration366d, Field(gt=0)]  # at most a year, as rule windows


class SlaTier(_Strict):
    """The SLA of one tier. ``availability``: target fraction of ``period`` the customer is up.

    ``time_to_restore``: an outage longer than this is a breach (``None``: no commitment).
    ``mos_floor``: a voice MOS below this is a breach (``None``: no commitment).
    """

    availability: Annotated[float, Field(gt=0, le=1)]
    period: _Positive = 30 * _DAY
    time_to_restore: _Positive | None = None
    mos_floor: Annotated[float, Field(ge=1, le=5)] | None = None

    @property
    def budget(self) -> float:
        """Allowed downtime per period, seconds: (1 − availability) × period, rounded to 1 µs."""
        return round((1.0 - self.availability) * self.period, 6)


def _default_tiers() -> dict[str, SlaTier]:
    return {
        "platinum": SlaTier(availability=0.9995, time_to_restore=2 * _HOUR, mos_floor=4.0),
        "gold": SlaTier(availability=0.999, time_to_restore=4 * _HOUR, mos_floor=3.8),
        "silver": SlaTier(availability=0.995, time_to_restore=8 * _HOUR, mos_floor=3.6),
        "bronze": SlaTier(availability=0.99, time_to_restore=24 * _HOUR, mos_floor=3.1),
    }


class UrgencySettings(_Strict):
    """``breach_urgency``: 1 at or below ``urgent`` seconds to breach, linear down to 0 at ``horizon``."""

    urgent: Duration366d = 15 * 60.0
    horizon: _Positive = 1 * _HOUR

    @model_validator(mode="after")
    def _check(self) -> UrgencySettings:
        if not self.urgent < self.horizon:
            raise ValueError("urgent must be shorter than horizon")
        return self


class SlaSettings(_Strict):
    """SLAs by tier name (customers of a tier not listed here have no SLA) and the urgency mapping."""

    tiers: Mapping[str, SlaTier] = Field(default_factory=_default_tiers)
    urgency: UrgencySettings = Field(default_factory=UrgencySettings)


def breach_urgency(seconds_to_breach: float | None, settings: SlaSettings | UrgencySettings) -> float:
    """Time to an SLA breach → 0..1 for the priority model.

    ``None`` (no breach ahead) → 0; ≤ ``urgent`` (already breached, or breaching within 15 min) → 1;
    ≥ ``horizon`` (1 h) → 0; linear in between: (horizon − s) / (horizon − urgent).
    """
    u = settings.urgency if isinstance(settings, SlaSettings) else settings
    if seconds_to_breach is None:
        return 0.0
    if math.isnan(seconds_to_breach):
        raise ValueError("seconds_to_breach must be a number or None, got NaN")
    if seconds_to_breach <= u.urgent:
        return 1.0
    if seconds_to_breach >= u.horizon:
        return 0.0
    return (u.horizon - seconds_to_breach) / (u.horizon - u.urgent)


# --- breaches and SLA state ------------------------------------------------------------------------

_TIME_KEYS = frozenset({"outage_started"})


@dataclass(frozen=True, slots=True)
class Breach:
    """One SLA breach. ``subject``: whom the tracker tracked (see ``SlaTracker``). ``at``: the instant
    it happened (budget exhausted, restore time exceeded, MOS observed below the floor), not the call
    that noticed it. ``detail``: numbers (seconds, fractions)."""

    subject: str
    tier: str
    kind: BreachKind
    at: float
    detail: Mapping[str, float] = field(default_factory=dict, hash=False)

    def to_record(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "tier": self.tier,
            "kind": self.kind,
            "at": format_time(self.at),
            "detail": {k: format_time(v) if k in _TIME_KEYS else v for k, v in self.detail.items()},
        }


@dataclass(frozen=True, slots=True)
class SlaState:
    """A subject's SLA standing at ``at``. Durations in seconds; ``None`` where it does not apply.

    ``availability`` = 1 − downtime / period over [at − period, at], time before the first ``update``
    counted as up. ``time_to_breach``: as ``SlaTracker.time_to_breach``.
    """

    subject: str
    tier: str
    at: float
    period: float
    target: float
    downtime: float
    availability: float
    budget: float
    budget_left: float
    down: bool
    outage_started: float | None
    outage_duration: float | None
    time_to_restore: float | None
    time_to_restore_left: float | None
    time_to_breach: float | None
    availability_breached: bool
    time_to_restore_breached: bool
    mos_floor: float | None
    mos: float | None
    mos_breached: bool
    observed_since: float | None

    def to_record(self) -> dict[str, Any]:
        def t(value: float | None) -> str | None:
            return None if value is None else format_time(value)

        return {
            "subject": self.subject,
            "tier": self.tier,
            "at": t(self.at),
            "period": self.period,
            "target": self.target,
            "downtime": self.downtime,
            "availability": self.availability,
            "budget": self.budget,
            "budget_left": self.budget_left,
            "down": self.down,
            "outage_started": t(self.outage_started),
            "outage_duration": self.outage_duration,
            "time_to_restore": self.time_to_restore,
            "time_to_restore_left": self.time_to_restore_left,
            "time_to_breach": self.time_to_breach,
            "breached": {
                "availability": self.availability_breached,
                "time_to_restore": self.time_to_restore_breached,
                "mos": self.mos_breached,
            },
            "mos_floor": self.mos_floor,
            "mos": self.mos,
            "observed_since": t(self.observed_since),
        }


@dataclass(frozen=True, slots=True)
class SlaFacts:
    """The SLA facts of an incident's impact at its last assessment: customers down under an SLA,
    those already breached, the soonest breach (seconds, rounded to 0.1 s, and its tier), its
    urgency (0..1) and the priority points it adds. ``to_wire()`` is the record's ``sla`` object."""

    customers_down: int
    customers_breached: int
    seconds_to_breach: float | None
    tier_breaching_first: str | None
    urgency: float
    points: float
    # Seconds until the soonest group not yet breached breaches, once some have (the soonest breach
    # is then 0): when the incident is looked at again so that ``customers_breached`` follows the
    # later breaches. Not part of the record (``to_wire``).
    next_breach: float | None = None
    # ``seconds_to_breach`` before its rounding to 0.1 s, for the milestones' times (a milestone
    # scheduled from the rounded figure fell due up to 0.05 s before the breach, found the time left
    # rounded to 0 and none below it, and the breach was never re-assessed). Not part of the record.
    soonest: float | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "customers_down": self.customers_down,
            "customers_breached": self.customers_breached,
            "seconds_to_breach": self.seconds_to_breach,
            "tier_breaching_first": self.tier_breaching_first,
            "urgency": self.urgency,
            "points": self.points,
        }
