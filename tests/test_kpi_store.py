"""The KPI store: a batch taken in one go (in time order, none older than anything seen) leaves the
same state as its samples taken one by one, and so does any other batch."""

from __future__ import annotations

from typing import Any

import pytest

from engine.core.kpi import KpiStore
from engine.model.messages import SampleRow


def row(probe: str, target: str, t: float, **metrics: float) -> SampleRow:
    return {"probe_id": probe, "target": target, "time": t, "metrics": metrics}


def state(store: KpiStore) -> tuple[Any, ...]:
    dump = store.dump()
    readings = {(t, m): (v, at, probe) for t, m, v, at, probe, _, _ in dump["latest"]}
    return readings, dump["probes"], store.samples, store.late


def reference(batches: list[list[SampleRow]]) -> tuple[Any, ...]:
    """What the store keeps, sample by sample: each metric's newest value per target (a sample
    older than the newest held for its target is late for each metric held newer), each probe's
    newest time."""
    readings: dict[tuple[str, str], tuple[float, float, str]] = {}
    newest: dict[str, float] = {}
    probes: dict[str, float] = {}
    samples = late = 0
    for r in (r for batch in batches for r in batch):
        t, target = r["time"], r["target"]
        samples += 1
        probes[r["probe_id"]] = max(probes.get(r["probe_id"], t), t)
        older = t < newest.get(target, t)
        newest[target] = max(newest.get(target, t), t)
        for m, v in r["metrics"].items():
            if older and (target, m) in readings and readings[target, m][1] > t:
                late += 1
            else:
                readings[target, m] = (v, t, r["probe_id"])
    return readings, probes, samples, late


def batched(batches: list[list[SampleRow]]) -> KpiStore:
    store = KpiStore()
    for batch in batches:
        store.observe_many(batch)
    return store


FIRST = [row("p1", "a", 10.0, x=1.0, y=2.0), row("p2", "b", 10.0, x=3.0), row("p1", "a", 11.0, y=5.0)]
CASES = [
    pytest.param([FIRST], id="one-batch-in-order"),
    pytest.param([FIRST, [row("p1", "a", 11.0, x=7.0), row("p3", "c", 12.0, z=1.0)]], id="equal-times"),
    pytest.param([FIRST, [row("p1", "a", 9.0, x=9.0, z=4.0), row("p2", "b", 12.0, x=1.0)]], id="late-first"),
    pytest.param([FIRST, [row("p2", "b", 12.0, x=1.0), row("p1", "a", 10.5, y=9.0)]], id="unsorted"),
    pytest.param([FIRST, [row("p4", "a", 10.5, x=8.0, w=1.0)]], id="older-than-target-newer-than-probe"),
    pytest.param(
        [FIRST, [row("p1", "a", 12.0, z=1.0), row("p2", "b", 12.0, x=2.0), row("p1", "a", 12.5, x=3.0)]],
        id="in-order-every-target-held",
    ),
]


@pytest.mark.parametrize("batches", CASES)
def test_a_batch_leaves_what_its_samples_one_by_one_leave(batches: list[list[SampleRow]]) -> None:
    assert state(batched(batches)) == reference(batches)
    assert state(batched([[r] for batch in batches for r in batch])) == reference(batches)


def test_after_a_restore_an_older_batch_is_not_taken_as_in_order() -> None:
    """The newest time seen is restored with the store: a batch older than it after a restore is
    late for its target, as it would have been without the restore."""
    before = batched([FIRST])
    restored = KpiStore()
    restored.load(before.dump())
    late = [row("p1", "a", 10.5, y=1.0)]
    before.observe_many(late)
    restored.observe_many(late)
    assert restored.late == before.late == 1
    assert state(restored) == state(before) == reference([FIRST, late])
