"""The daemon: the pure core driven by one task, with MQTT, the store, webhooks and HTTP around it.

Theory of operation
-------------------
One task (``core``) owns the pipeline. Everything that changes the core's state reaches it in
batches from two bounded places: the MQTT connection's inbox (``MqttSource.drain``, direct mode:
no per-message hand-over between tasks) and the intake queue of HTTP events, acknowledgements and
reloads (``Command`` s from the HTTP adapter). For each item the core task

1. appends it to the journal (SQLite; not yet committed), with the time ``now`` it is applied at;
2. applies it to the pipeline and gets decisions back;
3. writes each incident record to the store (latest record + one outbox row per receiver),
   in the same uncommitted batch;

and commits once per batch: when nothing more has arrived after a turn of the event loop, when the
batch holds ``store.batch_size`` items, or when its first item waited ``store.batch_delay``.
Journal, records and outbox rows become durable together, and only then are the MQTT messages in
that batch acknowledged (QoS 1, application-controlled; their PUBACKs leave in one write). Metrics
are updated once per batch. Timer ticks are journaled too. A crash (kill -9) loses at most the
uncommitted batch, whose messages were never acknowledged, so the broker delivers them again.

On start the daemon restores the latest snapshot and replays the journal after it through the same
deterministic core: the state is what it was, the records come out again with the same
(incident_id, version), and the outbox's unique key turns them into no-ops. Snapshots are taken
periodically and at reloads; the journal before them is deleted.

Notifier tasks deliver the outbox to webhook receivers; a publisher delivers the ``mqtt`` receiver's
rows to ``<incident_topic>/<incident_id>`` and dead letters to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
import structlog

from engine import __version__, compiled
from engine.adapters.api_alertmanager import AlertmanagerApi
from engine.adapters.api_tmf642 import Tmf642Api
from engine.adapters.api_tmf656 import Tmf656Api
from engine.adapters.http import CoreView, HttpApi, Overloaded
from engine.adapters.mqtt import MqttPublisher, MqttSource, PublishError
from engine.adapters.notifier import Notifier
from engine.adapters.store import Store
from engine.core.explain import PostMortems
from engine.core.incidents import IncidentRecord
from engine.core.pipeline import Decisions, Pipeline
from engine.core.query import CoreQuery
from engine.errors import ConfigError, EngineError, InvalidMessage
from engine.model.messages import DeadLetter, Routes, dead_letter_record
from engine.model.topology import load_topology
from engine.rules.references import unknown_references
from engine.rules.schema import load_rulesets
from engine.service.config import MQTT_RECEIVER, EngineSettings
from engine.service.heap import FullCollections, freeze_heap
from engine.service.logs import RateLimited, bound, log_transition
from engine.service.metrics import Metrics

log = structlog.get_logger("engine.service.daemon")

RECENT_DEAD_LETTERS = 100  # the newest kept dead letters on the dashboard's Operations page
BATCH = 500  # timer ticks applied in a row before the core task yields to intake
DRAIN = 16  # MQTT messages taken from the inbox at a time (the batch's time bound is checked between)
NOTICE_EVENTS = {
    "clear_unknown": "clear matches no alarm",
    "stale_raise": "stale raise ignored",
    "stale_clear": "stale clear ignored",
    "late": "event out of order",
    "clock_ahead": "event time ahead of the receive time; clamped",
    "clock_behind": "event time behind the receive time; clamped",
}
LOG_BURST, LOG_INTERVAL = 5, 60.0  # notice and fault log lines of one kind per minute
NO_PROGRESS = 3  # ticks in a row at one due time before the core task spaces its ticks out
TICK_BACKOFF = 1.0  # seconds between ticks while the timers make no progress (intake goes on)
OUTBOX_POLL = 1.0  # s: the MQTT outbox looks again at least this often when not woken (retries due)


@dataclass
class Command:
    """An intake item from HTTP: an event to ingest, an acknowledgement or a reload."""

    kind: str  # "msg" | "ack" | "silence" | "reload"
    topic: str = ""
    payload: bytes = b""
    received: float = 0.0
    done: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Daemon(CoreView):
    def __init__(self, settings: EngineSettings, *, clock: Callable[[], float] = time.time) -> None:
        if settings.topology is None:
            raise ConfigError("<config>", "topology", "the daemon needs a topology file (topology: PATH)")
        self.settings = settings
        self._clock = clock
        # the "mqtt" receiver: incident records published on <incident_topic>/<id> (null: none)
        self._publish_records = settings.mqtt.enabled and settings.mqtt.incident_topic is not None
        receivers = [r.name for r in settings.receivers] + ([MQTT_RECEIVER] if self._publish_records else [])
        self._receivers = tuple(receivers)  # those configured, in order (``receiver_names``)
        self.metrics = Metrics(version=__version__, receivers=receivers)
        self.pipeline = self._build_pipeline()
        self.store = Store(
            settings.store.path,
            commit_interval=settings.store.commit_interval,
            keep_delivered=settings.store.keep_delivered,
            keep_dead_letters=settings.store.keep_dead_letters,
            max_dead_letters=settings.store.max_dead_letters,
            keep_explanations=settings.store.keep_explanations,
            max_explanations=settings.store.max_explanations,
            clock=clock,
        )
        self._post_mortems = self._explain_as_resolved(self.pipeline)
        self.notifier = Notifier(self.store, settings.receivers, clock=clock, on_result=self._delivery_result)
        mq = settings.mqtt
        # The core task drains the connection's inbox itself (bounded by queue_size: beyond it,
        # messages are dropped unacknowledged and counted, and the broker sends them again).
        self.source: MqttSource | None = (
            MqttSource(
                mq, clock=clock, direct=True, client_queue_size=max(mq.queue_size, 2 * mq.receive_maximum)
            )
            if mq.enabled
            else None
        )
        self.publisher: MqttPublisher | None = MqttPublisher(mq) if mq.enabled else None
        # HTTP commands (events, acknowledgements, silences, reloads); MQTT messages stay in the inbox.
        self.intake: asyncio.Queue[Command] = asyncio.Queue(mq.queue_size)
        # Set when there is something for the core task: an MQTT message or an HTTP command.
        self._wake = self.source.arrived if self.source is not None else asyncio.Event()
        self._batch_size = settings.store.batch_size
        self._batch_delay = settings.store.batch_delay
        self._counts: Counter[tuple[str, str, str]] = Counter()  # this batch's messages, for metrics
        self._batch_samples = 0
        self._waits: list[float] = []  # this batch's receipt → decision times
        self._mqtt_dropped_seen = 0
        self.http = (
            HttpApi(
                settings.http,
                self,
                self.metrics,
                route_sets=[
                    AlertmanagerApi(self, clock=clock),
                    Tmf642Api(self, clock=clock, store=self.store),
                    Tmf656Api(self),
                ],
            )
            if settings.http.enabled
            else None
        )
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_requested = asyncio.Event()  # a signal or the caller asked to stop
        self._stopping = asyncio.Event()  # intake drained: the core task must end
        self._stopped = asyncio.Event()
        self._ready = False
        self._last_snapshot = 0.0
        self._entries_since_snapshot = 0
        self._metrics_at = 0.0
        self._purged_at = 0.0
        self.heap: FullCollections | None = None  # `engine run` sets it: full collections are ours
        self._firings_seen = 0
        self._rule_firings_seen: dict[str, int] = {}  # qualified rule -> firings already counted
        self._reconnects_seen = 0
        # Notices and faults: at most LOG_BURST lines of a kind per LOG_INTERVAL, the rest counted.
        self._log_limits: dict[str, RateLimited] = {}
        self._log_burst, self._log_interval = LOG_BURST, LOG_INTERVAL
        self._outbox_poll = OUTBOX_POLL
        self._publish_errors_logged: set[str] = set()  # reasons of MQTT outbox failures logged once
        self._tick_after = 0.0  # while the timers make no progress: no tick before this time
        self.recovered: dict[str, int] = {}
        self._acked: IncidentRecord | None = None  # an acknowledgement that changed nothing
        self._catching_up = True  # until the start-up backlog is applied (see _still_catching_up)
        self._mqtt_taken = 0  # MQTT messages taken from the intake
        self._started_at = 0.0
        self._catch_up_deadline = 0.0
        self._rejections = RateLimited(burst=10, interval=10.0)
        self._dead_dropped_seen = 0
        self.last_reload: dict[str, Any] | None = None  # time, ok, message

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Daemon:
        try:
            await self._stack.enter_async_context(self.store)
            self._recover()
            self._orphaned_rows()
            self._last_snapshot = self._clock()  # the snapshot interval counts from start
            self._started_at = self._clock()
            self._catch_up_deadline = self._started_at + self.settings.mqtt.catch_up_timeout
            await self._stack.enter_async_context(self.notifier)
            if self.publisher is not None:
                await self._stack.enter_async_context(self.publisher)
            self._tasks.append(asyncio.create_task(self._core(), name="core"))
            if self.publisher is not None:
                self._tasks.append(asyncio.create_task(self._mqtt_outbox(), name="mqtt-outbox"))
            if self.source is not None:
                await self._stack.enter_async_context(self.source)
            if self.http is not None:
                await self._stack.enter_async_context(self.http)
            self._ready = True
            log.info(
                "engine started",
                version=__version__,
                core=compiled.CORE,  # compiled with mypyc, or the source and why (engine.compiled)
                http_port=self.http.port if self.http is not None else None,
                mqtt=self.settings.mqtt.url if self.settings.mqtt.enabled else None,
                **self.recovered,
            )
        except BaseException:
            await self._shutdown(graceful=False)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._shutdown(graceful=True)

    def stop(self) -> None:
        """Ask for a graceful stop (signal handlers call this); `wait()` then returns."""
        self._stop_requested.set()

    async def wait(self) -> None:
        await self._stop_requested.wait()

    async def _shutdown(self, *, graceful: bool) -> None:
        if self._stopped.is_set():
            return
        self._ready = False
        timeout = self.settings.shutdown_timeout
        if self.source is not None:
            self.source.pause()  # stop intake; what is queued gets applied below
        if graceful:
            deadline = self._clock() + timeout
            while not self.intake.empty() and self._clock() < deadline and self._core_alive():
                await asyncio.sleep(0.01)
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            self.store.commit()
            self._snapshot(self._clock())
        if graceful:
            await self.notifier.flush(timeout)
        await self._stack.aclose()
        self._post_mortems.close()
        self.pipeline.close()
        self._stopped.set()
        log.info("engine stopped", graceful=graceful)

    def _orphaned_rows(self) -> None:
        """Say so when the store holds records waiting for a receiver no longer configured (a
        webhook removed, ``mqtt.incident_topic`` set to null): they wait, unsent and not counted in
        the outbox gauge, until that receiver is configured again (then they go, oldest first)."""
        waiting = {r: n for r, n in self.store.outbox_depth().items() if r not in self._receivers}
        if waiting:
            log.warning(
                "records waiting for receivers no longer configured",
                receivers=waiting,
                hint="configure the receiver again to send them, or leave them: they are kept, not sent",
            )

    def _core_alive(self) -> bool:
        return any(t.get_name() == "core" and not t.done() for t in self._tasks)

    # -- recovery ------------------------------------------------------------------------------
    def _recover(self) -> None:
        snap = self.store.load_snapshot()
        replayed = 0
        if snap is not None:
            blob, _seq = snap
            dropped = self.pipeline.restore(blob)
            self.recovered.update(dropped)
        after = snap[1] if snap is not None else 0
        for entry in self.store.journal_after(after):
            replayed += 1
            decisions = self._apply(entry.kind, entry.topic, entry.payload, entry.time)
            self._record(decisions, entry.time, replay=True)
        self.store.commit()
        self.recovered.update(journal_replayed=replayed)
        if self.store.unreadable:  # damaged entries, each logged by the store: in the start line
            self.recovered.update(journal_unreadable=self.store.unreadable)

    # -- the core task -------------------------------------------------------------------------
    def _still_catching_up(self, now: float) -> bool:
        """True while the start-up backlog is being applied: the MQTT source has not yet seen its
        catch-up marker (everything the broker held for our session comes before it), or what came
        before it is still in the intake (counted, so a live stream behind it cannot prolong this).
        HTTP items queued meanwhile are ahead of them in the same queue. Ends for good then, or
        after ``mqtt.catch_up_timeout``."""
        if not self._catching_up:
            return False
        source = self.source
        if source is None or (source.caught_up.is_set() and self._mqtt_taken >= source.caught_up_at):
            done = "caught up"
        elif now >= self._catch_up_deadline:
            done = "timed out"
            log.warning(
                "catch-up timed out: firing the timers that fell due while the engine was down",
                timeout=self.settings.mqtt.catch_up_timeout,
                subscribed=source.subscribed.is_set(),
                marker_seen=source.caught_up.is_set(),
            )
        else:
            return True
        self._catching_up = False
        log.info("backlog applied; timers run", outcome=done, seconds=round(now - self._started_at, 3))
        return False

    async def _core(self) -> None:
        """Apply intake items and timer ticks, commit once per batch. Intake is never starved: a run
        of timers yields every ``BATCH`` ticks, and a timer that does not move after a tick (a bug
        the core's containment did not catch) is ticked at most once a second, intake read between."""
        batch = 0  # items applied since the last commit
        opened = 0.0  # when the batch's first item was taken (perf_counter)
        last_due, repeats = None, 0
        while not self._stopping.is_set():
            now = self._clock()
            due = self.pipeline.next_due()
            if self._catching_up and self._still_catching_up(now):
                due = None  # timers wait for the backlog (the roots of what fell due meanwhile)
            if due is not None and due <= now and now >= self._tick_after:
                repeats = repeats + 1 if due == last_due else 0
                last_due = due
                if repeats >= NO_PROGRESS:
                    self._tick_after = now + TICK_BACKOFF
                    self._limited(
                        "core timer stuck", now, "error", "core timer stuck", reason=self.pipeline.stuck(due)
                    )
                self._journal_and_apply("tick", "", b"", now)
                batch += 1
                if batch % BATCH == 0:
                    await asyncio.sleep(0)  # a long run of timers never starves HTTP and MQTT
                continue
            room = self._batch_size - batch
            if batch == 0:
                opened = time.perf_counter()
            taken = self._take_batch(room, opened + self._batch_delay) if room > 0 else 0
            if taken:
                batch += taken
                if batch < self._batch_size and time.perf_counter() - opened < self._batch_delay:
                    await asyncio.sleep(0)  # one turn of the loop: the socket reader may bring more
                    continue
            if batch:
                self._commit()  # the batch is durable; its MQTT messages are acknowledged now
                self._batch_metrics()
                batch = 0
                self._maybe_snapshot(now)
            if now - self._metrics_at >= 1.0:
                self._refresh_metrics()
                self._metrics_at = now
            if now - self._purged_at >= self.settings.store.snapshot_interval:
                self.store.purge(
                    now
                )  # delivered outbox rows older than keep_delivered; committed by the store
                self.store.purge_dead_letters(now)
                self.store.purge_explanations(now)
                self._purged_at = now
            if self.heap is not None and self.heap.due(idle=not taken and self._idle()):
                self.heap.collect()  # between batches (engine/service/heap.py)
            if taken:
                await asyncio.sleep(0)  # a full batch: more may be waiting; let the rest run first
                continue
            wait = 1.0 if due is None else min(1.0, max(0.0, due - now, self._tick_after - now))
            if self._catching_up:
                wait = 0.02
            self._wake.clear()
            if self._idle():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()

    def _idle(self) -> bool:
        return self.intake.empty() and not self._mqtt_waiting()

    def _mqtt_waiting(self) -> bool:
        return self.source is not None and self.source.waiting > 0

    def _take_batch(self, limit: int, until: float) -> int:
        """Apply up to ``limit`` items, HTTP commands first, then MQTT messages from the inbox, and
        stop at ``until`` (perf_counter) however few: a batch is bounded in size and in time (one
        message of 100 KPI samples costs what a hundred alarms do)."""
        taken = 0
        intake = self.intake
        clock, perf = self._clock, time.perf_counter
        while taken < limit and not intake.empty():
            self._take(intake.get_nowait())
            taken += 1
        source = self.source
        waits = self._waits
        while source is not None and taken < limit and perf() < until:
            items = source.drain(min(limit - taken, DRAIN))
            if not items:
                break
            done = 0
            try:
                for item in items:
                    now = clock()
                    self._message("mqtt", item.topic, item.payload, now, None)
                    waits.append(max(0.0, now - item.received))
                    done += 1
            finally:  # acknowledged together once committed (after the entries' own callbacks: in
                # order); if one failed, those journaled before it still are, not it (redelivered)
                if done:
                    journaled = items if done == len(items) else items[:done]
                    self.store.on_durable(partial(source.ack_many, journaled))
            self._mqtt_taken += len(items)
            taken += len(items)
        return taken

    def _batch_metrics(self) -> None:
        """The batch's counts and processing times into the metrics, once per batch."""
        m = self.metrics
        for (source, kind, outcome), n in self._counts.items():
            m.message(source, kind, outcome, n)
        self._counts.clear()
        if self._batch_samples:
            m.samples(self._batch_samples)
            self._batch_samples = 0
        if self._waits:
            m.processing_many(self._waits)
            self._waits = []
        m.intake_depth(self._intake_depth())

    def _intake_depth(self) -> int:
        """HTTP commands queued plus MQTT messages received and not yet taken."""
        return self.intake.qsize() + (self.source.waiting if self.source is not None else 0)

    def _take(self, item: Command) -> None:
        now = self._clock()
        try:
            if item.kind == "msg":
                self._message("http", item.topic, item.payload, now, _resolver(item.done, None))
            elif item.kind == "ack":
                holder: dict[str, Any] = {}
                done = item.done

                def acked() -> None:
                    if not done.done():
                        done.set_result(holder.get("rec"))

                self._acked = None
                result = self._journal_and_apply("ack", "", item.payload, now, on_durable=acked)
                if result.records:
                    holder["rec"] = result.records[0].to_wire()
                elif self._acked is not None:  # the same acknowledgement again: nothing changed
                    stored = self.store.incident(self._acked.incident_id)
                    holder["rec"] = stored if stored is not None else self._acked.to_wire()
            elif item.kind == "silence":
                box: dict[str, Any] = {}
                fut = item.done

                def settled() -> None:
                    if not fut.done():
                        fut.set_result(box.get("result"))

                self._journal_and_apply("silence", "", item.payload, now, on_durable=settled, out=box)
            elif item.kind == "reload":
                item.done.set_result(self._reload(now))
        except Exception as exc:  # a bug in one item must not stop the core
            log.exception("intake item failed", kind=item.kind)
            if not item.done.done():
                item.done.set_exception(exc)

    def _message(
        self, source: str, topic: str, payload: bytes, now: float, ack: Callable[[], None] | None
    ) -> None:
        """Journal and apply one message; ``ack`` runs once it is committed."""
        kind = "msg-held" if self._catching_up else "msg"
        decisions = self._journal_and_apply(kind, topic, payload, now, on_durable=ack, source=source)
        outcome = decisions.message  # None: the daemon contained a failure outside the core's own
        if outcome is not None and outcome.accepted:
            self._counts[source, outcome.kind, "accepted"] += 1  # into the metrics once per batch
            if outcome.kind == "samples":
                self._batch_samples += outcome.samples
        if decisions.dead_letters:
            fields = [dl.first_field for dl in decisions.dead_letters if dl.errors]
            if outcome is None or not outcome.accepted:
                self._counts[source, "unknown", "invalid"] += 1
            self.metrics.invalid(fields)

    def _refresh_metrics(self) -> None:
        """Gauges from the state, at most once a second (cheap scans of the core's tables)."""
        m = self.metrics
        q = self.pipeline.query
        m.alarms_active(q.active_alarm_count())
        m.incidents_gauge(q.open_incident_counts())
        depths = self.store.outbox_depth()  # a receiver with nothing pending reads 0
        m.outbox_depths({r: n for r, n in depths.items() if r in self._receivers})
        kept, unpublished = self.store.dead_letter_counts()
        m.dead_letters_kept(kept, unpublished)
        dropped = self.store.dead_letters_dropped
        if dropped > self._dead_dropped_seen:
            m.dead_letters_dropped(dropped - self._dead_dropped_seen)
            log.warning(
                "dead letters purged before they were published",
                dropped=dropped - self._dead_dropped_seen,
                max_dead_letters=self.store.max_dead_letters,
            )
        self._dead_dropped_seen = dropped
        if n := self._rejections.pending(self._clock()):
            log.warning("input rejected: more lines suppressed", suppressed=n)
        firings = q.firings()
        if firings.total > self._firings_seen:
            m.rule_firings(firings.total - self._firings_seen)
        self._firings_seen = firings.total
        by_rule = firings.by_rule
        for cr in q.rules():  # every loaded rule has a series, from 0
            n, seen = by_rule.get(cr.qualified, 0), self._rule_firings_seen.get(cr.qualified)
            if seen is None or n > seen:
                m.rule_firings_by_rule(cr.ruleset, cr.rule.name, n - (seen or 0))
            self._rule_firings_seen[cr.qualified] = n  # a reload may lower it: count growth from there
        if self.source is not None:
            reconnects = self.source.stats.get("reconnects", 0)
            for _ in range(reconnects - self._reconnects_seen):
                m.mqtt_reconnect()
            self._reconnects_seen = reconnects
            dropped = self.source.stats.get("dropped_by_client", 0)
            if dropped > self._mqtt_dropped_seen:  # unacknowledged, so the broker sends them again
                m.intake_drop("mqtt", dropped - self._mqtt_dropped_seen)
            self._mqtt_dropped_seen = dropped
        m.quarantined(q.quarantined())
        m.intake_depth(self._intake_depth())
        now = self._clock()
        for what, limit in self._log_limits.items():
            if n := limit.pending(now):
                log.warning("log lines suppressed", what=what, suppressed=n, per=f"{limit.interval:g}s")

    def _limited(self, key: str, now: float, level: str, event: str, **fields: Any) -> None:
        """One log line, unless ``key`` already wrote its share this minute (then counted; the next
        line written carries ``suppressed``, or a summary line reports them)."""
        limit = self._log_limits.get(key)
        if limit is None:
            limit = self._log_limits[key] = RateLimited(burst=self._log_burst, interval=self._log_interval)
        if not limit.allow(now):
            return
        if n := limit.take():
            fields["suppressed"] = n
        getattr(log, level)(event, **fields)

    def _journal_and_apply(
        self,
        kind: str,
        topic: str,
        payload: bytes,
        now: float,
        *,
        on_durable: Callable[[], None] | None = None,
        source: str = "core",
        out: dict[str, Any] | None = None,
    ) -> Decisions:
        self.store.append(kind, topic, payload, now, on_durable=on_durable)
        self._entries_since_snapshot += 1
        decisions = self._apply(kind, topic, payload, now, out)
        if decisions.records or decisions.dead_letters or decisions.faults or decisions.notices:
            self._record(decisions, now, replay=False, source=source)
        return decisions

    def _apply(
        self, kind: str, topic: str, payload: bytes, now: float, out: dict[str, Any] | None = None
    ) -> Decisions:
        """Apply one journal entry. A failure inside the core (a bug, never bad input: that is a
        dead letter already) is contained: logged, counted, the message dead-lettered, and the core
        goes on. Replaying the journal meets the same failure and contains it the same way."""
        try:
            return self._apply_unsafe(kind, topic, payload, now, out)
        except Exception as exc:
            self._limited(
                f"internal:{kind}",
                self._clock(),
                "exception",
                "core failed on a journal entry; skipped",
                kind=kind,
                topic=topic,
            )
            reason = f"internal error while applying it: {type(exc).__name__}: {exc}"
            err = InvalidMessage(topic or f"<{kind}>", [("", reason)])
            return Decisions(dead_letters=[dead_letter_record(err.topic, payload, err, now=now)])

    def _apply_unsafe(
        self, kind: str, topic: str, payload: bytes, now: float, out: dict[str, Any] | None = None
    ) -> Decisions:
        p = self.pipeline
        if kind in ("msg", "msg-held"):  # msg-held: applied while catching up, timers left due
            return p.feed(topic, payload, now, flush=kind == "msg")
        if kind == "tick":
            return p.tick(now)
        if kind == "ack":
            args = orjson.loads(payload)
            rec = p.acknowledge(args["incident_id"], args["by"], args.get("note"), now)
            if rec is not None and rec.event == "current":  # idempotent: no new version
                self._acked = rec
                return Decisions()
            return Decisions(records=[rec] if rec else [])
        if kind == "silence":  # a maintenance window added, changed or expired at run time
            result = p.silence(orjson.loads(payload), now)
            if out is not None:
                out["result"] = result
            return Decisions()
        return Decisions()  # "reload": the configuration in force is the one loaded at start

    def _record(self, decisions: Decisions, now: float, *, replay: bool, source: str = "core") -> None:
        for rec in decisions.records:
            receivers = self.notifier.receivers_for(rec)
            if self._publish_records:
                receivers.append(MQTT_RECEIVER)
            self.store.record(rec, receivers, now)
            if not replay:
                with bound(incident_id=rec.incident_id, ne_id=rec.root_cause.ne_id):
                    log_transition(rec.to_wire())
                self.metrics.transition(rec.event)
        if replay:
            return
        for dl in decisions.dead_letters:
            # Kept in the store with the journal entry that caused it (the same commit), served at
            # GET /dead-letters, and published on the dead-letter topic from there (_mqtt_outbox).
            self.metrics.dead_letter()
            self.store.dead_letter(dl, source, now, publish=self.publisher is not None)
            self._log_rejected(dl, source, now)
        for fault in decisions.faults:
            self.metrics.part_failure(fault.part)
            self._limited(
                f"fault:{fault.part}", now, "error", "core part failed; quarantined", **fault.to_wire()
            )
        for notice in decisions.notices:
            kind = notice.kind
            self.metrics.notice(kind)
            level = "info" if kind == "clear_unknown" else "warning"
            self._limited(f"notice:{kind}", now, level, NOTICE_EVENTS[kind], **notice.to_wire())

    def _log_rejected(self, dl: DeadLetter, source: str, now: float) -> None:
        """A warning per rejected input, at most ``burst`` per interval; the rest are counted and the
        count reported by the next line (or alone, see ``_refresh_metrics``)."""
        if not self._rejections.allow(now):
            return
        where, reason = dl.errors[0] if dl.errors else (None, None)
        extra = {"suppressed": n} if (n := self._rejections.take()) else {}
        log.warning(
            "input rejected",
            source=source,
            topic=dl.topic,
            field=where or None,
            reason=reason,
            errors=len(dl.errors),
            payload=dl.payload[:200],
            **extra,
        )

    def _commit(self) -> None:
        started = time.perf_counter()
        self.store.commit()  # runs the on_durable callbacks: MQTT acks among them
        if self.source is not None:
            self.source.flush_acks()  # their PUBACKs leave now, in one write
        self.metrics.journal_commit(time.perf_counter() - started)

    def _maybe_snapshot(self, now: float) -> None:
        s = self.settings.store
        if (
            now - self._last_snapshot >= s.snapshot_interval
            or self._entries_since_snapshot >= s.snapshot_every
        ):
            self._snapshot(now)

    def _snapshot(self, now: float) -> None:
        self.store.save_snapshot(
            self.pipeline.snapshot(), self.store.last_seq(), now, keep=self.settings.store.keep_journal
        )
        self._last_snapshot = now
        self._entries_since_snapshot = 0

    # -- reload --------------------------------------------------------------------------------
    def _build_pipeline(self) -> Pipeline:
        s = self.settings
        assert s.topology is not None
        topology = load_topology(s.topology)
        rulesets = load_rulesets(list(s.rulesets) or None)
        routes = Routes(alarms=s.mqtt.alarm_topics, samples=s.mqtt.probe_topics)
        pipeline = Pipeline(topology, rulesets, s.core, routes=routes, max_bytes=s.mqtt.max_payload)
        # A name the topology lacks makes a rule useless for it, not the configuration wrong: the
        # inventory may change before or after the rules, so it is a warning, never a refusal.
        for ref in unknown_references(rulesets, topology):
            log.warning(
                f"ruleset names an unknown {ref.kind}",
                file=ref.source,
                line=ref.line,
                rule=ref.rule,
                field=ref.field,
                value=ref.value,
            )
        return pipeline

    def _explain_as_resolved(self, pipeline: Pipeline) -> PostMortems:
        """Each incident of ``pipeline`` is explained as it resolves, and the explanation kept in the
        store (bounded: ``store.keep_explanations``, ``max_explanations``) for post-mortems."""
        post_mortems = PostMortems(
            pipeline.query,
            self.store.keep_explanation,
            lambda incident_id, exc: log.error(
                "could not explain a resolved incident", incident_id=incident_id, exc_info=exc
            ),
        )
        pipeline.on_resolved(post_mortems)
        return post_mortems

    def _reload(self, now: float) -> tuple[bool, str]:
        """Rulesets and topology from their files again, keeping every alarm and incident."""
        ok, message = self._reload_files(now)
        if ok and gc.get_freeze_count():  # `engine run` froze the heap: the old pipeline's cycles
            gc.unfreeze()  # are collected now, and the new topology is frozen in its turn
            freeze_heap()
        self.last_reload = {"time": now, "ok": ok, "message": message}
        return ok, message

    def _reload_files(self, now: float) -> tuple[bool, str]:
        try:
            fresh = self._build_pipeline()
        except (EngineError, OSError) as exc:
            self.metrics.reload("error")
            log.warning("reload refused; the running configuration stays", error=str(exc))
            return False, str(exc)
        self._commit()
        dropped = fresh.restore(self.pipeline.snapshot())
        fresh.retry_quarantined()  # a reload tries every quarantined part again
        old, self.pipeline = self.pipeline, fresh
        self._post_mortems.close()
        self._post_mortems = self._explain_as_resolved(fresh)
        old.close()
        self.store.append("reload", "", b"", now)
        self._commit()
        self._snapshot(now)  # the journal before this point belongs to the old configuration
        self.metrics.reload("ok")
        log.info("reloaded rulesets and topology", **dropped)
        q = fresh.query
        return True, f"reloaded ({len(q.rules())} rules, {len(q.topology.elements)} elements)"

    # -- MQTT incident topic -------------------------------------------------------------------
    async def _mqtt_outbox(self) -> None:
        """Publish the ``mqtt`` receiver's outbox rows and the kept dead letters, woken by the commits
        that enqueued some (``store.changed``). With records off (``incident_topic: null``) only dead
        letters are published, so it waits for the commits that kept one (``store.dead_lettered``),
        not for every commit of a webhook's rows. Either way it looks again every ``OUTBOX_POLL``
        without being woken, and a failed publish is tried again after a pause (the broker away: the
        publisher reconnects meanwhile), so nothing kept waits for a later commit."""
        assert self.publisher is not None
        topic = self.settings.mqtt.incident_topic
        wake = self.store.changed if topic is not None else self.store.dead_lettered
        while not self._stopping.is_set():
            rows = self.store.due(MQTT_RECEIVER, self._clock(), limit=200) if topic is not None else []
            dead = self.store.unpublished_dead_letters(limit=200)
            if not rows and not dead:
                wake.clear()  # no await since the query: a commit after it sets it again
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=self._outbox_poll)
                continue
            if dead and not await self._publish_dead_letters(dead):
                continue
            for row in rows:
                started = time.perf_counter()
                try:
                    await self.publisher.publish(
                        f"{topic}/{row.incident_id}", orjson.dumps(row.record), qos=1
                    )
                except Exception as exc:
                    self.store.retry(row.id, self._clock() + 1.0, str(exc))
                    self._delivery_result(MQTT_RECEIVER, "retry", time.perf_counter() - started)
                    self._publish_failed("incident record", exc)
                    await asyncio.sleep(0.5)
                    break
                self.store.delivered(row.id, self._clock())
                self._delivery_result(MQTT_RECEIVER, "delivered", time.perf_counter() - started)

    async def _publish_dead_letters(self, dead: list[tuple[int, bytes]]) -> bool:
        """Publish kept dead letters (QoS 1), each marked once the broker acknowledged it; False
        after a failure (they stay and are tried again, after a pause)."""
        assert self.publisher is not None
        topic = self.settings.mqtt.dead_letter_topic
        for dead_id, record in dead:
            try:
                await self.publisher.publish(topic, record, qos=1)
            except Exception as exc:
                self._publish_failed("dead letter", exc)
                await asyncio.sleep(0.5)
                return False
            self.store.dead_letter_published(dead_id)
        return True

    def _publish_failed(self, what: str, exc: Exception) -> None:
        """A publish of the MQTT outbox failed; it is tried again after a pause. The broker away is
        the usual reason, and the publisher's reconnects say so. Any other (a topic the client or
        the broker refuses) would repeat on every retry in silence: an error, logged once per
        distinct reason (not per retry), with what is waiting and the metric that counts it."""
        if isinstance(exc, PublishError) and exc.broker_down:
            return
        # (a PublishError's reason, not its text: that names the topic, one per incident record)
        reason = exc.reason if isinstance(exc, PublishError) else str(exc) or type(exc).__name__
        if reason in self._publish_errors_logged:
            return
        if len(self._publish_errors_logged) >= 100:  # (bounded: a reason naming each incident id)
            self._publish_errors_logged.clear()
        self._publish_errors_logged.add(reason)
        log.error(
            "mqtt publish keeps failing, retrying; nothing of this kind is published until it is fixed",
            what=what,
            error=reason,
            error_type=type(exc).__name__,
            topic=exc.topic if isinstance(exc, PublishError) else None,
            waiting="soc_dead_letters_unpublished"
            if what == "dead letter"
            else 'soc_outbox_depth{receiver="mqtt"}',
        )

    def _delivery_result(self, receiver: str, result: str, seconds: float) -> None:
        self.metrics.delivery(receiver, result, seconds)

    # -- CoreView (the HTTP adapter's window on the core) --------------------------------------
    @property
    def ready(self) -> bool:
        return all(self.readiness().values())

    def readiness(self) -> dict[str, bool]:
        out = {"rules": self._ready, "store": self._ready}
        if self.source is not None:
            out["mqtt"] = self.source.subscribed.is_set()
        return out

    def degraded(self) -> list[dict[str, Any]]:
        """The parts of the core quarantined now (``engine.core.containment``): the daemon serves, but
        these parts are not doing their work."""
        return [fault.to_wire() for fault in self.pipeline.query.faults()]

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        return self.store.incident(incident_id)

    def incident_history(self, incident_id: str) -> list[dict[str, Any]]:
        """A summary of each version of the incident, oldest first (the dashboard's timeline)."""
        return self.store.incident_history(incident_id)

    def incidents(
        self, *, state: str | None, priority: int | None, since: float | None, open_only: bool, limit: int
    ) -> list[dict[str, Any]]:
        return self.store.incidents(
            state=state, priority=priority, since=since, open_only=open_only, limit=limit
        )

    def resolved_explanation(self, incident_id: str) -> dict[str, Any] | None:
        """The explanation of a resolved incident, as it resolved (None: unknown or purged)."""
        return self.store.explanation(incident_id)

    def dead_letters(
        self,
        *,
        reason: str | None,
        source: str | None,
        topic: str | None,
        since: float | None,
        before: int | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        return self.store.dead_letters(
            reason=reason, source=source, topic=topic, since=since, before=before, limit=limit
        )

    @property
    def query(self) -> CoreQuery:
        """The core's read-only query interface, of the pipeline in force (a reload replaces it)."""
        return self.pipeline.query

    def operations(self) -> dict[str, Any]:
        """The engine's own state for operators (the dashboard's Operations page): readiness, intake,
        message counts, recent dead letters, receivers (outbox and circuit), rules and their
        decisions in force, the last reload. Read between two items of the core task."""
        q = self.pipeline.query
        in_force: Counter[str] = Counter()
        active = 0
        for a in q.active_alarms():
            active += 1
            sup = q.suppression(a.key)
            if sup is not None:
                in_force[sup.rule] += 1
        stats = self.store.outbox_stats()
        trouble = self.store.outbox_trouble()
        breakers = self.notifier.breaker_state()
        receivers: list[dict[str, Any]] = [
            {
                "name": r.name,
                "url": _without_userinfo(str(r.url)),
                "outbox": stats.get(r.name, {"pending": 0, "delivered": 0, "dead": 0}),
                "circuit": breakers.get(r.name, "closed"),
                "trouble": trouble.get(r.name),
            }
            for r in self.settings.receivers
        ]
        if self._publish_records:
            receivers.append(
                {
                    "name": MQTT_RECEIVER,
                    "url": f"{self.settings.mqtt.url} {self.settings.mqtt.incident_topic}/<id>",
                    "outbox": stats.get(MQTT_RECEIVER, {"pending": 0, "delivered": 0, "dead": 0}),
                    "circuit": None,
                    "trouble": trouble.get(MQTT_RECEIVER),
                }
            )
        firings = q.firings()
        by_rule = firings.by_rule
        rules = [
            {
                "name": cr.qualified,
                "firings": by_rule.get(cr.qualified, 0),
                "ruleset": cr.ruleset,
                "form": cr.form,
                "source": cr.source,
                "in_force": in_force.get(cr.qualified, 0),
            }
            for cr in q.rules()
        ]
        core = q.stats()
        return {
            "readiness": self.readiness(),
            "started_at": self._started_at,
            "intake": {"depth": self._intake_depth(), "capacity": self.intake.maxsize},
            "messages": dict(core.messages),
            "invalid_reasons": core.top_invalid_reasons(20),
            "samples": core.samples,
            "active_alarms": active,
            "dead_letters": self.store.dead_letters(limit=RECENT_DEAD_LETTERS),
            "receivers": receivers,
            "rules": rules,
            "rule_firings": firings.total,
            "last_reload": self.last_reload,
            "recovered": dict(self.recovered),
        }

    async def ingest(self, topic: str, payload: bytes, *, source: str) -> None:
        cmd = Command("msg", topic, payload, self._clock())
        await self._submit(cmd)

    async def acknowledge(self, incident_id: str, *, by: str, note: str | None) -> dict[str, Any] | None:
        payload = orjson.dumps({"incident_id": incident_id, "by": by, "note": note})
        cmd = Command("ack", "", payload, self._clock())
        result: dict[str, Any] | None = await self._submit(cmd)
        return result

    async def reload(self) -> tuple[bool, str]:
        result: tuple[bool, str] = await self._submit(Command("reload", received=self._clock()))
        return result

    async def silence(self, command: dict[str, Any]) -> dict[str, Any]:
        """A silence command (``Pipeline.silence``) through the intake, journaled; its result once durable."""
        cmd = Command("silence", "", orjson.dumps(command), self._clock())
        result: dict[str, Any] = await self._submit(cmd)
        return result

    def receiver_names(self) -> list[str]:
        return list(self._receivers)

    def alarm_topic(self) -> str:
        return _concrete(self.settings.mqtt.alarm_topics[0], "http")

    def probe_topic(self) -> str:
        return _concrete(self.settings.mqtt.probe_topics[0], "http")

    async def _submit(self, cmd: Command) -> Any:
        try:
            self.intake.put_nowait(cmd)
        except asyncio.QueueFull:
            self.metrics.intake_drop("http")
            raise Overloaded("the intake queue is full") from None
        self._wake.set()
        return await cmd.done


def _without_userinfo(url: str) -> str:
    """A URL to show: credentials in it (``https://user:pass@host``) masked."""
    return re.sub(r"://[^/@]*@", "://***@", url)


def _resolver(fut: asyncio.Future[Any], value: Any) -> Callable[[], None]:
    def done() -> None:
        if not fut.done():
            fut.set_result(value)

    return done


def _concrete(topic_filter: str, word: str) -> str:
    """A topic that the filter matches: wildcards replaced by ``word``."""
    return "/".join(word if level in ("+", "#") else level for level in topic_filter.split("/"))


async def run(settings: EngineSettings) -> int:
    """`engine run`: until SIGTERM/SIGINT (graceful; a second signal forces exit) or SIGHUP (reload)."""
    loop = asyncio.get_running_loop()
    async with Daemon(settings) as daemon:
        # started: topology, rules and recovered state loaded, frozen; full collections ours
        daemon.heap = heap = FullCollections(settings.gc_full_interval)
        first_signal: float | None = None

        def on_stop() -> None:
            nonlocal first_signal
            now = time.monotonic()
            if first_signal is not None:
                if now - first_signal < 1.0:
                    return  # the same request delivered twice (process group, supervisor and shell)
                log.warning("second signal: exiting now, without draining")
                os._exit(130)
            first_signal = now
            log.info("stopping: draining intake and flushing the outbox")
            daemon.stop()

        def on_hup() -> None:
            task = asyncio.ensure_future(daemon.reload())
            task.add_done_callback(lambda t: t.exception())

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_stop)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        try:
            heap.start()
            await daemon.wait()
        finally:
            heap.stop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
    return 0
