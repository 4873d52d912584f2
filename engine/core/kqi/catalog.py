"""The KQI catalog: ``KqiDef`` (one KQI: the sample metric, its aggregate, window, objective, target
and limit), ``KqiCatalog`` (the KQIs of every service type) and ``KqiCatalog.defaults()``, the ITU-T
G.1010 / G.114 / G.107 figures and the operator conventions documented in ``docs/kqi.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.model.timeutil import Duration1d

__all__ = [
    "AGGREGATES",
    "CATEGORIES",
    "Aggregate",
    "Category",
    "KqiCatalog",
    "KqiDef",
    "Objective",
    "ServiceKqis",
    "Status",
]


Category = Literal["accessibility", "retainability", "integrity", "availability"]
Aggregate = Literal["mean", "max", "min", "p50", "p95", "p99", "last", "ratio"]
Objective = Literal["max", "min"]
Status = Literal["met", "at_risk", "violated", "unknown"]

CATEGORIES: tuple[str, ...] = ("accessibility", "retainability", "integrity", "availability")
AGGREGATES: tuple[str, ...] = ("mean", "max", "min", "p50", "p95", "p99", "last", "ratio")


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
    window: Duration1d = 300.0
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
