"""Prometheus metrics: names and types (the API), the private registry, label checks, the verbs."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from engine.service.metrics import MAX_INVALID_FIELDS, Metrics, field_label

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"

# name → (type, labels): the metric names and labels are part of the API (docs/api.md).
API: dict[str, tuple[str, tuple[str, ...]]] = {
    "soc_messages_total": ("counter", ("source", "kind", "outcome")),
    "soc_samples_total": ("counter", ()),
    "soc_invalid_total": ("counter", ("field",)),
    "soc_intake_queue_depth": ("gauge", ()),
    "soc_intake_drops_total": ("counter", ("source",)),
    "soc_rule_firings_total": ("counter", ()),
    "soc_rule_firings_by_rule_total": ("counter", ("ruleset", "rule")),
    "soc_alarms_active": ("gauge", ()),
    "soc_incidents": ("gauge", ("state", "priority")),
    "soc_incident_transitions_total": ("counter", ("event",)),
    "soc_outbox_depth": ("gauge", ("receiver",)),
    "soc_deliveries_total": ("counter", ("receiver", "result")),
    "soc_delivery_seconds": ("histogram", ("receiver",)),
    "soc_processing_seconds": ("histogram", ()),
    "soc_journal_commit_seconds": ("histogram", ()),
    "soc_mqtt_reconnects_total": ("counter", ()),
    "soc_dead_letters_total": ("counter", ()),
    "soc_dead_letters_kept": ("gauge", ()),
    "soc_dead_letters_unpublished": ("gauge", ()),
    "soc_dead_letters_dropped_total": ("counter", ()),
    "soc_reloads_total": ("counter", ("result",)),
    "soc_build_info": ("gauge", ("version",)),
    "soc_input_notices_total": ("counter", ("kind",)),
    "soc_core_part_failures_total": ("counter", ("part",)),
    "soc_core_quarantined": ("gauge", ("part",)),
    "soc_dashboard_logins_total": ("counter", ("result",)),
    "soc_dashboard_lockouts_total": ("counter", ()),
    "soc_http_auth_refused_total": ("counter", ("result",)),
    "soc_http_lockouts_total": ("counter", ()),
    "soc_dashboard_history_dropped_total": ("counter", ()),
}


def samples(m: Metrics) -> dict[str, list[Sample]]:
    """Every sample of the rendered text, by sample name, read back with Prometheus' own parser."""
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(m: Metrics, name: str, **labels: str) -> float:
    """The value of the one sample called ``name`` with exactly ``labels``."""
    found = [s.value for s in samples(m).get(name, []) if s.labels == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_every_api_metric_is_exposed_with_its_type_and_labels() -> None:
    """The rendered text has exactly the documented families, types and label names."""
    m = Metrics(version="1.2.3", receivers=["noc"])
    m.delivery("noc", "ok", 0.1)
    m.invalid(["ne_id"])
    m.rule_firings_by_rule("default", "topology-root-cause", 0)
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        if family.name.endswith("_created"):
            continue  # prometheus_client's creation timestamps of counters and histograms
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        found[name] = (family.type, tuple(sorted(labels)))
    assert found == {name: (kind, tuple(sorted(labels))) for name, (kind, labels) in API.items()}


def test_docs_list_every_metric() -> None:
    """docs/api.md names each metric of the API, so the reference cannot fall behind the code."""
    text = DOCS.read_text(encoding="utf-8")
    missing = [name for name in API if f"`{name}`" not in text]
    assert missing == []


def test_the_registry_is_private() -> None:
    """Two Metrics never share series, and nothing is registered on prometheus_client's global registry."""
    a, b = Metrics(), Metrics()
    a.message("mqtt", "alarm", "accepted", 3)
    assert value(a, "soc_messages_total", source="mqtt", kind="alarm", outcome="accepted") == 3
    assert value(b, "soc_messages_total", source="mqtt", kind="alarm", outcome="accepted") == 0
    assert "soc_messages_total" not in prometheus_client.generate_latest().decode()
    assert a.content_type.startswith("text/plain")


def test_fixed_vocabularies_start_at_zero() -> None:
    """Series of fixed label sets exist from the start at 0, so rate() and absent() work at once."""
    m = Metrics(receivers=["noc", "pager"])
    got = samples(m)
    assert len(got["soc_messages_total"]) == 3 * 3 * 2
    assert {s.labels["source"] for s in got["soc_intake_drops_total"]} == {"mqtt", "http", "replay"}
    assert {s.labels["event"] for s in got["soc_incident_transitions_total"]} == {
        "opened",
        "updated",
        "resolved",
    }
    assert {s.labels["result"] for s in got["soc_reloads_total"]} == {"ok", "error"}
    assert len(got["soc_incidents"]) == 3 * 5
    assert {s.labels["receiver"] for s in got["soc_outbox_depth"]} == {"noc", "pager"}
    values = [s.value for name in got if not name.endswith(("_created", "_info")) for s in got[name]]
    assert set(values) == {0}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda m: m.message("kafka", "alarm", "accepted"),
            "source must be one of mqtt, http, replay, got 'kafka'",
        ),
        (lambda m: m.message("mqtt", "alarms", "accepted"), "kind must be one of alarm, samples, unknown"),
        (lambda m: m.message("mqtt", "alarm", "ok"), "outcome must be one of accepted, invalid, got 'ok'"),
        (lambda m: m.intake_drop("amqp"), "source must be one of"),
        (lambda m: m.transition("closed"), "event must be one of opened, updated, resolved, got 'closed'"),
        (lambda m: m.reload("failed"), "result must be one of ok, error, got 'failed'"),
        (lambda m: m.message("mqtt", "alarm", "accepted", -1), "a counter only goes up"),
        (lambda m: m.samples(-2), "a counter only goes up"),
        (lambda m: m.incidents_gauge({("outage", 6): 1}), "priority must be 1..5, got 6"),
        (lambda m: m.incidents_gauge({("outage", 1): -1}), "an incident count cannot be negative, got -1"),
        (lambda m: m.delivery("noc", "", 0.1), "result must not be empty"),
    ],
)
def test_label_typos_raise_at_once(call: Callable[[Metrics], object], message: str) -> None:
    """A label value outside its vocabulary, or a negative increment, is a ValueError naming it."""
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        call(Metrics())


def test_intake_counters_and_gauges() -> None:
    """The intake verbs move the series they name, by the amounts given."""
    m = Metrics()
    m.message("http", "samples", "invalid")
    m.message("http", "samples", "invalid", 2)
    m.samples(40)
    m.intake_depth(17)
    m.intake_drop("mqtt", 5)
    m.dead_letter()
    m.mqtt_reconnect()
    m.rule_firings(4)
    m.rule_firings_by_rule("default", "topology-root-cause", 3)
    m.alarms_active(250)
    m.transition("opened")
    m.reload("error")
    assert value(m, "soc_messages_total", source="http", kind="samples", outcome="invalid") == 3
    assert value(m, "soc_samples_total") == 40
    assert value(m, "soc_intake_queue_depth") == 17
    assert value(m, "soc_intake_drops_total", source="mqtt") == 5
    assert value(m, "soc_dead_letters_total") == 1
    assert value(m, "soc_mqtt_reconnects_total") == 1
    assert value(m, "soc_rule_firings_total") == 4
    assert value(m, "soc_rule_firings_by_rule_total", ruleset="default", rule="topology-root-cause") == 3
    assert value(m, "soc_alarms_active") == 250
    assert value(m, "soc_incident_transitions_total", event="opened") == 1
    assert value(m, "soc_reloads_total", result="error") == 1


def test_incident_gauge_is_set_as_a_whole() -> None:
    """incidents_gauge sets every (state, priority) series: given ones to their count, the rest to 0."""
    m = Metrics()
    m.incidents_gauge({("outage", 1): 2, ("degraded", 3): 5, ("down", 2): 1})
    assert value(m, "soc_incidents", state="outage", priority="1") == 2
    assert value(m, "soc_incidents", state="degraded", priority="3") == 5
    assert value(m, "soc_incidents", state="down", priority="2") == 1
    m.incidents_gauge({("at_risk", 4): 1})
    assert value(m, "soc_incidents", state="outage", priority="1") == 0
    assert value(m, "soc_incidents", state="down", priority="2") == 0  # an extra state goes back to 0
    assert value(m, "soc_incidents", state="at_risk", priority="4") == 1
    assert sum(s.value for s in samples(m)["soc_incidents"]) == 1


def test_histograms_observe_seconds() -> None:
    """Delivery, processing and journal durations land in their histograms (count, sum, buckets)."""
    m = Metrics(receivers=["noc"])
    m.delivery("noc", "ok", 0.2)
    m.delivery("noc", "retry", 3.0)
    m.outbox_depth("noc", 7)
    m.processing(0.004)
    m.processing(0.0001)
    m.journal_commit(0.02)
    assert value(m, "soc_deliveries_total", receiver="noc", result="ok") == 1
    assert value(m, "soc_deliveries_total", receiver="noc", result="retry") == 1
    assert value(m, "soc_delivery_seconds_count", receiver="noc") == 2
    assert value(m, "soc_delivery_seconds_sum", receiver="noc") == pytest.approx(3.2)
    assert value(m, "soc_delivery_seconds_bucket", receiver="noc", le="0.25") == 1
    assert value(m, "soc_outbox_depth", receiver="noc") == 7
    assert value(m, "soc_processing_seconds_count") == 2
    assert value(m, "soc_processing_seconds_bucket", le="0.001") == 1
    assert value(m, "soc_journal_commit_seconds_sum") == pytest.approx(0.02)


def _processing_lines(m: Metrics) -> list[str]:
    text = m.render().decode()
    return [
        line for line in text.splitlines() if re.match(r"soc_processing_seconds_(bucket|count|sum)", line)
    ]


def test_processing_many_leaves_the_histogram_as_processing_per_value() -> None:
    """A batch of processing times: the same buckets, count and sum (added in the same order, so
    the same float) as one ``processing`` per value, bounds, negatives, infinities and NaN included."""
    rng = random.Random(3)
    bounds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    odd = [0.0, -0.0, -1e-9, -5.0, 1e-12, 11.0, 1e9, math.inf, -math.inf, *bounds]
    one, many = Metrics(), Metrics()
    for _ in range(50):
        batch = [
            rng.choice(odd) if rng.random() < 0.3 else rng.expovariate(300.0)
            for _ in range(rng.randint(0, 40))
        ]
        for v in batch:
            one.processing(v)
        many.processing_many(batch)
        assert _processing_lines(many) == _processing_lines(one)
    assert value(many, "soc_processing_seconds_bucket", le="0.0005") > 0
    assert value(many, "soc_processing_seconds_bucket", le="+Inf") == value(
        many, "soc_processing_seconds_count"
    )
    one.processing(math.nan)
    many.processing_many([0.001, math.nan])
    one.processing(0.001)
    assert _processing_lines(many) == _processing_lines(one)


def test_build_info_carries_the_version() -> None:
    """soc_build_info is 1 with the version as its label."""
    assert value(Metrics(version="0.4.1"), "soc_build_info", version="0.4.1") == 1


@pytest.mark.parametrize(
    ("field", "label"),
    [
        ("", "message"),
        ("ne_id", "ne_id"),
        ("alarmedObject.id", "alarmedObject.id"),
        ("samples[3].time", "samples[].time"),
        ("samples[12].metrics.mos", "samples[].metrics.*"),
        ("metrics.latency_ms", "metrics.*"),
        ("metrics", "metrics"),
        ("x" * 100, "x" * 64),
    ],
)
def test_invalid_field_labels_are_folded(field: str, label: str) -> None:
    """Indices and metric names are folded out of error paths so the label set stays small."""
    assert field_label(field) == label


def test_invalid_fields_are_capped() -> None:
    """Past MAX_INVALID_FIELDS distinct fields, new ones are counted under "other"."""
    m = Metrics()
    m.invalid(["ne_id", "samples[0].time", "samples[7].time"])
    assert value(m, "soc_invalid_total", field="samples[].time") == 2
    m.invalid([f"f{i}" for i in range(MAX_INVALID_FIELDS + 10)])
    got = samples(m)["soc_invalid_total"]
    assert len(got) == MAX_INVALID_FIELDS + 1
    assert value(m, "soc_invalid_total", field="other") == 12
    m.invalid(["ne_id"])
    assert value(m, "soc_invalid_total", field="ne_id") == 2  # known fields keep their own series


def test_outbox_depths_set_a_receiver_with_nothing_pending_to_zero() -> None:
    """`Store.outbox_depth()` omits receivers without pending rows: their gauge reads 0, not the
    last value seen before the outage ended."""
    m = Metrics(receivers=["noc"])
    m.outbox_depths({"noc": 3, "mqtt": 2})
    assert (value(m, "soc_outbox_depth", receiver="noc"), value(m, "soc_outbox_depth", receiver="mqtt")) == (
        3,
        2,
    )
    m.outbox_depths({})
    assert (value(m, "soc_outbox_depth", receiver="noc"), value(m, "soc_outbox_depth", receiver="mqtt")) == (
        0,
        0,
    )
