"""KPI samples: the latest value of every metric per measured element and per probe.

This is the state KPI thresholds and KQIs are evaluated from. The store is bounded by what exists
(elements × metrics, probes), not by the sample rate; a sample older than the one held is counted
as late and does not replace it.

Kept per target: for each metric, the sample that carried its latest value (value, time, probe,
service and customer are read from it when asked), and the newest time held. A sample no older than
everything held for its target (the usual case: probes report in order) takes over all its metrics
in one dictionary update, without a step per metric in Python; an older one is compared metric by
metric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
        self._latest: dict[str, dict[str, KpiSample]] = {}  # target -> metric -> the sample it came in
        self._newest: dict[str, float] = {}  # target -> the newest time held for it
        self._probes: dict[str, float] = {}  # probe id -> last sample time
        self.samples = 0
        self.late = 0

    def observe(self, sample: KpiSample) -> None:
        self.observe_many((sample,))

    def observe_many(self, samples: Sequence[KpiSample]) -> None:
        """The samples of one message, in order (the same as ``observe`` for each)."""
        probes, newest, latest = self._probes, self._newest, self._latest
        for sample in samples:
            t, probe, target = sample.time, sample.probe_id, sample.target
            seen = probes.get(probe)
            if seen is None or t > seen:
                probes[probe] = t
            held = newest.get(target)
            if held is None:
                latest[target] = dict.fromkeys(sample.metrics, sample)
                newest[target] = t
            elif t >= held:  # nothing held for this target is newer: no metric is late
                latest[target].update(dict.fromkeys(sample.metrics, sample))
                newest[target] = t
            else:
                self._older(latest[target], sample)
        self.samples += len(samples)

    def _older(self, held: dict[str, KpiSample], sample: KpiSample) -> None:
        """A sample older than the newest held for its target: metric by metric."""
        t = sample.time
        for metric in sample.metrics:
            had = held.get(metric)
            if had is not None and had.time > t:
                self.late += 1
            else:
                held[metric] = sample

    def latest(self, target: str) -> Mapping[str, Reading]:
        return {metric: _reading(metric, s) for metric, s in self._latest.get(target, {}).items()}

    def probes(self) -> Mapping[str, float]:
        return dict(self._probes)

    def __len__(self) -> int:
        return sum(len(v) for v in self._latest.values())

    def dump(self) -> dict[str, Any]:
        return {
            "latest": [
                [target, metric, s.metrics[metric], s.time, s.probe_id, s.service, s.customer]
                for target, held in self._latest.items()
                for metric, s in held.items()
            ],
            "probes": dict(self._probes),
            "counters": [self.samples, self.late],
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self._latest, self._newest = {}, {}
        for target, metric, value, t, probe, service, customer in state["latest"]:
            # one sample per reading (several readings of one sample were one object before)
            sample = KpiSample.model_construct(
                probe_id=probe,
                target=target,
                service=service,
                customer=customer,
                time=t,
                metrics={metric: value},
            )
            self._latest.setdefault(target, {})[metric] = sample
            self._newest[target] = max(self._newest.get(target, t), t)
        self._probes = dict(state["probes"])
        self.samples, self.late = state["counters"]


def _reading(metric: str, s: KpiSample) -> Reading:
    return Reading(s.metrics[metric], s.time, s.probe_id, s.service, s.customer)
