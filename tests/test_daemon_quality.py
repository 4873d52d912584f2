"""Service quality in the real daemon, on the wall clock: KQIs, the inference of a degradation nobody
alarmed, customer experience and SLAs, delivered to a real webhook receiver and read on the HTTP API
(`GET /customers/{id}`, `/services`, `/sla`). A private Mosquitto, or HTTP ingest (`POST /events`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.scenarios import T0, alarm
from engine.model.timeutil import parse_time
from tests.daemon_harness import publish, running_daemon, until, with_prefix
from tests.mosquitto import Mosquitto

DEGRADED = ["c-00001", "c-00002", "c-00003", "c-00005"]  # internet customers behind olt-7
HEALTHY = {"c-00021": "olt-001", "c-00022": "olt-001", "c-00041": "olt-002", "c-00042": "olt-002"}

# Internet latency judged over 10 s (3 samples at least): the path KQIs react within seconds.
FAST_QUALITY = {
    "evaluate_every": "1s",
    "element_alarms": "off",
    "kqis": {
        "services": {
            "internet": [
                {
                    "name": "internet.latency",
                    "category": "integrity",
                    "metric": "latency_ms",
                    "window": "10s",
                    "objective": "max",
                    "target": 100,
                    "min_samples": 3,
                }
            ]
        }
    },
}
FAST_INCIDENTS = {"settle": "1s", "hold_down": "2s"}


def _path_samples(t: float) -> list[dict[str, Any]]:
    """One round of internet path samples at ``t``: 300 ms behind olt-7, 20 ms elsewhere."""
    lines = []
    for customer, target, latency in [
        *((c, "olt-7", 300.0) for c in DEGRADED),
        *((c, ne, 20.0) for c, ne in HEALTHY.items()),
    ]:
        payload = {
            "probe_id": f"p-{customer}",
            "target": target,
            "service": "internet",
            "customer": customer,
            "time": t,
            "metrics": {"latency_ms": latency},
        }
        lines.append({"topic": f"soc/probes/p-{customer}", "payload": payload})
    return lines


async def test_a_degradation_nobody_alarmed_is_inferred_delivered_and_reported_in_the_daemon(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Over MQTT, every 0.5 s: four internet paths behind olt-7 at 300 ms, four behind olt-001 and
    olt-002 at 20 ms, no alarm. With a 10 s latency window and evaluations every second, olt-7 is
    inferred (on every degraded path, on no healthy one: confidence 4/4 × (1 − 0/4) = 1.00) and the
    degraded incident reaches the webhook with the evidence. The API then shows: c-00001 (bronze,
    internet only, behind olt-7) with its latency violated (300 > 100 ms; its only KQI) → index 0.0,
    "bad", and its SLA state (bronze group of 9 on olt-7, up); c-00021 (behind olt-001) at 20 ms →
    100.0, "good"; /services: 8 internet paths measured, 4 degraded, 0 customers down; /sla: the
    default tiers' customer counts of the example topology (20, 82, 306, 612), none down, no breach."""
    async with (
        running_daemon(
            tmp_path,
            broker_url=mosquitto.url,
            prefix=topic_prefix,
            extra={"core": {"incidents": FAST_INCIDENTS, "quality": FAST_QUALITY}},
        ) as (daemon, rx),
        aiohttp.ClientSession() as http,
    ):

        async def feed() -> None:
            while True:
                await publish(mosquitto.url, with_prefix(_path_samples(time.time()), topic_prefix))
                await asyncio.sleep(0.5)

        feeder = asyncio.create_task(feed())
        try:
            await asyncio.wait_for(
                rx.wait_until(lambda r: any(rec["event"] == "opened" for rec in r.records)), 30
            )
            (opened,) = [rec for rec in rx.records if rec["event"] == "opened"]
            root = opened["root_cause"]
            assert (root["alarm_id"], root["ne_id"], opened["state"]) == (
                "rule:inference:olt-7:internet",
                "olt-7",
                "degraded",
            )
            assert (
                "no alarm explains 4 degraded service path(s); 4 of them cross olt-7, and 0 healthy "
                "one(s) do (confidence 1.00)"
            ) in " ".join(opened["explanation"])

            assert daemon.http is not None
            base = f"http://127.0.0.1:{daemon.http.port}"
            async with http.get(f"{base}/customers/c-00001") as r:
                assert r.status == 200
                bad = await r.json()
            (latency,) = bad["kqis"]["internet"]
            assert (latency["name"], latency["status"], latency["value"]) == (
                "internet.latency",
                "violated",
                300.0,
            )
            assert (bad["experience"]["index"], bad["experience"]["band"]) == (0.0, "bad")
            assert (bad["sla"]["tier"], bad["sla"]["down"], bad["sla"]["group"]) == (
                "bronze",
                False,
                {"access": "olt-7", "tier": "bronze", "services": ["internet"], "customers": 9},
            )
            async with http.get(f"{base}/customers/c-00021") as r:
                good = await r.json()
            assert (good["experience"]["index"], good["experience"]["band"]) == (100.0, "good")

            async with http.get(f"{base}/services") as r:
                assert r.status == 200
                internet = (await r.json())["services"]["internet"]
            assert (internet["kqis"]["paths"], internet["kqis"]["degraded_paths"]) == (8, 4)
            assert internet["customers_by_state"].get("down", 0) == 0
            assert internet["open_incidents"] == [opened["incident_id"]]
            async with http.get(f"{base}/sla") as r:
                assert r.status == 200
                report = await r.json()
            assert {name: (t["customers"], t["customers_down"]) for name, t in report["tiers"].items()} == {
                "bronze": (612, 0),
                "gold": (82, 0),
                "platinum": (20, 0),
                "silver": (306, 0),
            }
            assert report["breaches"] == []
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder


async def test_an_outage_under_sla_carries_sla_facts_and_its_breach_is_recorded_as_it_happens(
    tmp_path: Path, topic_prefix: str
) -> None:
    """HTTP ingest: olt-002 loses its signal and stays down. Only platinum has an SLA here, with a
    1 h period at 99.8 %: a budget of (1 − 0.998) × 3,600 = 7.2 s. c-00050 (platinum, internet, the
    only platinum customer on olt-002) is down: the incident, opened after the 1 s settle, reaches
    the webhook with the SLA facts (1 customer down, none breached yet, 7.2 s minus the time since
    the outage began, ≥ the 1 s settle, left: at most 6.2 s). While the outage lasts the daemon
    records the availability breach at outage start + 7.2 s (its next wake-up is the breach; the
    outage never ends here), and the API shows it: /sla (the group, not a customer id),
    /customers/c-00050 (index 0.0, down, breached)."""
    sla_tiers = {"tiers": {"platinum": {"availability": 0.998, "period": "1h", "time_to_restore": "1m"}}}
    async with (
        running_daemon(
            tmp_path,
            broker_url=None,
            prefix=topic_prefix,
            extra={"core": {"incidents": FAST_INCIDENTS, "quality": {"sla": sla_tiers}}},
            ready=False,
        ) as (daemon, rx),
        aiohttp.ClientSession() as http,
    ):
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        body = orjson.dumps(alarm("olt-002", "lossOfSignal", time.time() - T0, "critical")["payload"])
        async with http.post(f"{base}/events", data=body) as r:
            assert r.status == 202
        await asyncio.wait_for(
            rx.wait_until(lambda r: any(rec["event"] == "opened" for rec in r.records)), 20
        )
        (opened,) = [rec for rec in rx.records if rec["event"] == "opened"]
        assert opened["root_cause"]["alarm_id"] == "olt-002:lossOfSignal"
        facts = opened["sla"]
        assert (facts["customers_down"], facts["customers_breached"], facts["tier_breaching_first"]) == (
            1,
            0,
            "platinum",
        )
        assert 0.0 < facts["seconds_to_breach"] <= 7.2 - 1.0
        assert facts["urgency"] == 1.0  # within the 15 min `urgent` bound
        assert opened["priority_breakdown"]["sla"] == facts

        await until(lambda: bool(daemon.pipeline.quality.sla.breaches()), timeout=15, what="the breach")
        async with http.get(f"{base}/sla") as r:
            report = await r.json()
        platinum = report["tiers"]["platinum"]
        assert (
            platinum["customers"],
            platinum["customers_down"],
            platinum["seconds_to_first_breach"],
        ) == (
            20,
            1,
            0.0,
        )
        (breach,) = report["breaches"]
        assert (breach["kind"], breach["tier"], breach["group"]) == (
            "availability",
            "platinum",
            {"access": "olt-002", "tier": "platinum", "services": ["internet"], "customers": 1},
        )
        assert "customer" not in breach
        async with http.get(f"{base}/customers/c-00050") as r:
            view = await r.json()
        state = view["sla"]
        assert (view["experience"]["index"], state["down"], state["budget"]) == (0.0, True, 7.2)
        assert state["breached"]["availability"] is True
        assert state["breaches"] == [breach]
        started = parse_time(state["outage_started"])
        assert abs(parse_time(breach["at"]) - (started + 7.2)) <= 0.002  # both shown to the millisecond
