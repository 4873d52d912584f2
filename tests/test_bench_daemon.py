"""bench daemon's load: the raw-socket publisher and the latency run, against a real Mosquitto, a
real daemon and a real webhook receiver (each end in a process of its own)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from bench import daemon as bench_daemon
from bench import daemon_load
from engine.service.config import load_settings, parse_broker_url
from tests.daemon_harness import collecting
from tests.mosquitto import Mosquitto


async def test_the_raw_publisher_sends_the_feed_at_qos_1_and_counts_each_puback(mosquitto: Mosquitto) -> None:
    address = parse_broker_url(mosquitto.url)
    elements = [f"lat-{i:05d}" for i in range(200)]
    got: list[dict[str, object]] = []
    async with aiomqtt.Client(hostname=address.host, port=address.port, identifier="bench-sub") as sub:
        await sub.subscribe("bench/alarms/#", qos=1)
        result = await daemon_load._publish(address.host, address.port, 2000.0, 400, elements)

        async def take() -> None:
            async for msg in sub.messages:
                assert msg.qos == 1
                got.append(orjson.loads(bytes(msg.payload)))
                if len(got) == result["published"]:
                    return

        await asyncio.wait_for(take(), timeout=20)
    # 400 slots: 200 raises, and the clears of the raises 100 before (the first 100 slots have none)
    assert result["slots"] == 400
    assert result["published"] == 300 == result["acked"]
    raises = [m for m in got if m["severity"] == "major"]
    clears = [m for m in got if m["severity"] == "cleared"]
    assert len(raises) == 200
    assert len(clears) == 100
    assert {m["ne_id"] for m in clears} == {f"lat-{i:05d}" for i in range(100)}
    assert set(result["sent"]) == {f"{m['ne_id']}:{m['probable_cause']}" for m in raises}


@contextlib.asynccontextmanager
async def _records_on_mqtt(url: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Every incident record published on the bench daemons' MQTT topic while inside, in a list
    (collected for a moment after the body, for those still on their way from the broker)."""
    async with collecting(url, f"{bench_daemon.INCIDENT_TOPIC}/#") as got:
        yield got
        await asyncio.sleep(0.5)


async def test_the_latency_run_times_every_incident_it_opens(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """400 msg/s for 1 s: 200 incidents opened, each timed at the webhook receiver; the daemon's CPU
    is measured; its records are published on MQTT too (the default)."""
    async with _records_on_mqtt(mosquitto.url) as on_mqtt:
        run = await bench_daemon.latency(mosquitto.url, 400.0, 1.0, tmp_path, 0.0)
    assert run["opened"] == 200
    assert run["missing"] == 0
    assert len(run["latencies"]) == 200
    assert all(0.0 < x < 30.0 for x in run["latencies"])
    assert run["rate"] > 300.0
    assert sum(len(v) for v in run["by_second"].values()) == 200
    assert 0.0 < run["cpu_share"] < 4.0  # a fraction of a core (a few threads at most)
    assert run["cpu_per_message"] == pytest.approx(run["cpu"] / run["published"])
    assert {r["event"] for r in on_mqtt} >= {"opened"}


async def test_without_mqtt_records_the_latency_run_sends_records_to_the_webhook_only(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """``records=False`` (``--no-mqtt-records``): the daemon publishes no record on MQTT, and the
    webhook receiver still gets every incident, timed as ever."""
    async with _records_on_mqtt(mosquitto.url) as on_mqtt:
        run = await bench_daemon.latency(mosquitto.url, 400.0, 1.0, tmp_path, 0.0, records=False)
    assert run["opened"] == 200
    assert run["missing"] == 0
    assert len(run["latencies"]) == 200
    assert run["cpu"] > 0.0
    assert on_mqtt == []


def test_no_mqtt_records_is_an_option_off_by_default(tmp_path: Path) -> None:
    """``--no-mqtt-records`` turns the records on MQTT off for every daemon the bench starts (their
    config's ``incident_topic`` is null); without it they are published, as shipped."""
    assert bench_daemon.build_parser().parse_args([]).mqtt_records is True
    assert bench_daemon.build_parser().parse_args(["--no-mqtt-records"]).mqtt_records is False
    for records, topic in ((True, bench_daemon.INCIDENT_TOPIC), (False, None)):
        path = bench_daemon._config(tmp_path, "mqtt://127.0.0.1:1883", f"c-{records}", None, records=records)
        assert load_settings(path, environ={}).mqtt.incident_topic == topic


async def test_the_end_to_end_rate_counts_until_the_last_incident_is_delivered(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    e2e = await bench_daemon.delivery_rate(mosquitto.url, 600, tmp_path)
    assert e2e["rate"] > 0.0
    assert e2e["incidents"] * 2 <= e2e["rate"] + 1e-9


def _run(
    rate: float, medians_ms: list[float], *, reached: float | None = None, missing: int = 0
) -> dict[str, object]:
    """A latency run's result as ``latency`` returns it, 100 incidents a second at the given medians."""
    return {
        "rate": rate if reached is None else reached,
        "missing": missing,
        "published": 1000,
        "acked": 1000,
        "by_second": {i: [m / 1000] * 100 for i, m in enumerate(medians_ms)},
    }


def test_kept_up_is_a_steady_latency_with_everything_delivered() -> None:
    assert bench_daemon.kept_up(_run(1000, [5, 4, 6, 5, 4, 5, 6, 5]), 1000) == (True, "")
    # below the 10 ms floor a median may double without counting as a backlog
    assert bench_daemon.kept_up(_run(1000, [2, 2, 3, 3, 3, 3, 15, 18]), 1000)[0]


def test_a_growing_backlog_a_slow_publisher_or_a_loss_is_falling_behind() -> None:
    ok, why = bench_daemon.kept_up(_run(1000, [5, 6, 20, 60, 120, 200, 280, 350]), 1000)
    assert not ok
    assert "backlog growing (median 350 ms > 20)" in why
    ok, why = bench_daemon.kept_up(_run(1000, [5] * 8, reached=900), 1000)
    assert not ok
    assert "publisher reached 900" in why
    ok, why = bench_daemon.kept_up(_run(1000, [5] * 8, missing=3), 1000)
    assert not ok
    assert "not everything delivered" in why
    assert not bench_daemon.kept_up(_run(1000, [5, 5, 5]), 1000)[0]  # too short to tell
    unacked = {**_run(1000, [5] * 8), "acked": 999}  # a PUBACK missing
    assert bench_daemon.kept_up(unacked, 1000) == (False, "not everything delivered and acknowledged")


async def test_the_steady_rate_search_bisects_below_the_ceiling(mosquitto: Mosquitto, tmp_path: Path) -> None:
    # Two steps of 4 s: 100 msg/s (half the ceiling: a seventh of a core) is kept up with even on a
    # loaded machine, then 150 or 50 as the first went.
    rate, trials = await bench_daemon.steady_rate(mosquitto.url, tmp_path, 200.0, 2, 4.0)
    assert trials[0]["rate"] == 100.0
    assert trials[0]["ok"], trials[0]
    assert trials[1]["rate"] == 150.0
    assert rate == (150.0 if trials[1]["ok"] else 100.0)
    # each step's figures: the lowest second's median, never above the last two seconds' (a pooled
    # median lies between the two seconds' own)
    assert all(0.0 < t["best"] <= t["last"] for t in trials)


def test_a_start_up_transient_neither_fails_a_run_nor_loosens_the_bound() -> None:
    assert bench_daemon.kept_up(_run(1000, [180, 60, 5, 4, 5, 6, 5, 4]), 1000)[0]
    ok, why = bench_daemon.kept_up(_run(1000, [180, 60, 5, 40, 80, 120, 160, 200]), 1000)
    assert not ok
    assert "> 20)" in why


async def test_a_step_whose_run_fails_counts_as_falling_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load process that errs or does not answer fails its step (named), and the search goes on
    below it; nothing else of the search changes (the runs here are made up: only the bisection's
    bookkeeping is under test)."""
    calls: list[float] = []

    async def latency(url: str, rate: float, *args: object, **kwargs: object) -> dict[str, object]:
        calls.append(rate)
        if len(calls) == 1:
            raise TimeoutError("no answer from a load process within 30 s")
        return _run(rate, [5] * 8)

    monkeypatch.setattr(bench_daemon, "latency", latency)
    rate, trials = await bench_daemon.steady_rate("mqtt://127.0.0.1:1", tmp_path, 1000.0, 2, 8.0)
    assert calls == [500.0, 250.0]
    assert not trials[0]["ok"]
    assert trials[0]["why"] == "the step failed: no answer from a load process within 30 s"
    assert trials[1]["ok"]
    assert rate == 250.0
