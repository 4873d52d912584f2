"""Webhook delivery: the outbox drained to each receiver, at least once, in order per incident.

Theory of operation
-------------------
One worker task per receiver. It sleeps until the store commits new outbox rows (``store.changed``,
fanned out to every worker by one ``notifier:wake`` task), a delivery finishes, or its next row is
due. Then it takes ``store.due(...)``: only the lowest pending version of each incident, so an
incident's records go out strictly in version order, while up to ``receiver.concurrency``
different incidents are in flight at once.

One POST per row, with ``Idempotency-Key: <incident_id>:<version>`` (receivers deduplicate on it:
a crash between the POST and the commit of ``delivered`` sends it again), and an HMAC signature
when the receiver has a ``secret``. The answer decides the row's fate:

=================================================  ================================================
answer                                             row
=================================================  ================================================
2xx                                                delivered
408, 425, 429, 5xx, connection error, timeout      retry: exponential backoff with jitter
                                                   (``Retry-After`` on 429/503 is a lower bound)
other status (4xx: the receiver refuses it)        dead; a ``resolved`` is retried instead
retryable failure of a row older than dead_after   dead; a ``resolved`` retries at the max backoff
=================================================  ================================================

A dead row stops blocking its incident: the next version proceeds. Per receiver a circuit breaker
counts consecutive retryable failures; at ``breaker.failures`` it opens for ``breaker.cooldown``
(nothing is sent), then half-opens: one trial request; success closes it, failure opens it again.
Rows keep their state while the breaker is open; they are not counted as attempts.

Row updates go to the store's current batch and are committed by its periodic commit. A crash
before that commit only means the row is sent again: at least once, deduplicated by the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Literal

import aiohttp
import structlog

from engine import __version__
from engine.adapters.formats import render, sign
from engine.adapters.store import OutboxRow, Store, StoredRecord
from engine.service.config import Backoff, ReceiverSettings

USER_AGENT = f"soc-engine/{__version__}"
RETRYABLE_STATUS = frozenset({408, 425, 429})  # and every 5xx
RETRY_AFTER_STATUS = frozenset({429, 503})
RETRY_AFTER_CAP = 3600.0  # a Retry-After beyond an hour is read as an hour
WORKER_ERROR_PAUSE = 1.0  # a worker that hit an unexpected error (a bug, a broken file) waits this long

Result = Literal["delivered", "retry", "dead", "breaker_open"]
BreakerState = Literal["closed", "open", "half_open"]

log = structlog.get_logger("engine.notifier")


@dataclass
class _Breaker:
    threshold: int
    cooldown: float
    state: BreakerState = "closed"
    failures: int = 0  # consecutive retryable failures
    until: float = 0.0  # while open: when the half-open trial may start


@dataclass
class _Worker:
    settings: ReceiverSettings
    breaker: _Breaker
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    inflight: dict[str, OutboxRow] = field(default_factory=dict)  # incident id → row being sent


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: Literal["delivered", "retry", "dead"]
    error: str | None = None
    retry_after: float | None = None
    health: Literal["up", "down", "unknown"] = "up"  # what it says about the receiver (breaker)


class Notifier:
    def __init__(
        self,
        store: Store,
        receivers: Sequence[ReceiverSettings],
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        on_result: Callable[[str, str, float], None] | None = None,
    ) -> None:
        names = [r.name for r in receivers]
        if len(set(names)) != len(names):
            raise ValueError(f"receiver names must be unique, got {names}")
        self._store = store
        self._receivers = tuple(receivers)
        self._session = session
        self._own_session = session is None
        self._clock = clock
        self._on_result = on_result
        self._rng = random.Random()
        self._workers = {
            r.name: _Worker(r, _Breaker(r.breaker.failures, r.breaker.cooldown)) for r in self._receivers
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._progress = asyncio.Event()  # set whenever a delivery attempt finishes

    # -- routing -------------------------------------------------------------------------------
    def receivers_for(
        self, record: StoredRecord, *, has: Callable[[str, str], bool] | None = None
    ) -> list[str]:
        """The configured receivers that get this record.

        A receiver gets it when the event is in its ``events`` and the priority in its
        ``priorities`` — or, for an incident it already has, whatever the priority is now (an
        incident that drops from P1 to P3 keeps being followed). A ``resolved`` for an incident the
        receiver has always goes, whatever the filters: a resolution is never dropped.

        ``has(receiver, incident_id)`` says whether a receiver already has an incident; by default
        the store's outbox (the cluster's deliverer passes what the INCIDENTS stream says, so a new
        deliverer follows what its predecessor did).
        """
        iid = record.incident_id
        event = record.event
        priority = record.priority
        has_incident = has or self._store.has_incident
        out: list[str] = []
        for r in self._receivers:
            if event in r.events and priority in r.priorities:  # wanted
                out.append(r.name)
            elif (event in r.events or event == "resolved") and has_incident(r.name, iid):  # follows
                out.append(r.name)  # (asked only when not wanted: a look-up in the store each)
        return out

    def breaker_state(self) -> dict[str, str]:
        """closed | open | half_open per receiver (open turns half_open once its cooldown is over)."""
        now = self._clock()
        out: dict[str, str] = {}
        for name, w in self._workers.items():
            b = w.breaker
            out[name] = "half_open" if b.state == "open" and now >= b.until else b.state
        return out

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Notifier:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        self._tasks.append(asyncio.create_task(self._pump(), name="notifier:wake"))
        for r in self._receivers:
            self._tasks.append(
                asyncio.create_task(self._run(self._workers[r.name]), name=f"notifier:{r.name}")
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def flush(self, timeout: float) -> bool:
        """Deliver what can be delivered within ``timeout`` seconds (graceful shutdown).

        True once no configured receiver has a pending row. False at the timeout, or as soon as
        nothing is in flight and no pending row can be attempted before the deadline (rows in a long
        backoff, an open breaker): waiting longer would not help. Row updates are committed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for w in self._workers.values():
            w.wake.set()
        try:
            while True:
                depth = self._store.outbox_depth()
                if not any(depth.get(name) for name in self._workers):
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                if not any(w.inflight for w in self._workers.values()):
                    soonest = self._soonest_attempt()
                    if soonest is None or soonest - self._clock() > remaining:
                        return False
                self._progress.clear()
                await _wait(self._progress, min(remaining, 0.05))
        finally:
            self._store.commit()

    def _soonest_attempt(self) -> float | None:
        times: list[float] = []
        for name, w in self._workers.items():
            t = self._store.next_due_time(name)
            if t is None:
                continue
            if w.breaker.state == "open":
                t = max(t, w.breaker.until)
            times.append(t)
        return min(times) if times else None

    # -- workers -------------------------------------------------------------------------------
    async def _pump(self) -> None:
        """Fan ``store.changed`` out to every worker."""
        while True:
            await self._store.changed.wait()
            self._store.changed.clear()
            for w in self._workers.values():
                w.wake.set()

    async def _run(self, w: _Worker) -> None:
        name = w.settings.name
        async with asyncio.TaskGroup() as deliveries:
            while True:
                w.wake.clear()
                try:
                    delay = self._dispatch(w, deliveries)
                except Exception:
                    log.exception("delivery worker error", receiver=name)
                    delay = WORKER_ERROR_PAUSE
                if delay is None:
                    await w.wake.wait()
                elif delay > 0:
                    await _wait(w.wake, delay)
                else:
                    await asyncio.sleep(0)

    def _dispatch(self, w: _Worker, deliveries: asyncio.TaskGroup) -> float | None:
        """Start what may start now; return how long to sleep (None: until woken)."""
        rs = w.settings
        b = w.breaker
        now = self._clock()
        if b.state == "open":
            if now < b.until:
                return b.until - now
            b.state = "half_open"
            log.info("circuit half-open: one trial request", receiver=rs.name)
        limit = (0 if w.inflight else 1) if b.state == "half_open" else rs.concurrency - len(w.inflight)
        if limit > 0:
            for row in self._store.due(rs.name, now, limit, exclude=tuple(w.inflight)):
                w.inflight[row.incident_id] = row
                deliveries.create_task(
                    self._deliver(w, row), name=f"notifier:{rs.name}:{row.incident_id}:{row.version}"
                )
        if len(w.inflight) >= (1 if b.state == "half_open" else rs.concurrency):
            return None  # a finishing delivery wakes us
        t = self._store.next_due_time(rs.name, exclude=tuple(w.inflight))
        return None if t is None else max(0.0, t - now)

    async def _deliver(self, w: _Worker, row: OutboxRow) -> None:
        rs = w.settings
        bound = log.bind(receiver=rs.name, incident_id=row.incident_id, version=row.version, event=row.event)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            outcome = await self._attempt(rs, row, bound)
            latency = loop.time() - started
            self._settle(w, row, outcome, latency, bound)
        except Exception:  # a bug: never let it take the worker down; the row is retried
            bound.exception("delivery failed unexpectedly")
            with contextlib.suppress(Exception):
                self._store.retry(
                    row.id, self._clock() + self._backoff(rs.retry, row.attempts), "internal error"
                )
        finally:
            w.inflight.pop(row.incident_id, None)
            w.wake.set()
            self._progress.set()

    async def _attempt(self, rs: ReceiverSettings, row: OutboxRow, bound: Any) -> _Outcome:
        try:
            body, content_type = render(rs.format, row.record, rs)
        except ValueError as exc:
            return _Outcome("dead", f"cannot render: {exc}", health="unknown")
        headers = self._headers(rs, row, body, content_type)
        session = self._session
        if session is None:
            raise RuntimeError("the notifier is not running: use `async with Notifier(...)`")
        try:
            async with session.post(
                rs.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=rs.timeout),
                allow_redirects=False,
            ) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                snippet = (await resp.read())[:300].decode("utf-8", "replace").strip()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return _Outcome("retry", f"{type(exc).__name__}: {exc}".rstrip(": "), health="down")
        if 200 <= status < 300:
            return _Outcome("delivered")
        error = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        if status in RETRYABLE_STATUS or 500 <= status < 600:
            wait = _retry_after(retry_after, self._clock()) if status in RETRY_AFTER_STATUS else None
            return _Outcome("retry", error, retry_after=wait, health="down")
        if row.event == "resolved":
            bound.warning("receiver refuses a resolved record: retrying it, never dropping it", status=status)
            return _Outcome("retry", error)
        return _Outcome("dead", error)

    def _headers(
        self, rs: ReceiverSettings, row: OutboxRow, body: bytes, content_type: str
    ) -> dict[str, str]:
        headers = {"Content-Type": content_type, "User-Agent": USER_AGENT}
        headers.update(rs.headers)
        headers["Idempotency-Key"] = f"{row.incident_id}:{row.version}"
        headers["X-SOC-Incident-Id"] = row.incident_id
        headers["X-SOC-Event"] = row.event
        if rs.secret:
            ts = int(self._clock())
            headers["X-SOC-Timestamp"] = str(ts)
            headers["X-SOC-Signature"] = sign(rs.secret, ts, body)
        return headers

    def _settle(self, w: _Worker, row: OutboxRow, outcome: _Outcome, latency: float, bound: Any) -> None:
        """Record the outcome on the row and the breaker; report it."""
        rs = w.settings
        now = self._clock()
        result: Result = outcome.result
        error = outcome.error or ""
        if result == "retry":
            age = now - row.created
            if row.event != "resolved" and age >= rs.dead_after:
                result = "dead"
                error = f"undelivered after {age:.0f} s (dead_after {rs.dead_after:.0f} s); last: {error}"
        if result == "delivered":
            self._store.delivered(row.id, now)
            bound.info("delivered", attempt=row.attempts + 1, latency=round(latency, 4))
        elif result == "dead":
            self._store.dead(row.id, error, now)
            bound.error("dead letter: never retried", attempt=row.attempts + 1, error=error)
        else:
            if row.event == "resolved" and now - row.created >= rs.dead_after:
                delay = self._jitter(rs.retry, rs.retry.max)
            else:
                delay = self._backoff(rs.retry, row.attempts)
            if outcome.retry_after is not None:
                delay = max(delay, outcome.retry_after)
            self._store.retry(row.id, now + delay, error)
            bound.warning(
                "delivery failed: will retry", attempt=row.attempts + 1, error=error, delay=round(delay, 3)
            )
        self._report(rs.name, result, latency)
        if outcome.health != "unknown":
            self._breaker_update(w, outcome.health == "down", now)

    def _breaker_update(self, w: _Worker, failure: bool, now: float) -> None:
        b = w.breaker
        name = w.settings.name
        if not failure:
            if b.state != "closed":
                log.info("circuit closed", receiver=name)
            b.state, b.failures = "closed", 0
            return
        b.failures += 1
        if b.state == "half_open" or (b.state == "closed" and b.failures >= b.threshold):
            b.state, b.until = "open", now + b.cooldown
            log.warning("circuit open", receiver=name, failures=b.failures, cooldown=b.cooldown)
            self._report(name, "breaker_open", 0.0)

    def _report(self, receiver: str, result: Result, latency: float) -> None:
        if self._on_result is not None:
            try:
                self._on_result(receiver, result, latency)
            except Exception:
                log.exception("on_result callback failed", receiver=receiver)

    def _backoff(self, b: Backoff, attempts: int) -> float:
        """The delay after ``attempts`` earlier attempts: initial × factor^attempts, capped, jittered."""
        base = b.max if attempts >= 64 else min(b.max, b.initial * b.factor**attempts)
        return self._jitter(b, base)

    def _jitter(self, b: Backoff, delay: float) -> float:
        return max(0.0, delay * (1.0 + self._rng.uniform(-b.jitter, b.jitter)))


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` at most ``timeout`` seconds. Not ``asyncio.wait_for``: on Python 3.11 it
    swallows a cancellation that arrives as the event is set, and the task would never stop."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


def _retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), capped; None when absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), RETRY_AFTER_CAP)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - now), RETRY_AFTER_CAP)
