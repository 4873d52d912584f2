"""KQI windows: bounded, time-sorted sample series per (scope, metric) and their evaluation into
``KqiState`` s. A scope is an element's samples of one service (``ne:<id>/<service type>``,
``element_scope``) or a customer's service path (``path:<customer>/<service type>``, ``path_scope``).
The aggregates (``mean``, ``ratio``, nearest-rank percentiles) never raise on finite values.
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from engine.core.kqi.catalog import KqiCatalog, KqiDef, Status
from engine.core.kqi.mos import VOICE_SERVICES, with_derived_mos
from engine.model.messages import KpiSample
from engine.model.timeutil import format_time

__all__ = [
    "KqiState",
    "KqiWindows",
    "aggregate",
    "element_scope",
    "mean",
    "path_scope",
    "ratio",
]

_PERCENTILES = MappingProxyType({"p50": 50, "p95": 95, "p99": 99})


def element_scope(ne_id: str, service_type: str | None = None) -> str:
    """The scope of KQIs measured on an element: ``ne:<id>/<service type>`` for one service's
    samples (what ``observe_sample`` and the engine use, so that one service's samples are never
    judged by another's KQIs), ``ne:<id>`` without a service type."""
    return "ne:" + ne_id if service_type is None else f"ne:{ne_id}/{service_type}"


def path_scope(customer: str, service_type: str) -> str:
    """The scope of one customer's service: ``path:<customer>/<service type>``."""
    return f"path:{customer}/{service_type}"


@dataclass(frozen=True)
class KqiState:
    """A KQI evaluated on one scope at one time. ``value`` is kept even when ``status`` is unknown
    because there were fewer than ``min_samples`` samples."""

    kqi: KqiDef
    scope: str
    value: float | None
    samples: int
    status: Status

    def to_record(self) -> dict[str, Any]:
        k = self.kqi
        return {
            "name": k.name,
            "category": k.category,
            "scope": self.scope,
            "value": None if self.value is None else round(self.value, 3),
            "target": k.target,
            "limit": k.limit,
            "objective": k.objective,
            "status": self.status,
            "samples": self.samples,
            "window_s": k.window,
            "source": k.source,
        }


# ------------------------------------------------------------------------------------------ windows


class _Series:
    """Samples of one (scope, metric), sorted by time (stable: equal times keep arrival order).

    ``t[start:]`` / ``v[start:]`` are live; the dead prefix is cut off once it is at least half the
    list, so dropping from the front is amortised O(1).
    """

    __slots__ = ("start", "t", "v")

    def __init__(self) -> None:
        self.t: list[float] = []
        self.v: list[float] = []
        self.start = 0

    def __len__(self) -> int:
        return len(self.t) - self.start

    def add(self, t: float, v: float) -> None:
        ts = self.t
        if not ts or t >= ts[-1]:
            ts.append(t)
            self.v.append(v)
        else:
            i = bisect_right(ts, t, self.start)
            ts.insert(i, t)
            self.v.insert(i, v)

    def drop_before(self, cutoff: float) -> None:
        self.start = bisect_left(self.t, cutoff, self.start)
        self._compact()

    def drop_oldest(self, n: int) -> None:
        self.start += n
        self._compact()

    def _compact(self) -> None:
        if self.start and 2 * self.start >= len(self.t):
            del self.t[: self.start]
            del self.v[: self.start]
            self.start = 0

    def window(self, lo_t: float, hi_t: float) -> list[float]:
        """Values with lo_t <= t <= hi_t, in time order."""
        lo = bisect_left(self.t, lo_t, self.start)
        hi = bisect_right(self.t, hi_t, lo)
        return self.v[lo:hi]


def _nearest_rank(values: list[float], pct: int) -> float:
    """Nearest-rank percentile: the ⌈pct/100 · n⌉-th smallest value (integer arithmetic, n >= 1)."""
    ordered = sorted(values)
    rank = max(1, (pct * len(ordered) + 99) // 100)
    return ordered[rank - 1]


_SCALE = -64  # exponent of the exact power-of-two scaling for sums beyond the float range


def _scaled_fsum(values: list[float]) -> tuple[float, int]:
    """``(s, e)`` with sum(values) = s × 2**e, exactly rounded: ``math.fsum``, and when its result
    (or an intermediate sum) exceeds the float range, the fsum of the values scaled by 2**-64, which
    is exact (a power of two) and cannot overflow for any number of finite values a window holds."""
    try:
        return math.fsum(values), 0
    except OverflowError:
        return math.fsum(math.ldexp(v, _SCALE) for v in values), _SCALE


def mean(values: list[float]) -> float:
    """The mean of finite values (n >= 1). Never raises: a sum beyond the float range is scaled."""
    total, exp = _scaled_fsum(values)
    return math.ldexp(total / len(values), -exp) if exp else total / len(values)


def ratio(numerators: list[float], denominators: list[float]) -> float | None:
    """sum(numerators) / sum(denominators), None when the denominators' sum is not positive. Never
    raises: when either sum is beyond the float range, both are scaled alike before dividing."""
    num, num_exp = _scaled_fsum(numerators)
    den, den_exp = _scaled_fsum(denominators)
    if num_exp != den_exp:
        num = math.fsum(math.ldexp(v, _SCALE) for v in numerators)
        den = math.fsum(math.ldexp(v, _SCALE) for v in denominators)
    if den <= 0.0:
        return None
    q = num / den  # a huge sum over a tiny one: the largest float, never inf
    return q if math.isfinite(q) else math.copysign(sys.float_info.max, q)


def aggregate(kind: str, values: list[float]) -> float | None:
    if not values:
        return None
    if kind == "mean":
        return mean(values)
    if kind == "max":
        return max(values)
    if kind == "min":
        return min(values)
    if kind == "last":
        return values[-1]
    return _nearest_rank(values, _PERCENTILES[kind])


class KqiWindows:
    """Sliding windows of samples per (scope, metric). A scope is any string; the engine's are an
    element's samples of one service (``ne:<id>/<service>``) and service paths
    (``path:<customer>/<service>``); see ``element_scope`` and ``path_scope``.

    Only metrics some KQI of the catalog reads are kept (the others are counted in ``ignored``). Each
    series is sorted by time, keeps samples for the longest window of the KQIs reading its metric and at
    most ``max_samples_per_series`` of them (the oldest go first, counted in ``dropped``). ``observe``
    trims its own series relative to the sample's time and, every so often, sweeps every series the same
    way (``expire``): amortised O(log n) per sample. Evaluate at a ``now`` no earlier than the samples
    observed: a sample far in the future trims what is older than it by more than the horizon.
    """

    def __init__(self, catalog: KqiCatalog, *, max_samples_per_series: int = 10000) -> None:
        if max_samples_per_series < 1:
            raise ValueError(f"max_samples_per_series must be >= 1 (got {max_samples_per_series})")
        self.catalog = catalog
        self.max_samples = max_samples_per_series
        self._horizon = catalog.horizons()
        self._max_window = max(self._horizon.values(), default=0.0)
        self._series: dict[tuple[str, str], _Series] = {}
        self._since_sweep = 0
        self.observed = 0  # samples kept
        self.dropped = 0  # samples pushed out by the per-series bound
        self.ignored = 0  # samples of metrics no KQI reads

    # --- input

    def observe(self, scope: str, metric: str, value: float, t: float) -> None:
        """Add one sample. Out-of-order samples are inserted in time order. Raises ``ValueError`` for a
        non-finite value or time (``KpiSample`` never carries one)."""
        horizon = self._horizon.get(metric)
        if horizon is None:
            self.ignored += 1
            return
        if not (math.isfinite(value) and math.isfinite(t)):
            raise ValueError(f"sample of {metric!r} on {scope!r} must be finite (value={value}, t={t})")
        value, t = float(value), float(t)
        key = (scope, metric)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        series.add(t, value)
        series.drop_before(t - horizon)
        excess = len(series) - self.max_samples
        if excess > 0:
            series.drop_oldest(excess)
            self.dropped += excess
        self.observed += 1
        self._since_sweep += 1
        if self._since_sweep >= max(4096, len(self._series)):
            self.expire(t)

    def observe_sample(
        self,
        sample: KpiSample,
        *,
        mos_services: frozenset[str] = VOICE_SERVICES,
        codec: str = "G.711",
    ) -> None:
        """Every metric of ``sample`` on ``ne:<target>/<service>`` (``default`` when the sample names no
        service) and, when the sample names both a customer and a service, on
        ``path:<customer>/<service>``. A sample of a service in ``mos_services`` with ``latency_ms``
        but no ``mos`` also gets the E-model MOS (``derived_mos``)."""
        metrics = with_derived_mos(sample.metrics, sample.service, voice=mos_services, codec=codec)
        scopes = [element_scope(sample.target, sample.service or "default")]
        if sample.customer is not None and sample.service is not None:
            scopes.append(path_scope(sample.customer, sample.service))
        for scope in scopes:
            for metric in sorted(metrics):
                self.observe(scope, metric, metrics[metric], sample.time)

    def expire(self, now: float) -> None:
        """Drop samples older than ``now`` minus the longest window reading their metric; forget empty
        series."""
        self._since_sweep = 0
        empty: list[tuple[str, str]] = []
        for key, series in self._series.items():
            series.drop_before(now - self._horizon.get(key[1], self._max_window))
            if not len(series):
                empty.append(key)
        for key in empty:
            del self._series[key]

    # --- evaluation

    def value(self, scope: str, kqi: KqiDef, now: float) -> tuple[float | None, int]:
        """(aggregate over [now - window, now], sample count); (None, 0) for an empty window.

        A ratio's count is the smaller of its two metrics' counts; its value is None when the
        denominator's sum is not positive."""
        lo = now - kqi.window
        series = self._series.get((scope, kqi.metric))
        values = series.window(lo, now) if series is not None else []
        if kqi.aggregate != "ratio":
            return aggregate(kqi.aggregate, values), len(values)
        assert kqi.denominator is not None  # the model validator guarantees it
        den_series = self._series.get((scope, kqi.denominator))
        den = den_series.window(lo, now) if den_series is not None else []
        count = min(len(values), len(den))
        if not values or not den:
            return None, count
        return ratio(values, den), count

    def evaluate(self, scope: str, service_type: str, now: float) -> list[KqiState]:
        """Every KQI of the service type (catalog order) on ``scope`` at ``now``."""
        out: list[KqiState] = []
        for kqi in self.catalog.for_service(service_type):
            value, samples = self.value(scope, kqi, now)
            out.append(KqiState(kqi, scope, value, samples, kqi.status(value, samples)))
        return out

    def series(self, scope: str) -> dict[str, tuple[list[float], list[float]]]:
        """The samples held for one scope, per metric: (times, values), copies, sorted by time.
        Read-only: for charts (the dashboard's service-quality page)."""
        return {
            metric: (s.t[s.start :], s.v[s.start :])
            for (sc, metric), s in sorted(self._series.items())
            if sc == scope and len(s)
        }

    def held(self) -> Iterator[tuple[str, str, Sequence[float], Sequence[float], int]]:
        """Every series in place, without copying: (scope, metric, times, values, start), the
        samples being ``times[start:]``, ``values[start:]`` (times sorted). Read-only, and only until
        the next sample or expiry changes them: an O(series) walk for the dashboard's chart history,
        where ``dump`` copies every sample and sorts the series."""
        return ((scope, metric, s.t, s.v, s.start) for (scope, metric), s in self._series.items())

    def describe(self, scope: str) -> str:
        """What one scope's windows hold, per metric: count, range and the latest sample (names the
        poison when the scope's evaluation raised)."""
        parts = []
        for (sc, metric), s in sorted(self._series.items()):
            if sc != scope or not len(s):
                continue
            live = s.v[s.start :]
            parts.append(
                f"{metric}: {len(live)} sample(s), min {min(live):g}, max {max(live):g}, "
                f"latest {live[-1]:g} at {format_time(s.t[-1])}"
            )
        return f"KQI window {scope}: " + ("; ".join(parts) if parts else "empty")

    def scopes(self) -> list[str]:
        """Scopes holding at least one sample, sorted."""
        return sorted({scope for scope, _ in self._series})

    def __len__(self) -> int:
        """Samples held."""
        return sum(len(s) for s in self._series.values())

    # --- persistence

    def dump(self) -> dict[str, Any]:
        """JSON-ready state (orjson keeps floats exact); series sorted by (scope, metric)."""
        return {
            "version": 1,
            "series": [
                [scope, metric, s.t[s.start :], s.v[s.start :]]
                for (scope, metric), s in sorted(self._series.items())
                if len(s)
            ],
            "counters": [self.observed, self.dropped, self.ignored, self._since_sweep],
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Replace the state with a ``dump`` (of this or an earlier run). Raises ``ValueError``."""
        if state.get("version") != 1:
            raise ValueError(f"unsupported KQI window state version {state.get('version')!r}")
        series: dict[tuple[str, str], _Series] = {}
        for scope, metric, times, values in state["series"]:
            if len(times) != len(values):
                raise ValueError(f"series {scope!r}/{metric!r}: {len(times)} times for {len(values)} values")
            s = _Series()
            pairs = sorted(zip(times, values, strict=True), key=lambda p: p[0])  # stable: a no-op normally
            s.t = [float(t) for t, _ in pairs]
            s.v = [float(v) for _, v in pairs]
            series[str(scope), str(metric)] = s
        self._series = series
        self.observed, self.dropped, self.ignored, self._since_sweep = (int(c) for c in state["counters"])


# ------------------------------------------------------------------------------------------ derived MOS
