"""The ``maintenance`` form: planned work windows by element, site, region or service.

During a window, no incident opens (nor is notified) for a root alarm in scope: its incident stays
pending until the window ends. At the end, an incident whose root is still active is opened and
notified (with the window named in its explanation); one whose root cleared inside the window is
dropped silently. An incident that was open before the window sends no ``updated`` while its root
is covered, one at the window's end if anything changed (``IncidentBook._muted``). Maintenance
never suppresses a resolution: it resolves when due. A ``services`` scope covers the service types'
platform elements (not the shared transport under them).
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.rules.compiler import CompiledRule
from engine.rules.schema import Maintenance
from engine.topology import Topology


class Calendar:
    def __init__(self, rules: Sequence[CompiledRule], topology: Topology) -> None:
        self._rules = [r for r in rules if r.form == "maintenance"]
        self._topology = topology
        self._covers: dict[tuple[str, str], bool] = {}

    def __bool__(self) -> bool:
        return bool(self._rules)

    def covering(self, ne_id: str, now: float) -> tuple[str, float] | None:
        """The first rule whose window is open now and whose scope covers ``ne_id``, with the window end."""
        for rule in self._rules:
            spec = rule.rule.maintenance
            assert isinstance(spec, Maintenance)
            if not self._in_scope(rule, spec, ne_id):
                continue
            window = spec.schedule.window_at(now)
            if window is not None:
                return rule.qualified, window[1]
        return None

    def _in_scope(self, rule: CompiledRule, spec: Maintenance, ne_id: str) -> bool:
        q = rule.qualified
        hit = self._covers.get((q, ne_id))
        if hit is None:
            sc = spec.scope
            el = self._topology.element(ne_id)
            hit = rule.in_scope(self._topology, ne_id) and (
                ne_id in sc.elements
                or (el.site is not None and el.site in sc.sites)
                or (el.region is not None and el.region in sc.regions)
                or bool(set(sc.services) & self._topology.platform_services(ne_id))
            )
            self._covers[(q, ne_id)] = hit
        return hit

    def windows(self, now: float) -> list[tuple[str, str, float, float]]:
        """Open windows now: (rule, schedule description, start, end)."""
        out = []
        for rule in self._rules:
            spec = rule.rule.maintenance
            assert isinstance(spec, Maintenance)
            w = spec.schedule.window_at(now)
            if w is not None:
                out.append((rule.qualified, spec.schedule.describe(), w[0], w[1]))
        return out
