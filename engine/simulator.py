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
import random
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

import orjson

from engine.errors import ConfigError, EngineError
from engine.timeutil import format_time, parse_duration
from engine.yamlsource import load_file

if TYPE_CHECKING:
    import aiomqtt

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
TIERS = ("platinum", "gold", "silver", "bronze")


class SimulationError(EngineError):
    """The broker could not be reached or stopped acknowledging: the simulation did not complete."""


# ------------------------------------------------------------------------------------------ data


@dataclass(frozen=True, slots=True)
class Step:
    """Publish ``payload`` (a JSON object) on ``topic`` at ``at`` seconds from the scenario start."""

    at: float
    topic: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named, described list of steps, ordered by offset."""

    name: str
    description: str
    steps: tuple[Step, ...]

    @property
    def duration(self) -> float:
        """Offset of the last step (virtual seconds)."""
        return self.steps[-1].at if self.steps else 0.0


def _scenario(name: str, description: str, steps: Sequence[Step]) -> Scenario:
    return Scenario(name, description, tuple(sorted(steps, key=lambda s: s.at)))  # stable sort


def sequence(name: str, description: str, parts: Sequence[Scenario], *, gap: float) -> Scenario:
    """The parts one after the other, each starting ``gap`` seconds after the previous one's end."""
    steps: list[Step] = []
    start = 0.0
    for part in parts:
        steps += [replace(s, at=start + s.at) for s in part.steps]
        start += part.duration + gap
    return _scenario(name, description, steps)


# ------------------------------------------------------------------------------ example network


def example_topology(olts: int = 50, customers_per_olt: int = 20) -> dict[str, Any]:
    """A small metro network: a core, two aggregation layers, one redundant pair, sites, platforms.

    core-1 ─┬─ agg-1 ─┐                      (site-b)
            ├─ agg-2 ─┴─ olt-7 (needs agg-1 OR agg-2, AND pwr-c)   (site-c)
            ├─ agg-3 ─── olt-001 … olt-050                        (site-d)
            └─ sbc-1  (voip platform)                            (site-a)
    pwr-c (site-c power plant); customers on olt-7 and olt-001 … olt-050, every 4th with voip.
    """
    elements: list[dict[str, Any]] = [
        {"id": "core-1", "type": "router", "site": "site-a", "region": "north", "depends_on": []},
        {"id": "sbc-1", "type": "sbc", "site": "site-a", "region": "north", "depends_on": ["core-1"]},
        {"id": "agg-1", "type": "switch", "site": "site-b", "region": "north", "depends_on": ["core-1"]},
        {"id": "agg-2", "type": "switch", "site": "site-b", "region": "north", "depends_on": ["core-1"]},
        {"id": "pwr-c", "type": "power", "site": "site-c", "region": "north", "depends_on": []},
        {
            "id": "olt-7",
            "type": "olt",
            "site": "site-c",
            "region": "north",
            "depends_on": [["agg-1", "agg-2"], "pwr-c"],
        },
        {"id": "cell-c1", "type": "enodeb", "site": "site-c", "region": "north", "depends_on": ["olt-7"]},
        {"id": "agg-3", "type": "switch", "site": "site-d", "region": "south", "depends_on": ["core-1"]},
    ]
    for i in range(1, olts + 1):
        elements.append(
            {
                "id": f"olt-{i:03d}",
                "type": "olt",
                "site": f"site-d{i % 5}",
                "region": "south",
                "depends_on": ["agg-3"],
            }
        )
    customers: list[dict[str, Any]] = []
    n = 0
    access = ["olt-7"] + [f"olt-{i:03d}" for i in range(1, olts + 1)]
    for a in access:
        for _ in range(customers_per_olt):
            n += 1
            tier = (
                TIERS[0] if n % 50 == 0 else TIERS[1] if n % 10 == 0 else TIERS[2] if n % 3 == 0 else TIERS[3]
            )
            services = ["internet"] if n % 4 else ["voip", "internet"]
            customers.append({"id": f"c-{n:05d}", "tier": tier, "access": a, "services": services})
    return {
        "service_types": {
            "voip": {"criticality": 5, "platform": ["sbc-1"]},
            "internet": {"criticality": 3, "platform": []},
        },
        "elements": elements,
        "customers": customers,
    }


# ----------------------------------------------------------------------------------- built-ins


def _alarm(
    at: float,
    ne: str,
    cause: str,
    severity: str,
    *,
    sp: str | None = None,
    event_type: str = "communicationsAlarm",
    text: str | None = None,
) -> Step:
    payload: dict[str, Any] = {
        "ne_id": ne,
        "severity": severity,
        "probable_cause": cause,
        "event_type": event_type,
    }
    if sp is not None:
        payload["specific_problem"] = sp
    if text is not None:
        payload["text"] = text
    return Step(at, f"soc/alarms/{ne}", payload)


def fiber_cut(*, olts: int = 50, repair_at: float = 20.0) -> Scenario:
    """agg-3 loses signal; the OLTs below it report link down (four before the root, as storms do)."""
    early = min(10, olts)
    steps = [_alarm(1.0 + i * 0.05, f"olt-{i:03d}", "linkDown", "critical") for i in range(1, early + 1)]
    steps.append(_alarm(1.2, "agg-3", "lossOfSignal", "critical", sp="port 1/1/1"))
    steps += [
        _alarm(1.5 + i * 0.05, f"olt-{i:03d}", "linkDown", "critical") for i in range(early + 1, olts + 1)
    ]
    steps.append(_alarm(repair_at, "agg-3", "lossOfSignal", "cleared", sp="port 1/1/1"))
    steps += [
        _alarm(repair_at + 1.0 + i * 0.01, f"olt-{i:03d}", "linkDown", "cleared") for i in range(1, olts + 1)
    ]
    return _scenario(
        "fiber-cut",
        f"fiber cut at agg-3: loss of signal and {olts} link-down alarms below it, "
        f"repaired after {repair_at:g} s",
        steps,
    )


def site_power() -> Scenario:
    """Mains fails at site-c: the power plant alarms, then the OLT and the cell on battery, then recovery."""
    steps = [
        _alarm(0.0, "pwr-c", "mainsFailure", "critical", event_type="environmentalAlarm"),
        _alarm(4.0, "olt-7", "equipmentMalfunction", "major", event_type="equipmentAlarm"),
        _alarm(6.0, "cell-c1", "lossOfSignal", "critical"),
        _alarm(16.0, "pwr-c", "mainsFailure", "cleared", event_type="environmentalAlarm"),
        _alarm(18.0, "olt-7", "equipmentMalfunction", "cleared", event_type="equipmentAlarm"),
        _alarm(19.0, "cell-c1", "lossOfSignal", "cleared"),
    ]
    return _scenario("site-power", "mains failure at site-c (pwr-c), olt-7 and cell-c1 follow", steps)


def _voip_customers(access: str) -> list[str]:
    return [
        c["id"] for c in example_topology()["customers"] if c["access"] == access and "voip" in c["services"]
    ]


def _badness(t: float) -> float:
    """0 until 6 s, rising to 1 at 14 s, held until 18 s, back to 0 at 22 s."""
    if t <= 6.0 or t >= 22.0:
        return 0.0
    if t < 14.0:
        return (t - 6.0) / 8.0
    if t <= 18.0:
        return 1.0
    return (22.0 - t) / 4.0


def _voip_metrics(badness: float, k: int) -> dict[str, float]:
    return {
        "latency_ms": round(22.0 + 160.0 * badness + 0.7 * k, 1),
        "jitter_ms": round(2.0 + 38.0 * badness + 0.2 * k, 1),
        "loss_pct": round(0.1 + 2.9 * badness, 2),
        "mos": round(4.3 - 1.3 * badness - 0.01 * k, 2),
    }


def voip_degradation() -> Scenario:
    """Voice quality on olt-7 degrades and recovers; a healthy OLT is probed alongside for contrast."""
    degraded = _voip_customers("olt-7")
    healthy = _voip_customers("olt-001")
    steps: list[Step] = []
    for tick in range(14):
        t = 2.0 * tick
        bad = _badness(t)
        for probe, target, customers, b in (
            ("probe-voip-1", "olt-7", degraded, bad),
            ("probe-voip-2", "olt-001", healthy, 0.0),
        ):
            samples = [
                {
                    "probe_id": probe,
                    "target": target,
                    "service": "voip",
                    "customer": c,
                    "metrics": _voip_metrics(b, k),
                }
                for k, c in enumerate(customers)
            ]
            steps.append(Step(t, f"soc/probes/{probe}", {"samples": samples}))

    def qos_alarm(at: float, severity: str, text: str | None = None) -> Step:
        return _alarm(
            at,
            "olt-7",
            "thresholdCrossed",
            severity,
            sp="MOS below 3.6",
            event_type="qualityOfServiceAlarm",
            text=text,
        )

    def mean_mos(t: float) -> str:
        mos = [_voip_metrics(_badness(t), k)["mos"] for k in range(len(degraded))]
        return f"voip probes: mean MOS {sum(mos) / len(mos):.2f} over {len(mos)} customers of olt-7"

    steps += [
        qos_alarm(12.5, "minor", mean_mos(12.0)),
        qos_alarm(14.5, "major", mean_mos(14.0)),
        qos_alarm(22.5, "cleared"),
    ]
    return _scenario(
        "voip-degradation",
        "voip quality on olt-7 degrades (latency, jitter, loss up; MOS down to 3.0), "
        "a qualityOfServiceAlarm is raised, then quality recovers and it clears",
        steps,
    )


def demo() -> Scenario:
    """What ``engine demo`` plays: fiber cut, site power failure, voip degradation, 6 s apart."""
    return sequence(
        "demo",
        "fiber-cut, then site-power, then voip-degradation, 6 s apart (about 80 s at rate 1)",
        [fiber_cut(), site_power(), voip_degradation()],
        gap=6.0,
    )


_STORM_CAUSES = (
    ("linkDown", "communicationsAlarm"),
    ("lossOfSignal", "communicationsAlarm"),
    ("equipmentMalfunction", "equipmentAlarm"),
    ("highTemperature", "environmentalAlarm"),
    ("thresholdCrossed", "qualityOfServiceAlarm"),
)
_STORM_SEVERITIES = ("critical", "major", "minor", "warning")


def storm(count: int = 1000, *, seed: int = 1, spacing: float = 0.001) -> Scenario:
    """``count`` alarms on random elements, about a quarter of them clears of earlier ones (seeded)."""
    if count < 1:
        raise ValueError(f"storm needs at least one alarm, got {count}")
    rng = random.Random(seed)
    elements = [e["id"] for e in example_topology()["elements"]]
    active: list[tuple[str, str, str]] = []
    steps: list[Step] = []
    for i in range(count):
        at = i * spacing
        if active and rng.random() < 0.25:
            ne, cause, event_type = active.pop(rng.randrange(len(active)))
            steps.append(_alarm(at, ne, cause, "cleared", event_type=event_type))
        else:
            ne = rng.choice(elements)
            cause, event_type = rng.choice(_STORM_CAUSES)
            steps.append(_alarm(at, ne, cause, rng.choice(_STORM_SEVERITIES), event_type=event_type))
            if (ne, cause, event_type) not in active:  # else a severity change of an active alarm
                active.append((ne, cause, event_type))
    return _scenario("storm", f"{count} random alarms and clears (seed {seed})", steps)


SCENARIOS: Mapping[str, Callable[[], Scenario]] = {
    "demo": demo,
    "fiber-cut": fiber_cut,
    "site-power": site_power,
    "storm": storm,
    "voip-degradation": voip_degradation,
}


# --------------------------------------------------------------------------------- scenario files

_STEP_KEYS = frozenset({"at", "topic", "payload"})


def load_scenario_file(path: str | Path) -> Scenario:
    """Read a YAML or JSON scenario. Raises ``ConfigError`` naming the step (and line) at fault."""
    data, locator = load_file(path)
    source = str(path)
    base: tuple[str | int, ...] = ()  # where the steps list is in the document

    def fail(loc: tuple[str | int, ...], reason: str) -> ConfigError:
        label = "steps" + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in loc)
        line = locator.line((*base, *loc))
        return ConfigError(source, f"line {line}: {label}" if line else label, reason)

    name, description = Path(path).stem, f"steps from {Path(path).name}"
    if isinstance(data, Mapping):
        unknown = sorted(set(data) - {"name", "description", "steps"})
        if unknown:
            raise ConfigError(source, "", f"unknown key {unknown[0]!r} (expected name, description, steps)")
        if "steps" not in data:
            raise ConfigError(source, "", "no 'steps' list")
        name = str(data.get("name") or name)
        description = str(data.get("description") or description)
        base, data = ("steps",), data["steps"]
    if not isinstance(data, list):
        raise ConfigError(source, "", "expected a list of steps {at, topic, payload}")
    if not data:
        raise ConfigError(source, "", "the scenario has no steps")
    steps: list[Step] = []
    for i, item in enumerate(data):
        if not isinstance(item, Mapping):
            raise fail((i,), f"expected a mapping {{at, topic, payload}}, got {type(item).__name__}")
        missing = sorted(_STEP_KEYS - set(item))
        if missing:
            raise fail((i,), f"{missing[0]!r} is required")
        unknown = sorted(set(item) - _STEP_KEYS)
        if unknown:
            raise fail((i, unknown[0]), "unknown key (expected at, topic, payload)")
        try:
            at = parse_duration(item["at"])
        except ValueError as exc:
            raise fail((i, "at"), f"expected seconds ≥ 0 or a duration like 1.5s: {exc}") from None
        topic = item["topic"]
        if not isinstance(topic, str) or not topic:
            raise fail((i, "topic"), "expected a non-empty string")
        if "+" in topic or "#" in topic:
            raise fail((i, "topic"), f"wildcards cannot be published to: {topic!r}")
        payload = item["payload"]
        if not isinstance(payload, Mapping):
            raise fail((i, "payload"), f"expected a JSON object, got {type(payload).__name__}")
        try:
            orjson.dumps(payload)
        except orjson.JSONEncodeError as exc:
            raise fail((i, "payload"), f"cannot be encoded as JSON: {exc}") from None
        steps.append(Step(at, topic, dict(payload)))
    return _scenario(name, description, steps)


def load_scenario(name_or_path: str, *, count: int = 1000, seed: int = 1) -> Scenario:
    """A built-in by name (``count``/``seed`` are for ``storm``), else a scenario file."""
    if name_or_path == "storm":
        return storm(count, seed=seed)
    builder = SCENARIOS.get(name_or_path)
    if builder is not None:
        return builder()
    if not Path(name_or_path).exists():
        choices = ", ".join(SCENARIOS)
        raise ConfigError(name_or_path, "", f"no such scenario file, nor a built-in scenario ({choices})")
    return load_scenario_file(name_or_path)


# ----------------------------------------------------------------------------------------- times

_TMF_TIMES = ("alarmRaisedTime", "alarmChangedTime", "alarmClearedTime")


def _is_cleared_tmf(payload: Mapping[str, Any]) -> bool:
    state, severity = payload.get("state"), payload.get("perceivedSeverity")
    return (isinstance(state, str) and state.lower() == "cleared") or (
        isinstance(severity, str) and severity.lower() == "cleared"
    )


def stamp(payload: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A copy of ``payload`` with its time set to ``now`` where the scenario left it out.

    Alarms get ``event_time``; TMF642 alarms ``alarmRaisedTime`` (``alarmClearedTime`` for a clear);
    samples, alone or in a ``samples`` batch, get ``time``. Times already present are kept.
    """
    text = format_time(now)
    out = dict(payload)
    samples = out.get("samples")
    if isinstance(samples, list):
        out["samples"] = [
            {**s, "time": text} if isinstance(s, Mapping) and "time" not in s else s for s in samples
        ]
    elif "metrics" in out or "probe_id" in out:
        out.setdefault("time", text)
    elif "alarmedObject" in out or "perceivedSeverity" in out:
        if not any(k in out for k in _TMF_TIMES):
            out["alarmClearedTime" if _is_cleared_tmf(out) else "alarmRaisedTime"] = text
    else:
        out.setdefault("event_time", text)
    return out


def replay_lines(scenario: Scenario, *, start: float, rate: float = 1.0) -> Iterator[dict[str, Any]]:
    """The scenario as ``engine replay`` lines, stamped as a publish at ``rate`` from ``start`` would be."""
    for step in scenario.steps:
        at = start + (step.at / rate if rate > 0 else 0.0)
        yield {"topic": step.topic, "payload": stamp(step.payload, at)}


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


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user:password@]host[:port]`` (``mqtts://`` for TLS). Raises ``ValueError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"expected mqtt://host:port or mqtts://host:port, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``engine simulate`` options, for a parser of the caller's."""
    parser.add_argument("--broker", default=DEFAULT_BROKER, metavar="URL", help=f"default: {DEFAULT_BROKER}")
    parser.add_argument("--scenario", metavar="NAME|FILE", help="a built-in (see --list) or a YAML/JSON file")
    parser.add_argument("--rate", type=_rate, default=1.0, metavar="N", help="1 real time, 10 faster, 0 max")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--count", type=_positive, default=1000, metavar="N", help="storm: alarms")
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="storm: random seed")
    parser.add_argument("--client-id", metavar="ID", help="default: soc-sim-<random>")
    parser.add_argument("--quiet", action="store_true", help="only the final summary")
    parser.add_argument("--list", action="store_true", help="list the built-in scenarios and exit")


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number ≥ 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


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
        parse_broker_url(args.broker)
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
            print(f"+{step.at:8.3f}s  {step.topic:<28} {describe(step)}", flush=True)
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
    parser = argparse.ArgumentParser(
        prog="engine simulate", description="Publish a scripted network scenario over MQTT."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
