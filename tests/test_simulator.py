"""The network simulator: built-in scenarios as data, payload time stamps, scenario files, pacing on a
fake clock, and publishing through the embedded broker to a real subscriber."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
import yaml

from bench.scenarios import example_topology as bench_topology
from engine.errors import ConfigError, InvalidMessage
from engine.model.messages import Decoder
from engine.model.timeutil import format_time, parse_time
from engine.model.topology import topology_from_dict
from engine.tools.broker import EmbeddedBroker
from engine.tools.simulator import (
    SCENARIOS,
    Scenario,
    SimulationError,
    Step,
    example_topology,
    fiber_cut,
    load_scenario,
    load_scenario_file,
    main,
    replay_lines,
    simulate,
    stamp,
    storm,
    voip_degradation,
)
from tests.harness import run, settings

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TOPOLOGY = topology_from_dict(example_topology())
DECODER = Decoder(
    known_elements=TOPOLOGY,
    known_services={"voip", "internet"},
    known_customers=TOPOLOGY.has_customer,
)
# What `engine demo` should run the core with, so that the demo's incidents open and resolve while
# it plays (the defaults, settle 30 s and hold-down 5 min, are for real networks).
DEMO_CORE = settings(incidents={"settle": "5s", "hold_down": "10s", "update_interval": "2s"})


class FakeClock:
    """Virtual time for ``simulate``: ``sleep`` advances it at once and records the request."""

    def __init__(self, wall: float) -> None:
        self.wall = wall
        self.elapsed = 0.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.wall + self.elapsed

    def monotonic(self) -> float:
        return self.elapsed

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.elapsed += seconds
        await asyncio.sleep(0)


def _invalid(topic: str, payload: bytes | dict[str, Any]) -> list[str]:
    """The reasons the engine's decoder gives for rejecting a message (or a batch's samples)."""
    try:
        decoded = DECODER.decode(topic, payload)
    except InvalidMessage as exc:
        return [str(exc)]
    return [f"{field}: {reason}" for field, reason in decoded.rejected]


def _body(message: aiomqtt.Message) -> bytes:
    assert isinstance(message.payload, bytes | bytearray)
    return bytes(message.payload)


async def _collect(url: str, count: int, start: Callable[[], Any]) -> list[aiomqtt.Message]:
    """Subscribe to ``soc/#`` at QoS 1, run ``start()``, and return the first ``count`` messages."""
    host, port = url.removeprefix("mqtt://").split(":")
    received: list[aiomqtt.Message] = []
    async with aiomqtt.Client(
        host, int(port), identifier="test-subscriber", protocol=aiomqtt.ProtocolVersion.V311
    ) as sub:
        await sub.subscribe("soc/#", qos=1)
        task = asyncio.create_task(start())
        async with asyncio.timeout(20):  # a guard against a hang, not a timing assertion
            async for message in sub.messages:
                received.append(message)
                if len(received) == count:
                    break
        await task
    return received


# ------------------------------------------------------------------------------- scenarios as data


def test_example_topology_is_the_one_in_bench_and_examples() -> None:
    """The simulator's copy of the example network equals bench's builder and examples/topology.yaml."""
    shipped = yaml.safe_load((ROOT / "examples" / "topology.yaml").read_text())
    assert example_topology() == bench_topology() == shipped


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_builtin_scenarios_publish_only_valid_messages(name: str) -> None:
    """Every step of every built-in, once stamped, passes the engine's decoder against the example
    topology: known elements, services and customers; no rejected sample in any batch."""
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.steps
    assert [s.at for s in scenario.steps] == sorted(s.at for s in scenario.steps)
    problems = [
        (i, reason)
        for i, step in enumerate(scenario.steps)
        for reason in _invalid(step.topic, orjson.dumps(stamp(step.payload, T0)))
    ]
    assert problems == []


def test_fiber_cut_has_the_storm_around_the_root_then_the_clears() -> None:
    """agg-3's loss of signal at 1.2 s, four OLT link-downs before it, 46 after; repair, 51 clears."""
    steps = fiber_cut().steps
    raises = [s for s in steps if s.payload["severity"] != "cleared"]
    clears = [s for s in steps if s.payload["severity"] == "cleared"]
    root = next(i for i, s in enumerate(raises) if s.payload["ne_id"] == "agg-3")
    assert (root, len(raises), len(clears)) == (4, 51, 51)
    assert raises[root].at == 1.2
    assert raises[root].payload["probable_cause"] == "lossOfSignal"
    assert {s.payload["ne_id"] for s in raises} == {"agg-3"} | {f"olt-{i:03d}" for i in range(1, 51)}
    assert clears[0].payload["ne_id"] == "agg-3"
    assert min(s.at for s in clears) > max(s.at for s in raises)


def test_voip_degradation_batches_samples_and_raises_a_qos_alarm() -> None:
    """Batched samples on soc/probes/<probe>; olt-7's MOS falls below 3.6 before the probe system's
    qualityOfServiceAlarm (minor, then major), recovers, and the alarm clears."""
    scenario = voip_degradation()
    alarms = [s for s in scenario.steps if s.topic.startswith("soc/alarms/")]
    batches = [s for s in scenario.steps if s.topic == "soc/probes/probe-voip-1"]
    assert [(a.payload["severity"], a.topic) for a in alarms] == [
        ("minor", "soc/alarms/olt-7"),
        ("major", "soc/alarms/olt-7"),
        ("cleared", "soc/alarms/olt-7"),
    ]
    for a in alarms:
        assert a.payload["event_type"] == "qualityOfServiceAlarm"
        assert a.payload["probable_cause"] == "thresholdCrossed"
        assert a.payload["specific_problem"] == "MOS below 3.6"

    def mean_mos(step: Step) -> float:
        samples = step.payload["samples"]
        return float(sum(s["metrics"]["mos"] for s in samples) / len(samples))

    before_alarm = [mean_mos(b) for b in batches if b.at < alarms[0].at]
    assert before_alarm[0] > 4.0
    assert before_alarm[-1] < 3.6
    assert min(mean_mos(b) for b in batches) < 3.1
    assert all(mean_mos(b) > 4.0 for b in batches if b.at > alarms[2].at)
    assert all(
        s["target"] == "olt-7" and s["service"] == "voip" for b in batches for s in b.payload["samples"]
    )


def test_demo_plays_the_three_in_sequence_in_60_to_90_seconds() -> None:
    """demo = fiber-cut, site-power, voip-degradation, one after the other, 60–90 s at rate 1."""
    scenario = load_scenario("demo")
    assert 60.0 <= scenario.duration <= 90.0

    def part(step: Step) -> str:
        ne = step.payload.get("ne_id", "")
        if ne == "agg-3" or ne.startswith("olt-0"):
            return "fiber-cut"
        if ne in ("pwr-c", "cell-c1") or step.payload.get("probable_cause") == "equipmentMalfunction":
            return "site-power"
        return "voip-degradation"

    parts = [part(s) for s in scenario.steps]
    assert sorted(set(parts), key=parts.index) == ["fiber-cut", "site-power", "voip-degradation"]
    assert parts == sorted(parts, key=["fiber-cut", "site-power", "voip-degradation"].index)
    assert len(scenario.steps) == sum(len(load_scenario(p).steps) for p in set(parts))


def test_demo_through_the_core_is_three_incidents_that_resolve() -> None:
    """Replayed through the core with the demo's timers, the demo opens and resolves three incidents:
    the fiber cut (P1 outage, 50 suppressed), the site power failure, the voip degradation."""
    records = run(list(replay_lines(load_scenario("demo"), start=T0)), core=DEMO_CORE).records
    opened = [r for r in records if r["event"] == "opened"]
    resolved = [r for r in records if r["event"] == "resolved"]
    assert [(r["root_cause"]["ne_id"], r["root_cause"]["probable_cause"], r["state"]) for r in opened] == [
        ("agg-3", "lossOfSignal", "outage"),
        ("pwr-c", "mainsFailure", "outage"),
        ("olt-7", "thresholdCrossed", "degraded"),
    ]
    assert (opened[0]["priority"], len(opened[0]["suppressed"])) == (1, 50)
    assert {r["incident_id"] for r in resolved} == {r["incident_id"] for r in opened}
    assert max(parse_time(r["time"]) for r in records) - T0 < 90.0


def test_storm_is_seeded() -> None:
    """The same seed gives the same storm; another seed another; a clear only follows its raise."""
    assert storm(300, seed=7) == storm(300, seed=7)
    assert storm(300, seed=7) != storm(300, seed=8)
    active: set[tuple[str, str]] = set()
    for step in storm(300, seed=7).steps:
        key = (step.payload["ne_id"], step.payload["probable_cause"])
        if step.payload["severity"] == "cleared":
            assert key in active
            active.discard(key)
        else:
            active.add(key)
    assert len(storm(300).steps) == 300


# ----------------------------------------------------------------------------------------- stamps

NOW = format_time(T0)
OLD = "2025-06-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"ne_id": "a", "severity": "major"}, {"ne_id": "a", "severity": "major", "event_time": NOW}),
        ({"ne_id": "a", "event_time": OLD}, {"ne_id": "a", "event_time": OLD}),
        (
            {"samples": [{"metrics": {}}, {"metrics": {}, "time": OLD}]},
            {"samples": [{"metrics": {}, "time": NOW}, {"metrics": {}, "time": OLD}]},
        ),
        ({"probe_id": "p", "metrics": {}}, {"probe_id": "p", "metrics": {}, "time": NOW}),
        ({"perceivedSeverity": "major"}, {"perceivedSeverity": "major", "alarmRaisedTime": NOW}),
        ({"perceivedSeverity": "cleared"}, {"perceivedSeverity": "cleared", "alarmClearedTime": NOW}),
        (
            {"alarmedObject": {}, "state": "cleared"},
            {"alarmedObject": {}, "state": "cleared", "alarmClearedTime": NOW},
        ),
        ({"alarmedObject": {}, "alarmRaisedTime": OLD}, {"alarmedObject": {}, "alarmRaisedTime": OLD}),
    ],
)
def test_stamp_fills_in_missing_times_only(payload: dict[str, Any], expected: dict[str, Any]) -> None:
    """Alarms get event_time (TMF642: raised or cleared time), samples time; given times are kept."""
    assert stamp(payload, T0) == expected


# ---------------------------------------------------------------------------------- scenario files


def test_a_yaml_scenario_file_with_durations_and_unsorted_steps(tmp_path: Path) -> None:
    """A mapping with name, description and steps; ``at`` as seconds or a duration; steps sorted by
    offset, ties kept in file order; a payload's own time is kept when published."""
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: my-test\n"
        "description: two alarms\n"
        "steps:\n"
        "  - {at: 1.5s, topic: soc/alarms/agg-1, payload: {ne_id: agg-1, severity: major,"
        " probable_cause: linkDown}}\n"
        "  - {at: 0, topic: soc/alarms/agg-2, payload: {ne_id: agg-2, severity: minor,"
        " probable_cause: x, event_time: '2026-01-01T00:00:00Z'}}\n"
        "  - {at: 1500ms, topic: soc/alarms/agg-2, payload: {ne_id: agg-2, severity: cleared,"
        " probable_cause: x}}\n"
    )
    scenario = load_scenario(str(path))
    assert (scenario.name, scenario.description) == ("my-test", "two alarms")
    assert [(s.at, s.topic, s.payload["severity"]) for s in scenario.steps] == [
        (0.0, "soc/alarms/agg-2", "minor"),
        (1.5, "soc/alarms/agg-1", "major"),
        (1.5, "soc/alarms/agg-2", "cleared"),
    ]
    assert stamp(scenario.steps[0].payload, T0 + 99)["event_time"] == "2026-01-01T00:00:00Z"


def test_a_json_list_scenario_file(tmp_path: Path) -> None:
    """A plain JSON list of steps; the name is the file's stem."""
    path = tmp_path / "burst.json"
    path.write_bytes(orjson.dumps([{"at": 0, "topic": "soc/probes/p1", "payload": {"samples": []}}]))
    scenario = load_scenario_file(path)
    assert scenario == Scenario(
        "burst", "steps from burst.json", (Step(0.0, "soc/probes/p1", {"samples": []}),)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- {at: 0, topic: a/b}\n", "line 1: steps[0].payload: field required"),
        (
            "- {at: 0, topic: a/b, payload: {}}\n- {at: soon, topic: a/b, payload: {}}\n",
            "line 2: steps[1].at: not a duration: 'soon' (use e.g. 30s, 5m, 1h, 250ms)",
        ),
        (
            "- {at: -1, topic: a/b, payload: {}}\n",
            "steps[0].at: duration must be a finite, non-negative number",
        ),
        (
            "steps:\n  - at: 0\n    topic: 7\n    payload: {}\n",
            "line 3: steps[0].topic: expected a string, got integer",
        ),
        ("steps:\n  - at: 0\n    topic: ''\n    payload: {}\n", "line 3: steps[0].topic: must not be empty"),
        ("- {at: 0, topic: 'soc/#', payload: {}}\n", "steps[0].topic: wildcards cannot be published to"),
        ("- {at: 0, topic: a/b, payload: [1]}\n", "steps[0].payload: expected a mapping, got list"),
        (
            "- {at: 0, topic: a/b, payload: {}, qos: 1}\n",
            "line 1: steps[0].qos: unknown field (expected one of at, topic, payload)",
        ),
        ("- 3\n", "steps[0]: expected a mapping, got integer"),
        ("[]\n", "steps: must not be empty"),
        ("name: x\n", "steps: field required"),
        (
            "steps: [{at: 0, topic: a/b, payload: {}}]\nrate: 2\n",
            "line 2: rate: unknown field (expected one of name, description, steps)",
        ),
        ("7\n", "expected a list of steps or a mapping, got integer"),
        ("- {at: 0, topic: a/b, payload: {]\n", "malformed YAML"),
    ],
)
def test_scenario_file_errors_name_the_step_and_line(tmp_path: Path, text: str, message: str) -> None:
    """A bad scenario file raises ConfigError naming the file, the step (and line) and what is wrong,
    in the words every other file's errors use (``engine.model.wording``)."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_scenario_file(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_an_unknown_scenario_lists_the_built_ins() -> None:
    """A name that is neither a built-in nor a file says so, listing the built-ins."""
    with pytest.raises(
        ConfigError, match=r"no such scenario file, nor a built-in scenario \(demo, fiber-cut"
    ):
        load_scenario("fibre-cut")


# ------------------------------------------------------------------------------------- publishing


async def test_fiber_cut_at_rate_0_arrives_in_order_and_valid() -> None:
    """All 102 steps of fiber-cut, published as fast as possible with QoS 1 and many in flight, reach
    a QoS 1 subscriber in step order, and every payload passes the decoder (zero invalid)."""
    scenario = fiber_cut()
    done: list[Step] = []
    async with EmbeddedBroker() as broker:

        async def start() -> Any:
            return await simulate(broker.url, scenario, rate=0, on_step=done.append, max_inflight=32)

        received = await _collect(broker.url, len(scenario.steps), start)
    assert [str(m.topic) for m in received] == [s.topic for s in scenario.steps]
    payloads = [orjson.loads(_body(m)) for m in received]
    assert [{k: v for k, v in p.items() if k != "event_time"} for p in payloads] == [
        dict(s.payload) for s in scenario.steps
    ]
    assert [r for m in received for r in _invalid(str(m.topic), _body(m))] == []
    assert all(m.qos == 1 for m in received)
    assert [s.topic for s in done] == [s.topic for s in scenario.steps]
    assert all("event_time" in s.payload for s in done)


@pytest.mark.parametrize("rate", [10.0, 1.0, 0.5])
async def test_rate_scales_the_offsets_on_a_fake_clock(rate: float) -> None:
    """Each payload is stamped at start + offset / rate (to the millisecond) and the simulator sleeps
    exactly until then: pacing is measured on a fake clock, not on the wall."""
    scenario = load_scenario("site-power")
    clock = FakeClock(T0)
    async with EmbeddedBroker() as broker:

        async def start() -> Any:
            return await simulate(broker.url, scenario, rate=rate, clock=clock)

        received = await _collect(broker.url, len(scenario.steps), start)
    times = [parse_time(orjson.loads(_body(m))["event_time"]) for m in received]
    assert times == pytest.approx([T0 + s.at / rate for s in scenario.steps], abs=0.001)
    assert sum(clock.slept) == pytest.approx(scenario.duration / rate)


async def test_rate_0_never_sleeps_and_reports_stats() -> None:
    """At rate 0 nothing waits on the clock; the stats count every message."""
    scenario = storm(200, seed=3)
    clock = FakeClock(T0)
    async with EmbeddedBroker() as broker:
        stats = await simulate(broker.url, scenario, rate=0, qos=0, clock=clock)
    assert clock.slept == []
    assert stats.published == 200
    assert stats.duration == 0.0  # on the fake clock
    assert stats.per_second == 0.0


async def test_an_unreachable_broker_is_a_simulation_error() -> None:
    """Nothing listening: SimulationError naming the broker URL, no task left behind."""
    async with EmbeddedBroker() as broker:
        url = broker.url
    with pytest.raises(SimulationError, match=url):
        await simulate(url, fiber_cut())
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": -1.0}, "rate must be"),
        ({"rate": float("nan")}, "rate must be"),
        ({"qos": 2}, "qos must be 0 or 1"),
        ({"max_inflight": 0}, "max_inflight"),
        ({"url": "http://x"}, "expected mqtt://"),
        ({"url": "mqtt://host:port"}, "bad port"),
    ],
)
async def test_bad_arguments_are_refused_before_connecting(kwargs: dict[str, Any], message: str) -> None:
    """Bad rate, QoS, bound or URL: ValueError saying which."""
    url = kwargs.pop("url", "mqtt://127.0.0.1:1")
    with pytest.raises(ValueError, match=message):
        await simulate(url, fiber_cut(), **kwargs)


# ------------------------------------------------------------------------------------ command line


def test_list_names_every_built_in(capsys: pytest.CaptureFixture[str]) -> None:
    """--list prints one line per built-in (name, steps, duration, description) and needs no broker."""
    assert main(["--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == list(SCENARIOS)
    assert any(line.startswith("demo") and "78.5 s" in line for line in out)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--scenario NAME|FILE is required"),
        (["--scenario", "nope"], "nope: no such scenario file, nor a built-in scenario"),
    ],
)
def test_bad_usage_exits_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing scenario, unknown scenario: exit status 2, the reason on stderr."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "-1"],
        ["--rate", "fast"],
        ["--rate", "nan"],
        ["--qos", "2"],
        ["--count", "0"],
        ["--count", "99999999999999"],
        ["--broker", "http://x"],
        ["--broker", "mqtt://127.0.0.1:99999"],
    ],
)
def test_bad_option_values_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """argparse refuses a negative, non-numeric or NaN rate, QoS 2, an empty storm or one too big to
    build, and a broker URL that is not mqtt:// or has a bad port: status 2, one line naming it."""
    with pytest.raises(SystemExit) as info:
        main(["--scenario", "demo", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"error: argument {argv[0]}:" in err


async def test_the_command_publishes_a_file_and_prints_progress(tmp_path: Path) -> None:
    """``python -m engine.tools.simulator --scenario FILE --rate 0`` publishes every step, prints one line per
    step and a summary, exits 0."""
    path = tmp_path / "two.yaml"
    path.write_text(
        "- {at: 0, topic: soc/alarms/agg-1,\n"
        "   payload: {ne_id: agg-1, severity: major, probable_cause: linkDown}}\n"
        "- {at: 5, topic: soc/alarms/agg-1,\n"
        "   payload: {ne_id: agg-1, severity: cleared, probable_cause: linkDown}}\n"
    )
    async with EmbeddedBroker() as broker:
        url = broker.url
        result: dict[str, Any] = {}

        async def start() -> None:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "engine.tools.simulator",
                "--broker",
                broker.url,
                "--scenario",
                str(path),
                "--rate",
                "0",
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
            result.update(status=proc.returncode, out=out.decode(), err=err.decode())

        received = await _collect(broker.url, 2, start)
    assert result["status"] == 0, result["err"]
    assert [orjson.loads(_body(m))["severity"] for m in received] == ["major", "cleared"]
    lines = result["out"].splitlines()
    assert lines[0] == f"scenario two: 2 steps, as fast as possible, to {url}"
    assert lines[1].split() == ["+", "0.000s", "soc/alarms/agg-1", "agg-1", "linkDown", "major"]
    assert lines[2].split() == ["+", "5.000s", "soc/alarms/agg-1", "agg-1", "linkDown", "cleared"]
    assert lines[3].startswith("published 2 messages in ")
    assert result["err"] == ""
