"""One engine of a cluster: partitions owned by lease, each applied by the deterministic core.

Theory of operation
-------------------
``ClusterNode`` is an async context manager owning its tasks:

* ``members``/``leases``: every ``lease_ttl / 3`` the node renews its member key and every lease it
  holds (compare-and-set on the revision). A lease whose renewal fails is lost: its worker is
  cancelled at once. A lease the node could not renew for ``lease_ttl - lease_ttl / 6`` (a broken
  connection) is given up locally too, before the server frees it for another engine: outside a
  stalled process, no two owners run at once. Then the node counts the live members and aims at
  ``ceil(partitions / members)``: it takes free leases up to that, and hands surplus partitions
  over (snapshot, then release) so a joining engine gets its share.
* ``router``: on the owner of the ``global`` partition only (one router keeps every partition's
  stream in ingest order), fetches from the durable ``router`` consumer of ``SOC_INGEST`` and
  publishes each batch to the partitions' streams (``engine.core.partitions.route_all``: an alarm
  about a global element also goes, as a copy, to each domain partition below it), pipelined,
  retrying what was not acknowledged until stored, with ``Nats-Msg-Id`` so a redelivered or
  retried message is stored once.
* ``outbox``: on the same node, with receivers configured, INCIDENTS → the daemon's webhook outbox;
  a record is acknowledged once delivered to every receiver that wants it.
* one ``PartitionWorker`` per owned partition, the single writer of that partition's core. It
  restores the partition's latest snapshot, replays the stream from the next sequence through a
  durable pull consumer named by its epoch, and applies messages strictly in stream order (a gap is
  filled by direct get). When the core's next timer is due, it publishes a tick into the stream
  and applies it when the tick comes back: the stream alone decides, so a successor replaying it
  reaches the same state and the same records. Records go to ``INCIDENTS`` fenced by
  ``Nats-Expected-Last-Subject-Sequence``: when the subject moved under it, the worker reads the
  last record; a newer epoch there means it was replaced (``Fenced``: it stops without another
  write); an older one is a predecessor's late write, which it skips past. Records a predecessor
  already published (by input sequence and index) are not published again, and
  ``Nats-Msg-Id = incident_id:version`` collapses any copy that still gets through. A domain
  partition's records of an incident rooted at a global element are not published: they go as
  contributions into the ``global`` stream, whose worker merges them into its own records
  (``engine.core.partitions.CoreIncidents``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
import orjson
import structlog
from nats.aio.msg import Msg
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.errors import NotFoundError as NatsNotFound

from engine.adapters.jetstream import (
    H_COPY,
    H_NOW,
    H_RECEIVED,
    H_TOPIC,
    INGEST,
    NOTHING_PUBLISHED,
    ROUTER,
    ClusterError,
    Fenced,
    InputMessage,
    JetStream,
    LeaseInfo,
    Published,
    Snapshot,
    message_time,
    mqtt_topic,
    stored_time,
)
from engine.adapters.notifier import Notifier
from engine.adapters.store import Store, WireRecord
from engine.core.partitions import (
    GLOBAL,
    CoreIncidents,
    PartitionError,
    PartitionTable,
    contributes,
    contribution,
    correlation_domains,
    partition_table,
    route_all,
)
from engine.core.pipeline import Decisions, Pipeline
from engine.errors import ConfigError, EngineError, InvalidMessage
from engine.model.messages import Routes, dead_letter_record
from engine.model.topology import Topology, load_topology
from engine.rules.schema import Ruleset, load_rulesets
from engine.service.cluster_http import ClusterHttp
from engine.service.config import EngineSettings

if TYPE_CHECKING:
    pass

log = structlog.get_logger("engine.service.cluster")

FETCH_BATCH = 256
IDLE_WAIT = 0.2  # a worker with nothing to fetch looks at its timers this often


def config_digest(settings: EngineSettings) -> str:
    """What every engine of one cluster must share: topology, rulesets, core settings, partitioning."""
    h = hashlib.sha256()
    assert settings.topology is not None
    h.update(Path(settings.topology).read_bytes())
    for raw in settings.rulesets:
        p = Path(raw)
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    h.update(settings.core.model_dump_json().encode())
    c = settings.cluster
    h.update(f"{c.partitions}/{c.global_share}/{sorted(c.global_elements)}".encode())
    return h.hexdigest()[:16]


@dataclass
class PartitionStatus:
    """What a node knows about a partition it owns (for status, health and tests)."""

    epoch: int
    applied: int = 0  # last stream sequence applied
    restored_from: int = 0  # the snapshot's sequence (0: none)
    replayed: int = 0  # messages applied before catching up with the stream's end at takeover
    published: int = 0
    contributed: int = 0  # records of a global incident sent to the global partition
    skipped: int = 0  # records a predecessor had published already
    ticks: int = 0
    snapshots: int = 0
    pending: int = 0  # stream messages waiting after the last one fetched (the consumer's count)
    caught_up: bool = False  # the replay at takeover is over
    dead_letters: int = 0
    faults: Counter[str] = field(default_factory=Counter)  # quarantined core parts, by part
    notices: Counter[str] = field(default_factory=Counter)  # by kind (Decisions.notices)
    started: float = field(default_factory=time.monotonic)


class PartitionWorker:
    """The single writer of one owned partition's core."""

    def __init__(self, node: ClusterNode, lease: LeaseInfo) -> None:
        self.node = node
        self.partition = lease.partition
        self.epoch = lease.epoch
        self.status = PartitionStatus(epoch=lease.epoch)
        self.pipeline: Pipeline | None = None
        # the global partition merges the domain partitions' parts into its incidents
        self.cross = CoreIncidents() if lease.partition == GLOBAL else None
        self._published: Published = NOTHING_PUBLISHED
        self._tick_pending = False
        self._last_snapshot = time.monotonic()
        self._stopping = False
        self._dead: list[asyncio.Future[Any]] = []  # dead letters sent, acknowledgements not awaited

    @property
    def js(self) -> JetStream:
        return self.node.js

    def stop(self) -> None:
        """Finish the current batch, snapshot, and return (graceful hand-over)."""
        self._stopping = True

    async def run(self) -> None:
        p = self.partition
        with structlog.contextvars.bound_contextvars(partition=p, epoch=self.epoch):
            pipeline = self.pipeline = self.node.build_pipeline()
            try:
                await self._run(pipeline)
            finally:
                self.pipeline = None
                pipeline.close()

    async def _run(self, pipeline: Pipeline) -> None:
        p = self.partition
        snap = await self.js.load_snapshot(p)
        applied = 0
        if snap is not None:
            pipeline.restore(snap.state)
            if self.cross is not None and snap.cross is not None:
                self.cross.load(snap.cross)
            applied = self.status.restored_from = snap.seq
        first, last = await self.js.stream_bounds(p)
        if first > applied + 1 and last >= first:
            log.error(
                "partition stream no longer holds the messages after the snapshot",
                snapshot=applied,
                first=first,
            )
            applied = first - 1
        self.status.applied = applied
        self._published = await self.js.last_published(p)
        sub = await self.js.partition_consumer(p, self.epoch, applied + 1)
        await self.js.drop_consumers(p, keep=f"{p}-e{self.epoch}")
        log.info("partition taken", snapshot=applied, stream_last=last, published=self._published.subject_seq)
        catching_up = last > applied
        self.status.caught_up = not catching_up
        try:
            while not self._stopping:
                try:
                    msgs = await sub.fetch(FETCH_BATCH, timeout=IDLE_WAIT)
                except TimeoutError:
                    msgs = []
                for msg in msgs:
                    await self._take(
                        msg.metadata.sequence.stream, msg.subject, msg.headers, msg.data, stored_time(msg)
                    )
                    await msg.ack()
                    self.status.pending = msg.metadata.num_pending
                if not msgs:
                    self.status.pending = 0
                await self._dead_letters_stored()
                if catching_up and self.status.applied >= last:
                    catching_up = False
                    self.status.replayed = self.status.applied - applied
                    self.status.caught_up = True
                    log.info("partition caught up", replayed=self.status.replayed, ms=self._ms_since_start())
                if not catching_up:
                    await self._maybe_tick(pipeline)
                if time.monotonic() - self._last_snapshot >= self.node.settings.cluster.snapshot_interval:
                    await self.snapshot()
            await self.snapshot()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _ms_since_start(self) -> int:
        return round((time.monotonic() - self.status.started) * 1000)

    async def _take(
        self, seq: int, subject: str, headers: dict[str, str] | None, data: bytes, stored: float
    ) -> None:
        """Apply stream message ``seq`` (after any missing before it), then publish its records."""
        if seq <= self.status.applied:
            return  # a redelivery of something applied
        while self.status.applied + 1 < seq:  # a gap: read what is missing directly
            missing = self.status.applied + 1
            raw = await self.js.get_input(self.partition, missing)
            stored_at = raw.time.timestamp() if raw.time else 0.0
            await self._apply(missing, raw.subject or "", raw.headers, raw.data or b"", stored_at)
        await self._apply(seq, subject, headers, data, stored)

    async def _apply(
        self, seq: int, subject: str, headers: dict[str, str] | None, data: bytes, stored: float
    ) -> None:
        pipeline = self.pipeline
        assert pipeline is not None
        h = headers or {}
        if subject.endswith(".tick"):
            now = float(h[H_NOW])
            decisions = self._contained(lambda: pipeline.tick(now), "<tick>", data, stored)
            self._tick_pending = False
            self.status.ticks += 1
        elif subject.endswith(".summary"):
            now = stored
            decisions = Decisions()
        else:
            topic = h.get(H_TOPIC, "")
            now = message_time(h.get(H_RECEIVED), None) or stored
            decisions = self._contained(lambda: pipeline.feed(topic, data, now), topic, data, now)
            if h.get(H_COPY):  # the global partition reports what is wrong with it
                decisions.dead_letters.clear()
        self._count(decisions)
        records = [r.to_wire() for r in decisions.records]
        if subject.endswith(".summary"):
            records = self._contribution(data, stored)
        elif self.cross is not None and records:
            records = self.cross.core_records(records, now)
        self.status.applied = seq
        await self._publish(seq, decisions, records)

    def _count(self, decisions: Decisions) -> None:
        s = self.status
        s.dead_letters += len(decisions.dead_letters)
        for notice in decisions.notices:
            s.notices[notice.kind] += 1
        for fault in decisions.faults:
            s.faults[fault.part] += 1
            log.warning("core part quarantined", part=fault.name, error=fault.error, failures=fault.failures)

    def _contribution(self, data: bytes, now: float) -> list[dict[str, Any]]:
        """A domain partition's part of one of this (global) partition's incidents."""
        if self.cross is None:
            log.error("a contribution reached a domain partition; ignored")
            return []
        try:
            return self.cross.contribute(orjson.loads(data), now)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.error("unreadable contribution; ignored", error=repr(exc))
            return []

    def _contained(self, apply: Callable[[], Decisions], topic: str, payload: bytes, now: float) -> Decisions:
        """A failure inside the core (a bug) is logged and dead-lettered, as the daemon does; the
        replay of a successor meets and contains it the same way."""
        try:
            return apply()
        except Exception as exc:
            log.exception("core failed on a stream message; skipped", topic=topic)
            reason = f"internal error while applying it: {type(exc).__name__}: {exc}"
            err = InvalidMessage(topic, [("", reason)])
            return Decisions(dead_letters=[dead_letter_record(topic, payload, err, now=now)])

    async def _publish(self, seq: int, decisions: Decisions, records: list[dict[str, Any]]) -> None:
        """Publish the dead letters of ``decisions`` and ``records``, its incident records (as JSON
        objects: the global partition's merged with the domain partitions' parts)."""
        if not self.node.holds(self.partition, self.epoch):
            raise Fenced(f"partition {self.partition}: lease lost, not publishing")
        for i, dead in enumerate(decisions.dead_letters):
            msg_id = f"dead:{self.partition}:{seq}:{i}"
            self._dead.append(await self.js.publish_dead_letter(self.partition, dead.to_wire(), msg_id))
        table = self.node.table
        for i, rec in enumerate(records):
            if contributes(table, self.partition, rec):
                # a global incident's part: the global partition publishes it (with its own)
                await self.js.publish_summary(contribution(self.partition, seq, i, rec))
                self.status.contributed += 1
                continue
            done = self._published
            if (seq, i) <= (done.source_seq, done.index):
                self.status.skipped += 1  # a predecessor published it already
                continue
            while True:
                try:
                    subject_seq = await self.js.publish_record(
                        self.partition, rec, source_seq=seq, index=i, epoch=self.epoch, after=done.subject_seq
                    )
                except KeyWrongLastSequenceError:
                    done = await self.js.last_published(self.partition)
                    if done.epoch > self.epoch:
                        why = f"epoch {done.epoch} published after us ({self.epoch})"
                        raise Fenced(f"partition {self.partition}: {why}") from None
                    self._published = done
                    if (seq, i) <= (done.source_seq, done.index):
                        self.status.skipped += 1
                        break
                    continue  # a predecessor's late write: publish after it
                self._published = Published(subject_seq, seq, i, self.epoch)
                self.status.published += 1
                break

    async def _maybe_tick(self, pipeline: Pipeline) -> None:
        if self._tick_pending:
            return
        due = pipeline.next_due()
        now = time.time()
        if due is not None and due <= now:
            self._tick_pending = True
            await self.js.publish_tick(self.partition, max(now, due))

    async def _dead_letters_stored(self) -> None:
        """Await the batch's dead letters (one round trip for all); one not stored fails the worker,
        so the partition is released and its successor replays (and sends) it again."""
        dead, self._dead = self._dead, []
        for fut in dead:
            await asyncio.wait_for(fut, self.js.timeout)

    async def snapshot(self) -> None:
        await self._dead_letters_stored()  # the snapshot must not cover a dead letter not stored
        pipeline = self.pipeline
        if pipeline is None or not self.node.holds(self.partition, self.epoch):
            return
        snap = Snapshot(
            seq=self.status.applied,
            epoch=self.epoch,
            taken=time.time(),
            state=pipeline.snapshot(),
            cross=self.cross.dump() if self.cross is not None else None,
        )
        await self.js.save_snapshot(self.partition, snap)
        self._last_snapshot = time.monotonic()
        self.status.snapshots += 1


class ClusterNode:
    """One engine process's membership of the cluster: ``async with ClusterNode(settings) as node``."""

    def __init__(self, settings: EngineSettings, *, name: str | None = None) -> None:
        if settings.topology is None:
            raise ConfigError("<config>", "topology", "the cluster needs a topology file (topology: PATH)")
        if not settings.cluster.servers:
            raise ConfigError("<config>", "cluster.servers", "no NATS server (--cluster nats://host:port)")
        self.settings = settings
        c = settings.cluster
        self.name = name or c.name or f"{socket.gethostname()}-{os.getpid()}".replace(".", "-")
        self.topology: Topology = load_topology(settings.topology)
        self.rulesets: list[Ruleset] = load_rulesets(list(settings.rulesets) or None)
        self.routes = Routes(alarms=settings.mqtt.alarm_topics, samples=settings.mqtt.probe_topics)
        domains = correlation_domains(
            self.topology, global_share=c.global_share, global_elements=c.global_elements
        )
        self.table: PartitionTable = partition_table(domains, c.partitions)
        self.digest = config_digest(settings)
        self.js = JetStream(
            c.servers, replicas=c.replicas, lease_ttl=c.lease_ttl, retention=c.retention, name=self.name
        )
        self.workers: dict[str, PartitionWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._leases: dict[str, LeaseInfo] = {}
        self._valid_until: dict[str, float] = {}  # monotonic deadline of each lease, locally
        self._background: list[asyncio.Task[None]] = []
        self._handing: set[str] = set()  # partitions being handed over
        self._stop = asyncio.Event()
        self.routed = 0
        self.takeovers = 0  # leases this node acquired
        self.last_round = time.monotonic()  # when the lease loop last renewed (for /healthz)

    def build_pipeline(self) -> Pipeline:
        s = self.settings
        return Pipeline(
            self.topology, self.rulesets, s.core, routes=self.routes, max_bytes=s.mqtt.max_payload
        )

    # -- lifecycle -------------------------------------------------------------------------------
    async def __aenter__(self) -> ClusterNode:
        await self.js.__aenter__()
        try:
            await self.js.retrying(lambda: self.js.ensure(self.table.partitions), what="creating streams")
            stored = await self.js.retrying(
                lambda: self.js.agree("config", self.digest.encode()), what="configuration digest"
            )
            if stored != self.digest.encode():
                raise ClusterError(
                    f"this engine's topology, rulesets or core settings (digest {self.digest}) differ from "
                    f"the cluster's ({stored.decode(errors='replace')}): every engine must run the same"
                )
            raw = await self.js.retrying(
                lambda: self.js.agree("table", self.table.to_json()), what="partition table"
            )
            self.table = PartitionTable.from_json(raw, self.table.domains)
            await self.js.retrying(lambda: self.js.heartbeat(self.name, time.time()), what="joining")
        except (PartitionError, ClusterError):
            await self.js.__aexit__(None, None, None)
            raise
        self._background = [
            asyncio.create_task(self._lease_loop(), name="cluster-leases"),
            asyncio.create_task(self._router(), name="cluster-router"),
            asyncio.create_task(self._outbox(), name="cluster-outbox"),
        ]
        log.info("cluster member started", member=self.name, partitions=len(self.table.partitions))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._background:
            t.cancel()
        for t in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for p in list(self._tasks):
            await self._hand_over(p)
        with contextlib.suppress(Exception):
            await self.js.leave(self.name)
        await self.js.__aexit__(None, None, None)

    def stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    # -- leases ----------------------------------------------------------------------------------
    def holds(self, partition: str, epoch: int) -> bool:
        """True while this node's lease on ``partition`` (of that epoch) is valid by its own clock."""
        lease = self._leases.get(partition)
        return (
            lease is not None
            and lease.epoch == epoch
            and time.monotonic() < self._valid_until.get(partition, 0.0)
        )

    @property
    def owned(self) -> list[str]:
        return sorted(self._tasks)

    async def _lease_loop(self) -> None:
        ttl = self.settings.cluster.lease_ttl
        while True:
            started = time.monotonic()
            await self._renew_all(ttl)
            self.last_round = time.monotonic()
            try:
                await self._balance(ttl)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("membership round failed", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(max(0.0, ttl / 3 - (time.monotonic() - started)))

    async def _renew_all(self, ttl: float) -> None:
        """Renew every lease held, each on its own (one slow answer must not cost the others), all at
        once; a lease not renewed by its local deadline is given up."""
        margin = ttl / 6

        async def renew(p: str, lease: LeaseInfo) -> None:
            sent = time.monotonic()
            try:
                renewed = await self.js.renew(lease, time.time())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease renewal failed", partition=p, error=str(exc) or type(exc).__name__)
                if time.monotonic() >= self._valid_until.get(p, 0.0):
                    log.warning("lease not renewed in time: giving the partition up", partition=p)
                    self._drop(p)
                return
            if renewed is None:
                log.warning("lease lost", partition=p, epoch=lease.epoch)
                self._drop(p)
            elif self._leases.get(p) is lease:
                self._leases[p] = renewed
                self._valid_until[p] = sent + ttl - margin

        await asyncio.gather(*(renew(p, lease) for p, lease in list(self._leases.items())))

    async def _balance(self, ttl: float) -> None:
        """Heartbeat, then take free partitions up to this node's share or hand surplus ones over."""
        margin = ttl / 6
        await self.js.heartbeat(self.name, time.time())
        for p, task in list(self._tasks.items()):
            if task.done():
                self._forget(p, task)
        members = await self.js.members()
        target = math.ceil(len(self.table.partitions) / max(1, len(members)))
        if len(self._tasks) > target:
            surplus = sorted(self._tasks, key=self._preference)[target:]
            for p in surplus:
                if p not in self._handing:  # in the background: renewals go on meanwhile
                    self._handing.add(p)
                    self._background.append(asyncio.create_task(self._hand_over(p), name=f"hand-over-{p}"))
            return
        for p in sorted(self.table.partitions, key=self._preference):
            if len(self._tasks) >= target or self._stop.is_set():
                break
            if p in self._tasks:
                continue
            sent = time.monotonic()
            taken = await self.js.acquire(p, self.name, time.time())
            if taken is not None:
                self._leases[p] = taken
                self._valid_until[p] = sent + ttl - margin
                self._start(taken)

    def _preference(self, partition: str) -> str:
        """Each node prefers partitions in its own order, so free ones spread among nodes."""
        return hashlib.sha256(f"{self.name}/{partition}".encode()).hexdigest()

    def _start(self, lease: LeaseInfo) -> None:
        worker = PartitionWorker(self, lease)
        self.takeovers += 1
        self.workers[lease.partition] = worker
        task = asyncio.create_task(self._run_worker(worker), name=f"partition-{lease.partition}")
        self._tasks[lease.partition] = task
        log.info("lease acquired", partition=lease.partition, epoch=lease.epoch)

    async def _run_worker(self, worker: PartitionWorker) -> None:
        try:
            await worker.run()
        except Fenced as exc:
            log.warning("fenced: stopping the partition", partition=worker.partition, reason=str(exc))
            self._drop(worker.partition)
        except asyncio.CancelledError:
            raise
        except (nats.errors.Error, TimeoutError) as exc:  # NATS unavailable for a while: retried
            log.warning(
                "partition worker lost NATS; releasing it", partition=worker.partition, error=repr(exc)
            )
            self._release_later(worker.partition)
        except Exception:
            log.exception("partition worker failed; releasing it", partition=worker.partition)
            self._release_later(worker.partition)

    def _release_later(self, partition: str) -> None:
        self._tasks.pop(partition, None)
        self.workers.pop(partition, None)
        self._valid_until.pop(partition, None)
        lease = self._leases.pop(partition, None)
        if lease is not None:
            task = asyncio.create_task(self._release(lease), name=f"release-{partition}")
            self._background.append(task)

    async def _release(self, lease: LeaseInfo) -> None:
        with contextlib.suppress(Exception):
            await self.js.release(lease)

    def _drop(self, partition: str) -> None:
        """Stop a partition at once, without snapshot or release (the lease is no longer ours)."""
        self._leases.pop(partition, None)
        self._valid_until.pop(partition, None)
        task = self._tasks.pop(partition, None)
        self.workers.pop(partition, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _forget(self, partition: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(partition, None)
        self.workers.pop(partition, None)
        if not task.cancelled() and task.exception() is None:
            return
        self._leases.pop(partition, None)
        self._valid_until.pop(partition, None)

    async def _hand_over(self, partition: str) -> None:
        """Graceful: the worker finishes, snapshots, and the lease is released for another node."""
        worker = self.workers.get(partition)
        task = self._tasks.get(partition)
        if worker is not None and task is not None:
            worker.stop()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=10.0)
            except (TimeoutError, Exception):
                task.cancel()
        self._tasks.pop(partition, None)
        self.workers.pop(partition, None)
        lease = self._leases.pop(partition, None)
        self._valid_until.pop(partition, None)
        self._handing.discard(partition)
        if lease is not None:
            with contextlib.suppress(Exception):
                await self.js.release(lease)
            log.info("partition handed over", partition=partition)

    # -- router ----------------------------------------------------------------------------------
    async def _router(self) -> None:
        """Ingest (MQTT via nats-server, or NATS publishers) → partition streams.

        Only the owner of the ``global`` partition routes: one router keeps each partition's
        stream in ingest order (several routers pulling batches concurrently would interleave
        them), and routing fails over with that lease."""
        sub = await self.js.js.pull_subscribe_bind(durable=ROUTER, stream=INGEST)
        while True:
            if not self._routing():
                await asyncio.sleep(0.2)
                continue
            try:
                msgs = await sub.fetch(FETCH_BATCH, timeout=1.0)
            except TimeoutError:
                continue
            except NatsNotFound:
                await asyncio.sleep(1.0)
                continue
            except Exception as exc:
                log.warning("router fetch failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            items = []
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                received = stored_time(msg)
                topic = mqtt_topic(msg.subject)
                for i, (part, payload, copy) in enumerate(route_all(self.table, msg.data)):
                    items.append(InputMessage(part, topic, payload, received, f"ingest:{seq}:{i}", copy))
            await self._publish_routed(items)
            for msg in msgs:
                with contextlib.suppress(Exception):  # a lost ack: redelivered, then deduplicated
                    await msg.ack()
            self.routed += len(msgs)

    async def _publish_routed(self, items: list[InputMessage]) -> None:
        """One batch into the partition streams, pipelined: sent in order without waiting for each
        answer. What was not acknowledged is sent again, in order, one by one until stored (a retry
        of something stored after all is deduplicated by its ``Nats-Msg-Id``); such a retry lands
        after the batch's later messages of its partition, a reordering the core absorbs within
        ``core.reorder_tolerance`` (and every replay of the stream sees the same order)."""
        failed = await self.js.publish_inputs(items)
        for item in failed:
            while True:
                try:
                    await self.js.publish_input(
                        item.partition, item.topic, item.payload, item.received, item.msg_id, copy=item.copy
                    )
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("router: publish failed; retrying", partition=item.partition, error=repr(exc))
                    await asyncio.sleep(0.5)

    # -- incidents out ---------------------------------------------------------------------------
    def _routing(self) -> bool:
        """This node runs the cluster's single roles (router, outbox): it owns ``global``."""
        return GLOBAL in self._tasks and GLOBAL not in self._handing

    async def _outbox(self) -> None:
        """INCIDENTS → the webhook outbox (the daemon's ``Store`` and ``Notifier``), on the owner of
        ``global`` only: one deliverer, so a receiver is not sent each version by every engine.

        Each record is enqueued in this engine's store (``store.path``) for the receivers that want
        it, with the usual outbox semantics (order per incident, retries, breaker, signatures,
        ``Idempotency-Key: incident_id:version``), and acknowledged to JetStream once every receiver
        has it delivered or dead. After a failover the new owner gets every record not yet
        acknowledged again: the receivers may see a version twice with the same key (at least once,
        deduplicated by them), never lose one."""
        if not self.settings.receivers:
            return
        while True:
            if not self._routing():
                await asyncio.sleep(0.2)
                continue
            try:
                await self._deliver_while_global()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox: consumer failed; starting again", error=repr(exc))
                await asyncio.sleep(0.5)

    async def _deliver_while_global(self) -> None:
        s = self.settings
        sub = await self.js.notifier_consumer()
        waiting: dict[tuple[str, int], tuple[Msg, list[str]]] = {}  # enqueued, not yet acknowledged
        store = Store(
            s.store.path, commit_interval=s.store.commit_interval, keep_delivered=s.store.keep_delivered
        )
        try:
            async with store, Notifier(store, s.receivers) as notifier:
                log.info("outbox started", receivers=[r.name for r in s.receivers], store=str(s.store.path))
                while self._routing():
                    try:
                        msgs = await sub.fetch(FETCH_BATCH, timeout=IDLE_WAIT)
                    except TimeoutError:
                        msgs = []
                    now = time.time()
                    for msg in msgs:
                        try:
                            rec = WireRecord(orjson.loads(msg.data))
                            key = (rec.incident_id, rec.version)
                            receivers = notifier.receivers_for(rec)
                            store.record(rec, receivers, now)
                        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                            log.error("outbox: unreadable incident record; skipped", error=repr(exc))
                            await msg.ack()
                            continue
                        waiting[key] = (msg, receivers)
                    if msgs:
                        store.commit()
                    await self._acknowledge_delivered(store, waiting)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    @staticmethod
    async def _acknowledge_delivered(
        store: Store, waiting: dict[tuple[str, int], tuple[Msg, list[str]]]
    ) -> None:
        for (iid, version), (msg, receivers) in list(waiting.items()):
            done = True
            for r in receivers:
                rows = [row for row in store.outbox_rows(r, iid) if row["version"] == version]
                if not rows or rows[0]["state"] not in ("delivered", "dead"):
                    done = False
                    break
            if done:
                del waiting[(iid, version)]
                with contextlib.suppress(Exception):  # a lost ack: redelivered, enqueued as a no-op
                    await msg.ack()

    # -- views -----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "member": self.name,
            "connected": self.js.connected,
            "routed": self.routed,
            "takeovers": self.takeovers,
            "partitions": {},
        }
        for p, w in sorted(self.workers.items()):
            lease = self._leases.get(p)
            s = w.status
            out["partitions"][p] = {
                "epoch": s.epoch,
                "applied": s.applied,
                "restored_from": s.restored_from,
                "replayed": s.replayed,
                "published": s.published,
                "contributed": s.contributed,
                "skipped": s.skipped,
                "ticks": s.ticks,
                "snapshots": s.snapshots,
                "lease_age": round(time.time() - lease.renewed, 3) if lease else None,
                "pending": s.pending,
                "caught_up": s.caught_up,
                "dead_letters": s.dead_letters,
                "faults": dict(s.faults),
                "notices": dict(s.notices),
            }
        return out


async def cluster_status(js: JetStream, partitions: tuple[str, ...]) -> dict[str, Any]:
    """Per partition: owner, epoch, lease age, stream end, applied position and lag (from JetStream)."""
    leases = await js.leases()
    now = time.time()
    rows: dict[str, Any] = {}
    for p in partitions:
        lease = leases.get(p)
        _first, last = await js.stream_bounds(p)
        snap = await js.load_snapshot(p)
        row: dict[str, Any] = {
            "owner": lease.owner if lease else None,
            "epoch": lease.epoch if lease else None,
            "lease_age": round(now - lease.renewed, 3) if lease else None,
            "stream_last": last,
            "snapshot_seq": snap.seq if snap else None,
            "applied": None,
            "lag": None,
        }
        if lease is not None:
            info = await js.consumer_state(p, lease.epoch)
            if info is not None:
                row["applied"] = info.ack_floor.stream_seq if info.ack_floor else None
                row["lag"] = (info.num_pending or 0) + (info.num_ack_pending or 0)
        rows[p] = row
    return {"members": await js.members(), "partitions": rows}


async def run(settings: EngineSettings) -> int:
    """``engine run --cluster …``: be a member until SIGTERM/SIGINT, then hand partitions over."""
    loop = asyncio.get_running_loop()
    try:
        async with contextlib.AsyncExitStack() as stack:
            node = await stack.enter_async_context(ClusterNode(settings))
            if settings.http.enabled:
                await stack.enter_async_context(ClusterHttp(node, settings.http))
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, node.stop)
            await node.wait()
    except (EngineError, OSError) as exc:
        log.error("cluster member cannot run", error=str(exc))
        return 2
    return 0
