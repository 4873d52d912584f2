"""bench daemon's load: the raw-socket publisher and the latency run, against a real Mosquitto, a
real daemon and a real webhook receiver (each end in a process of its own)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import orjson

from bench import daemon as bench_daemon
from bench import daemon_load
from engine.service.config import parse_broker_url
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


async def test_the_latency_run_times_every_incident_it_opens(mosquitto: Mosquitto, tmp_path: Path) -> None:
    run = await bench_daemon.latency(mosquitto.url, 400.0, 1.0, tmp_path, 0.0)
    assert run["opened"] == 200
    assert run["missing"] == 0
    assert len(run["latencies"]) == 200
    assert all(0.0 < x < 30.0 for x in run["latencies"])
    assert run["rate"] > 300.0
    assert sum(len(v) for v in run["by_second"].values()) == 200


async def test_the_end_to_end_rate_counts_until_the_last_incident_is_delivered(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    e2e = await bench_daemon.delivery_rate(mosquitto.url, 600, tmp_path)
    assert e2e["rate"] > 0.0
    assert e2e["incidents"] * 2 <= e2e["rate"] + 1e-9
