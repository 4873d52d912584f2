"""The ``maintenance`` form: planned work windows by element, site, region or service.

During a window, no incident opens (nor is notified) for a root alarm in scope: its incident stays
pending until the window ends. At the end, an incident whose root is still active is opened and
notified (with the window named in its explanation); one whose root cleared inside the window is
dropped silently. An incident that was open before the window sends no ``updated`` while its root
is covered, one at the window's end if anything changed (``IncidentBook._muted``). Maintenance
never suppresses a resolution: it resolves when due. A ``services`` scope covers the service types'
platform elements (not the shared transport under them).

Besides the rulesets' windows, the calendar holds the *silences* added at run time
(``engine.core.forms.silences``, Alertmanager's ``POST /api/v2/silences``): a silence active now covers
the elements its matchers match, exactly as a maintenance rule's window does, named by its id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.core.forms.base import BaseForm, FormContext, Seen, Verdict
from engine.core.forms.silences import ElementLabels, Silences
from engine.model.timeutil import format_time
from engine.rules.compiler import CompiledRule
from engine.rules.schema import Maintenance


class Calendar(BaseForm):
    """Maintenance windows and silences. It observes nothing: the incident book asks it
    (``covering``) whether a root is under maintenance; its state is the silences."""

    name = "maintenance"
    rule_form: str | None = "maintenance"

    def __init__(self, ctx: FormContext) -> None:
        self._rules = ctx.rules_of("maintenance")
        self._topology = ctx.topology
        self._covers: dict[tuple[str, str], bool] = {}
        self.silences = Silences()

    def __bool__(self) -> bool:
        return bool(self._rules) or bool(self.silences)

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
        if self.silences and (labels := self.labels(ne_id)) is not None:
            for silence in self.silences.covering(labels, now):
                return silence.id, silence.ends_at
        return None

    def covering_all(self, ne_id: str, now: float) -> list[str]:
        """Every maintenance rule and silence covering ``ne_id`` now, by name (Alertmanager's
        ``silencedBy``)."""
        out = []
        for rule in self._rules:
            spec = rule.rule.maintenance
            assert isinstance(spec, Maintenance)
            if self._in_scope(rule, spec, ne_id) and spec.schedule.window_at(now) is not None:
                out.append(rule.qualified)
        if self.silences and (labels := self.labels(ne_id)) is not None:
            out.extend(s.id for s in self.silences.covering(labels, now))
        return out

    def labels(self, ne_id: str) -> ElementLabels | None:
        """The labels a silence matches on the element; ``None`` for an element not in the topology."""
        if ne_id not in self._topology:
            return None
        el = self._topology.element(ne_id)
        return ElementLabels(ne_id, el.site, el.region, self._topology.platform_services(ne_id))

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

    # -- the form --------------------------------------------------------------------------------
    def dump(self) -> list[dict[str, Any]]:
        return self.silences.dump()

    def load(self, state: Iterable[Mapping[str, Any]]) -> None:
        self.silences.load(state)

    def explain(self, rule: CompiledRule, seen: Seen) -> Verdict:
        """``matched``: the alarm's element is in the rule's scope (a window matches elements)."""
        a, inc = seen.alarm, seen.inc
        spec = rule.rule.maintenance
        assert isinstance(spec, Maintenance)
        sc = spec.scope
        el = self._topology.element(a.ne_id)
        in_scope = (
            a.ne_id in sc.elements
            or (el.site is not None and el.site in sc.sites)
            or (el.region is not None and el.region in sc.regions)
            or bool(set(sc.services) & self._topology.platform_services(a.ne_id))
        )
        if inc is not None and inc.maintenance == rule.qualified:
            until = format_time(inc.hold_until) if inc.hold_until is not None else "its end"
            return Verdict(True, f"holds back incident {inc.id} until {until}", matched=True)
        if not in_scope:
            return Verdict(False, f"{a.ne_id} is not in its scope", matched=False)
        window = spec.schedule.window_at(seen.clock)
        if window is not None:
            now = f"a window is open now until {format_time(window[1])}"
        else:
            now = f"no window is open now ({spec.schedule.describe()})"
        return Verdict(False, f"{a.ne_id} is in its scope; {now}", matched=True)

    def transient(self, seen: Seen) -> str | None:
        """An alarm raised and cleared inside a window: its incident was dropped silently."""
        cleared = seen.alarm.cleared_time
        covering = self.covering(seen.alarm.ne_id, cleared) if self and cleared is not None else None
        if covering is None:
            return None
        return (
            f"raised and cleared inside maintenance window {covering[0]}: its incident was dropped "
            "without a notification"
        )
