"""Benchmark the topology loader and impact (from scratch and incremental) on a synthetic national network.

The generated network is a tree with redundancy: a few core routers in pairs (each pair fed by a
data-centre power element), aggregation switches in pairs depending on a core pair, sites with one
power element and a few access elements (OLT, DSLAM, cell) each depending on their aggregation pair
(any-of) and the site power, and platform elements (SBC and IMS for voip, middleware and head-end
for iptv) depending on the first core pair. Customers are spread uniformly over access elements with
skewed tiers and one to three services. Everything is seeded: the same options give the same file.

Run ``python -m bench.topology`` (defaults: 50,000 elements, 1,000,000 customers). The file is written
three times: with the customers listed one by one (``customers``) and converted by ``engine topology
compact`` into the compact form (``customers_by_access``) and into the earlier compact form
(``customer_groups``); the loads are timed in turn, each ``--repeat`` times, so that all see the same
machine. The figure is the compact form's, the others beside it. Each load is also run once in a
fresh interpreter to report its resident memory without the generator's garbage. The impact
measurements use the compact form's topology (the same topology).
Times are CPU times of this process (``time.process_time``: steady on a shared machine), the wall
time beside the load's.

The first impact's index (per-access customer totals, built once per topology) and the service
quality's set-up (``ServiceQuality``, what a pipeline builds at its start) are each timed once: they
follow the load at an engine's start.

Impact is measured two ways. *From scratch*: ``compute_impact`` on a few named elements (what
``engine whatif`` does). *Incremental*, as the running engine does it: for every element in turn
(``--sample N``: N of them, evenly spaced in file order), the element goes down (its own state
changes, ``LiveHealth.changed`` pushes the change down the graph) and its incident's impact is read
(``LiveHealth.impact``), then it comes back up (not timed). Printed: p50, p99 and the maximum of
that time over the elements, alone and with ``--unhealthy`` other elements (access elements chosen
at random, each degraded) unhealthy at the same time, and the time of a second read of the same
impact while nothing in its cone changed (an incident re-assessed for another reason). A full garbage
collection walks every container of the topology (about 230 ms at 1M customers); those that fall
inside the measurements are counted and shown. The time of one full collection is also printed with
the heap frozen (``gc.freeze``), as ``engine run`` freezes it once started.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from engine.core.impact import Health, LiveHealth, compute_impact
from engine.core.quality import ServiceQuality
from engine.core.settings import QualitySettings
from engine.model.topology import Topology, load_topology
from engine.tools.topology import compact_file

TIERS = (("platinum", 0.02), ("gold", 0.10), ("silver", 0.28), ("bronze", 0.60))
SERVICE_SETS = (
    (("internet",), 0.30),
    (("internet", "voip"), 0.25),
    (("internet", "iptv"), 0.15),
    (("internet", "voip", "iptv"), 0.20),
    (("voip",), 0.05),
    (("iptv",), 0.03),
    (("voip", "iptv"), 0.02),
)
ACCESS_TYPES = ("olt", "dslam", "cell")
SITES_PER_AGG_PAIR = 10
ACCESS_PER_SITE = 4
REGIONS = ("north", "south", "east", "west", "centre", "coast", "mountain", "islands")


def generate(n_elements: int, n_customers: int, seed: int) -> dict[str, Any]:
    """A topology document with exactly ``n_elements`` elements (at least 14) and ``n_customers``."""
    rng = random.Random(seed)
    elements: list[dict[str, Any]] = [
        {"id": "pwr-dc-1", "type": "power", "site": "dc-1", "region": "centre"},
        {"id": "pwr-dc-2", "type": "power", "site": "dc-2", "region": "centre"},
    ]
    for i in range(1, 5):
        dc = f"dc-{(i + 1) // 2}"
        elements.append(
            {"id": f"core-{i}", "type": "router", "site": dc, "region": "centre", "depends_on": [f"pwr-{dc}"]}
        )
    for ne, kind in (("sbc-1", "sbc"), ("ims-1", "ims"), ("mw-1", "middleware"), ("head-1", "headend")):
        elements.append(
            {"id": ne, "type": kind, "site": "dc-1", "region": "centre", "depends_on": [["core-1", "core-2"]]}
        )
    access: list[str] = []
    pair = 0
    while len(elements) < n_elements:
        pair += 1
        core = ["core-1", "core-2"] if pair % 2 else ["core-3", "core-4"]
        region = REGIONS[pair % len(REGIONS)]
        aggs = [f"agg-{pair}a", f"agg-{pair}b"]
        for agg in aggs:
            elements.append(
                {
                    "id": agg,
                    "type": "switch",
                    "site": f"agg-site-{pair}",
                    "region": region,
                    "depends_on": [core],
                }
            )
        for s in range(SITES_PER_AGG_PAIR):
            site = f"site-{pair}-{s}"
            elements.append({"id": f"pwr-{site}", "type": "power", "site": site, "region": region})
            for k in range(ACCESS_PER_SITE):
                kind = ACCESS_TYPES[k % len(ACCESS_TYPES)]
                ne = f"{kind}-{pair}-{s}-{k}"
                access.append(ne)
                elements.append(
                    {
                        "id": ne,
                        "type": kind,
                        "site": site,
                        "region": region,
                        "depends_on": [aggs, f"pwr-{site}"],
                    }
                )
    del elements[n_elements:]
    kept = {e["id"] for e in elements}  # cutting the tail is safe: upstreams always come first
    access = [ne for ne in access if ne in kept]
    tiers = rng.choices([t for t, _ in TIERS], [w for _, w in TIERS], k=n_customers)
    sets = rng.choices([s for s, _ in SERVICE_SETS], [w for _, w in SERVICE_SETS], k=n_customers)
    customers = []
    for i in range(n_customers):
        c: dict[str, Any] = {
            "id": f"c-{i:07d}",
            "tier": tiers[i],
            "access": rng.choice(access),
            "services": list(sets[i]),
        }
        if tiers[i] == "platinum":
            c["name"] = f"Enterprise {i}"
        customers.append(c)
    return {
        "service_types": {
            "voip": {"criticality": 5, "platform": ["sbc-1", "ims-1"]},
            "iptv": {"criticality": 2, "platform": ["mw-1", "head-1"]},
            "internet": {"criticality": 3},
        },
        "elements": elements,
        "customers": customers,
    }


def _median_seconds(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median CPU and wall seconds of ``repeat`` calls."""
    cpu, wall = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return statistics.median(cpu), statistics.median(wall)


def _percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of already sorted values."""
    return sorted_values[max(0, min(len(sorted_values) - 1, int(q * len(sorted_values) + 0.5) - 1))]


class FullCollections:
    """CPU seconds of each full (generation 2) garbage collection while in the ``with`` block."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.process_time()
        elif info["generation"] == 2:
            self.pauses.append(time.process_time() - self._start)

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def incremental(
    topology: Topology, elements: list[str], unhealthy: list[str]
) -> tuple[list[tuple[float, str]], list[float]]:
    """CPU seconds of one element going down and its impact read (sorted, with the element), and of
    a second read of the same impact, for each of ``elements``, with ``unhealthy`` degraded."""
    own: dict[str, Health] = dict.fromkeys(unhealthy, Health.DEGRADED)
    live = LiveHealth(topology, own)
    clock = time.process_time
    took: list[tuple[float, str]] = []
    again: list[float] = []
    for ne in elements:
        before = own.get(ne)
        start = clock()
        own[ne] = Health.DOWN
        live.changed(ne)
        impact = live.impact((ne,))
        middle = clock()
        if live.impact((ne,)) is not impact:
            raise AssertionError(f"the impact of {ne} was computed again though nothing changed")
        end = clock()
        took.append((middle - start, ne))
        again.append(end - middle)
        if before is None:
            del own[ne]
        else:
            own[ne] = before
        live.changed(ne)
    took.sort()
    again.sort()
    return took, again


def _rss_mib() -> float | None:
    """Current resident set size, from /proc (Linux); ``None`` elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _peak_mib() -> float:
    """This process's peak resident set size: ``VmHWM`` (Linux: since its ``exec``, unlike ``ru_maxrss``,
    which keeps the parent's peak at ``fork``), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def measure_load(path: str) -> dict[str, float | None]:
    """Run in a fresh interpreter: RSS before and after one load, and the peak during it."""
    gc.collect()
    before = _rss_mib()
    topology = load_topology(path)
    gc.collect()
    return {
        "before": before,
        "after": _rss_mib(),
        "peak": _peak_mib(),
        "customers": topology.customer_count(),
    }


def _measure_in_child(path: Path) -> dict[str, float | None]:
    child = subprocess.run(
        [sys.executable, "-m", "bench.topology", "--measure-load", str(path)],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    measured: dict[str, float | None] = orjson.loads(child.stdout)
    return measured


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.topology", description=__doc__.split("\n\n")[0])
    p.add_argument("--elements", type=int, default=50_000)
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3, help="timings are the median of this many runs")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--sample", type=int, default=0, metavar="N", help="incremental impact of N elements (default: all)"
    )
    p.add_argument(
        "--unhealthy",
        type=int,
        default=5000,
        metavar="N",
        help="other elements unhealthy in the second incremental run (default 5000)",
    )
    p.add_argument("--measure-load", metavar="FILE", help=argparse.SUPPRESS)  # the child process
    args = p.parse_args(argv)
    if args.measure_load:
        sys.stdout.write(orjson.dumps(measure_load(args.measure_load)).decode() + "\n")
        return 0
    if args.elements < 14 or args.customers < 0 or args.repeat < 1 or args.sample < 0 or args.unhealthy < 0:
        p.error("need --elements >= 14, --customers >= 0, --repeat >= 1, --sample >= 0, --unhealthy >= 0")

    rows: list[tuple[str, str]] = []
    start = time.process_time()
    doc = generate(args.elements, args.customers, args.seed)
    rows.append(("generate", f"{time.process_time() - start:.2f} s CPU"))
    with tempfile.TemporaryDirectory(prefix="bench-topology-") as tmp:
        path = Path(tmp) / "topology.json"
        path.write_bytes(orjson.dumps(doc))
        del doc
        gc.collect()
        compact, grouped = Path(tmp) / "compact.json", Path(tmp) / "grouped.json"
        start = time.process_time()
        compact_file(path, compact)
        rows.append(("engine topology compact", f"{time.process_time() - start:.2f} s CPU"))
        compact_file(path, grouped, "customer_groups")
        files = {"compact": compact, "groups": grouped, "listed": path}
        rows.append(
            (
                "file size: compact / groups / listed",
                " / ".join(f"{file.stat().st_size / 2**20:.1f} MiB" for file in files.values()),
            )
        )
        mem = {form: _measure_in_child(file) for form, file in files.items()}
        topology: Topology | None = None
        load_cpu: dict[str, list[float]] = {form: [] for form in files}
        wall: dict[str, list[float]] = {form: [] for form in files}
        for _ in range(args.repeat):  # in turn, so that every form sees the same load on the machine
            for form in ("listed", "groups", "compact"):  # the compact one kept
                topology = None
                gc.collect()
                start, start_cpu = time.perf_counter(), time.process_time()
                topology = load_topology(files[form])
                load_cpu[form].append(time.process_time() - start_cpu)
                wall[form].append(time.perf_counter() - start)
        labels = (
            ("compact", "compact form, customers_by_access"),
            ("groups", "earlier compact form, customer_groups"),
            ("listed", "customers listed"),
        )
        for form, label in labels:
            runs = " ".join(f"{c:.2f}" for c in load_cpu[form])
            median_cpu, median_wall = statistics.median(load_cpu[form]), statistics.median(wall[form])
            rows.append(
                (
                    f"load, {label} (median of {args.repeat})",
                    f"{median_cpu:.2f} s CPU ({median_wall:.2f} s wall)  [{runs}]",
                )
            )
    assert topology is not None
    for form in files:
        m = mem[form]
        if m["before"] is not None and m["after"] is not None:
            rows.append(
                (
                    f"RSS after load, {form} (fresh process)",
                    f"{m['after']:.0f} MiB ({m['before']:.0f} before; "
                    f"{m['after'] - m['before']:.0f} MiB retained)",
                )
            )
        rows.append((f"peak RSS during load, {form}", f"{m['peak']:.0f} MiB"))
    rows.append(("elements / customers", f"{len(topology.elements):,} / {topology.customer_count():,}"))
    rows.append(("customer groups", f"{len(topology.all_groups()):,}"))
    full, _ = _median_seconds(gc.collect, args.repeat)
    gc.freeze()  # as `engine run` does once started (engine.service.heap.freeze_heap)
    frozen, _ = _median_seconds(gc.collect, args.repeat)
    gc.unfreeze()  # the measurements below count the full collections that land in them
    rows.append(
        ("full garbage collection", f"{full * 1000:.0f} ms CPU; {frozen * 1000:.0f} ms with the heap frozen")
    )

    first_access = next(ne for ne, e in topology.elements.items() if e.type in ("olt", "dslam", "cell"))
    scenarios = (  # (label, elements down, the incident's seed)
        ("access", [first_access], first_access),
        ("aggregation (one of a pair)", ["agg-1a"], "agg-1a"),
        ("aggregation (both of a pair)", ["agg-1a", "agg-1b"], "agg-1a"),
        ("core router (platforms behind)", ["core-1"], "core-1"),
        ("core router (no platform)", ["core-3"], "core-3"),
        ("platform", ["sbc-1"], "sbc-1"),
    )
    start = time.process_time()
    compute_impact(topology, {}, ())  # builds the per-access totals once, as the first incident would
    rows.append(("impact index (first call)", f"{(time.process_time() - start) * 1000:.0f} ms CPU"))
    start = time.process_time()
    ServiceQuality(topology, QualitySettings(), element_alarms=True)  # a pipeline's, at its start
    rows.append(
        ("service quality's set-up (ServiceQuality)", f"{(time.process_time() - start) * 1000:.0f} ms CPU")
    )
    for label, down, seed in scenarios:
        own = dict.fromkeys(down, Health.DOWN)
        impact = compute_impact(topology, own, [seed])
        cpu, _ = _median_seconds(partial(compute_impact, topology, own, [seed]), max(args.repeat, 5))
        state, n_el = impact.state or "-", len(impact.elements)
        figures = f"{cpu * 1000:7.1f} ms  {state:8} {n_el:>6,} el {impact.customers:>9,} cust"
        rows.append((f"from scratch: {label}, {seed}", figures))

    names = list(topology.elements)
    step = max(1, len(names) // args.sample) if args.sample else 1
    measured = names[::step]
    access = [ne for ne, e in topology.elements.items() if e.type in ACCESS_TYPES]
    background = random.Random(args.seed).sample(access, min(args.unhealthy, len(access)))
    for label, unhealthy in (("alone", []), (f"{len(background):,} others unhealthy", background)):
        with FullCollections() as collections:
            each, again = incremental(topology, measured, unhealthy)
        values = [t for t, _ in each]
        worst_time, worst = each[-1]
        rows.append(
            (
                f"incremental, {len(measured):,} elements, {label}",
                f"p50 {_percentile(values, 0.5) * 1000:.3f} ms  p99 {_percentile(values, 0.99) * 1000:.3f} ms"
                f"  max {worst_time * 1000:.1f} ms ({worst})",
            )
        )
        pauses = collections.pauses
        rows.append(
            (
                "  full garbage collections meanwhile",
                f"{len(pauses)}, longest {max(pauses, default=0) * 1000:.0f} ms (counted in the times above)",
            )
        )
        rows.append(
            (
                "  the same impact read again",
                f"p50 {_percentile(again, 0.5) * 1e6:.1f} µs  p99 {_percentile(again, 0.99) * 1e6:.1f} µs",
            )
        )

    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
