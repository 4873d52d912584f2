"""Scenarios for the simulator and the demo: timed MQTT messages against the example network.

A ``Scenario`` is a named list of ``Step`` s (offset, topic, payload). Built-ins: ``fiber-cut``,
``site-power``, ``voip-degradation``, ``demo`` (the three in sequence) and ``storm`` (seeded random
load); scenario files (YAML or JSON) are validated by pydantic models, their errors naming the step
and line in the engine's wording (``engine.model.wording``). ``stamp`` fills the
event times at publish time; ``replay_lines`` turns a scenario into ``engine replay`` lines.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from engine.errors import ConfigError
from engine.model.timeutil import Duration, format_time
from engine.model.wording import dotted, first_problem, type_name
from engine.model.yamlsource import load_file

TIERS = ("platinum", "gold", "silver", "bronze")


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


def _publishable(topic: str) -> str:
    if "+" in topic or "#" in topic:
        raise ValueError(f"wildcards cannot be published to: {topic!r}")
    return topic


def _json_object(payload: dict[str, Any]) -> dict[str, Any]:
    try:
        orjson.dumps(payload)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot be encoded as JSON: {exc}") from None
    return payload


class _StepFile(BaseModel):
    """One step of a scenario file: ``at`` (seconds or a duration from the start), ``topic`` and
    ``payload`` (a JSON object)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: Duration
    topic: Annotated[str, Field(min_length=1), AfterValidator(_publishable)]
    payload: Annotated[dict[str, Any], AfterValidator(_json_object)]


class _ScenarioFile(BaseModel):
    """A scenario file: ``steps`` (at least one), an optional ``name`` and ``description``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    description: str | None = None
    steps: Annotated[list[_StepFile], Field(min_length=1)]


def load_scenario_file(path: str | Path) -> Scenario:
    """Read a YAML or JSON scenario: a list of steps, or a mapping ``{name, description, steps}``.
    Raises ``ConfigError`` naming the step (and line) at fault, in the engine's wording
    (``engine.model.wording``)."""
    data, locator = load_file(path)
    source = str(path)
    listed = isinstance(data, list)  # a bare list of steps: the document's paths have no "steps"
    if not listed and not isinstance(data, Mapping):
        raise ConfigError(source, "", f"expected a list of steps or a mapping, got {type_name(data)}")
    try:
        parsed = _ScenarioFile.model_validate({"steps": data} if listed else data)
    except ValidationError as exc:
        loc, reason = first_problem(exc, _ScenarioFile)
        line = locator.line(loc[1:] if listed else loc)
        where = dotted(loc)
        raise ConfigError(source, f"line {line}: {where}" if line and where else where, reason) from None
    name = parsed.name or Path(path).stem
    description = parsed.description or f"steps from {Path(path).name}"
    return _scenario(name, description, [Step(s.at, s.topic, s.payload) for s in parsed.steps])


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
