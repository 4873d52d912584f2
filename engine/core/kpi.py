"""KPI samples: the latest value of every metric per measured element and per probe.

This is the state KPI thresholds and KQIs are evaluated from. The store is bounded by what exists
(elements × metrics, probes), not by the sample rate; a sample older than the one held is counted
as late and does not replace it.

Kept per target: for each metric, the row (``SampleRow``) of the sample that carried its latest
value (value, time, probe, service and customer are read from it when asked), and the newest time
held. A sample no older than everything held for its target (the usual case: probes report in
order) takes over all its metrics in one dictionary update, without a step per metric in Python; an
older one is compared metric by metric. A batch in time order and no older than any sample seen
before (a probe's usual batch) updates the probes' and the targets' times in one call each, and,
when every target of it is held already, makes the same per-sample updates in one ``map`` (C), not
a Python step per sample.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from engine.model.messages import KpiSample, SampleRow, sample_row

_TIME = itemgetter("time")
_TARGET = itemgetter("target")
_PROBE = itemgetter("probe_id")
_METRICS = itemgetter("metrics")


@dataclass(frozen=True, slots=True)
class Reading:
    value: float
    time: float
    probe_id: str
    service: str | None
    customer: str | None

    def fields(self) -> tuple[float, float, str, str | None, str | None]:
        return (self.value, self.time, self.probe_id, self.service, self.customer)


class KpiStore:
    def __init__(self) -> None:
        self._latest: dict[str, dict[str, SampleRow]] = {}  # target -> metric -> the row it came in
        self._newest: dict[str, float] = {}  # target -> the newest time held for it
        self._probes: dict[str, float] = {}  # probe id -> last sample time
        self._seen = float("-inf")  # the newest time of any sample observed (held or late)
        self.samples = 0
        self.late = 0

    def observe(self, sample: KpiSample) -> None:
        self.observe_many((sample_row(sample),))

    def observe_many(self, rows: Sequence[SampleRow]) -> None:
        """The samples of one message, in order (the same as ``observe`` for each)."""
        if not rows:
            return
        times = list(map(_TIME, rows))
        if times[0] >= self._seen and (len(times) == 1 or times == sorted(times)):
            self._in_order(rows, times)
        else:
            self._one_by_one(rows)
            self._seen = max(self._seen, *times)
        self.samples += len(rows)

    def _in_order(self, rows: Sequence[SampleRow], times: list[float]) -> None:
        """A batch in time order, none older than anything seen: every sample is the newest of its
        probe and of its target when it comes, so the last time of each wins (as ``_one_by_one``
        would set them) and every metric is taken over."""
        latest = self._latest
        self._probes.update(zip(map(_PROBE, rows), times, strict=True))
        targets = list(map(_TARGET, rows))
        self._newest.update(zip(targets, times, strict=True))
        held: list[Any] = list(map(latest.get, targets))  # None for a target not held
        if None in held:  # a target met for the first time: its mapping is made by its first sample
            for target, metrics, row in zip(targets, map(_METRICS, rows), rows, strict=True):
                mine = latest.get(target)
                if mine is None:
                    latest[target] = dict.fromkeys(metrics, row)
                else:
                    mine |= dict.fromkeys(metrics, row)
        else:  # every target held already (the steady state): the same updates, in order, in C
            deque(map(dict.update, held, map(dict.fromkeys, map(_METRICS, rows), rows)), maxlen=0)
        self._seen = times[-1]

    def _one_by_one(self, rows: Sequence[SampleRow]) -> None:
        probes, newest, latest = self._probes, self._newest, self._latest
        for row in rows:
            t, probe, target = row["time"], row["probe_id"], row["target"]
            seen = probes.get(probe)
            if seen is None or t > seen:
                probes[probe] = t
            held = newest.get(target)
            if held is None:
                latest[target] = dict.fromkeys(row["metrics"], row)
                newest[target] = t
            elif t >= held:  # nothing held for this target is newer: no metric is late
                latest[target].update(dict.fromkeys(row["metrics"], row))
                newest[target] = t
            else:
                self._older(latest[target], row)

    def _older(self, held: dict[str, SampleRow], row: SampleRow) -> None:
        """A sample older than the newest held for its target: metric by metric."""
        t = row["time"]
        for metric in row["metrics"]:
            had = held.get(metric)
            if had is not None and had["time"] > t:
                self.late += 1
            else:
                held[metric] = row

    def latest(self, target: str) -> Mapping[str, Reading]:
        return {metric: _reading(metric, r) for metric, r in self._latest.get(target, {}).items()}

    def probes(self) -> Mapping[str, float]:
        return dict(self._probes)

    def __len__(self) -> int:
        return sum(len(v) for v in self._latest.values())

    def dump(self) -> dict[str, Any]:
        return {
            "latest": [
                [target, metric, *_reading(metric, r).fields()]
                for target, held in self._latest.items()
                for metric, r in held.items()
            ],
            "probes": dict(self._probes),
            "counters": [self.samples, self.late],
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self._latest, self._newest = {}, {}
        for target, metric, value, t, probe, service, customer in state["latest"]:
            # one row per reading (several readings of one sample were one row before)
            row: SampleRow = {
                "probe_id": probe,
                "target": target,
                "service": service,
                "customer": customer,
                "time": t,
                "metrics": {metric: value},
            }
            self._latest.setdefault(target, {})[metric] = row
            self._newest[target] = max(self._newest.get(target, t), t)
        self._probes = dict(state["probes"])
        self._seen = max((*self._probes.values(), *self._newest.values()), default=float("-inf"))
        self.samples, self.late = state["counters"]


def _reading(metric: str, r: SampleRow) -> Reading:
    return Reading(r["metrics"][metric], r["time"], r["probe_id"], r.get("service"), r.get("customer"))
