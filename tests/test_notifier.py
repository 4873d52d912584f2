"""Webhook delivery against a real HTTP receiver (aiohttp on 127.0.0.1, a free port) and a real SQLite
store: order per incident, idempotency keys, retries, dead letters, the circuit breaker, routing
filters, signatures and the shutdown flush. Nothing is mocked; small backoffs keep it fast."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from aiohttp import web

from bench.scenarios import alarm, clear, fiber_cut, site_power_failure
from engine import __version__
from engine.adapters.formats import verify
from engine.adapters.notifier import Notifier
from engine.adapters.store import Store
from engine.core.incident_records import IncidentRecord, RecordEvent
from engine.service.config import Backoff, Breaker, ReceiverSettings
from tests.harness import run, settings

WAIT = 10.0  # upper bound when waiting for a condition, never a measurement
FAST = Backoff(initial=0.01, max=0.05, jitter=0.0)
NO_BREAKER = Breaker(failures=1000, cooldown=0.1)


# -- a real receiver -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hit:
    """One request as the receiver saw it."""

    key: str
    incident_id: str
    version: int
    event: str
    headers: dict[str, str]
    body: bytes
    status: int
    inflight: int  # requests in progress when this one arrived, itself included
    breaker: str | None  # the notifier's breaker state for this receiver when it arrived


Answer = int | tuple[int, dict[str, str]]


@dataclass
class Receiver:
    """An aiohttp server on 127.0.0.1 that records every request and answers as ``answer`` says
    (given the request's idempotency key, event and how many times that key came before)."""

    answer: Callable[[str, str, int], Answer] = lambda key, event, seen: 200
    port: int = 0
    delay: Callable[[], float] = lambda: 0.0
    observe: Callable[[], str | None] = lambda: None
    hits: list[Hit] = field(default_factory=list)
    _inflight: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        self._inflight += 1
        try:
            body = await request.read()
            arrived_inflight, breaker = self._inflight, self.observe()
            key = request.headers.get("Idempotency-Key", "")
            event = request.headers.get("X-SOC-Event", "")
            seen = sum(1 for h in self.hits if h.key == key)
            await asyncio.sleep(self.delay())
            answer = self.answer(key, event, seen)
            status, headers = answer if isinstance(answer, tuple) else (answer, {})
            iid, _, version = key.rpartition(":")
            self.hits.append(
                Hit(
                    key,
                    iid,
                    int(version or 0),
                    event,
                    dict(request.headers),
                    body,
                    status,
                    arrived_inflight,
                    breaker,
                )
            )
            return web.Response(status=status, headers=headers, text="refused" if status >= 400 else "ok")
        finally:
            self._inflight -= 1

    def accepted(self) -> list[Hit]:
        return [h for h in self.hits if 200 <= h.status < 300]

    def versions(self, incident_id: str) -> list[int]:
        """The versions of one incident accepted, in arrival order."""
        return [h.version for h in self.accepted() if h.incident_id == incident_id]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(tmp_path / "engine.sqlite", commit_interval=0.005) as s:
        yield s


def hook(name: str, url: str, **overrides: Any) -> ReceiverSettings:
    """Receiver settings with test-sized retry, breaker and timeout."""
    values: dict[str, Any] = {"retry": FAST, "breaker": NO_BREAKER, "timeout": 2.0, "concurrency": 4}
    values.update(overrides)
    return ReceiverSettings(name=name, url=url, **values)


async def wait_for(cond: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


def enqueue(
    store: Store, notifier: Notifier, records: Sequence[IncidentRecord], now: float | None = None
) -> None:
    """What the daemon's core does with each record: route it, store it, commit."""
    for rec in records:
        store.record(rec, notifier.receivers_for(rec), time.time() if now is None else now)
    store.commit()


def pending(store: Store) -> int:
    return sum(store.outbox_depth().values())


def real_records() -> list[IncidentRecord]:
    """Records from the core: fiber cut, site power failure, a redundancy loss (opened → updated), a
    re-raise during hold-down (opened → updated → resolved)."""
    core = settings(incidents={"hold_down": "2m", "settle": "5s"})
    runs = [
        run(fiber_cut()),
        run(site_power_failure()),
        run([alarm("agg-1", "lossOfSignal", 0, "critical"), alarm("agg-2", "lossOfSignal", 60, "critical")]),
        run(
            [
                alarm("olt-001", "linkDown", 0, "critical"),
                clear("olt-001", "linkDown", 40),
                alarm("olt-001", "linkDown", 100, "critical"),
                clear("olt-001", "linkDown", 200),
            ],
            core=core,
        ),
    ]
    return [rec for r in runs for rec in r.typed]


def versions_of(
    template: IncidentRecord, iid: str, events: Sequence[str], priority: int = 1
) -> list[IncidentRecord]:
    """One incident's records v1..vN built from a real record, only identity, version, event and
    priority changed."""
    return [
        replace(template, incident_id=iid, version=version, event=cast(RecordEvent, event), priority=priority)
        for version, event in enumerate(events, start=1)
    ]


TEMPLATE = run(fiber_cut()).typed[0]


# -- order and idempotency -------------------------------------------------------------------------
async def test_every_record_is_delivered_once_in_version_order_per_incident(
    store: Store, receiver: Receiver
) -> None:
    """Real records plus 20 incidents × 4 versions, receiver answering with random delays, 4 in
    flight: each idempotency key arrives exactly once, each incident's versions in order, never two
    requests of one incident at once and never more than `concurrency` in flight."""
    rng = random.Random(7)
    receiver.delay = lambda: rng.uniform(0.0, 0.004)
    records = real_records()
    for i in range(20):
        records += versions_of(
            TEMPLATE, f"inc-synthetic-{i:02d}", ["opened", "updated", "updated", "resolved"]
        )
    rng.shuffle(records)  # the core emits each incident in order; interleave incidents …
    records.sort(key=lambda r: r.version)  # … but keep every incident's versions ascending
    notifier = Notifier(store, [hook("soc", receiver.url)])
    enqueue(store, notifier, records)
    async with notifier:
        await wait_for(lambda: pending(store) == 0)
    keys = Counter(h.key for h in receiver.hits)
    assert set(keys) == {f"{r.incident_id}:{r.version}" for r in records}
    assert set(keys.values()) == {1}
    for iid in {r.incident_id for r in records}:
        expected = sorted(r.version for r in records if r.incident_id == iid)
        assert receiver.versions(iid) == expected, iid
    assert max(h.inflight for h in receiver.hits) <= 4
    assert store.outbox_stats() == {"soc": {"pending": 0, "delivered": len(records), "dead": 0}}


async def test_request_headers(store: Store, receiver: Receiver) -> None:
    """Every request names its incident, event and idempotency key, its content type and our agent;
    configured headers are added but cannot override the protocol headers."""
    notifier = Notifier(
        store,
        [hook("soc", receiver.url, headers={"Authorization": "Bearer t0ken", "Idempotency-Key": "mine"})],
    )
    rec = run(fiber_cut()).typed[0]
    enqueue(store, notifier, [rec])
    async with notifier:
        await wait_for(lambda: pending(store) == 0)
    (hit,) = receiver.hits
    assert hit.headers["Idempotency-Key"] == f"{rec.incident_id}:1"
    assert hit.headers["X-SOC-Incident-Id"] == rec.incident_id
    assert hit.headers["X-SOC-Event"] == "opened"
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["User-Agent"] == f"soc-engine/{__version__}"
    assert hit.headers["Authorization"] == "Bearer t0ken"
    assert "X-SOC-Signature" not in hit.headers  # no secret: unsigned
    assert orjson.loads(hit.body) == rec.to_wire()


@pytest.mark.parametrize("fmt", ["generic", "tmf656", "pagerduty", "alertmanager"])
async def test_signed_requests_verify_on_the_receiver_side(
    store: Store, receiver: Receiver, fmt: str
) -> None:
    """With a secret, each request carries X-SOC-Timestamp and X-SOC-Signature that verify() accepts
    for the exact body sent, in every format."""
    notifier = Notifier(store, [hook("soc", receiver.url, secret="s3cret", format=fmt, routing_key="R")])
    # opened, updated twice (the platinum SLA breaches: the first group's, the others' 5 s on), resolved
    records = run(fiber_cut()).typed
    enqueue(store, notifier, records)
    async with notifier:
        await wait_for(lambda: pending(store) == 0)
    assert [h.event for h in receiver.hits] == ["opened", "updated", "updated", "resolved"]
    for hit in receiver.hits:
        ts, sig = hit.headers["X-SOC-Timestamp"], hit.headers["X-SOC-Signature"]
        assert verify("s3cret", ts, hit.body, sig, now=time.time())
        assert not verify("other", ts, hit.body, sig, now=time.time())


# -- failures and retries --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "event", "outcome"),
    [
        (500, "opened", "retried"),
        (502, "updated", "retried"),
        (503, "opened", "retried"),
        (408, "opened", "retried"),
        (425, "opened", "retried"),
        (429, "opened", "retried"),
        (400, "opened", "dead"),
        (404, "updated", "dead"),
        (422, "opened", "dead"),
        (400, "resolved", "retried"),
        (410, "resolved", "retried"),
    ],
)
async def test_one_failure_then_success(
    store: Store, receiver: Receiver, status: int, event: str, outcome: str
) -> None:
    """The receiver fails once with `status`, then accepts: retryable statuses are sent again and
    delivered; other 4xx dead-letter opened/updated records but a resolved is retried, never dropped."""
    receiver.answer = lambda key, ev, seen: status if seen == 0 else 200
    results: list[str] = []
    notifier = Notifier(store, [hook("soc", receiver.url)], on_result=lambda r, res, s: results.append(res))
    (rec,) = versions_of(TEMPLATE, "inc-one", [event])
    rec = replace(rec, version=7)
    enqueue(store, notifier, [rec])
    async with notifier:
        await wait_for(lambda: pending(store) == 0)
    (row,) = store.outbox_rows("soc", "inc-one")
    if outcome == "retried":
        assert results == ["retry", "delivered"]
        assert [h.status for h in receiver.hits] == [status, 200]
        assert (row["state"], row["attempts"], row["last_error"]) == ("delivered", 2, None)
    else:
        assert results == ["dead"]
        assert [h.status for h in receiver.hits] == [status]
        assert (row["state"], row["attempts"]) == ("dead", 1)
        assert row["last_error"] == f"HTTP {status}: refused"


async def test_a_refused_version_is_dead_and_the_next_versions_still_go(
    store: Store, receiver: Receiver
) -> None:
    """400 for everything but the third try of the resolved: opened and updated are dead letters, the
    resolved is retried until accepted, in order after them."""
    receiver.answer = lambda key, event, seen: 200 if event == "resolved" and seen >= 2 else 400
    notifier = Notifier(store, [hook("soc", receiver.url)])
    enqueue(store, notifier, versions_of(TEMPLATE, "inc-x", ["opened", "updated", "resolved"]))
    async with notifier:
        await wait_for(lambda: pending(store) == 0)
    assert [(h.version, h.status) for h in receiver.hits] == [
        (1, 400),
        (2, 400),
        (3, 400),
        (3, 400),
        (3, 200),
    ]
    assert [r["state"] for r in store.outbox_rows("soc", "inc-x")] == ["dead", "dead", "delivered"]


async def test_receiver_down_then_up_gets_everything_in_order(store: Store) -> None:
    """Nobody listens at first (connection refused, retried with backoff); once the receiver starts
    on that port every record arrives, each incident in version order, each key accepted once."""
    with socket.socket() as s:  # a free port, then nobody listening on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    receiver = Receiver(port=port)
    results: list[str] = []
    notifier = Notifier(
        store,
        [hook("soc", receiver.url, breaker=Breaker(failures=3, cooldown=0.05))],
        on_result=lambda r, res, s: results.append(res),
    )
    records = versions_of(TEMPLATE, "inc-a", ["opened", "updated", "updated", "resolved"])
    records += versions_of(TEMPLATE, "inc-b", ["opened", "resolved"])
    enqueue(store, notifier, records)
    try:
        async with notifier:
            await wait_for(lambda: results.count("retry") >= 3)
            assert receiver.hits == []
            await receiver.start()
            await wait_for(lambda: pending(store) == 0)
    finally:
        await receiver.stop()
    assert receiver.versions("inc-a") == [1, 2, 3, 4]
    assert receiver.versions("inc-b") == [1, 2]
    assert set(Counter(h.key for h in receiver.accepted()).values()) == {1}


class FrozenClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


NOW = 1_767_225_600.0


@pytest.mark.parametrize(
    ("status", "retry_after", "delay"),
    [
        (429, "30", 30.0),
        (503, format_datetime(datetime.fromtimestamp(NOW + 120, tz=UTC), usegmt=True), 120.0),
        (503, "not a date", 0.01),
        (500, "30", 0.01),  # only 429 and 503 carry a meaningful Retry-After
    ],
)
async def test_retry_after_is_honoured_on_429_and_503(
    store: Store, receiver: Receiver, status: int, retry_after: str, delay: float
) -> None:
    """The next attempt is no earlier than Retry-After (seconds or an HTTP date) on 429/503; otherwise
    the backoff applies (0.01 s here). The clock is frozen, so the times are exact."""
    receiver.answer = lambda key, event, seen: (status, {"Retry-After": retry_after})
    results: list[str] = []
    notifier = Notifier(
        store,
        [hook("soc", receiver.url)],
        clock=FrozenClock(NOW),
        on_result=lambda r, res, s: results.append(res),
    )
    enqueue(store, notifier, versions_of(TEMPLATE, "inc-r", ["opened"]), now=NOW)
    async with notifier:
        await wait_for(lambda: results == ["retry"])
    (row,) = store.outbox_rows("soc", "inc-r")
    assert row["next_attempt"] == pytest.approx(NOW + delay)
    assert row["last_error"] == f"HTTP {status}: refused"


async def test_rows_past_dead_after_are_dead_but_resolved_keeps_retrying(
    store: Store, receiver: Receiver
) -> None:
    """A row undelivered for longer than dead_after is dead after its next failure; a resolved row
    that old keeps retrying (at the max backoff) and is delivered when the receiver recovers."""
    receiver.answer = lambda key, event, seen: 200 if event == "resolved" and seen >= 2 else 500
    notifier = Notifier(store, [hook("soc", receiver.url, dead_after=10.0)])
    old = time.time() - 1000
    enqueue(store, notifier, versions_of(TEMPLATE, "inc-old", ["opened"]), now=old)
    enqueue(store, notifier, versions_of(TEMPLATE, "inc-gone", ["resolved"]), now=old)
    async with notifier:
        await wait_for(lambda: pending(store) == 0)
    (opened,) = store.outbox_rows("soc", "inc-old")
    assert opened["state"] == "dead"
    assert opened["last_error"].startswith("undelivered after 1000 s (dead_after 10 s); last: HTTP 500")
    (resolved,) = store.outbox_rows("soc", "inc-gone")
    assert (resolved["state"], resolved["attempts"]) == ("delivered", 3)


async def test_a_record_that_cannot_be_rendered_is_dead_without_a_request(
    store: Store, receiver: Receiver
) -> None:
    """A record the format cannot render (kept by an older engine, say) is a dead letter at once
    (no request); its next version goes."""
    records = versions_of(TEMPLATE, "inc-bad", ["opened", "resolved"])
    notifier = Notifier(store, [hook("soc", receiver.url, format="tmf656")])
    enqueue(store, notifier, records)
    store.db.execute(  # tmf656 needs a list of lines: the core cannot make this record, a file can
        "UPDATE outbox SET record = json_set(record, '$.explanation', 5) WHERE version = 1"
    )
    store.commit()
    async with notifier:
        await wait_for(lambda: pending(store) == 0)
    assert [h.version for h in receiver.hits] == [2]
    (bad, good) = store.outbox_rows("soc", "inc-bad")
    assert (bad["state"], good["state"]) == ("dead", "delivered")
    assert bad["last_error"].startswith("cannot render")


# -- circuit breaker -------------------------------------------------------------------------------
async def test_the_breaker_opens_after_consecutive_failures_and_half_opens_with_one_trial(
    store: Store, receiver: Receiver
) -> None:
    """After `failures` consecutive failures the circuit opens (reported as breaker_open); after the
    cooldown exactly one trial request is in flight (half-open); a failed trial opens it again, a
    successful one closes it and the rest follows."""
    # 503 until a half-open trial has failed: the next trial succeeds.
    receiver.answer = lambda key, event, seen: (
        200 if any(h.breaker == "half_open" for h in receiver.hits) else 503
    )
    results: list[str] = []
    notifier = Notifier(
        store,
        [hook("soc", receiver.url, concurrency=3, breaker=Breaker(failures=3, cooldown=0.1))],
        on_result=lambda r, res, s: results.append(res),
    )
    receiver.observe = lambda: notifier.breaker_state()["soc"]
    records = [rec for i in range(3) for rec in versions_of(TEMPLATE, f"inc-{i}", ["opened", "resolved"])]
    enqueue(store, notifier, records)
    async with notifier:
        assert notifier.breaker_state() == {"soc": "closed"}
        await wait_for(lambda: "breaker_open" in results)
        await wait_for(lambda: pending(store) == 0)
        assert notifier.breaker_state() == {"soc": "closed"}
    trials = [h for h in receiver.hits if h.breaker == "half_open"]
    assert trials, "no request was sent half-open"
    assert all(h.inflight == 1 for h in trials)
    assert results.count("breaker_open") == 2  # after 3 failures, and after the failed first trial
    assert [h.status for h in trials] == [503, 200]
    assert len(receiver.accepted()) == 6


def test_breaker_state_starts_closed(tmp_path: Path) -> None:
    """Every configured receiver starts with a closed circuit."""
    notifier = Notifier(
        Store(tmp_path / "x.sqlite"), [hook("a", "http://127.0.0.1:9/"), hook("b", "http://h/")]
    )
    assert notifier.breaker_state() == {"a": "closed", "b": "closed"}


# -- routing ---------------------------------------------------------------------------------------
ROUTES = [
    hook("all", "http://127.0.0.1:9/a"),
    hook("p1", "http://127.0.0.1:9/b", priorities=(1,)),
    hook("opened", "http://127.0.0.1:9/c", events=("opened",)),
    hook("no-updates", "http://127.0.0.1:9/d", events=("opened", "resolved"), priorities=(1, 2)),
]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([("inc-a", 1, "opened", 1)], ["all", "p1", "opened", "no-updates"]),
        ([("inc-a", 1, "opened", 3)], ["all", "opened"]),
        ([("inc-a", 1, "opened", 2)], ["all", "opened", "no-updates"]),
        # p1 follows an incident it has, whatever its priority becomes
        ([("inc-a", 1, "opened", 1), ("inc-a", 2, "updated", 3)], ["all", "p1"]),
        # a resolved always reaches a receiver that has the incident, whatever its filters
        ([("inc-a", 1, "opened", 1), ("inc-a", 2, "resolved", 4)], ["all", "p1", "opened", "no-updates"]),
        # … and never one that does not have it unless its filters say so
        ([("inc-a", 1, "opened", 3), ("inc-a", 2, "resolved", 3)], ["all", "opened"]),
        ([("inc-a", 1, "opened", 3), ("inc-a", 2, "resolved", 1)], ["all", "p1", "opened", "no-updates"]),
        # an update reaching a priority filter first: it gets the incident from there on
        ([("inc-a", 1, "opened", 3), ("inc-a", 2, "updated", 1)], ["all", "p1"]),
    ],
)
async def test_receivers_for(
    tmp_path: Path, steps: list[tuple[str, int, str, int]], expected: list[str]
) -> None:
    """Which receivers get the last record of `steps`, the earlier ones stored as the core would."""
    async with Store(tmp_path / "engine.sqlite") as s:
        notifier = Notifier(s, ROUTES)
        recs = [
            versions_of(TEMPLATE, iid, [*["opened"] * (version - 1), event], prio)[-1]
            for iid, version, event, prio in steps
        ]
        for rec in recs[:-1]:
            s.record(rec, notifier.receivers_for(rec), NOW)
        assert notifier.receivers_for(recs[-1]) == expected


async def test_a_filtered_receiver_follows_its_incident_to_the_resolution(
    store: Store, receiver: Receiver
) -> None:
    """End to end: a P1-only receiver gets the P1 opened, the update that lowered it to P3 and the
    resolution, and nothing of an incident that was P3 throughout."""
    notifier = Notifier(store, [hook("p1", receiver.url, priorities=(1,))])
    followed = versions_of(TEMPLATE, "inc-followed", ["opened", "updated", "resolved"])
    followed[1:] = [replace(r, priority=3) for r in followed[1:]]
    ignored = versions_of(TEMPLATE, "inc-ignored", ["opened", "resolved"], priority=3)
    async with notifier:
        for rec in [followed[0], ignored[0], followed[1], ignored[1], followed[2]]:
            enqueue(store, notifier, [rec])
        await wait_for(lambda: pending(store) == 0)
    assert receiver.versions("inc-followed") == [1, 2, 3]
    assert receiver.versions("inc-ignored") == []


# -- shutdown --------------------------------------------------------------------------------------
async def test_flush_delivers_what_is_pending(store: Store, receiver: Receiver) -> None:
    """flush() returns True once everything is delivered, and the delivered marks are committed."""
    notifier = Notifier(store, [hook("soc", receiver.url)])
    records = real_records()
    enqueue(store, notifier, records)
    async with notifier:
        assert await notifier.flush(WAIT) is True
        assert len(receiver.accepted()) == len(records)
    assert not store.db.in_transaction


async def test_flush_gives_up_when_nothing_can_be_sent_before_the_deadline(store: Store) -> None:
    """With the receiver down and the next attempt a minute away, flush() returns False without
    waiting for its whole timeout (nothing in flight, nothing due before the deadline)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    results: list[str] = []
    slow = Backoff(initial=60.0, max=60.0, jitter=0.0)
    notifier = Notifier(
        store, [hook("soc", url, retry=slow)], on_result=lambda r, res, s: results.append(res)
    )
    enqueue(store, notifier, versions_of(TEMPLATE, "inc-z", ["opened"]))
    async with notifier:
        await wait_for(lambda: results == ["retry"])
        async with asyncio.timeout(WAIT / 2):  # an early answer, not after the WAIT it was given
            assert await notifier.flush(WAIT) is False
    assert pending(store) == 1
