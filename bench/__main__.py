"""Run the benchmarks: ``python -m bench`` runs every one with its defaults, in turn;
``python -m bench NAME [ARGS...]`` runs one with its own options (``python -m bench NAME --help``).

Each benchmark prints a header, then its own report. The exit status is 0 when every benchmark
succeeded, else the status of the first that failed (1 for an exception, 2 for bad usage or input).
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence

from bench import cluster, daemon, dashboard, digests, mining, neighbour, peers, postmortems, replay, topology

BENCHMARKS: dict[str, tuple[Callable[[list[str] | None], int], str]] = {
    "topology": (topology.main, "topology load and impact on a synthetic national network"),
    "replay": (replay.main, "the whole core on the PCIC 2021 alarm logs, with correlation quality"),
    "peers": (
        peers.main,
        "the engine beside SEC on the PCIC 24V log xN: README's conversion, unknown network, storm",
    ),
    "postmortems": (
        postmortems.main,
        "the replay of `peers` with each incident explained as it resolves (the daemon's post-mortems)",
    ),
    "mining": (
        mining.main,
        "rule mining on the public alarm logs: mine the first half, replay the second, score",
    ),
    "daemon": (
        daemon.main,
        "the daemon against a real Mosquitto: receive rates and publish-to-webhook latency",
    ),
    "cluster": (
        cluster.main,
        "engines on a private 3-node NATS JetStream cluster: throughput of 1, 2, 3 engines, failover",
    ),
    "digests": (
        digests.main,
        "digests of the core's decisions: examples, scenarios, PCIC replays (--check a file written before)",
    ),
    "neighbour": (
        neighbour.main,
        "a storm on the leaves of a star or tree under a neighbour rule, beside same_site: CPU, peak memory",
    ),
    "dashboard": (
        dashboard.main,
        "the dashboard's incident and alarm lists: 5,000 open incidents, 100k alarms",
    ),
}


def usage() -> str:
    lines = ["usage: python -m bench [NAME [ARGS...]]", "", "benchmarks (all of them, in turn, by default):"]
    lines += [f"  {name:<12} {about}" for name, (_, about) in BENCHMARKS.items()]
    return "\n".join(lines)


def run(name: str, args: Sequence[str]) -> int:
    """Run one benchmark under a header; its exit status (an exception is reported and gives 1)."""
    main, about = BENCHMARKS[name]
    shown = " ".join(["python -m bench", name, *args])
    print(f"=== {name}: {about}\n=== {shown}", flush=True)
    start = time.perf_counter()
    try:
        status = main(list(args))
    except SystemExit as exc:  # argparse errors and --help
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    outcome = "ok" if status == 0 else f"FAILED (exit status {status})"
    print(f"=== {name}: {outcome} in {time.perf_counter() - start:.1f} s\n", flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args:
        name, rest = args[0], args[1:]
        if name not in BENCHMARKS:
            print(f"{usage()}\n\nerror: unknown benchmark {name!r}", file=sys.stderr)
            return 2
        return run(name, rest)
    first_failure = 0
    for name in BENCHMARKS:
        status = run(name, [])
        first_failure = first_failure or status
    return first_failure


if __name__ == "__main__":
    raise SystemExit(main())
