"""The ``neighbour`` relation under a storm on every dependent of one hub (a star), beside ``same_site``.

The network is a star: one hub and ``N`` leaves depending on it, all at one site. The storm is one
root (``equipmentMalfunction`` on the first leaf) and a ``linkDown`` on every leaf, one a millisecond,
replayed through the whole core (``engine replay``'s ``Replayer``) under one correlate rule: root
``equipmentMalfunction``, symptom ``linkDown``, relation ``neighbour`` (``--hops``) or ``same_site``
(every leaf is at the root's site; every other leaf is its sibling). Every other leaf is explained
by the root under both rules, which is checked; the root's own leaf's ``linkDown`` is explained
under ``same_site`` only (one element is no neighbour of itself), so the records differ by one.

Each run is a fresh interpreter (``--run`` in a child process), so the peak resident memory
(``VmHWM``) is that run's; its CPU time (``time.process_time``) covers the replay only, not the
imports nor building the topology. The figures are medians of ``--repeat`` runs.

``python -m bench neighbour`` (defaults: 500, 2,000 and 10,000 leaves, hops 2, 3 runs each).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Any

import orjson

from bench.scenarios import alarm
from bench.topology import _peak_mib
from engine.core.pipeline import Pipeline
from engine.model.topology import topology_from_dict
from engine.rules.schema import ruleset_from_data
from engine.tools.replay import Replayer, dumps

RELATIONS = ("neighbour", "same_site")


def star(leaves: int) -> dict[str, Any]:
    """A hub and ``leaves`` elements depending on it, all at site ``s``."""
    elements: list[dict[str, Any]] = [{"id": "hub", "type": "agg", "site": "s"}]
    elements += [
        {"id": f"leaf-{i}", "type": "olt", "site": "s", "depends_on": ["hub"]} for i in range(leaves)
    ]
    return {"elements": elements}


def storm(leaves: int) -> list[bytes]:
    """The root on ``leaf-0``, then a link-down on every leaf, a millisecond apart."""
    lines = [alarm("leaf-0", "equipmentMalfunction", 0.0, "critical")]
    lines += [alarm(f"leaf-{i}", "linkDown", 0.001 * (i + 1)) for i in range(leaves)]
    return [orjson.dumps(x) for x in lines]


def run_once(leaves: int, relation: str, hops: int) -> dict[str, Any]:
    """Replay the storm in this process; CPU seconds of the replay, peak RSS (MiB), symptoms."""
    correlate: dict[str, Any] = {
        "root": {"probable_cause": "equipmentMalfunction"},
        "symptom": {"probable_cause": "linkDown"},
        "relation": relation,
        "window": 60,
    }
    if relation == "neighbour":
        correlate["hops"] = hops
    rs = ruleset_from_data({"name": "b", "rules": [{"name": "r", "correlate": correlate}]}, "<bench>")
    pipeline = Pipeline(topology_from_dict(star(leaves)), [rs])
    lines = storm(leaves)
    records: list[bytes] = []
    start = time.process_time()
    Replayer(pipeline, emit=lambda r: records.append(dumps(r))).run(lines)
    cpu = time.process_time() - start
    explained = sum(
        1 for i in range(1, leaves) if pipeline.incidents.suppression(f"leaf-{i}:linkDown") is not None
    )
    pipeline.close()
    peak = _peak_mib()
    return {"cpu": cpu, "peak_mib": peak, "records": len(records), "explained": explained}


def _child(leaves: int, relation: str, hops: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.neighbour", "--run", str(leaves), relation, str(hops)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = orjson.loads(out)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench neighbour", description=__doc__.split("\n\n")[0])
    p.add_argument("--leaves", default="500,2000,10000", help="star sizes, comma-separated")
    p.add_argument("--hops", type=int, choices=(2, 3), default=2)
    p.add_argument("--repeat", type=int, default=3, help="figures are the median of this many runs")
    p.add_argument("--run", nargs=3, metavar=("LEAVES", "RELATION", "HOPS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run:
        print(orjson.dumps(run_once(int(args.run[0]), args.run[1], int(args.run[2]))).decode())
        return 0
    try:
        sizes = [int(x) for x in args.leaves.split(",")]
    except ValueError:
        p.error(f"--leaves must be comma-separated integers, got {args.leaves!r}")
    if args.repeat < 1 or any(n < 1 for n in sizes):
        p.error("--repeat and every --leaves size must be at least 1")
    print(f"star storm: 1 root and a link-down on every leaf; median of {args.repeat} fresh runs")
    print(f"{'leaves':>7}  {'relation':<12} {'CPU s':>8} {'peak MiB':>9} {'records':>8}")
    for n in sizes:
        for relation in RELATIONS:
            runs = [_child(n, relation, args.hops) for _ in range(args.repeat)]
            label = f"neighbour:{args.hops}" if relation == "neighbour" else relation
            cpu = statistics.median(r["cpu"] for r in runs)
            peak = statistics.median(r["peak_mib"] for r in runs)
            if any(r["explained"] != n - 1 for r in runs):
                print(
                    f"{label} on {n} leaves explained {runs[0]['explained']} of {n - 1} leaves",
                    file=sys.stderr,
                )
                return 1
            print(f"{n:>7}  {label:<12} {cpu:>8.3f} {peak:>9.1f} {runs[0]['records']:>8}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
