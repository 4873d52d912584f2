"""What-if for planned work: take elements down on paper and say who loses service, who loses
redundancy, and which SLAs breach if the work lasts N hours. Pure: topology and settings in.

The elements given are DOWN; health propagates as for a real outage (``engine.core.impact``): an element
that needs one of them is down, one that loses a member of a redundancy group is *at risk*. Customers
are counted by the worst level of their services (``compute_impact``). An SLA breach is judged per
tier from the tier's SLA (``quality.sla.tiers``): an outage of the planned length breaches when it is
longer than the tier's time to restore, or than its whole downtime budget for the period (a fresh
period: downtime already spent is not known here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from engine.core.experience import SlaSettings
from engine.core.impact import Health, compute_impact
from engine.errors import ConfigError
from engine.model.timeutil import format_duration, format_time
from engine.model.topology import Topology


def what_if(
    topology: Topology,
    down: Sequence[str],
    *,
    hours: float,
    sla: SlaSettings,
    current: Mapping[str, Health] | None = None,
    as_of: float | None = None,
) -> dict[str, Any]:
    """The report (JSON-ready). Unknown elements raise ``ConfigError`` naming them.

    ``current``: each element's own health now (the live network's alarms): an element already down
    makes its redundant partner's planned work an outage. Only the cone of the planned elements is
    counted (what the work adds, with what is already broken taken into account). ``as_of``: the
    time of that state (epoch seconds), reported.
    """
    unknown = [ne for ne in down if ne not in topology]
    if unknown:
        raise ConfigError("--down", "", f"unknown element(s): {', '.join(unknown)}")
    if not down:
        raise ConfigError("--down", "", "give at least one element")
    if not (hours > 0 and math.isfinite(hours)):
        raise ConfigError("--hours", "", f"must be a number of hours > 0, got {hours}")
    own = {**(current or {}), **dict.fromkeys(down, Health.DOWN)}
    impact = compute_impact(topology, own, down)
    by_state = {name: counts.to_record() for name, counts in impact.by_state.items()}
    lost = impact.by_state.get("outage")
    seconds = hours * 3600.0
    breaches: list[dict[str, Any]] = []
    for tier, customers in sorted((lost.by_tier if lost else {}).items()):
        rule = sla.tiers.get(tier)
        if rule is None or not customers:
            continue
        reasons = []
        if rule.time_to_restore is not None and seconds > rule.time_to_restore:
            reasons.append(f"longer than the time to restore ({format_duration(rule.time_to_restore)})")
        if seconds > rule.budget:
            reasons.append(
                f"longer than the downtime budget ({format_duration(rule.budget)} per "
                f"{format_duration(rule.period)} at {rule.availability:.4%})"
            )
        if reasons:
            breaches.append({"tier": tier, "customers": customers, "reasons": reasons})
    elements_down = sorted(ne for ne, h in impact.elements.items() if h == Health.DOWN)
    at_risk = sorted(ne for ne, h in impact.elements.items() if h == Health.AT_RISK)
    return {
        "down": sorted(down),
        "hours": hours,
        "current_state": current is not None,
        "as_of": None if as_of is None else format_time(as_of),
        "already_down_or_degraded": sorted(ne for ne, h in (current or {}).items() if h >= Health.DEGRADED),
        "elements_down": elements_down,
        "elements_at_risk": at_risk,
        "customers_losing_service": by_state.get("outage", {"customers": 0, "services": {}, "by_tier": {}}),
        "customers_at_risk": by_state.get("at_risk", {"customers": 0, "services": {}, "by_tier": {}}),
        "sla_breaches": breaches,
    }


def _when(report: dict[str, Any]) -> str:
    return f"as of {report['as_of']}" if report.get("as_of") else "now"


def _few(names: Sequence[str], n: int = 10) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more if names else "none"


def render(report: dict[str, Any]) -> str:
    lost, risk = report["customers_losing_service"], report["customers_at_risk"]

    def tiers(by: dict[str, int]) -> str:
        return ", ".join(f"{t} {n}" for t, n in sorted(by.items())) or "-"

    def services(by: dict[str, int]) -> str:
        return ", ".join(f"{s} {n}" for s, n in sorted(by.items())) or "-"

    lines = [
        f"planned: {', '.join(report['down'])} down for {report['hours']:g} h"
        + (
            f" (already down or degraded {_when(report)}: {_few(report['already_down_or_degraded'])})"
            if report["current_state"]
            else " (on paper: current alarms not known)"
        ),
        f"elements down: {len(report['elements_down'])} ({_few(report['elements_down'])})",
        f"elements at risk (redundancy lost): {len(report['elements_at_risk'])} "
        f"({_few(report['elements_at_risk'])})",
        f"customers losing service: {lost['customers']} (by tier: {tiers(lost['by_tier'])}; "
        f"services: {services(lost['services'])})",
        f"customers at risk: {risk['customers']} (by tier: {tiers(risk['by_tier'])})",
    ]
    if report["sla_breaches"]:
        for b in report["sla_breaches"]:
            lines.append(f"SLA breach: {b['tier']}, {b['customers']} customer(s): {'; '.join(b['reasons'])}")
    else:
        lines.append("SLA breaches: none at this length")
    return "\n".join(lines) + "\n"
