"""Each element's own health, from its active alarms: what impact and priority start from.

An alarm with an ``outage`` or ``degraded`` effect makes its element down or degraded; an alarm
about one service on the element (the engine's per-service KQI alarms, ``service_scope``) degrades
that service through the element only. ``HealthView`` propagates these levels through the topology
(redundancy included); ``live`` keeps the network's effective health up to date as own levels change,
with the impacts computed from it. The incident book and service quality read the two mappings and
``live`` by reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.core.alarms import ActiveAlarm
from engine.core.assessment import EFFECT_HEALTH
from engine.core.forms.synthetic import QUALITY_SOURCES, raised_by, service_scope
from engine.core.impact import Health, HealthView, LiveHealth, with_service_levels
from engine.model.topology import Topology

_OK = Health.OK  # (an enum member read from its class costs a descriptor call: twice per update)


class ElementHealth:
    def __init__(self, topology: Topology, alarm: Callable[[str], ActiveAlarm | None]) -> None:
        self._topology = topology
        self._alarm = alarm
        self.own: dict[str, Health] = {}  # element -> its own health (elements at OK are absent)
        # service type -> element -> health, from alarms about one service on the element
        self.by_service: dict[str, dict[str, Health]] = {}
        self.by_element: dict[str, set[str]] = {}  # element -> keys of the alarms on it
        self.live = LiveHealth(topology, self.own)  # effective health from ``own``, kept up to date

    def index(self, alarm: ActiveAlarm) -> None:
        keys = self.by_element.get(alarm.ne_id)
        if keys is None:  # (not ``setdefault``: a set made per raise for nothing)
            self.by_element[alarm.ne_id] = {alarm.key}
        else:
            keys.add(alarm.key)

    def update(self, ne_id: str) -> tuple[bool, bool, bool]:
        """Recompute an element's own health from its alarms: (an element's effective level or a
        service level moved, its own level changed, anything changed). Its own level may change and
        no effective level move (an element below one as unhealthy or worse): no impact changes then."""
        worst = _OK
        per_service: dict[str, Health] | None = None  # (made for an alarm about one service only)
        keys = self.by_element.get(ne_id)
        if keys:
            get = self._alarm
            gone = None  # keys of alarms the table no longer holds: dropped after the loop
            for key in keys:
                a = get(key)
                if a is None:
                    gone = [key] if gone is None else [*gone, key]
                    continue
                if a.active and (level := EFFECT_HEALTH.get(a.effect)) is not None:
                    # ``service_scope``, asked only of a key the engine's rules raised
                    service = service_scope(key) if key.startswith("rule:") else None
                    if service is None:
                        if level > worst:  # noqa: PLR1730 (``max``, without its call)
                            worst = level
                    elif per_service is None:
                        per_service = {service: level}
                    else:
                        per_service[service] = max(per_service.get(service, _OK), level)
            if gone is not None:
                keys.difference_update(gone)
        before = self.own.get(ne_id, _OK)
        moved = own = worst != before
        if own:
            live = self.live
            live.changing(ne_id)  # (another element's change carried below it first, if pending)
            if worst == _OK:
                del self.own[ne_id]
            else:
                self.own[ne_id] = worst
            # its level now; those below it when next read (``LiveHealth.change``): a raise and its
            # clear in a row (the usual pair) move nothing below it
            moved = live.change(ne_id) > 0
        if per_service is None:
            if not self.by_service:  # no alarm about one service anywhere
                return moved, own, own
            per_service = {}
        services_before = {s: m[ne_id] for s, m in self.by_service.items() if ne_id in m}
        for service in set(services_before) | set(per_service):
            levels = self.by_service.setdefault(service, {})
            if service in per_service:
                levels[ne_id] = per_service[service]
            else:
                levels.pop(ne_id, None)
            if not levels:
                del self.by_service[service]
        services = services_before != per_service
        return moved or services, own, own or services

    def alarmed(self) -> set[str]:
        """Elements with an active alarm that has an effect, other than service quality's own."""
        out = set()
        for ne, keys in self.by_element.items():
            for key in keys:
                a = self._alarm(key)
                if (
                    a is not None
                    and a.active
                    and a.effect != "none"
                    and raised_by(key) not in QUALITY_SOURCES
                ):
                    out.add(ne)
                    break
        return out

    def view(self, service: str | None = None) -> HealthView:
        """Effective health of the network, for one service type when given: the element-level
        alarms plus those about that service only (a voice KQI alarm degrades voice, not internet).
        Without a service (or none with levels of its own) it is ``live``, which follows later changes;
        otherwise a snapshot."""
        if service is None or not self.by_service.get(service):
            return self.live
        return HealthView(self._topology, with_service_levels(self.own, self.by_service, (service,)))

    def dump(self) -> dict[str, Any]:
        return {
            "own": {ne: int(h) for ne, h in self.own.items()},
            "own_by_service": {s: {ne: int(h) for ne, h in m.items()} for s, m in self.by_service.items()},
            "by_element": {ne: sorted(keys) for ne, keys in self.by_element.items()},
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """State on elements the topology no longer has is dropped."""
        topo = self._topology
        self.by_element = {ne: set(keys) for ne, keys in state["by_element"].items() if ne in topo}
        self.own.clear()  # the same mappings: the incident book reads them by reference
        self.own.update({ne: Health(h) for ne, h in state["own"].items() if ne in topo})
        self.live.reset()
        self.by_service.clear()
        for service, levels in state.get("own_by_service", {}).items():
            kept = {ne: Health(h) for ne, h in levels.items() if ne in topo}
            if kept:
                self.by_service[service] = kept
