"""A restart: the broker's backlog is applied before the timers that fell due while the daemon was
down (issue 9 §3). A real daemon process, a private Mosquitto, a persistent session."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from structlog.testing import capture_logs

from bench.scenarios import fiber_cut
from engine.service.daemon import Daemon
from engine.tools.receiver import WebhookReceiver
from tests.daemon_harness import DaemonProcess, publish, settings, until, with_prefix, write_config
from tests.mosquitto import Mosquitto

ROOT_KEY = "agg-3:lossOfSignal:port 1/1/1"
SETTLE = 4.0


async def _applied(http: aiohttp.ClientSession, port: int, n: int) -> None:
    accepted = f'soc_messages_total{{kind="alarm",outcome="accepted",source="mqtt"}} {float(n)}'
    url = f"http://127.0.0.1:{port}/metrics"
    for _ in range(400):
        async with http.get(url) as resp:
            if accepted in await resp.text():
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the {n} alarms were not applied")


async def test_after_a_restart_the_backlog_is_applied_before_timers_fire(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """The daemon applies 50 symptoms and stops before they settle; their root reaches the broker
    while it is down (queued for the persistent session), and it starts again after the symptoms'
    settle time. No symptom incident is ever delivered: one incident, rooted at the cut, with the
    50 symptoms; nothing opened and then merged."""
    raises = with_prefix(fiber_cut()[:51], topic_prefix)
    root, symptoms = raises[10], raises[:10] + raises[11:]
    core = {"incidents": {"settle": f"{SETTLE}s", "hold_down": "2s", "update_interval": "0.5s"}}
    async with WebhookReceiver() as rx:
        cfg = write_config(
            tmp_path,
            broker_url=mosquitto.url,
            prefix=topic_prefix,
            receivers=[{"name": "noc", "url": rx.url}],
            extra={"core": core},
        )
        proc = DaemonProcess(cfg, tmp_path / "daemon.log")
        proc.start()
        try:
            await proc.wait_started()
            port = proc.started_lines()[0]["http_port"]
            async with aiohttp.ClientSession() as http:
                await until(
                    lambda: b"mqtt caught up" in proc.log.read_bytes(), timeout=20, what="subscription"
                )
                published = time.monotonic()
                await publish(mosquitto.url, symptoms)
                await _applied(http, port, 50)
            assert proc.terminate() == 0
            assert rx.records == [], "the symptoms opened before the stop: the test's premise is broken"
            await publish(mosquitto.url, [root])  # queued by the broker for the daemon's session
            await asyncio.sleep(max(0.0, published + SETTLE + 1.0 - time.monotonic()))  # timers fall due
            proc.start()
            await proc.wait_started()
            await until(
                lambda: any(len(r.get("suppressed", [])) == 50 for r in rx.records),
                timeout=30,
                what="the root's incident with all 50 symptoms",
            )
            await asyncio.sleep(1.0)  # anything else would have been delivered by now
        finally:
            proc.stop()
    log = proc.log.read_text()
    assert {r["root_cause"]["alarm_id"] for r in rx.records} == {ROOT_KEY}, log[-3000:]
    assert len({r["incident_id"] for r in rx.records}) == 1
    assert [r["event"] for r in rx.records][:1] == ["opened"]
    assert "backlog applied; timers run" in log


async def test_without_the_catch_up_marker_timers_wait_only_catch_up_timeout(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """When the marker never comes back (here: published where nobody subscribed), the daemon warns
    after `mqtt.catch_up_timeout` and lets its timers run: an incident still opens."""
    mqtt = {
        "url": mosquitto.url,
        "client_id": f"engine-{topic_prefix.rsplit('/', 1)[-1][-40:]}",
        "alarm_topics": [f"{topic_prefix}/alarms/#"],
        "probe_topics": [f"{topic_prefix}/probes/#"],
        "dead_letter_topic": f"{topic_prefix}/deadletter",
        "incident_topic": f"{topic_prefix}/incidents",
        "catch_up_timeout": "1s",
    }
    cfg = write_config(tmp_path, broker_url=mosquitto.url, prefix=topic_prefix, extra={"mqtt": mqtt})
    with capture_logs() as logs:
        daemon = Daemon(settings(cfg))
        assert daemon.source is not None
        daemon.source.sync_topic = f"{topic_prefix}/nobody-subscribes"  # the marker is lost
        async with daemon:
            await until(daemon.source.subscribed.is_set, timeout=10, what="subscription")
            await publish(mosquitto.url, with_prefix(fiber_cut()[10:11], topic_prefix))
            await until(lambda: bool(daemon.store.incidents()), timeout=20, what="the root's incident")
    events = [e["event"] for e in logs]
    assert "catch-up timed out: firing the timers that fell due while the engine was down" in events
    assert not daemon.source.caught_up.is_set()
