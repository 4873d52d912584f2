"""NATS JetStream for the cluster: streams, leases, snapshots and fenced publishing (nats-py).

Theory of operation
-------------------
Everything the cluster shares lives in JetStream, replicated ``replicas`` times:

* ``SOC_INGEST`` captures ``soc.alarms.>`` and ``soc.probes.>`` (what nats-server's MQTT gateway
  makes of ``soc/alarms/#`` and ``soc/probes/#``); the router (on the owner of the ``global``
  partition) reads it through a durable pull consumer of its own, ``router-e<epoch>``, started
  where its predecessors' left off, and routes each message to its partition.
* ``SOC_IN_<p>`` holds partition ``p``'s inputs, in the order its core applies them: messages
  (``soc.in.<p>.msg``, the MQTT topic and receive time in headers) and timer ticks (``soc.in.<p>.tick``,
  the tick's time in a header). A replay of the stream decides exactly as the owner did.
* ``INCIDENTS`` (``soc.incidents.<p>``) receives incident records with ``Nats-Msg-Id =
  incident_id:version``; ``DEADLETTERS`` the dead-letter records, on the subject of the MQTT
  dead-letter topic (``soc.deadletter`` for ``soc/deadletter``), so MQTT subscribers of that topic
  on nats-server's gateway get them as from the single process; ``SOC_DELIVERED`` the outbox's
  log of what each webhook receiver has (``receiver incident_id:version``), which a new deliverer
  reads so that it neither sends again nor loses what its predecessor did.
* Key-value buckets: ``SOC_LEASES`` (TTL = the lease TTL; ``lease.<p>`` and ``member.<name>``),
  ``SOC_CLUSTER`` (the partition table and the configuration digest), ``SOC_SNAPSHOTS`` (one
  snapshot per partition with the last stream sequence applied).

A lease is a key created only if absent (``Nats-Expected-Last-Subject-Sequence: 0``) and renewed by
compare-and-set on its revision; the server removes it ``lease_ttl`` after the last renewal, so
expiry is judged by one clock, the stream leader's. The revision that created it is the owner's
**epoch**: it only grows, and it names the owner's consumer and stamps every record it publishes.

This module is the only one that talks to nats-py; ``engine.service.cluster`` drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import orjson
import structlog
from nats.aio.client import Client, Srv
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import (
    APIError,
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
    ServerError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue

from engine.errors import EngineError

log = structlog.get_logger("engine.jetstream")
T = TypeVar("T")

INGEST = "SOC_INGEST"
INGEST_SUBJECTS = ("soc.alarms.>", "soc.probes.>")
INCIDENTS = "INCIDENTS"
DEADLETTERS = "DEADLETTERS"
DELIVERED = "SOC_DELIVERED"
DELIVERED_SUBJECT = "soc.delivered"
LEASES = "SOC_LEASES"
CLUSTER = "SOC_CLUSTER"
SNAPSHOTS = "SOC_SNAPSHOTS"
ROUTER = "router"
WRONG_LAST_SEQUENCE = 10071  # JSStreamWrongLastSequenceErrF

H_TOPIC = "Soc-Topic"
H_RECEIVED = "Soc-Received"
H_NOW = "Soc-Now"
H_EPOCH = "Soc-Epoch"
H_SOURCE = "Soc-Source-Seq"
H_INDEX = "Soc-Record-Index"
H_COPY = "Soc-Copy"  # an alarm about a global element, copied to a domain partition below it
H_PARTITION = "Soc-Partition"
READ_BATCH = 1024


class _Client(Client):
    """nats-py's client, closing the connection a new one replaces.

    When a reconnect reaches a server but its handshake fails (the server dies or hangs up between
    accept and INFO, a CONNECT times out on a busy node), nats-py 2.16 connects to the next server
    with the same transport object, which overwrites the stream of the failed attempt without
    closing it: one socket per failed handshake is left to the garbage collector (a
    ``ResourceWarning``). A new connection is made only when the last one is over, so closing what
    the transport holds first is always right; closing it twice (after a lost connection, which
    nats-py closes itself) does nothing."""

    async def _connect_to_server(self, s: Srv) -> None:
        if self._transport:
            self._transport.close()  # type: ignore[no-untyped-call]
        await super()._connect_to_server(s)


def nats_subject(topic: str) -> str:
    """MQTT topic → the NATS subject nats-server's MQTT gateway maps it to, for a topic without
    wildcards, dots, spaces or empty levels (``ValueError`` naming what is wrong otherwise)."""
    for bad, what in (("+", "a wildcard"), ("#", "a wildcard"), (".", "a dot"), (" ", "a space")):
        if bad in topic:
            raise ValueError(f"{topic!r} holds {what}, which a NATS subject cannot carry")
    if not topic or "" in topic.split("/"):
        raise ValueError(f"{topic!r} has an empty level")
    return topic.replace("/", ".")


class ClusterError(EngineError):
    """The cluster cannot be used as configured (unreachable, incompatible table or configuration)."""


class Fenced(EngineError):
    """A newer owner of the partition has published: this one must stop at once."""


def stream_of(partition: str) -> str:
    return f"SOC_IN_{partition}"


def input_subject(partition: str, kind: str = "msg") -> str:
    return f"soc.in.{partition}.{kind}"


def incident_subject(partition: str) -> str:
    return f"soc.incidents.{partition}"


def mqtt_topic(subject: str) -> str:
    """NATS subject → MQTT topic, as nats-server's MQTT gateway maps them (``.`` ↔ ``/``)."""
    return subject.replace(".", "/")


def stored_time(msg: Msg) -> float:
    """The time JetStream stored a message (its stream timestamp), epoch seconds."""
    return msg.metadata.timestamp.timestamp()


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    partition: str
    owner: str
    epoch: int  # the revision that created the lease
    revision: int  # the latest renewal
    renewed: float  # the owner's wall clock at the latest renewal


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int  # last stream sequence applied
    epoch: int
    taken: float
    state: bytes  # Pipeline.snapshot()
    cross: dict[str, Any] | None = None  # the global partition's CoreIncidents state


@dataclass(frozen=True, slots=True)
class Published:
    """The last record on a partition's incident subject: where a new owner resumes publishing."""

    subject_seq: int  # its sequence in INCIDENTS (0: nothing published yet)
    source_seq: int  # the input sequence that produced it
    index: int  # its index among that input's records
    epoch: int


NOTHING_PUBLISHED = Published(0, 0, -1, 0)


@dataclass(frozen=True, slots=True)
class InputMessage:
    """One message for a partition's stream, as the router publishes it."""

    partition: str
    topic: str
    payload: bytes
    received: float
    msg_id: str
    copy: bool = False


class JetStream:
    """A connection to the JetStream cluster and the cluster's streams and buckets.

    ``async with JetStream(servers, replicas=3) as js`` connects (nats-py reconnects by itself);
    ``await js.ensure(partitions, …)`` creates what is missing (idempotent, safe from every engine)."""

    def __init__(
        self,
        servers: Sequence[str],
        *,
        replicas: int = 3,
        lease_ttl: float = 6.0,
        retention: float = 86400.0,
        name: str = "soc-engine",
        timeout: float = 5.0,
        dead_letter_subject: str = "soc.deadletter",
    ) -> None:
        if not servers:
            raise ClusterError("no NATS servers configured (cluster.servers, or --cluster nats://host:port)")
        self.servers = list(servers)
        self.replicas = replicas
        self.lease_ttl = lease_ttl
        self.retention = retention
        self.name = name
        self.timeout = timeout
        self.dead_letter_subject = dead_letter_subject
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._leases: KeyValue | None = None
        self._lease_js: JetStreamContext | None = None
        self._cluster: KeyValue | None = None
        self._snapshots: KeyValue | None = None

    async def __aenter__(self) -> JetStream:
        async def error_cb(exc: Exception) -> None:
            if self._nc is not None and self._nc.is_connected:
                log.warning("nats connection error", error=str(exc) or type(exc).__name__)

        async def disconnected_cb() -> None:
            if self._nc is not None:  # None: we are closing
                log.warning("disconnected from NATS; reconnecting")

        async def reconnected_cb() -> None:
            log.info(
                "reconnected to NATS",
                server=str(self._nc.connected_url.netloc if self._nc and self._nc.connected_url else ""),
            )

        options: dict[str, Any] = {  # nats-py types its times as int; it takes floats
            "servers": self.servers,
            "name": self.name,
            "connect_timeout": self.timeout,
            "max_reconnect_attempts": 2,  # at start: fail fast with a clear error
            "reconnect_time_wait": 0.5,
            "error_cb": error_cb,
            "disconnected_cb": disconnected_cb,
            "reconnected_cb": reconnected_cb,
            "allow_reconnect": True,
        }
        nc = _Client()  # overrides a private method: nats-py is pinned below 3
        try:
            await nc.connect(**options)
        except (OSError, nats.errors.Error) as exc:  # nats-py closed what it opened
            raise ClusterError(
                f"cannot connect to NATS at {', '.join(self.servers)}: {exc or type(exc).__name__}"
            ) from None
        # once connected, reconnect for ever (another node of the cluster, or this one back)
        nc.options["max_reconnect_attempts"] = -1
        self._nc = nc
        self._js = nc.jetstream(timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            # close, not drain: everything applied is acknowledged, and a drain of pull
            # subscriptions can wait for its whole timeout
            await nc.close()

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise ClusterError("not connected")
        return self._js

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def lease_js(self) -> JetStreamContext:
        return self._lease_js or self.js

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise ClusterError("not connected")
        return self._nc

    # -- set-up ----------------------------------------------------------------------------------
    async def retrying(self, step: Callable[[], Awaitable[T]], *, what: str, patience: float = 120.0) -> T:
        """``step()``, again while JetStream is not ready (timeouts, no responders, no stream leader
        yet: new replicated streams elect theirs, a node may be down) for ``patience`` seconds, then
        a ``ClusterError`` naming ``what``. Idempotent steps only."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return await step()
            except (TimeoutError, nats.errors.Error, ServiceUnavailableError, ServerError) as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"JetStream not ready after {patience:.0f} s ({what}): {exc!r}"
                    ) from None
                log.info("JetStream not ready; retrying", step=what, error=repr(exc))
                await asyncio.sleep(0.5)

    async def ensure(self, partitions: Sequence[str]) -> None:
        """Create the streams, the router's consumer and the buckets that do not exist yet."""
        await self._stream(INGEST, list(INGEST_SUBJECTS), max_age=self.retention, duplicate_window=120.0)
        await self._stream(INCIDENTS, ["soc.incidents.>"], max_age=7 * 86400.0, duplicate_window=600.0)
        await self._stream(
            DEADLETTERS, [self.dead_letter_subject], max_age=7 * 86400.0, duplicate_window=600.0
        )
        await self._stream(DELIVERED, [DELIVERED_SUBJECT], max_age=7 * 86400.0, duplicate_window=600.0)
        for p in partitions:
            await self._stream(
                stream_of(p), [f"soc.in.{p}.>"], max_age=self.retention, duplicate_window=120.0
            )
        await self._bucket(LEASES, ttl=self.lease_ttl, history=1)
        # Lease operations answer within a fraction of the TTL or count as failed: a renewal that
        # waits longer than the lease lives is worth nothing.
        self._lease_js = self.nc.jetstream(timeout=max(0.5, self.lease_ttl / 3))
        self._leases = await self._lease_js.key_value(LEASES)
        status = await self._leases.status()
        ttl = status.stream_info.config.max_age or 0.0
        if abs(ttl - self.lease_ttl) > 0.001:
            raise ClusterError(
                f"lease_ttl is {self.lease_ttl:g} s here but the cluster's leases expire after {ttl:g} s: "
                "every engine must use the same lease_ttl"
            )
        self._cluster = await self._bucket(CLUSTER, ttl=None, history=5)
        self._snapshots = await self._bucket(SNAPSHOTS, ttl=None, history=2)

    async def _stream(
        self, name: str, subjects: list[str], *, max_age: float, duplicate_window: float
    ) -> None:
        try:
            info = await self.js.stream_info(name)
        except NotFoundError:
            pass
        else:
            have = list(info.config.subjects or [])
            if not set(subjects) <= set(have):  # e.g. another dead-letter topic: capture it too
                info.config.subjects = have + [s for s in subjects if s not in have]
                try:
                    await self.js.update_stream(info.config)
                except BadRequestError as exc:
                    raise ClusterError(
                        f"stream {name} cannot also capture {', '.join(subjects)}: {exc.description}"
                    ) from None
            return
        cfg = api.StreamConfig(
            name=name,
            subjects=subjects,
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            num_replicas=self.replicas,
            max_age=max_age,
            duplicate_window=duplicate_window,
        )
        try:
            await self.js.add_stream(cfg)
        except BadRequestError as exc:  # another engine created it meanwhile: fine if it exists now
            try:
                await self.js.stream_info(name)
            except NotFoundError:
                raise ClusterError(f"cannot create stream {name}: {exc.description}") from None

    async def _bucket(self, name: str, *, ttl: float | None, history: int) -> KeyValue:
        try:
            return await self.js.key_value(name)
        except BucketNotFoundError:
            pass
        try:
            return await self.js.create_key_value(
                api.KeyValueConfig(bucket=name, ttl=ttl, history=history, replicas=self.replicas)
            )
        except BadRequestError:
            return await self.js.key_value(name)

    async def attach(self) -> None:
        """Open the cluster's buckets without creating anything (``engine cluster status``)."""
        try:
            self._leases = await self.js.key_value(LEASES)
            self._cluster = await self.js.key_value(CLUSTER)
            self._snapshots = await self.js.key_value(SNAPSHOTS)
        except BucketNotFoundError:
            raise ClusterError("no engine cluster on these servers yet (its buckets do not exist)") from None
        except (TimeoutError, nats.errors.Error) as exc:
            raise ClusterError(f"JetStream does not answer: {exc or type(exc).__name__}") from None

    async def partitions(self) -> tuple[str, ...]:
        """The partitions of the stored partition table (domain partitions, then ``global``)."""
        raw = await self.read_cluster("table")
        if raw is None:
            raise ClusterError("the cluster has no partition table yet")
        count = orjson.loads(raw)["partitions"]
        return (*(f"p{i}" for i in range(count)), "global")

    def _kv(self, kv: KeyValue | None) -> KeyValue:
        if kv is None:
            raise ClusterError("JetStream.ensure() was not called")
        return kv

    # -- the cluster's shared facts --------------------------------------------------------------
    async def agree(self, key: str, value: bytes) -> bytes:
        """Store ``value`` under ``key`` in SOC_CLUSTER unless present; return what is stored."""
        kv = self._kv(self._cluster)
        try:
            await kv.create(key, value)
            return value
        except KeyWrongLastSequenceError:
            entry = await kv.get(key)
            return entry.value or b""

    async def read_cluster(self, key: str) -> bytes | None:
        try:
            entry = await self._kv(self._cluster).get(key)
        except KeyNotFoundError:
            return None
        return entry.value

    # -- leases and members ----------------------------------------------------------------------
    @staticmethod
    def _lease_value(owner: str, epoch: int, now: float) -> bytes:
        return orjson.dumps({"owner": owner, "epoch": epoch, "renewed": now})

    async def acquire(self, partition: str, owner: str, now: float) -> LeaseInfo | None:
        """Take the partition's lease if nobody holds it: the new lease, else None."""
        kv = self._kv(self._leases)
        try:
            rev = await kv.create(f"lease.{partition}", self._lease_value(owner, 0, now))
        except KeyWrongLastSequenceError:
            return None
        # The creating revision is the epoch; write it into the value for readers (CAS: still ours).
        try:
            rev2 = await kv.update(f"lease.{partition}", self._lease_value(owner, rev, now), last=rev)
        except KeyWrongLastSequenceError:
            return None
        return LeaseInfo(partition, owner, rev, rev2, now)

    async def renew(self, lease: LeaseInfo, now: float) -> LeaseInfo | None:
        """Renew by compare-and-set on the revision: the renewed lease, or None if it was lost."""
        kv = self._kv(self._leases)
        try:
            rev = await kv.update(
                f"lease.{lease.partition}",
                self._lease_value(lease.owner, lease.epoch, now),
                last=lease.revision,
            )
        except KeyWrongLastSequenceError:
            return None
        return LeaseInfo(lease.partition, lease.owner, lease.epoch, rev, now)

    async def release(self, lease: LeaseInfo) -> None:
        """Give the lease up (only if still ours: the delete is conditional on its revision)."""
        kv = self._kv(self._leases)
        with contextlib.suppress(KeyWrongLastSequenceError, APIError):
            await kv.delete(f"lease.{lease.partition}", last=lease.revision)

    async def leases(self) -> dict[str, LeaseInfo]:
        """Every partition's current lease, by partition."""
        out: dict[str, LeaseInfo] = {}
        kv = self._kv(self._leases)
        for key in await self._keys(kv, "lease."):
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                continue
            data = orjson.loads(entry.value or b"{}")
            p = key.removeprefix("lease.")
            out[p] = LeaseInfo(p, data["owner"], data["epoch"], entry.revision or 0, data["renewed"])
        return out

    async def heartbeat(self, member: str, now: float) -> None:
        await self._kv(self._leases).put(f"member.{member}", orjson.dumps({"seen": now}))

    async def leave(self, member: str) -> None:
        with contextlib.suppress(APIError):
            await self._kv(self._leases).delete(f"member.{member}")

    async def members(self) -> list[str]:
        kv = self._kv(self._leases)
        out = []
        for key in await self._keys(kv, "member."):
            try:
                await kv.get(key)  # a member that left has a delete marker until it expires
            except KeyNotFoundError:
                continue
            out.append(key.removeprefix("member."))
        return out

    async def _keys(self, kv: KeyValue, prefix: str) -> list[str]:
        """Keys of the lease bucket under ``prefix``, from the stream's subject counts: one API
        request, no watcher consumer to create (which is slow while JetStream re-elects leaders)."""
        del kv
        head = f"$KV.{LEASES}."
        info = await self.lease_js.stream_info(f"KV_{LEASES}", subjects_filter=f"{head}{prefix}>")
        subjects = info.state.subjects or {}
        return sorted(s.removeprefix(head) for s in subjects if s.startswith(head + prefix))

    # -- snapshots -------------------------------------------------------------------------------
    async def save_snapshot(self, partition: str, snap: Snapshot) -> int:
        head = orjson.dumps({"seq": snap.seq, "epoch": snap.epoch, "taken": snap.taken, "cross": snap.cross})
        blob = zlib.compress(head + b"\n" + snap.state, 1)
        return await self._kv(self._snapshots).put(f"snapshot.{partition}", blob)

    async def load_snapshot(self, partition: str) -> Snapshot | None:
        try:
            entry = await self._kv(self._snapshots).get(f"snapshot.{partition}")
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        head, _, state = zlib.decompress(entry.value).partition(b"\n")
        meta = orjson.loads(head)
        return Snapshot(
            seq=meta["seq"], epoch=meta["epoch"], taken=meta["taken"], state=state, cross=meta.get("cross")
        )

    # -- partition streams -----------------------------------------------------------------------
    @staticmethod
    def _input_headers(topic: str, received: float, msg_id: str, copy: bool) -> dict[str, str]:
        headers = {H_TOPIC: topic, H_RECEIVED: repr(received), "Nats-Msg-Id": msg_id}
        if copy:
            headers[H_COPY] = "1"
        return headers

    async def publish_input(
        self, partition: str, topic: str, payload: bytes, received: float, msg_id: str, *, copy: bool = False
    ) -> int:
        headers = self._input_headers(topic, received, msg_id, copy)
        ack = await self.js.publish(input_subject(partition), payload, headers=headers)
        return ack.seq

    async def publish_inputs(
        self, items: Sequence[InputMessage], valid: Callable[[], bool] = lambda: True
    ) -> list[InputMessage]:
        """Publish ``items`` into their partitions' streams without waiting for each answer: all are
        sent in order, then every acknowledgement is awaited (within the timeout). Returns those not
        acknowledged (a timeout, a stream electing its leader), in order, for the caller to retry.
        ``Fenced`` before sending an item when ``valid()`` (the publisher's lease) is false."""
        sent: list[tuple[InputMessage, asyncio.Future[api.PubAck] | None]] = []
        for item in items:
            if not valid():
                raise Fenced("lease lost: not routing any further")
            headers = self._input_headers(item.topic, item.received, item.msg_id, item.copy)
            try:
                fut = await self.js.publish_async(
                    input_subject(item.partition), item.payload, headers=headers
                )
            except (nats.errors.Error, TimeoutError):
                fut = None
            sent.append((item, fut))
        failed: list[InputMessage] = []
        for item, fut in sent:
            if fut is None:
                failed.append(item)
                continue
            try:
                await asyncio.wait_for(fut, self.timeout)
            except (TimeoutError, nats.errors.Error, APIError):
                failed.append(item)
        return failed

    async def publish_summary(self, summary: dict[str, Any]) -> None:
        """A domain partition's part of a global incident, into the global partition's stream."""
        msg_id = f"summary:{summary['partition']}:{summary['seq']}:{summary['index']}"
        await self.js.publish(
            input_subject("global", "summary"), orjson.dumps(summary), headers={"Nats-Msg-Id": msg_id}
        )

    async def publish_tick(self, partition: str, now: float) -> int:
        ack = await self.js.publish(input_subject(partition, "tick"), b"", headers={H_NOW: repr(now)})
        return ack.seq

    async def read(
        self, stream: str, subject: str, start: int = 1, upto: int | None = None
    ) -> AsyncIterator[Msg]:
        """The messages of ``stream`` on ``subject`` from sequence ``start`` up to ``upto`` (None: the
        stream's last sequence now), in order, through an ephemeral consumer read in batches."""
        if upto is None:
            upto = (await self.js.stream_info(stream)).state.last_seq
        if upto < start:
            return
        sub = await self.tail(stream, subject, start)
        try:
            while True:
                try:
                    msgs = await sub.fetch(READ_BATCH, timeout=self.timeout)
                except TimeoutError:
                    msgs = []
                if not msgs:
                    if (await sub.consumer_info()).num_pending == 0:
                        return  # nothing more on this subject up to there
                    continue
                for msg in msgs:
                    seq = msg.metadata.sequence.stream
                    if seq > upto:
                        return
                    yield msg
                    if seq == upto:
                        return
                if msgs[-1].metadata.num_pending == 0:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def tail(self, stream: str, subject: str, start: int) -> JetStreamContext.PullSubscription:
        """An ephemeral pull consumer of ``stream`` on ``subject`` from ``start`` (no acknowledgements;
        the server drops it 30 s after its last fetch)."""
        cfg = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, start),
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=30.0,
        )
        return await self.js.pull_subscribe(subject, stream=stream, config=cfg)

    async def stream_bounds(self, partition: str) -> tuple[int, int]:
        """(first, last) sequence of the partition's stream."""
        info = await self.js.stream_info(stream_of(partition))
        return info.state.first_seq, info.state.last_seq

    async def get_input(self, partition: str, seq: int) -> api.RawStreamMsg:
        return await self.js.get_msg(stream_of(partition), seq=seq)

    async def _router_consumers(self) -> list[api.ConsumerInfo]:
        """The routers' consumers of ``SOC_INGEST`` (``router-e<epoch>``; ``router``: before epochs)."""
        infos: list[api.ConsumerInfo] = await self.js.consumers_info(INGEST)
        return [i for i in infos if i.name == ROUTER or (i.name or "").startswith(f"{ROUTER}-e")]

    @staticmethod
    def _routed(info: api.ConsumerInfo) -> int:
        """Up to where a router's consumer has routed everything: its ack floor (a consumer that
        started at sequence ``n`` and acknowledged nothing yet: ``n - 1``)."""
        floor = info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0
        start = (info.config.opt_start_seq or 1) if info.config else 1
        return max(floor, start - 1)

    async def router_progress(self) -> int:
        """The last ``SOC_INGEST`` sequence up to which every message has been routed (acknowledged
        by a router after its partition publishes were stored)."""
        return max((self._routed(i) for i in await self._router_consumers()), default=0)

    async def router_consumer(self, epoch: int) -> JetStreamContext.PullSubscription:
        """The router's durable pull consumer of ``SOC_INGEST`` for the global lease's ``epoch``.

        A new router never inherits its predecessor's consumer: what that one fetched and did not
        acknowledge would be redelivered only after ``ack_wait``, *after* newer messages (a raise
        routed after its clear). It starts a consumer of its own at the first message not routed
        for sure (after the highest ack floor of the earlier routers' consumers), so it routes the
        predecessor's unacknowledged messages first, in ingest order (``Nats-Msg-Id`` stores once
        what was stored already), and deletes the earlier consumers: a stalled old router cannot
        fetch any more."""
        name = f"{ROUTER}-e{epoch}"
        previous = await self._router_consumers()
        if not any(i.name == name for i in previous):
            done = max((self._routed(i) for i in previous), default=0)
            cfg = api.ConsumerConfig(
                durable_name=name,
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=done + 1,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=30.0,
                max_ack_pending=10000,
            )
            await self.js.add_consumer(INGEST, cfg)
            log.info("router consumer created", consumer=name, start=done + 1)
        for info in previous:
            if info.name != name:
                with contextlib.suppress(APIError):
                    await self.js.delete_consumer(INGEST, info.name)
        return await self.js.pull_subscribe_bind(durable=name, stream=INGEST)

    async def partition_consumer(
        self, partition: str, epoch: int, start: int
    ) -> JetStreamContext.PullSubscription:
        """A durable pull consumer of the partition's stream from ``start``, named by the epoch.

        A new owner's consumer never shares a name with its predecessor's: a stalled old owner
        fetching again cannot take messages from it."""
        name = f"{partition}-e{epoch}"
        cfg = api.ConsumerConfig(
            durable_name=name,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, start),
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=60.0,
            max_ack_pending=20000,
            inactive_threshold=3600.0,
        )
        return await self.js.pull_subscribe(
            f"soc.in.{partition}.>", durable=name, stream=stream_of(partition), config=cfg
        )

    async def drop_consumers(self, partition: str, keep: str) -> None:
        """Delete the partition's consumers of earlier epochs (best effort)."""
        try:
            infos = await self.js.consumers_info(stream_of(partition))
        except APIError:
            return
        for info in infos:
            if info.name != keep:
                with contextlib.suppress(APIError):
                    await self.js.delete_consumer(stream_of(partition), info.name)

    async def consumer_state(self, partition: str, epoch: int) -> api.ConsumerInfo | None:
        try:
            info: api.ConsumerInfo = await self.js.consumer_info(
                stream_of(partition), f"{partition}-e{epoch}"
            )
        except NotFoundError:
            return None
        return info

    # -- outputs ---------------------------------------------------------------------------------
    async def last_published(self, partition: str) -> Published:
        try:
            msg = await self.js.get_last_msg(INCIDENTS, incident_subject(partition))
        except NotFoundError:
            return NOTHING_PUBLISHED
        h = msg.headers or {}
        return Published(
            msg.seq or 0, int(h.get(H_SOURCE, 0)), int(h.get(H_INDEX, -1)), int(h.get(H_EPOCH, 0))
        )

    async def publish_record(
        self, partition: str, record: dict[str, Any], *, source_seq: int, index: int, epoch: int, after: int
    ) -> int:
        """Publish one incident record, only if the subject's last message is still ``after``.

        Raises ``KeyWrongLastSequenceError`` if another owner published meanwhile."""
        headers = {
            "Nats-Msg-Id": f"{record['incident_id']}:{record['version']}",
            "Nats-Expected-Last-Subject-Sequence": str(after),
            H_SOURCE: str(source_seq),
            H_INDEX: str(index),
            H_EPOCH: str(epoch),
        }
        try:
            ack = await self.js.publish(incident_subject(partition), orjson.dumps(record), headers=headers)
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise KeyWrongLastSequenceError(description=exc.description) from None
            raise
        if ack.duplicate:
            return after  # the very same record is already there: the subject did not move
        return ack.seq

    async def publish_dead_letter(
        self, partition: str, record: dict[str, Any], msg_id: str
    ) -> asyncio.Future[api.PubAck]:
        """Send a dead-letter record without waiting (the future is its acknowledgement) on the
        dead-letter subject: stored in DEADLETTERS and seen by MQTT subscribers of the topic."""
        return await self.js.publish_async(
            self.dead_letter_subject,
            orjson.dumps(record),
            headers={"Nats-Msg-Id": msg_id, H_PARTITION: partition},
        )

    async def publish_delivered(
        self, receiver: str, incident_id: str, version: int, state: str
    ) -> asyncio.Future[api.PubAck]:
        """Log that ``receiver`` has a version (``delivered`` or ``dead``), without waiting."""
        key = f"{receiver} {incident_id}:{version}"
        return await self.js.publish_async(
            DELIVERED_SUBJECT,
            orjson.dumps(
                {"receiver": receiver, "incident_id": incident_id, "version": version, "state": state}
            ),
            headers={"Nats-Msg-Id": key},
        )


def message_time(value: str | None, fallback: dt.datetime | None) -> float:
    if value:
        return float(value)
    return fallback.timestamp() if fallback is not None else 0.0
