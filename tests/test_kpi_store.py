"""The KPI store: a batch taken in one go (in time order, none older than anything seen) leaves the
same state as its samples taken one by one, and so does any other batch."""

from __future__ import annotations

import random
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


def names_of(batch: list[SampleRow]) -> frozenset[str] | None:
    """The metric names every row of the batch carries, when all carry the same (what the decoder
    gives as ``Decoded.metric_names``)."""
    sets = {frozenset(r["metrics"]) for r in batch}
    return sets.pop() if len(sets) == 1 else None


def random_batches(rng: random.Random) -> list[list[SampleRow]]:
    """Batches over three targets and four metrics: the same metrics in a whole batch or not, in
    shuffled orders, times mostly rising with some equal, older and unsorted ones."""
    t = 100.0
    batches = []
    for _ in range(rng.randint(1, 12)):
        uniform = rng.random() < 0.6
        shared = rng.sample("wxyz", rng.randint(1, 4))
        batch = []
        for _ in range(rng.randint(1, 5)):
            t += rng.choice([0.0, 0.5, 1.0, 1.0, -2.5])
            names = rng.sample(shared, len(shared)) if uniform else rng.sample("wxyz", rng.randint(1, 4))
            metrics = {m: float(rng.randint(0, 99)) for m in names}
            batch.append(row(rng.choice(["p1", "p2"]), rng.choice("abc"), t, **metrics))
        batches.append(batch)
    return batches


@pytest.mark.parametrize("seed", range(300))
def test_any_batches_leave_what_their_samples_one_by_one_leave(seed: int) -> None:
    """Random batches (whole targets, targets whose metrics came in several samples, older and
    unsorted samples, the batch's metric names given when all its rows carry the same): the state
    is the plain reference's, and the snapshot is the same, in the same order, whether the batches
    are taken whole (with their names), sample by sample, or with a snapshot restored midway."""
    batches = random_batches(random.Random(seed))
    whole = KpiStore()
    for batch in batches:
        whole.observe_many(batch, names_of(batch))
    single = batched([[r] for batch in batches for r in batch])
    assert state(whole) == reference(batches)
    assert whole.dump() == single.dump()
    assert len(whole) == len(single) == len(reference(batches)[0])
    half = len(batches) // 2
    restored = KpiStore()
    restored.load(batched(batches[:half]).dump())
    for batch in batches[half:]:
        restored.observe_many(batch, names_of(batch))
    assert restored.dump() == whole.dump()


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_a_steady_batch_is_taken_without_a_step_per_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once every target holds exactly the metrics a batch's rows all carry, an in-order batch is
    taken in one update (no ``_take`` per sample), and its rows are what the store keeps."""
    store = KpiStore()
    first = [row("p1", "a", 1.0, x=1.0, y=2.0), row("p1", "b", 1.0, y=3.0, x=4.0)]
    store.observe_many(first, frozenset("xy"))
    steady = [row("p2", "b", 2.0, x=5.0, y=6.0), row("p2", "a", 2.0, y=7.0, x=8.0)]

    def no_step(*_: Any) -> None:
        raise AssertionError("a step per sample")

    monkeypatch.setattr(store, "_take", no_step)
    store.observe_many(steady, frozenset("xy"))
    assert state(store) == reference([first, steady])
    assert store.latest("a")["x"].value == 8.0
    assert store.latest("a")["x"].probe_id == "p2"
