"""What the daemon's post-mortems cost: the replay of ``bench peers`` with each incident explained as
it resolves, beside the same replay without.

The daemon explains each incident as it resolves (``engine.core.explain.PostMortems``, the incident
book's ``on_resolved`` hook), in the core's task, so every millisecond an explanation takes is a
millisecond the core does not decide. This replays the PCIC 24V log in ``bench peers``'
conversions (``readme``, ``storm``, ``unknown``; ``--limit`` alarm rows) through a ``Pipeline``
driven by a ``Replayer`` as ``engine replay`` does, once without the hook (the peer: the core
alone) and once with it set as the daemon sets it (each explanation serialised and thrown away),
and prints the CPU of both, the explanations' share, and their CPU per incident by how many alarms
the table held at the time. ``--retain S`` keeps cleared alarms ``S`` seconds (the table holds
more: how an explanation's cost grows with them).

Run ``python -m bench postmortems [--quick] [--limit ROWS] [--retain S] [--conversion NAME ...]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.peers import CONVERSIONS, DATASET, conversion
from bench.replay import DEFAULT_SHARED, dataset_dir, replay_lines
from engine.core.explain import PostMortems
from engine.core.incident_records import IncidentRecord
from engine.core.incidents import Incident
from engine.core.pipeline import Pipeline
from engine.core.settings import core_settings_from_data
from engine.errors import ConfigError
from engine.model.topology import topology_from_dict
from engine.rules.schema import load_rulesets
from engine.tools.datasets.pcic import Converted, convert
from engine.tools.replay import Replayer

HELD = (1_000, 5_000, 20_000)  # the bounds of the "alarms held" buckets


@dataclass
class Run:
    events: int = 0
    cpu: float = 0.0  # the whole replay, CPU seconds
    explained: list[tuple[float, int]] = field(default_factory=list)  # (CPU seconds, alarms held)
    failures: int = 0


def replay(converted: Converted, lines: list[bytes], *, retain: float | None, explain: bool) -> Run:
    config: dict[str, Any] = orjson.loads(orjson.dumps(converted.config))
    if retain is not None:
        config.setdefault("alarms", {})["retain"] = retain
    pipeline = Pipeline(
        topology_from_dict(converted.topology), load_rulesets(None), core_settings_from_data(config)
    )
    run = Run()

    def keep(_incident_id: str, _now: float, explanation: dict[str, Any]) -> None:
        orjson.dumps(explanation)  # what the daemon's store does with it, less the write

    post = PostMortems(pipeline.query, keep)
    if explain:

        def hook(inc: Incident, rec: IncidentRecord) -> None:
            t0 = time.process_time()
            post(inc, rec)
            run.explained.append((time.process_time() - t0, len(pipeline.query.alarm_states())))

        pipeline.on_resolved(hook)
    try:
        t0 = time.process_time()
        stats = Replayer(pipeline).run(lines)
        run.cpu = time.process_time() - t0
        run.events = stats.events
        run.failures = post.failures
    finally:
        post.close()
        pipeline.close()
    return run


def report(name: str, alone: Run, explained: Run) -> list[str]:
    spent = sum(t for t, _ in explained.explained)
    n = len(explained.explained)
    lines = [
        f"{name}: {alone.events:,} events, {n:,} incidents explained as they resolved"
        + (f" ({explained.failures} failed)" if explained.failures else ""),
        f"  the core alone: {alone.cpu:.2f} s CPU; with post-mortems {explained.cpu:.2f} s "
        f"({explained.cpu / alone.cpu:.2f}×); the explanations {spent:.2f} s, "
        f"{spent / explained.cpu:.0%} of the CPU, {1e3 * spent / max(n, 1):.2f} ms per incident",
    ]
    lo = 0
    for hi in (*HELD, None):
        got = [t for t, held in explained.explained if lo <= held and (hi is None or held < hi)]
        if got:
            upper = f"{hi:,}" if hi is not None else "more"
            lines.append(
                f"  alarms held {lo:,} to {upper}: {len(got):,} incidents, mean "
                f"{1e3 * statistics.fmean(got):.2f} ms, median {1e3 * statistics.median(got):.2f} ms, "
                f"max {1e3 * max(got):.2f} ms"
            )
        lo = hi or lo
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench postmortems", description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, metavar="ROWS", help="alarm rows of the log (default 0: all)")
    p.add_argument("--quick", action="store_true", help="the first 2,000 alarm rows unless --limit says")
    p.add_argument(
        "--retain", type=float, metavar="S", help="keep cleared alarms S seconds (default: the config's)"
    )
    p.add_argument(
        "--conversion", action="append", choices=CONVERSIONS, help="repeatable (default: all three)"
    )
    p.add_argument(
        "--shared", type=Path, default=DEFAULT_SHARED, metavar="DIR", help=f"default: {DEFAULT_SHARED}"
    )
    args = p.parse_args(argv)
    if args.limit is None:
        args.limit = 2000 if args.quick else 0
    if args.limit < 0 or (args.retain is not None and not 0 <= args.retain <= 365 * 86400):
        p.error("need --limit >= 0 and --retain within 0..31536000 seconds")
    try:
        base = convert(dataset_dir(args.shared, DATASET), limit=args.limit or None)
    except ConfigError as exc:
        print(
            f"error: {exc} (the PCIC 2021 data lives in <shared>/datasets/pcic2021/; see --shared)",
            file=sys.stderr,
        )
        return 2
    rows = f"first {args.limit:,} alarm rows" if args.limit else "all alarm rows"
    kept = f", cleared alarms kept {args.retain:g} s" if args.retain is not None else ""
    print(f"{DATASET} ({rows}{kept}): the replay without and with post-mortems", flush=True)
    for name in dict.fromkeys(args.conversion or CONVERSIONS):
        converted = conversion(base, name)
        lines = replay_lines(converted)
        alone = replay(converted, lines, retain=args.retain, explain=False)
        explained = replay(converted, lines, retain=args.retain, explain=True)
        print("\n".join(report(name, alone, explained)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
