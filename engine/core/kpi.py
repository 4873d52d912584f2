"""KPI samples: the latest value of every metric per measured element and per probe.

This is the state KPI thresholds and KQIs are evaluated from. The store is bounded by what exists
(elements × metrics, probes), not by the sample rate; a sample older than the one held is counted
as late and does not replace it.

Kept per target, in ``_held``: the row (``SampleRow``) every held metric of the target came from,
when they all came from one sample (*whole*: the usual case, a probe reporting the same metrics
each time), or else a mapping of each metric to the row of its latest value (*mixed*). Value, time,
probe, service and customer are read from the row when asked. A whole target's metric names are in
``_names`` (one frozenset per distinct set of names, shared); a mixed target's newest time held in
``_newest`` (a whole target's is its row's time). A sample no older than everything held for its
target (the usual case: probes report in order) takes over all its metrics: it becomes the target's
row when it carries every metric held, else the target is mixed and the sample's metrics are taken
over in one dictionary update; an older one is compared metric by metric. A batch in time order, no
older than any sample seen before, whose samples all carry the same metrics and whose targets all
hold exactly those (a probe's steady state) is taken in one ``dict.update`` of targets to rows,
without a step per sample in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from engine.model.messages import KpiSample, SampleColumns, SampleRow, sample_row

_TIME = itemgetter("time")
_TARGET = itemgetter("target")
_PROBE = itemgetter("probe_id")
NAME_SETS_KEPT = 1024  # distinct sets of metric names shared between targets (forgotten when full)


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
        # target -> its row (whole) or metric -> the row it came in (mixed); first seen first
        self._held: dict[str, Any] = {}
        self._names: dict[str, frozenset[str]] = {}  # whole target -> its row's metric names
        self._newest: dict[str, float] = {}  # mixed target -> the newest time held for it
        self._sets: dict[frozenset[str], frozenset[str]] = {}  # one object per set of names met
        self._probes: dict[str, float] = {}  # probe id -> last sample time
        self._seen = float("-inf")  # the newest time of any sample observed (held or late)
        self.samples = 0
        self.late = 0

    def observe(self, sample: KpiSample) -> None:
        self.observe_many((sample_row(sample),))

    def observe_many(
        self,
        rows: Sequence[SampleRow],
        names: frozenset[str] | None = None,
        columns: SampleColumns | None = None,
    ) -> None:
        """The samples of one message, in order (the same as ``observe`` for each). ``names``: the
        metric names every row carries, when known (``Decoded.metric_names``); ``columns``: the
        batch's columns, when the decoder took them (``Decoded.columns``)."""
        if not rows:
            return
        if columns is not None:
            times, targets = columns.times, columns.targets
        else:
            times, targets = list(map(_TIME, rows)), list(map(_TARGET, rows))
        if times[0] >= self._seen and (len(times) == 1 or times == sorted(times)):
            self._in_order(rows, times, targets, names, columns)
            self._seen = times[-1]
        else:
            self._one_by_one(rows)
            self._seen = max(self._seen, *times)
        self.samples += len(rows)

    def _in_order(
        self,
        rows: Sequence[SampleRow],
        times: list[float],
        targets: list[str],
        names: frozenset[str] | None,
        columns: SampleColumns | None,
    ) -> None:
        """A batch in time order, none older than anything seen: every sample is the newest of its
        probe and of its target when it comes, so the last time of each probe wins (as
        ``_one_by_one`` would set it) and every metric is taken over."""
        probes = columns.probes if columns is not None else list(map(_PROBE, rows))
        self._probes.update(zip(probes, times, strict=True))
        if names is not None:
            names = self._sets.get(names, names)
            distinct = columns.distinct if columns is not None else set(targets)
            if set(map(self._names.get, distinct)) == {names}:
                # every target whole, holding exactly these metrics: each sample becomes its
                # target's row (the last of a target's wins), in C
                self._held.update(zip(targets, rows, strict=True))
                return
        take = self._take
        for target, row in zip(targets, rows, strict=True):
            take(target, row)

    def _take(self, target: str, row: SampleRow) -> None:
        """A sample no older than anything held for its target: all its metrics taken over."""
        held, names = self._held, self._names
        metrics = row["metrics"]
        mine = held.get(target)
        if mine is None:
            held[target] = row
            names[target] = self._set(metrics)
        elif target in names:  # whole
            if metrics.keys() >= names[target]:
                held[target] = row
                names[target] = self._set(metrics)
            else:  # some metric held is not in this sample: kept from the row it came in
                mixed = dict.fromkeys(mine["metrics"], mine)
                mixed.update(dict.fromkeys(metrics, row))
                held[target] = mixed
                del names[target]
                self._newest[target] = row["time"]
        elif metrics.keys() >= mine.keys():  # mixed, and this sample carries every metric held
            held[target] = row
            names[target] = self._set(metrics)
            del self._newest[target]
        else:
            mine.update(dict.fromkeys(metrics, row))
            self._newest[target] = row["time"]

    def _set(self, metrics: Mapping[str, float]) -> frozenset[str]:
        """The shared frozenset of these metric names (a new one when the set is new)."""
        key = frozenset(metrics)
        found = self._sets.get(key)
        if found is None:
            if len(self._sets) >= NAME_SETS_KEPT:
                self._sets.clear()  # sharing only saves comparisons: equal sets stay equal
            found = self._sets[key] = key
        return found

    def _newest_of(self, target: str) -> float | None:
        if target in self._names:
            row: SampleRow = self._held[target]
            return row["time"]
        return self._newest.get(target)

    def _one_by_one(self, rows: Sequence[SampleRow]) -> None:
        probes = self._probes
        for row in rows:
            t, probe, target = row["time"], row["probe_id"], row["target"]
            seen = probes.get(probe)
            if seen is None or t > seen:
                probes[probe] = t
            newest = self._newest_of(target)
            if newest is None or t >= newest:  # nothing held for this target is newer: none late
                self._take(target, row)
            else:
                self._older(target, row)

    def _older(self, target: str, row: SampleRow) -> None:
        """A sample older than the newest held for its target: metric by metric."""
        t = row["time"]
        mine = self._held[target]
        if target in self._names:  # whole: every metric held is newer than this sample
            held_names = self._names[target]
            fresh = [m for m in row["metrics"] if m not in held_names]
            self.late += len(row["metrics"]) - len(fresh)
            if not fresh:
                return
            mixed = dict.fromkeys(mine["metrics"], mine)
            mixed.update(dict.fromkeys(fresh, row))
            self._held[target] = mixed
            del self._names[target]
            self._newest[target] = mine["time"]
            return
        for metric in row["metrics"]:
            had = mine.get(metric)
            if had is not None and had["time"] > t:
                self.late += 1
            else:
                mine[metric] = row

    def _readings(self, target: str) -> dict[str, SampleRow]:
        """Each metric held for ``target`` and the row it came in."""
        mine = self._held.get(target)
        if mine is None:
            return {}
        if target in self._names:
            return dict.fromkeys(mine["metrics"], mine)
        return dict(mine)

    def latest(self, target: str) -> Mapping[str, Reading]:
        return {metric: _reading(metric, r) for metric, r in self._readings(target).items()}

    def probes(self) -> Mapping[str, float]:
        return dict(self._probes)

    def __len__(self) -> int:
        names = self._names
        return sum(len(names[t]) if t in names else len(v) for t, v in self._held.items())

    def dump(self) -> dict[str, Any]:
        return {
            "latest": [
                [target, metric, *_reading(metric, r).fields()]
                for target in self._held
                for metric, r in self._readings(target).items()
            ],
            "probes": dict(self._probes),
            "counters": [self.samples, self.late],
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self._held, self._names, self._newest, self._sets = {}, {}, {}, {}
        for target, metric, value, t, probe, service, customer in state["latest"]:
            # one row per reading (several readings of one sample were one row before); the
            # target is mixed until a sample carrying all its metrics comes
            row: SampleRow = {
                "probe_id": probe,
                "target": target,
                "service": service,
                "customer": customer,
                "time": t,
                "metrics": {metric: value},
            }
            self._held.setdefault(target, {})[metric] = row
            self._newest[target] = max(self._newest.get(target, t), t)
        self._probes = dict(state["probes"])
        self._seen = max((*self._probes.values(), *self._newest.values()), default=float("-inf"))
        self.samples, self.late = state["counters"]


def _reading(metric: str, r: SampleRow) -> Reading:
    return Reading(r["metrics"][metric], r["time"], r["probe_id"], r.get("service"), r.get("customer"))
