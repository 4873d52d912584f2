"""The priority model: a score 0–100 and a priority 1 (highest) … 5, with the breakdown.

    score = 100 × ( w_state       × S
                  + w_customers   × S × C
                  + w_criticality × K
                  + w_severity    × V )

* S, state factor: outage 1.0, degraded 0.6, at_risk 0.3 (configurable, must keep that order).
* C, customer component: log10(1 + U) / log10(1 + U_ref), capped at 1, where
  U = Σ over affected customers of their tier weight (platinum 8, gold 4, silver 2, bronze 1).
  The log makes the first customers count most; U_ref (``reference_impact``, 10,000) saturates it.
* K, criticality: the highest criticality (1–5) of the affected service types, divided by 5; 0 if none.
* V, severity factor of the worst active alarm of the incident.

Weights are non-negative and sum to 1, and every component is a non-decreasing function of what it
measures, so more customers, higher tiers, a worse state or a worse severity never lower the score.
Priority bands (configurable): P1 ≥ 80, P2 ≥ 60, P3 ≥ 40, P4 ≥ 20, else P5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.core.settings import PrioritySettings


@dataclass(frozen=True, slots=True)
class PriorityInput:
    state: str  # outage | degraded | at_risk
    customers_by_tier: Mapping[str, int]
    tier_weights: Mapping[str, float]
    max_criticality: int  # 0 when no service is affected
    severity: str  # worst active severity


@dataclass(frozen=True, slots=True)
class Priority:
    priority: int
    score: float
    breakdown: Mapping[str, Any]


def assess(inp: PriorityInput, settings: PrioritySettings) -> Priority:
    w = settings.weights
    s = settings.state_factor[inp.state]
    # ``Any``, not ``float``: over no customers ``sum`` is the int 0, written "0" in the breakdown; typed
    # float, the core compiled by mypyc (``engine.compiled``) would hold a C double and write "0.0"
    weighted: Any = sum(inp.tier_weights.get(tier, 1.0) * n for tier, n in inp.customers_by_tier.items())
    c = min(1.0, math.log10(1.0 + weighted) / math.log10(1.0 + settings.reference_impact))
    k = max(0, min(5, inp.max_criticality)) / 5.0
    v = settings.severity_factor.get(inp.severity, 0.0)
    parts = {
        "state": 100.0 * w["state"] * s,
        "customers": 100.0 * w["customers"] * s * c,
        "criticality": 100.0 * w["criticality"] * k,
        "severity": 100.0 * w["severity"] * v,
    }
    score = round(min(100.0, sum(parts.values())), 1)
    priority = 5
    for i, threshold in enumerate(settings.bands):
        if score >= threshold:
            priority = i + 1
            break
    breakdown = {
        "state": {"value": inp.state, "factor": s, "points": round(parts["state"], 2)},
        "customers": {
            "weighted": round(weighted, 2),
            "factor": round(c, 4),
            "points": round(parts["customers"], 2),
        },
        "criticality": {"value": inp.max_criticality, "points": round(parts["criticality"], 2)},
        "severity": {"value": inp.severity, "factor": v, "points": round(parts["severity"], 2)},
    }
    return Priority(priority, score, breakdown)


def add_points(
    p: Priority, name: str, points: float, detail: Mapping[str, Any], settings: PrioritySettings
) -> Priority:
    """A score component outside the weighted sum (SLA urgency): points added, capped at 100, and the
    priority band recomputed. The breakdown names it."""
    score = round(min(100.0, p.score + points), 1)
    priority = next((i + 1 for i, threshold in enumerate(settings.bands) if score >= threshold), 5)
    breakdown = {**p.breakdown, name: {**detail, "points": round(points, 2)}}
    return Priority(priority, score, breakdown)


def explain(p: Priority) -> str:
    b = p.breakdown
    return (
        f"priority P{p.priority} (score {p.score}): state {b['state']['value']} {b['state']['points']} pts, "
        f"customers (tier-weighted {b['customers']['weighted']}) {b['customers']['points']} pts, "
        f"service criticality {b['criticality']['value']} {b['criticality']['points']} pts, "
        f"severity {b['severity']['value']} {b['severity']['points']} pts"
        + (f", SLA urgency {b['sla']['points']} pts" if "sla" in b else "")
    )
