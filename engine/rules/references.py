"""Names in rulesets that the topology does not have: an element, site or region under maintenance, a
customer, tier or service type a priority override waits for, a KPI target or service type.

Such a rule is valid (the ruleset may have been written for another inventory, or ahead of it) but
can never apply to the name, so ``engine rules check --topology`` refuses it and the daemon warns
about it at start and reload (an inventory change must not block a reload). Alarm matches
(``element_type``, ``site``, ``region``, ``ne_id`` conditions, ``defaults.scope``) are not checked:
a generic ruleset legitimately names element types or sites a given network lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.errors import RulesetError
from engine.model.topology import Topology
from engine.rules.schema import KpiThreshold, Maintenance, PriorityOverride, Rule, Ruleset


class UnknownReference(RulesetError):
    """A name a rule gives that the topology lacks. ``kind`` is what it should name (``element``,
    ``site``, ``region``, ``customer``, ``tier``, ``service type``), ``field`` the rule's field
    (``maintenance.scope.elements``), ``value`` the name."""

    def __init__(
        self,
        ruleset: Ruleset,
        index: int,
        *,
        path: tuple[str, ...],
        position: int,
        kind: str,
        value: str,
        known: str,
    ) -> None:
        self.kind = kind
        self.value = value
        self.field = ".".join(path)
        hint = f" (known: {known})" if known else ""
        super().__init__(
            ruleset.source,
            f"rules[{index}].{self.field}",
            f"unknown {kind} {value!r}{hint}",
            # the list item's line; a field given as one name has no item and falls back to its own
            line=ruleset.line(("rules", index, *path, position)),
            rule=ruleset.rules[index].name,
        )


def _named(rule: Rule) -> list[tuple[tuple[str, ...], tuple[str, ...], str]]:
    """``(field path, names, kind)`` of every name in ``rule`` that the topology must have."""
    spec = rule.spec
    if isinstance(spec, Maintenance):
        scope = ("maintenance", "scope")
        return [
            ((*scope, "elements"), spec.scope.elements, "element"),
            ((*scope, "sites"), spec.scope.sites, "site"),
            ((*scope, "regions"), spec.scope.regions, "region"),
            ((*scope, "services"), spec.scope.services, "service type"),
        ]
    if isinstance(spec, PriorityOverride):
        when = ("priority", "when")
        return [
            ((*when, "customers"), spec.when.customers, "customer"),
            ((*when, "tiers"), spec.when.tiers, "tier"),
            ((*when, "services"), spec.when.services, "service type"),
        ]
    if isinstance(spec, KpiThreshold):
        scope = ("kpi_threshold", "scope")
        return [
            ((*scope, "target"), spec.scope.target, "element"),
            ((*scope, "service_type"), spec.scope.service_type, "service type"),
        ]
    return []


def unknown_references(rulesets: Sequence[Ruleset], topology: Topology) -> list[UnknownReference]:
    """Every name in ``rulesets`` that ``topology`` lacks, in ruleset, rule and field order."""
    sites = {e.site for e in topology.elements.values() if e.site is not None}
    regions = {e.region for e in topology.elements.values() if e.region is not None}
    lookups: dict[str, tuple[Callable[[str], bool], str]] = {  # kind -> (exists, the known names)
        "element": (topology.__contains__, ""),
        "site": (sites.__contains__, ""),
        "region": (regions.__contains__, ""),
        "customer": (topology.has_customer, ""),
        "tier": (topology.tiers.__contains__, ", ".join(sorted(topology.tiers)) or "none"),
        "service type": (
            topology.service_types.__contains__,
            ", ".join(sorted(topology.service_types)) or "none",
        ),
    }
    out: list[UnknownReference] = []
    for rs in rulesets:
        for index, rule in enumerate(rs.rules):
            for path, names, kind in _named(rule):
                exists, known = lookups[kind]
                out.extend(
                    UnknownReference(
                        rs, index, path=path, position=position, kind=kind, value=name, known=known
                    )
                    for position, name in enumerate(names)
                    if not exists(name)
                )
    return out
