"""The cluster on a real 3-node NATS JetStream cluster (replicas 3): leases, fencing, failover.

Every test starts its own nats-server processes on free 127.0.0.1 ports with stores under
``tmp_path`` (never the system server on 4222); the failover test starts engine processes
(``engine run --cluster``) and kills one with SIGKILL.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import orjson
import pytest
import yaml
from nats.js.errors import KeyWrongLastSequenceError

from engine.adapters.jetstream import DEADLETTERS, DELIVERED, INCIDENTS, INGEST, JetStream, mqtt_topic
from engine.adapters.notifier import Notifier
from engine.adapters.store import Store, WireRecord
from engine.core.partitions import GLOBAL, correlation_domains, partition_table
from engine.core.pipeline import Pipeline
from engine.core.settings import CoreSettings
from engine.model.topology import load_topology
from engine.rules.schema import load_rulesets
from engine.service.cluster import ClusterNode, cluster_status
from engine.service.cluster_http import ClusterHttp
from engine.service.cluster_outbox import Follows
from engine.service.config import HttpSettings, ReceiverSettings, load_settings
from engine.tools.receiver import WebhookReceiver
from tests.nats import NatsCluster, find_binary

pytestmark = pytest.mark.skipif(find_binary() is None, reason="nats-server is not installed")

TOPOLOGY = Path("examples/topology.yaml").resolve()
LEASE_TTL = 3.0  # the module's cluster: leases expire 3 s after their last renewal


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path_factory.mktemp("nats"), size=3, mqtt=True) as cluster:
        yield cluster


@pytest.fixture
async def js(nats_cluster: NatsCluster) -> AsyncIterator[JetStream]:
    async with JetStream(nats_cluster.urls, replicas=3, lease_ttl=LEASE_TTL) as conn:
        await conn.ensure([])
        yield conn


async def test_lease_acquire_renew_lose(js: JetStream) -> None:
    """One owner at a time: a held lease cannot be taken; renewing moves its revision but keeps
    its epoch; once its owner stops renewing, the server frees it after the TTL and the next owner
    gets a higher epoch, while the old owner's renewal and release fail without harming it."""
    a = await js.acquire("lease-test", "engine-a", time.time())
    assert a is not None
    assert a.owner == "engine-a"
    assert await js.acquire("lease-test", "engine-b", time.time()) is None
    a2 = await js.renew(a, time.time())
    assert a2 is not None
    assert a2.epoch == a.epoch
    assert a2.revision > a.revision
    assert (await js.leases())["lease-test"].owner == "engine-a"
    b = None
    deadline = time.monotonic() + 20
    while b is None and time.monotonic() < deadline:  # the TTL is 3 s; a loaded machine is slow
        await asyncio.sleep(0.25)
        b = await js.acquire("lease-test", "engine-b", time.time())
    assert b is not None, "the lease was never freed"
    assert b.epoch > a2.epoch
    assert await js.renew(a2, time.time()) is None  # engine-a finds out it lost the lease
    await js.release(a2)  # a stale release is conditional on the revision: nothing happens
    held = (await js.leases())["lease-test"]
    assert (held.owner, held.epoch) == ("engine-b", b.epoch)
    await js.release(b)
    assert "lease-test" not in await js.leases()
    c = await js.acquire("lease-test", "engine-c", time.time())
    assert c is not None
    assert c.epoch > b.epoch
    await js.release(c)


async def test_a_reconnect_whose_handshake_fails_leaves_no_socket_open(tmp_path: Path) -> None:
    """A reconnect that reaches a server which hangs up before its INFO fails its handshake; nats-py
    2.16 then connects to the next server with the same transport object and overwrote the failed
    stream without closing it: a socket per attempt, left to the collector (its ResourceWarning
    once failed an unrelated test). The adapter's transport closes it first."""
    hung_up = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hung_up
        hung_up += 1
        writer.close()

    fake = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    fake_url = f"nats://127.0.0.1:{fake.sockets[0].getsockname()[1]}"
    try:
        with NatsCluster(tmp_path / "nats", size=1) as cluster:
            async with JetStream([*cluster.urls, fake_url], name="test") as conn:
                assert conn.connected
                hung_up = 0  # the first connect may have tried the fake first: nats-py closes that
                cluster.kill(0)
                deadline = time.monotonic() + 30
                while hung_up < 4:
                    assert time.monotonic() < deadline, f"{hung_up} handshakes failed"
                    await asyncio.sleep(0.1)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", ResourceWarning)
                    gc.collect()
                # no handshake in flight when the client closes (nats-py's close can lose one)
                fake.close()
                await fake.wait_closed()
                await asyncio.sleep(1.0)
    finally:
        fake.close()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_fencing_and_duplicate_collapse(js: JetStream) -> None:
    """Records are published against the subject's last sequence: a stalled old owner's write
    after the new owner's fails, and the last record names the newer epoch (so the old one stops).
    The same incident version published twice (an old and a new owner) is stored once."""
    p = "fence-test"
    rec = {"incident_id": "inc-fence", "version": 1, "event": "opened"}
    first = await js.publish_record(p, rec, source_seq=5, index=0, epoch=10, after=0)
    assert first > 0
    again = await js.publish_record(p, rec, source_seq=5, index=0, epoch=12, after=first)
    assert again == first  # a duplicate: the subject did not move
    newer = await js.publish_record(p, dict(rec, version=2), source_seq=6, index=0, epoch=12, after=first)
    with pytest.raises(KeyWrongLastSequenceError):
        await js.publish_record(p, dict(rec, version=3), source_seq=7, index=0, epoch=10, after=first)
    last = await js.last_published(p)
    assert (last.subject_seq, last.source_seq, last.index, last.epoch) == (newer, 6, 0, 12)
    stored = []
    for seq in range(first, newer + 1):
        try:
            msg = await js.js.get_msg(INCIDENTS, seq=seq)
        except Exception:
            continue
        if msg.subject == "soc.incidents.fence-test":
            stored.append(orjson.loads(msg.data or b"{}")["version"])
    assert stored == [1, 2]


async def _fetch_all(sub: Any) -> list[Any]:
    """Every message the consumer has for us now, in delivery order."""
    out: list[Any] = []
    while True:
        try:
            out += await sub.fetch(64, timeout=1.0)
        except TimeoutError:
            return out


async def test_a_new_router_first_routes_what_its_dead_predecessor_left_unacknowledged(
    js: JetStream,
) -> None:
    """The router dies (kill -9) between fetching a batch and acknowledging it, then a clear comes
    in. Its successor's consumer starts right after what was acknowledged: it gets the dead
    router's unacknowledged messages first, in ingest order, then the clear (a shared consumer
    would hand them back only after its ack_wait, behind the clear); the dead router's consumer
    is gone, so it could not fetch again if it were only stalled."""
    first = await js.router_consumer(900001)
    for msg in await _fetch_all(first):  # what earlier tests of this module left: routed
        await msg.ack_sync()
    seqs = []
    for n in range(3):
        ack = await js.js.publish("soc.alarms.router-test", _alarm("router-test", f"raise-{n}"))
        seqs.append(ack.seq)
    batch = await _fetch_all(first)
    assert [m.metadata.sequence.stream for m in batch] == seqs
    await batch[0].ack_sync()  # the dead router stored and acknowledged only the first
    assert await js.router_progress() == seqs[0]
    clear = (await js.js.publish("soc.alarms.router-test", _alarm("router-test", "raise-1", "cleared"))).seq
    second = await js.router_consumer(900003)
    got = await _fetch_all(second)
    assert [m.metadata.sequence.stream for m in got] == [seqs[1], seqs[2], clear]
    names = [c.name for c in await js.js.consumers_info(INGEST)]
    assert "router-e900001" not in names
    assert "router-e900003" in names
    for msg in got:  # routed (so the engines of later tests do not route them again)
        await msg.ack_sync()
    assert await js.router_progress() == clear


async def test_mqtt_in_through_nats_server_to_incidents_and_dead_letters(
    nats_cluster: NatsCluster, js: JetStream
) -> None:
    """Probes and elements keep publishing MQTT: nats-server's MQTT gateway stores QoS 1 messages
    in SOC_INGEST, the router sends each to its partition, the owner's core correlates them (one
    incident for the site power failure and the OLT it explains), and a malformed message becomes a
    dead-letter record naming the problem, stored in DEADLETTERS and received by an MQTT subscriber
    of the dead-letter topic, as from the single process. One engine, in this process; its /healthz
    per partition and /metrics say what it owns and count the dead letter, and its read API
    (/incidents, /incidents/<id>, its history, /dead-letters) answers from the streams as the
    daemon's does, a bad filter included."""
    settings = _in_process_settings(nats_cluster)
    async with (
        ClusterNode(settings) as node,
        ClusterHttp(node, HttpSettings(port=0)) as http,
        aiohttp.ClientSession(f"http://127.0.0.1:{http.port}") as web,
    ):
        deadline = time.monotonic() + 60
        while len(node.owned) < len(node.table.partitions):
            assert time.monotonic() < deadline, node.owned
            await asyncio.sleep(0.2)
        client = aiomqtt.Client(
            "127.0.0.1",
            nats_cluster.mqtt_ports[1],
            identifier="probe-1",
            protocol=aiomqtt.ProtocolVersion.V311,
        )
        watcher = aiomqtt.Client(
            "127.0.0.1",
            nats_cluster.mqtt_ports[2],
            identifier="dead-letter-watcher",
            protocol=aiomqtt.ProtocolVersion.V311,
        )
        async with client, watcher:
            await watcher.subscribe("soc/deadletter", qos=1)
            await client.publish("soc/alarms/pwr-c", _alarm("pwr-c", "mainsFailure"), qos=1)
            await client.publish("soc/alarms/olt-7", _alarm("olt-7", "linkDown"), qos=1)
            await client.publish("soc/alarms/olt-7", b'{"ne_id": "olt-7", "severity":', qos=1)
            async with asyncio.timeout(60):
                heard = orjson.loads((await anext(aiter(watcher.messages))).payload)
        opened: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while not (opened and dead) and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            opened = [r for r in await _incidents(js) if r["event"] == "opened"]
            dead = await _records(js, DEADLETTERS)
        part = node.table.partition_of("olt-7")
        status = node.workers[part].status
        assert status.applied == 2 + status.ticks  # two alarms and the ticks that opened the incident
        async with web.get("/healthz") as resp:
            health = await resp.json()
            assert resp.status == 200, health
        async with web.get(f"/healthz/{part}") as resp:
            assert resp.status == 200, await resp.text()
        async with web.get("/healthz/p99") as resp:
            assert resp.status == 400
            assert "no partition 'p99'" in (await resp.json())["error"]
        async with web.get("/metrics") as resp:
            metrics = await resp.text()
        iid = opened[0]["incident_id"]
        listed: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while not listed.get("count") and time.monotonic() < deadline:  # the view follows the streams
            await asyncio.sleep(0.2)
            async with web.get("/incidents?open=false") as resp:
                listed = await resp.json()
        async with web.get(f"/incidents/{iid}") as resp:
            one = await resp.json()
        async with web.get(f"/incidents/{iid}/history") as resp:
            history = await resp.json()
        async with web.get("/incidents/nope") as resp:
            assert resp.status == 404
        async with web.get("/incidents?priority=9") as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "invalid query parameter 'priority'"
        async with web.get("/dead-letters?topic=soc/alarms/olt-7") as resp:
            dead_listed = await resp.json()
        table = await cluster_status(js, node.table.partitions)
    assert table["table"]["digest"] == node.table.digest
    assert sum(row["domains"] for row in table["partitions"].values()) == len(node.table.domains.domains)
    assert {row["owner"] for row in table["partitions"].values()} == {"in-process"}
    assert len(opened) == 1, opened
    assert opened[0]["root_cause"]["alarm_id"] == "pwr-c:mainsFailure"
    assert sorted(opened[0]["alarms"]) == ["olt-7:linkDown", "pwr-c:mainsFailure"]
    assert len(dead) == 1
    assert dead[0]["topic"] == "soc/alarms/olt-7"
    assert "malformed JSON" in dead[0]["errors"][0]["reason"]
    assert heard == dead[0]
    assert iid in [r["incident_id"] for r in listed["incidents"]]
    assert one["version"] == max(r["version"] for r in await _incidents(js) if r["incident_id"] == iid)
    assert [v["version"] for v in history["versions"]] == list(range(1, one["version"] + 1))
    assert dead_listed["count"] == 1
    assert dead_listed["dead_letters"][0]["source"] == "cluster:global"
    assert sorted(health["partitions"]) == sorted(node.table.partitions)
    assert health["partitions"][GLOBAL]["dead_letters"] == 1  # malformed: the router cannot place it
    assert 'soc_cluster_dead_letters_total{partition="global"} 1.0' in metrics
    assert 'soc_cluster_dead_letters_stored_total{partition="global"} 1.0' in metrics
    assert 'soc_cluster_partition_owned{partition="global"} 1.0' in metrics
    assert f'soc_cluster_applied_sequence{{partition="{part}"}} ' in metrics


def _in_process_settings(nats_cluster: NatsCluster, **more: Any) -> Any:
    """One engine in this process on the module's cluster (every test on it must use the same
    core settings: the cluster keeps the configuration digest of its first engine)."""
    return load_settings(
        None,
        environ={},
        overrides={
            "topology": str(TOPOLOGY),
            "cluster.servers": nats_cluster.urls,
            "cluster.lease_ttl": LEASE_TTL,
            "cluster.name": "in-process",
            "core.incidents.settle": "1s",
            **more,
        },
    )


async def _engine_records(js: JetStream) -> dict[str, dict[str, Any]]:
    """Every record the engines published, by ``incident_id:version``."""
    return {f"{r['incident_id']}:{r['version']}": r for r in await _incidents(js)}


async def test_incidents_out_to_a_webhook_receiver_each_version_once(
    nats_cluster: NatsCluster, js: JetStream, tmp_path: Path
) -> None:
    """The owner of the global partition consumes INCIDENTS into its webhook outbox: the receiver
    (a real HTTP server, failing its first requests with 503 so the outbox retries) gets every
    incident version the engines published, each once, with `Idempotency-Key: incident:version`,
    and each delivery is logged in SOC_DELIVERED. A second engine taking over the outbox (with a
    store of its own) reads the log and sends nothing again."""
    async with WebhookReceiver(statuses=[503, 503]) as rx:
        receivers = [{"name": "rx", "url": rx.url, "retry": {"initial": 0.1, "max": 0.5}}]
        first = _in_process_settings(
            nats_cluster, receivers=receivers, **{"store.path": str(tmp_path / "a.db")}
        )
        async with ClusterNode(first) as node:
            deadline = time.monotonic() + 60
            while len(node.owned) < len(node.table.partitions):
                assert time.monotonic() < deadline, node.owned
                await asyncio.sleep(0.2)
            for ne in ("olt-045", "olt-046"):
                await js.js.publish(f"soc.alarms.{ne}", _alarm(ne, "equipmentMalfunction"))
            deadline = time.monotonic() + 60
            published: dict[str, dict[str, Any]] = {}
            while time.monotonic() < deadline:
                await asyncio.sleep(0.3)
                published = await _engine_records(js)
                got = {f"{r['incident_id']}:{r['version']}" for r in rx.records}
                keys = {a for r in published.values() for a in r["alarms"]}
                mine = [
                    k for k in ("olt-045:equipmentMalfunction", "olt-046:equipmentMalfunction") if k in keys
                ]
                logged = {f"{d['incident_id']}:{d['version']}" for d in await _records(js, DELIVERED)}
                if len(mine) == 2 and got == set(published) and logged == got:
                    break
        assert len(mine) == 2, mine
        assert rx.counts.failed_on_purpose == 2
        assert got == set(published)
        assert len(rx.records) == len(published)  # each version once
        assert logged == got
        requests = rx.counts.requests
        second = _in_process_settings(
            nats_cluster,
            receivers=receivers,
            **{"store.path": str(tmp_path / "b.db"), "cluster.name": "next"},
        )
        async with ClusterNode(second) as node:
            deadline = time.monotonic() + 60
            while GLOBAL not in node.owned:
                assert time.monotonic() < deadline, node.owned
                await asyncio.sleep(0.2)
            while node.outbox.skipped < len(published):  # it read INCIDENTS and the log
                assert time.monotonic() < deadline, node.status()
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # nothing to send: nothing sent
        assert rx.counts.requests == requests


async def test_fiber_cut_on_a_core_router_opens_one_incident_with_every_domain_below(
    nats_cluster: NatsCluster, js: JetStream
) -> None:
    """A fiber cut at core-1 (global partition) takes down the aggregation switches and OLTs below
    it, which live in several domain partitions. The router copies core-1's alarm to every domain
    partition below it; their cores put their own alarms under it and hand their part to the
    global partition, which publishes one incident: rooted at core-1, with every alarm of the cut
    (from every partition) and the customers of every domain below core-1. No domain partition
    publishes an incident of its own for the cut, and the incidents by root and members are those
    of one core fed the same input."""
    topology = load_topology(TOPOLOGY)
    settings = _in_process_settings(nats_cluster)
    async with ClusterNode(settings) as node:
        table = node.table
        deadline = time.monotonic() + 60
        while len(node.owned) < len(table.partitions):
            assert time.monotonic() < deadline, node.owned
            await asyncio.sleep(0.2)
        olts = sorted(ne for ne in topology.elements if ne.startswith("olt-0"))[:30]
        cut = [("olt-001", "linkDown"), ("core-1", "lossOfSignal")]  # one symptom before its root
        cut += [(ne, "linkDown") for ne in ("agg-1", "agg-2", "agg-3", *olts[1:])]
        keys = {f"{ne}:{cause}" for ne, cause in cut}
        domains = {table.partition_of(ne) for ne, _ in cut} - {GLOBAL}
        assert len(domains) >= 3, domains  # the cut spans domain partitions
        for ne, cause in cut:
            await js.js.publish(f"soc.alarms.{ne}", _alarm(ne, cause))
        core: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            records = await _incidents(js)
            core = [r for r in records if r["root_cause"]["alarm_id"] == "core-1:lossOfSignal"]
            if core and keys <= set(core[-1]["alarms"]):
                break
        contributed = {p: w.status.contributed for p, w in node.workers.items()}
        ingested = await _ingested(js)
    assert core, "no incident rooted at core-1"
    assert {r["incident_id"] for r in core} == {core[0]["incident_id"]}
    assert [r["version"] for r in core] == list(range(1, len(core) + 1))
    assert core[0]["event"] == "opened"
    last = core[-1]
    assert keys <= set(last["alarms"]), sorted(keys - set(last["alarms"]))
    below = [d for d in table.domains.domains if "core-1" in d.above]
    assert last["impact"]["customers"]["total"] == sum(d.customers for d in below) > 0
    assert domains <= set(last["partitions"]), last["partitions"]
    assert all(contributed[p] > 0 for p in domains), contributed
    # no other incident holds an alarm of the cut, except as merged into the core incident
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        latest[r["incident_id"]] = r
    others = [
        r for r in latest.values() if r["incident_id"] != last["incident_id"] and keys & set(r["alarms"])
    ]
    assert all(r.get("merged_into") == last["incident_id"] for r in others), others
    final = [r for r in latest.values() if r.get("resolution") != "merged"]
    alone = [r for r in single_process(ingested, settings.core) if keys & set(r["alarms"])]
    assert _outcome([r for r in final if keys & set(r["alarms"])]) == _outcome(alone)


async def test_follow_rule_is_decided_from_the_stream_so_a_new_deliverer_decides_as_the_first(
    tmp_path: Path,
) -> None:
    """A receiver of P1 only keeps getting an incident it has when the incident drops to P3, and
    always its resolution; it never gets an incident that was P3 from the start. The cluster's
    deliverer decides "has" from the INCIDENTS sequence of the first record given, not from its own
    file: a second deliverer with an empty file, reading the same stream, decides every record
    exactly as the first did (its file would have said "not followed" for the drop to P3)."""
    receivers = [ReceiverSettings(name="p1", url="http://127.0.0.1:9/", priorities=(1,))]

    def rec(iid: str, version: int, event: str, priority: int) -> WireRecord:
        return WireRecord({"incident_id": iid, "version": version, "event": event, "priority": priority})

    stream = [
        rec("a", 1, "opened", 1),
        rec("b", 1, "opened", 3),
        rec("a", 2, "updated", 3),
        rec("b", 2, "updated", 1),
        rec("b", 3, "updated", 3),
        rec("a", 3, "resolved", 3),
    ]
    expected = [["p1"], [], ["p1"], ["p1"], ["p1"], ["p1"]]
    decided = []
    for name in ("first.db", "second.db"):
        notifier = Notifier(Store(tmp_path / name), receivers)
        follows = Follows()
        got = []
        for seq, r in enumerate(stream, start=1):
            to = notifier.receivers_for(r, has=partial(follows.has, before=seq))
            follows.note(seq, r.incident_id, to)
            got.append(to)
        decided.append(got)
    assert decided == [expected, expected]
    # what the second deliverer's own (empty) file says of the drop to P3: not followed, lost
    async with Store(tmp_path / "second.db") as store:
        assert Notifier(store, receivers).receivers_for(stream[2]) == []


@pytest.mark.slow
async def test_killing_the_ingest_streams_leader_loses_no_acknowledged_message(tmp_path: Path) -> None:
    """The NATS node leading SOC_INGEST is killed (SIGKILL) in the middle of a storm. Publishers
    retry what was not acknowledged (same Nats-Msg-Id, so a retry is stored once); every message
    JetStream acknowledged is in the stream, and every alarm of the storm ends in exactly one
    incident, opened once."""
    topology = load_topology(TOPOLOGY)
    olts = sorted(ne for ne in topology.elements if ne.startswith("olt-0"))[:24]
    storm = [(ne, "linkDown") for ne in olts]
    with NatsCluster(tmp_path / "nats", size=3) as cluster:
        settings = load_settings(
            None,
            environ={},
            overrides={
                "topology": str(TOPOLOGY),
                "cluster.servers": cluster.urls,
                "cluster.lease_ttl": LEASE_TTL,
                "cluster.name": "in-process",
                "core.incidents.settle": "1s",
            },
        )
        async with ClusterNode(settings) as node, JetStream(cluster.urls, name="test") as js:
            deadline = time.monotonic() + 60
            while len(node.owned) < len(node.table.partitions):
                assert time.monotonic() < deadline, node.owned
                await asyncio.sleep(0.2)
            info = await js.js.stream_info(INGEST)
            assert info.cluster is not None
            leader = info.cluster.leader or ""
            acked: set[str] = set()

            async def publish(ne: str, cause: str) -> None:
                msg_id = f"{ne}:{cause}"
                payload = _alarm(ne, cause)
                for _ in range(120):
                    try:
                        await js.js.publish(
                            f"soc.alarms.{ne}", payload, headers={"Nats-Msg-Id": msg_id}, timeout=2
                        )
                        acked.add(msg_id)
                        return
                    except Exception:  # no leader yet, timeout, reconnecting: retry, as a publisher must
                        await asyncio.sleep(0.25)
                raise AssertionError(f"{msg_id} never acknowledged")

            for ne, cause in storm[:12]:
                await publish(ne, cause)
            cluster.kill(int(leader.removeprefix("n")))
            killed = time.monotonic()
            for ne, cause in storm[12:]:
                await publish(ne, cause)
            print(
                f"\nNATS node {leader} (SOC_INGEST leader) killed: all acknowledged after "
                f"{time.monotonic() - killed:.1f} s"
            )
            opened: list[dict[str, Any]] = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    opened = [r for r in await _incidents(js) if r["event"] == "opened"]
                    ingested = {orjson.loads(p)["ne_id"] for _, p, _ in await _ingested(js)}
                except Exception:
                    await asyncio.sleep(0.5)
                    continue
                if len(opened) >= len(storm):
                    break
                await asyncio.sleep(0.5)
    assert acked == {f"{ne}:{cause}" for ne, cause in storm}
    assert ingested == {ne for ne, _ in storm}
    ids = [r["incident_id"] for r in opened]
    assert len(ids) == len(set(ids))
    members = sorted(a for r in opened for a in r["alarms"])
    assert members == sorted(acked)


# -- failover with engine processes ----------------------------------------------------------------


def _keys(records: list[dict[str, Any]]) -> set[str]:
    return {f"{r['incident_id']}:{r['version']}" for r in list(records)}


class _Receiver:
    """A WebhookReceiver serving from a thread of its own (the test's loop is busy waiting)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.rx = WebhookReceiver()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.rx.__aenter__(), self.loop).result(10)
        return self.rx

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.rx.__aexit__(None, None, None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Engine:
    """One ``engine run --cluster`` process (its PID is the only one this test signals)."""

    def __init__(self, name: str, config: Path, url: str, log: Path) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "run", "--config", str(config), "--cluster", url],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "ENGINE_CLUSTER__NAME": name,
                    "ENGINE_STORE__PATH": str(log.with_suffix(".sqlite")),  # its webhook outbox
                    "ENGINE_HTTP__PORT": "0",  # /healthz and /metrics on a free port
                },
            )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-25:])


def _config(folder: Path, receiver: str | None = None) -> Path:
    cfg: dict[str, Any] = {
        "topology": str(TOPOLOGY),
        "core": {"incidents": {"settle": "1s", "hold_down": "2s", "update_interval": "1s"}},
        "cluster": {"partitions": 4, "replicas": 3, "lease_ttl": "3s", "snapshot_interval": "1s"},
        "logging": {"format": "json", "level": "info"},
    }
    if receiver is not None:
        cfg["receivers"] = [{"name": "rx", "url": receiver, "retry": {"initial": "0.2s", "max": "1s"}}]
    path = folder / "engine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


async def _wait_owned(js: JetStream, members: set[str], timeout: float) -> dict[str, Any]:
    """Until every partition has an owner among ``members`` (and each member owns one, if several)."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            status = await cluster_status(js, await js.partitions())
        except Exception:
            await asyncio.sleep(0.3)
            continue
        owners = [row["owner"] for row in status["partitions"].values()]
        if all(o in members for o in owners) and set(owners) == members:
            return status
        await asyncio.sleep(0.3)
    raise AssertionError(f"partitions not owned by {members} in {timeout} s: {status}")


async def _records(js: JetStream, stream: str, subject: str = "") -> list[dict[str, Any]]:
    """Every record in ``stream`` (on subjects starting with ``subject``), in order."""
    info = await js.js.stream_info(stream)
    out = []
    for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
        msg = await js.js.get_msg(stream, seq=seq)
        if (msg.subject or "").startswith(subject):
            out.append(orjson.loads(msg.data or b"{}"))
    return out


async def _incidents(js: JetStream) -> list[dict[str, Any]]:
    """The records of the engines' partitions (not the fencing test's)."""
    return await _records(js, INCIDENTS, "soc.incidents.p") + await _records(
        js, INCIDENTS, "soc.incidents.global"
    )


async def _ingested(js: JetStream) -> list[tuple[str, bytes, float]]:
    """What came in, as the engines saw it: (MQTT topic, payload, time stored), in stream order."""
    info = await js.js.stream_info(INGEST)
    out = []
    for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
        msg = await js.js.get_msg(INGEST, seq=seq)
        assert msg.time is not None
        out.append((mqtt_topic(msg.subject or ""), msg.data or b"", msg.time.timestamp()))
    return out


def single_process(ingested: list[tuple[str, bytes, float]], core: CoreSettings) -> list[dict[str, Any]]:
    """The same input through one core, timers fired at their due times: the final incidents."""
    pipeline = Pipeline(load_topology(TOPOLOGY), load_rulesets(None), core)
    typed = []
    for topic, payload, t in ingested:
        typed += pipeline.advance_to(t).records
        typed += pipeline.feed(topic, payload, t).records
    typed += pipeline.drain().records
    records = [r.to_wire() for r in typed]
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        latest[r["incident_id"]] = r
    return [r for r in latest.values() if r.get("resolution") != "merged"]


def _outcome(final: list[dict[str, Any]]) -> set[tuple[str, frozenset[str]]]:
    """Incidents by root and members."""
    return {(r["root_cause"]["alarm_id"], frozenset(r["alarms"])) for r in final}


def _alarm(ne: str, cause: str, severity: str = "critical") -> bytes:
    return orjson.dumps(
        {"ne_id": ne, "severity": severity, "probable_cause": cause, "event_time": time.time()}
    )


@pytest.mark.slow
async def test_stalled_owner_is_fenced_and_kill_9_moves_partitions_and_every_alarm_ends_in_one_incident(
    tmp_path: Path,
) -> None:
    """Three engine processes share the partitions while a storm comes in three parts. An engine
    owning storm partitions is stalled (SIGSTOP) longer than its lease: the other two take its
    partitions, restore their snapshots and replay their streams; it, continued, finds its leases
    gone and publishes nothing more, then rejoins and gets its share back (snapshot, release).
    Then, in the middle of the storm's last part, the owner of the global partition (the router and
    the webhook deliverer) is killed with SIGKILL: the other two take its partitions and roles within a
    bounded time (printed). In the end every alarm is in exactly one incident, every incident opened and
    resolved, INCIDENTS holds each incident version exactly once, versions without gaps, and the
    webhook receiver got each version once (a redelivery only with the same key)."""
    topology = load_topology(TOPOLOGY)
    table = partition_table(correlation_domains(topology), 4)
    olts = sorted(ne for ne in topology.elements if ne.startswith("olt-0"))
    storm = [(ne, "linkDown") for ne in olts] + [("pwr-c", "mainsFailure"), ("olt-7", "linkDown")]
    parts = [storm[0::3], storm[1::3], storm[2::3]]
    storm_partitions = {table.partition_of(ne) for ne, _ in storm}

    async def publish(js: JetStream, alarms: list[tuple[str, str]], severity: str = "critical") -> None:
        for ne, cause in alarms:
            await js.js.publish(f"soc.alarms.{ne}", _alarm(ne, cause, severity))

    with NatsCluster(tmp_path / "nats", size=3) as cluster, _Receiver() as rx:
        config = _config(tmp_path, rx.url)
        engines = {n: Engine(n, config, cluster.url, tmp_path / f"{n}.log") for n in ("a", "b", "c")}
        try:
            async with JetStream(cluster.urls, name="test") as js:
                deadline = time.monotonic() + 90
                while True:
                    try:
                        await js.attach()
                        await js.partitions()
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise AssertionError(engines["a"].tail()) from None
                        await asyncio.sleep(0.5)
                status = await _wait_owned(js, {"a", "b", "c"}, 90)
                # the engine stalled first owns storm partitions: they move in the middle of the storm
                owned = {n: {p for p, r in status["partitions"].items() if r["owner"] == n} for n in engines}
                frozen = min(n for n in engines if owned[n] & storm_partitions)
                others = set(engines) - {frozen}
                await publish(js, parts[0])
                await asyncio.sleep(1.5)  # applied, published, snapshotted in part
                engines[frozen].proc.send_signal(signal.SIGSTOP)
                stalled = time.monotonic()
                await _wait_owned(js, others, 60)
                print(
                    f"\nstalled owner {frozen}: its partitions {sorted(owned[frozen])} owned by the others "
                    f"after {time.monotonic() - stalled:.1f} s"
                )
                await publish(js, parts[1])
                engines[frozen].proc.send_signal(signal.SIGCONT)
                status = await _wait_owned(js, {"a", "b", "c"}, 60)  # it gets its share back
                victim = status["partitions"][GLOBAL]["owner"]  # router and webhook deliverer
                survivors = {"a", "b", "c"} - {victim}
                killed_owned = sorted(p for p, row in status["partitions"].items() if row["owner"] == victim)
                await asyncio.sleep(1.0)
                half = len(parts[2]) // 2
                await publish(js, parts[2][:half])
                engines[victim].kill()
                killed = time.monotonic()
                await publish(js, parts[2][half:])
                await _wait_owned(js, survivors, 60)
                print(
                    f"kill -9 mid-storm: partitions {killed_owned} of {victim} (router, deliverer) owned by "
                    f"{' and '.join(sorted(survivors))} after {time.monotonic() - killed:.1f} s"
                )
                await asyncio.sleep(2)
                await publish(js, storm, "cleared")
                records: list[dict[str, Any]] = []
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    records = await _incidents(js)
                    resolved = {r["incident_id"] for r in records if r["event"] == "resolved"}
                    opened = {r["incident_id"] for r in records if r["event"] == "opened"}
                    if opened and resolved == opened and len(opened) >= 50:
                        break
                    await asyncio.sleep(0.5)
                keys = {f"{r['incident_id']}:{r['version']}" for r in records}
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not keys <= _keys(rx.records):
                    await asyncio.sleep(0.5)
                ingested = await _ingested(js)
                out = subprocess.run(
                    [sys.executable, "-m", "engine", "cluster", "status", "--cluster", cluster.url],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
        finally:
            for e in engines.values():
                e.stop()
    log_frozen = engines[frozen].log.read_text()
    assert "lease lost" in log_frozen or "fenced" in log_frozen or "lease not renewed in time" in log_frozen
    assert out.returncode == 0, out.stdout + out.stderr
    (listed,) = [line for line in out.stdout.splitlines() if line.startswith("members: ")]
    assert set(listed.removeprefix("members: ").split(", ")) == survivors, out.stdout
    assert "partition table " in out.stdout
    versions = [(r["incident_id"], r["version"]) for r in records]
    assert len(versions) == len(set(versions)), "an incident version was stored twice"
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["version"] > latest.get(r["incident_id"], {"version": 0})["version"]:
            latest[r["incident_id"]] = r
    for inc, r in latest.items():
        assert sorted(v for i, v in versions if i == inc) == list(range(1, r["version"] + 1)), inc
        assert r["event"] == "resolved", (inc, r["event"], [engines[n].tail() for n in sorted(survivors)])
    final = [r for r in latest.values() if r.get("resolution") != "merged"]
    members = [a for r in final for a in r["alarms"]]
    twice = {a for a in members if members.count(a) > 1}
    assert not twice, [r for r in records if set(r["alarms"]) & twice]
    assert set(members) == {f"{ne}:{cause}" for ne, cause in storm}
    assert _outcome(final) == _outcome(single_process(ingested, load_settings(config, environ={}).core)), (
        "not what one process decides"
    )
    assert GLOBAL in killed_owned  # the router and the deliverer moved mid-storm
    # the webhook receiver saw every version once; anything sent again carried the same key
    print(f"webhook: {len(rx.records)} versions, {rx.counts.duplicates} redeliveries (same key)")
    assert _keys(rx.records) == {f"{i}:{v}" for i, v in versions}
    assert len(rx.records) == len(versions)
