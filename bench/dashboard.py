"""The dashboard with a big network: the incident list's and the alarm list's server time with
5,000 open incidents and 100,000 active alarms.

The records are written into a real store (SQLite file, the daemon's ``Store``) and read through
the same path as the daemon's ``CoreView`` (``Store.incidents``/``Store.incident``); the pages are
served by the real HTTP API with the dashboard mounted, and fetched over 127.0.0.1 by an aiohttp
client. 5,000 open incidents carry 100,000 active alarms between them (20 each: a root and 19
suppressed symptoms with their rule and reason), spread over 5 priorities, 3 states, 8 regions and
3 services.

The Alarms page reads the pipeline's alarm table: 100,000 active alarms are put there directly
(without correlation: this times the page, not the core).

Printed: a collection of the KQI charts' history at its limit of 1,000 series, with 1,000 and
10,000 series in the windows (what the dashboard does every 20 s on the loop); the first full read
of the index (at the first page view; in a worker thread, with the
event loop's longest stall meanwhile), an incremental refresh with nothing new (what the watcher
does twice a second), a full read with nothing new (once a minute), the first page view after a
start with the ``GET /healthz`` requests answered while it loads, and the round trip of the list's
first page, a filtered page, a deep page and an incident's detail (median and p95 of ``--repeat``
requests; the server's render time is below these, which include the client).

Usage: ``python -m bench dashboard [--incidents N] [--alarms-per-incident N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from engine.adapters.dashboard.index import IncidentIndex
from engine.adapters.dashboard.trends import QualityHistory
from engine.adapters.http import HttpApi
from engine.adapters.store import Store
from engine.core.experience import SlaFacts
from engine.core.impact import Health, Impact, ImpactState
from engine.core.incident_records import Acknowledgement, IncidentRecord, RootCause, SuppressedAlarm
from engine.core.pipeline import Pipeline
from engine.core.query import CoreQuery
from engine.model.messages import Alarm
from engine.model.topology import topology_from_dict
from engine.rules.schema import load_rulesets
from engine.service.config import HttpSettings, LoggingSettings, load_core_settings
from engine.service.logs import configure_logging
from engine.service.metrics import Metrics
from engine.tools.scenarios import example_topology

T0 = 1_767_225_600.0
STATES: tuple[ImpactState, ...] = ("outage", "degraded", "at_risk")
REGIONS = ("north", "south", "east", "west", "centre", "coast", "hills", "metro")
TIERS = ("platinum", "gold", "silver", "bronze")


def record(n: int, alarms: int) -> IncidentRecord:
    root = f"agg-{n}:lossOfSignal:port 1/1/{n % 48}"
    symptoms = [f"olt-{n}-{i}:linkDown" for i in range(alarms - 1)]
    t = T0 + n
    rule = "default/topology-root-cause"
    return IncidentRecord(
        incident_id=f"inc-{n:016x}",
        event="opened" if n % 3 else "updated",
        version=1 if n % 3 else 2,
        time=t,
        priority=1 + n % 5,
        score=round(20 + (n * 7919) % 8000 / 100, 1),
        state=STATES[n % 3],
        severity="critical",
        root_cause=RootCause(
            alarm_id=root,
            ne_id=f"agg-{n}",
            probable_cause="lossOfSignal",
            severity="critical",
            element_type="switch",
            site=f"site-{n % 97}",
            region=REGIONS[n % len(REGIONS)],
            active=True,
            rule=rule,
        ),
        impact=Impact(
            elements={f"e-{n}-{i}": Health.DOWN for i in range(alarms)},
            state=STATES[n % 3],
            services={"internet": 40, "voip": 10, "iptv": 5} if n % 2 else {"internet": 40},
            customers=40,
            by_tier=dict(zip(TIERS, (1, 4, 10, 25), strict=True)),
            by_state={},
        ),
        alarms=(root, *symptoms),
        suppressed=tuple(
            SuppressedAlarm(
                alarm_id=s,
                ne_id=s.split(":")[0],
                probable_cause="linkDown",
                state="active",
                root=root,
                rule=rule,
                reason=f"explained by {root} (rule {rule}: below agg-{n})",
            )
            for s in symptoms
        ),
        flapping=(),
        opened_at=t - 60,
        acknowledged=Acknowledgement("noc-3", t, None) if n % 4 == 0 else None,
        priority_breakdown={"state": {"value": STATES[n % 3], "factor": 1.0, "points": 25.0}},
        sla=SlaFacts(
            customers_down=5,
            customers_breached=0,
            seconds_to_breach=1800.0,
            tier_breaching_first="gold",
            urgency=0.5,
            points=5.0,
        ),
        explanation=("root cause: lossOfSignal on agg", "impact: 40 customers"),
    )


class StoreCore:
    """The daemon's read path for incidents (``Daemon.incidents``/``incident``), over a store, and
    its pipeline (for the Alarms page), as the daemon exposes them."""

    def __init__(self, store: Store, pipeline: Pipeline) -> None:
        self.store = store
        self.pipeline = pipeline

    @property
    def ready(self) -> bool:
        return True

    def readiness(self) -> dict[str, bool]:
        return {"store": True}

    def degraded(self) -> list[dict[str, Any]]:
        return []  # no core here: nothing is quarantined

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        return self.store.incident(incident_id)

    def incidents(
        self, *, state: str | None, priority: int | None, since: float | None, open_only: bool, limit: int
    ) -> list[dict[str, Any]]:
        return self.store.incidents(
            state=state, priority=priority, since=since, open_only=open_only, limit=limit
        )

    @property
    def query(self) -> CoreQuery:
        return self.pipeline.query

    async def ingest(self, topic: str, payload: bytes, *, source: str) -> None:
        return None

    async def acknowledge(self, incident_id: str, *, by: str, note: str | None) -> dict[str, Any] | None:
        return None

    async def reload(self) -> tuple[bool, str]:
        return True, ""

    def alarm_topic(self) -> str:
        return "soc/alarms/http"

    def probe_topic(self) -> str:
        return "soc/probes/http"


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"median {statistics.median(values) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


async def run(incidents: int, per_incident: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        async with Store(Path(tmp) / "engine.sqlite") as store:
            started = time.perf_counter()
            for n in range(incidents):
                store.record(record(n, per_incident), [], T0 + n)
            store.commit()
            print(
                f"store: {incidents} open incidents, {incidents * per_incident} active alarms"
                f" in their records, written in {time.perf_counter() - started:.1f} s"
            )
            pipeline = Pipeline(
                topology_from_dict(example_topology()), load_rulesets(None), load_core_settings(None)
            )
            started = time.perf_counter()
            fill_alarms(pipeline, incidents * per_incident)
            print(
                f"pipeline: {len(pipeline.alarms)} active alarms put in its alarm table directly"
                f" (no correlation), in {time.perf_counter() - started:.1f} s"
            )
            time_history(pipeline, repeat)
            try:
                await serve_and_time(StoreCore(store, pipeline), incidents, repeat)
            finally:
                pipeline.close()


class LoopWatch:
    """How long the event loop went without running a 1 ms timer: its longest stall while a load
    ran. A blocked loop shows as a stall as long as the blocking call."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now

    def __enter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def serve_and_time(core: StoreCore, incidents: int, repeat: int) -> None:
    """The index's reads, then the pages over the real HTTP API."""
    index = IncidentIndex(core)
    started = time.perf_counter()
    with LoopWatch() as watch:
        await index.full_read()
    assert len(index.rows) == incidents, len(index.rows)
    seconds = index.last_full_read.seconds if index.last_full_read else 0.0
    print(
        f"index, first full read (thread):   {(time.perf_counter() - started) * 1000:7.1f} ms"
        f"   ({seconds * 1000:.1f} ms in the thread; longest event-loop stall"
        f" {watch.longest * 1000:.1f} ms)"
    )
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        index.refresh()
        times.append(time.perf_counter() - started)
    print(f"index, refresh with nothing new:   {_ms(times)}")
    times = []
    for _ in range(max(3, repeat // 5)):
        started = time.perf_counter()
        await index.full_read()
        times.append(time.perf_counter() - started)
    print(f"index, full read, nothing new:     {_ms(times)}   (every 60 s while a browser watches)")
    async with HttpApi(HttpSettings(port=0), core, Metrics(version="bench", receivers=[])) as api:
        base = f"http://127.0.0.1:{api.port}"
        async with aiohttp.ClientSession(base) as http:
            await first_view(http)
            pages = {
                "GET /ui/ (page 1 of 50 rows)": "/ui/",
                "GET /ui/?priority=1&region=south": "/ui/?priority=1&region=south",
                "GET /ui/?page=60": "/ui/?page=60",
                "GET /ui/incidents/{id} (detail)": f"/ui/incidents/inc-{incidents // 2:016x}",
                "GET /ui/alarms (page 1 of 100 rows)": "/ui/alarms",
                "GET /ui/alarms?severity=critical": "/ui/alarms?severity=critical",
                "GET /ui/alarms?element=olt-01&page=3": "/ui/alarms?element=olt-01&page=3",
            }
            for label, path in pages.items():
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    async with http.get(path) as r:
                        body = await r.read()
                        assert r.status == 200, (path, r.status)
                    times.append(time.perf_counter() - started)
                print(f"{label:<35} {_ms(times)}   {len(body) / 1024:6.1f} KiB")


async def first_view(http: aiohttp.ClientSession) -> None:
    """The first ``GET /ui/`` after a start (it loads the index), with ``GET /healthz`` asked every
    10 ms meanwhile: how many were answered before it, and how fast."""
    done = asyncio.Event()
    answered: list[float] = []

    async def health() -> None:
        while not done.is_set():
            started = time.perf_counter()
            async with http.get("/healthz") as r:
                await r.read()
            answered.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)

    prober = asyncio.create_task(health())
    started = time.perf_counter()
    with LoopWatch() as watch:
        async with http.get("/ui/") as r:
            await r.read()
            assert r.status == 200, r.status
    elapsed = time.perf_counter() - started
    done.set()
    during = len(answered)
    await prober
    print(f"GET /ui/ first (loads the index):  {elapsed * 1000:7.1f} ms")
    print(
        f"  meanwhile: {during} GET /healthz answered, slowest {max(answered[:during] or [0]) * 1000:.1f} ms;"
        f" longest event-loop stall {watch.longest * 1000:.1f} ms"
    )


def time_history(pipeline: Pipeline, repeat: int) -> None:
    """The KQI charts' history at its series limit, 1,000 series, with 1,000 then 10,000 series in
    the windows (element scopes, 3 metrics, 5 minutes of samples every 10 s), collected as the
    dashboard does every 20 s (on the loop: it walks every series the windows hold)."""
    windows = pipeline.quality.windows
    olts = [e for e in pipeline.topology.elements if e.startswith("olt-")]
    t_end = T0 + 300
    done = 0
    for scopes in (334, 3334):
        for i in range(done, scopes):
            scope = f"ne:{olts[i % len(olts)]}/voip{i // len(olts) or ''}"
            for k in range(30):
                t = T0 + 10 * k
                for metric, value in (("latency_ms", 40.0 + k), ("jitter_ms", 4.0), ("loss_pct", 0.1)):
                    windows.observe(scope, metric, value, t)
        done = scopes
        history = QualityHistory()
        started = time.perf_counter()
        history.collect(windows.held(), t_end)
        first = time.perf_counter() - started
        times = []
        for i in range(repeat):
            started = time.perf_counter()
            history.collect(windows.held(), t_end + 20 * (i + 1))
            times.append(time.perf_counter() - started)
        print(
            f"chart history: {history.series_count} series kept, {scopes * 3} in the windows"
            f" ({len(windows)} samples); first collection {first * 1000:.1f} ms, then {_ms(times)}"
        )
    windows.expire(t_end + 3600)  # the pages that follow do not need them


def fill_alarms(pipeline: Pipeline, n: int) -> None:
    """``n`` active alarms on the example network's OLTs, straight into the alarm table."""
    olts = [e for e in pipeline.topology.elements if e.startswith("olt-")]
    severities = ("critical", "major", "minor", "warning")
    for i in range(n):
        ne = olts[i % len(olts)]
        t = T0 + i * 0.01
        alarm = Alarm.model_validate(
            {
                "ne_id": ne,
                "severity": severities[i % 4],
                "probable_cause": "highTemperature",
                "specific_problem": f"sensor {i}",
                "event_type": "environmentalAlarm",
                "event_time": t,
            }
        )
        pipeline.alarms.apply(alarm, t)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench dashboard", description=__doc__.split("\n")[0])
    parser.add_argument("--incidents", type=int, default=5000)
    parser.add_argument("--alarms-per-incident", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    if args.incidents < 1 or args.alarms_per_incident < 1 or args.repeat < 1:
        parser.error("--incidents, --alarms-per-incident and --repeat must be at least 1")
    configure_logging(LoggingSettings(level="warning"))
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    asyncio.run(run(args.incidents, args.alarms_per_incident, args.repeat))
    return 0
