"""A simulated network: scripted scenarios published over MQTT, for demos, tests and load.

A ``Scenario`` is data: a name, a description and timed ``Step`` s (an offset in seconds from the
start, an MQTT topic, a JSON payload). The built-ins are written against the example topology
(``examples/topology.yaml``, built by ``example_topology()`` below):

* ``fiber-cut``: loss of signal on agg-3 amid a storm of link-down alarms on the 50 OLTs below it
  (some of them before the root), then the repair and the clears;
* ``site-power``: mains failure at site-c, then the OLT and the cell there, then recovery;
* ``voip-degradation``: voip probes report latency, jitter and loss rising and MOS falling for
  olt-7's customers; the probe system raises a ``qualityOfServiceAlarm`` on olt-7 (minor, then
  major), then quality recovers and the alarm clears;
* ``demo``: the three in sequence with short gaps (about 80 s at rate 1);
* ``storm``: N random alarms and clears on random elements (seeded), for load.

A scenario file (YAML or JSON: a list of ``{at, topic, payload}``, or a mapping with ``name``,
``description`` and ``steps``) is accepted too; errors name the step and its line.

Times: a payload without its own time (``event_time`` of an alarm, ``time`` of a sample, the
TMF642 raised/cleared time) is stamped when it is published, so the engine sees live traffic.
``rate`` scales the offsets: 1 is real time, 10 ten times faster, 0 as fast as the broker acks.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import orjson

from engine.errors import ConfigError, EngineError
from engine.service.cliargs import Parser, broker_url, int_range
from engine.service.cliargs import rate as rate_arg
from engine.service.terminal import printable
from engine.tools.scenarios import (  # re-exported: callers of the simulator use them
    SCENARIOS,
    Scenario,
    Step,
    demo,
    example_topology,
    fiber_cut,
    load_scenario,
    load_scenario_file,
    replay_lines,
    sequence,
    site_power,
    stamp,
    storm,
    voip_degradation,
)

if TYPE_CHECKING:
    import aiomqtt

    from engine.service.config import BrokerAddress, parse_broker_url


def __getattr__(name: str) -> object:
    """``BrokerAddress`` and ``parse_broker_url`` are re-exported from ``engine.service.config`` on first
    use: importing it (pydantic settings, the core's settings) would make every ``engine`` command
    line, whose parser includes ``simulate``'s options, seconds slower to answer a usage error."""
    if name in ("BrokerAddress", "parse_broker_url"):
        from engine.service import config  # noqa: PLC0415

        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SCENARIOS",
    "BrokerAddress",
    "Clock",
    "Scenario",
    "SimStats",
    "SimulationError",
    "Step",
    "SystemClock",
    "add_arguments",
    "demo",
    "example_topology",
    "fiber_cut",
    "load_scenario",
    "load_scenario_file",
    "main",
    "parse_broker_url",
    "replay_lines",
    "run",
    "sequence",
    "simulate",
    "site_power",
    "stamp",
    "storm",
    "voip_degradation",
]

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


class SimulationError(EngineError):
    """The broker could not be reached or stopped acknowledging: the simulation did not complete."""


# ------------------------------------------------------------------------------------- publishing


class Clock(Protocol):
    """Wall time for stamps, monotonic time and sleep for pacing. Tests pass a fake one."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class SimStats:
    published: int
    duration: float  # seconds from connected to the last acknowledgement

    @property
    def per_second(self) -> float:
        return self.published / self.duration if self.duration > 0 else 0.0


async def simulate(
    url: str,
    scenario: Scenario,
    *,
    rate: float = 1.0,
    qos: int = 1,
    client_id: str | None = None,
    on_step: Callable[[Step], None] | None = None,
    max_inflight: int = 100,
    clock: Clock | None = None,
) -> SimStats:
    """Publish the scenario's steps to the broker at ``url``, paced by ``rate`` (0: no pacing).

    At most ``max_inflight`` publishes wait for their acknowledgement (PUBACK with QoS 1) at once;
    messages leave in step order. ``on_step`` gets each step, with its stamped payload, once the
    broker has acknowledged it. Raises ``SimulationError`` if the broker cannot be reached or
    stops answering, ``ValueError`` for bad arguments.
    """
    if not (math.isfinite(rate) and rate >= 0):
        raise ValueError(f"rate must be a finite number ≥ 0, got {rate}")
    if qos not in (0, 1):
        raise ValueError(f"qos must be 0 or 1, got {qos}")
    if max_inflight < 1:
        raise ValueError(f"max_inflight must be at least 1, got {max_inflight}")
    from engine.service.config import parse_broker_url  # noqa: PLC0415  (see __getattr__)

    address = parse_broker_url(url)
    clock = clock or SystemClock()

    import aiomqtt  # noqa: PLC0415 - `engine --help` should not pay for paho

    client = aiomqtt.Client(
        address.host,
        address.port,
        username=address.username,
        password=address.password,
        identifier=client_id or f"soc-sim-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V311,
        tls_context=ssl.create_default_context() if address.tls else None,
        max_inflight_messages=max_inflight,
        timeout=10.0,
    )
    client.pending_calls_threshold = max_inflight + 1  # the bound is ours: no warning below it
    try:
        async with client:
            return await _publish_all(
                client, scenario, rate=rate, qos=qos, max_inflight=max_inflight, on_step=on_step, clock=clock
            )
    except* aiomqtt.MqttError as group:
        first = group.exceptions[0]
        raise SimulationError(f"MQTT broker {url}: {first}") from first


async def _publish_all(
    client: aiomqtt.Client,
    scenario: Scenario,
    *,
    rate: float,
    qos: int,
    max_inflight: int,
    on_step: Callable[[Step], None] | None,
    clock: Clock,
) -> SimStats:
    slots = asyncio.Semaphore(max_inflight)
    published = 0

    async def publish(step: Step) -> None:
        nonlocal published
        try:
            await client.publish(step.topic, orjson.dumps(step.payload), qos=qos)
        finally:
            slots.release()
        published += 1
        if on_step is not None:
            on_step(step)

    start = clock.monotonic()
    async with asyncio.TaskGroup() as tasks:
        for step in scenario.steps:
            if rate > 0:
                delay = start + step.at / rate - clock.monotonic()
                if delay > 0:
                    await clock.sleep(delay)
            await slots.acquire()
            # Tasks start in creation order and hand their message to paho at once: order is kept.
            stamped = replace(step, payload=stamp(step.payload, clock.time()))
            tasks.create_task(publish(stamped))
    return SimStats(published, clock.monotonic() - start)


# ------------------------------------------------------------------------------------ command line


def describe(step: Step) -> str:
    """One short line about what a step says."""
    p = step.payload
    samples = p.get("samples")
    if isinstance(samples, list):
        targets = sorted({str(s.get("target")) for s in samples if isinstance(s, Mapping)})
        mos = [
            s["metrics"]["mos"] for s in samples if isinstance(s, Mapping) and "mos" in s.get("metrics", {})
        ]
        extra = f", mean MOS {sum(mos) / len(mos):.2f}" if mos else ""
        return f"{len(samples)} samples on {', '.join(targets)}{extra}"
    if "ne_id" in p:
        sp = f" [{p['specific_problem']}]" if p.get("specific_problem") else ""
        return f"{p['ne_id']} {p.get('probable_cause')}{sp} {p.get('severity')}"
    return orjson.dumps(p).decode()[:80]


MAX_STORM = 1_000_000  # alarms of a storm scenario: built in memory before the first is published


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``engine simulate`` options, for a parser of the caller's."""
    parser.add_argument(
        "--broker", type=broker_url, default=DEFAULT_BROKER, metavar="URL", help=f"default: {DEFAULT_BROKER}"
    )
    parser.add_argument("--scenario", metavar="NAME|FILE", help="a built-in (see --list) or a YAML/JSON file")
    parser.add_argument(
        "--rate", type=rate_arg, default=1.0, metavar="N", help="1 real time, 10 faster, 0 max"
    )
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument(
        "--count", type=int_range(1, MAX_STORM), default=1000, metavar="N", help="storm: alarms"
    )
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="storm: random seed")
    parser.add_argument("--client-id", metavar="ID", help="default: soc-sim-<random>")
    parser.add_argument("--quiet", action="store_true", help="only the final summary")
    parser.add_argument("--list", action="store_true", help="list the built-in scenarios and exit")


def _list() -> None:
    for name, builder in SCENARIOS.items():
        sc = builder()
        print(f"{name:<17} {len(sc.steps):>5} steps {sc.duration:>6.1f} s  {sc.description}")


def run(args: argparse.Namespace) -> int:
    """Run ``engine simulate`` from parsed arguments (see ``add_arguments``)."""
    if args.list:
        _list()
        return 0
    if not args.scenario:
        print("error: --scenario NAME|FILE is required (or --list)", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(args.scenario, count=args.count, seed=args.seed)
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = len(scenario.steps)
    every = 1 if total <= 200 else max(1, total // 10)
    done = 0

    def progress(step: Step) -> None:
        nonlocal done
        done += 1
        if every == 1:
            print(printable(f"+{step.at:8.3f}s  {step.topic:<28} {describe(step)}"), flush=True)
        elif done % every == 0 or done == total:
            print(f"published {done}/{total}", flush=True)

    pace = "as fast as possible" if args.rate == 0 else f"rate {args.rate:g}"
    wall = f", about {scenario.duration / args.rate:.0f} s" if args.rate > 0 else ""
    print(f"scenario {scenario.name}: {total} steps, {pace}{wall}, to {args.broker}", flush=True)
    try:
        stats = asyncio.run(
            simulate(
                args.broker,
                scenario,
                rate=args.rate,
                qos=args.qos,
                client_id=args.client_id,
                on_step=None if args.quiet else progress,
            )
        )
    except SimulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted after {done} of {total} messages", file=sys.stderr)
        return 130
    print(
        f"published {stats.published} messages in {stats.duration:.2f} s "
        f"({stats.per_second:.0f} msg/s), QoS {args.qos}",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``engine simulate --broker URL --scenario NAME|FILE [--rate N] [--qos 0|1] [--list]``."""
    parser = Parser(prog="engine simulate", description="Publish a scripted network scenario over MQTT.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
