"""Benchmark rule mining on the public alarm logs: mine on the first half, replay the second half.

For each dataset (PCIC 2021 24V, 25V, 18V and the CSL 2023 sample), converted with every alarm the
same severity and no semantics (``engine.tools.datasets.pcic.convert``): the raises before the middle of
the log's time span are mined (``engine.tools.mining.mine_lines``, as ``engine rules mine --until`` does),
and the messages from the middle on are replayed through a fresh core three ways:

* ``default``: the built-in rules (default + topology-cluster fallback), no effects known;
* ``mined``: the mined ruleset alone, with the mined effects;
* ``mined+default``: the mined ruleset first, then the built-in rules, with the mined effects.

Figures per run: compression ``1 - incidents / alarms`` (alarms = raise messages replayed); of the
cross-type (root type → symptom type) pairs in the incidents' final records, the share that are
direct edges of the expert causal graph (``bench.replay.quality``), and those pairs taken as a type
graph (the built-in default's figures to compare with). And the mined type graph (every cross-type
rule, whatever its relation) against the expert graph: precision, recall and F1 (directed edges,
gCastle's definition: F1 = 2·|P∩S| / (|P| + |S|)), beside THP's published F1 (gCastle, PCIC 2021
README), the F1 a random graph with as many edges would expect, and the complete graph's (on the
dense 24V and 25V graphs, every ordered pair an edge scores F1 0.40, above THP). The type graph is
mined twice: from the whole log, as THP was fitted (the figure to hold beside THP's), and from the
first half (the ruleset that is replayed), each with the pairs oriented both ways the miner can
(``--orient``: by topology, by time); the replays use ``--orient`` (default topology). Only this
benchmark reads the expert graph, to score.

With ``--explain-away`` the ruleset replayed is mined with the joint fit that drops the candidates
other causes explain (``engine rules mine --explain-away``); the type graph is scored both ways.
Each run also prints the share of cross-type pairs that are expert edges read backwards
(``reversed``: the root's type is the expert's effect).

Run ``python -m bench mining [--dataset NAME ...] [--orient topology|time] [--explain-away]
[--shared DIR]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.replay import DEFAULT_SHARED, alarm_type, expert_graph, final_records, quality
from engine.core.pipeline import Pipeline
from engine.core.settings import core_settings_from_data
from engine.errors import ConfigError
from engine.model.topology import Topology, topology_from_dict
from engine.rules.schema import Ruleset, load_rulesets, ruleset_from_data
from engine.tools.datasets.pcic import convert
from engine.tools.mining import mine_lines
from engine.tools.mining.rules import (
    ORIENTATIONS,
    Mined,
    Thresholds,
    effects_document,
    ruleset_document,
    select,
)
from engine.tools.mining.stats import Counts
from engine.tools.replay import Replayer, event_time

DATASETS: dict[str, tuple[str, float | None]] = {  # name → (folder under datasets/, THP's F1)
    "24V_439N_Microwave": ("pcic2021/24V_439N_Microwave", 0.3719),
    "25V_474N_Microwave": ("pcic2021/25V_474N_Microwave", 0.3387),
    "18V_55N_Wireless": ("pcic2021/18V_55N_Wireless", 0.5765),
    "csl2023_sample": ("csl2023_sample", None),
}
RUNS = ("default", "mined", "mined+default")


@dataclass(frozen=True)
class RunFigures:
    alarms: int
    incidents: int
    cross_type: int
    direct: float | None
    wall: float

    @property
    def compression(self) -> float:
        return 1 - self.incidents / self.alarms if self.alarms else 0.0


def split(lines: Sequence[bytes]) -> tuple[float, list[bytes]]:
    """The middle of the time span and the lines from it on."""
    times = [event_time(orjson.loads(line)) or 0.0 for line in lines]
    mid = min(times) + (max(times) - min(times)) / 2
    return mid, [line for line, t in zip(lines, times, strict=True) if t >= mid]


def replay_run(
    topology: Topology, rulesets: list[Ruleset], config: dict[str, Any], lines: Sequence[bytes]
) -> tuple[list[dict[str, Any]], int, float]:
    pipeline = Pipeline(topology, rulesets, core_settings_from_data(config, source="bench"))
    records: list[dict[str, Any]] = []
    try:
        stats = Replayer(pipeline, emit=records.append).run(lines)
        incidents = int(pipeline.summary()["incidents_opened"])
    finally:
        pipeline.correlator.close()
    return records, incidents, stats.wall_seconds


def prf(mined: frozenset[tuple[str, str]], truth: frozenset[tuple[str, str]]) -> tuple[float, float, float]:
    tp = len(mined & truth)
    p = tp / len(mined) if mined else 0.0
    r = tp / len(truth) if truth else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def pairs_by_ruleset(
    records: Iterable[Mapping[str, Any]], truth: frozenset[tuple[str, str]]
) -> dict[str, Counter[str]]:
    """The incidents' cross-type pairs (as ``bench.replay.quality`` counts them) per ruleset of the
    rule that made each: how many, how many direct expert edges, how many read backwards."""
    out: dict[str, Counter[str]] = {}
    for rec in final_records(records):
        if rec.get("resolution") == "merged":
            continue
        for entry in rec.get("suppressed") or []:
            root = alarm_type(entry["root"])
            symptom = entry.get("probable_cause") or alarm_type(entry["alarm_id"])
            if root == symptom:
                continue
            c = out.setdefault(str(entry.get("rule", "?")).partition("/")[0], Counter())
            c["pairs"] += 1
            c["direct"] += (root, symptom) in truth
            c["reversed"] += (root, symptom) not in truth and (symptom, root) in truth
    return out


def _by_ruleset_line(by: Mapping[str, Counter[str]]) -> str:
    parts = [
        f"{name} {c['pairs']:,} ({c['direct'] / c['pairs']:.0%} direct, "
        f"{c['reversed'] / c['pairs']:.0%} reversed)"
        for name, c in sorted(by.items(), key=lambda kv: (-kv[1]["pairs"], kv[0]))
    ]
    return "      pairs by the ruleset of their rule: " + ", ".join(parts)


def seen_edges(counts: Counts, truth: frozenset[tuple[str, str]], least: int = 2) -> int:
    """Expert edges whose two types were raised, in either order and any relation, within the
    look-back at least ``least`` times: what the mined data can show at all."""
    together: Counter[frozenset[str]] = Counter()
    for (a, b, _), n in counts.evidence.items():
        if a != b:
            together[frozenset((a, b))] += n
    return sum(1 for a, b in truth if together[frozenset((a, b))] >= least)


def run_dataset(
    folder: Path, thp: float | None, orient: str = "topology", explain_away: bool = False
) -> list[str]:
    converted = convert(folder)
    topology = topology_from_dict(converted.topology, source=converted.name)
    lines = [orjson.dumps(e) for e in converted.events]
    mid, test = split(lines)
    alarms = sum(1 for line in test if b'"severity":"cleared"' not in line)
    start = time.perf_counter()
    th = Thresholds(orient=orient, explain_away=explain_away)
    mined, stats = mine_lines(lines, topology, until=mid, thresholds=th, patterns=True)
    mine_s = time.perf_counter() - start
    start = time.perf_counter()
    whole, _ = mine_lines(lines, topology, thresholds=th, patterns=True)
    whole_s = time.perf_counter() - start
    ruleset = ruleset_from_data(
        ruleset_document(mined, name="mined", source=converted.name, params={}), "mined"
    )
    builtin = load_rulesets(None)
    setups: dict[str, tuple[list[Ruleset], dict[str, Any]]] = {
        "default": (builtin, converted.config),
        "mined": ([ruleset], effects_document(mined)),
        "mined+default": ([ruleset, *builtin], effects_document(mined)),
    }
    truth = expert_graph(folder)  # scoring only
    out = [
        f"  train: {stats.raises:,} raises before the middle; "
        f"test: {alarms:,} raises, {len(test):,} messages",
        f"  mined in {mine_s:.1f} s: {len(mined.rules)} rules "
        f"({sum(r.root != r.symptom for r in mined.rules)} cross-type), "
        f"{len(mined.unexpressed)} neighbour rules not written, "
        + (f"{mined.explained_away} candidates explained away, " if explain_away else "")
        + f"{len(mined.roots)} of {len(mined.counts.raises)} types element-down roots; "
        f"the whole log mined in {whole_s:.1f} s",
        f"  {'run':<14} {'incidents':>9} {'compression':>11} {'cross-type pairs':>16} "
        f"{'direct edges':>12} {'reversed':>8} {'replay':>7}  pairs as a type graph: P / R / F1",
    ]
    for name in RUNS:
        rulesets, config = setups[name]
        records, incidents, wall = replay_run(topology, rulesets, config, test)
        q = quality(records, truth) if truth is not None else None
        f = RunFigures(alarms, incidents, q.cross_type if q else 0, q.precision if q else None, wall)
        direct = "-" if f.direct is None else f"{f.direct:.1%}"
        backwards = f"{q.reversed / q.cross_type:.1%}" if q is not None and q.cross_type else "-"
        as_graph = ""
        if q is not None and truth is not None:
            pairs = frozenset(q.type_pairs)
            gp, gr, gf = prf(pairs, truth)
            as_graph = f"  {len(pairs)} edges: {gp:.2f} / {gr:.2f} / {gf:.2f}"
        out.append(
            f"  {name:<14} {f.incidents:>9,} {f.compression:>11.3f} {f.cross_type:>16,} "
            f"{direct:>12} {backwards:>8} {wall:>6.1f}s{as_graph}"
        )
        if truth is not None and q is not None and q.cross_type:
            out.append(_by_ruleset_line(pairs_by_ruleset(records, truth)))
    if truth is not None:
        out.append(
            f"  expert edges whose types were raised together (either order, any relation, within "
            f"{mined.counts.max_lag:g} s) at least twice: {seen_edges(mined.counts, truth)} of "
            f"{len(truth)} in the first half, {seen_edges(whole.counts, truth)} in the whole log"
        )
    other = "topology" if orient == "time" else "time"
    for what, m in (("whole log", whole), ("first half", mined)):
        out.append(_graph_line(m, truth, thp, orient, what, explain_away=explain_away))
        out.append(
            _graph_line(
                select(m.counts, Thresholds(orient=other, explain_away=explain_away)),
                truth,
                thp,
                other,
                what,
                explain_away=explain_away,
            )
        )
        out.append(
            _graph_line(
                select(m.counts, Thresholds(orient=orient, explain_away=not explain_away)),
                truth,
                thp,
                orient,
                what,
                explain_away=not explain_away,
            )
        )
    return out


def _graph_line(
    mined: Mined,
    truth: frozenset[tuple[str, str]] | None,
    thp: float | None,
    orient: str,
    what: str,
    *,
    explain_away: bool,
) -> str:
    graph = mined.type_graph()
    what = f"{what}, {orient}" + (", explain-away" if explain_away else "")
    if truth is None:
        return f"  mined type graph ({what}): {len(graph)} edges; no expert graph to score against"
    p, r, f1 = prf(graph, truth)
    beside = f"THP F1 {thp:.2f}" if thp is not None else "no THP figure"
    types = {t for pair in truth for t in pair} | set(mined.counts.raises)
    ordered = len(types) * (len(types) - 1)
    # a random graph with as many edges: expected precision = expert density, recall = guessed share
    ep, er = len(truth) / ordered, min(1.0, len(graph) / ordered)
    chance = 2 * ep * er / (ep + er) if ep + er else 0.0
    complete = 2 * ep / (ep + 1)  # every ordered pair an edge: precision = density, recall 1
    _, _, f1_reversed = prf(graph, frozenset((b, a) for a, b in truth))
    return (
        f"  mined type graph ({what}): {len(graph)} edges vs {len(truth)} expert: "
        f"precision {p:.2f}, recall {r:.2f}, F1 {f1:.2f} ({beside}; "
        f"a random graph of {len(graph)} edges: F1 {chance:.2f}; "
        f"the complete graph: F1 {complete:.2f}; against the expert graph read backwards: "
        f"F1 {f1_reversed:.2f})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mining", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dataset",
        action="append",
        choices=list(DATASETS),
        metavar="NAME",
        help=f"repeatable; one of {', '.join(DATASETS)} (default: all)",
    )
    p.add_argument(
        "--orient",
        choices=ORIENTATIONS,
        default="topology",
        help="how the replayed ruleset orients pairs (default topology); the type graph is scored both ways",
    )
    p.add_argument(
        "--explain-away",
        action="store_true",
        help="the replayed ruleset drops the candidates a joint fit explains away (the type graph is "
        "scored both ways)",
    )
    p.add_argument(
        "--shared", type=Path, default=DEFAULT_SHARED, metavar="DIR", help=f"default: {DEFAULT_SHARED}"
    )
    args = p.parse_args(argv)
    names = list(dict.fromkeys(args.dataset or list(DATASETS)))
    folders = {n: Path(args.shared) / "datasets" / DATASETS[n][0] for n in names}
    missing = [f for f in folders.values() if not f.is_dir()]
    for folder in missing:
        print(f"error: dataset folder not found: {folder} (see docs/datasets.md)", file=sys.stderr)
    if missing:
        return 2
    for name, folder in folders.items():
        print(f"{name}  ({folder})", flush=True)
        try:
            for line in run_dataset(folder, DATASETS[name][1], args.orient, args.explain_away):
                print(line, flush=True)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
