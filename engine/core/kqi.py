"""Key quality indicators (KQIs) per service type, over sliding windows of KPI samples.

A KQI (ITU-T E.800 sense: a quality characteristic as the user of a service perceives it) is one metric
of the probes' KPI samples, aggregated over a sliding window and compared with a target:

* ``KqiDef``: name, E.800-style category (accessibility, retainability, integrity, availability), the
  sample metric, the aggregate (mean, max, min, p50/p95/p99 by the nearest-rank method, last, or a
  ratio of two summed metrics), the window, the objective direction, the target and an optional limit.
* ``KqiCatalog``: the KQIs of every service type; ``KqiCatalog.defaults()`` holds the ITU-T G.1010 /
  G.114 / G.107 figures and the operator conventions documented in ``docs/kqi.md``.
* ``KqiWindows``: bounded, time-sorted sample series per (scope, metric) and their evaluation into
  ``KqiState`` s. A scope is an element's samples of one service (``ne:<id>/<service type>``) or a
  customer's service path (``path:<customer>/<service type>``).
* ``derived_mos``: the G.107 E-model MOS of a voice sample that carries delay (jitter, loss) but no MOS.

Pure: no clock reads, no I/O; ``now`` (epoch seconds) is always passed in. Deterministic: the same
observations give the same states, dumps and records.
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.core.qoe.emodel import voip_quality
from engine.core.qoe.video import video_quality
from engine.model.messages import KpiSample
from engine.model.timeutil import Duration, format_time

__all__ = [
    "AGGREGATES",
    "CATEGORIES",
    "VIDEO_SERVICES",
    "VOICE_SERVICES",
    "Aggregate",
    "Category",
    "KqiCatalog",
    "KqiDef",
    "KqiState",
    "KqiWindows",
    "ServiceKqis",
    "Status",
    "aggregate",
    "derived_mos",
    "derived_video_mos",
    "element_scope",
    "path_scope",
    "with_derived_mos",
]

Category = Literal["accessibility", "retainability", "integrity", "availability"]
Aggregate = Literal["mean", "max", "min", "p50", "p95", "p99", "last", "ratio"]
Objective = Literal["max", "min"]
Status = Literal["met", "at_risk", "violated", "unknown"]

CATEGORIES: tuple[str, ...] = ("accessibility", "retainability", "integrity", "availability")
AGGREGATES: tuple[str, ...] = ("mean", "max", "min", "p50", "p95", "p99", "last", "ratio")
_PERCENTILES = MappingProxyType({"p50": 50, "p95": 95, "p99": 99})

# Service types whose samples get an E-model MOS when they carry delay but no MOS (``observe_sample``).
VOICE_SERVICES: frozenset[str] = frozenset({"voice", "voip"})
# Service types whose samples get a P.1203 mode 0 MOS when they carry bitrate, height and frame rate
# but no MOS (``derived_video_mos``).
VIDEO_SERVICES: frozenset[str] = frozenset({"video", "iptv"})
VIDEO_METRICS = ("bitrate_kbps", "height", "framerate")  # what a video sample needs for a derived MOS


def element_scope(ne_id: str, service_type: str | None = None) -> str:
    """The scope of KQIs measured on an element: ``ne:<id>/<service type>`` for one service's
    samples (what ``observe_sample`` and the engine use, so that one service's samples are never
    judged by another's KQIs), ``ne:<id>`` without a service type."""
    return "ne:" + ne_id if service_type is None else f"ne:{ne_id}/{service_type}"


def path_scope(customer: str, service_type: str) -> str:
    """The scope of one customer's service: ``path:<customer>/<service type>``."""
    return f"path:{customer}/{service_type}"


# ------------------------------------------------------------------------------------------ definitions


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class KqiDef(_Strict):
    """One KQI. ``objective`` "max": the value must stay <= ``target`` (delay, loss); "min": >= (MOS).

    ``limit`` is an optional "unacceptable" bound beyond the target (G.114: 150 ms target, 400 ms limit):
    between the two the KQI is ``at_risk``, beyond the limit ``violated``. Without a limit, missing the
    target is ``violated``. ``ratio`` divides the window's sum of ``metric`` by its sum of
    ``denominator`` (e.g. dropped calls / answered calls).
    """

    name: str = Field(min_length=1)
    category: Category
    metric: str = Field(min_length=1)
    aggregate: Aggregate = "mean"
    denominator: str | None = Field(default=None, min_length=1)
    window: Duration = 300.0
    objective: Objective
    target: float
    limit: float | None = None
    min_samples: int = Field(default=3, ge=1)
    weight: float = Field(default=1.0, ge=0.0)
    source: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> KqiDef:
        if (self.aggregate == "ratio") != (self.denominator is not None):
            raise ValueError("denominator is required with aggregate 'ratio' and only with it")
        if not self.window > 0.0:
            raise ValueError(f"window must be > 0 seconds (got {self.window})")
        if self.limit is not None:
            if self.objective == "max" and self.limit < self.target:
                raise ValueError(f"objective 'max': limit {self.limit} must be >= target {self.target}")
            if self.objective == "min" and self.limit > self.target:
                raise ValueError(f"objective 'min': limit {self.limit} must be <= target {self.target}")
        return self

    def status(self, value: float | None, samples: int) -> Status:
        """met / at_risk / violated for a value; unknown without a value or with too few samples."""
        if value is None or samples < self.min_samples:
            return "unknown"
        if self.objective == "max":
            if value <= self.target:
                return "met"
            return "at_risk" if self.limit is not None and value <= self.limit else "violated"
        if value >= self.target:
            return "met"
        return "at_risk" if self.limit is not None and value >= self.limit else "violated"


class ServiceKqis(_Strict):
    """The KQIs of one service type (the list form of a catalog entry)."""

    service_type: str = Field(min_length=1)
    kqis: tuple[KqiDef, ...]


class KqiCatalog(_Strict):
    """KQIs per service type. An unknown service type gets the ``default`` entry, if there is one."""

    services: Mapping[str, tuple[KqiDef, ...]]

    @model_validator(mode="before")
    @classmethod
    def _services_key(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "services" not in data and data:
            first = next(iter(data))
            raise ValueError(
                f"KQIs are listed under `services`, by service type: kqis: {{services: {{{first}: [...]}}}} "
                f"(got {', '.join(map(repr, data))} directly under kqis)"
            )
        return data

    @field_validator("services")
    @classmethod
    def _unique_names(cls, services: Mapping[str, tuple[KqiDef, ...]]) -> Mapping[str, tuple[KqiDef, ...]]:
        for service_type, kqis in services.items():
            if not service_type:
                raise ValueError("a service type name must not be empty")
            seen: set[str] = set()
            for k in kqis:
                if k.name in seen:
                    raise ValueError(f"service type {service_type!r} lists KQI {k.name!r} twice")
                seen.add(k.name)
        return dict(services)

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> KqiCatalog:
        """From the config form ``{service_type: [kqi, ...]}``; raises pydantic's ``ValidationError``."""
        return cls.model_validate({"services": data})

    @classmethod
    def defaults(cls) -> KqiCatalog:
        """The ITU-T G.1010 / G.114 / G.107 figures and operator conventions of ``docs/kqi.md``."""
        return _default_catalog()

    def for_service(self, service_type: str) -> tuple[KqiDef, ...]:
        found = self.services.get(service_type)
        if found is not None:
            return found
        return self.services.get("default", ())

    def entries(self) -> tuple[ServiceKqis, ...]:
        """Every service type's KQIs, sorted by service type."""
        return tuple(ServiceKqis(service_type=s, kqis=self.services[s]) for s in sorted(self.services))

    def horizons(self) -> dict[str, float]:
        """Metric → the longest window of any KQI reading it (as metric or denominator)."""
        out: dict[str, float] = {}
        for kqis in self.services.values():
            for k in kqis:
                for metric in (k.metric, k.denominator):
                    if metric is not None:
                        out[metric] = max(out.get(metric, 0.0), k.window)
        return out

    def max_window(self) -> float:
        """The longest window in the catalog (0 for an empty catalog)."""
        return max(self.horizons().values(), default=0.0)


# ------------------------------------------------------------------------------------------ defaults

_G114 = "ITU-T G.114 (05/2003): 400 ms one-way upper bound for network planning; 150 ms widely-cited target"
_G1010_VOICE = "ITU-T G.1010 (11/2001), conversational voice (widely-cited figures)"
_G1010_VIDEO = "ITU-T G.1010 (11/2001), streaming video (widely-cited): one-way delay < 10 s, loss < 1 %"
_G1010_WEB = (
    "ITU-T G.1010 (11/2001), web browsing (widely-cited): preferred < 2 s/page, acceptable < 4 s/page"
)
_G107_MOS = (
    "ITU-T G.107 Annex B: MOS(R=70) = 3.60 'some users dissatisfied', MOS(R=60) = 3.10 "
    "'many users dissatisfied' (engine.core.qoe.emodel.r_to_mos)"
)
_OPERATOR = "operator convention (not an ITU-T figure)"


def _availability(service: str, *, window: float = 3600.0) -> KqiDef:
    return KqiDef(
        name=f"{service}.availability",
        category="availability",
        metric="available",
        window=window,
        objective="min",
        target=0.999,
        limit=0.99,
        source=f"{_OPERATOR}: mean of 1/0 'available' samples over 1 h, target 99.9 %, limit 99 %",
    )


def _voice(service: str) -> tuple[KqiDef, ...]:
    return (
        KqiDef(
            name=f"{service}.one_way_delay",
            category="integrity",
            metric="latency_ms",
            objective="max",
            target=150.0,
            limit=400.0,
            source=f"{_G114}; {_G1010_VOICE}: preferred < 150 ms, limit < 400 ms",
        ),
        KqiDef(
            name=f"{service}.jitter",
            category="integrity",
            metric="jitter_ms",
            objective="max",
            target=30.0,
            limit=50.0,
            source=(
                f"{_OPERATOR}: network jitter 30 ms target, 50 ms limit. G.1010's < 1 ms delay variation "
                "applies at the application, after the de-jitter buffer"
            ),
        ),
        KqiDef(
            name=f"{service}.packet_loss",
            category="integrity",
            metric="loss_pct",
            objective="max",
            target=3.0,
            source=f"{_G1010_VOICE}: information loss < 3 % packet loss ratio",
        ),
        KqiDef(
            name=f"{service}.mos",
            category="integrity",
            metric="mos",
            objective="min",
            target=3.6,
            limit=3.1,
            source=_G107_MOS,
        ),
        KqiDef(
            name=f"{service}.call_setup_success",
            category="accessibility",
            metric="calls_setup_ok",
            aggregate="ratio",
            denominator="calls_attempted",
            objective="min",
            target=0.99,
            source=f"{_OPERATOR}: successful / attempted call setups >= 99 % (fraction 0.99)",
        ),
        KqiDef(
            name=f"{service}.call_drop",
            category="retainability",
            metric="calls_dropped",
            aggregate="ratio",
            denominator="calls_answered",
            objective="max",
            target=0.01,
            source=f"{_OPERATOR}: dropped / answered calls <= 1 % (fraction 0.01)",
        ),
        _availability(service),
    )


def _video(service: str) -> tuple[KqiDef, ...]:
    return (
        KqiDef(
            name=f"{service}.one_way_delay",
            category="integrity",
            metric="latency_ms",
            objective="max",
            target=10_000.0,
            source=_G1010_VIDEO,
        ),
        KqiDef(
            name=f"{service}.packet_loss",
            category="integrity",
            metric="loss_pct",
            objective="max",
            target=1.0,
            source=_G1010_VIDEO,
        ),
        KqiDef(
            name=f"{service}.mos",
            category="integrity",
            metric="mos",
            objective="min",
            target=3.5,
            source=f"{_OPERATOR}: ITU-T P.1203 (mode 0) MOS >= 3.5 (see docs/qoe-video.md)",
        ),
        _availability(service),
    )


def _internet(service: str) -> tuple[KqiDef, ...]:
    return (
        KqiDef(
            name=f"{service}.latency",
            category="integrity",
            metric="latency_ms",
            objective="max",
            target=100.0,
            source=f"{_OPERATOR}: access-to-peering latency <= 100 ms",
        ),
        KqiDef(
            name=f"{service}.response_time",
            category="integrity",
            metric="response_time_s",
            objective="max",
            target=2.0,
            limit=4.0,
            source=_G1010_WEB,
        ),
        KqiDef(
            name=f"{service}.throughput",
            category="integrity",
            metric="throughput_mbps",
            objective="min",
            target=10.0,
            source=f"{_OPERATOR}: mean throughput >= 10 Mbit/s (set it per product)",
        ),
        KqiDef(
            name=f"{service}.packet_loss",
            category="integrity",
            metric="loss_pct",
            objective="max",
            target=1.0,
            source=f"{_OPERATOR}: packet loss <= 1 % (G.1010 gives no network loss figure for the web)",
        ),
        _availability(service),
    )


def _default_catalog() -> KqiCatalog:
    return KqiCatalog(
        services={
            "voice": _voice("voice"),
            "voip": _voice("voip"),  # the service type of examples/topology.yaml and the voip scenario
            "video": _video("video"),
            "iptv": _video("iptv"),
            "internet": _internet("internet"),
            "default": (_availability("default"),),
        }
    )


# ------------------------------------------------------------------------------------------ states


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


def with_derived_mos(
    metrics: Mapping[str, float],
    service: str | None,
    *,
    voice: frozenset[str] = VOICE_SERVICES,
    codec: str = "G.711",
) -> Mapping[str, float]:
    """``metrics`` with a ``mos`` added when the sample reports none and one can be derived: the
    G.107 E-model's for a service in ``voice`` (``derived_mos``), P.1203 mode 0's for one in
    ``VIDEO_SERVICES`` (``derived_video_mos``); ``metrics`` itself otherwise."""
    if "mos" in metrics:
        return metrics
    if service in voice:
        mos = derived_mos(metrics, codec)
    elif service in VIDEO_SERVICES:
        mos = derived_video_mos(metrics)
    else:
        return metrics
    return metrics if mos is None else {**metrics, "mos": mos}


_MAX_DELAY_MS = 10_000.0  # the range engine.core.qoe.emodel.voip_quality accepts; MOS is 1 long before


def derived_mos(metrics: Mapping[str, float], codec: str = "G.711") -> float | None:
    """E-model (ITU-T G.107) MOS of a voice sample from ``latency_ms`` and optional ``jitter_ms`` and
    ``loss_pct``, with ``engine.core.qoe.emodel.voip_quality``'s defaults: every other G.107 parameter at
    its default, packet-loss concealment on, random loss, and a fixed de-jitter buffer of 2 × jitter
    that adds its size to the delay and loses the Gaussian tail beyond it (1.2 %).

    None when latency is missing or any of the three is negative or not finite. Delay and jitter above
    10 s are taken as 10 s and loss above 100 % as 100 % (the MOS is 1 there anyway). An unknown codec
    raises ``ValueError``."""
    latency = metrics.get("latency_ms")
    if latency is None:
        return None
    jitter = metrics.get("jitter_ms", 0.0)
    loss = metrics.get("loss_pct", 0.0)
    if not all(math.isfinite(x) and x >= 0.0 for x in (latency, jitter, loss)):
        return None
    result = voip_quality(
        delay_ms=min(latency, _MAX_DELAY_MS),
        jitter_ms=min(jitter, _MAX_DELAY_MS),
        loss_pct=min(loss, 100.0),
        codec=codec,
    )
    return result.mos


# ------------------------------------------------------------------------------------------ video MOS


def derived_video_mos(metrics: Mapping[str, float]) -> float | None:
    """ITU-T P.1203 mode 0 session MOS (``engine.core.qoe.video.video_quality``, docs/qoe-video.md) of a
    video sample that reports ``bitrate_kbps``, ``height`` and ``framerate`` (optional: ``width``,
    default 16:9 of the height; ``stalls`` and ``stall_seconds``, the rebuffering events of the
    measured period and their total length; ``initial_delay_s``; ``duration_s``, default 60).

    None when a required metric is missing or the values are outside the model (it raises
    ``ValueError`` for them: a negative bitrate, a fractional stall count, stalls without time…)."""
    if any(m not in metrics for m in VIDEO_METRICS):
        return None
    height = metrics["height"]
    width = metrics.get("width", round(height * 16 / 9))
    stalls = metrics.get("stalls", 0.0)
    if not all(float(x).is_integer() for x in (width, height, stalls)):
        return None
    try:
        return video_quality(
            bitrate_kbps=metrics["bitrate_kbps"],
            width=int(width),
            height=int(height),
            framerate=metrics["framerate"],
            stalls=int(stalls),
            stall_seconds=metrics.get("stall_seconds", 0.0),
            initial_delay_s=metrics.get("initial_delay_s", 0.0),
            duration_s=metrics.get("duration_s", 60.0),
        ).mos
    except ValueError:
        return None
