"""One owned partition of the cluster: its single writer, fed only by its stream.

Theory of operation
-------------------
One ``PartitionWorker`` per owned partition, the single writer of that partition's core. It
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
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import nats
import orjson
import structlog
from nats.js.errors import KeyWrongLastSequenceError

from engine.adapters.jetstream import (
    H_COPY,
    H_NOW,
    H_RECEIVED,
    H_TOPIC,
    NOTHING_PUBLISHED,
    Fenced,
    JetStream,
    LeaseInfo,
    Published,
    Snapshot,
    message_time,
    stored_time,
)
from engine.core.partitions import GLOBAL, CoreIncidents, contributes, contribution
from engine.core.pipeline import Decisions, Pipeline
from engine.errors import InvalidMessage
from engine.model.messages import dead_letter_record

if TYPE_CHECKING:
    from engine.service.cluster import ClusterNode

log = structlog.get_logger("engine.service.cluster")

FETCH_BATCH = 256
IDLE_WAIT = 0.2  # a worker with nothing to fetch looks at its timers this often


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
    dead_stored: int = 0  # dead letters DEADLETTERS acknowledged (published on the dead-letter subject)
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
            try:
                await asyncio.wait_for(fut, self.js.timeout)
            except (TimeoutError, nats.errors.Error, nats.js.errors.APIError) as exc:
                log.error(
                    "dead letter not stored: releasing the partition for a replay",
                    subject=self.js.dead_letter_subject,
                    error=str(exc) or type(exc).__name__,
                )
                raise
            self.status.dead_stored += 1

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
