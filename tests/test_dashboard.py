"""The dashboard without a browser: its view model, and its pages over a real aiohttp server.

``RecordCore`` is a small in-memory ``CoreView`` holding incident records as the store does (the
latest per incident, ``since`` on the record time); the records are those of the bundled fiber-cut
replay, so the pages see real shapes. The browser tests (``test_dashboard_browser.py``) drive the
same pages in Chromium against a real daemon.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from aiohttp import web

from bench.scenarios import T0, alarm, clear
from engine.adapters.dashboard import Dashboard, trends, views
from engine.adapters.dashboard import app as app_module
from engine.adapters.dashboard import index as index_module
from engine.adapters.dashboard.app import duration
from engine.adapters.dashboard.index import IncidentIndex
from engine.adapters.dashboard.security import CSP, LoginLimiter, Sessions
from engine.adapters.http import HttpApi
from engine.adapters.store import Store, WireRecord, known_history, version_summary
from engine.core.kqi import KqiCatalog, KqiWindows
from engine.core.pipeline import Pipeline
from engine.core.query import CoreQuery
from engine.model.timeutil import format_time, parse_time
from engine.model.topology import load_topology
from engine.rules.schema import load_rulesets
from engine.service.config import HttpSettings, load_core_settings
from engine.service.metrics import Metrics
from engine.tools.replay import Replayer, event_time
from tests.harness import run

ROOT = Path(__file__).resolve().parents[1]
DASH = ROOT / "engine" / "adapters" / "dashboard"
TOKEN = "dash-token-123"
WAIT = 10.0  # upper bound when waiting for something, never a measurement
EVIL = "<script>alert(1)</script>"


def fiber_cut_records() -> list[dict[str, Any]]:
    """The incident records of ``examples/fiber-cut.jsonl`` (two incidents, four records each)."""
    topology = load_topology(ROOT / "examples" / "topology.yaml")
    pipeline = Pipeline(topology, load_rulesets(None), load_core_settings(None))
    records: list[dict[str, Any]] = []
    try:
        Replayer(pipeline, emit=records.append).run(
            (ROOT / "examples" / "fiber-cut.jsonl").read_bytes().splitlines()
        )
    finally:
        pipeline.close()
    return records


class RecordCore:
    """Records in, as the store keeps them: the latest version per incident, newest first."""

    def __init__(self, records: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
        self.records: dict[str, dict[str, Any]] = {}
        self.acks: list[tuple[str, str, str | None]] = []
        for rec in records:
            self.put(rec)

    def put(self, rec: dict[str, Any]) -> None:
        old = self.records.get(rec["incident_id"])
        if old is None or rec["version"] > old["version"]:
            self.records[rec["incident_id"]] = rec

    @property
    def ready(self) -> bool:
        return True

    def readiness(self) -> dict[str, bool]:
        return {"rules": True}

    def degraded(self) -> list[dict[str, Any]]:
        return []  # no core here: nothing is quarantined

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        return self.records.get(incident_id)

    def incidents(
        self, *, state: str | None, priority: int | None, since: float | None, open_only: bool, limit: int
    ) -> list[dict[str, Any]]:
        found = [
            r
            for r in self.records.values()
            if (since is None or parse_time(r["time"]) >= since)
            and (not open_only or r["event"] != "resolved")
        ]
        found.sort(key=lambda r: parse_time(r["time"]), reverse=True)
        return found[:limit]

    @property
    def query(self) -> CoreQuery | None:
        return None  # no core state here: the alarm, element and quality pages answer 501

    async def ingest(self, topic: str, payload: bytes, *, source: str) -> None:
        return None

    async def acknowledge(self, incident_id: str, *, by: str, note: str | None) -> dict[str, Any] | None:
        rec = self.records.get(incident_id)
        if rec is None or rec["event"] == "resolved":
            return None
        self.acks.append((incident_id, by, note))
        new = dict(rec, version=rec["version"] + 1, event="updated")
        new["acknowledged"] = {"by": by, "at": new["time"], "note": note}
        self.put(new)
        return new

    async def reload(self) -> tuple[bool, str]:
        return True, "reloaded"

    def alarm_topic(self) -> str:
        return "soc/alarms/http"

    def probe_topic(self) -> str:
        return "soc/probes/http"


def open_records() -> list[dict[str, Any]]:
    """The latest open record of each fiber-cut incident (their ``resolved`` left out)."""
    latest: dict[str, dict[str, Any]] = {}
    for rec in fiber_cut_records():
        if rec["event"] != "resolved":
            latest[rec["incident_id"]] = rec
    return list(latest.values())


def synthetic(n: int, *, priority: int, region: str = "south", service: str = "internet") -> dict[str, Any]:
    """A small open record (for sorting, filters and pagination)."""
    return {
        "incident_id": f"inc-{n:04d}",
        "event": "opened",
        "version": 1,
        "time": format_time(1767225600 + n),
        "priority": priority,
        "score": 50.0 + (n % 7),
        "state": "degraded",
        "severity": "major",
        "root_cause": {"ne_id": f"olt-{n:03d}", "alarm_id": f"olt-{n:03d}:linkDown", "region": region},
        "impact": {"services": {service: 3}, "customers": {"total": 3, "by_tier": {"bronze": 3}}},
        "opened_at": format_time(1767225600 + n),
        "acknowledged": None,
        "suppressed": [],
        "alarms": [f"olt-{n:03d}:linkDown"],
    }


# ------------------------------------------------------------------------------------- view model


def test_row_of_a_real_record_reads_every_column() -> None:
    rec = next(r for r in open_records() if r["root_cause"]["ne_id"] == "agg-3")
    row = views.row_of(rec)
    assert (row.priority, row.state, row.root_ne, row.cause, row.region) == (
        1,
        "outage",
        "agg-3",
        "lossOfSignal",
        "south",
    )
    assert row.tiers == (("platinum", 20), ("gold", 80), ("silver", 300), ("bronze", 600))
    assert row.services == (("internet", 1000), ("voip", 250))
    assert row.suppressed == 50
    assert row.breach_at == parse_time(rec["time"]) + rec["sla"]["seconds_to_breach"]
    assert row.acked_by is None


def test_filters_parse_and_name_a_bad_value() -> None:
    f = views.Filters.parse({"priority": "2", "state": "outage", "region": "south", "ack": "no", "page": "3"})
    assert (f.priority, f.state, f.region, f.ack, f.page) == (2, "outage", "south", "no", 3)
    assert views.Filters.parse({"priority": "", "other": "x"}) == views.Filters()
    for query, name in [
        ({"priority": "P1"}, "priority"),
        ({"state": "down"}, "state"),
        ({"ack": "maybe"}, "ack"),
        ({"page": "0"}, "page"),
        ({"region": "x" * 300}, "region"),
    ]:
        with pytest.raises(views.FilterError, match=f"^{name}: "):
            views.Filters.parse(query)
    assert f.query(page=1) == "priority=2&state=outage&region=south&ack=no"
    assert views.Filters(region="a b&c").query() == "region=a+b%26c"


def test_select_sorts_by_priority_score_age_and_paginates() -> None:
    rows = [views.row_of(synthetic(n, priority=1 + n % 5)) for n in range(120)]
    page = views.select(rows, views.Filters(), size=50)
    assert (page.total, page.pages, page.first, page.last) == (120, 3, 1, 50)
    keys = [(r.priority, -r.score, r.opened_at) for r in page.rows]
    assert keys == sorted(keys)
    last = views.select(rows, views.Filters(page=9), size=50)  # past the end: the last page
    assert (last.page, last.first, last.last, len(last.rows)) == (3, 101, 120, 20)
    p2 = views.select(rows, views.Filters(priority=2), size=50)
    assert p2.total == 24
    assert {r.priority for r in p2.rows} == {2}
    empty = views.select([], views.Filters(), size=50)
    assert (empty.total, empty.pages, empty.first, empty.last) == (0, 1, 0, 0)


def test_priority_counts_follow_the_other_filters() -> None:
    rows = [
        views.row_of(synthetic(n, priority=1 + n % 2, region="north" if n < 4 else "south"))
        for n in range(10)
    ]
    assert views.priority_counts(rows, views.Filters(priority=1)) == {1: 5, 2: 5, 3: 0, 4: 0, 5: 0}
    assert views.priority_counts(rows, views.Filters(region="north")) == {1: 2, 2: 2, 3: 0, 4: 0, 5: 0}
    acked = views.row_of(dict(synthetic(99, priority=3), acknowledged={"by": "ann", "at": format_time(1e9)}))
    assert views.Filters(ack="yes").matches(acked)
    assert not views.Filters(ack="no").matches(acked)
    assert views.Filters(service="voip").matches(acked) is False


def test_suppression_tree_nests_by_root_and_survives_loops() -> None:
    rec = {
        "root_cause": {"alarm_id": "R", "ne_id": "agg"},
        "alarms": ["R", "A", "B", "C", "X", "Y", "Z"],
        "suppressed": [
            {"alarm_id": "A", "root": "R", "rule": "r1", "reason": "below R"},
            {"alarm_id": "B", "root": "A", "rule": "r2", "reason": "below A"},
            {"alarm_id": "C", "root": "gone", "rule": "r1"},  # a root not in the record
            {"alarm_id": "Y", "root": "Z"},  # Y -> Z -> Y: a loop
            {"alarm_id": "Z", "root": "Y"},
        ],
    }
    root, others, left_out = views.suppression_tree(rec)
    assert root.alarm_id == "R"
    assert [c.alarm_id for c in root.children] == ["A", "C", "Y"]  # the loop is cut at Y
    assert [c.alarm_id for c in root.children[0].children] == ["B"]
    assert [c.alarm_id for c in root.children[2].children] == ["Z"]
    assert others == ["X"]
    assert left_out == 0


async def test_incident_index_follows_changes_incrementally() -> None:
    """A full read first, then each incremental read applies only what changed."""
    core = RecordCore([synthetic(1, priority=2), synthetic(2, priority=3)])
    index = IncidentIndex(core)
    assert not index.refresh(), "nothing before the first full read"
    assert await index.full_read()
    assert index.revision == 1
    assert set(index.rows) == {"inc-0001", "inc-0002"}
    assert not index.refresh()
    assert index.revision == 1
    core.put(dict(synthetic(1, priority=1), version=2, event="updated", time=format_time(1767229999)))
    assert index.refresh()
    assert index.changed == ["inc-0001"]
    assert index.rows["inc-0001"].priority == 1
    core.put(dict(synthetic(2, priority=3), version=2, event="resolved", time=format_time(1767230000)))
    assert index.refresh()
    assert set(index.rows) == {"inc-0001"}


class StoreCore(RecordCore):
    """``RecordCore`` over a real store file, as the daemon reads it (``store`` is what tells the
    index to read in a thread)."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def put(self, rec: dict[str, Any]) -> None:
        self.store.record(WireRecord(rec), [], parse_time(rec["time"]))

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        return self.store.incident(incident_id)

    def incident_history(self, incident_id: str) -> list[dict[str, Any]]:
        return self.store.incident_history(incident_id)

    def incidents(
        self, *, state: str | None, priority: int | None, since: float | None, open_only: bool, limit: int
    ) -> list[dict[str, Any]]:
        return self.store.incidents(
            state=state, priority=priority, since=since, open_only=open_only, limit=limit
        )


def hold_read_store(
    monkeypatch: pytest.MonkeyPatch, *, after: bool
) -> tuple[threading.Event, threading.Event, list[int]]:
    """Make the index's full read wait for ``gate`` in its thread, before reading the store or
    (``after``) once it has read it. Returns (gate, entered, the ids of the threads it ran in)."""
    gate, entered = threading.Event(), threading.Event()
    threads: list[int] = []
    real: Callable[..., index_module.FullRead] = index_module.read_store

    def held(path: Path, known: dict[str, int]) -> index_module.FullRead:
        threads.append(threading.get_ident())
        found = real(path, known) if after else None
        entered.set()
        assert gate.wait(WAIT), "the test never released the read"
        return found if found is not None else real(path, known)

    monkeypatch.setattr(index_module, "read_store", held)
    return gate, entered, threads


async def test_first_load_runs_off_the_loop_while_the_daemon_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a store file, the first view's full read runs in a worker thread: while it is held
    there, the same server answers other requests (the API, an incident's detail); released, the
    first view shows every open incident. (Run on the loop, the held read would block the loop and
    nothing else would be answered: the test fails on its upper bound.)"""
    async with Store(tmp_path / "engine.sqlite") as store:
        core = StoreCore(store)
        for rec in open_records():
            core.put(rec)
        store.commit()
        gate, entered, threads = hold_read_store(monkeypatch, after=False)
        async with serve(core) as http:

            async def first_view() -> str:
                async with http.get("/ui/") as r:
                    assert r.status == 200
                    return await r.text()

            first = asyncio.create_task(first_view())
            assert await asyncio.to_thread(entered.wait, WAIT), "the full read started"
            async with http.get("/healthz") as r:
                assert r.status == 200
            iid = open_records()[0]["incident_id"]
            async with http.get(f"/ui/incidents/{iid}") as r:
                assert r.status == 200
            assert not first.done(), "the first view waits for its read"
            gate.set()
            async with asyncio.timeout(WAIT):
                html = await first
        assert threads
        assert threads[0] != threading.get_ident(), "read in another thread"
        assert "agg-3" in html
        assert "pwr-c" in html


async def test_light_records_make_the_same_rows(tmp_path: Path) -> None:
    """The rows of a thread's full read (light records: SQLite cuts the long lists) equal the rows
    of the full records, for real ones."""
    async with Store(tmp_path / "engine.sqlite") as store:
        records = open_records()
        for rec in records:
            store.record(WireRecord(rec), [], parse_time(rec["time"]))
        store.commit()
        found = await asyncio.to_thread(index_module.read_store, store.path, {})
    assert found.rows == {r["incident_id"]: views.row_of(r) for r in records}
    assert {i: h[:2] for i, h in found.heads.items()} == {
        r["incident_id"]: (r["version"], r["event"]) for r in records
    }
    assert any(row.suppressed == 50 for row in found.rows.values())


async def test_full_read_in_a_thread_keeps_what_the_loop_read_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full read shows the store as it was committed when it started; a newer version the loop
    read while it ran (not committed yet, so the thread could not see it) stays, an incident
    written meanwhile is not dropped, and the light rows equal full ones."""
    async with Store(tmp_path / "engine.sqlite", commit_interval=3600) as store:
        core = StoreCore(store)
        core.put(synthetic(1, priority=2))
        core.put(synthetic(2, priority=3))
        store.commit()
        index = IncidentIndex(core)
        assert await index.full_read()
        assert index.threaded
        assert index.rows["inc-0001"] == views.row_of(synthetic(1, priority=2)), "a light row is a full one"
        gate, entered, _ = hold_read_store(monkeypatch, after=True)
        reading = asyncio.create_task(index.full_read())
        assert await asyncio.to_thread(entered.wait, WAIT)
        newer = dict(synthetic(1, priority=1), version=2, event="updated", time=format_time(1767229999))
        core.put(newer)  # on the loop's connection, not committed
        core.put(synthetic(3, priority=4))
        assert index.refresh()
        gate.set()
        async with asyncio.timeout(WAIT):
            await reading
        assert index.rows["inc-0001"].version == 2
        assert index.rows["inc-0001"].priority == 1
        assert set(index.rows) == {"inc-0001", "inc-0002", "inc-0003"}
        store.commit()
        resolved = dict(synthetic(2, priority=3), version=2, event="resolved", time=format_time(1767230000))
        core.put(resolved)
        store.commit()
        monkeypatch.undo()
        assert await index.full_read()
        assert set(index.rows) == {"inc-0001", "inc-0003"}


def test_duration_reads_like_a_shift_log() -> None:
    assert [duration(s) for s in (0, 45, 125, 7500, 3 * 86400 + 4 * 3600)] == [
        "0s",
        "45s",
        "2m 05s",
        "2h 05m",
        "3d 4h",
    ]


def test_sessions_sign_and_refuse() -> None:
    s = Sessions(TOKEN)
    cookie, nonce = s.issue()
    assert s.check(cookie) == nonce
    assert s.check(cookie[:-1] + ("0" if cookie[-1] != "0" else "1")) is None
    assert s.check(Sessions("other-token").issue()[0]) is None  # a new token ends every session
    assert s.check(None) is None
    assert s.check("a.b.c") is None
    assert s.check_csrf(nonce, s.csrf(nonce))
    assert not s.check_csrf(nonce, s.csrf("other"))
    assert TOKEN not in cookie


def test_login_limiter_locks_an_address_out_after_repeated_failures() -> None:
    """Five failures within the window lock that address (and only it) for the lockout; a success
    forgets the count; failures spread beyond the window never lock; the addresses tracked are
    bounded."""
    now = [1000.0]
    limiter = LoginLimiter(max_failures=5, window=900, lockout=600, max_clients=3, clock=lambda: now[0])
    assert [limiter.failed("10.0.0.1") for _ in range(4)] == [False] * 4
    assert limiter.failures("10.0.0.1") == 4
    assert limiter.locked("10.0.0.1") == 0.0
    assert limiter.failed("10.0.0.1")
    assert limiter.locked("10.0.0.1") == 600.0
    assert limiter.locked("10.0.0.2") == 0.0, "another address may still try"
    assert limiter.lockouts == 1
    now[0] += 599
    assert limiter.locked("10.0.0.1") == 1.0
    now[0] += 1
    assert limiter.locked("10.0.0.1") == 0.0
    assert limiter.failures("10.0.0.1") == 0, "the lockout ended the count"
    for _ in range(4):
        limiter.failed("10.0.0.2")
    limiter.succeeded("10.0.0.2")
    assert not limiter.failed("10.0.0.2"), "a success forgot the four before"
    for _ in range(10):  # one failure every 4 minutes: at most 4 within any 15 minutes
        now[0] += 240
        assert not limiter.failed("10.0.0.3")
    assert limiter.failures("10.0.0.3") == 4
    now[0] += 181  # the oldest of those four is now 901 s old
    assert limiter.failures("10.0.0.3") == 3, "a failure older than the window no longer counts"
    for client in ("a", "b", "c", "d"):
        limiter.failed(client)
    assert limiter.failures("10.0.0.1") == 0
    assert limiter.failures("a") == 0, "the least recently seen went first"
    assert limiter.failures("d") == 1
    with pytest.raises(ValueError, match="max_failures"):
        LoginLimiter(max_failures=0)


async def test_sign_in_is_locked_after_five_wrong_tokens_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over HTTP: each wrong token says how many tries are left; the fifth locks the address out
    (429, Retry-After): then even the right token, in the form or a bearer header, is refused
    unchecked, by the dashboard and the API alike; the sign-in form says so; the metrics count
    refusals, lockouts and locked-out tries."""
    monkeypatch.setattr(app_module, "LOGIN_DELAY", 0.0)
    counters = Metrics(version="t", receivers=[])
    async with serve(RecordCore(open_records()), token=TOKEN, metrics=counters) as http:
        for left in (4, 3, 2, 1):
            async with http.post("/ui/login", data={"token": "guess", "next": "/ui/"}) as r:
                assert r.status == 401
                html = await r.text()
            failures = "failures" if left != 1 else "failure"
            assert f"That token is not valid. {left} more {failures} from this address" in html
        async with http.post("/ui/login", data={"token": "guess", "next": "/ui/"}) as r:
            assert r.status == 429
            assert "sign-in from it is locked for 15 minutes" in await r.text()
        async with http.post("/ui/login", data={"token": TOKEN, "next": "/ui/"}, allow_redirects=False) as r:
            assert r.status == 429
            assert 890 <= int(r.headers["Retry-After"]) <= 900
            assert "Set-Cookie" not in r.headers
            assert "not even the right one" in await r.text()
        async with http.get("/ui/", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 429
            assert "Retry-After" in r.headers
        async with http.get("/ui/login") as r:
            assert r.status == 200
            assert "Too many failed sign-ins from this address" in await r.text()
        async with http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 429  # the API shares the sign-in's lockout of the address
    metrics = counters.render().decode()
    assert 'soc_dashboard_logins_total{result="refused"} 5.0' in metrics
    assert 'soc_dashboard_logins_total{result="locked_out"} 2.0' in metrics
    assert 'soc_dashboard_logins_total{result="ok"} 0.0' in metrics
    assert "soc_dashboard_lockouts_total 1.0" in metrics


def test_quality_history_keeps_a_point_per_minute_beyond_the_windows() -> None:
    """Collected every 20 s from a window that holds 5 minutes, the history keeps one point per
    minute (mean, min, max) for hours; a minute is turned into a point once it is over (a sample
    arriving after that is left out); points older than ``keep`` go, and an idle series with them;
    a series beyond ``max_series`` is not kept and its samples are counted once."""
    history = trends.QualityHistory(keep=3 * 3600, max_series=2)
    t0 = 1_767_225_600.0  # a minute boundary
    held: dict[str, list[tuple[float, float]]] = {"a": [], "b": [], "c": []}

    def collect(now: float) -> int:
        for samples in held.values():  # the windows: 5 minutes
            samples[:] = [(t, v) for t, v in samples if t >= now - 300]
        series = [
            (f"ne:{name}/voip", "latency_ms", [t for t, _ in samples], [v for _, v in samples], 0)
            for name, samples in held.items()
        ]
        return history.collect(series, now)

    now = t0
    dropped = 0
    joined = None  # when the third series got the slot the second one left
    for k in range(4 * 360):  # 4 hours, a sample of "a" every 10 s, collected every 20 s
        now = t0 + 10 * k
        minute = k // 6
        held["a"].append((now, 40.0 + minute % 7 + (k % 6)))  # the minute's mean is 42.5 + minute % 7
        if k < 30:
            held["b"].append((now, 1.0))
        held["c"].append((now, 9.0))
        if k % 2:
            dropped += collect(now + 1)
            if joined is None and "ne:c/voip" in history.scopes():
                joined = k
    assert history.series_count == 2
    assert joined is not None
    assert 3 * 360 < joined < 3 * 360 + 60, "the second series was forgotten 3 hours after its last sample"
    assert history.dropped == dropped == joined - 1, "each sample of the third series counted once until then"
    chart = history.chart("ne:a/voip", "latency_ms", [], [], since=now - 3 * 3600)
    assert len(chart["t"]) == 3 * 60
    assert chart["t"][0] == now - now % 60 - 3 * 3600, "the oldest point kept: 3 hours back"
    assert chart["t"] == sorted(chart["t"])
    assert {t % 60 for t in chart["t"]} == {0.0}
    i = chart["t"].index(t0 + 3600 * 2)  # minute 120
    assert (chart["v"][i], chart["lo"][i], chart["hi"][i]) == (42.5 + 120 % 7, 40.0 + 120 % 7, 45.0 + 120 % 7)
    assert history.metrics("ne:b/voip") == []  # idle for more than `keep`: forgotten
    assert history.scopes() == ["ne:a/voip", "ne:c/voip"], "a freed slot goes to the next series"
    late = (now - 150, 1000.0)  # its minute is over and was already turned into a point
    held["a"] = sorted([*held["a"], late])
    collect(now + 2)
    assert 1000.0 not in history.chart("ne:a/voip", "latency_ms", [], [], since=now - 600)["hi"]
    held_t = [t for t, _ in held["a"]]
    live = history.chart("ne:a/voip", "latency_ms", held_t, [v for _, v in held["a"]], since=now - 600)
    assert live["t"][-1] == now - now % 60, "the current minute, from the windows"
    with pytest.raises(ValueError, match="max_series"):
        trends.QualityHistory(max_series=0)
    windows = KqiWindows(KqiCatalog.defaults())
    for k in range(400):  # the first 100 s leave the 5-minute window
        windows.observe("ne:a/voip", "latency_ms", float(k), t0 + k)
        windows.observe("path:c1/voip", "jitter_ms", 1.0, t0 + k)
    dumped = [(sc, m, t, v) for sc, m, t, v in windows.dump()["series"]]
    walked = sorted((sc, m, list(t[i:]), list(v[i:])) for sc, m, t, v, i in windows.held())
    assert walked == dumped, "the walk over the windows' series in place sees what dump() copies"
    assert trends.interval(0.003, 300) == 20, "a short collection: every 20 s"
    assert trends.interval(0.5, 300) == 50, "a long one: at most 1 % of the loop's time"
    assert trends.interval(5.0, 300) == 120, "but never beyond 2 minutes"
    assert trends.interval(0.5, 60) == 30, "nor half the shortest KQI window"


async def test_quality_series_json_charts_hours_of_history_with_thresholds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two hours of probe samples through a real pipeline, collected every simulated minute:
    series.json charts the two hours (a point per minute), not only the 5 minutes the windows hold,
    with the KQIs' targets and limits; the page offers the ranges and a bad one is a 400. Once
    served, the dashboard collects by itself."""
    monkeypatch.setattr(trends, "COLLECT_EVERY", 0.01)
    topology = load_topology(ROOT / "examples" / "topology.yaml")
    pipeline = Pipeline(topology, load_rulesets(None), load_core_settings(None))
    core = PipelineCore(pipeline)
    dashboard = Dashboard(core, token=None)
    app = web.Application()
    dashboard.mount(app)
    t0 = 1_767_225_600.0
    try:
        for k in range(720):  # a sample every 10 s for 2 hours
            t = t0 + 10 * k
            sample = {"probe_id": "p1", "target": "olt-010", "service": "voip", "time": t}
            sample["metrics"] = {"latency_ms": 40.0 + (k // 6) % 10, "jitter_ms": 4.0, "loss_pct": 0.1}
            pipeline.feed("soc/probes/p1", orjson.dumps(sample), t)
            if k % 6 == 5:
                dashboard.collect_history()
        held = pipeline.quality.windows.series("ne:olt-010/voip")["latency_ms"][0]
        assert held[-1] - held[0] < 301, "the windows hold 5 minutes"
        collections = dashboard.history.collections
        async with serve_app(app) as http:
            async with asyncio.timeout(WAIT):
                while dashboard.history.collections < collections + 2:
                    await asyncio.sleep(0.01)
            async with http.get("/ui/quality/series.json?scope=ne:olt-010/voip&hours=6") as r:
                data = await r.json()
            async with http.get("/ui/quality?scope=ne:olt-010/voip&hours=1") as r:
                html = await r.text()
            async with http.get("/ui/quality?hours=7") as r:
                assert r.status == 400
                assert "hours: expected one of 1, 6, 24, got &#39;7&#39;" in await r.text()
        latency = next(c for c in data["charts"] if c["metric"] == "latency_ms")
        assert len(latency["t"]) == 120
        assert latency["t"][-1] - latency["t"][0] == 119 * 60
        assert latency["v"][:11] == [40.0, 41.0, 42.0, 43.0, 44.0, 45.0, 46.0, 47.0, 48.0, 49.0, 40.0]
        assert [(k["target"], k["limit"]) for k in latency["kqis"]] == [(150.0, 400.0)]
        assert data["step_s"] == 60
        assert data["history"]["dropped_samples"] == 0
        assert '<option value="1" selected>1 hour</option>' in html
        assert "hours=1" in html
        no_inline_code(html)
    finally:
        pipeline.close()


# ------------------------------------------------------------------------------- vendored files


@pytest.mark.parametrize("folder", [DASH / "static" / "vendor", ROOT / "tests" / "vendor"])
def test_vendored_files_match_their_manifest(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = {e["file"] for e in manifest}
    present = {p.name for p in folder.iterdir()} - {"manifest.json", "VENDORED.md"}
    assert present == listed, "every vendored file is in the manifest, and only those"
    for e in manifest:
        data = (folder / e["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e["sha256"], f"{e['file']} differs from {e['package']}"
        assert e["version"]
        assert e["license"]
        assert e["tarball_integrity"].startswith("sha512-")
    packages = {e["package"] for e in manifest}
    for package in packages:  # each package ships its licence beside it
        assert any(e["package"] == package and "LICENSE" in e["file"] for e in manifest), package
    vendored_md = (DASH / "static" / "vendor" / "VENDORED.md").read_text()
    for e in manifest:
        assert f"| {e['package']} | {e['version']} | {e['license']} |" in vendored_md


# ------------------------------------------------------------------------------------ the pages


@asynccontextmanager
async def serve(
    core: RecordCore, *, token: str | None = None, metrics: Metrics | None = None
) -> AsyncIterator[aiohttp.ClientSession]:
    settings = HttpSettings(port=0, token=token)
    async with HttpApi(settings, core, metrics or Metrics(version="t", receivers=[])) as api:
        jar = aiohttp.CookieJar(unsafe=True)
        base = f"http://127.0.0.1:{api.port}"
        async with aiohttp.ClientSession(base, cookie_jar=jar) as http:
            yield http


class PipelineCore(RecordCore):
    """``RecordCore`` with a pipeline (the Alarms, Element and Service-quality pages read its query)."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        self.pipeline = pipeline

    @property
    def query(self) -> CoreQuery | None:
        return self.pipeline.query


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[aiohttp.ClientSession]:
    """``app`` on a free port of 127.0.0.1, and a client for it."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession(
            f"http://127.0.0.1:{port}", cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as http:
            yield http
    finally:
        await runner.cleanup()


def no_inline_code(html: str) -> None:
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
    assert "<style" not in html, "an inline style sheet"
    assert " style=" not in html, "an inline style attribute"
    assert not re.search(r"\son[a-z]+=", html), "an inline event handler"


async def csrf_of(http: aiohttp.ClientSession, path: str) -> str:
    async with http.get(path) as r:
        html = await r.text()
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "the page carries a CSRF token"
    return m.group(1)


async def test_incident_list_and_detail_render_with_strict_headers() -> None:
    core = RecordCore(open_records())
    async with serve(core) as http:
        async with http.get("/", allow_redirects=False) as r:
            assert r.status == 302
            assert r.headers["Location"] == "/ui/"
        async with http.get("/ui/") as r:
            html = await r.text()
            assert r.status == 200
            assert r.headers["Content-Security-Policy"] == CSP
            assert r.headers["X-Frame-Options"] == "DENY"
            cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie
            assert "SameSite=Strict" in cookie
            assert "Path=/ui" in cookie
        no_inline_code(html)
        assert html.index("agg-3") < html.index("pwr-c"), "the higher score first"
        assert re.search(r'class="count p1[^"]*"[^>]*>\s*<span class="prio p1">P1</span> <b>2</b>', html)
        iid = next(r["incident_id"] for r in core.records.values() if r["root_cause"]["ne_id"] == "agg-3")
        async with http.get(f"/ui/incidents/{iid}") as r:
            detail = await r.text()
            assert r.status == 200
        no_inline_code(detail)
        assert detail.count('class="reason"') == 50  # every suppressed alarm, with its reason
        assert "default/topology-root-cause" in detail
        assert "Priority breakdown" in detail
        assert '<th scope="row">platinum</th><td class="num">20</td>' in detail
        async with http.get("/ui/static/vendor/htmx.min.js") as r:
            assert r.status == 200
            assert "Content-Security-Policy" not in r.headers


async def test_a_resolved_incidents_page_is_frozen_at_its_resolution() -> None:
    """A resolved incident stops counting: "open for" is from its opening to its resolution (no
    live counter), the SLA breach line says how many customers were breached (no countdown to a
    deadline the frozen facts no longer give), and the page says when and how it resolved."""
    core = RecordCore(fiber_cut_records())
    (cut,) = [r for r in core.records.values() if r["root_cause"]["ne_id"] == "agg-3"]
    assert cut["event"] == "resolved"
    open_for = parse_time(cut["time"]) - parse_time(cut["opened_at"])
    async with serve(core) as http, http.get(f"/ui/incidents/{cut['incident_id']}") as r:
        detail = await r.text()
    opened = re.search(r"<dt>Opened</dt><dd>(.*?)</dd>", detail, re.S)
    assert opened is not None
    assert "data-since" not in opened.group(1)
    assert f"open for {duration(open_for)}" in opened.group(1)
    assert re.search(r"<dt>Resolved</dt><dd>.*?· cleared</dd>", detail, re.S)
    breached = cut["sla"]["customers_breached"]
    assert breached > 0
    assert f"{breached} customer(s) breached" in detail
    assert "data-deadline" not in detail


async def test_an_incident_whose_root_cleared_shows_clearing_until_it_resolves() -> None:
    """The root cleared and the hold-down runs: no record says so (the last one shows the root
    raised), so the list and the page ask the core: a clearing tag, when it resolves unless raised
    again, when the root cleared, and no SLA countdown (no downtime is counted any more). It read
    as a live outage counting down to a breach for the whole hold-down."""
    topology = load_topology(ROOT / "examples" / "topology.yaml")
    pipeline = Pipeline(topology, load_rulesets(None), load_core_settings(None))
    core = PipelineCore(pipeline)
    t0 = T0
    for line in [
        alarm("agg-3", "lossOfSignal", 0, "critical"),
        alarm("olt-001", "linkDown", 2, "major"),
        clear("agg-3", "lossOfSignal", 100),
    ]:
        t = event_time(line)
        assert t is not None
        for rec in pipeline.advance_to(t).records:  # the timers due before it (the opening at 30 s)
            core.put(rec.to_wire())
        for rec in pipeline.feed(line["topic"], orjson.dumps(line["payload"]), t).records:
            core.put(rec.to_wire())
    for rec in pipeline.advance_to(t0 + 120).records:
        core.put(rec.to_wire())
    (cut,) = [r for r in core.records.values() if r["root_cause"]["ne_id"] == "agg-3"]
    assert cut["event"] != "resolved"
    assert cut["root_cause"]["active"]  # what the last record says
    hold_down = pipeline.settings.incidents.hold_down
    async with serve(core) as http:
        async with http.get(f"/ui/incidents/{cut['incident_id']}") as r:
            detail = await r.text()
        async with http.get("/ui/") as r:
            listing = await r.text()
    assert '<span class="clearing">Clearing</span>' in detail
    assert "The root alarm cleared at" in detail
    resolves = format_time(t0 + 100 + hold_down).replace(".000Z", "Z")
    assert f'the incident resolves at <time datetime="{resolves}"' in detail
    assert detail.count("— (root cleared)") == 2  # the facts' SLA line and the SLA section's
    assert "data-deadline" not in detail  # no countdown anywhere on the page
    assert ">clearing</span>" in listing
    for rec in pipeline.advance_to(t0 + 100 + hold_down + 1).records:
        core.put(rec.to_wire())
    async with serve(core) as http, http.get(f"/ui/incidents/{cut['incident_id']}") as r:
        detail = await r.text()
    assert "Clearing" not in detail
    assert '<span class="resolved">Resolved</span>' in detail


async def test_filters_pages_and_bad_filters_over_http() -> None:
    core = RecordCore(
        [synthetic(n, priority=1 + n % 3, region="north" if n % 2 else "south") for n in range(130)]
    )
    async with serve(core) as http:
        async with http.get("/ui/?region=north&priority=2") as r:
            html = await r.text()
        assert re.search(r'<option value="north" selected>north</option>', html)
        assert "1–22 of 22" in html
        async with http.get("/ui/?page=2") as r:
            html = await r.text()
        assert "51–100 of 130" in html
        assert 'href="/ui/?page=3" rel="next"' in html
        async with http.get("/ui/nowhere") as r:
            assert r.status == 404
            assert r.headers["Content-Security-Policy"] == CSP
        async with http.post("/ui/alarms") as r:
            assert r.status == 405
            assert r.headers["Allow"] == "GET,HEAD"
        async with http.get("/ui/?priority=9") as r:
            assert r.status == 400
            assert "priority: expected 1 to 5, got &#39;9&#39;" in await r.text()


async def test_every_field_is_escaped() -> None:
    rec = copy.deepcopy(synthetic(7, priority=1))
    rec["incident_id"] = f"inc-{EVIL}"
    rec["root_cause"] = dict.fromkeys(("ne_id", "alarm_id", "probable_cause", "region", "site", "rule"), EVIL)
    rec["impact"] = {"services": {EVIL: 1}, "customers": {"total": 1, "by_tier": {EVIL: 1}}}
    rec["suppressed"] = [{"alarm_id": EVIL + "2", "ne_id": EVIL, "root": EVIL, "rule": EVIL, "reason": EVIL}]
    rec["explanation"] = [EVIL]
    rec["acknowledged"] = {"by": EVIL, "at": rec["time"], "note": EVIL}
    rec["alarms"] = [EVIL, EVIL + "3"]
    core = RecordCore([rec])
    async with serve(core) as http:
        for path in ("/ui/", f"/ui/incidents/{quote(rec['incident_id'], safe='')}"):
            async with http.get(path) as r:
                html = await r.text()
                assert r.status == 200, path
            assert EVIL not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
            no_inline_code(html)


async def test_login_cookie_and_bearer_when_a_token_is_set() -> None:
    core = RecordCore(open_records())
    async with serve(core, token=TOKEN) as http:
        async with http.get("/ui/?priority=1", allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"] == "/ui/login?next=/ui/?priority%3D1"
        async with http.get("/incidents") as r:
            assert r.status == 401, "the API itself still wants the bearer token"
        async with http.post("/ui/login", data={"token": "wrong", "next": "/ui/"}) as r:
            assert r.status == 401
            assert "That token is not valid." in await r.text()
        async with http.get("/ui/events") as r:
            assert r.status == 401
        fragment = {"HX-Request": "true", "HX-Current-URL": "http://127.0.0.1/ui/?state=outage"}
        async with http.get("/ui/incidents/live?state=outage", headers=fragment) as r:
            assert r.status == 401  # htmx goes to the form with the whole page, not inside the table
            assert r.headers["HX-Redirect"] == "/ui/login?next=%2Fui%2F%3Fstate%3Doutage"
        async with http.post(
            "/ui/login", data={"token": TOKEN, "next": "/ui/?priority=1"}, allow_redirects=False
        ) as r:
            assert r.status == 303
            assert r.headers["Location"] == "/ui/?priority=1"
            cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie
            assert "SameSite=Strict" in cookie
            assert TOKEN not in cookie
        async with http.get("/ui/?priority=1") as r:
            assert r.status == 200
            assert "Sign out" in await r.text()
        async with http.post("/ui/login", data={"token": TOKEN, "next": "https://evil.example/"}) as r:
            assert str(r.url).endswith("/ui/"), "never a redirect off the dashboard"
        http.cookie_jar.clear()
        async with http.get("/ui/", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200
        async with http.get("/ui/", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401


async def test_ack_form_needs_csrf_and_same_origin() -> None:
    core = RecordCore(open_records())
    iid = next(iter(core.records))
    path = f"/ui/incidents/{iid}"
    async with serve(core) as http:
        csrf = await csrf_of(http, path)
        async with http.post(f"{path}/ack", data={"by": "ann", "note": "x"}) as r:
            assert r.status == 403
            assert "security token" in await r.text()
        async with http.post(
            f"{path}/ack", data={"by": "ann", "csrf": csrf}, headers={"Origin": "https://evil.example"}
        ) as r:
            assert r.status == 403
        async with http.post(f"{path}/ack", data={"by": "  ", "csrf": csrf}) as r:
            assert r.status == 400
            assert "say who acknowledges" in await r.text()
        async with http.post(f"{path}/ack", data={"by": "x" * 300, "csrf": csrf}) as r:
            assert r.status == 400
            assert "the limit is 256" in await r.text()
        assert core.acks == []
        async with http.post(
            f"{path}/ack", data={"by": "ann", "note": "fibre team", "csrf": csrf}, allow_redirects=False
        ) as r:
            assert r.status == 303
            assert r.headers["Location"] == path
        assert core.acks == [(iid, "ann", "fibre team")]
        async with http.get(path) as r:
            assert "✓ by ann" in await r.text()
        async with http.post("/ui/incidents/inc-nope/ack", data={"by": "ann", "csrf": csrf}) as r:
            assert r.status == 404
        async with http.get("/ui/incidents/inc-nope") as r:
            assert r.status == 404
            assert "No such incident" in await r.text()


async def test_event_stream_announces_a_change() -> None:
    core = RecordCore([synthetic(1, priority=2)])
    async with serve(core) as http:
        async with http.get("/ui/") as r:
            rev = re.search(r'sse-connect="/ui/events\?rev=(\d+)"', await r.text())
        assert rev is not None
        async with http.get(f"/ui/events?rev={rev.group(1)}") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            core.put(dict(synthetic(1, priority=1), version=2, event="updated", time=format_time(1767239999)))
            got = b""
            async with asyncio.timeout(10):
                while b"event: inc-0001" not in got:
                    got += await stream.content.readany()
        assert b"event: incidents\n" in got


async def test_event_stream_announces_a_root_clearing_without_a_record() -> None:
    """The root's clear sends no record; the open pages hear of it all the same (the watcher asks
    the core which incidents are clearing), so an open list or page shows ``clearing`` without a
    reload."""
    topology = load_topology(ROOT / "examples" / "topology.yaml")
    pipeline = Pipeline(topology, load_rulesets(None), load_core_settings(None))
    core = PipelineCore(pipeline)
    for line in [alarm("agg-3", "lossOfSignal", 0, "critical"), clear("agg-3", "lossOfSignal", 100)]:
        t = event_time(line)
        assert t is not None
        for rec in pipeline.advance_to(t).records:
            core.put(rec.to_wire())
        if line["payload"]["severity"] == "cleared":
            break  # the clear is fed once the stream is open
        for rec in pipeline.feed(line["topic"], orjson.dumps(line["payload"]), t).records:
            core.put(rec.to_wire())
    (iid,) = core.records
    async with serve(core) as http:
        async with http.get("/ui/") as r:
            rev = re.search(r'sse-connect="/ui/events\?rev=(\d+)"', await r.text())
        assert rev is not None
        async with http.get(f"/ui/events?rev={rev.group(1)}") as stream:
            line = clear("agg-3", "lossOfSignal", 100)
            made = pipeline.feed(line["topic"], orjson.dumps(line["payload"]), T0 + 100).records
            assert made == []  # no record says the root cleared
            got = b""
            async with asyncio.timeout(10):
                while f"event: {iid}".encode() not in got:
                    got += await stream.content.readany()
        async with http.get("/ui/") as r:
            assert ">clearing</span>" in await r.text()


def test_timeline_says_what_changed_each_version() -> None:
    base = {"priority": 2, "state": "degraded", "score": 61.2, "customers": 20, "alarms": 1, "suppressed": 0}
    history = [
        {**base, "version": 1, "event": "opened", "time": format_time(1767225600)},
        {
            **base,
            "version": 2,
            "event": "updated",
            "time": format_time(1767225660),
            "priority": 1,
            "state": "outage",
            "score": 87.6,
            "customers": 1000,
            "alarms": 51,
            "suppressed": 50,
        },
        {
            **base,
            "version": 3,
            "event": "updated",
            "time": format_time(1767225700),
            "priority": 1,
            "state": "outage",
            "score": 87.6,
            "customers": 1000,
            "alarms": 51,
            "suppressed": 50,
            "acknowledged": {"by": "ann", "note": "on it"},
        },
        {
            **base,
            "version": 4,
            "event": "resolved",
            "time": format_time(1767226000),
            "priority": 1,
            "state": "outage",
            "score": 87.6,
            "customers": 1000,
            "alarms": 51,
            "suppressed": 50,
            "acknowledged": {"by": "ann", "note": "on it"},
        },
    ]
    steps = views.timeline(history)
    assert [(s.version, s.event) for s in steps] == [
        (1, "opened"),
        (2, "updated"),
        (3, "updated"),
        (4, "resolved"),
    ]
    assert steps[0].changes == ["P2 degraded, score 61.2, 20 customers, 1 alarm (0 suppressed)"]
    assert steps[1].changes == [
        "priority P2 → P1",
        "state degraded → outage",
        "score 61.2 → 87.6",
        "customers 20 → 1000",
        "51 alarms (50 suppressed)",
    ]
    assert steps[2].changes == ["acknowledged by ann: on it"]
    assert steps[3].changes == ["resolved (its root cleared, after the hold-down)"]  # (an old summary)
    assert steps[1].time == 1767225660


def test_timeline_says_why_versions_came_from_the_records_own_facts() -> None:
    """A symptom that flaps under a fiber cut makes versions: the timeline says the symptoms'
    count and the flapping (it said "SLA milestone" for them, guessing from the time to breach);
    a resolved version says how it resolved: merged (into which incident), or its root cleared with
    the symptoms still active that re-surface (it said "every alarm cleared" of both)."""
    lines = [alarm("agg-3", "lossOfSignal", 0, "critical")]
    lines += [alarm(f"olt-{i:03d}", "linkDown", 1, "major") for i in range(1, 4)]
    for k in range(8):  # olt-003 bounces: cleared and raised again every 10 s
        lines += [clear("olt-003", "linkDown", 40 + 20 * k)]
        lines += [alarm("olt-003", "linkDown", 50 + 20 * k, "major")]
    lines += [clear("agg-3", "lossOfSignal", 600), clear("olt-001", "linkDown", 600)]
    r = run(lines)
    (cut,) = {rec["incident_id"] for rec in r.records if rec["root_cause"]["ne_id"] == "agg-3"}
    history = [version_summary(rec) for rec in r.records if rec["incident_id"] == cut]
    said = [change for step in views.timeline(history) for change in step.changes]
    assert "2 of 3 symptom(s) active" in said
    assert "1 alarm flapping" in said
    assert not any(change.startswith("SLA") for change in said)
    assert said[-1] == (
        "its root cleared; resolved after the hold-down;"
        " 2 symptoms still active, each re-surfacing on its own"
    )
    merged = run(
        [
            alarm("olt-002", "linkDown", 0, "critical"),
            alarm("agg-3", "lossOfSignal", 30, "critical"),
            clear("agg-3", "lossOfSignal", 200),
            clear("olt-002", "linkDown", 300),
        ]
    )
    first = merged.records[0]
    assert first["root_cause"]["ne_id"] == "olt-002"
    mine = [version_summary(rec) for rec in merged.records if rec["incident_id"] == first["incident_id"]]
    into = mine[-1]["merged_into"]
    assert into is not None
    assert views.timeline(mine)[-1].changes[-1] == f"merged into {into}: a later root explains its root"


def test_timeline_of_an_incident_stored_before_its_versions_were_summarised() -> None:
    """A store without summaries for an incident's first versions: the timeline opens with the
    bare "opened" (from the record's opened_at), says which versions are missing, and describes the
    first summarised one in full; with no summary at all, the latest record stands in for it."""
    records = [r for r in fiber_cut_records() if r["root_cause"]["ne_id"] == "agg-3"]
    latest = records[-1]
    assert [(r["version"], r["event"]) for r in records] == [
        (1, "opened"),
        (2, "updated"),  # the first platinum group's SLA breach
        (3, "updated"),  # the other 19 groups', 5 s on
        (4, "resolved"),
    ]
    partial = known_history([version_summary(records[3])], latest)
    assert [(h["version"], h.get("recorded")) for h in partial] == [(1, False), (4, None)]
    assert partial[0]["time"] == latest["opened_at"]
    assert partial[0]["priority"] is None
    steps = views.timeline(partial)
    assert [(s.version, s.event) for s in steps] == [(1, "opened"), (4, "resolved")]
    assert steps[0].changes == ["its facts at this version were not recorded"]
    assert steps[0].time == parse_time(latest["opened_at"])
    assert steps[1].changes[0] == "versions 2–3 not recorded (stored before per-version history was kept)"
    assert steps[1].changes[1].startswith("P1 outage, score ")
    assert steps[1].changes[-1] == "its root cleared; resolved after the hold-down"
    none = known_history([], latest)
    assert [(h["version"], h["event"], h["recorded"]) for h in none] == [
        (1, "opened", False),
        (4, "resolved", False),
    ]
    steps = views.timeline(none)
    assert steps[1].changes[0] == "versions 2–3 not recorded (stored before per-version history was kept)"
    assert steps[1].changes[-1] == "as the latest record says (no summary of this version was kept)"
    gap = known_history([version_summary(dict(records[1], version=4))], dict(latest, version=6))
    assert [h["version"] for h in gap] == [1, 4, 6]
    assert views.timeline(gap)[1].changes[0].startswith("versions 2–3 not recorded")
    full = [version_summary(r) for r in records]
    assert known_history(full, latest) == full, "a complete history is returned as it is"
    assert known_history([], None) == []


async def test_incidents_without_version_summaries_show_what_is_known(tmp_path: Path) -> None:
    """Over HTTP, for incidents whose summaries a store never kept (all of them, or the first
    versions): GET /incidents/{id}/history answers 200 with the opening and the latest version
    (``recorded: false``), and the detail page shows the timeline without an error."""
    async with Store(tmp_path / "engine.sqlite") as store:
        core = StoreCore(store)
        for rec in fiber_cut_records():
            core.put(rec)
        store.commit()
        ids = sorted({r["incident_id"] for r in fiber_cut_records()})
        store.db.execute("DELETE FROM incident_versions WHERE incident_id = ?", (ids[0],))
        store.db.execute("DELETE FROM incident_versions WHERE incident_id = ? AND version < 3", (ids[1],))
        async with serve(core) as http:
            async with http.get(f"/incidents/{ids[0]}/history") as r:
                assert r.status == 200
                body = await r.json()
            async with http.get(f"/ui/incidents/{ids[0]}") as r:
                assert r.status == 200
                page0 = await r.text()
            async with http.get(f"/incidents/{ids[1]}/history") as r:
                partial = await r.json()
            async with http.get(f"/ui/incidents/{ids[1]}") as r:
                assert r.status == 200
                page1 = await r.text()
            async with http.get("/incidents/inc-nope/history") as r:
                assert r.status == 404
    assert [(v["version"], v["event"], v["recorded"]) for v in body["versions"]] == [
        (1, "opened", False),
        (4, "resolved", False),  # agg-3's: two SLA breach updates between
    ]
    assert body["versions"][-1]["priority"] is not None, "the latest version's facts, from its record"
    assert [(v["version"], v.get("recorded", True)) for v in partial["versions"]] == [(1, False), (3, True)]
    for html, missing in ((page0, "versions 2–3 not recorded"), (page1, "version 2 not recorded")):
        assert "its facts at this version were not recorded" in html
        assert missing in html
        no_inline_code(html)
    assert "as the latest record says" in page0


async def test_the_dashboard_can_be_turned_off() -> None:
    settings = HttpSettings(port=0, token=TOKEN, dashboard=False)
    async with (
        HttpApi(settings, RecordCore(open_records()), Metrics(version="t", receivers=[])) as api,
        aiohttp.ClientSession(f"http://127.0.0.1:{api.port}") as http,
    ):
        async with http.get("/ui/") as r:
            assert r.status == 401  # like any other path of the API: the token first
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get("/ui/", headers=headers) as r:
            assert r.status == 404
        async with http.get("/", headers=headers, allow_redirects=False) as r:
            assert r.status == 404
