"""The ``priority`` form: adjust an incident's priority or severity when a condition holds.

Evaluated, in rule order, every time an incident is assessed. ``when`` holds when all its parts
hold: the root alarm matches ``root``; any listed customer is affected (its access element or a
platform element of one of its services is in the incident's impact: at risk, degraded or down);
any customer of a listed tier is affected; any listed service type is affected (with both
``tiers`` and ``services``: some customer of a listed tier has a subscription to a listed service
affected, so a platinum internet customer and a bronze voice customer together are not "platinum
voice"); at least ``min_customers`` customers are affected.
``set`` fixes the priority, ``raise``/``lower`` move it by steps (1 is the highest, 5 the lowest),
``severity`` replaces the severity used for the record. Each applied rule is named in the
incident's ``priority_breakdown.overrides``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from engine.core.forms.base import BaseForm, FormContext, Seen, Verdict
from engine.core.impact import Health, Impact, subscriptions_hit
from engine.core.priority import Priority
from engine.rules.compiler import CompiledRule
from engine.rules.schema import PriorityOverride


class Overrides(BaseForm):
    """Priority overrides. It observes nothing: the incident book applies them (``apply``) each time
    it assesses an incident, with its root's classification."""

    name = "overrides"
    rule_form: str | None = "priority"

    def __init__(self, ctx: FormContext) -> None:
        self._rules = ctx.rules_of("priority")
        self._topology = ctx.topology

    def __bool__(self) -> bool:
        return bool(self._rules)

    def apply(
        self, priority: Priority, severity: str, impact: Impact | None, root_parts: frozenset[str]
    ) -> tuple[Priority, str]:
        applied: list[dict[str, object]] = []
        level = priority.priority
        for rule in self._rules:
            spec = rule.rule.priority
            assert isinstance(spec, PriorityOverride)
            if not self._holds(rule, spec, impact, root_parts):
                continue
            before = level
            if spec.set is not None:
                level = spec.set
            elif spec.raise_ is not None:
                level = max(1, level - spec.raise_)
            elif spec.lower is not None:
                level = min(5, level + spec.lower)
            if spec.severity is not None:
                severity = spec.severity
            applied.append({"rule": rule.qualified, "from": before, "to": level})
        if not applied:
            return priority, severity
        breakdown = {**priority.breakdown, "overrides": applied}
        return replace(priority, priority=level, breakdown=breakdown), severity

    def _holds(
        self, rule: CompiledRule, spec: PriorityOverride, impact: Impact | None, parts: frozenset[str]
    ) -> bool:
        w = spec.when
        if f"{rule.qualified}#root" not in parts:
            return False
        if w.min_customers is not None and (impact is None or impact.customers < w.min_customers):
            return False
        if (w.tiers or w.services) and not self._tiers_and_services(w.tiers, w.services, impact):
            return False
        if not w.customers:
            return True
        if impact is None:
            return False
        bad = {ne for ne, h in impact.elements.items() if h > Health.OK}
        return any(self._hit(c, bad) for c in w.customers)

    def _tiers_and_services(
        self, tiers: Sequence[str], services: Sequence[str], impact: Impact | None
    ) -> bool:
        if impact is None:
            return False
        if tiers and services:  # one subscription must be of a listed tier AND a listed service
            return subscriptions_hit(self._topology, impact.elements, tiers, services)
        if tiers:
            return any(impact.by_tier.get(t, 0) for t in tiers)
        return any(impact.services.get(s, 0) for s in services)

    def _hit(self, customer_id: str, bad: set[str]) -> bool:
        """The customer's access, or a platform element of one of its services, is affected."""
        if not self._topology.has_customer(customer_id):
            return False
        c = self._topology.customer(customer_id)
        if c.access in bad:
            return True
        return any(p in bad for s in c.services for p in self._topology.service_types[s].platform)

    def explain(self, rule: CompiledRule, seen: Seen) -> Verdict:
        a, inc = seen.alarm, seen.inc
        q = rule.qualified
        spec = rule.rule.priority
        assert isinstance(spec, PriorityOverride)
        if f"{q}#root" not in seen.fired:
            return Verdict(False, "its root condition did not match")
        if inc is None or inc.root != a.key:
            return Verdict(
                False,
                "its root condition matched, but this alarm is not the root of an incident (overrides "
                "apply to an incident's root)",
            )
        applied = [
            o for o in (inc.priority.breakdown.get("overrides", []) if inc.priority else []) if o["rule"] == q
        ]
        if applied:
            o = applied[0]
            severity = f", severity {spec.severity}" if spec.severity else ""
            return Verdict(True, f"applied to incident {inc.id}: P{o['from']} → P{o['to']}{severity}")
        if f"{q}#root" not in seen.classified:
            return Verdict(
                False,
                "its root condition matches now, but the engine's classification of this alarm (made "
                "when it was last raised or changed) did not include it",
            )
        return Verdict(
            False, f"its root condition matched, but the rest of `when` did not hold ({_when(spec)})"
        )


def _when(spec: PriorityOverride) -> str:
    w = spec.when
    said = []
    if w.min_customers is not None:
        said.append(f"at least {w.min_customers} customer(s) affected")
    if w.tiers:
        said.append("a customer of tier " + "/".join(w.tiers) + " affected")
    if w.services:
        said.append("service " + "/".join(w.services) + " affected")
    if w.customers:
        said.append("customer " + "/".join(w.customers) + " affected")
    return "; ".join(said) or "nothing more"
