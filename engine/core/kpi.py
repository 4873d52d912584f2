"""KPI samples: the latest value of every metric per measured element and per probe.

This is the state KPI thresholds and KQIs are evaluated from. The store is bounded by what exists
(elements × metrics, probes), not by the sample rate; a sample older than the one held is counted
as late and does not replace it.

Kept per target: the metrics' values and, shared by the metrics of one sample, when and by whom
they were measured, plus the newest time held. A sample no older than everything held for its target
(the usual case: probes report in order) replaces its metrics with two dictionary updates, without a
step per metric in Python; an older one is compared metric by metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


_Meta = tuple[float, str, str | None, str | None]  # time, probe id, service, customer


class KpiStore:
    def __init__(self) -> None:
        self._values: dict[str, dict[str, float]] = {}  # target -> metric -> value
        self._meta: dict[str, dict[str, _Meta]] = {}  # target -> metric -> when and by whom
        self._newest: dict[str, float] = {}  # target -> the newest time held for it
        self._probes: dict[str, float] = {}  # probe id -> last sample time
        self.samples = 0
        self.late = 0

    def observe(self, sample: KpiSample) -> None:
        self.observe_many((sample,))

    def observe_many(self, samples: Iterable[KpiSample]) -> None:
        """The samples of one message, in order (the same as ``observe`` for each)."""
        probes, newest, values, metas = self._probes, self._newest, self._values, self._meta
        n = 0
        for sample in samples:
            n += 1
            t, probe, target, metrics = sample.time, sample.probe_id, sample.target, sample.metrics
            seen = probes.get(probe)
            if seen is None or t > seen:
                probes[probe] = t
            meta = (t, probe, sample.service, sample.customer)
            held = newest.get(target)
            if held is None:
                values[target] = dict(metrics)
                metas[target] = dict.fromkeys(metrics, meta)
                newest[target] = t
            elif t >= held:  # nothing held for this target is newer: no metric is late
                values[target].update(metrics)
                metas[target].update(dict.fromkeys(metrics, meta))
                newest[target] = t
            else:
                self._older(target, metrics, meta)
        self.samples += n

    def _older(self, target: str, metrics: Mapping[str, float], meta: _Meta) -> None:
        """A sample older than the newest held for its target: metric by metric."""
        values, metas, t = self._values[target], self._meta[target], meta[0]
        for metric, value in metrics.items():
            held = metas.get(metric)
            if held is not None and held[0] > t:
                self.late += 1
                continue
            values[metric] = value
            metas[metric] = meta

    def latest(self, target: str) -> Mapping[str, Reading]:
        values, metas = self._values.get(target, {}), self._meta.get(target, {})
        return {metric: Reading(value, *metas[metric]) for metric, value in values.items()}

    def probes(self) -> Mapping[str, float]:
        return dict(self._probes)

    def __len__(self) -> int:
        return sum(len(v) for v in self._values.values())

    def dump(self) -> dict[str, Any]:
        return {
            "latest": [
                [target, metric, value, *self._meta[target][metric]]
                for target, values in self._values.items()
                for metric, value in values.items()
            ],
            "probes": dict(self._probes),
            "counters": [self.samples, self.late],
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self._values, self._meta, self._newest = {}, {}, {}
        for t, m, v, tm, p, s, c in state["latest"]:
            self._values.setdefault(t, {})[m] = v
            self._meta.setdefault(t, {})[m] = (tm, p, s, c)
            self._newest[t] = max(self._newest.get(t, tm), tm)
        self._probes = dict(state["probes"])
        self.samples, self.late = state["counters"]
