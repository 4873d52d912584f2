"""The daemon against real parts: a private Mosquitto, a real webhook receiver, a real SQLite file."""

from __future__ import annotations

import asyncio
import gc
import html
import time
import weakref
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import orjson
import pytest
import yaml

from bench.scenarios import T0, alarm, clear, fiber_cut
from engine import compiled
from engine.adapters.store import Store
from engine.model.timeutil import format_time, parse_time
from engine.service.daemon import Daemon
from engine.service.heap import freeze_heap
from engine.tools.receiver import WebhookReceiver
from tests.daemon_harness import (
    DaemonProcess,
    collecting,
    host_port,
    publish,
    running_daemon,
    settings,
    until,
    with_prefix,
    write_config,
)
from tests.mosquitto import Mosquitto, free_port

ROOT_KEY = "agg-3:lossOfSignal:port 1/1/1"


def _raises_and_clears(prefix: str) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    lines = fiber_cut()
    return with_prefix(lines[:51], prefix), with_prefix(lines[51:], prefix)


def _by_event(records: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("event") == event]


async def test_a_fiber_cut_over_mqtt_becomes_one_incident_delivered_everywhere(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """51 alarms over MQTT → one signed webhook `opened` rooted at the fiber cut, the same incident
    on the MQTT incident topic and on the HTTP API; the clears → `resolved`, with all 50 symptoms
    suppressed under the root. (The `opened` record holds the symptoms that arrived within the
    settle time: all 50 on a quiet machine, fewer when publishing the 51 takes longer than that;
    the rest come in `updated` records.)"""
    async with WebhookReceiver(secret="s3cret") as rx:
        cfg = write_config(
            tmp_path,
            broker_url=mosquitto.url,
            prefix=topic_prefix,
            receivers=[{"name": "noc", "url": rx.url, "secret": "s3cret"}],
        )
        raises, clears = _raises_and_clears(topic_prefix)
        async with (
            collecting(mosquitto.url, f"{topic_prefix}/incidents/#") as on_topic,
            Daemon(settings(cfg)) as daemon,
        ):
            await until(lambda: daemon.ready, timeout=10, what="readiness")
            await publish(mosquitto.url, raises)
            await asyncio.wait_for(rx.wait_until(lambda r: bool(_by_event(r.records, "opened"))), 20)
            await publish(mosquitto.url, clears)
            await asyncio.wait_for(rx.wait_until(lambda r: bool(_by_event(r.records, "resolved"))), 20)
            (opened,) = _by_event(rx.records, "opened")
            assert opened["root_cause"]["alarm_id"] == ROOT_KEY
            assert 0 < len(opened["suppressed"]) <= 50
            (resolved,) = _by_event(rx.records, "resolved")
            assert resolved["incident_id"] == opened["incident_id"]
            assert len({s["alarm_id"] for s in resolved["suppressed"]}) == 50
            assert rx.counts.bad_signatures == 0
            assert daemon.http is not None
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{daemon.http.port}/incidents/{opened['incident_id']}"
                async with http.get(url) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["event"] == "resolved"
            await until(lambda: len(on_topic) >= 2, timeout=10, what="records on the MQTT topic")
        assert [r["event"] for r in on_topic][:1] == ["opened"]
        assert {r["incident_id"] for r in on_topic} == {opened["incident_id"]}


async def test_with_no_incident_topic_records_go_only_to_the_webhooks(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """``mqtt.incident_topic: null``: no incident record is published on MQTT (no ``mqtt`` receiver,
    no outbox rows for it), the webhook gets them as ever, and dead letters are still published."""
    async with WebhookReceiver() as rx:
        noc = [{"name": "noc", "url": rx.url}]
        cfg = _records_off(tmp_path, broker_url=mosquitto.url, prefix=topic_prefix, receivers=noc)
        async with (
            collecting(mosquitto.url, f"{topic_prefix}/deadletter") as dead,
            collecting(mosquitto.url, f"{topic_prefix}/incidents/#") as records,
            Daemon(settings(cfg)) as daemon,
        ):
            await until(lambda: daemon.ready, timeout=10, what="readiness")
            good = with_prefix([alarm("olt-001", "linkDown", 0, "critical")], topic_prefix)
            await publish(mosquitto.url, [(f"{topic_prefix}/alarms/olt-001", b"{not json"), *good])
            await asyncio.wait_for(rx.wait_until(lambda r: bool(_by_event(r.records, "opened"))), 20)
            await until(lambda: bool(dead), timeout=10, what="the dead letter")
            assert daemon.receiver_names() == ["noc"]
            assert [r["name"] for r in daemon.operations()["receivers"]] == ["noc"]
            assert "mqtt" not in daemon.store.outbox_stats()
            assert daemon.publisher is not None
            assert daemon.publisher.stats["published"] == 1  # the dead letter, nothing else
        assert records == []


def _records_off(tmp_path: Path, **options: Any) -> Path:
    """``write_config(tmp_path, **options)`` with ``mqtt.incident_topic: null``."""
    cfg = write_config(tmp_path, **options)
    data = yaml.safe_load(cfg.read_text())
    data["mqtt"]["incident_topic"] = None
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg


def _counting_dead_letter_looks(daemon: Daemon) -> list[int]:
    """Count the MQTT outbox's looks for dead letters to publish (``unpublished_dead_letters``): the
    returned list holds one entry per look."""
    looks: list[int] = []
    look = daemon.store.unpublished_dead_letters

    def counted(limit: int = 200) -> list[tuple[int, bytes]]:
        looks.append(limit)
        return look(limit)

    daemon.store.unpublished_dead_letters = counted  # type: ignore[method-assign]
    return looks


async def test_with_no_incident_topic_only_a_dead_letter_wakes_the_mqtt_outbox(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Records off: the commits of the webhook's records leave the MQTT outbox asleep (one look for
    dead letters at start, none after each commit), and the commit that keeps a dead letter wakes
    it. Its look-again interval is set to an hour, so only that wake can have published the dead
    letter within the test's seconds."""
    async with WebhookReceiver() as rx:
        noc = [{"name": "noc", "url": rx.url}]
        cfg = _records_off(tmp_path, broker_url=mosquitto.url, prefix=topic_prefix, receivers=noc)
        daemon = Daemon(settings(cfg))
        daemon._outbox_poll = 3600.0
        looks = _counting_dead_letter_looks(daemon)
        async with collecting(mosquitto.url, f"{topic_prefix}/deadletter") as dead, daemon:
            await until(lambda: daemon.ready, timeout=10, what="readiness")
            for i, (ne, cause) in enumerate(
                [("olt-001", "linkDown"), ("olt-020", "powerProblem"), ("cell-c1", "lossOfSignal")]
            ):
                before = len(rx.records)
                await publish(mosquitto.url, with_prefix([alarm(ne, cause, i, "critical")], topic_prefix))
                await asyncio.wait_for(rx.wait_records(before + 1), 20)  # each in a commit of its own
            assert len(_by_event(rx.records, "opened")) >= 2  # commits with outbox rows: each set `changed`
            assert len(looks) == 1, looks  # the look at start only
            await publish(mosquitto.url, [(f"{topic_prefix}/alarms/olt-001", b"{not json")])
            await until(
                lambda: bool(dead), timeout=10, what="the dead letter, published on its commit's wake"
            )
            await until(
                lambda: daemon.store.dead_letter_counts() == (1, 0), timeout=10, what="marked published"
            )
            assert 2 <= len(looks) <= 3, looks  # woken once: the look that found it (and one after)


async def test_with_no_incident_topic_a_dead_letter_kept_while_the_broker_is_down_is_published_on_reconnect(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Records off, the broker down: a rejected HTTP event is kept, and published on the dead-letter
    topic once the broker is back (the outbox's look-again interval set to an hour: the retries after
    the failed publish carry it, no later commit needed). A persistent session subscribed before the
    stop receives it, whenever it left."""
    cfg = _records_off(tmp_path, broker_url=mosquitto.url, prefix=topic_prefix)
    host, port = host_port(mosquitto.url)
    watch: dict[str, Any] = {
        "hostname": host,
        "port": port,
        "identifier": f"watch-{time.monotonic_ns()}",
        "clean_session": False,
    }
    async with aiomqtt.Client(**watch) as client:
        await client.subscribe(f"{topic_prefix}/deadletter", qos=1)
    daemon = Daemon(settings(cfg))
    daemon._outbox_poll = 3600.0
    async with daemon, aiohttp.ClientSession() as http:
        await until(lambda: daemon.ready, timeout=10, what="readiness")
        assert daemon.http is not None
        assert daemon.publisher is not None
        mosquitto.stop()
        bad = orjson.dumps({"ne_id": "olt-001", "severity": "major", "n": 1})  # no probable_cause
        url = f"http://127.0.0.1:{daemon.http.port}/events"
        async with http.post(url, data=bad, headers={"Content-Type": "application/x-ndjson"}) as resp:
            assert resp.status == 202
        await until(
            lambda: daemon.store.dead_letter_counts() == (1, 1), timeout=10, what="the dead letter kept"
        )
        await asyncio.sleep(1.0)  # its wake came and its publish is waiting for the broker
        assert daemon.store.dead_letter_counts() == (1, 1)
        mosquitto.start()
        await until(lambda: daemon.store.dead_letter_counts() == (1, 0), timeout=30, what="published")
        assert daemon.publisher.stats["published"] == 1
    async with aiomqtt.Client(**watch) as client:
        got = await asyncio.wait_for(anext(aiter(client.messages)), 10)
    assert orjson.loads(bytes(got.payload))["payload"] == bad.decode()


async def _dead_letters_of(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str, bad: bytes, timeout: float
) -> list[dict[str, Any]]:
    """Publish ``bad`` on an alarm topic and a good alarm after it; once the dead letter came and the
    good alarm opened its incident (each within ``timeout``), the dead letters received."""
    cfg = write_config(tmp_path, broker_url=mosquitto.url, prefix=topic_prefix)
    async with (
        collecting(mosquitto.url, f"{topic_prefix}/deadletter") as dead,
        Daemon(settings(cfg)) as daemon,
    ):
        await until(lambda: daemon.ready, timeout=10, what="readiness")
        good = with_prefix([alarm("olt-001", "linkDown", 0, "critical")], topic_prefix)
        await publish(mosquitto.url, [(f"{topic_prefix}/alarms/olt-001", bad), *good])
        await until(lambda: bool(dead), timeout=timeout, what="a dead letter")
        await until(
            lambda: any(i.root == "olt-001:linkDown" for i in daemon.pipeline.incidents.incidents()),
            timeout=timeout,
            what="the good alarm's incident",
        )
    return dead


async def test_invalid_messages_are_dead_lettered_with_the_reason(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """A malformed alarm is published on the dead-letter topic with the field and reason; the good
    alarm after it still opens its incident."""
    bad = b'{"ne_id": "olt-999", "severity": "major"}'
    dead = await _dead_letters_of(tmp_path, mosquitto, topic_prefix, bad, timeout=10)
    errors = {(e["field"], e["reason"]) for e in dead[0]["errors"]}
    assert ("probable_cause", "field required") in errors


async def test_a_payload_of_megabytes_is_dead_lettered_and_the_next_alarm_goes_on(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """A 2 MiB PUBLISH (cut by many reads: paho gathers it, not the engine's framer) is refused with
    its size on the dead-letter topic; the alarm published after it opens its incident."""
    huge = b'{"pad": "' + b"x" * (2 << 20) + b'"}'
    dead = await _dead_letters_of(tmp_path, mosquitto, topic_prefix, huge, timeout=20)
    reasons = [e["reason"] for e in dead[0]["errors"]]
    assert reasons == [f"payload is {len(huge)} bytes, limit is 65536"], reasons


async def test_broker_restart_mid_stream_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Half the storm, a broker restart, the other half: one incident with all 50 symptoms."""
    raises, _ = _raises_and_clears(topic_prefix)
    async with running_daemon(
        tmp_path,
        broker_url=mosquitto.url,
        prefix=topic_prefix,
    ) as (daemon, rx):
        await publish(mosquitto.url, raises[:25])
        mosquitto.restart()
        await until(lambda: daemon.ready, timeout=20, what="re-subscription after the restart")
        await publish(mosquitto.url, raises[25:])
        await until(
            lambda: any(len(r.get("suppressed", [])) == 50 for r in rx.records),
            timeout=20,
            what="an incident record with all 50 symptoms",
        )
        assert daemon.source is not None
        assert daemon.source.stats["reconnects"] >= 1


async def test_receiver_down_then_up_gets_everything_in_order_once(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """With the receiver down, records wait in the outbox; when it comes up it gets every transition,
    in version order, once per idempotency key."""
    port = free_port()
    cfg = write_config(
        tmp_path,
        broker_url=mosquitto.url,
        prefix=topic_prefix,
        receivers=[{"name": "noc", "url": f"http://127.0.0.1:{port}/incidents"}],
    )
    raises, clears = _raises_and_clears(topic_prefix)
    async with Daemon(settings(cfg)) as daemon:
        await until(lambda: daemon.ready, timeout=10, what="readiness")
        await publish(mosquitto.url, raises)
        await publish(mosquitto.url, clears)
        await until(
            lambda: (
                any(i.phase == "resolved" for i in daemon.pipeline.incidents.incidents())
                or daemon.pipeline.incidents.resolved >= 1
            ),
            timeout=20,
            what="the incident to resolve in the core",
        )
        assert daemon.store.outbox_depth().get("noc", 0) >= 2
        async with WebhookReceiver(port=port) as rx:
            await asyncio.wait_for(rx.wait_until(lambda r: bool(_by_event(r.records, "resolved"))), 20)
            versions = [r["version"] for r in rx.records]
            assert versions == sorted(versions)
            assert rx.records[0]["event"] == "opened"
            assert rx.counts.duplicates == 0


async def test_reload_refuses_a_broken_ruleset_and_keeps_running(tmp_path: Path, topic_prefix: str) -> None:
    """POST /-/reload with a broken ruleset: 409 with the reason, the old rules keep correlating;
    fixed: 200 and the state (open incidents) is still there."""
    rules = tmp_path / "rules"
    rules.mkdir()
    good = (Path(__file__).resolve().parents[1] / "rulesets" / "default.yaml").read_text()
    (rules / "default.yaml").write_text(good)
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix, extra={"rulesets": [str(rules)]})
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        line = alarm("olt-001", "linkDown", 0, "critical")
        async with http.post(f"{base}/events", data=orjson.dumps(line["payload"])) as resp:
            assert resp.status == 202
        await until(lambda: bool(list(daemon.pipeline.incidents.incidents())), timeout=10, what="an incident")
        (rules / "default.yaml").write_text(good.replace("downstream_of", "downstream"))
        async with http.post(f"{base}/-/reload") as resp:
            assert resp.status == 409
            assert "downstream" in (await resp.text())
        (rules / "default.yaml").write_text(good)
        async with http.post(f"{base}/-/reload") as resp:
            assert resp.status == 200
        assert [i.root for i in daemon.pipeline.incidents.incidents()] == ["olt-001:linkDown"]


async def test_a_reload_after_the_heap_was_frozen_frees_the_old_pipeline_and_freezes_the_new(
    tmp_path: Path, topic_prefix: str
) -> None:
    """`engine run` freezes the heap once started (the topology out of the collector's sight); a reload
    then unfreezes, collects the old pipeline (cycles included) and freezes the new one."""
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix)
    async with Daemon(settings(cfg)) as daemon:
        freeze_heap()
        try:
            # the old pipeline, through its correlator's rule host (held by that correlator alone): a
            # class compiled by mypyc (engine.compiled) cannot be weakly referenced itself
            old = weakref.ref(daemon.pipeline.correlator._host)
            ok, message = await daemon.reload()
            assert ok, message
            assert old() is None
            assert gc.get_freeze_count() > 0
        finally:
            gc.unfreeze()  # the rest of this test process is not frozen


async def test_kill_9_mid_stream_then_restart_loses_no_message_and_no_transition(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """The daemon is killed (SIGKILL) in the middle of a storm, after it has applied and acknowledged
    30 alarms, and started again: it rebuilds its state from the journal, every alarm ends up in the
    incident, and the receiver sees every version of it, in order, none missing."""
    async with WebhookReceiver() as rx:
        store = {"path": str(tmp_path / "engine.sqlite"), "snapshot_interval": "1h"}
        cfg = write_config(
            tmp_path,
            broker_url=mosquitto.url,
            prefix=topic_prefix,
            receivers=[{"name": "noc", "url": rx.url}],
            extra={"store": store},
        )
        raises, clears = _raises_and_clears(topic_prefix)
        proc = DaemonProcess(cfg, tmp_path / "daemon.log")
        proc.start()
        try:
            await proc.wait_started()
            await asyncio.sleep(0.5)  # subscribed (persistent session from now on)
            await publish(mosquitto.url, raises[:30])
            metrics = f"http://127.0.0.1:{proc.started_lines()[0]['http_port']}/metrics"
            accepted = 'soc_messages_total{kind="alarm",outcome="accepted",source="mqtt"} 30.0'
            async with aiohttp.ClientSession() as http:

                async def applied() -> bool:
                    async with http.get(metrics) as resp:
                        return accepted in await resp.text()

                for _ in range(200):
                    if await applied():
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the 30 alarms were not applied before the kill")
            proc.kill9()
            await publish(mosquitto.url, raises[30:])  # queued by the broker for the session
            proc.start()
            await proc.wait_started()
            await until(
                lambda: any(len(r.get("suppressed", [])) == 50 for r in rx.records),
                timeout=30,
                what="the incident with all 50 symptoms after the restart",
            )
            await publish(mosquitto.url, clears)
            await asyncio.wait_for(rx.wait_until(lambda r: bool(_by_event(r.records, "resolved"))), 30)
            second_start = proc.started_lines()[1]
        finally:
            proc.stop()
    assert second_start["journal_replayed"] >= 30  # the state came back from the journal
    assert second_start["core"] == compiled.CORE  # which core runs, and why (engine.compiled)
    incident = {r["incident_id"] for r in rx.records}
    assert len(incident) == 1
    versions = [r["version"] for r in rx.records]
    assert versions == list(range(1, versions[-1] + 1))  # every transition, in order, none missing


async def test_sigterm_drains_flushes_and_exits_cleanly(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """SIGTERM: intake stops, the queue is applied, the outbox flushed to the receiver, exit 0."""
    async with WebhookReceiver() as rx:
        cfg = write_config(
            tmp_path,
            broker_url=mosquitto.url,
            prefix=topic_prefix,
            receivers=[{"name": "noc", "url": rx.url}],
        )
        proc = DaemonProcess(cfg, tmp_path / "daemon.log")
        proc.start()
        try:
            await proc.wait_started()
            await asyncio.sleep(0.5)
            await publish(
                mosquitto.url, with_prefix([alarm("olt-002", "linkDown", 0, "critical")], topic_prefix)
            )
            await asyncio.wait_for(rx.wait_until(lambda r: bool(_by_event(r.records, "opened"))), 20)
            await publish(mosquitto.url, with_prefix([clear("olt-002", "linkDown", 1)], topic_prefix))
            loop = asyncio.get_running_loop()
            status = await loop.run_in_executor(None, proc.terminate)
        finally:
            proc.stop()
        assert status == 0, (tmp_path / "daemon.log").read_text()[-2000:]
        assert b"engine stopped" in (tmp_path / "daemon.log").read_bytes()


@pytest.mark.parametrize("token", ["t0ken"])
async def test_http_ingest_without_mqtt_and_bearer_token(
    tmp_path: Path, topic_prefix: str, token: str
) -> None:
    """With MQTT off, POST /events feeds the core; every endpoint but health needs the token."""
    cfg = write_config(
        tmp_path, broker_url=None, prefix=topic_prefix, extra={"http": {"port": 0, "token": token}}
    )
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/incidents") as resp:
            assert resp.status == 401
        auth = {"Authorization": f"Bearer {token}"}
        body = orjson.dumps(alarm("agg-3", "lossOfSignal", 0, "critical")["payload"])
        async with http.post(f"{base}/events", data=body, headers=auth) as resp:
            assert resp.status == 202
        await until(lambda: bool(daemon.store.incidents()), timeout=10, what="the incident in the store")
        async with http.get(f"{base}/elements/olt-001", headers=auth) as resp:
            view = await resp.json()
            assert view["health"]["effective"] == "down"
        async with http.get(f"{base}/metrics", headers=auth) as resp:
            text = await resp.text()
            assert 'soc_messages_total{kind="alarm",outcome="accepted",source="http"} 1.0' in text


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
async def test_a_core_failure_on_one_message_is_contained_and_the_core_goes_on(
    tmp_path: Path, topic_prefix: str
) -> None:
    """Fault injection: the core raises on one message. It is logged, counted as a dead letter, and
    the next message is processed as usual (the core task does not die)."""
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix)
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        real = daemon.pipeline.feed

        def feed(
            topic: str, payload: Any, now: float, *, flush: bool = True, parsed: dict[str, Any] | None = None
        ) -> Any:
            if b"poison" in payload:
                raise RuntimeError("injected fault")
            return real(topic, payload, now, flush=flush, parsed=parsed)

        daemon.pipeline.feed = feed  # type: ignore[method-assign]
        base = f"http://127.0.0.1:{daemon.http.port}"
        poison = alarm("olt-001", "poison", 0, "critical")["payload"]
        good = alarm("olt-002", "linkDown", 0, "critical")["payload"]
        for body in (poison, good):
            async with http.post(f"{base}/events", data=orjson.dumps(body)) as resp:
                assert resp.status == 202
        await until(
            lambda: any(i.root == "olt-002:linkDown" for i in daemon.pipeline.incidents.incidents()),
            timeout=10,
            what="the good message's incident",
        )
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
            assert "soc_dead_letters_total 1.0" in text, [x for x in text.splitlines() if "dead" in x]


async def test_delivered_outbox_rows_are_purged_after_keep_delivered(
    tmp_path: Path, topic_prefix: str
) -> None:
    """store.keep_delivered bounds the outbox: once a resolved incident's records are delivered and
    older than it, the periodic snapshot purges them."""
    async with WebhookReceiver() as rx:
        store = {
            "path": str(tmp_path / "engine.sqlite"),
            "snapshot_interval": "200ms",
            "keep_delivered": "0s",
        }
        cfg = write_config(
            tmp_path,
            broker_url=None,
            prefix=topic_prefix,
            receivers=[{"name": "noc", "url": rx.url}],
            extra={"store": store},
        )
        async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
            assert daemon.http is not None
            base = f"http://127.0.0.1:{daemon.http.port}"
            for line in (alarm("olt-003", "linkDown", 0, "critical"), clear("olt-003", "linkDown", 1)):
                async with http.post(f"{base}/events", data=orjson.dumps(line["payload"])) as resp:
                    assert resp.status == 202
            await asyncio.wait_for(rx.wait_until(lambda r: bool(_by_event(r.records, "resolved"))), 20)
            assert [r["event"] for r in rx.records] == ["opened", "resolved"]  # both went through the outbox
            await until(
                lambda: daemon.store.outbox_stats().get("noc", {}).get("delivered", 0) == 0,
                timeout=10,
                what="the delivered rows to be purged",
            )


async def test_operations_name_the_deliveries_being_retried_and_their_error(
    tmp_path: Path, topic_prefix: str
) -> None:
    """A receiver nobody listens on: its rows are retried, and the Operations page (and the
    daemon's ``operations()``) says how many, how many attempts and the last error."""
    cfg = write_config(
        tmp_path,
        broker_url=None,
        prefix=topic_prefix,
        receivers=[{"name": "noc", "url": f"http://127.0.0.1:{free_port()}/hook"}],
    )
    async with Daemon(settings(cfg)) as daemon, aiohttp.ClientSession() as http:
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"
        line = alarm("olt-003", "linkDown", 0, "critical")
        async with http.post(f"{base}/events", data=orjson.dumps(line["payload"])) as resp:
            assert resp.status == 202

        def trouble() -> dict[str, Any] | None:
            found: dict[str, Any] | None = daemon.operations()["receivers"][0]["trouble"]
            return found if found and found["attempts"] >= 2 else None

        await until(lambda: trouble() is not None, timeout=20, what="two failed attempts")
        found = trouble()
        assert found is not None
        assert found["retrying"] == 1
        assert found["last_error"]
        async with http.get(f"{base}/ui/operations") as resp:
            assert resp.status == 200
            page = await resp.text()
        assert "Retrying" in page
        assert html.escape(found["last_error"].split(":")[0]) in page


STORM_AND_TRANSIENTS = """\
name: live
rules:
  - name: link-storm
    threshold:
      match: {probable_cause: linkDown}
      by: [region]
      count: 5
      window: 1m
      raise: {probable_cause: alarmStorm, severity: major}
  - name: port-bounce
    pair: {first: {probable_cause: portFlap}, window: 30s, on_pair: discard}
"""


async def test_rule_forms_and_service_quality_run_in_the_daemon(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Over MQTT, on the wall clock: 6 link-downs become one storm incident; a port flap that clears
    within its pair window opens nothing; voip delay samples on sbc-1 above the G.114 target raise a
    quality alarm and a degraded incident."""
    rules = tmp_path / "live.yaml"
    rules.write_text(STORM_AND_TRANSIENTS)
    async with running_daemon(
        tmp_path,
        broker_url=mosquitto.url,
        prefix=topic_prefix,
        extra={
            "rulesets": [str(rules)],
            "core": {
                "incidents": {"settle": "1s", "hold_down": "2s"},
                "quality": {"evaluate_every": "1s"},
            },
        },
    ) as (daemon, rx):
        now = time.time()
        storm = [alarm(f"olt-{i:03d}", "linkDown", now - T0 + i * 0.1, "minor") for i in range(1, 7)]
        bounce = [
            alarm("olt-040", "portFlap", now - T0, "major"),
            clear("olt-040", "portFlap", now - T0 + 1),
        ]
        samples = [
            {
                "topic": f"soc/probes/p{i}",
                "payload": {
                    "probe_id": f"p{i}",
                    "target": "sbc-1",
                    "service": "voip",
                    "time": now + i * 0.1,
                    "metrics": {"latency_ms": 250.0},
                },
            }
            for i in range(5)
        ]
        await publish(mosquitto.url, with_prefix([*storm, *bounce, *samples], topic_prefix))

        def roots() -> set[str]:
            return {r["root_cause"]["alarm_id"] for r in _by_event(rx.records, "opened")}

        await asyncio.wait_for(
            rx.wait_until(lambda _: {"rule:live/link-storm:south", "rule:quality:sbc-1:voip"} <= roots()),
            30,
        )
        storm_rec = next(
            r for r in _by_event(rx.records, "opened") if r["root_cause"]["alarm_id"].endswith("south")
        )
        assert len(storm_rec["suppressed"]) == 6
        assert "olt-040:portFlap" not in roots()
        assert daemon.pipeline.incidents.discarded == 1


LIVE_FORMS = """\
name: live
rules:
  - name: environment-per-site
    group: {match: {event_type: environmentalAlarm}, by: [site], window: 10m, wait: 1s}
  - name: mains-mutes-site
    inhibit: {source: {probable_cause: mainsFailure}, target: {severity: {at_most: major}}, equal: [site]}
  - name: olt-latency
    kpi_threshold: {metric: latency_ms, above: 150, clear: 120, scope: {element_type: olt}}
  - name: agg-3-works
    maintenance:
      scope: {elements: [agg-3]}
      schedule: {start: "%(start)s", end: "%(end)s"}
  - name: olt-040-first
    priority: {when: {root: {ne_id: olt-040}}, set: 1}
  - name: restart-must-complete
    pair:
      first: {probable_cause: coldStart}
      second: {probable_cause: restartComplete}
      equal: [ne_id]
      window: 2s
      on_timeout: {raise: {probable_cause: restartFailed, severity: critical, effect: outage}}
"""


async def test_group_inhibit_kpi_threshold_maintenance_and_priority_run_in_the_daemon(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Over MQTT, on the wall clock, the forms the other daemon test does not cover: two
    environmental alarms of site-d1 become one group incident; a minor alarm of site-c is inhibited by
    the site's mains failure; latency samples on olt-040 raise a KPI breach whose incident a priority
    rule sets to P1; agg-3's loss of signal, raised inside a maintenance window that ends 5 s later,
    opens only at the window's end; a cold start with no restart-complete within 2 s escalates."""
    now = time.time()
    end = now + 5  # the daemon starts, and agg-3's alarm settles (1 s) and is held back, before it
    rules = tmp_path / "live.yaml"
    rules.write_text(LIVE_FORMS % {"start": format_time(now - 3600), "end": format_time(end)})
    async with running_daemon(
        tmp_path,
        broker_url=mosquitto.url,
        prefix=topic_prefix,
        extra={"rulesets": [str(rules)]},
    ) as (daemon, rx):
        t = time.time() - T0
        lines = [
            alarm("olt-001", "highTemperature", t, event_type="environmentalAlarm"),
            alarm("olt-006", "fanFailure", t + 0.1, event_type="environmentalAlarm"),
            alarm("pwr-c", "mainsFailure", t, "critical"),
            alarm("olt-7", "batteryLow", t + 0.2, "minor"),
            alarm("agg-3", "lossOfSignal", t, "critical"),
            alarm("olt-041", "coldStart", t, "major"),
            *(
                {
                    "topic": "soc/probes/p-olt-040",
                    "payload": {
                        "probe_id": "p-olt-040",
                        "target": "olt-040",
                        "time": T0 + t + i * 0.1,
                        "metrics": {"latency_ms": 300.0},
                    },
                }
                for i in range(3)
            ),
        ]
        await publish(mosquitto.url, with_prefix(lines, topic_prefix))

        def opened() -> dict[str, dict[str, Any]]:
            return {r["root_cause"]["alarm_id"]: r for r in _by_event(rx.records, "opened")}

        await until(lambda: daemon.pipeline.incidents.held_back == 1, timeout=20, what="agg-3 held back")
        assert "agg-3:lossOfSignal" not in opened()  # held back by the window
        first = {"olt-001:highTemperature", "pwr-c:mainsFailure", "rule:live/olt-latency:olt-040"}
        await asyncio.wait_for(rx.wait_until(lambda _: first <= set(opened())), 30)
        assert daemon.pipeline.incidents.held_back == 1
        escalation = "rule:live/restart-must-complete:olt-041:coldStart"
        # the cold start opens at its settle time; the escalation takes it in when the window ends
        want = {*first, "olt-041:coldStart", "agg-3:lossOfSignal", escalation}
        await asyncio.wait_for(rx.wait_until(lambda _: want <= set(opened())), 30)
        await asyncio.sleep(1.5)  # a settle time more, before judging what did not open
        got = opened()
        assert set(got) == want
        held = got["agg-3:lossOfSignal"]
        assert parse_time(held["opened_at"]) >= end - 0.001
        assert "held back by maintenance window live/agg-3-works" in " ".join(held["explanation"])
        assert [s["alarm_id"] for s in got[escalation]["suppressed"]] == ["olt-041:coldStart"]
        (merged,) = [r for r in _by_event(rx.records, "resolved") if r["resolution"] == "merged"]
        assert merged["incident_id"] == got["olt-041:coldStart"]["incident_id"]
        assert merged["merged_into"] == got[escalation]["incident_id"]
        group = got["olt-001:highTemperature"]
        assert [s["alarm_id"] for s in group["suppressed"]] == ["olt-006:fanFailure"]
        assert "grouped by site=site-d1" in group["suppressed"][0]["reason"]
        mains = got["pwr-c:mainsFailure"]
        assert [s["alarm_id"] for s in mains["suppressed"]] == ["olt-7:batteryLow"]
        assert "inhibited while the source is active" in mains["suppressed"][0]["reason"]
        breach = got["rule:live/olt-latency:olt-040"]
        assert breach["root_cause"]["probable_cause"] == "thresholdCrossed"
        assert breach["priority"] == 1
        assert breach["priority_breakdown"]["overrides"][0]["rule"] == "live/olt-040-first"


async def test_a_damaged_journal_entry_is_skipped_at_recovery_and_the_rest_applied(
    tmp_path: Path, topic_prefix: str
) -> None:
    """The store's file was damaged: one compressed payload (a batch of samples) no longer
    inflates. The daemon starts anyway: the entries around it are applied, the damaged one is
    logged and counted (``recovered.journal_unreadable``, in /status too), none stops the start."""
    path = tmp_path / "engine.sqlite"
    raised = [alarm("olt-001", "linkDown", 0, "critical"), alarm("olt-002", "linkDown", 1, "critical")]
    batch = orjson.dumps(
        {
            "samples": [
                {"probe_id": "p", "target": "olt-001", "time": format_time(T0 + k), "metrics": {"mos": 4.2}}
                for k in range(60)
            ]
        }
    )
    async with Store(path) as store:
        (first, one), (second, two) = with_prefix(raised, topic_prefix)
        store.append("msg", first, one, T0)
        store.append("msg", f"{topic_prefix}/probes/p", batch, T0 + 0.5)
        store.append("msg", second, two, T0 + 1)
        store.commit()
        assert store.db.execute("SELECT packed FROM journal WHERE seq = 2").fetchone() == (1,)
        store.db.execute("UPDATE journal SET payload = ? WHERE seq = 2", (b"\xff" * 40,))
        store.db.commit()
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix, extra={"store": {"path": str(path)}})
    async with Daemon(settings(cfg)) as daemon:
        assert daemon.recovered["journal_replayed"] == 2
        assert daemon.recovered["journal_unreadable"] == 1
        assert daemon.pipeline.query.active_alarm_count() == 2
