"""The ``neighbour`` relation under a storm on the leaves of a star or a tree, beside ``same_site``.

The network (``--shape``) is a star, one hub and ``N`` leaves depending on it, all at one site, or a
tree: a hub, aggregation switches below it (``--fan`` leaves each, each switch and its leaves at a
site of their own) and the ``N`` leaves. The storm (``--storm``) is ``root``: one root
(``equipmentMalfunction`` on the first leaf) and a ``linkDown`` on every leaf, one a millisecond;
or ``every``: a ``linkDown`` on every leaf, one a millisecond, each both a root and a symptom (N²
pairs on a star: every two leaves are neighbours). It is replayed through the whole core (``engine
replay``'s ``Replayer``) under one correlate rule: root ``equipmentMalfunction`` (and ``linkDown``
in the ``every`` storm), symptom ``linkDown``, relation ``neighbour`` (``--hops``) or ``same_site``
(every leaf is at its siblings' site, and its siblings are its neighbours within 2 or 3 links
among the leaves). The leaves explained are counted and must be the same under both rules (in
the ``root`` storm the root's own leaf is left out: one element is no neighbour of itself, but is
at its own site; on a star every other leaf, on a tree its siblings).

Each run is a fresh interpreter (``--run`` in a child process), so the peak resident memory
(``VmHWM``) is that run's; its CPU time (``time.process_time``) covers the replay only, not the
imports nor building the topology. The figures are medians of ``--repeat`` runs.

``python -m bench neighbour`` (defaults: a star, the ``root`` storm, 500, 2,000 and 10,000 leaves,
hops 2, 3 runs each); ``--hops 3 --leaves 2000,10000`` for the leaf storm at three links.
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


SHAPES = ("star", "tree")
STORMS = ("root", "every")


def star(leaves: int) -> dict[str, Any]:
    """A hub and ``leaves`` elements depending on it, all at site ``s``."""
    elements: list[dict[str, Any]] = [{"id": "hub", "type": "agg", "site": "s"}]
    elements += [
        {"id": f"leaf-{i}", "type": "olt", "site": "s", "depends_on": ["hub"]} for i in range(leaves)
    ]
    return {"elements": elements}


def tree(leaves: int, fan: int) -> dict[str, Any]:
    """A hub, ``ceil(leaves / fan)`` switches below it and ``fan`` leaves below each; a switch and
    its leaves at site ``s<switch>``."""
    switches = -(-leaves // fan)
    elements: list[dict[str, Any]] = [{"id": "hub", "type": "router", "site": "core"}]
    elements += [
        {"id": f"agg-{j}", "type": "agg", "site": f"s{j}", "depends_on": ["hub"]} for j in range(switches)
    ]
    elements += [
        {"id": f"leaf-{i}", "type": "olt", "site": f"s{i // fan}", "depends_on": [f"agg-{i // fan}"]}
        for i in range(leaves)
    ]
    return {"elements": elements}


def storm(leaves: int, kind: str = "root") -> list[bytes]:
    """``root``: the root on ``leaf-0``, then a link-down on every leaf, a millisecond apart;
    ``every``: the link-downs alone."""
    lines = [alarm("leaf-0", "equipmentMalfunction", 0.0, "critical")] if kind == "root" else []
    lines += [alarm(f"leaf-{i}", "linkDown", 0.001 * (i + 1)) for i in range(leaves)]
    return [orjson.dumps(x) for x in lines]


def run_once(
    leaves: int, relation: str, hops: int, *, shape: str = "star", kind: str = "root", fan: int = 100
) -> dict[str, Any]:
    """Replay the storm in this process; CPU seconds of the replay, peak RSS (MiB), leaves explained."""
    roots = ["equipmentMalfunction"] if kind == "root" else ["equipmentMalfunction", "linkDown"]
    correlate: dict[str, Any] = {
        "root": {"probable_cause": roots},
        "symptom": {"probable_cause": "linkDown"},
        "relation": relation,
        "window": 60,
    }
    if relation == "neighbour":
        correlate["hops"] = hops
    rs = ruleset_from_data({"name": "b", "rules": [{"name": "r", "correlate": correlate}]}, "<bench>")
    network = star(leaves) if shape == "star" else tree(leaves, fan)
    pipeline = Pipeline(topology_from_dict(network), [rs])
    lines = storm(leaves, kind)
    records: list[bytes] = []
    start = time.process_time()
    Replayer(pipeline, emit=lambda r: records.append(dumps(r))).run(lines)
    cpu = time.process_time() - start
    first = 1 if kind == "root" else 0  # the root's own leaf is at its site, never its neighbour
    explained = sum(
        1 for i in range(first, leaves) if pipeline.incidents.suppression(f"leaf-{i}:linkDown") is not None
    )
    pipeline.close()
    peak = _peak_mib()
    return {"cpu": cpu, "peak_mib": peak, "records": len(records), "explained": explained}


def _child(leaves: int, relation: str, hops: int, args: argparse.Namespace) -> dict[str, Any]:
    shape, kind, fan = args.shape, args.storm, args.fan
    cmd = [sys.executable, "-m", "bench.neighbour", "--run", str(leaves), relation, str(hops)]
    cmd += ["--shape", shape, "--storm", kind, "--fan", str(fan)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = orjson.loads(out)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench neighbour", description=__doc__.split("\n\n")[0])
    p.add_argument("--leaves", default="500,2000,10000", help="network sizes in leaves, comma-separated")
    p.add_argument("--hops", type=int, choices=(2, 3), default=2)
    p.add_argument("--shape", choices=SHAPES, default="star", help="a star, or a tree of switches")
    p.add_argument("--fan", type=int, default=100, help="leaves per switch of the tree")
    p.add_argument("--storm", choices=STORMS, default="root", help="one root, or every leaf a root too")
    p.add_argument("--repeat", type=int, default=3, help="figures are the median of this many runs")
    p.add_argument("--run", nargs=3, metavar=("LEAVES", "RELATION", "HOPS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.fan < 1:
        p.error(f"--fan must be at least 1, got {args.fan}")
    if args.run:
        n, relation, hops = int(args.run[0]), args.run[1], int(args.run[2])
        print(
            orjson.dumps(
                run_once(n, relation, hops, shape=args.shape, kind=args.storm, fan=args.fan)
            ).decode()
        )
        return 0
    try:
        sizes = [int(x) for x in args.leaves.split(",")]
    except ValueError:
        p.error(f"--leaves must be comma-separated integers, got {args.leaves!r}")
    if args.repeat < 1 or any(n < 1 for n in sizes):
        p.error("--repeat and every --leaves size must be at least 1")
    network = "a star" if args.shape == "star" else f"a tree of {args.fan} leaves a switch"
    what = (
        "1 root and a link-down on every leaf" if args.storm == "root" else "a root-and-symptom on every leaf"
    )
    print(f"{network}, {what}; median of {args.repeat} fresh runs")
    print(f"{'leaves':>7}  {'relation':<12} {'CPU s':>8} {'peak MiB':>9} {'records':>8} {'explained':>9}")
    for n in sizes:
        counts: set[int] = set()
        for relation in RELATIONS:
            runs = [_child(n, relation, args.hops, args) for _ in range(args.repeat)]
            label = f"neighbour:{args.hops}" if relation == "neighbour" else relation
            cpu = statistics.median(r["cpu"] for r in runs)
            peak = statistics.median(r["peak_mib"] for r in runs)
            counts |= {r["explained"] for r in runs}
            first = runs[0]
            print(
                f"{n:>7}  {label:<12} {cpu:>8.3f} {peak:>9.1f} {first['records']:>8} {first['explained']:>9}",
                flush=True,
            )
        if len(counts) != 1 or not counts.pop():
            print(f"on {n} leaves the rules explained different numbers of leaves", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
