"""KPI samples: the latest value of every metric per measured element and per probe.

This is the state KPI thresholds and KQIs are evaluated from. The store is bounded by what exists
(elements × metrics, probes), not by the sample rate; a sample older than the one held is counted
as late and does not replace it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.model.messages import KpiSample


@dataclass(frozen=True, slots=True)
class Reading:
    value: float
    time: float
    probe_id: str
    service: str | None
    customer: str | None


class KpiStore:
    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], Reading] = {}  # (target, metric) -> reading
        self._probes: dict[str, float] = {}  # probe id -> last sample time
        self.samples = 0
        self.late = 0

    def observe(self, sample: KpiSample) -> None:
        self.samples += 1
        self._probes[sample.probe_id] = max(self._probes.get(sample.probe_id, sample.time), sample.time)
        for metric, value in sample.metrics.items():
            key = (sample.target, metric)
            held = self._latest.get(key)
            if held is not None and held.time > sample.time:
                self.late += 1
                continue
            self._latest[key] = Reading(value, sample.time, sample.probe_id, sample.service, sample.customer)

    def latest(self, target: str) -> Mapping[str, Reading]:
        return {metric: r for (t, metric), r in self._latest.items() if t == target}

    def probes(self) -> Mapping[str, float]:
        return dict(self._probes)

    def __len__(self) -> int:
        return len(self._latest)

    def dump(self) -> dict[str, Any]:
        return {
            "latest": [
                [t, m, r.value, r.time, r.probe_id, r.service, r.customer]
                for (t, m), r in self._latest.items()
            ],
            "probes": dict(self._probes),
            "counters": [self.samples, self.late],
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self._latest = {(t, m): Reading(v, tm, p, s, c) for t, m, v, tm, p, s, c in state["latest"]}
        self._probes = dict(state["probes"])
        self.samples, self.late = state["counters"]
