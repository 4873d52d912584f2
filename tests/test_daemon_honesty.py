"""The daemon says what it dropped and never repeats itself (issue 9 §4-5): dead letters kept and
served, rejected input logged, the outbox gauge back at 0, acknowledgements idempotent. A real
daemon, a real webhook receiver, a real SQLite file, a private Mosquitto where MQTT is involved."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from structlog.testing import capture_logs

from bench.scenarios import alarm
from engine.service.daemon import Daemon
from engine.service.logs import RateLimited
from engine.tools.receiver import WebhookReceiver
from tests.daemon_harness import collecting, publish, running_daemon, settings, until, write_config
from tests.mosquitto import Mosquitto, free_port


def _bad(i: int) -> dict[str, Any]:
    return {"ne_id": "olt-001", "severity": "major", "n": i}  # no probable_cause, no event_time


async def _metric(http: aiohttp.ClientSession, base: str, line_start: str) -> float | None:
    async with http.get(f"{base}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


async def test_dead_letters_of_a_burst_with_the_broker_down_are_kept_served_and_all_published(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """1500 rejected events arrive over HTTP while the broker is down (more than the old in-memory
    buffer of 1000 held): every one is kept in the store, served at GET /dead-letters (filters,
    pages), and published on the dead-letter topic once the broker is back; none is dropped."""
    n = 1500
    async with (
        running_daemon(tmp_path, broker_url=mosquitto.url, prefix=topic_prefix) as (daemon, _),
        aiohttp.ClientSession() as http,
    ):
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        mosquitto.stop()
        body = b"\n".join(orjson.dumps(_bad(i)) for i in range(n))
        headers = {"Content-Type": "application/x-ndjson"}
        async with http.post(f"{base}/events", data=body, headers=headers) as resp:
            assert resp.status == 202
        await until(
            lambda: daemon.store.dead_letter_counts()[0] == n, timeout=30, what="1500 dead letters kept"
        )
        bad_mqtt = [(f"{topic_prefix}/alarms/olt-001", b'{"ne_id": "olt-001"')]  # malformed JSON
        async with http.get(f"{base}/dead-letters?source=http&limit=2") as resp:
            page = await resp.json()
        assert page["count"] == 2
        assert page["dead_letters"][0]["source"] == "http"
        assert {e["field"] for e in page["dead_letters"][0]["errors"]} >= {"probable_cause"}
        assert page["next"].startswith("/dead-letters?")
        async with http.get(base + page["next"]) as resp:
            second = await resp.json()
        assert second["dead_letters"][0]["id"] == page["dead_letters"][1]["id"] - 1
        async with http.get(f"{base}/dead-letters?reason=no-such-reason") as resp:
            assert (await resp.json())["count"] == 0
        async with http.get(f"{base}/dead-letters?limit=0") as resp:
            assert resp.status == 400
            assert "limit" in (await resp.json())["error"]
        mosquitto.start()
        async with collecting(mosquitto.url, f"{topic_prefix}/deadletter") as dead:
            await publish(mosquitto.url, bad_mqtt)
            await until(lambda: len(dead) >= n + 1, timeout=60, what="every dead letter on the topic")
            await until(lambda: daemon.store.dead_letter_counts()[1] == 0, timeout=10, what="all published")
        async with http.get(f"{base}/dead-letters?source=mqtt&topic={topic_prefix}/alarms/%23") as resp:
            (from_mqtt,) = (await resp.json())["dead_letters"]
        assert from_mqtt["payload"] == '{"ne_id": "olt-001"'
        for _ in range(100):  # the gauges are refreshed once a second
            kept = await _metric(http, base, "soc_dead_letters_kept")
            if kept == n + 1 and await _metric(http, base, "soc_dead_letters_unpublished") == 0:
                break
            await asyncio.sleep(0.05)
        assert await _metric(http, base, "soc_dead_letters_kept") == n + 1
        assert await _metric(http, base, "soc_dead_letters_unpublished") == 0
        assert await _metric(http, base, "soc_dead_letters_dropped_total") == 0
    assert len({d["payload"] for d in dead}) == n + 1  # each once at least, none lost
    assert daemon.publisher is not None
    assert daemon.publisher.stats["dropped"] == 0


async def test_rejected_input_is_logged_at_warning_rate_limited_with_a_count(
    tmp_path: Path, topic_prefix: str
) -> None:
    """Each rejected input is a warning naming the source, topic, field and reason, up to the
    limit per interval; the rest are counted, and the count is logged once the interval is over."""
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix)
    with capture_logs() as logs:
        async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
            assert daemon.http is not None
            daemon._rejections = RateLimited(burst=3, interval=1.0)
            body = orjson.dumps([_bad(i) for i in range(8)])
            async with http.post(f"http://127.0.0.1:{daemon.http.port}/events", data=body) as resp:
                assert resp.status == 202
            await until(
                lambda: any(e.get("suppressed") == 5 for e in logs), timeout=10, what="the suppressed count"
            )
    rejected = [e for e in logs if e["event"] == "input rejected"]
    assert len(rejected) == 3
    assert all(e["log_level"] == "warning" for e in rejected)
    assert (rejected[0]["source"], rejected[0]["field"]) == ("http", "probable_cause")
    assert rejected[0]["topic"].startswith(topic_prefix)
    assert '"n":0' in rejected[0]["payload"]


async def test_outbox_gauge_returns_to_zero_and_a_second_acknowledgement_changes_nothing(
    tmp_path: Path, topic_prefix: str
) -> None:
    """With the receiver down the outbox gauge counts the waiting records; once it is up and has
    them all, the gauge reads 0 (not its last value). The same person acknowledging twice makes one
    `updated` record, whose console line says who acknowledged."""
    port = free_port()
    cfg = write_config(
        tmp_path,
        broker_url=None,
        prefix=topic_prefix,
        receivers=[{"name": "noc", "url": f"http://127.0.0.1:{port}/incidents"}],
    )
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        gauge = 'soc_outbox_depth{receiver="noc"}'
        body = orjson.dumps(alarm("olt-001", "linkDown", 0, "critical")["payload"])
        async with http.post(f"{base}/events", data=body) as resp:
            assert resp.status == 202
        for _ in range(200):
            if (await _metric(http, base, gauge) or 0) >= 1:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the outbox gauge never counted the waiting record")
        (opened,) = daemon.store.incidents()
        ack = f"{base}/incidents/{opened['incident_id']}/ack"
        answers = []
        for _ in range(2):
            async with http.post(ack, data=orjson.dumps({"by": "noc-alice", "note": "on it"})) as resp:
                assert resp.status == 200
                answers.append(await resp.json())
        assert [a["version"] for a in answers] == [2, 2]
        async with WebhookReceiver(port=port) as rx:
            await asyncio.wait_for(rx.wait_records(2), 20)
            for _ in range(100):
                if await _metric(http, base, gauge) == 0:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"{gauge} kept its last value once nothing was pending")
            await asyncio.sleep(0.3)
            assert [r["event"] for r in rx.records] == ["opened", "updated"]
            assert rx.render_line(rx.records[1]).endswith("acknowledged by noc-alice (on it)")


async def test_records_left_for_a_receiver_no_longer_configured_are_named_not_gauged(
    tmp_path: Path, topic_prefix: str
) -> None:
    """A receiver removed from the config (a webhook, or the MQTT incident topic set to null) leaves
    its pending records in the store: the restart says so, with their count per receiver, and the
    outbox gauge shows only the receivers configured (it would otherwise read N for ever)."""
    down = {"name": "noc", "url": f"http://127.0.0.1:{free_port()}/incidents"}
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix, receivers=[down])
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        body = orjson.dumps(alarm("olt-001", "linkDown", 0, "critical")["payload"])
        async with http.post(f"http://127.0.0.1:{daemon.http.port}/events", data=body) as resp:
            assert resp.status == 202
        await until(lambda: daemon.store.outbox_depth().get("noc", 0) >= 1, timeout=10, what="a pending row")
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix)  # noc removed
    with capture_logs() as logs:
        async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
            assert daemon.http is not None
            base = f"http://127.0.0.1:{daemon.http.port}"
            daemon._refresh_metrics()
            assert await _metric(http, base, 'soc_outbox_depth{receiver="noc"}') is None
            assert daemon.store.outbox_depth()["noc"] >= 1  # kept, not sent, not dropped
    (warning,) = [e for e in logs if e["event"] == "records waiting for receivers no longer configured"]
    assert warning["log_level"] == "warning"
    assert warning["receivers"]["noc"] >= 1


async def test_a_publish_refused_for_a_reason_other_than_the_broker_is_logged_once_not_per_retry(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """A dead letter the MQTT client refuses to publish (a wildcard topic: the config refuses one
    now, so these settings are made past it, ``model_copy`` validating nothing, to stand for any
    refusal that is not the broker being away) is retried, and the retries were silent: one error
    names the reason, once, however many retries follow."""
    cfg = write_config(tmp_path, broker_url=mosquitto.url, prefix=topic_prefix)
    s = settings(cfg)
    s = s.model_copy(update={"mqtt": s.mqtt.model_copy(update={"dead_letter_topic": f"{topic_prefix}/#"})})
    with capture_logs() as logs:
        async with Daemon(s) as daemon, aiohttp.ClientSession() as http:
            assert daemon.http is not None
            assert daemon.publisher is not None
            publisher = daemon.publisher
            await until(lambda: daemon.ready, timeout=10, what="readiness")
            url = f"http://127.0.0.1:{daemon.http.port}/events"
            async with http.post(url, data=orjson.dumps(_bad(0))) as resp:
                assert resp.status == 202
            await until(
                lambda: publisher.stats["publish_failures"] >= 3, timeout=20, what="three refused publishes"
            )
    failing = [e for e in logs if str(e["event"]).startswith("mqtt publish keeps failing")]
    assert len(failing) == 1, failing
    assert failing[0]["log_level"] == "error"
    assert (failing[0]["what"], failing[0]["topic"]) == ("dead letter", f"{topic_prefix}/#")
    assert "wildcard" in failing[0]["error"]
