"""The cluster on a private 3-node NATS JetStream cluster: throughput of 1, 2 and 3 engines on the
same feed, and failover time after a kill -9.

For each engine count E: a fresh 3-node JetStream cluster (replicas 3), E engine processes
(``engine run --cluster``, 4 domain partitions + global, the example topology), wait until the
partitions are spread over the E engines; publish the feed into ``SOC_INGEST`` (acknowledged
publishes) and measure from the first publish until every partition has applied everything routed
to it (the router's consumer drained, each partition's consumer with nothing pending). Then one
engine is killed with SIGKILL and the time until its partitions have a new owner is measured.

On a 2-core machine the three NATS nodes and the engines share two cores: the figures show what
the machinery costs and that failover is bounded, not how the design scales (docs/scale-out.md).

The feed is published pipelined (256 in flight, every acknowledgement checked).

Usage: ``python -m bench cluster [--alarms N] [--engines 1,2,3] [--lease-ttl S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from engine.adapters.jetstream import JetStream
from engine.service.cluster import cluster_status
from tests.nats import NatsCluster, find_binary

TOPOLOGY = Path(__file__).resolve().parent.parent / "examples" / "topology.yaml"


def _config(folder: Path, lease_ttl: float) -> Path:
    cfg = {
        "topology": str(TOPOLOGY),
        "core": {"incidents": {"settle": "1s", "hold_down": "2s"}},
        "cluster": {"partitions": 4, "replicas": 3, "lease_ttl": lease_ttl, "snapshot_interval": "5s"},
        "logging": {"format": "json", "level": "warning"},
    }
    path = folder / "engine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _feed(count: int) -> list[tuple[str, bytes]]:
    """``count`` distinct alarms spread over the example network's access elements."""
    olts = ["olt-7", *(f"olt-{i:03d}" for i in range(1, 51))]
    now = time.time()
    out = []
    for k in range(count):
        ne = olts[k % len(olts)]
        alarm = {
            "ne_id": ne,
            "severity": "major",
            "probable_cause": "linkDown",
            "specific_problem": f"port {k}",
            "event_time": now,
        }
        out.append((f"soc.alarms.{ne}", orjson.dumps(alarm)))
    return out


async def _publish(js: JetStream, feed: list[tuple[str, bytes]], window: int = 256) -> None:
    """Publish the feed in order, ``window`` messages in flight, every acknowledgement checked."""
    for start in range(0, len(feed), window):
        futures = [
            await js.js.publish_async(subject, payload) for subject, payload in feed[start : start + window]
        ]
        for fut in futures:
            await asyncio.wait_for(fut, 30.0)  # raises on a publish JetStream did not store


async def _owned_by(js: JetStream, members: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await js.attach()  # the engines create the buckets: retried until they exist
            status = await cluster_status(js, await js.partitions())
            owners = {row["owner"] for row in status["partitions"].values()}
            if owners == members:
                return status
        except Exception:  # the cluster is still being set up
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"partitions not spread over {sorted(members)} within {timeout} s")


async def _drained(js: JetStream, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await js.router_progress() >= total:
            status = await cluster_status(js, await js.partitions())
            rows = status["partitions"].values()
            if all(r["lag"] == 0 and r["applied"] == r["stream_last"] for r in rows):
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"feed not applied within {timeout} s")


async def _run(engines: int, alarms: int, lease_ttl: float, folder: Path) -> dict[str, float]:
    with NatsCluster(folder / "nats", size=3) as cluster:
        config = _config(folder, lease_ttl)
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for i in range(engines):
                name = f"e{i}"
                with (folder / f"{name}.log").open("wb") as log:
                    procs[name] = subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "engine",
                            "run",
                            "--config",
                            str(config),
                            "--cluster",
                            cluster.url,
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, "ENGINE_CLUSTER__NAME": name, "ENGINE_HTTP__PORT": "0"},
                    )
            async with JetStream(cluster.urls, name="bench") as js:
                await _owned_by(js, set(procs), 120)
                feed = _feed(alarms)
                start = time.perf_counter()
                await _publish(js, feed)
                published = time.perf_counter() - start
                await _drained(js, alarms, 600)
                applied = time.perf_counter() - start
                victim = sorted(procs)[-1]
                procs[victim].send_signal(signal.SIGKILL)
                procs[victim].wait()
                killed = time.perf_counter()
                survivors = set(procs) - {victim}
                failover = None
                if survivors:
                    await _owned_by(js, survivors, 120)
                    failover = time.perf_counter() - killed
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(20)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
    return {
        "published_per_s": alarms / published,
        "applied_per_s": alarms / applied,
        "seconds": applied,
        "failover_s": failover if failover is not None else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--alarms", type=int, default=3000, help="alarms in the feed (default 3000)")
    parser.add_argument("--engines", default="1,2,3", help="engine counts to run (default 1,2,3)")
    parser.add_argument("--lease-ttl", type=float, default=3.0, help="lease TTL in seconds (default 3)")
    args = parser.parse_args(argv)
    if find_binary() is None:
        print("error: nats-server is not installed (Debian package nats-server)", file=sys.stderr)
        return 2
    try:
        counts = [int(x) for x in args.engines.split(",")]
    except ValueError:
        print(
            f"error: --engines: expected numbers separated by commas, got {args.engines!r}", file=sys.stderr
        )
        return 2
    print(
        f"feed: {args.alarms} alarms; 4 domain partitions + global; 3 NATS nodes, replicas 3; "
        f"cores: {os.cpu_count()}"
    )
    row = "{:>7} {:>12} {:>10} {:>8} {:>11}"
    print(row.format("engines", "published/s", "applied/s", "seconds", "failover s"))
    for n in counts:
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
            r = asyncio.run(_run(n, args.alarms, args.lease_ttl, Path(tmp)))
        fail = "-" if r["failover_s"] != r["failover_s"] else f"{r['failover_s']:.1f}"
        cells = (f"{r['published_per_s']:.0f}", f"{r['applied_per_s']:.0f}", f"{r['seconds']:.1f}", fail)
        print(row.format(n, *cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
