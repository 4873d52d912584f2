"""Every cluster engine's read view of the cluster's outputs, for the query API.

Theory of operation
-------------------
The records of every partition are in ``INCIDENTS``, the dead letters in ``DEADLETTERS``: so the
read endpoints need no fan-out to the partitions' owners. Each engine follows both streams from
their start (ephemeral consumers, no acknowledgements) into an in-memory ``Store``, the single
process's own tables and queries, so ``GET /incidents`` (same filters), ``/incidents/<id>``,
``/incidents/<id>/history`` and ``/dead-letters`` answer as the daemon's do, on any engine, also
one that owns no partition. The view is eventually consistent: it lags the streams by a fetch
(``lag`` in ``/healthz``), and it holds what the streams keep (7 days).

What it cannot answer (the live core state: active alarms, elements, customers, services,
explanations) would need the owners' cores: those endpoints are not served in cluster mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from engine.adapters.jetstream import DEADLETTERS, H_PARTITION, INCIDENTS, JetStream
from engine.adapters.store import Store, WireRecord
from engine.model.messages import DeadLetter

if TYPE_CHECKING:
    from nats.aio.msg import Msg

log = structlog.get_logger("engine.service.cluster_view")

FETCH_BATCH = 1024
IDLE_WAIT = 0.5


class ClusterView:
    """``async with ClusterView(js) as view``: follows INCIDENTS and DEADLETTERS into ``view.store``."""

    def __init__(self, js: JetStream) -> None:
        self.js = js
        self.store = Store(Path(":memory:"))
        self.applied = {INCIDENTS: 0, DEADLETTERS: 0}  # last stream sequence in the view
        self.pending = {INCIDENTS: 0, DEADLETTERS: 0}  # what the last fetch said was left
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> ClusterView:
        await self.store.__aenter__()
        self._tasks = [
            asyncio.create_task(self._follow(INCIDENTS, "soc.incidents.>"), name="view-incidents"),
            asyncio.create_task(self._follow(DEADLETTERS, self.js.dead_letter_subject), name="view-dead"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.store.__aexit__(None, None, None)

    def lag(self) -> dict[str, Any]:
        return {"applied": dict(self.applied), "pending": dict(self.pending)}

    async def _follow(self, stream: str, subject: str) -> None:
        while True:
            try:
                sub = await self.js.tail(stream, subject, self.applied[stream] + 1)
                while True:
                    try:
                        msgs = await sub.fetch(FETCH_BATCH, timeout=IDLE_WAIT)
                    except TimeoutError:
                        msgs = []
                    if not msgs:
                        self.pending[stream] = 0
                        continue
                    for msg in msgs:
                        self._apply(stream, msg)
                    self.pending[stream] = msgs[-1].metadata.num_pending
                    self.store.commit()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away, the ephemeral consumer gone: start again after
                log.warning("view: following failed; again", stream=stream, error=repr(exc))
                await asyncio.sleep(1.0)

    def _apply(self, stream: str, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        if seq <= self.applied[stream]:
            return
        self.applied[stream] = seq
        try:
            data = orjson.loads(msg.data)
            if stream == INCIDENTS:
                self.store.record(WireRecord(data), [], time.time())
            else:
                source = f"cluster:{(msg.headers or {}).get(H_PARTITION, '?')}"
                dead = DeadLetter.from_wire(data)
                self.store.dead_letter(dead, source, dead.time, publish=False)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("view: unreadable record; skipped", stream=stream, seq=seq, error=repr(exc))
