"""The cluster's webhook deliverer: INCIDENTS → the daemon's outbox, on the owner of ``global``.

Theory of operation
-------------------
One engine delivers (the owner of the ``global`` partition, so a receiver is not sent each version
by every engine; the role fails over with that lease). It uses the single process's ``Store`` and
``Notifier`` on its own ``store.path``: order per incident, retries with backoff, the circuit
breaker, signatures, formats and ``Idempotency-Key: incident_id:version``.

What a successor must know lives in JetStream, not in the deliverer's file:

* **What each receiver has**: when a version is delivered (or dead) for a receiver, the deliverer
  logs it in ``SOC_DELIVERED`` (``Nats-Msg-Id = receiver incident_id:version``). A new deliverer
  reads the log first and enqueues only what is not there: it sends nothing its predecessor had
  delivered (except a version delivered in the instant before the predecessor died, before its
  log entry: sent again with the same key), and loses nothing.
* **The follow rule** (a receiver keeps getting an incident it has, whatever its priority becomes):
  ``Follows`` decides it from the INCIDENTS stream alone (a receiver has an incident from the
  first record, in stream order, that the notifier's rule gave it), so every deliverer decides it
  for every record exactly as the first one did, whatever its own file holds.

At takeover the deliverer reads the log and INCIDENTS from their start (both keep 7 days: fine for
some 100k records; a checkpoint is the next step beyond), then follows INCIDENTS live.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from engine.adapters.jetstream import DELIVERED, DELIVERED_SUBJECT, INCIDENTS
from engine.adapters.notifier import Notifier
from engine.adapters.store import Store, WireRecord

if TYPE_CHECKING:
    from engine.service.cluster import ClusterNode

log = structlog.get_logger("engine.service.cluster_outbox")

FETCH_BATCH = 256
IDLE_WAIT = 0.2
DONE = ("delivered", "dead")


class Follows:
    """Which receiver has which incident, by the INCIDENTS sequence of the first record it got."""

    def __init__(self) -> None:
        self._first: dict[tuple[str, str], int] = {}

    def has(self, receiver: str, incident_id: str, before: int) -> bool:
        first = self._first.get((receiver, incident_id))
        return first is not None and first < before

    def note(self, seq: int, incident_id: str, receivers: list[str]) -> None:
        for r in receivers:
            key = (r, incident_id)
            if self._first.get(key, seq + 1) > seq:
                self._first[key] = seq


@dataclass
class _Turn:
    """One engine's turn as deliverer."""

    store: Store
    notifier: Notifier
    done: set[tuple[str, str, int]]  # (receiver, incident_id, version) logged delivered or dead
    follows: Follows = field(default_factory=Follows)
    waiting: dict[tuple[str, int], set[str]] = field(default_factory=dict)  # receivers still to log
    logged: list[asyncio.Future[Any]] = field(default_factory=list)


class ClusterOutbox:
    """Run with ``await ClusterOutbox(node).run()`` (a task of the node, cancelled with it)."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.delivered = 0  # versions logged delivered or dead by this engine
        self.skipped = 0  # versions a predecessor had delivered (not enqueued again)

    async def run(self) -> None:
        if not self.node.settings.receivers:
            return
        while True:
            if not self.node.leading:
                await asyncio.sleep(0.2)
                continue
            try:
                await self._deliver_while_leading()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox: failed; starting again", error=repr(exc))
                await asyncio.sleep(0.5)

    async def _done_so_far(self) -> set[tuple[str, str, int]]:
        """(receiver, incident_id, version) every deliverer logged delivered or dead."""
        done: set[tuple[str, str, int]] = set()
        async for msg in self.node.js.read(DELIVERED, DELIVERED_SUBJECT):
            entry = orjson.loads(msg.data)
            done.add((entry["receiver"], entry["incident_id"], int(entry["version"])))
        return done

    async def _deliver_while_leading(self) -> None:
        s = self.node.settings
        js = self.node.js
        store = Store(
            s.store.path, commit_interval=s.store.commit_interval, keep_delivered=s.store.keep_delivered
        )
        started = time.monotonic()
        async with store:
            done = await self._done_so_far()
            self._settle_local(store, done)
            turn = _Turn(store, Notifier(store, s.receivers), done)
            last = (await js.js.stream_info(INCIDENTS)).state.last_seq
            count = 0
            async for msg in js.read(INCIDENTS, "soc.incidents.>", 1, last):
                self._take(turn, msg.metadata.sequence.stream, msg.data)
                count += 1
            store.commit()
            log.info(
                "outbox started",
                receivers=[r.name for r in s.receivers],
                store=str(s.store.path),
                records=count,
                waiting=len(turn.waiting),
                ms=round((time.monotonic() - started) * 1000),
            )
            sub = await js.tail(INCIDENTS, "soc.incidents.>", last + 1)
            try:
                async with turn.notifier:
                    while self.node.leading:
                        try:
                            msgs = await sub.fetch(FETCH_BATCH, timeout=IDLE_WAIT)
                        except TimeoutError:
                            msgs = []
                        for msg in msgs:
                            seq = msg.metadata.sequence.stream
                            self._take(turn, seq, msg.data)
                        if msgs:
                            store.commit()
                        await self._log_delivered(turn)
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
                for fut in turn.logged:  # what was delivered here is logged before a successor reads
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(fut, js.timeout)

    def _take(self, turn: _Turn, seq: int, data: bytes) -> None:
        """One INCIDENTS record: decide its receivers (follow rule from the stream), enqueue it for
        those that do not have it yet."""
        try:
            rec = WireRecord(orjson.loads(data))
            iid, version = rec.incident_id, rec.version
            receivers = turn.notifier.receivers_for(rec, has=lambda r, i: turn.follows.has(r, i, seq))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.error("outbox: unreadable incident record; skipped", seq=seq, error=repr(exc))
            return
        turn.follows.note(seq, iid, receivers)
        todo = [r for r in receivers if (r, iid, version) not in turn.done]
        self.skipped += len(receivers) - len(todo)
        if todo:
            turn.store.record(rec, todo, time.time())
            turn.waiting.setdefault((iid, version), set()).update(todo)

    @staticmethod
    def _settle_local(store: Store, done: set[tuple[str, str, int]]) -> None:
        """Rows pending in this engine's file (from an earlier turn as deliverer) that another
        deliverer has delivered since: marked delivered, not sent again."""
        now = time.time()
        rows = store.db.execute(
            "SELECT id, receiver, incident_id, version FROM outbox WHERE state = 'pending' ORDER BY version"
        ).fetchall()
        for row_id, receiver, iid, version in rows:
            if (receiver, iid, int(version)) in done:
                store.delivered(int(row_id), now)
        store.commit()

    async def _log_delivered(self, turn: _Turn) -> None:
        """Log each version delivered or dead since the last look (pipelined, acknowledgements
        awaited together)."""
        js = self.node.js
        for (iid, version), receivers in list(turn.waiting.items()):
            for r in list(receivers):
                rows = [row for row in turn.store.outbox_rows(r, iid) if row["version"] == version]
                if rows and rows[0]["state"] in DONE:
                    turn.logged.append(await js.publish_delivered(r, iid, version, rows[0]["state"]))
                    receivers.discard(r)
                    self.delivered += 1
            if not receivers:
                del turn.waiting[(iid, version)]
        futures, turn.logged[:] = list(turn.logged), []
        for fut in futures:
            await asyncio.wait_for(fut, js.timeout)
