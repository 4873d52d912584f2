"""The declarations of the inbound messages that pydantic and msgspec read: the models (``Alarm``,
``ThresholdInfo``, ``KpiSample``), the sample row (``SampleRow``), the batch's validators, the
validators of the models' fields, and the constants they need. ``engine.model.messages`` decodes
with them and re-exports the public names: import them from there.

Kept apart from ``messages``, which the build compiles with mypyc (``engine.compiled.EXTRA``): mypyc
does not compile a module that declares a pydantic model (nor the ``GetPydanticSchema`` lambda of
``SampleRow``'s time), and msgspec and pydantic read the annotations of the class-based ``TypedDict``
declarations at run time. This module stays interpreted; the decoding that runs once per message is
compiled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, NotRequired, cast, get_args

import msgspec
import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetPydanticSchema,
    StringConstraints,
    TypeAdapter,
    with_config,
)
from pydantic.types import FiniteFloat
from pydantic_core import core_schema
from typing_extensions import TypedDict  # pydantic's dependency; before 3.12

from engine.model.timeutil import parse_time, time_words

__all__ = [
    "EVENT_TYPES",
    "MAX_METRICS",
    "MAX_TIME",
    "METRIC_NAME_PATTERN",
    "METRIC_RANGES",
    "SEVERITIES",
    "UNKNOWN_METRIC_RANGE",
    "Alarm",
    "EventType",
    "KpiSample",
    "MetricRange",
    "SampleRow",
    "Severity",
    "ThresholdInfo",
    "message_time",
]

Severity = Literal["critical", "major", "minor", "warning", "indeterminate", "cleared"]
EventType = Literal[
    "communicationsAlarm",
    "qualityOfServiceAlarm",
    "processingErrorAlarm",
    "equipmentAlarm",
    "environmentalAlarm",
]
SEVERITIES: tuple[str, ...] = get_args(Severity)
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


METRIC_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
MAX_METRICS = 64


@dataclass(frozen=True, slots=True)
class MetricRange:
    """The physically possible values of one KPI metric, bounds included."""

    low: float
    high: float
    unit: str = ""

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.low:g} to {self.high:g}{unit}"


_HOUR_MS = 3_600_000.0
_DAY_S = 86_400.0
# What a probe can physically report for the metrics the engine knows (KQIs, E-model, P.1203,
# the shipped kpi_threshold rules). A value outside is a broken probe or a unit mistake, refused
# before it reaches a window where it could distort every aggregate after it.
METRIC_RANGES: Mapping[str, MetricRange] = MappingProxyType(
    {
        "latency_ms": MetricRange(0.0, _HOUR_MS, "ms"),
        "delay_ms": MetricRange(0.0, _HOUR_MS, "ms"),
        "jitter_ms": MetricRange(0.0, _HOUR_MS, "ms"),
        "loss_pct": MetricRange(0.0, 100.0, "%"),
        "mos": MetricRange(1.0, 5.0),
        "available": MetricRange(0.0, 1.0),
        "throughput_mbps": MetricRange(0.0, 1e7, "Mbit/s"),
        "bitrate_kbps": MetricRange(0.0, 1e10, "kbit/s"),
        "response_time_s": MetricRange(0.0, _DAY_S, "s"),
        "height": MetricRange(0.0, 100_000.0, "pixels"),
        "width": MetricRange(0.0, 100_000.0, "pixels"),
        "framerate": MetricRange(0.0, 10_000.0, "frames/s"),
        "stalls": MetricRange(0.0, 1e9),
        "stall_seconds": MetricRange(0.0, 366 * _DAY_S, "s"),
        "initial_delay_s": MetricRange(0.0, _DAY_S, "s"),
        "duration_s": MetricRange(0.0, 366 * _DAY_S, "s"),
        "calls_attempted": MetricRange(0.0, 1e12, "calls"),
        "calls_setup_ok": MetricRange(0.0, 1e12, "calls"),
        "calls_answered": MetricRange(0.0, 1e12, "calls"),
        "calls_dropped": MetricRange(0.0, 1e12, "calls"),
    }
)
# Any other metric (a kpi_threshold rule may read anything): finite and within this magnitude.
UNKNOWN_METRIC_RANGE = MetricRange(-1e12, 1e12)


_SEVERITY_SET = frozenset(SEVERITIES)
_EVENT_TYPE_SET = frozenset(EVENT_TYPES)
_SEVERITY_CHOICES = ", ".join(SEVERITIES)
_EVENT_TYPE_CHOICES = ", ".join(EVENT_TYPES)


def _severity(value: object) -> object:
    """Fold the case of a severity string; anything that is not a string is left for the type check."""
    if isinstance(value, str):
        low = value.lower()
        if low in _SEVERITY_SET:
            return low
        raise ValueError(f"{value!r} is not one of {_SEVERITY_CHOICES}")
    return value


def _event_type(value: object) -> object:
    if isinstance(value, str) and value not in _EVENT_TYPE_SET:
        raise ValueError(f"{value!r} is not one of {_EVENT_TYPE_CHOICES}")
    return value


# 9999-12-31T23:59:59Z: later times cannot be formatted (timeutil.format_time) or stored as datetimes.
MAX_TIME: Final = 253402300799.0


def message_time(value: object) -> float:
    """A time field: epoch seconds or RFC 3339 (``parse_time``), no later than ``MAX_TIME``; a
    ``ValueError`` that says what is wrong otherwise. One validator per field (a float in range, the
    usual case, is returned at once); also a replay line's own ``time`` and a schedule's instants."""
    if type(value) is float and 0.0 <= value <= MAX_TIME:
        return value
    if value is None:
        raise ValueError("expected RFC 3339 time or epoch seconds, got null")
    return _representable(parse_time(value))


def _representable(t: float) -> float:
    if t > MAX_TIME:
        raise ValueError(f"time {time_words(t)} is after year 9999 (epoch milliseconds sent as seconds?)")
    return t


_Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_Opt = Annotated[str, StringConstraints(max_length=256)]
_Text = Annotated[str, StringConstraints(max_length=4096)]
_Time = Annotated[float, BeforeValidator(message_time)]
_MetricName = Annotated[str, StringConstraints(pattern=METRIC_NAME_PATTERN)]
_Metrics = Annotated[dict[_MetricName, FiniteFloat], Field(min_length=1, max_length=MAX_METRICS)]

_MODEL_CONFIG = ConfigDict(frozen=True, strict=True, extra="ignore")


class ThresholdInfo(BaseModel):
    """X.733 threshold information of a quality-of-service alarm (TMF642's
    ``crossedThresholdInformation``): which indicator crossed which level, in which direction, with
    what value, and the level that clears it (hysteresis)."""

    model_config = _MODEL_CONFIG

    indicator: _Id  # X.733 triggeredThreshold; TMF642 indicatorName
    direction: Literal["up", "down"]  # up: alarm above `threshold`; down: below it
    observed_value: FiniteFloat
    threshold: FiniteFloat | None = None  # the level crossed (TMF642 names it by reference only)
    clear: FiniteFloat | None = None  # the level that clears it (X.733 thresholdLevel's other bound)
    granularity: _Opt | None = None  # how the indicator is evaluated: "mean over 300s", "15m"…


class Alarm(BaseModel):
    """One alarm notification (raise or clear) from a network element.

    ``event_time`` is epoch seconds (UTC). Identity: ``alarm_id`` when the sender gives one, otherwise
    (``ne_id``, ``probable_cause``, ``specific_problem``), as in X.733.
    """

    model_config = _MODEL_CONFIG

    ne_id: _Id
    severity: Annotated[Severity, BeforeValidator(_severity)]
    probable_cause: _Id
    event_type: Annotated[EventType, BeforeValidator(_event_type)] = "communicationsAlarm"
    specific_problem: _Opt | None = None
    alarm_id: _Id | None = None
    text: _Text | None = None
    event_time: _Time
    threshold_info: ThresholdInfo | None = None

    @property
    def identity(self) -> str:
        """``"id:<alarm_id>"``, or the JSON array ``[ne_id, probable_cause, specific_problem or ""]``.

        The two forms cannot collide (one starts with ``id:``, the other with ``[``), and JSON
        encoding keeps a ``|`` or quote inside a field from merging two different triples.
        """
        if self.alarm_id is not None:
            return "id:" + self.alarm_id
        return orjson.dumps([self.ne_id, self.probable_cause, self.specific_problem or ""]).decode()

    @property
    def is_clear(self) -> bool:
        return self.severity == "cleared"


class KpiSample(BaseModel):
    """One measurement from a probe about ``target`` (an element id) at ``time`` (epoch seconds)."""

    model_config = _MODEL_CONFIG

    probe_id: _Id
    target: _Id
    service: _Id | None = None
    customer: _Id | None = None
    time: _Time
    metrics: _Metrics


# The batch fast path's spelling of the same fields (``Decoder._batch_fast``): a time that is a
# number in range is taken by pydantic-core alone (``message_time`` only for a string), metric names are
# checked after, once per distinct name (``_MetricBounds``). Everything it accepts, ``KpiSample``
# accepts as the same.
_RowTime = Annotated[
    float,
    GetPydanticSchema(
        lambda _type, _handler: core_schema.union_schema(
            [
                core_schema.float_schema(ge=0.0, le=MAX_TIME, allow_inf_nan=False),
                core_schema.no_info_after_validator_function(message_time, core_schema.str_schema()),
            ],
            mode="left_to_right",
        )
    ),
]
_RowMetrics = Annotated[dict[str, FiniteFloat], Field(min_length=1, max_length=MAX_METRICS)]


# The batch fast path takes no key its types do not name: such a batch goes to the full path,
# which ignores an extra key as ``KpiSample`` does. (pydantic-core alone would parse and drop an
# extra key's value, even one orjson refuses, such as ``1e999``; the fast path now has orjson parse
# the payload first, which refuses it.)
_FAST_CONFIG = ConfigDict(frozen=True, strict=True, extra="forbid")


@with_config(_FAST_CONFIG)
class SampleRow(TypedDict):
    """A KPI sample as a plain dict: what the core's KPI store and KQI windows read. A validated
    batch becomes rows without a ``KpiSample`` per item (``Decoded.rows``); a row has the keys of
    ``KpiSample``'s fields, ``service`` and ``customer`` only when the message set them, and is never
    changed once made. ``kpi_sample`` makes the model of a row, ``sample_row`` the row of a model.
    As the batch fast path validates it (``_RowBatch``), a row takes no other key. Read it by key:
    its keys are in the model's field order, or in the payload's when the batch's plain path made
    it (``_plain_rows``)."""

    probe_id: _Id
    target: _Id
    service: NotRequired[_Id | None]
    customer: NotRequired[_Id | None]
    time: _RowTime
    metrics: _RowMetrics


_SAMPLE_LIST: TypeAdapter[list[KpiSample]] = TypeAdapter(list[KpiSample])


@with_config(_FAST_CONFIG)
class _RowBatch(TypedDict):
    """``{"samples": [...]}``: the batch fast path's envelope (``Decoder._batch_fast``)."""

    samples: list[SampleRow]


# One pydantic-core call for a whole batch, straight from the JSON bytes, into plain rows (no
# ``KpiSample`` per item: about 40 % less than validating into the models).
_ROWS: TypeAdapter[_RowBatch] = TypeAdapter(_RowBatch)


# (low, high) of each known metric's values (``_KnownMetrics``, ``messages._MetricBounds``).
_KNOWN_BOUNDS: Mapping[str, tuple[float, float]] = {n: (r.low, r.high) for n, r in METRIC_RANGES.items()}


# The batch's native path: msgspec parses and type-checks the whole batch in C, into the same rows
# (``SampleRow``: plain dicts in the payload's key order, integers made floats as the model makes
# them), for a payload it can take as orjson would (``_native_rows``). Two decoders: one whose
# metrics are the known ones (``METRIC_RANGES``), each checked against its range by msgspec, and
# one for any names (checked after, ``_MetricBounds.hold`` told the metrics' sizes).
_NativeId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_NativeTime = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_TIME)]
_KnownMetrics: Any = cast(Any, TypedDict)(
    "_KnownMetrics",
    {name: Annotated[float, msgspec.Meta(ge=low, le=high)] for name, (low, high) in _KNOWN_BOUNDS.items()},
    total=False,
)


class _NativeRow(TypedDict):
    probe_id: _NativeId
    target: _NativeId
    service: NotRequired[_NativeId | None]
    customer: NotRequired[_NativeId | None]
    time: _NativeTime
    metrics: Annotated[dict[str, float], msgspec.Meta(min_length=1, max_length=MAX_METRICS)]


class _NativeBatch(TypedDict):
    samples: list[_NativeRow]


class _KnownRow(TypedDict):
    probe_id: _NativeId
    target: _NativeId
    service: NotRequired[_NativeId | None]
    customer: NotRequired[_NativeId | None]
    time: _NativeTime
    metrics: _KnownMetrics


class _KnownBatch(TypedDict):
    samples: list[_KnownRow]


_NATIVE: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_NativeBatch)
_NATIVE_KNOWN: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_KnownBatch)
