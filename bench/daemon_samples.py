"""The daemon's KPI sample path in process, for instruction counts (issue 11 goal 3).

Two settings over the bench's sample feed (``bench.daemon.sample_feed``'s messages, fixed times):

* ``feed``: ``Pipeline.feed`` of each message, the pipeline of a ``Daemon`` built from the daemon
  bench's configuration;
* ``daemon``: the daemon's own path without a broker: ``_take_batch`` (journal, decode, feed, the
  acknowledgement callbacks) from an in-memory source of the same messages, ``_commit`` (SQLite) and
  ``_batch_metrics``, in batches of 16 messages.

After ``--warm`` messages, ``--callgrind`` switches callgrind's instrumentation on (``callgrind_control
-i on``) and off at the end, so that only the measured messages are counted; without it the CPU time
per sample is printed. Usage (instructions, which the machine's load does not change)::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --instr-atstart=no \\
        python -m bench.daemon_samples feed 200 --callgrind

then instructions per sample = ``Collected`` / (measured messages × 100).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench.daemon import _config, _elements
from engine.service.config import load_settings
from engine.service.daemon import Daemon

T0 = 1_800_000_000.0  # the feed's first event time (fixed: the same messages on every run)
PER_BATCH = 100


def sample_feed(batches: int) -> list[tuple[str, bytes]]:
    """``bench.daemon.sample_feed``'s messages with a fixed first time."""
    olts = [e for e in _elements() if e.startswith("olt-")]
    return [
        (
            f"bench/probes/p-{b % 10}",
            orjson.dumps(
                {
                    "samples": [
                        {
                            "probe_id": f"p-{k}",
                            "target": olts[(b * PER_BATCH + k) % len(olts)],
                            "time": T0 + b * 0.01,
                            "metrics": {
                                "latency_ms": 20.0 + k % 7,
                                "jitter_ms": 2.0,
                                "loss_pct": 0.1,
                                "mos": 4.2,
                            },
                        }
                        for k in range(PER_BATCH)
                    ]
                }
            ),
        )
        for b in range(batches)
    ]


class _Item:
    """What the core task reads of an ``Inbound`` message."""

    __slots__ = ("payload", "received", "source", "topic")

    def __init__(self, topic: str, payload: bytes, received: float, source: _Source) -> None:
        self.topic, self.payload, self.received, self.source = topic, payload, received, source

    def ack(self) -> None:
        """(The core task before ``ack_many`` acknowledged each message: for older trees.)"""
        self.source.acked += 1


class _Source:
    """The part of ``MqttSource`` the core task uses, over messages held in memory."""

    waiting = 0

    def __init__(self, feed: list[tuple[str, bytes]]) -> None:
        self.items = [_Item(t, p, T0 + 1.0 + i * 0.01, self) for i, (t, p) in enumerate(feed)]
        self.taken = 0
        self.acked = 0

    def drain(self, limit: int) -> list[_Item]:
        out = self.items[self.taken : self.taken + limit]
        self.taken += len(out)
        return out

    def ack_many(self, items: list[_Item]) -> None:
        self.acked += len(items)

    def flush_acks(self) -> None:
        pass


def _instrument(on: bool, enabled: bool) -> None:
    if enabled:
        state = "on" if on else "off"
        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True, capture_output=True)


async def _run(mode: str, messages: int, warm: int, callgrind: bool) -> tuple[int, float]:
    """Messages measured and CPU seconds they took."""
    feed = sample_feed(warm + messages)
    with tempfile.TemporaryDirectory(prefix="bench-samples-") as tmp:
        cfg = load_settings(_config(Path(tmp), "mqtt://127.0.0.1:1", "samples", None), environ={})
        clock = [T0 + 1.0]
        daemon = Daemon(cfg, clock=lambda: clock[0])
        if mode == "feed":
            pipeline = daemon.pipeline
            cpu = 0.0
            for i, (topic, payload) in enumerate(feed):
                if i == warm:
                    _instrument(True, callgrind)
                    cpu = time.process_time()
                out = pipeline.feed(topic, payload, T0 + 1.0 + i * 0.01)
                if out.dead_letters:
                    raise RuntimeError(f"the feed was refused: {out.dead_letters[0].errors}")
            cpu = time.process_time() - cpu
            _instrument(False, callgrind)
            pipeline.close()
            return messages, cpu
        await daemon.store.__aenter__()
        try:
            daemon._catching_up = False
            source = _Source(feed)
            daemon.source = source  # type: ignore[assignment]  # what the core task calls of it
            started = -1
            cpu = 0.0
            while source.taken < len(feed):
                if started < 0 and source.taken >= warm:
                    started = source.taken
                    _instrument(True, callgrind)
                    cpu = time.process_time()
                clock[0] = T0 + 1.0 + source.taken * 0.01
                # batches of 16, the last warm-up batch cut so that the measure starts at ``warm``
                left = warm - source.taken
                daemon._take_batch(min(16, left) if left > 0 else 16, float("inf"))
                daemon._commit()
                daemon._batch_metrics()
            cpu = time.process_time() - cpu
            _instrument(False, callgrind)
            if source.acked != len(feed):
                raise RuntimeError(f"{source.acked} of {len(feed)} messages acknowledged")
            return len(feed) - started, cpu
        finally:
            await daemon.store.__aexit__(None, None, None)
            daemon.pipeline.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.daemon_samples", description=__doc__.split("\n")[0]
    )
    parser.add_argument("mode", choices=["feed", "daemon"])
    parser.add_argument("messages", type=int, help="messages of 100 samples measured")
    parser.add_argument("--warm", type=int, default=20, help="messages before the measured ones")
    parser.add_argument("--callgrind", action="store_true", help="switch callgrind's instrumentation")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.warm < 0:
        parser.error("messages must be positive and --warm not negative")
    measured, cpu = asyncio.run(_run(args.mode, args.messages, args.warm, args.callgrind))
    per_sample = cpu / (measured * PER_BATCH) * 1e6
    print(f"{args.mode}: measured messages {measured}, {per_sample:.3f} us of CPU per sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
