"""The daemon with poison and a failing part of its core: incidents go on, health and metrics tell.

Real parts: a private Mosquitto, the daemon in this process, a webhook receiver, aiohttp.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from structlog.testing import capture_logs

from bench.scenarios import T0, alarm, clear
from engine.core.kqi import KqiState, KqiWindows
from engine.core.pipeline import Decisions, Pipeline
from engine.service.daemon import NO_PROGRESS, TICK_BACKOFF
from tests.daemon_harness import FAST_CORE, collecting, publish, running_daemon, until, with_prefix
from tests.mosquitto import Mosquitto

POISONED = "ne:olt-020/voip"


def _sample(t: float, latency_ms: float) -> dict[str, Any]:
    payload = {
        "probe_id": "p-1",
        "target": "olt-020",
        "service": "voip",
        "time": t,
        "metrics": {"latency_ms": latency_ms, "jitter_ms": 2.0, "loss_pct": 0.1},
    }
    return {"topic": "soc/probes/p-1", "payload": payload}


def _events(records: list[dict[str, Any]], root: str) -> list[str]:
    return [r["event"] for r in records if r["root_cause"]["ne_id"] == root]


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
async def test_poison_samples_and_a_failing_kqi_window_never_stop_incident_handling(
    tmp_path: Path, mosquitto: Mosquitto, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two 1e308 latency samples are dead-lettered naming the metric and its range. A KQI window
    whose evaluation raises every time (a fault injected into that part) is quarantined: a dead
    letter names it, /readyz lists it, ``soc_core_quarantined`` counts it, and it is retried with
    a backoff, not on every tick. Meanwhile a fiber cut opens, is updated and resolves, and
    /healthz and /metrics answer."""
    original = KqiWindows.evaluate

    def evaluate(self: KqiWindows, scope: str, service: str, now: float) -> list[KqiState]:
        if scope == POISONED:
            raise OverflowError("intermediate overflow in fsum")
        return original(self, scope, service, now)

    monkeypatch.setattr(KqiWindows, "evaluate", evaluate)
    core = {**FAST_CORE, "quality": {"evaluate_every": "1s"}}
    async with (
        running_daemon(tmp_path, broker_url=mosquitto.url, prefix=topic_prefix, extra={"core": core}) as (
            daemon,
            rx,
        ),
        collecting(mosquitto.url, f"{topic_prefix}/deadletter") as dead,
        aiohttp.ClientSession(f"http://127.0.0.1:{daemon.http.port if daemon.http else 0}") as http,
    ):
        now = time.time()
        poison = [_sample(now, 1e308), _sample(now + 0.1, 1e308)]
        healthy = [_sample(now + 0.2 + i * 0.1, 20.0) for i in range(3)]
        await publish(mosquitto.url, with_prefix([*poison, *healthy], topic_prefix))
        await until(
            lambda: any(d["topic"] == f"<core:quality[{POISONED}]>" for d in dead),
            timeout=20,
            what="the quarantine's dead letter",
        )
        refused = [e for d in dead for e in d["errors"] if e["field"] == "metrics.latency_ms"]
        assert [e["reason"] for e in refused] == ["1e+308 is outside the allowed range 0 to 3.6e+06 ms"] * 2
        fault = next(d for d in dead if d["topic"] == f"<core:quality[{POISONED}]>")
        assert fault["quarantine"]["error"] == "OverflowError: intermediate overflow in fsum"
        assert fault["payload"].startswith(f"KQI window {POISONED}: ")

        # An ordinary fiber cut, on the wall clock, right after.
        t = time.time() - T0
        storm = [alarm(f"olt-{i:03d}", "linkDown", t + i * 0.01, "critical") for i in range(1, 11)]
        root = alarm("agg-3", "lossOfSignal", t + 0.05, "critical", sp="port 1/1/1")
        await publish(mosquitto.url, with_prefix([*storm, root], topic_prefix))
        await asyncio.wait_for(rx.wait_until(lambda r: "opened" in _events(r.records, "agg-3")), 20)
        late = alarm("olt-030", "linkDown", time.time() - T0, "critical")
        await publish(mosquitto.url, with_prefix([late], topic_prefix))
        await asyncio.wait_for(rx.wait_until(lambda r: "updated" in _events(r.records, "agg-3")), 20)

        # Health, readiness and metrics while the window is quarantined.
        started = time.monotonic()
        async with http.get("/healthz") as r:
            assert r.status == 200
        assert time.monotonic() - started < 5
        async with http.get("/readyz") as r:
            body = await r.json()
            assert r.status == 200
            assert [(d["part"], d["item"]) for d in body["degraded"]] == [("quality", POISONED)]
        async with http.get("/metrics") as r:
            text = await r.text()
        assert 'soc_core_quarantined{part="quality"} 1.0' in text
        assert 'soc_core_part_failures_total{part="quality"}' in text

        tc = time.time() - T0
        clears = [clear("agg-3", "lossOfSignal", tc, sp="port 1/1/1")]
        clears += [clear(f"olt-{i:03d}", "linkDown", tc + 0.01) for i in (*range(1, 11), 30)]
        await publish(mosquitto.url, with_prefix(clears, topic_prefix))
        await asyncio.wait_for(rx.wait_until(lambda r: "resolved" in _events(r.records, "agg-3")), 20)
        assert _events(rx.records, "agg-3")[0] == "opened"

        # Retried with a backoff (1, 2, 4 … s), never in a tight loop.
        failures = daemon.pipeline.quarantine.failures
        assert 1 <= failures <= 8, failures


async def test_orphan_clears_and_skewed_times_are_counted_and_logged_rate_limited(tmp_path: Path) -> None:
    """Over HTTP into the real daemon: 20 clears that match nothing and an alarm stamped 2036.
    ``soc_input_notices_total`` counts each kind; the log has the first 5 clears, then one line
    saying how many were suppressed; the 2036 alarm is logged as clamped, and its clear (with the
    right time) resolves its incident."""
    async with running_daemon(tmp_path, broker_url=None, prefix="clock") as (daemon, rx):
        daemon._log_interval = 0.5  # 5 lines a minute by default
        assert daemon.http is not None
        now = time.time()
        clears = [
            {"ne_id": f"olt-{i:03d}", "severity": "cleared", "probable_cause": "linkDown", "event_time": now}
            for i in range(1, 21)
        ]
        future = {"ne_id": "agg-3", "severity": "critical", "probable_cause": "lossOfSignal"}
        with capture_logs() as logs:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{daemon.http.port}") as http:
                body = b"".join(orjson.dumps(c) + b"\n" for c in clears)
                headers = {"Content-Type": "application/x-ndjson"}
                async with http.post("/events", data=body, headers=headers) as r:
                    assert r.status == 202, await r.text()
                async with http.post("/events", json={**future, "event_time": "2036-01-01T00:00:00Z"}) as r:
                    assert r.status == 202
                await asyncio.wait_for(rx.wait_until(lambda r: "opened" in _events(r.records, "agg-3")), 20)
                cleared = {**future, "severity": "cleared", "event_time": time.time()}
                async with http.post("/events", json=cleared) as r:
                    assert r.status == 202
                await asyncio.wait_for(rx.wait_until(lambda r: "resolved" in _events(r.records, "agg-3")), 20)
                await until(
                    lambda: any(e["event"] == "log lines suppressed" for e in logs),
                    timeout=10,
                    what="summary",
                )
                async with http.get("/metrics") as r:
                    text = await r.text()
    assert 'soc_input_notices_total{kind="clear_unknown"} 20.0' in text
    assert 'soc_input_notices_total{kind="clock_ahead"} 1.0' in text
    orphan_lines = [e for e in logs if e["event"] == "clear matches no alarm"]
    assert len(orphan_lines) == 5
    assert orphan_lines[0]["alarm"] == "olt-001:linkDown"
    (summary,) = [e for e in logs if e["event"] == "log lines suppressed"]
    assert (summary["what"], summary["suppressed"]) == ("notice:clear_unknown", 15)
    (clamped,) = [e for e in logs if e["event"].startswith("event time ahead")]
    assert clamped["event_time"] == "2036-01-01T00:00:00.000Z"


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
async def test_a_tick_that_always_raises_never_spins_nor_blocks_intake_health_or_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure outside every contained part (here: the whole ``Pipeline.tick`` raises, so the due
    timer never moves) used to be retried back to back: 10,000 failing ticks before the core task
    slowed down, intake unread, /healthz timing out. Now the core task ticks at most once a second
    while the timer makes no progress, reads its intake in between (messages are applied and their
    incidents open), and /healthz and /metrics answer at once."""
    calls: list[tuple[float, float | None]] = []  # (now, the due time the tick was to reach)

    def tick(self: Pipeline, now: float) -> Decisions:
        calls.append((now, self.next_due()))
        raise RuntimeError("injected: every tick fails")

    async with running_daemon(tmp_path, broker_url=None, prefix="spin") as (daemon, _rx):
        assert daemon.http is not None
        monkeypatch.setattr(Pipeline, "tick", tick)
        timeout = aiohttp.ClientTimeout(total=10)  # a stalled core must fail the test, not hang it
        async with aiohttp.ClientSession(f"http://127.0.0.1:{daemon.http.port}", timeout=timeout) as http:
            raise_ = {"ne_id": "agg-3", "severity": "critical", "probable_cause": "lossOfSignal"}
            async with http.post("/events", json={**raise_, "event_time": time.time()}) as r:
                assert r.status == 202
            # The incident's settle timer falls due; every tick fails; intake goes on.
            await until(lambda: len(calls) >= 1, timeout=10, what="a failing tick")
            started = time.monotonic()
            for i in range(1, 6):
                event = {"ne_id": f"olt-{i:03d}", "severity": "major", "probable_cause": "linkDown"}
                async with http.post("/events", json={**event, "event_time": time.time()}) as r:
                    assert r.status == 202
            async with http.get("/healthz") as r:
                assert r.status == 200
            async with http.get("/metrics") as r:
                text = await r.text()
            assert time.monotonic() - started < 5
            assert 'soc_messages_total{kind="alarm",outcome="accepted",source="http"} 6.0' in text
            await asyncio.sleep(3)
    # At one due time, NO_PROGRESS + 1 ticks back to back, then one every TICK_BACKOFF (the new alarms
    # move the due time, which starts another run); on the daemon's clock, so a loaded machine only
    # spaces them more. A retry loop makes thousands.
    span = calls[-1][0] - calls[0][0]
    assert len(calls) <= 10 + span, f"{len(calls)} ticks in {span:.1f} s: retried in a loop"
    run = 0
    for (before, due_before), (now, due) in itertools.pairwise(calls):
        run = run + 1 if due == due_before else 0
        if run > NO_PROGRESS:
            assert now - before >= TICK_BACKOFF - 0.001, f"ticks {now - before:.3f} s apart at due {due}"
