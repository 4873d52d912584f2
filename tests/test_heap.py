"""engine/service/heap.py: Python's full garbage collections taken over by `engine run`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bench.scenarios import alarm
from engine.service.daemon import Daemon
from engine.service.heap import NEVER, FullCollections, collect_periodically
from tests.daemon_harness import settings, until, write_config


@pytest.fixture
def collector() -> Iterator[None]:
    """Python's collector as it was, whatever the test did to it."""
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        if enabled:
            gc.enable()


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.usefixtures("collector")
def test_start_freezes_and_moves_only_the_full_collections_out_of_reach() -> None:
    before = gc.get_threshold()
    heap = FullCollections(60.0, clock=_Clock())
    heap.start()
    assert heap.active
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (before[0], before[1], NEVER)  # generations 0 and 1 as before
    heap.stop()
    assert not heap.active
    assert gc.get_threshold() == before


@pytest.mark.usefixtures("collector")
def test_a_full_collection_is_due_after_the_interval_when_idle_and_after_twice_it_regardless() -> None:
    clock = _Clock()
    heap = FullCollections(60.0, clock=clock)
    assert not heap.due(idle=True)  # not started: Python's own schedule
    heap.start()
    clock.t += 59.0
    assert not heap.due(idle=True)
    clock.t += 1.0
    assert heap.due(idle=True)
    assert not heap.due(idle=False)  # busy: it waits for a quiet moment …
    clock.t += 60.0
    assert heap.due(idle=False)  # … at most twice the interval
    heap.collect()
    assert not heap.due(idle=True)
    assert heap.collections == 1


@pytest.mark.usefixtures("collector")
def test_collect_finds_cycles_that_outlived_the_young_generations() -> None:
    heap = FullCollections(60.0, clock=_Clock())
    heap.start()
    gc.disable()  # the cycles below must not be found by an automatic young collection first
    for _ in range(10):
        _Cycle()
    found, took = heap.collect()
    assert found >= 10
    assert took >= 0.0
    assert heap.collected == found


@pytest.mark.usefixtures("collector")
def test_an_interval_of_zero_leaves_pythons_schedule() -> None:
    before = gc.get_threshold()
    heap = FullCollections(0.0, clock=_Clock())
    heap.start()
    assert not heap.active
    assert gc.get_threshold() == before
    assert not heap.due(idle=True)
    with pytest.raises(ValueError, match="interval must be >= 0"):
        FullCollections(-1.0)


@pytest.mark.usefixtures("collector")
async def test_the_daemon_runs_the_full_collection_between_batches_when_idle(
    tmp_path: Path, topic_prefix: str
) -> None:
    """With a short interval, the core task runs full collections itself once its intake is empty,
    and goes on applying messages afterwards."""
    cfg = write_config(tmp_path, broker_url=None, prefix=topic_prefix, extra={"gc_full_interval": "50ms"})
    async with Daemon(settings(cfg)) as daemon:
        daemon.heap = heap = FullCollections(daemon.settings.gc_full_interval)
        heap.start()
        try:
            await until(lambda: heap.collections >= 2, timeout=10, what="two full collections")
            line = alarm("olt-001", "linkDown", 0, "critical")
            await daemon.ingest(daemon.alarm_topic(), orjson.dumps(line["payload"]), source="test")
            await until(lambda: daemon.pipeline.query.active_alarm_count() == 1, timeout=10, what="applied")
        finally:
            heap.stop()


@pytest.mark.usefixtures("collector")
async def test_collect_periodically_collects_once_the_interval_has_passed() -> None:
    """The cluster member's task: looks every ``step`` and collects once due, idle or not."""
    clock = _Clock()
    heap = FullCollections(60.0, clock=clock)
    heap.start()
    task = asyncio.create_task(collect_periodically(heap, step=0.01))
    try:
        await asyncio.sleep(0.05)
        assert heap.collections == 0
        clock.t += 60.0
        deadline = time.monotonic() + 5
        while heap.collections == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert heap.collections == 1
        await asyncio.sleep(0.05)
        assert heap.collections == 1  # the next one an interval later
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
