"""Customer experience and SLAs: the Customer Experience Index, per-tier SLAs, breach tracking. Pure.

No clock reads, no I/O: every time (``now``) is epoch seconds passed in by the caller, and every result
is a deterministic function of the calls made. See ``docs/sla.md`` for the formulas, the defaults and a
worked example.

* **CEI** (0–100 per customer): each KQI scores by its status (met 100, at_risk 60, violated 0, unknown
  excluded); a service is the weighted mean of its KQI scores (100 when none is known), capped by the
  service's health (DOWN → 0, DEGRADED → at most 50); a customer is the weighted mean of its services
  (service weights: voice 1.0, internet 1.0, iptv 0.7, others 1.0). Bands: good ≥ 80, fair ≥ 60,
  poor ≥ 40, bad below.
* **SLAs** per tier (``SlaSettings.tiers``): availability target over a sliding period, time to
  restore, optional MOS floor. ``SlaTracker`` accumulates each customer's downtime as intervals,
  records breaches (exact instants, once per episode) and says how long until the next one.
* ``breach_urgency`` maps the time to a breach to 0..1, a priority component for the integrator.

Every default here is an operator convention, not a standard value (ITU-T E.800 defines the terms
availability and retainability, not these targets).
The package: ``index`` (the CEI), ``sla`` (SLA terms, urgency, breach and state records),
``tracker`` (``SlaTracker``).
"""

from __future__ import annotations

from engine.core.experience.index import (
    Band,
    Experience,
    ExperienceSettings,
    KqiScore,
    KqiStatus,
    customer_down,
    customer_experience,
    experience_band,
    service_experience,
)
from engine.core.experience.sla import (
    Breach,
    BreachKind,
    SlaFacts,
    SlaSettings,
    SlaState,
    SlaTier,
    UrgencySettings,
    breach_urgency,
)
from engine.core.experience.tracker import SlaTracker

__all__ = [
    "Band",
    "Breach",
    "BreachKind",
    "Experience",
    "ExperienceSettings",
    "KqiScore",
    "KqiStatus",
    "SlaFacts",
    "SlaSettings",
    "SlaState",
    "SlaTier",
    "SlaTracker",
    "UrgencySettings",
    "breach_urgency",
    "customer_down",
    "customer_experience",
    "experience_band",
    "service_experience",
]
