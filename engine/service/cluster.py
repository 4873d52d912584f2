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
  stream in ingest order), fetches from ``SOC_INGEST`` through a durable consumer of its lease's
  epoch (``router-e<epoch>``, started right after what its predecessors acknowledged, so what a
  dead router left unacknowledged is routed first, in ingest order, never after newer messages) and
  publishes each batch to the partitions' streams (``engine.core.partitions.route_all``: an alarm
  about a global element also goes, as a copy, to each domain partition below it), pipelined,
  retrying what was not acknowledged until stored, with ``Nats-Msg-Id`` so a redelivered or
  retried message is stored once.
* ``outbox``: on the same node, with receivers configured, INCIDENTS → the daemon's webhook outbox
  (``engine.service.cluster_outbox``: what each receiver has is logged in JetStream, so a new
  deliverer neither sends again nor loses).
* one ``PartitionWorker`` per owned partition (``engine.service.cluster_partition``), the
  single writer of that partition's core.
* ``view`` (every node): INCIDENTS and DEADLETTERS followed into an in-memory store for the read
  API (``engine.service.cluster_view``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import orjson
import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError as NatsNotFound

from engine.adapters.jetstream import (
    ClusterError,
    Fenced,
    InputMessage,
    JetStream,
    LeaseInfo,
    mqtt_topic,
    nats_subject,
    stored_time,
)
from engine.core.partitions import (
    GLOBAL,
    PartitionError,
    PartitionTable,
    correlation_domains,
    partition_table,
    route_all,
)
from engine.core.pipeline import Pipeline
from engine.errors import ConfigError, EngineError
from engine.model.messages import Routes
from engine.model.topology import Topology, load_topology
from engine.rules.schema import Ruleset, load_rulesets
from engine.service.cluster_http import ClusterHttp
from engine.service.cluster_outbox import ClusterOutbox
from engine.service.cluster_partition import FETCH_BATCH, PartitionWorker
from engine.service.cluster_view import ClusterView
from engine.service.config import EngineSettings
from engine.service.heap import FullCollections, collect_periodically

log = structlog.get_logger("engine.service.cluster")

OWN_SUBJECTS = ("soc.alarms.", "soc.probes.", "soc.in.", "soc.incidents.", "soc.delivered")


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
        try:
            dead_subject = nats_subject(settings.mqtt.dead_letter_topic)
        except ValueError as exc:
            raise ConfigError(
                "<config>", "mqtt.dead_letter_topic", f"in cluster mode it is a NATS subject too: {exc}"
            ) from None
        if dead_subject.startswith(OWN_SUBJECTS):
            raise ConfigError(
                "<config>",
                "mqtt.dead_letter_topic",
                f"{settings.mqtt.dead_letter_topic!r} overlaps the cluster's own subjects (soc/alarms/…, "
                "soc/probes/…, soc/in/…, soc/incidents/…, soc/delivered)",
            )
        self.js = JetStream(
            c.servers,
            replicas=c.replicas,
            lease_ttl=c.lease_ttl,
            retention=c.retention,
            name=self.name,
            dead_letter_subject=dead_subject,
        )
        self.outbox = ClusterOutbox(self)
        self.view = ClusterView(self.js)
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
        await self.view.__aenter__()
        self._background = [
            asyncio.create_task(self._lease_loop(), name="cluster-leases"),
            asyncio.create_task(self._router(), name="cluster-router"),
            asyncio.create_task(self.outbox.run(), name="cluster-outbox"),
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
        await self.view.__aexit__(None, None, None)
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
        sub: JetStreamContext.PullSubscription | None = None
        epoch = 0  # the global lease's epoch ``sub`` belongs to
        while True:
            lease = self._leases.get(GLOBAL)
            if not self.leading or lease is None:
                sub = None
                await asyncio.sleep(0.2)
                continue
            try:
                if sub is None or epoch != lease.epoch:
                    sub = None
                    sub = await self.js.router_consumer(lease.epoch)
                    epoch = lease.epoch
                    log.info("router started", epoch=epoch)
                msgs = await sub.fetch(FETCH_BATCH, timeout=1.0)
            except TimeoutError:
                continue
            except NatsNotFound:  # our consumer was deleted: a newer router took over
                sub = None
                await asyncio.sleep(1.0)
                continue
            except asyncio.CancelledError:
                raise
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
            try:
                await self._publish_routed(items, functools.partial(self.holds, GLOBAL, epoch))
            except Fenced as exc:
                # Whoever routes next (a newer router, or this one if its lease was only late in
                # being renewed) routes the batch again first: handed back now, not after ack_wait.
                log.warning("router stopped", epoch=epoch, reason=str(exc))
                for msg in msgs:
                    with contextlib.suppress(Exception):
                        await msg.nak()
                sub = None
                continue
            for msg in msgs:
                with contextlib.suppress(Exception):  # a lost ack: redelivered, then deduplicated
                    await msg.ack()
            self.routed += len(msgs)

    async def _publish_routed(self, items: list[InputMessage], valid: Callable[[], bool]) -> None:
        """One batch into the partition streams, pipelined: sent in order without waiting for each
        answer. What was not acknowledged is sent again, in order, one by one until stored (a retry
        of something stored after all is deduplicated by its ``Nats-Msg-Id``); such a retry lands
        after the batch's later messages of its partition, a reordering the core absorbs within
        ``core.reorder_tolerance`` (and every replay of the stream sees the same order). Nothing is
        sent once ``valid()`` (the global lease, by the local deadline) is false: ``Fenced``."""
        failed = await self.js.publish_inputs(items, valid)
        for item in failed:
            while True:
                if not valid():
                    raise Fenced("global lease lost: not routing any further")
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

    @property
    def leading(self) -> bool:
        """This node runs the cluster's single roles (router, outbox): it owns ``global``."""
        return GLOBAL in self._tasks and GLOBAL not in self._handing

    # -- views -----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "member": self.name,
            "connected": self.js.connected,
            "routed": self.routed,
            "takeovers": self.takeovers,
            "leading": self.leading,
            "view": self.view.lag(),
            "outbox": {"delivered": self.outbox.delivered, "skipped": self.outbox.skipped},
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
                "dead_stored": s.dead_stored,
                "faults": dict(s.faults),
                "notices": dict(s.notices),
            }
        return out


async def cluster_status(js: JetStream, partitions: tuple[str, ...]) -> dict[str, Any]:
    """The stored partition table (its digest, domains per partition) and per partition: owner,
    epoch, lease age, stream end, snapshot, applied position and lag (from JetStream)."""
    leases = await js.leases()
    raw = await js.read_cluster("table") or b"{}"
    table = orjson.loads(raw)
    per_partition = Counter((table.get("assignment") or {}).values())
    now = time.time()
    rows: dict[str, Any] = {}
    for p in partitions:
        lease = leases.get(p)
        _first, last = await js.stream_bounds(p)
        snap = await js.load_snapshot(p)
        row: dict[str, Any] = {
            "domains": per_partition.get(p, 0) if p != GLOBAL else 0,
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
    return {
        "table": {
            "digest": hashlib.sha256(raw).hexdigest()[:16],
            "global_elements": len(table.get("global") or ()),
        },
        "members": await js.members(),
        "partitions": rows,
    }


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
            # started: frozen, and Python's full collections ours, as `engine run`'s (heap.py)
            heap = FullCollections(settings.gc_full_interval)
            stack.callback(heap.stop)
            heap.start()
            collector = asyncio.create_task(collect_periodically(heap), name="heap:collector")
            stack.callback(collector.cancel)
            await node.wait()
    except (EngineError, OSError) as exc:
        log.error("cluster member cannot run", error=str(exc))
        return 2
    return 0
