"""KQIs over sliding windows (engine.core.kqi):
statuses, windows, aggregates, bounds, persistence, the default
catalog and the E-model MOS of voice samples. Expected figures are worked by hand in the comments."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from engine.core.kqi import (
    KqiCatalog,
    KqiDef,
    KqiState,
    KqiWindows,
    ServiceKqis,
    derived_mos,
    derived_video_mos,
    element_scope,
    path_scope,
)
from engine.core.qoe.emodel import voip_quality
from engine.core.settings import core_settings_from_data
from engine.errors import ConfigError
from engine.model.messages import KpiSample

SCOPE = "ne:olt-7"


def voice_windows(**kwargs: Any) -> KqiWindows:
    return KqiWindows(KqiCatalog.defaults(), **kwargs)


def state(states: list[KqiState], name: str) -> KqiState:
    (found,) = [s for s in states if s.kqi.name == name]
    return found


def kqi(**fields: Any) -> KqiDef:
    base: dict[str, Any] = {"name": "t.x", "category": "integrity", "metric": "x", "objective": "max"}
    return KqiDef.model_validate(base | {"target": 10.0} | fields)


# --------------------------------------------------------------------------------------------- statuses


def test_series_reads_a_scopes_samples_in_time_order_without_changing_them() -> None:
    w = voice_windows()
    for t, v in ((100.0, 200.0), (0.0, 100.0), (200.0, 300.0)):
        w.observe(SCOPE, "latency_ms", v, t)
    w.observe("ne:other", "latency_ms", 5.0, 0.0)
    got = w.series(SCOPE)
    assert got == {"latency_ms": ([0.0, 100.0, 200.0], [100.0, 200.0, 300.0])}
    got["latency_ms"][0].append(999.0)  # a copy: the window is untouched
    assert w.series(SCOPE)["latency_ms"][0] == [0.0, 100.0, 200.0]
    assert w.series("ne:nothing") == {}


def test_mean_delay_between_target_and_limit_is_at_risk() -> None:
    """Delays 100, 200, 300 ms in the last 5 min: mean (100 + 200 + 300)/3 = 200 > 150 (target) but
    <= 400 (limit) → at_risk."""
    w = voice_windows()
    for t, v in ((0.0, 100.0), (100.0, 200.0), (200.0, 300.0)):
        w.observe(SCOPE, "latency_ms", v, t)
    s = state(w.evaluate(SCOPE, "voice", now=300.0), "voice.one_way_delay")
    assert (s.value, s.samples, s.status) == (200.0, 3, "at_risk")
    assert s.to_record() == {
        "name": "voice.one_way_delay",
        "category": "integrity",
        "scope": SCOPE,
        "value": 200.0,
        "target": 150.0,
        "limit": 400.0,
        "objective": "max",
        "status": "at_risk",
        "samples": 3,
        "window_s": 300.0,
        "source": s.kqi.source,
    }
    assert "G.114" in s.kqi.source


@pytest.mark.parametrize(
    ("delays", "mean", "status"),
    [
        ([400.0, 450.0, 500.0], 450.0, "violated"),  # beyond the 400 ms limit
        ([100.0, 150.0, 200.0], 150.0, "met"),  # exactly on target counts as met
        ([390.0, 400.0, 410.0], 400.0, "at_risk"),  # exactly on the limit is still at risk
        ([10.0, 20.0, 30.0], 20.0, "met"),
    ],
)
def test_delay_statuses(delays: list[float], mean: float, status: str) -> None:
    w = voice_windows()
    for i, v in enumerate(delays):
        w.observe(SCOPE, "latency_ms", v, 10.0 * i)
    s = state(w.evaluate(SCOPE, "voice", now=60.0), "voice.one_way_delay")
    assert s.value == pytest.approx(mean)
    assert s.status == status


@pytest.mark.parametrize(
    ("mos", "status"),
    [
        (4.0, "met"),
        (3.6, "met"),  # on target (G.107: R 70 ≈ MOS 3.6)
        (3.3, "at_risk"),  # between the limit 3.1 (R 60) and the target
        (3.1, "at_risk"),
        (3.0, "violated"),
    ],
)
def test_min_objective_mos(mos: float, status: str) -> None:
    """'min' objective: at or above target met, down to the limit at risk, below violated."""
    w = voice_windows()
    for t in (0.0, 1.0, 2.0):
        w.observe(SCOPE, "mos", mos, t)
    assert state(w.evaluate(SCOPE, "voice", now=2.0), "voice.mos").status == status


def test_no_limit_means_missing_the_target_is_violated() -> None:
    """Voice packet loss has no limit: 3.5 % > 3 % is violated at once."""
    w = voice_windows()
    for t in (0.0, 1.0, 2.0):
        w.observe(SCOPE, "loss_pct", 3.5, t)
    assert state(w.evaluate(SCOPE, "voice", now=2.0), "voice.packet_loss").status == "violated"


def test_fewer_than_min_samples_is_unknown_but_keeps_the_value() -> None:
    w = voice_windows()
    w.observe(SCOPE, "latency_ms", 900.0, 0.0)
    w.observe(SCOPE, "latency_ms", 1000.0, 1.0)
    s = state(w.evaluate(SCOPE, "voice", now=2.0), "voice.one_way_delay")
    assert (s.value, s.samples, s.status) == (950.0, 2, "unknown")
    w.observe(SCOPE, "latency_ms", 1100.0, 2.0)
    assert state(w.evaluate(SCOPE, "voice", now=2.0), "voice.one_way_delay").status == "violated"


def test_absent_metric_is_unknown_with_no_value() -> None:
    s = state(voice_windows().evaluate(SCOPE, "voice", now=0.0), "voice.jitter")
    assert (s.value, s.samples, s.status) == (None, 0, "unknown")
    assert s.to_record()["value"] is None


def test_record_rounds_the_value_to_three_decimals() -> None:
    w = voice_windows()
    for t, v in ((0.0, 100.0), (1.0, 100.0), (2.0, 101.0)):  # mean 100.3333…
        w.observe(SCOPE, "latency_ms", v, t)
    assert state(w.evaluate(SCOPE, "voice", now=2.0), "voice.one_way_delay").to_record()["value"] == 100.333


# ----------------------------------------------------------------------------------------------- windows


def test_window_slides_old_samples_out() -> None:
    """Window [now - 300, now], both ends included. Samples at 0, 100, 200, 300 s: at now = 300 all four
    count, mean (1000 + 3·100)/4 = 325 → at_risk; at now = 300.5 the 1000 ms sample at t = 0 is out,
    mean 100 → met; at now = 650 only t = 400..650 would count: none left → unknown."""
    w = voice_windows()
    for t, v in ((0.0, 1000.0), (100.0, 100.0), (200.0, 100.0), (300.0, 100.0)):
        w.observe(SCOPE, "latency_ms", v, t)
    k = KqiCatalog.defaults().for_service("voice")[0]
    assert w.value(SCOPE, k, 300.0) == (325.0, 4)
    assert w.value(SCOPE, k, 300.5) == (100.0, 3)
    assert state(w.evaluate(SCOPE, "voice", now=300.5), "voice.one_way_delay").status == "met"
    assert w.value(SCOPE, k, 650.0) == (None, 0)


def test_samples_after_now_are_not_counted() -> None:
    w = voice_windows()
    for t, v in ((0.0, 1000.0), (100.0, 100.0), (200.0, 100.0)):
        w.observe(SCOPE, "latency_ms", v, t)
    k = KqiCatalog.defaults().for_service("voice")[0]
    # now = 150: window [-150, 150] holds t = 0 (1000) and t = 100 (100): mean 550.
    assert w.value(SCOPE, k, 150.0) == (550.0, 2)


def test_expire_forgets_samples_beyond_the_longest_window() -> None:
    """latency_ms is read by 300 s windows only, `available` by a 1 h window: expire(4000) keeps
    latency samples from t >= 3700 and availability samples from t >= 400."""
    w = voice_windows()
    w.observe(SCOPE, "latency_ms", 50.0, 0.0)
    w.observe(SCOPE, "available", 1.0, 500.0)
    w.observe("ne:other", "latency_ms", 50.0, 3800.0)
    w.expire(4000.0)
    assert w.scopes() == [SCOPE, "ne:other"]  # "ne:olt-7" < "ne:other"
    assert len(w) == 2
    w.expire(5000.0)
    assert w.scopes() == []
    assert len(w) == 0


def test_metrics_no_kqi_reads_are_not_kept() -> None:
    w = voice_windows()
    w.observe(SCOPE, "temperature_c", 40.0, 0.0)
    assert (w.scopes(), w.ignored, w.observed) == ([], 1, 0)


def test_non_finite_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="must be finite"):
        voice_windows().observe(SCOPE, "latency_ms", float("nan"), 0.0)


# -------------------------------------------------------------------------------------------- aggregates

# 20 values; sorted: 1 2 3 5 7 8 9 11 12 14 16 18 20 22 24 25 27 29 30 40
TWENTY = [12.0, 7.0, 3.0, 25.0, 18.0, 9.0, 30.0, 1.0, 14.0, 22.0, 5.0, 27.0, 16.0, 11.0, 20.0, 8.0]
TWENTY += [29.0, 2.0, 24.0, 40.0]


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        ("p95", 30.0),  # nearest rank ⌈0.95·20⌉ = 19 → 19th smallest = 30 (linear interpolation: 30.5)
        ("p50", 14.0),  # ⌈0.50·20⌉ = 10 → 14
        ("p99", 40.0),  # ⌈0.99·20⌉ = ⌈19.8⌉ = 20 → 40
        ("max", 40.0),
        ("min", 1.0),
        ("mean", 16.15),  # sum 323 / 20
        ("last", 40.0),  # the latest sample (t = 19)
    ],
)
def test_aggregates_on_twenty_values(aggregate: str, expected: float) -> None:
    catalog = KqiCatalog(services={"s": (kqi(aggregate=aggregate),)})
    w = KqiWindows(catalog)
    for i, v in enumerate(TWENTY):
        w.observe(SCOPE, "x", v, float(i))
    value, samples = w.value(SCOPE, catalog.services["s"][0], 19.0)
    assert value == pytest.approx(expected)
    assert samples == 20


def test_nearest_rank_on_three_values_is_the_median() -> None:
    """⌈0.5·3⌉ = 2 → the middle value; ⌈0.95·3⌉ = 3 → the largest."""
    p50, p95 = kqi(aggregate="p50"), kqi(name="t.y", aggregate="p95")
    w = KqiWindows(KqiCatalog(services={"s": (p50, p95)}))
    for i, v in enumerate((9.0, 1.0, 5.0)):
        w.observe(SCOPE, "x", v, float(i))
    assert w.value(SCOPE, p50, 2.0) == (5.0, 3)
    assert w.value(SCOPE, p95, 2.0) == (9.0, 3)


def test_ratio_sums_numerator_and_denominator() -> None:
    """Call setup success = Σ ok / Σ attempted = (98 + 99 + 50)/(100 + 100 + 50) = 247/250 = 0.988 < 0.99
    → violated (the mean of the per-sample ratios, (0.98 + 0.99 + 1)/3 = 0.99, would have met it)."""
    w = voice_windows()
    for t, ok, attempted in ((0.0, 98.0, 100.0), (60.0, 99.0, 100.0), (120.0, 50.0, 50.0)):
        w.observe(SCOPE, "calls_setup_ok", ok, t)
        w.observe(SCOPE, "calls_attempted", attempted, t)
    s = state(w.evaluate(SCOPE, "voice", now=120.0), "voice.call_setup_success")
    assert s.value == pytest.approx(0.988)
    assert (s.samples, s.status) == (3, "violated")


def test_ratio_without_denominator_volume_is_unknown() -> None:
    """Drops with no answered calls (Σ denominator = 0): no value."""
    w = voice_windows()
    for t in (0.0, 1.0, 2.0):
        w.observe(SCOPE, "calls_dropped", 0.0, t)
        w.observe(SCOPE, "calls_answered", 0.0, t)
    s = state(w.evaluate(SCOPE, "voice", now=2.0), "voice.call_drop")
    assert (s.value, s.samples, s.status) == (None, 3, "unknown")


def test_ratio_count_is_the_smaller_of_the_two() -> None:
    """2 drop samples, 3 answered samples: count 2 < min_samples 3 → unknown; value 1/300."""
    w = voice_windows()
    for t in (0.0, 1.0, 2.0):
        w.observe(SCOPE, "calls_answered", 100.0, t)
    w.observe(SCOPE, "calls_dropped", 1.0, 0.0)
    w.observe(SCOPE, "calls_dropped", 0.0, 1.0)
    s = state(w.evaluate(SCOPE, "voice", now=2.0), "voice.call_drop")
    assert s.value == pytest.approx(1.0 / 300.0)
    assert (s.samples, s.status) == (2, "unknown")


def test_out_of_order_samples_are_kept_in_time_order() -> None:
    """Arrival order 200, 0, 100 (s): `last` is the t = 200 sample, and the window at now = 250 drops t = 0
    wherever it arrived."""
    last = kqi(aggregate="last", window=200.0, min_samples=1)
    w = KqiWindows(KqiCatalog(services={"s": (last,)}))
    for t, v in ((200.0, 3.0), (0.0, 1.0), (100.0, 2.0)):
        w.observe(SCOPE, "x", v, t)
    assert w.value(SCOPE, last, 200.0) == (3.0, 3)
    assert w.value(SCOPE, last, 250.0) == (3.0, 2)
    assert w.dump()["series"] == [[SCOPE, "x", [0.0, 100.0, 200.0], [1.0, 2.0, 3.0]]]
    w.observe(SCOPE, "x", 9.0, 200.0)  # same time as the newest: arrival order kept, so it is `last`
    assert w.value(SCOPE, last, 250.0) == (9.0, 3)


def test_series_length_is_bounded_and_drops_are_counted() -> None:
    """Bound 5, 8 samples 1..8: the 3 oldest go; the mean is (4 + 5 + 6 + 7 + 8)/5 = 6."""
    w = voice_windows(max_samples_per_series=5)
    for i in range(1, 9):
        w.observe(SCOPE, "latency_ms", float(i), float(i))
    assert (w.dropped, len(w), w.observed) == (3, 5, 8)
    k = KqiCatalog.defaults().for_service("voice")[0]
    assert w.value(SCOPE, k, 8.0) == (6.0, 5)


def test_a_late_sample_older_than_everything_is_the_one_dropped_when_full() -> None:
    w = voice_windows(max_samples_per_series=3)
    for t in (10.0, 11.0, 12.0):
        w.observe(SCOPE, "latency_ms", 100.0, t)
    w.observe(SCOPE, "latency_ms", 999.0, 5.0)
    k = KqiCatalog.defaults().for_service("voice")[0]
    assert (w.dropped, w.value(SCOPE, k, 12.0)) == (1, (100.0, 3))


def test_many_samples_through_a_long_run_stay_bounded_by_the_window() -> None:
    """One sample a second for 2 h: latency keeps 301 samples (t = now - 300 .. now, both ends)."""
    w = voice_windows()
    for i in range(7200):
        w.observe(SCOPE, "latency_ms", 100.0, float(i))
    assert len(w) == 301
    assert w.dropped == 0


# ----------------------------------------------------------------------------------------- persistence


def test_dump_load_round_trip_gives_identical_evaluations() -> None:
    w = voice_windows(max_samples_per_series=50)
    for i in range(120):
        t = 3.0 * i + (0.5 if i % 7 == 0 else 0.0)
        w.observe(SCOPE, "latency_ms", 80.0 + (i * 37) % 200 + 0.123456789, t)
        w.observe(SCOPE, "mos", 3.0 + (i % 10) / 7.0, t - 2.0)  # slightly out of order
        w.observe(path_scope("cust-1", "voice"), "available", float(i % 50 != 0), t)
    w.observe(SCOPE, "calls_attempted", 100.0, 350.0)
    blob = orjson.dumps(w.dump())
    restored = voice_windows(max_samples_per_series=50)
    restored.load(orjson.loads(blob))
    assert orjson.dumps(restored.dump()) == blob
    assert (restored.dropped, restored.observed, restored.ignored) == (w.dropped, w.observed, w.ignored)
    for now in (300.0, 357.5, 400.0):
        for scope in w.scopes():
            assert restored.evaluate(scope, "voice", now) == w.evaluate(scope, "voice", now)
    # and both keep behaving the same afterwards
    for x in (w, restored):
        x.observe(SCOPE, "latency_ms", 500.0, 360.0)
    assert restored.evaluate(SCOPE, "voice", 360.0) == w.evaluate(SCOPE, "voice", 360.0)


def test_load_refuses_another_version() -> None:
    with pytest.raises(ValueError, match="version"):
        voice_windows().load({"version": 2, "series": [], "counters": [0, 0, 0, 0]})


# ------------------------------------------------------------------------------------------ samples


def test_observe_sample_feeds_element_and_path_scopes_and_derives_mos() -> None:
    """A voip sample with delay but no MOS: the E-model MOS of 150 ms is 4.33 (docs/qoe-voip.md table)."""
    w = voice_windows()
    for t in (0.0, 1.0, 2.0):
        sample = KpiSample.model_validate(
            {
                "probe_id": "p",
                "target": "olt-7",
                "service": "voip",
                "customer": "c-1",
                "time": t,
                "metrics": {"latency_ms": 150.0},
            }
        )
        w.observe_sample(sample)
    assert w.scopes() == [element_scope("olt-7", "voip"), path_scope("c-1", "voip")]
    assert element_scope("olt-7", "voip") == "ne:olt-7/voip"
    s = state(w.evaluate("path:c-1/voip", "voip", now=2.0), "voip.mos")
    assert s.value == pytest.approx(4.33, abs=0.005)
    assert s.status == "met"


def test_observe_sample_keeps_a_measured_mos_and_derives_none_for_other_services() -> None:
    w = voice_windows()
    sample = KpiSample.model_validate(
        {
            "probe_id": "p",
            "target": "olt-7",
            "service": "voip",
            "time": 0.0,
            "metrics": {"latency_ms": 150.0, "mos": 3.0},
        }
    )
    w.observe_sample(sample)
    tv = KpiSample.model_validate(
        {"probe_id": "p", "target": "olt-8", "service": "iptv", "time": 0.0, "metrics": {"latency_ms": 150.0}}
    )
    w.observe_sample(tv)
    assert w.dump()["series"] == [
        ["ne:olt-7/voip", "latency_ms", [0.0], [150.0]],
        ["ne:olt-7/voip", "mos", [0.0], [3.0]],
        ["ne:olt-8/iptv", "latency_ms", [0.0], [150.0]],
    ]


# ------------------------------------------------------------------------------------------- catalog


def test_default_catalog_service_types_and_targets() -> None:
    c = KqiCatalog.defaults()
    assert {"voice", "video", "iptv", "internet", "default"} <= set(c.services)

    def targets(service: str) -> dict[str, tuple[str, str, float, float | None]]:
        return {k.name: (k.metric, k.objective, k.target, k.limit) for k in c.for_service(service)}

    assert targets("voice") == {
        "voice.one_way_delay": ("latency_ms", "max", 150.0, 400.0),  # G.114 / G.1010
        "voice.jitter": ("jitter_ms", "max", 30.0, 50.0),  # operator convention
        "voice.packet_loss": ("loss_pct", "max", 3.0, None),  # G.1010
        "voice.mos": ("mos", "min", 3.6, 3.1),  # G.107 Annex B, R 70 / R 60
        "voice.call_setup_success": ("calls_setup_ok", "min", 0.99, None),
        "voice.call_drop": ("calls_dropped", "max", 0.01, None),
        "voice.availability": ("available", "min", 0.999, 0.99),
    }
    categories = {k.name: k.category for k in c.for_service("voice")}
    assert categories["voice.call_setup_success"] == "accessibility"
    assert categories["voice.call_drop"] == "retainability"
    assert categories["voice.availability"] == "availability"
    for video in ("video", "iptv"):
        assert targets(video) == {
            f"{video}.one_way_delay": ("latency_ms", "max", 10_000.0, None),  # G.1010 streaming: < 10 s
            f"{video}.packet_loss": ("loss_pct", "max", 1.0, None),  # G.1010 streaming: < 1 %
            f"{video}.mos": ("mos", "min", 3.5, None),  # P.1203 convention
            f"{video}.availability": ("available", "min", 0.999, 0.99),
        }
    assert targets("internet") == {
        "internet.latency": ("latency_ms", "max", 100.0, None),
        "internet.response_time": ("response_time_s", "max", 2.0, 4.0),
        "internet.throughput": ("throughput_mbps", "min", 10.0, None),
        "internet.packet_loss": ("loss_pct", "max", 1.0, None),
        "internet.availability": ("available", "min", 0.999, 0.99),
    }
    assert [k.name for k in c.for_service("default")] == ["default.availability"]
    # voip (the service type of examples/topology.yaml) gets the voice KQIs under its own names
    assert [k.name.removeprefix("voip.") for k in c.for_service("voip")] == [
        k.name.removeprefix("voice.") for k in c.for_service("voice")
    ]
    every = [k for kqis in c.services.values() for k in kqis]
    assert all(k.source for k in every)
    conventions = {k.name for k in every if "operator convention" in k.source}
    assert {"voice.jitter", "voice.call_setup_success", "voice.call_drop", "internet.latency"} <= conventions
    assert "voice.one_way_delay" not in conventions


def test_unknown_service_type_falls_back_to_default() -> None:
    assert KqiCatalog.defaults().for_service("sms") == KqiCatalog.defaults().for_service("default")
    no_default = KqiCatalog(services={"voice": KqiCatalog.defaults().for_service("voice")})
    assert no_default.for_service("sms") == ()


@pytest.mark.parametrize(
    ("zeros", "value", "status"),
    [
        (0, 1.0, "met"),
        (1, 359 / 360, "at_risk"),  # 0.99722: below 0.999, not below 0.99
        (4, 356 / 360, "violated"),  # 0.98889 < 0.99
    ],
)
def test_availability_samples(zeros: int, value: float, status: str) -> None:
    """1/0 availability samples every 10 s over the 1 h window: 360 samples (t = 0..3590)."""
    w = voice_windows()
    for i in range(360):
        w.observe(SCOPE, "available", 0.0 if 100 <= i < 100 + zeros else 1.0, 10.0 * i)
    s = state(w.evaluate(SCOPE, "internet", now=3590.0), "internet.availability")
    assert s.value == pytest.approx(value)
    assert (s.samples, s.status) == (360, status)


def test_catalog_from_config_parses_durations_and_rejects_bad_definitions() -> None:
    c = KqiCatalog.from_config(
        {
            "gaming": [
                {
                    "name": "gaming.rtt",
                    "category": "integrity",
                    "metric": "rtt_ms",
                    "aggregate": "p95",
                    "window": "2m",
                    "objective": "max",
                    "target": 60,
                    "limit": 100,
                }
            ]
        }
    )
    (k,) = c.for_service("gaming")
    assert (k.window, k.aggregate, k.min_samples, k.weight) == (120.0, "p95", 3, 1.0)
    assert c.entries() == (ServiceKqis(service_type="gaming", kqis=(k,)),)
    assert c.horizons() == {"rtt_ms": 120.0}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"aggregate": "ratio"}, "denominator is required"),
        ({"denominator": "y"}, "denominator is required"),
        ({"limit": 5.0}, "limit 5.0 must be >= target"),
        ({"objective": "min", "limit": 20.0}, "limit 20.0 must be <= target"),
        ({"window": 0}, "window must be > 0"),
        ({"min_samples": 0}, "greater than or equal to 1"),
        ({"target": float("inf")}, "finite"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_definitions_are_rejected(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        kqi(**fields)


def test_duplicate_kqi_names_are_rejected() -> None:
    with pytest.raises(ValidationError, match=r"lists KQI 't\.x' twice"):
        KqiCatalog(services={"s": (kqi(), kqi())})


# -------------------------------------------------------------------------------------------- E-model


@pytest.mark.parametrize(
    ("metrics", "mos"),
    [
        ({"latency_ms": 0.0}, 4.41),  # all G.107 defaults: R 93.2 → MOS 4.41 (tests/test_emodel.py)
        ({"latency_ms": 150.0}, 4.33),  # docs/qoe-voip.md reference table: R 89.5
        ({"latency_ms": 400.0}, 3.22),  # same table: R 62.2
    ],
)
def test_derived_mos_matches_the_emodel_reference_points(metrics: dict[str, float], mos: float) -> None:
    assert derived_mos(metrics) == pytest.approx(mos, abs=0.005)


def test_derived_mos_uses_the_emodel_jitter_buffer_and_loss() -> None:
    """100 ms + 20 ms jitter: a 40 ms buffer (Ta 140 ms) and 1.20 % late loss, plus 1 % network loss."""
    got = derived_mos({"latency_ms": 100.0, "jitter_ms": 20.0, "loss_pct": 1.0})
    assert got == voip_quality(delay_ms=100.0, jitter_ms=20.0, loss_pct=1.0).mos
    assert got is not None
    assert got < voip_quality(delay_ms=140.0).mos
    assert (
        derived_mos({"latency_ms": 100.0}, codec="G.729A") == voip_quality(delay_ms=100.0, codec="G.729A").mos
    )


@pytest.mark.parametrize(
    "metrics",
    [{}, {"jitter_ms": 5.0, "loss_pct": 1.0}, {"latency_ms": -1.0}, {"latency_ms": 50.0, "loss_pct": -2.0}],
)
def test_derived_mos_needs_a_sane_latency(metrics: dict[str, float]) -> None:
    assert derived_mos(metrics) is None


def test_derived_mos_clamps_out_of_range_inputs() -> None:
    """20 s delay and 150 % loss are taken as 10 s and 100 %: the bottom of the scale."""
    assert derived_mos({"latency_ms": 20_000.0, "loss_pct": 150.0}) == 1.0


VOIP_100MS = {
    "name": "voip.one_way_delay",
    "category": "integrity",
    "metric": "latency_ms",
    "objective": "max",
    "target": 100,
    "limit": 400,
}
DEFAULT_VOIP = [
    "voip.one_way_delay",
    "voip.jitter",
    "voip.packet_loss",
    "voip.mos",
    "voip.call_setup_success",
    "voip.call_drop",
    "voip.availability",
]
DEFAULT_INTERNET = [
    "internet.latency",
    "internet.response_time",
    "internet.throughput",
    "internet.packet_loss",
    "internet.availability",
]
DEFAULT_IPTV = ["iptv.one_way_delay", "iptv.packet_loss", "iptv.mos", "iptv.availability"]


@pytest.mark.parametrize(
    ("quality", "voip", "internet", "iptv"),
    [
        ({}, DEFAULT_VOIP, DEFAULT_INTERNET, DEFAULT_IPTV),
        (
            {"kqis": {"services": {"voip": [VOIP_100MS]}}},
            ["voip.one_way_delay"],
            DEFAULT_INTERNET,
            DEFAULT_IPTV,
        ),
        ({"kqis": {"services": {"iptv": []}}}, DEFAULT_VOIP, DEFAULT_INTERNET, []),
    ],
    ids=["defaults", "voip-overridden", "iptv-switched-off"],
)
def test_a_kqi_override_in_the_config_replaces_that_service_types_kqis_only(
    quality: dict[str, Any], voip: list[str], internet: list[str], iptv: list[str]
) -> None:
    """``core.quality.kqis.services`` replaces the KQIs of the service types it lists (an empty list:
    none) and keeps the default catalog's (docs/kqi.md tables) for the others; the counts are the
    default tables' rows: voip 7, internet 5, iptv 4."""
    catalog = core_settings_from_data({"quality": quality}).quality.kqis
    assert [k.name for k in catalog.for_service("voip")] == voip
    assert [k.name for k in catalog.for_service("internet")] == internet
    assert [k.name for k in catalog.for_service("iptv")] == iptv
    assert [k.name for k in catalog.for_service("gaming")] == ["default.availability"]


def test_kqis_listed_without_services_are_refused_with_the_right_form() -> None:
    """`kqis: {voip: [...]}` (the service type straight under kqis) is refused saying where the KQIs
    go, instead of pydantic's `services: Field required`."""
    with pytest.raises(ConfigError) as caught:
        core_settings_from_data({"quality": {"kqis": {"voip": [VOIP_100MS]}}})
    message = str(caught.value)
    assert "quality.kqis" in message
    assert "KQIs are listed under `services`, by service type: kqis: {services: {voip: [...]}}" in message


@pytest.mark.parametrize(
    ("metrics", "mos"),
    [
        # `engine qoe video --bitrate-kbps 4000 --resolution 1920x1080 --fps 30 --stalls 1 --stall-seconds 5`
        (
            {
                "bitrate_kbps": 4000.0,
                "height": 1080.0,
                "width": 1920.0,
                "framerate": 30.0,
                "stalls": 1.0,
                "stall_seconds": 5.0,
            },
            4.365,
        ),
        (
            {
                "bitrate_kbps": 4000.0,
                "height": 1080.0,
                "framerate": 30.0,
                "stalls": 1.0,
                "stall_seconds": 5.0,
            },
            4.365,
        ),  # width: 16:9 of the height
        ({"bitrate_kbps": 4000.0, "framerate": 30.0}, None),  # no height: no MOS
        (
            {
                "bitrate_kbps": 4000.0,
                "height": 1080.0,
                "framerate": 30.0,
                "stalls": 1.5,
                "stall_seconds": 5.0,
            },
            None,
        ),  # a fractional stall count is not a count
        ({"bitrate_kbps": -1.0, "height": 1080.0, "framerate": 30.0}, None),  # outside the model
    ],
)
def test_derived_video_mos_is_the_p1203_mode_0_session_mos(
    metrics: dict[str, float], mos: float | None
) -> None:
    """A video sample's MOS from bitrate, resolution, frame rate and stalling is
    `engine.core.qoe.video.video_quality`'s (docs/qoe-video.md); None when it cannot be computed."""
    got = derived_video_mos(metrics)
    if mos is None:
        assert got is None
    else:
        assert got == pytest.approx(mos, abs=0.0005)


# ------------------------------------------------------------------------------- robust arithmetic


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1e308, 1e308], 1e308),
        ([1.7e308, 1.7e308, -1.7e308], 1.7e308 / 3),
        ([1.0, 2.0], 1.5),
    ],
)
def test_mean_of_values_whose_sum_overflows_is_exact_and_never_raises(
    values: list[float], expected: float
) -> None:
    """Two samples of 1e308 made ``math.fsum`` raise ``OverflowError`` on every evaluation while
    they stayed in the window; the mean is now computed on exactly scaled values."""
    w = KqiWindows(KqiCatalog.from_config({"x": [kqi(aggregate="mean", min_samples=1).model_dump()]}))
    for i, v in enumerate(values):
        w.observe(SCOPE, "x", v, float(i))
    (s,) = w.evaluate(SCOPE, "x", now=10.0)
    assert s.value == pytest.approx(expected, rel=1e-15)
    assert s.status == ("met" if expected <= 10.0 else "violated")


def test_ratio_of_sums_beyond_the_float_range_never_raises() -> None:
    """A ratio KQI whose sums overflow gives the exact ratio; a huge sum over a tiny one gives the
    largest float rather than infinity (records and thresholds stay finite)."""
    spec = kqi(aggregate="ratio", denominator="y", min_samples=1, objective="max", target=0.5)
    w = KqiWindows(KqiCatalog.from_config({"x": [spec.model_dump()]}))
    for t in (0.0, 1.0):
        w.observe(SCOPE, "x", 1e308, t)
        w.observe(SCOPE, "y", 1.7e308, t)
    assert w.evaluate(SCOPE, "x", now=5.0)[0].value == pytest.approx(1e308 / 1.7e308)
    w.observe("other", "x", 1e308, 0.0)
    w.observe("other", "y", 1e-300, 0.0)
    assert w.evaluate("other", "x", now=5.0)[0].value == 1.7976931348623157e308
