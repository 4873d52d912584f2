"""Inbound message decoding: routing, native and TMF642 alarms, KPI samples, errors, dead letters."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from engine.errors import InvalidMessage
from engine.model.message_models import _NATIVE_KNOWN as native_known
from engine.model.messages import (
    EVENT_TYPES,
    MAX_METRICS,
    MAX_TIME,
    METRIC_NAME_PATTERN,
    METRIC_RANGES,
    ROUTED_KEPT,
    SEVERITIES,
    SEVERITY_RANK,
    Alarm,
    Decoded,
    Decoder,
    KpiSample,
    PlainAlarm,
    Routes,
    ThresholdInfo,
    dead_letter_record,
    kpi_sample,
    sample_row,
    topic_matches,
)
from engine.model.messages import _native_rows as native_rows
from engine.model.messages import _plain_alarm as plain_alarm
from engine.model.messages import _plain_rows as plain_rows
from engine.model.messages import plain_alarm as plain_fields
from engine.model.timeutil import format_time, parse_duration, parse_time

T0 = parse_time("2024-05-01T10:00:00Z")
ELEMENTS = frozenset({"olt-1", "olt-2"})
SERVICES = frozenset({"ftth", "iptv"})
CUSTOMERS = frozenset({"acme"})
DECODER = Decoder(known_elements=ELEMENTS, known_services=SERVICES, known_customers=CUSTOMERS.__contains__)

A = "soc/alarms/olt-1"
S = "soc/probes/p1"


def native(**fields: Any) -> dict[str, Any]:
    """A valid native alarm with ``fields`` overridden (a value of ``None`` removes the key)."""
    base: dict[str, Any] = {
        "ne_id": "olt-1",
        "severity": "major",
        "probable_cause": "lossOfSignal",
        "event_time": "2024-05-01T10:00:00Z",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def tmf(**fields: Any) -> dict[str, Any]:
    """A valid TMF642 v4 Alarm (raised) with ``fields`` overridden (``None`` removes the key)."""
    base: dict[str, Any] = {
        "id": "A-7",
        "alarmedObject": {"id": "olt-1", "@referredType": "OLT"},
        "perceivedSeverity": "Critical",
        "probableCause": "lossOfSignal",
        "alarmType": "CommunicationsAlarm",
        "specificProblem": "PON 1/1/3",
        "alarmDetails": "LOS on PON 1/1/3",
        "state": "raised",
        "sourceSystemId": "ems-1",
        "alarmRaisedTime": "2024-05-01T12:00:00+02:00",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def sample(**fields: Any) -> dict[str, Any]:
    """A valid KPI sample with ``fields`` overridden (``None`` removes the key)."""
    base: dict[str, Any] = {
        "probe_id": "p1",
        "target": "olt-1",
        "service": "ftth",
        "customer": "acme",
        "time": T0,
        "metrics": {"rtt_ms": 12.5, "loss_pct": 0},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def js(obj: Any) -> bytes:
    return orjson.dumps(obj)


def alarm(**fields: Any) -> Alarm:
    return Alarm.model_validate(native(**fields))


def kpi(**fields: Any) -> KpiSample:
    return KpiSample.model_validate(sample(**fields))


RAISED_TMF = Alarm(
    ne_id="olt-1",
    severity="critical",
    probable_cause="lossOfSignal",
    event_type="communicationsAlarm",
    specific_problem="PON 1/1/3",
    alarm_id="A-7",
    text="LOS on PON 1/1/3",
    event_time=T0,
)

THRESHOLD = {
    "indicator": "latency_ms",
    "direction": "up",
    "observed_value": 182.5,
    "threshold": 150.0,
    "clear": 120.0,
    "granularity": "mean over 300s",
}

VALID: list[Any] = [
    pytest.param(A, js(native()), alarm(event_time=T0), id="native-rfc3339"),
    pytest.param(A, js(native(event_time=T0)), alarm(event_time=T0), id="native-epoch-seconds"),
    pytest.param(A, js(native(event_time=1714557600)), alarm(event_time=T0), id="native-epoch-int"),
    pytest.param(A, js(native(severity="cleared")), alarm(severity="cleared"), id="native-clear"),
    pytest.param(A, js(native(severity="MaJoR")), alarm(severity="major"), id="severity-any-case"),
    pytest.param(
        A,
        js(native(vendorSeverity=3, x_extra={"a": 1})),
        alarm(),
        id="native-unknown-keys-ignored",
    ),
    pytest.param(
        A,
        js(
            native(
                event_type="equipmentAlarm",
                specific_problem="fan 2",
                alarm_id="X1",
                text="fan failure",
            )
        ),
        alarm(event_type="equipmentAlarm", specific_problem="fan 2", alarm_id="X1", text="fan failure"),
        id="native-all-fields",
    ),
    pytest.param(A, native(), alarm(), id="native-mapping-payload"),
    pytest.param(A, MappingProxyType(native()), alarm(), id="native-read-only-mapping"),
    pytest.param(A, js(native()).decode(), alarm(), id="native-str-payload"),
    pytest.param(A, js(tmf()), RAISED_TMF, id="tmf642-raised"),
    pytest.param(A, js(tmf(id=42)), RAISED_TMF.model_copy(update={"alarm_id": "42"}), id="tmf642-integer-id"),
    pytest.param(
        A,
        js(tmf(alarmType="Quality of Service Alarm")),
        RAISED_TMF.model_copy(update={"event_type": "qualityOfServiceAlarm"}),
        id="tmf642-x733-spelled-type",
    ),
    pytest.param(
        A,
        js(tmf(state="cleared", alarmClearedTime="2024-05-01T10:05:00Z")),
        RAISED_TMF.model_copy(update={"severity": "cleared", "event_time": T0 + 300}),
        id="tmf642-cleared",
    ),
    pytest.param(
        A,
        js(tmf(alarmClearedTime="2024-05-01T10:05:00Z")),
        RAISED_TMF.model_copy(update={"severity": "cleared", "event_time": T0 + 300}),
        id="tmf642-cleared-time-only",
    ),
    pytest.param(
        A,
        js(tmf(state="Cleared", perceivedSeverity=None, alarmChangedTime="2024-05-01T10:01:00Z")),
        RAISED_TMF.model_copy(update={"severity": "cleared", "event_time": T0 + 60}),
        id="tmf642-cleared-changed-time-fallback",
    ),
    pytest.param(
        A,
        js(tmf(state="cleared")),
        RAISED_TMF.model_copy(update={"severity": "cleared"}),
        id="tmf642-cleared-raised-time-fallback",
    ),
    pytest.param(
        A,
        js(
            {
                "perceivedSeverity": "minor",
                "alarmedObject": {"id": "olt-2"},
                "probableCause": "x",
                "alarmRaisedTime": T0,
            }
        ),
        alarm(ne_id="olt-2", severity="minor", probable_cause="x"),
        id="tmf642-minimal-default-type",
    ),
    pytest.param(
        A,
        js(native(event_type="qualityOfServiceAlarm", threshold_info=THRESHOLD)),
        alarm(event_type="qualityOfServiceAlarm", threshold_info=ThresholdInfo(**THRESHOLD)),
        id="native-threshold-info",
    ),
    pytest.param(
        A,
        js(
            tmf(
                crossedThresholdInformation={
                    "indicatorName": "latency_ms",
                    "direction": "UP",
                    "observedValue": "182.5",
                    "granularity": "15m",
                    "threshold": {"id": "thr-1", "name": "voice delay"},
                }
            )
        ),
        RAISED_TMF.model_copy(
            update={
                "threshold_info": ThresholdInfo(
                    indicator="latency_ms", direction="up", observed_value=182.5, granularity="15m"
                )
            }
        ),
        id="tmf642-crossed-threshold-information",
    ),
]


@pytest.mark.parametrize(("topic", "payload", "expected"), VALID)
def test_valid_alarms(topic: str, payload: Any, expected: Alarm) -> None:
    """Each valid alarm, native or TMF642, decodes to exactly the expected normalised Alarm."""
    assert DECODER.decode(topic, payload) == Decoded(topic, "alarm", expected, (), ())


VALID_SAMPLES: list[Any] = [
    pytest.param(js(sample()), (kpi(),), id="single-sample"),
    pytest.param(js(sample(time="2024-05-01T10:00:00Z")), (kpi(),), id="single-sample-rfc3339"),
    pytest.param(
        js(sample(service=None, customer=None)), (kpi(service=None, customer=None),), id="optional-absent"
    ),
    pytest.param(
        js({"samples": [sample(), sample(target="olt-2", metrics={"mos": 4.2})]}),
        (kpi(), kpi(target="olt-2", metrics={"mos": 4.2})),
        id="batch",
    ),
    pytest.param(
        js(sample(metrics={f"m{i}": i for i in range(64)})),
        (kpi(metrics={f"m{i}": i for i in range(64)}),),
        id="sixty-four-metrics",
    ),
    pytest.param(
        js(sample(metrics={"a" + "b" * 63: 1, "Z.x-y_z": -1.5})),
        (kpi(metrics={"a" + "b" * 63: 1, "Z.x-y_z": -1.5}),),
        id="metric-name-limits",
    ),
    pytest.param({"samples": (sample(),)}, (kpi(),), id="batch-tuple-in-mapping"),
]


@pytest.mark.parametrize(("payload", "expected"), VALID_SAMPLES)
def test_valid_samples(payload: Any, expected: tuple[KpiSample, ...]) -> None:
    """Each valid sample message decodes to the expected samples, all kept, nothing rejected."""
    decoded = DECODER.decode(S, payload)
    assert decoded == Decoded.of_samples(S, expected)
    assert all(isinstance(s.time, float) for s in decoded.samples)
    assert all(isinstance(v, float) for s in decoded.samples for v in s.metrics.values())


BIG = b'{"x": "' + b"a" * (70123 - 9) + b'"}'

INVALID: list[Any] = [
    pytest.param(
        A,
        js(native(threshold_info={**THRESHOLD, "direction": "sideways"})),
        "threshold_info.direction",
        "'sideways' is not one of",
        id="threshold-direction",
    ),
    pytest.param(
        A,
        js(native(threshold_info={**THRESHOLD, "observed_value": "high"})),
        "threshold_info.observed_value",
        "expected a number",
        id="threshold-value-not-a-number",
    ),
    pytest.param(
        A,
        js(
            tmf(
                crossedThresholdInformation={
                    "indicatorName": "loss",
                    "direction": "up",
                    "observedValue": "n/a",
                }
            )
        ),
        "crossedThresholdInformation.observedValue",
        "expected a number",
        id="tmf-threshold-value-not-a-number",
    ),
    # routing, size, syntax
    pytest.param("x/y", js(native()), "", "topic 'x/y' matches no alarm or sample filter", id="no-route"),
    pytest.param(A, BIG, "", "payload is 70123 bytes, limit is 65536", id="too-large"),
    pytest.param(A, "é" * 32769, "", "payload is 65538 bytes, limit is 65536", id="too-large-str-utf8-bytes"),
    pytest.param(
        A, b'{"ne_id": "olt-1",\n "x": }', "", "malformed JSON: unexpected character", id="bad-json"
    ),
    pytest.param(A, b'{"ne_id": "olt-1",\n "x": }', "", "line 2 column 7", id="bad-json-position"),
    pytest.param(A, b"", "", "malformed JSON: Input is a zero-length", id="empty-payload"),
    pytest.param(A, b'{"ne_id": "\xff"}', "", "malformed JSON: not valid UTF-8 at byte 11", id="bad-utf8"),
    pytest.param(S, b'{"metrics": {"a": NaN}}', "", "NaN and Infinity are not valid JSON numbers", id="nan"),
    pytest.param(S, b'{"metrics": {"a": -Infinity}}', "", "NaN and Infinity are not valid", id="infinity"),
    pytest.param(A, b"[1, 2]", "", "expected a mapping, got list", id="not-object-array"),
    pytest.param(A, b'"hello"', "", "expected a mapping, got string", id="not-object-string"),
    # native alarm fields
    pytest.param(A, js(native(ne_id=None)), "ne_id", "field required", id="missing-ne-id"),
    pytest.param(A, js(native(event_time=None)), "event_time", "field required", id="missing-time"),
    pytest.param(A, js(native(ne_id=12)), "ne_id", "expected a string, got integer", id="ne-id-int"),
    pytest.param(A, js(native(ne_id="")), "ne_id", "must not be empty", id="ne-id-empty"),
    pytest.param(A, js(native(ne_id="n" * 257)), "ne_id", "is 257 characters, limit is 256", id="ne-id-long"),
    pytest.param(A, js(native(severity=3)), "severity", "expected one of 'critical'", id="severity-int"),
    pytest.param(
        A,
        js(native(severity="fatal")),
        "severity",
        "'fatal' is not one of critical, major, minor, warning, indeterminate, cleared",
        id="severity-unknown",
    ),
    pytest.param(
        A,
        js(native(event_type="securityAlarm")),
        "event_type",
        "'securityAlarm' is not one of",
        id="event-type-unknown",
    ),
    pytest.param(A, js(native(probable_cause="")), "probable_cause", "must not be empty", id="cause-empty"),
    pytest.param(A, js(native(text="t" * 4097)), "text", "limit is 4096", id="text-long"),
    pytest.param(A, js(native(alarm_id=7)), "alarm_id", "expected a string, got integer", id="alarm-id-int"),
    pytest.param(A, js(native(event_time="soon")), "event_time", "not an RFC 3339 time", id="time-bad"),
    pytest.param(
        A, js(native(event_time="2024-05-01T10:00:00")), "event_time", "needs an offset", id="time-naive"
    ),
    pytest.param(
        A, js({**native(), "event_time": None}), "event_time", "epoch seconds, got null", id="time-null"
    ),
    pytest.param(A, js(native(event_time=True)), "event_time", "got boolean", id="time-bool"),
    pytest.param(A, js(native(event_time=-1)), "event_time", "must not be negative", id="time-negative"),
    pytest.param(
        A,
        js(native(event_time="1969-12-31T23:59:59Z")),
        "event_time",
        "time '1969-12-31T23:59:59Z' is before 1970-01-01T00:00:00Z (the Unix epoch)",
        id="time-rfc3339-before-epoch",
    ),
    pytest.param(
        S,
        js(sample(time="0001-01-01T00:00:00+01:00")),
        "time",
        "is before 1970-01-01",
        id="sample-time-year-1",
    ),
    pytest.param(
        A, js(native(event_time=1714557600000)), "event_time", "after year 9999", id="time-milliseconds"
    ),
    pytest.param(A, js(native(ne_id="olt-99")), "ne_id", "unknown element 'olt-99'", id="unknown-element"),
    # TMF642 alarm fields are reported under their TMF names
    pytest.param(
        A, js(tmf(alarmedObject={"href": "x"})), "alarmedObject.id", "field required", id="tmf-no-object-id"
    ),
    pytest.param(
        A, js({"perceivedSeverity": "major"}), "alarmedObject.id", "field required", id="tmf-no-object"
    ),
    pytest.param(
        A,
        js(tmf(alarmedObject="olt-1")),
        "alarmedObject",
        "expected a mapping, got string",
        id="tmf-object-not-object",
    ),
    pytest.param(
        A,
        js(tmf(alarmedObject={"id": 5})),
        "alarmedObject.id",
        "expected a string, got integer",
        id="tmf-object-id-int",
    ),
    pytest.param(
        A,
        js(tmf(perceivedSeverity="Huge")),
        "perceivedSeverity",
        "'Huge' is not one of",
        id="tmf-severity-unknown",
    ),
    pytest.param(A, js(tmf(probableCause=None)), "probableCause", "field required", id="tmf-no-cause"),
    pytest.param(
        A,
        js(tmf(alarmType="IntegrityViolation")),
        "alarmType",
        "'IntegrityViolation' is not one of",
        id="tmf-type-unsupported",
    ),
    pytest.param(
        A, js(tmf(alarmRaisedTime="noon")), "alarmRaisedTime", "not an RFC 3339 time", id="tmf-time-bad"
    ),
    pytest.param(
        A, js(tmf(alarmRaisedTime=None)), "alarmRaisedTime", "field required", id="tmf-no-raised-time"
    ),
    pytest.param(
        A,
        js(tmf(state="cleared", alarmRaisedTime=None)),
        "alarmClearedTime",
        "field required",
        id="tmf-clear-no-time",
    ),
    pytest.param(
        A,
        js(tmf(alarmClearedTime="later")),
        "alarmClearedTime",
        "not an RFC 3339 time",
        id="tmf-cleared-time-bad",
    ),
    pytest.param(A, js(tmf(id=True)), "id", "expected a string, got boolean", id="tmf-id-bool"),
    pytest.param(
        A, js(tmf(alarmDetails="d" * 5000)), "alarmDetails", "is 5000 characters", id="tmf-details-long"
    ),
    pytest.param(
        A,
        js(tmf(alarmedObject={"id": "olt-9"})),
        "alarmedObject.id",
        "unknown element 'olt-9'",
        id="tmf-unknown-element",
    ),
    # KPI samples
    pytest.param(S, js(sample(probe_id=None)), "probe_id", "field required", id="sample-no-probe"),
    pytest.param(S, js(sample(target=["olt-1"])), "target", "expected a string, got list", id="target-list"),
    pytest.param(S, js(sample(time=None)), "time", "field required", id="sample-no-time"),
    pytest.param(S, js(sample(time="x")), "time", "not an RFC 3339 time", id="sample-bad-time"),
    pytest.param(S, js(sample(metrics={})), "metrics", "must not be empty", id="metrics-empty"),
    pytest.param(S, js(sample(metrics=[1])), "metrics", "expected a mapping, got list", id="metrics-list"),
    pytest.param(
        S,
        js(sample(metrics={f"m{i}": 1 for i in range(65)})),
        "metrics",
        "has 65 metrics, limit is 64",
        id="metrics-too-many",
    ),
    pytest.param(
        S,
        js(sample(metrics={"9lives": 1})),
        "metrics.9lives",
        "metric name '9lives' does not match",
        id="metric-name-digit",
    ),
    pytest.param(
        S, js(sample(metrics={"a" * 65: 1})), "metrics." + "a" * 65, "does not match", id="metric-name-long"
    ),
    pytest.param(
        S, js(sample(metrics={"up": True})), "metrics.up", "expected a number, got boolean", id="metric-bool"
    ),
    pytest.param(
        S,
        js(sample(metrics={"mos": "4.1"})),
        "metrics.mos",
        "expected a number, got string",
        id="metric-string",
    ),
    pytest.param(
        S, sample(metrics={"mos": float("nan")}), "metrics.mos", "expected a finite number", id="metric-nan"
    ),
    pytest.param(
        S, sample(metrics={"big": 10**400}), "metrics.big", "number out of range", id="metric-int-overflow"
    ),
    pytest.param(
        S, sample(metrics={"mos": float("-inf")}), "metrics.mos", "expected a finite number", id="metric-inf"
    ),
    pytest.param(
        S, js(sample(target="olt-99")), "target", "unknown element 'olt-99'", id="sample-unknown-element"
    ),
    pytest.param(
        S, js(sample(service="voip")), "service", "unknown service type 'voip'", id="unknown-service"
    ),
    pytest.param(
        S, js(sample(customer="evil")), "customer", "unknown customer 'evil'", id="unknown-customer"
    ),
    # batches
    pytest.param(S, js({"samples": {}}), "samples", "expected a list, got mapping", id="batch-not-array"),
    pytest.param(S, js({"samples": []}), "samples", "batch is empty", id="batch-empty"),
    pytest.param(
        S,
        {"samples": [sample()] * 1001},
        "samples",
        "batch has 1001 samples, limit is 1000",
        id="batch-too-big",
    ),
    pytest.param(
        S, js({"samples": [1]}), "samples[0]", "expected a mapping, got integer", id="batch-item-int"
    ),
    pytest.param(
        S,
        js({"samples": [sample(time=None)]}),
        "samples[0].time",
        "field required",
        id="batch-all-bad",
    ),
]


@pytest.mark.parametrize(("topic", "payload", "field", "fragment"), INVALID)
def test_invalid(topic: str, payload: Any, field: str, fragment: str) -> None:
    """Each bad message raises InvalidMessage naming the offending field and saying what is wrong."""
    with pytest.raises(InvalidMessage) as caught:
        DECODER.decode(topic, payload)
    assert caught.value.topic == topic
    reasons = [reason for f, reason in caught.value.errors if f == field]
    assert reasons, caught.value.errors
    assert any(fragment in r for r in reasons), caught.value.errors


def test_every_bad_field_is_reported() -> None:
    """One message with several bad fields yields one (field, reason) per field, in field order."""
    bad = {"ne_id": 1, "severity": "fatal", "probable_cause": "", "event_time": "x", "vendor": None}
    with pytest.raises(InvalidMessage) as caught:
        DECODER.decode(A, bad)
    assert [f for f, _ in caught.value.errors] == ["ne_id", "severity", "probable_cause", "event_time"]


def test_size_limit_checked_before_parsing() -> None:
    """An oversized payload is refused for its size even when it is not JSON at all."""
    with pytest.raises(InvalidMessage) as caught:
        Decoder(max_bytes=10).decode(A, b"not json, and too long")
    assert caught.value.errors == [("", "payload is 22 bytes, limit is 10")]


def test_max_batch_is_configurable() -> None:
    """``max_batch`` bounds the number of samples in one message."""
    with pytest.raises(InvalidMessage) as caught:
        Decoder(max_batch=2).decode(S, js({"samples": [sample()] * 3}))
    assert caught.value.errors == [("samples", "batch has 3 samples, limit is 2")]


def test_partial_batch_keeps_good_samples() -> None:
    """Bad samples in a batch are reported by index; the good ones are kept in order."""
    batch = {
        "samples": [
            sample(),
            sample(time="yesterday"),
            "junk",
            sample(target="olt-2", metrics={"mos": 4.2}),
            sample(target="olt-99"),
        ]
    }
    decoded = DECODER.decode(S, js(batch))
    assert decoded.kind == "samples"
    assert decoded.alarm is None
    assert decoded.samples == (kpi(), kpi(target="olt-2", metrics={"mos": 4.2}))
    assert decoded.rejected == (
        ("samples[1].time", "not an RFC 3339 time: 'yesterday'"),
        ("samples[2]", "expected a mapping, got string"),
        ("samples[4].target", "unknown element 'olt-99'"),
    )


def test_partial_batch_of_reference_errors_only() -> None:
    """A batch whose samples all validate but some name unknown things still drops just those."""
    batch = {"samples": [sample(service="voip"), sample(), sample(customer="evil")]}
    decoded = DECODER.decode(S, js(batch))
    assert decoded.samples == (kpi(),)
    assert decoded.rejected == (
        ("samples[0].service", "unknown service type 'voip'"),
        ("samples[2].customer", "unknown customer 'evil'"),
    )


def test_batch_with_every_sample_bad_lists_all_errors() -> None:
    """When no sample in a batch is good the whole message is invalid, with every sample's errors."""
    batch = {"samples": [sample(time=None), sample(metrics={})]}
    with pytest.raises(InvalidMessage) as caught:
        DECODER.decode(S, js(batch))
    assert caught.value.errors == [
        ("samples[0].time", "field required"),
        ("samples[1].metrics", "must not be empty"),
    ]


def test_no_reference_checks_without_inventories() -> None:
    """Without known_* containers any element, service and customer is accepted."""
    decoded = Decoder().decode(S, js(sample(target="x", service="y", customer="z")))
    assert decoded.samples == (kpi(target="x", service="y", customer="z"),)
    assert Decoder().decode(A, js(native(ne_id="x"))).alarm == alarm(ne_id="x")


TOPICS: list[Any] = [
    pytest.param("soc/alarms/#", "soc/alarms/olt-1", True, id="hash-one-level"),
    pytest.param("soc/alarms/#", "soc/alarms/olt/1/2", True, id="hash-many-levels"),
    pytest.param("soc/alarms/#", "soc/alarms", True, id="hash-matches-parent"),
    pytest.param("soc/alarms/#", "soc/alarmsx", False, id="hash-not-prefix-of-level"),
    pytest.param("soc/alarms/#", "soc/probes/p1", False, id="hash-other-branch"),
    pytest.param("#", "any/thing", True, id="hash-alone"),
    pytest.param("#", "/leading", True, id="hash-leading-slash"),
    pytest.param("soc/+/olt", "soc/alarms/olt", True, id="plus-one-level"),
    pytest.param("soc/+/olt", "soc/a/b/olt", False, id="plus-not-two-levels"),
    pytest.param("soc/+", "soc/", True, id="plus-matches-empty-level"),
    pytest.param("soc/+", "soc", False, id="plus-needs-a-level"),
    pytest.param("+/+", "/finance", True, id="plus-plus-leading-slash"),
    pytest.param("+", "/finance", False, id="plus-not-leading-slash"),
    pytest.param("+/alarms/#", "soc/alarms", True, id="plus-then-hash"),
    pytest.param("soc/alarms", "soc/alarms", True, id="literal"),
    pytest.param("soc/alarms", "soc/alarms/", False, id="literal-trailing-slash"),
    pytest.param("soc/alarms", "SOC/alarms", False, id="literal-case-sensitive"),
    pytest.param("#", "$SYS/broker/load", False, id="hash-skips-dollar"),
    pytest.param("+/broker", "$SYS/broker", False, id="plus-skips-dollar"),
    pytest.param("$SYS/#", "$SYS/broker/load", True, id="explicit-dollar"),
    pytest.param("a/#", "a/$b", True, id="dollar-below-first-level"),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), TOPICS)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    """MQTT semantics: '+' is one level, '#' the rest incl. parent, '$' topics need explicit filters."""
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize("topic_filter", ["", "a/#/b", "a/b#", "a+/b", "#/"], ids=repr)
def test_malformed_filters_raise(topic_filter: str) -> None:
    """A malformed topic filter is a ValueError, both in topic_matches and when building a Decoder."""
    with pytest.raises(ValueError, match="filter"):
        topic_matches(topic_filter, "a/b")
    with pytest.raises(ValueError, match="filter"):
        Decoder(routes=Routes(alarms=(topic_filter,)))


def test_custom_routes_and_alarm_precedence() -> None:
    """Routes are configurable; a topic matching both filter sets is decoded as an alarm."""
    decoder = Decoder(routes=Routes(alarms=("net/+/events",), samples=("net/#",)))
    assert decoder.decode("net/olt/events", js(native())).kind == "alarm"
    assert decoder.decode("net/olt/kpi", js(sample())).kind == "samples"
    with pytest.raises(InvalidMessage, match="matches no alarm or sample filter"):
        decoder.decode("soc/alarms/x", js(native()))


def test_decoder_rejects_nonpositive_limits() -> None:
    """max_bytes and max_batch must be positive."""
    with pytest.raises(ValueError, match="max_bytes"):
        Decoder(max_bytes=0)
    with pytest.raises(ValueError, match="max_batch"):
        Decoder(max_batch=0)


IDENTITIES: list[Any] = [
    pytest.param(native(alarm_id="X1"), "id:X1", id="with-alarm-id"),
    pytest.param(native(), '["olt-1","lossOfSignal",""]', id="triple-no-specific-problem"),
    pytest.param(native(specific_problem="PON 3"), '["olt-1","lossOfSignal","PON 3"]', id="triple"),
    pytest.param(native(ne_id='a|"b'), '["a|\\"b","lossOfSignal",""]', id="triple-escaped"),
]


@pytest.mark.parametrize(("fields", "expected"), IDENTITIES)
def test_identity(fields: dict[str, Any], expected: str) -> None:
    """identity is 'id:' + alarm_id when given, else the JSON-encoded (ne_id, cause, specific problem)."""
    assert Alarm.model_validate(fields).identity == expected


def test_identity_is_unambiguous() -> None:
    """Fields containing the separator do not collide, and a missing specific problem equals an empty one."""
    assert alarm(ne_id="a|b", probable_cause="c").identity != alarm(ne_id="a", probable_cause="b|c").identity
    assert alarm(specific_problem="").identity == alarm().identity
    assert alarm(alarm_id='["olt-1","lossOfSignal",""]').identity != alarm().identity
    assert alarm(severity="cleared").identity == alarm(severity="critical").identity


def test_is_clear_and_severity_rank() -> None:
    """Only 'cleared' is a clear; SEVERITY_RANK orders cleared < indeterminate < … < critical."""
    assert alarm(severity="cleared").is_clear
    assert not alarm(severity="indeterminate").is_clear
    assert sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__) == [
        "cleared",
        "indeterminate",
        "warning",
        "minor",
        "major",
        "critical",
    ]
    assert SEVERITY_RANK["cleared"] == 0
    assert SEVERITY_RANK["critical"] == 5


def test_models_are_frozen() -> None:
    """Decoded alarms and samples cannot be modified after validation."""
    with pytest.raises(ValidationError):
        alarm().severity = "minor"
    with pytest.raises(ValidationError):
        kpi().target = "olt-2"


def errored(topic: str, payload: bytes | str | Mapping[str, Any]) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as caught:
        DECODER.decode(topic, payload)
    return caught.value


def test_dead_letter_record_shape() -> None:
    """The dead letter's JSON form holds the time (RFC 3339), topic, each error as field/reason,
    and the payload text."""
    payload = js(native(severity="fatal"))
    record = dead_letter_record(A, payload, errored(A, payload), now=T0 + 0.25).to_wire()
    assert record == {
        "time": "2024-05-01T10:00:00.250Z",
        "topic": A,
        "errors": [
            {
                "field": "severity",
                "reason": "'fatal' is not one of critical, major, minor, warning, indeterminate, cleared",
            }
        ],
        "payload": payload.decode(),
        "truncated": False,
    }
    assert orjson.loads(orjson.dumps(record)) == record


DEAD_PAYLOADS: list[Any] = [
    pytest.param(b"x" * 1024, "x" * 1024, False, id="bytes-at-limit"),
    pytest.param(b"x" * 1025, "x" * 1024, True, id="bytes-over-limit"),
    pytest.param(b"y" * 100_000, "y" * 1024, True, id="bytes-huge"),
    pytest.param("é" * 2000, "é" * 1024, True, id="str-counts-characters"),
    pytest.param("é".encode() * 2000, "é" * 1024, True, id="utf8-bytes-counts-characters"),
    pytest.param(b"ok \xff\xfe", "ok \ufffd\ufffd", False, id="bad-utf8-replaced"),
    pytest.param({"a": 1, "b": [True, None]}, '{"a":1,"b":[true,null]}', False, id="mapping-json-encoded"),
    pytest.param({"v": "z" * 2000}, '{"v":"' + "z" * 1018, True, id="mapping-truncated"),
]


@pytest.mark.parametrize(("payload", "excerpt", "truncated"), DEAD_PAYLOADS)
def test_dead_letter_payload_excerpt(payload: Any, excerpt: str, truncated: bool) -> None:
    """The payload excerpt is the first 1024 characters; ``truncated`` says whether more was cut off."""
    error = InvalidMessage(A, [("", "malformed JSON: whatever")])
    record = dead_letter_record(A, payload, error, now=0.0).to_wire()
    assert record["payload"] == excerpt
    assert record["truncated"] is truncated
    assert record["time"] == "1970-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("metrics", "field", "reason"),
    [
        ({"latency_ms": 1e308}, "metrics.latency_ms", "1e+308 is outside the allowed range 0 to 3.6e+06 ms"),
        ({"latency_ms": -1.0}, "metrics.latency_ms", "-1 is outside the allowed range 0 to 3.6e+06 ms"),
        ({"jitter_ms": -0.5}, "metrics.jitter_ms", "-0.5 is outside the allowed range 0 to 3.6e+06 ms"),
        ({"loss_pct": 100.5}, "metrics.loss_pct", "100.5 is outside the allowed range 0 to 100 %"),
        ({"mos": 0.9}, "metrics.mos", "0.9 is outside the allowed range 1 to 5"),
        ({"mos": 5.1}, "metrics.mos", "5.1 is outside the allowed range 1 to 5"),
        (
            {"throughput_mbps": -3},
            "metrics.throughput_mbps",
            "-3 is outside the allowed range 0 to 1e+07 Mbit/s",
        ),
        ({"available": 2}, "metrics.available", "2 is outside the allowed range 0 to 1"),
        ({"cpu_util": 2e12}, "metrics.cpu_util", "2e+12 is outside the allowed range -1e+12 to 1e+12"),
        ({"cpu_util": -1e300}, "metrics.cpu_util", "-1e+300 is outside the allowed range -1e+12 to 1e+12"),
    ],
)
def test_metric_values_outside_their_physical_range_are_refused(
    metrics: dict[str, float], field: str, reason: str
) -> None:
    """A finite value no probe can measure (1e308 ms of latency, a MOS of 0.9, 2e12 of an unknown
    metric) is refused naming the metric, the value and the allowed range, alone or in a batch."""
    with pytest.raises(InvalidMessage) as caught:
        DECODER.decode(S, js(sample(metrics=metrics)))
    assert caught.value.errors == [(field, reason)]
    decoded = DECODER.decode(S, js({"samples": [sample(), sample(metrics=metrics)]}))
    assert decoded.samples == (kpi(),)
    assert decoded.rejected == ((f"samples[1].{field}", reason),)
    bare = Decoder().decode(S, js({"samples": [sample(metrics=metrics), sample()]}))  # no inventories
    assert bare.rejected == ((f"samples[0].{field}", reason),)


@pytest.mark.parametrize(
    "metrics",
    [
        {"latency_ms": 0.0, "jitter_ms": 3_600_000.0, "loss_pct": 100.0, "mos": 1.0},
        {"mos": 5.0, "available": 0.0, "throughput_mbps": 0.0},
        {"cpu_util": -1e12, "temperature_c": -40.0, "other": 1e12},
    ],
)
def test_metric_values_at_the_range_bounds_are_accepted(metrics: dict[str, float]) -> None:
    """The bounds themselves are valid values; unknown metrics may be negative."""
    decoded = DECODER.decode(S, js(sample(metrics=metrics)))
    assert decoded.samples[0].metrics == metrics


# The batch fast path (one pydantic-core call over the JSON bytes) against the full path.

FAST_SAME = [
    pytest.param([sample()], id="one"),
    pytest.param([sample(), sample(target="olt-2", service=None, customer=None)], id="optional-absent"),
    pytest.param([sample(time="2024-05-01T12:00:00+02:00"), sample(time=T0 + 1)], id="rfc3339-and-epoch"),
    pytest.param([sample(time=int(T0), metrics={"loss_pct": 1, "mos": 3})], id="integers-become-floats"),
    pytest.param([sample(metrics={"b": 1.0, "a": 2.0, "loss_pct": 0.5})], id="metric-order"),
    pytest.param([sample(service="iptv", metrics={"latency_ms": 3_600_000, "mos": 1})], id="range-bounds"),
    pytest.param([sample(metrics={f"m{i}": float(i) for i in range(64)})], id="64-metrics"),
    pytest.param([sample(time=0)], id="epoch-zero"),
    pytest.param(
        [sample(metrics={"mos": 4.0, "loss_pct": 1}), sample(metrics={"loss_pct": 2, "mos": 3.5, "x.y": -3})],
        id="different-metrics",
    ),
    pytest.param(
        [sample(metrics={"mos": 4.0, "loss_pct": 1}), sample(metrics={"loss_pct": 2, "mos": 3.5})],
        id="same-metrics-other-order",
    ),
    pytest.param([sample(service=None), sample(customer=None), sample()], id="optional-mixed"),
]


@pytest.mark.parametrize("items", FAST_SAME)
def test_batch_fast_path_gives_what_the_full_path_gives(items: list[dict[str, Any]]) -> None:
    """A good batch takes the fast path, and decodes to exactly what the full path makes of it: the
    same samples (values, types, metric order, fields set), nothing rejected."""
    payload = js({"samples": items})
    fast = DECODER._batch_fast(S, payload)
    assert fast is not None
    full = DECODER._samples(S, orjson.loads(payload))
    assert fast == full == DECODER.decode(S, payload)
    for a, b in zip(fast.samples, full.samples, strict=True):
        assert list(a.metrics) == list(b.metrics)
        assert a.model_fields_set == b.model_fields_set
        assert all(type(v) is float for v in a.metrics.values())
        assert type(a.time) is float


FAST_REFUSED = [
    pytest.param(js(sample()), id="single-sample"),
    pytest.param(js({"samples": [sample(), sample(time="yesterday")]}), id="bad-time"),
    pytest.param(js({"samples": [sample(), sample(time=-1)]}), id="negative-time"),
    pytest.param(js({"samples": [sample(), sample(time=1e13)]}), id="time-after-9999"),
    pytest.param(js({"samples": [sample(), sample(metrics={"loss_pct": 101})]}), id="out-of-range"),
    pytest.param(js({"samples": [sample(), sample(metrics={"x": 2e12})]}), id="unknown-metric-range"),
    pytest.param(js({"samples": [sample(), sample(target="olt-99")]}), id="unknown-target"),
    pytest.param(js({"samples": [sample(), sample(service="voip")]}), id="unknown-service"),
    pytest.param(js({"samples": [sample(), sample(customer="evil")]}), id="unknown-customer"),
    pytest.param(js({"samples": [sample(), "junk"]}), id="junk-item"),
    pytest.param(js({"samples": [sample(), sample(metrics={"1bad": 1.0})]}), id="bad-metric-name"),
    pytest.param(js({"samples": [sample(), sample(metrics={"ok\n": 1.0})]}), id="metric-name-newline"),
    pytest.param(js({"samples": [sample(), sample(metrics={"mos": 0.5, "loss_pct": 1})]}), id="column-range"),
    pytest.param(
        js({"samples": [sample(metrics={"mos": 4.0, "x": 1}), sample(metrics={"mos": 4.0, "y": 1e13})]}),
        id="same-count-other-names",
    ),
    pytest.param(js({"samples": [sample(), sample(probe_id="")]}), id="empty-probe"),
    pytest.param(js({"samples": [sample(), sample(metrics={"a": True})]}), id="bool-value"),
    pytest.param(js({"samples": []}), id="empty"),
    pytest.param(js({"samples": [sample()] * 1001}), id="too-big"),
    pytest.param(b'{"samples": [{"probe_id": "p1", "target": "olt-1", "time": NaN}]}', id="nan"),
    pytest.param(js({"samples": [sample(extra="ignored")]}), id="extra-key-in-a-sample"),
    pytest.param(js({"samples": [sample()], "extra": 1}), id="extra-key-beside-the-samples"),
    pytest.param(b'{"samples": [' + js(sample()) + b",]}", id="malformed"),
]


@pytest.mark.parametrize("payload", FAST_REFUSED)
def test_batch_fast_path_leaves_anything_else_to_the_full_path(payload: bytes) -> None:
    """Whatever is not a wholly good batch is left to the full path (which names each problem)."""
    assert DECODER._batch_fast(S, payload) is None


def test_batch_with_an_extra_key_decodes_as_the_full_path_decodes_it() -> None:
    """An extra key is ignored, as the model ignores it: the full path keeps the sample, metric
    order and fields set as given."""
    payload = js({"samples": [sample(extra="ignored", metrics={"b": 1.0, "a": 2.0, "loss_pct": 0.5})]})
    decoded = DECODER.decode(S, payload)
    assert decoded == DECODER._samples(S, orjson.loads(payload))
    assert "extra" not in decoded.rows[0]
    assert list(decoded.rows[0]["metrics"]) == ["b", "a", "loss_pct"]


NON_FINITE = [b"1e999", b"-1e999", b"NaN", b"Infinity", b"-Infinity", b"1" + b"0" * 400]


_ALARM_X = b'{"ne_id": "olt-1", "severity": "major", "probable_cause": "x", "event_time": 1.5, '
_SAMPLE_X = b'{"probe_id": "p1", "target": "olt-1", "time": 1.5, "metrics": {"mos": 4.0}'


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (A, _ALARM_X + b'"x": @}'),
        (A, _ALARM_X.replace(b"1.5", b'"2024-05-01T10:00:00Z"') + b'"x": [@]}'),
        (A, _ALARM_X.replace(b"olt-1", b"olt\\u002d1") + b'"x": @}'),
        (S, b'{"samples": [' + _SAMPLE_X + b', "x": @}]}'),
        (S, b'{"samples": [' + _SAMPLE_X + b'}], "x": @}'),
        (S, b'{"samples": [' + _SAMPLE_X.replace(b'"time": 1.5', b'"time": @, "time": 1.5') + b"}]}"),
        (S, b'{"samples": [' + _SAMPLE_X.replace(b'{"mos"', b'{"mos": @, "mos"') + b"}]}"),
        (S, b'{"samples": [' + _SAMPLE_X + b'}], "samples": @, "samples": [' + _SAMPLE_X + b"}]}"),
    ],
    ids=[
        "alarm",
        "alarm-rfc3339-nested",
        "alarm-escaped",
        "sample-extra",
        "batch-extra",
        "sample-repeated-key",
        "metric-repeated-key",
        "batch-repeated-key",
    ],
)
@pytest.mark.parametrize("number", NON_FINITE, ids=lambda b: b.decode()[:12])
def test_an_extra_key_with_a_non_finite_number_is_refused_as_the_full_path_refuses_it(
    topic: str, payload: bytes, number: bytes
) -> None:
    """A number JSON cannot hold as a finite double (``1e999``, ``NaN``, ``Infinity``) is refused
    by the full path's parser even under a key the model ignores or a key given again later; the
    fast paths refuse it too (pydantic-core alone would parse and drop it), with the full path's
    words."""
    message = payload.replace(b"@", number)
    with pytest.raises(InvalidMessage) as caught:
        DECODER.decode(topic, message)
    [(field, reason)] = caught.value.errors
    assert field == ""
    assert reason.startswith("malformed JSON")


def test_metric_name_with_a_final_newline_is_refused_by_the_full_path() -> None:
    """The name pattern's ``$`` matches before a final newline in Python's ``re``, not in
    pydantic-core: such a name is refused, naming it (the fast path leaves it to the full path)."""
    decoded = DECODER.decode(S, js({"samples": [sample(), sample(metrics={"ok\n": 1.0})]}))
    assert decoded.samples == (kpi(),)
    assert decoded.rejected == (
        ("samples[1].metrics.ok\n", f"metric name 'ok\\n' does not match {METRIC_NAME_PATTERN}"),
    )


@pytest.mark.parametrize(
    "fields",
    [sample(), sample(service=None), sample(customer=None, service=None), {**sample(), "service": None}],
)
def test_a_row_and_its_model_are_the_same_sample(fields: dict[str, Any]) -> None:
    """``kpi_sample`` makes of a row the model ``KpiSample.model_validate`` makes (fields, fields
    set, dump), and ``sample_row`` of that model gives the row back."""
    row: Any = {k: v for k, v in fields.items() if k != "time"} | {"time": T0}
    model = KpiSample.model_validate(row)
    made = kpi_sample(row)
    assert made == model
    assert made.model_fields_set == model.model_fields_set
    assert made.model_dump() == model.model_dump()
    assert list(made.__dict__) == list(model.__dict__)
    assert sample_row(model) == row


def test_batch_with_some_bad_items_keeps_the_good_ones_in_order() -> None:
    """A batch of mostly good samples with bad ones spread through it (bad time, out-of-range value,
    unknown target, not a mapping, bad metric name): every good sample kept in order, every bad one
    reported by its index and field."""
    items: list[Any] = [sample(time=T0 + i) for i in range(10)]
    items[2] = sample(time=T0 + 2, metrics={"loss_pct": 140})
    items[5] = sample(time="soon")
    items[6] = sample(target="olt-42")
    items[8] = 7
    items[9] = sample(metrics={"bad name": 1})
    decoded = DECODER.decode(S, js({"samples": items}))
    assert [s.time for s in decoded.samples] == [T0 + i for i in (0, 1, 3, 4, 7)]
    assert decoded.rejected == (
        ("samples[2].metrics.loss_pct", "140 is outside the allowed range 0 to 100 %"),
        ("samples[5].time", "not an RFC 3339 time: 'soon'"),
        ("samples[6].target", "unknown element 'olt-42'"),
        ("samples[8]", "expected a mapping, got integer"),
        ("samples[9].metrics.bad name", f"metric name 'bad name' does not match {METRIC_NAME_PATTERN}"),
    )


# The alarm fast path (pydantic-core straight from the bytes) against the full path.

ALARMS_SAME = [
    pytest.param(native(), id="minimal"),
    pytest.param(native(severity="CRITICAL", event_type="equipmentAlarm", text="x" * 100), id="fields"),
    pytest.param(native(alarm_id="a-1", specific_problem="port 3", event_time=T0), id="epoch-and-id"),
    pytest.param(
        native(
            event_type="qualityOfServiceAlarm",
            threshold_info={"indicator": "mos", "direction": "down", "observed_value": 3, "threshold": 3.5},
        ),
        id="threshold-info",
    ),
    pytest.param(native(extra={"ignored": [1, 2]}), id="extra"),
]


@pytest.mark.parametrize("fields", ALARMS_SAME)
def test_alarm_fast_path_gives_what_the_full_path_gives(fields: dict[str, Any]) -> None:
    """A good native alarm takes the fast path and decodes to exactly the full path's alarm."""
    payload = js(fields)
    fast = DECODER.decode(A, payload).alarm
    assert fast is not None
    full = DECODER._alarm(A, orjson.loads(payload))
    assert fast == full
    assert fast.model_fields_set == full.model_fields_set


ALARMS_ODD = [
    pytest.param(js(tmf()), id="tmf642"),
    pytest.param(js(native(text="perceivedSeverity in the text")), id="tmf-word-anywhere"),
    pytest.param(
        b'{"ne_id": "olt-1", "severity": "major", "probable_cause": "x", "event_time": 1, '
        b'"alarmed\\u004fbject": {"id": "olt-2"}}',
        id="escaped-key",
    ),
    pytest.param(js(native(ne_id="olt-9")), id="unknown-element"),
    pytest.param(js(native(severity="loud")), id="bad-severity"),
    pytest.param(js(native(event_time=-5)), id="negative-time"),
    pytest.param(b"[1]", id="not-a-mapping"),
    pytest.param(b'{"ne_id": "olt-1",', id="malformed"),
]


@pytest.mark.parametrize("payload", ALARMS_ODD)
def test_alarm_decoder_gives_the_full_paths_alarm_or_words(payload: bytes) -> None:
    """TMF642 (an escaped key too), bad or unknown alarms: the decoder gives what the model gives
    of orjson's mapping, the same alarm or the same errors."""
    try:
        expected: Alarm | list[tuple[str, str]] | None = DECODER._alarm(A, DECODER._load(A, payload))
    except InvalidMessage as exc:
        expected = exc.errors
    try:
        got: Alarm | list[tuple[str, str]] | None = DECODER.decode(A, payload).alarm
    except InvalidMessage as exc:
        got = exc.errors
    assert got == expected


def test_escaped_tmf642_key_is_still_read_as_tmf642() -> None:
    """A TMF642 key spelled with a JSON escape is TMF642 for the decoder, as before the fast path."""
    payload = (
        b'{"id": "A-1", "alarmed\\u004fbject": {"id": "olt-2"}, "perceivedSeverity": "minor",'
        b' "probableCause": "x", "alarmRaisedTime": "2024-05-01T10:00:00Z"}'
    )
    alarm = DECODER.decode(A, payload).alarm
    assert alarm is not None
    assert alarm.ne_id == "olt-2"


def test_topic_kinds_are_remembered_within_a_bound() -> None:
    """The decoder remembers the kind of recent topics (a bounded table, cleared when full)."""
    decoder = Decoder()
    for i in range(5000):
        decoder.decode(f"soc/alarms/ne-{i}", js(native(ne_id=f"ne-{i}")))
    assert 0 < len(decoder._routed) <= 4096
    with pytest.raises(InvalidMessage) as caught:
        decoder.decode("elsewhere/x", js(native()))
    assert caught.value.errors == [("", "topic 'elsewhere/x' matches no alarm or sample filter")]
    with pytest.raises(InvalidMessage):
        decoder.decode("elsewhere/x", js(native()))  # remembered as matching nothing


# The plain-code alarm decoder (the common native shape) against pydantic.

_LETTERS = "abcXYZ019-_./:é中🙂 "
PLAIN_DECODER = Decoder()  # no known elements: the decoding alone


def _text(rng: random.Random, low: int, high: int) -> str:
    n = rng.choice([low, high, rng.randint(low, high)])
    return "".join(rng.choice(_LETTERS) for _ in range(n))


def _case(rng: random.Random, word: str) -> str:
    return "".join(c.upper() if rng.random() < 0.3 else c for c in word)


def _good_alarm(rng: random.Random) -> bytes:
    """A native alarm in the common shape, with every optional field, length bound and number
    spelling the plain decoder takes."""
    fields: dict[str, Any] = {
        "ne_id": _text(rng, 1, 256),
        "severity": _case(rng, rng.choice(SEVERITIES)),
        "probable_cause": _text(rng, 1, 256),
        "event_time": rng.choice([0.0, MAX_TIME, rng.uniform(0, MAX_TIME), rng.uniform(1.6e9, 1.8e9)]),
    }
    if rng.random() < 0.5:
        fields["event_type"] = rng.choice(EVENT_TYPES)
    for name, low, high in (("specific_problem", 0, 256), ("alarm_id", 1, 256), ("text", 0, 4096)):
        roll = rng.random()
        if roll < 0.4:
            fields[name] = _text(rng, low, high)
        elif roll < 0.6:
            fields[name] = None
    if rng.random() < 0.2:
        fields["threshold_info"] = None
    t = fields["event_time"]
    spelling = rng.choice([repr(t), f"{t:.17e}", f"{t:E}", f"{t:.3f}", str(int(t)), f'"{format_time(t)}"'])
    if spelling.startswith('"') or float(spelling) <= MAX_TIME:
        fields["event_time"] = "@time@"  # spelled as chosen below ("@" is in no generated text)
    keys = list(fields)
    rng.shuffle(keys)
    return js({k: fields[k] for k in keys}).replace(b'"@time@"', spelling.encode())


def _same(fast: Alarm, full: Alarm) -> None:
    assert fast == full
    assert list(fast.__dict__.items()) == list(full.__dict__.items())
    assert [type(v) for v in fast.__dict__.values()] == [type(v) for v in full.__dict__.values()]
    assert fast.model_fields_set == full.model_fields_set
    assert fast.__pydantic_extra__ == full.__pydantic_extra__
    assert fast.__pydantic_private__ == full.__pydantic_private__
    assert fast.model_dump_json() == full.model_dump_json()
    assert hash(fast) == hash(full)


def test_plain_alarm_gives_what_pydantic_gives_on_many_good_variants() -> None:
    """2,000 good native alarms in the common shape: the plain decoder takes each and makes the
    alarm ``model_validate_json`` makes (values, types, field order, fields set, hash)."""
    rng = random.Random(11)
    for _ in range(2000):
        payload = _good_alarm(rng)
        fast = plain_alarm(orjson.loads(payload))
        assert fast is not None, payload
        _same(fast, Alarm.model_validate_json(payload))
        decoded = PLAIN_DECODER.decode(A, payload).alarm
        assert decoded is not None
        _same(decoded, fast)


_ALARM_NAMES = tuple(Alarm.model_fields)


def test_plain_fields_are_the_models_fields_and_read_gives_them() -> None:
    """What the core's alarm path reads of a native alarm in the common shape (``PlainAlarm``, no
    model built): every field the model's, of the same type; ``Decoder.read`` gives it (and
    ``decode`` its model); ``with_time`` is ``model_copy`` of the event time."""
    rng = random.Random(12)
    for _ in range(2000):
        payload = _good_alarm(rng)
        parsed = orjson.loads(payload)
        fields = plain_fields(parsed)
        assert isinstance(fields, PlainAlarm), payload
        full = Alarm.model_validate_json(payload)
        for name in _ALARM_NAMES:
            assert getattr(fields, name) == getattr(full, name), name
            assert type(getattr(fields, name)) is type(getattr(full, name)), name
        _same(fields.model(), full)
        read = PLAIN_DECODER.read(A, payload, parsed)
        assert isinstance(read, PlainAlarm)
        _same(read.model(), full)
        read = PLAIN_DECODER.read(A, payload)  # parsed by the decoder (the daemon's way)
        assert isinstance(read, PlainAlarm)
        _same(read.model(), full)
        moved = fields.with_time(full.event_time + 1.5)
        _same(moved.model(), full.model_copy(update={"event_time": full.event_time + 1.5}))
        assert fields.event_time == full.event_time  # not changed by the copy


_WRONG: list[Any] = [None, 0, 1, 2.5, True, [], {}, "", "x" * 257]
_BAD_FIELDS: list[tuple[str, Any]] = [
    *((name, value) for name in ("ne_id", "probable_cause", "severity", "event_type") for value in _WRONG),
    *(("specific_problem", v) for v in [0, 2.5, True, [], {}, "x" * 257]),
    *(("alarm_id", v) for v in [0, 2.5, True, [], {}, "", "x" * 257]),
    *(("text", v) for v in [0, 2.5, True, [], {}, "x" * 4097]),
    ("severity", "loud"),
    ("severity", "clear"),
    ("event_type", "CommunicationsAlarm"),
    ("event_type", "securityAlarm"),
    *(("event_time", v) for v in [None, -1.0, -1e-300, MAX_TIME * 1.0000001, 1e300, -1, 10**12, True]),
    *(("event_time", v) for v in ["1700000000", "soon", "", "2024-05-01T10:00:00", "10000-01-01T00:00:00Z"]),
    ("event_time", []),
    ("event_time", {}),
    ("threshold_info", {"indicator": "mos", "direction": "down", "observed_value": 3.1}),
    ("threshold_info", {"indicator": "mos"}),
    ("threshold_info", 5),
    ("extra", 1),
    ("alarmedObject", {"id": "olt-1"}),
    ("perceivedSeverity", "major"),
]


def _expected(payload: bytes) -> Alarm | list[tuple[str, str]]:
    """What the full path gives: the model's alarm of orjson's mapping, or its errors."""
    try:
        return PLAIN_DECODER._alarm(A, PLAIN_DECODER._load(A, payload))
    except InvalidMessage as exc:
        return exc.errors


def _decoded(payload: bytes) -> Alarm | list[tuple[str, str]]:
    try:
        alarm = PLAIN_DECODER.decode(A, payload).alarm
    except InvalidMessage as exc:
        return exc.errors
    assert alarm is not None
    return alarm


def _decodes_as_before(payload: bytes) -> Alarm | list[tuple[str, str]]:
    """Assert the decoder gives ``payload`` the same alarm, or the same errors, as before the plain
    path (``_expected``); what it gave."""
    expected, got = _expected(payload), _decoded(payload)
    if isinstance(expected, Alarm):
        assert isinstance(got, Alarm)
        _same(got, expected)
    else:
        assert got == expected
    return expected


@pytest.mark.parametrize(("name", "value"), _BAD_FIELDS, ids=lambda v: repr(v)[:24])
@pytest.mark.parametrize("drop", [None, "ne_id", "severity", "probable_cause", "event_time"])
def test_plain_alarm_leaves_every_other_shape_to_pydantic(name: str, value: Any, drop: str | None) -> None:
    """A wrong type or value, a missing or extra key, an unusual but good field (threshold
    information): the plain decoder declines, and the decoder gives what the full path gives, the
    same alarm or the same dead-letter errors."""
    fields = native(event_time=T0)
    fields[name] = value
    if drop is not None and drop != name:
        del fields[drop]
    payload = js(fields)
    assert plain_alarm(orjson.loads(payload)) is None
    expected = _decodes_as_before(payload)
    if not isinstance(expected, Alarm):
        assert expected  # each bad alarm says why


@pytest.mark.parametrize("null", [None, "text", "specific_problem", "alarm_id", "threshold_info"])
@pytest.mark.parametrize("extra", [None, "extra", "alarmType"])
def test_plain_alarm_counts_its_keys_and_compares_them_when_one_is_null(
    null: str | None, extra: str | None
) -> None:
    """``plain_alarm`` counts the keys (the required four and the optional ones given a value) and
    compares them with the model's fields only when the count differs: a key given null is taken,
    an extra key is refused with or without one (the full path decides, as before)."""
    fields = native(event_time=T0, event_type="equipmentAlarm", text="t")
    if null is not None:
        fields[null] = None
    if extra is not None:
        fields[extra] = 1
    payload = js(fields)
    fast = plain_alarm(orjson.loads(payload))
    if extra is None:
        assert fast is not None
        _same(fast, Alarm.model_validate_json(payload))
    else:
        assert fast is None
    _decodes_as_before(payload)


@pytest.mark.parametrize(
    "time",
    [
        0,
        1700000000,
        253402300799,
        "2024-05-01T10:00:00Z",
        "2024-05-01T12:00:00.125+02:00",
        " 1970-01-01T00:00:00z ",
    ],
)
def test_plain_alarm_takes_integer_and_rfc3339_times_as_the_model_does(time: Any) -> None:
    """An event time the model's own ``_time`` reads (an integer, RFC 3339 text): the plain decoder
    takes it and makes the model's alarm (a float, the same fields set)."""
    payload = js(native(event_time=time))
    fast = plain_alarm(orjson.loads(payload))
    assert fast is not None
    assert type(fast.event_time) is float
    _same(fast, Alarm.model_validate_json(payload))
    _same(fast, _decoded(payload))  # type: ignore[arg-type]  # an alarm: ``_same`` asserts it


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ne_id": "olt-1", "severity": "major", "probable_cause": "x", "event_time": 1.5, "ne_id": 7}',
        b'{"ne_id": 7, "severity": "major", "probable_cause": "x", "event_time": 1.5, "ne_id": "olt-1"}',
        b'{"ne_id": "olt\\u002d1", "severity": "major", "probable_cause": "x", "event_time": 1.5}',
        b'{"ne_id": "olt\\"1", "severity": "major", "probable_cause": "x\\n", "event_time": 1.5}',
        b'{"ne_id": "olt-1", "severity": "major", "probable_cause": "x", "event_time": 1.5,',
        b'{"ne_id": "olt-1", "severity": "major", "probable_cause": "x", "event_time": 1e400}',
        b'{"ne_id": "olt-1", "severity": "major", "probable_cause": "x", "event_time": NaN}',
        b'{"ne_id": "\xff", "severity": "major", "probable_cause": "x", "event_time": 1.5}',
        b"[1.5]",
        b"1.5",
    ],
    ids=[
        "duplicate-bad-last",
        "duplicate-good-last",
        "unicode-escape",
        "escapes",
        "malformed",
        "huge-number",
        "nan",
        "bad-utf8",
        "array",
        "number",
    ],
)
def test_plain_alarm_odd_payloads_decode_as_before(payload: bytes) -> None:
    """Duplicate keys (the last one counts, for orjson as for pydantic), escapes, malformed JSON,
    invalid UTF-8: the same alarm or the same errors as before."""
    expected = _decodes_as_before(payload)
    if not isinstance(expected, Alarm):
        assert expected


@pytest.mark.parametrize("name", ["ne_id", "probable_cause", "severity", "text"])
def test_a_mapping_with_a_string_that_is_not_utf8_is_refused_as_the_model_refuses_it(name: str) -> None:
    """A payload given as a mapping (``Pipeline.feed`` of a dict) is not parsed by orjson, so its
    strings may hold a lone surrogate: the plain decoder took them, and the alarm failed later
    (``Alarm.identity``) as an internal error. Now the model checks them and names the field."""
    fields = native(event_time=T0)
    fields[name] = "a\ud800"
    with pytest.raises(InvalidMessage) as caught:
        PLAIN_DECODER.decode(A, fields)
    assert [field for field, _ in caught.value.errors] == [name]
    assert "unicode" in caught.value.errors[0][1] or name == "severity"  # severity: not a known one


@pytest.mark.parametrize(
    "payload",
    [
        b'{"samples": [' + _SAMPLE_X.replace(b'"time": 1.5', b'"time": 9.0, "time": 1.5') + b"}]}",
        b'{"samples": [' + _SAMPLE_X.replace(b'{"mos"', b'{"mos": 1.0, "loss_pct": 2, "mos"') + b"}]}",
        b'{"samples": [' + _SAMPLE_X.replace(b'"time": 1.5', b'"time": "2024-05-01T10:00:00Z"') + b"}]}",
    ],
    ids=["repeated-time", "repeated-metric", "colons-in-a-string"],
)
def test_a_batch_with_a_repeated_key_decodes_as_the_full_path_decodes_it(
    payload: bytes,
) -> None:
    """A batch with a repeated key (good values) or a colon inside a string decodes as the full
    path decodes it: the last value of a repeated key counts on both."""
    assert DECODER.decode(S, payload) == DECODER._samples(S, orjson.loads(payload))


@pytest.mark.parametrize(("topic", "field"), [(A, "event_time"), (S, "time")])
def test_a_mapping_with_a_time_too_large_for_a_float_is_refused_naming_it(topic: str, field: str) -> None:
    """A payload given as a mapping may hold an integer no float can hold (JSON text cannot reach
    the model with one: orjson refuses it): refused with the field named, not an OverflowError."""
    fields: dict[str, Any] = native(event_time=10**400) if topic == A else sample(time=10**400)
    with pytest.raises(InvalidMessage) as caught:
        PLAIN_DECODER.decode(topic, fields)
    assert caught.value.errors == [(field, "time must be a finite number (this integer is too large)")]


@pytest.mark.parametrize(
    ("parse", "value", "reason"),
    [
        (parse_time, 10**400, "time must be a finite number (this integer is too large)"),
        (parse_time, "1960-01-01T00:00:00+00:00", "is before 1970-01-01T00:00:00Z (the Unix epoch)"),
        (parse_duration, 10**400, "duration must be a finite number (this integer is too large)"),
        (parse_duration, -1, "duration must be a finite, non-negative number, got -1"),
    ],
    ids=["time-huge-int", "time-before-epoch", "duration-huge-int", "duration-negative"],
)
def test_times_and_durations_out_of_range_are_refused_in_words(
    parse: Callable[[object], float], value: object, reason: str
) -> None:
    """Configuration, CLI arguments and rule tests read times and durations with these: an integer
    too large for a float, or a time before the epoch, is a ValueError that says so."""
    with pytest.raises(ValueError, match=r"\w") as caught:
        parse(value)
    assert reason in str(caught.value)


# The batch's plain path (``_plain_rows``: orjson and checks by column) against the full path.

_KNOWN_VALUES = {"mos": (1.0, 5.0), "loss_pct": (0.0, 100.0), "latency_ms": (0.0, 3_600_000.0)}


def _good_value(rng: random.Random, low: float, high: float) -> float | int:
    """A value in range: a float, a bound, or an integer (which the model makes a float)."""
    pick = rng.random()
    if pick < 0.7:
        return rng.uniform(low, high)
    if pick < 0.85:
        return rng.choice([low, high])
    return rng.randint(int(low), int(high))


def _good_sample(rng: random.Random, names: list[str]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "probe_id": rng.choice(["p", "p-1", "x" * 256, "probe é ü ✓", "p\u2028q"]),
        "target": rng.choice(sorted(ELEMENTS)),
        "time": rng.choice(
            [0.0, -0.0, MAX_TIME, T0, T0 + rng.random(), rng.uniform(0, MAX_TIME), 0, int(T0), int(MAX_TIME)]
        ),
        "metrics": {n: _good_value(rng, *_KNOWN_VALUES.get(n, (-1e12, 1e12))) for n in names},
    }
    for optional, values in (
        ("service", [None, *sorted(SERVICES)]),
        ("customer", [None, *sorted(CUSTOMERS)]),
    ):
        if rng.random() < 0.4:
            item[optional] = rng.choice(values)
    keys = list(item)
    rng.shuffle(keys)
    return {k: item[k] for k in keys}


def _names(rng: random.Random) -> list[str]:
    pool = [*_KNOWN_VALUES, "x.y", "A-b_c", "m" * 64, *(f"u{i}" for i in range(70))]
    return rng.sample(pool, rng.choice([1, 2, 4, rng.randint(1, 64), 64]))


def _full(payload: bytes) -> Decoded | list[tuple[str, str]]:
    """What the full path gives: the models' rows of orjson's mapping, or the errors."""
    try:
        return DECODER._samples(S, DECODER._load(S, payload))
    except InvalidMessage as exc:
        return exc.errors


def _batch_decodes_as_before(payload: bytes) -> Decoded | list[tuple[str, str]]:
    """Assert the decoder gives ``payload`` what the full path gives (the same rows, value types,
    metric order and fields set, or the same errors); what it gave."""
    expected = _full(payload)
    try:
        got: Decoded | list[tuple[str, str]] = DECODER.decode(S, payload)
    except InvalidMessage as exc:
        got = exc.errors
    assert got == expected
    if isinstance(got, Decoded):
        assert isinstance(expected, Decoded)
        for a, b in zip(got.rows, expected.rows, strict=True):
            assert sorted(a) == sorted(b)  # the same keys (the plain path keeps the payload's order)
            assert list(a["metrics"]) == list(b["metrics"])
            assert all(type(v) is float for v in a["metrics"].values())
            assert type(a["time"]) is float
            assert repr(a["time"]) == repr(b["time"])  # -0.0 stays -0.0
        assert [s.model_fields_set for s in got.samples] == [s.model_fields_set for s in expected.samples]
        if got.columns is not None:  # what the plain path took of the rows, for the core
            _columns_agree(got)
    return expected


def _columns_agree(decoded: Decoded) -> None:
    """The columns a decoder gives with its rows are the rows' own (``SampleColumns``)."""
    columns, rows = decoded.columns, decoded.rows
    assert columns is not None
    assert columns.probes == [r["probe_id"] for r in rows]
    assert columns.targets == [r["target"] for r in rows]
    times = [r["time"] for r in rows]
    assert columns.times == times
    assert all(type(t) is float for t in columns.times)
    assert columns.distinct == {r["target"] for r in rows}
    assert (columns.earliest, columns.latest) == (min(times), max(times))
    assert columns.required_only == all(set(r) == {"probe_id", "target", "time", "metrics"} for r in rows)


def test_plain_rows_give_what_the_full_path_gives_on_many_good_batches() -> None:
    """1,000 good batches (1 to 40 samples, the same metrics in all or not, optional fields absent,
    null or set, strings and metric counts at their bounds, non-ASCII, integer times and values,
    keys in any order): the plain path takes each, and the decoder gives what the full path gives
    (integers made floats, as the model makes them), with the rows' columns."""
    rng = random.Random(7)
    for _ in range(1000):
        shared = _names(rng)
        n = rng.randint(1, 40)
        items = [_good_sample(rng, shared if rng.random() < 0.7 else _names(rng)) for _ in range(n)]
        payload = js({"samples": items})
        assert plain_rows(orjson.loads(payload), DECODER.max_batch) is not None, payload
        assert isinstance(_batch_decodes_as_before(payload), Decoded)
        taken = DECODER.decode(S, payload)
        if taken.metric_names is not None:  # the plain path took it (not the models' fallback)
            _columns_agree(taken)


_WRONG_IDS: list[Any] = [None, 0, 2.5, True, [], {}, "", "x" * 257]
_WRONG_TIMES: list[Any] = [None, -1.0, -1e-300, MAX_TIME * 1.0000001, 1e300, True, [], {}]
_OTHER_TIMES: list[Any] = [0, 1700000000, "2024-05-01T10:00:00Z", "soon", ""]
_WRONG_METRICS: list[Any] = [None, [], {}, "mos", 5, 4.0, [["mos", 4.0]]]
_OTHER_VALUES: list[Any] = [4, True, None, "4", [], {}, 0.5, 5.5]
_BAD_SAMPLE_FIELDS: list[tuple[str, Any]] = [
    *((name, v) for name in ("probe_id", "target") for v in _WRONG_IDS),
    *((name, v) for name in ("service", "customer") for v in [*_WRONG_IDS[1:], "nobody"]),
    *(("time", v) for v in _WRONG_TIMES + _OTHER_TIMES),
    *(("metrics", v) for v in _WRONG_METRICS),
    *(("metrics", {"mos": v}) for v in _OTHER_VALUES),
    ("metrics", {"1bad": 1.0}),
    ("metrics", {"ok\n": 1.0}),
    ("metrics", {"x": 2e12}),
    ("metrics", {f"m{i}": 1.0 for i in range(65)}),
    ("metrics", {"mos": 4.0, "loss_pct": 1}),
    ("extra", 1),
    ("target", "olt-99"),
]


@pytest.mark.parametrize(("name", "value"), _BAD_SAMPLE_FIELDS, ids=lambda v: repr(v)[:24])
@pytest.mark.parametrize("drop", [None, "probe_id", "target", "time", "metrics"])
@pytest.mark.parametrize("where", [0, 1])
def test_plain_rows_leave_every_other_shape_to_the_models(
    name: str, value: Any, drop: str | None, where: int
) -> None:
    """A wrong type or value, a missing or extra key, an integer or RFC 3339 time, an integer value,
    in the first or the second sample of a batch: the decoder gives what the full path gives, the
    same samples (an integer made a float, as the model makes it) or the same dead-letter errors
    naming each bad one."""
    items = [sample(metrics={"mos": 4.0, "loss_pct": 1.0}) for _ in range(3)]
    items[where][name] = value
    if drop is not None and drop != name:
        del items[where][drop]
    payload = js({"samples": items})
    _batch_decodes_as_before(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"samples": [' + _SAMPLE_X.replace(b'"time": 1.5', b'"time": "x", "time": 1.5') + b"}]}",
        b'{"samples": [' + _SAMPLE_X.replace(b'"time": 1.5', b'"time": 1.5, "time": -1.0') + b"}]}",
        b'{"samples": [' + _SAMPLE_X.replace(b'{"mos"', b'{"mos": 1.0, "loss_pct": 2, "mos"') + b"}]}",
        b'{"samples": [' + _SAMPLE_X.replace(b'"p1"', b'"p\\u0031"') + b"}]}",
        b'{"samples": [' + _SAMPLE_X.replace(b'"p1"', b'"p\\ud800"') + b"}]}",
        b'{"samples": [' + _SAMPLE_X + b"}, 5]}",
        b'{"samples": [' + _SAMPLE_X + b'}], "samples": []}',
        b'{"samples": {"a": 1}}',
        b"[]",
    ],
    ids=[
        "repeated-bad-first",
        "repeated-bad-last",
        "repeated-metric",
        "escape",
        "lone-surrogate",
        "junk-item",
        "repeated-samples",
        "mapping",
        "array",
    ],
)
def test_plain_rows_odd_payloads_decode_as_the_full_path_decodes_them(payload: bytes) -> None:
    """Repeated keys (the last one counts, for orjson on both paths), escapes, a lone surrogate, junk
    items, a batch that is not a list: the same samples or the same errors as the full path."""
    _batch_decodes_as_before(payload)


# The batch's native path (``_native_rows``: msgspec) against the full path (orjson and the models).


def _fresh() -> Decoder:
    """A decoder like ``DECODER`` that has seen no topic (none remembered as naming other metrics)."""
    return Decoder(known_elements=ELEMENTS, known_services=SERVICES, known_customers=CUSTOMERS.__contains__)


def test_native_rows_take_the_good_batches_and_give_what_the_full_path_gives() -> None:
    """1,000 good batches as the plain path's test makes them, half of them of known metrics only
    (no escape in any): msgspec takes each, into
    the rows and columns the plain path gives, by the decoder of known metrics when it names no
    other (else it skipped a key: False); a decoder that has seen no topic, and one that reads the
    topic with the decoder of any names, give what the full path gives."""
    rng = random.Random(7)
    known = 0
    for _ in range(1000):
        n = rng.randint(1, 40)
        if rng.random() < 0.5:  # known metrics only, each within its range
            shared = rng.sample(sorted(METRIC_RANGES), rng.randint(1, len(METRIC_RANGES)))
            items = [_good_sample(rng, shared if rng.random() < 0.7 else shared[:1]) for _ in range(n)]
            for item in items:
                item["metrics"] = {
                    m: _good_value(rng, METRIC_RANGES[m].low, METRIC_RANGES[m].high) for m in item["metrics"]
                }
        else:
            shared = _names(rng)
            items = [_good_sample(rng, shared if rng.random() < 0.7 else _names(rng)) for _ in range(n)]
        payload = js({"samples": items})
        plain = plain_rows(orjson.loads(payload), DECODER.max_batch)
        assert plain is not None
        taken = native_rows(payload, DECODER.max_batch)
        assert taken, payload
        by_known = native_rows(payload, DECODER.max_batch, native_known)
        if all(set(item["metrics"]) <= set(METRIC_RANGES) for item in items):
            assert by_known == taken
            known += 1
        else:
            assert by_known is False
        rows, metrics, columns, sizes = taken
        assert rows == plain[0]
        assert metrics == plain[1]
        assert columns == plain[2]
        assert sizes == set(map(len, metrics))
        fresh = _fresh()
        assert fresh.decode(S, payload) == _full(payload)
        assert fresh.decode(S, payload) == _full(payload)  # (again: the topic remembered or not)
        assert isinstance(_batch_decodes_as_before(payload), Decoded)
    assert known > 400


@pytest.mark.parametrize(
    ("metrics", "names"),
    [
        ([{"mos": 4.0, "loss_pct": 1.0}, {"loss_pct": 2, "mos": 3.0}], frozenset({"mos", "loss_pct"})),
        ([{"mos": 4.0, "loss_pct": 1.0}, {"mos": 4.0, "jitter_ms": 1.0}], None),
        ([{"mos": 4.0}, {"mos": 4.0, "jitter_ms": 1.0}], None),
        ([{"mos": 4.0}, {}], "refused"),
        ([{"mos": 4.0}, {"mos": 5.5}], "refused"),
        ([{"mos": 4.0}, {"available": -0.5}], "refused"),
        ([{"mos": 4.0}, {"mos": True}], "refused"),
    ],
    ids=["same", "same-count-other-names", "other-count", "empty", "mos-range", "available-range", "bool"],
)
def test_known_metrics_decode_as_the_full_path_with_their_names(
    metrics: list[dict[str, Any]], names: frozenset[str] | str | None
) -> None:
    """Batches of known metrics, by the decoder of known metrics: the same samples or errors as the
    full path; the names given only when every sample carries the same ones; an empty mapping, a
    value out of its metric's range or not a number left to the full path, which names it."""
    payload = js({"samples": [sample(metrics=m) for m in metrics]})
    expected = _full(payload)
    decoder = _fresh()
    got = decoder.decode(S, payload)
    assert got == expected
    if names == "refused":  # the second sample named as bad, the first kept
        assert decoder._batch_fast(S, payload) is None
        assert len(got.rows) == 1
        assert got.rejected
    else:
        assert got.metric_names == names
        assert decoder._other_metrics == set()


def test_a_topic_naming_other_metrics_is_read_by_the_decoder_of_any_names() -> None:
    """A batch naming a metric that is not a known one makes its topic read by the decoder of any
    names from then (the decoder of known metrics would skip it), within a bound; the same samples
    either way."""
    decoder = _fresh()
    plain = js({"samples": [sample(metrics={"mos": 4.0})]})
    other = js({"samples": [sample(metrics={"mos": 4.0, "x.y": 3.0})]})
    assert decoder.decode(S, plain) == _full(plain)
    assert decoder._other_metrics == set()
    assert decoder.decode(S, other) == _full(other)
    assert decoder._other_metrics == {S}
    assert decoder.decode(S, plain) == _full(plain)
    for i in range(ROUTED_KEPT + 1):
        decoder.decode(f"{S}/{i}", other)
    assert len(decoder._other_metrics) <= ROUTED_KEPT


_ROW = b'{"probe_id": "p:1", "target": "olt-1", "time": 1.5, "metrics": {"mos": 4.0}'


@pytest.mark.parametrize(
    "payload",
    [
        b'{"samples": [' + _ROW + b', "x": 1}]}',
        b'{"samples": [' + _ROW + b', "x": {"y": 1, "z": "a:b"}}]}',
        b'{"samples": [' + _ROW + b'}], "x": 1}',
        b'{"samples": [' + _ROW.replace(b'"time": 1.5', b'"time": 2.5, "time": 1.5') + b"}]}",
        b'{"samples": [' + _ROW.replace(b'{"mos"', b'{"mos": 3.0, "mos"') + b"}]}",
        b'{"samples": [' + _ROW + b'}], "samples": [' + _ROW + b"}]}",
        b'{"samples": [' + _ROW.replace(b'"p:1"', b'"p\\u003a1"') + b', "x": 1}]}',
        b'{"samples": [' + _ROW.replace(b'"p:1"', b'"p\\u00311"') + b"}]}",
    ],
    ids=[
        "extra",
        "extra-nested",
        "batch-extra",
        "repeated",
        "metric-repeated",
        "batch-repeated",
        "escape-extra",
        "escape",
    ],
)
def test_native_rows_leave_a_skipped_or_repeated_key_and_any_escape_to_orjson(payload: bytes) -> None:
    """msgspec skips a key its types do not name (checking less of its value than orjson does) and
    takes the last of a repeated key: such a payload, and any with an escape, is left to orjson's
    path (the colons counted: a string's colons are not a key's), which decodes it as before."""
    expected = None if b"\\" in payload else False
    assert native_rows(payload, DECODER.max_batch) is expected
    assert native_rows(payload, DECODER.max_batch, native_known) is expected
    _batch_decodes_as_before(payload)


def test_native_rows_take_colons_in_the_strings() -> None:
    """A colon in a probe, target, service or customer is a string's, not a key's: taken."""
    payload = js(
        {"samples": [sample(probe_id="a:b:c", service="iptv", customer="c-1"), sample(probe_id=":")]}
    )
    assert native_rows(payload, DECODER.max_batch) is not None
    _batch_decodes_as_before(payload)


def test_native_rows_refuse_nothing_else_that_orjson_takes_otherwise() -> None:
    """2,000 good batches with one byte changed, deleted or repeated: whatever the decoder makes of
    each (taken by msgspec, by orjson's paths or refused) is what the full path makes of it."""
    rng = random.Random(11)
    alphabet = b'{}[]:,"\\ 0123456789.eE-+tfnulx\x00\x7f\xff'
    for _ in range(2000):
        items = [_good_sample(rng, ["mos", "loss_pct"]) for _ in range(rng.randint(1, 3))]
        payload = bytearray(js({"samples": items}))
        i = rng.randrange(len(payload))
        change = rng.random()
        if change < 0.5:
            payload[i] = rng.choice(alphabet)
        elif change < 0.75:
            del payload[i]
        else:
            payload[i:i] = payload[i : i + rng.randint(1, 12)]
        expected = _batch_decodes_as_before(bytes(payload))
        try:  # by the decoder of known metrics (a decoder that has seen no topic)
            got: Decoded | list[tuple[str, str]] = _fresh().decode(S, bytes(payload))
        except InvalidMessage as exc:
            got = exc.errors
        assert got == expected


# A payload given parsed (the replay parses each line whole and passes the payload's mapping along
# with its bytes): the decoder does not parse it again and decides exactly as from the bytes.

_ODD_JSON = [
    b'{"a": 1e5, "b": -0.0, "c": -0, "d": 1E-7, "e": 18446744073709551615, "f": 18446744073709551616}',
    b'{"a": "\\u00e9\\u2603\\ud83d\\ude00\\/\\"\\\\\\b\\f\\n\\r\\t\\u0001", "b": [1, [2, {"c": null}]]}',
    b'{"a": 1, "a": 2, "b": {"x": true, "x": false}}',
    b'{"n": 123456789012345678901234567890, "m": -9223372036854775809,'
    b' "p": 5e-324, "q": 1.7976931348623157e308}',
]


def _typed(value: Any) -> Any:
    """A value with the type of every part spelled out (``1 == 1.0`` and ``0.0 == -0.0`` in Python)."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize("text", _ODD_JSON)
def test_orjson_parses_its_own_output_back_to_the_same_values(text: bytes) -> None:
    """What the replay relies on to hand the decoder its parsed payload: orjson parses what it wrote
    of a parsed value back to the same value, types, key order and float spelling included."""
    value = orjson.loads(text)
    assert _typed(orjson.loads(orjson.dumps(value))) == _typed(value)


def _read(decoder: Decoder, topic: str, payload: bytes, parsed: dict[str, Any] | None) -> Any:
    try:
        decoded = decoder.decode(topic, payload, parsed)
    except InvalidMessage as exc:
        return exc.errors
    if decoded.alarm is not None:
        alarm = decoded.alarm
        return ("alarm", list(alarm.__dict__.items()), sorted(alarm.model_fields_set))
    return ("samples", decoded.rows, decoded.rejected)


def _given_parsed_payloads() -> list[tuple[str, bytes]]:
    rng = random.Random(5)
    good = [(A, _good_alarm(rng)) for _ in range(300)]
    bad = [(A, js({**native(), name: value})) for name, value in _BAD_FIELDS]
    return [
        *good,
        *bad,
        (A, js(tmf())),
        (A, js(native(ne_id="olt-9"))),
        (A, js(native(text="é" * 3000))),  # over the small decoder's limit in bytes, not in characters
        (S, js(sample())),
        (S, js({"samples": [sample(), sample(metrics={"bad name": 1})]})),
        (S, js({"samples": [sample()] * 3})),
        ("elsewhere/x", js(native())),
    ]


@pytest.mark.parametrize(
    "decoder", [DECODER, PLAIN_DECODER, Decoder(max_bytes=4000)], ids=["known", "plain", "small"]
)
def test_a_payload_given_parsed_decodes_as_its_bytes_do(decoder: Decoder) -> None:
    """``decode(topic, payload, parsed)``, ``parsed`` being orjson's mapping of ``payload``: the same
    alarm (values, types, fields set), samples or errors as ``decode(topic, payload)``, the size
    limit still counted on the bytes."""
    sizes = 0
    for topic, payload in _given_parsed_payloads():
        expected = _read(decoder, topic, payload, None)
        assert _read(decoder, topic, payload, orjson.loads(payload)) == expected, payload[:200]
        sizes += isinstance(expected, list) and expected[0][1].startswith("payload is")
    assert (sizes > 0) == (decoder.max_bytes == 4000)  # the limit was met, where it is small


def test_the_known_metrics_fit_in_one_sample() -> None:
    """The known-metrics decoder (``_NATIVE_KNOWN``) sets no limit on a sample's number of metrics:
    it takes only known names, each once, so it relies on there being no more of them than a sample
    may carry (``MAX_METRICS``, which the other paths check); past that, a sample the other paths
    refuse would be taken (found by the review of 2026-12-07)."""
    assert len(METRIC_RANGES) <= MAX_METRICS
