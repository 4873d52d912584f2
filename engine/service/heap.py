"""Python's garbage collector, kept out of the latency path of ``engine run``.

CPython 3.11 collects in three generations. The young ones (0 and 1) hold what was allocated since
the last few collections and cost little. A *full* collection (generation 2) walks every container
the process holds that is not frozen, and runs on its own whenever the containers that survived
since the last one reach a quarter of those it found then. During an alarm storm the core's state
grows by about fifty containers per incident (alarm, incident, assessment, impact, records), so the
heap keeps growing by that quarter and full collections follow each other: measured on the daemon
with 10,000 incidents open, pauses of 68 → 393 ms each, every half second or so, collecting
nothing (docs/performance.md, "Goal 3's latency, measured again"). Every message that arrives
meanwhile waits.

``FullCollections`` takes the full collections over:

* ``start()``: one full collection, then ``gc.freeze()`` (the topology, the rules and the recovered
  state are never walked again: see ``freeze_heap``), and generation 2's threshold set out of
  reach, so that CPython never starts a full collection by itself. Generations 0 and 1 run as
  before: the cycles that die young (nearly all: 727 objects in cycles over 20,000 messages, the
  rest freed by reference counting) are still collected at once.
* ``due(idle=...)``: a full collection is due once ``interval`` has passed and the daemon is idle
  (its intake empty at that moment), or once twice the interval has passed whatever the load. The
  daemon's core task asks between batches, and runs it itself (one writer: the pause falls between
  batches, never inside one). Under a steady feed the intake is empty between most batches, so
  this does not avoid the pause: it makes it one per ``interval`` (about 0.7 µs per object the
  core holds, unfrozen: 68–393 ms with 100,000–530,000 of them) instead of one every half second
  or so while the state grows.
* ``stop()``: Python's thresholds as they were.

What it costs: cycles that outlive generation 1 wait for the next full collection (at most twice
``interval``); their memory with them (75 objects in cycles after 290 incidents opened and
resolved). ``gc_full_interval: 0`` keeps Python's own schedule.

A cluster member (engine/service/cluster.py) has a core task per partition, none of which speaks
for the process: ``collect_periodically`` runs there, a task that looks every second and collects
once ``interval`` has passed, between the loop's other callbacks.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

import structlog

NEVER = 2**31 - 1  # generation 2's threshold: CPython counts generation-1 collections up to it

log = structlog.get_logger("engine.heap")


def freeze_heap() -> None:
    """Hide every object alive now from the garbage collector (``gc.freeze``), after one collection.

    The topology is static and holds most of the process's containers: at 1,000,000 customers one
    full collection walks about 600,000 of them, 200-310 ms of CPU in the core task, and frees none
    (docs/performance.md, "Topology load"). Frozen objects are still freed by reference counting;
    only reference cycles among them would stay, hence a reload unfreezes and freezes again."""
    gc.collect()
    gc.freeze()


class FullCollections:
    """Full garbage collections at the daemon's pace (see the module docstring)."""

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval}")
        self.interval = interval
        self._clock = clock
        self._last = clock()
        self._saved: tuple[int, int, int] | None = None
        self.collections = 0  # full collections run here
        self.collected = 0  # objects they found unreachable
        self.seconds = 0.0  # the time they took

    @property
    def active(self) -> bool:
        return self._saved is not None

    def start(self) -> None:
        freeze_heap()
        self._last = self._clock()
        if self.interval > 0 and self._saved is None:
            self._saved = gc.get_threshold()
            gc.set_threshold(self._saved[0], self._saved[1], NEVER)

    def stop(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None

    def due(self, *, idle: bool) -> bool:
        if self._saved is None:
            return False
        waited = self._clock() - self._last
        return waited >= 2 * self.interval or (idle and waited >= self.interval)

    def collect(self) -> tuple[int, float]:
        """One full collection now, logged: (objects found unreachable, seconds it took)."""
        started = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - started
        self._last = self._clock()
        self.collections += 1
        self.collected += found
        self.seconds += took
        log.info("full garbage collection", unreachable=found, seconds=round(took, 4))
        return found, took


async def collect_periodically(heap: FullCollections, *, step: float = 1.0) -> None:
    """Run ``heap``'s full collections from a task of their own: every ``step`` seconds, one if due
    (a process with no single core task to ask between batches: the cluster's member)."""
    while True:
        await asyncio.sleep(step)
        if heap.due(idle=True):
            heap.collect()
