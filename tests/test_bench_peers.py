"""The pure parts of ``bench.peers``: the scaled stream, its three conversions, SEC's input and ruleset."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from bench.peers import SEC, SEC_RULES, Run, conversion, engine_worker, report, scaled, sec_line
from engine.model.timeutil import format_time, parse_time
from engine.tools.datasets.pcic import Converted, write


def _alarm(ne: str, cause: str, severity: str, when: str) -> dict[str, object]:
    payload = {
        "ne_id": ne,
        "severity": severity,
        "probable_cause": cause,
        "event_type": "communicationsAlarm",
        "event_time": when,
    }
    return {"topic": f"soc/alarms/{ne}", "payload": payload}


BASE = Converted(
    name="tiny",
    topology={
        "service_types": {},
        "customers": [],
        "elements": [
            {"id": "dev-1", "type": "microwave", "depends_on": []},
            {"id": "dev-2", "type": "microwave", "depends_on": ["dev-1"]},
            {"id": "dev-3", "type": "microwave", "depends_on": [["dev-1", "dev-2"]]},
        ],
    },
    events=[
        _alarm("dev-1", "pcicType1", "major", "2021-01-01T00:00:00.000Z"),
        _alarm("dev-2", "pcicType2", "major", "2021-01-01T00:00:30.000Z"),
        _alarm("dev-1", "pcicType1", "cleared", "2021-01-01T00:02:00.000Z"),
    ],
    config={"alarms": {"effects": [{"effect": "degraded"}]}},
    summary={},
)


def test_copies_are_distinct_devices_shifted_in_time_and_merged_in_order() -> None:
    """Copy k renames every element and dependency ``dev-N`` → ``ck-dev-N`` (copy 0 keeps its
    names), is shifted k × shift seconds, and the copies' events come out in time order."""
    s = scaled(BASE, 3, 60.0)
    ids = [e["id"] for e in s.topology["elements"]]
    assert len(ids) == len(set(ids)) == 9
    assert {"dev-1", "c1-dev-1", "c2-dev-3"} <= set(ids)
    c2_dev3 = next(e for e in s.topology["elements"] if e["id"] == "c2-dev-3")
    assert c2_dev3["depends_on"] == [["c2-dev-1", "c2-dev-2"]]
    assert len(s.events) == 9
    times = [parse_time(e["payload"]["event_time"]) for e in s.events]
    assert times == sorted(times)
    c2 = [e for e in s.events if e["payload"]["ne_id"].startswith("c2-")]
    original = [parse_time(e["payload"]["event_time"]) for e in BASE.events]
    assert [parse_time(e["payload"]["event_time"]) for e in c2] == [t + 120 for t in original]
    assert all(e["topic"] == "soc/alarms/" + e["payload"]["ne_id"] for e in s.events)


def test_the_three_conversions() -> None:
    """readme is the stream as is; unknown keeps the elements and drops every link; storm makes
    every alarm a lossOfSignal (its type kept as specific problem) and an outage, whatever its
    severity (issue 11's storm, pinned by its own effects table)."""
    assert conversion(BASE, "readme") is BASE
    unknown = conversion(BASE, "unknown")
    assert [e["depends_on"] for e in unknown.topology["elements"]] == [[], [], []]
    assert unknown.events == BASE.events
    assert unknown.config == BASE.config
    storm = conversion(BASE, "storm")
    assert {e["payload"]["probable_cause"] for e in storm.events} == {"lossOfSignal"}
    assert [e["payload"]["specific_problem"] for e in storm.events] == ["pcicType1", "pcicType2", "pcicType1"]
    assert storm.config == {"alarms": {"effects": [{"effect": "outage"}]}}
    assert storm.topology == BASE.topology
    with pytest.raises(ValueError, match="unknown conversion"):
        conversion(BASE, "nope")
    with pytest.raises(ValueError, match="scale must be >= 1"):
        scaled(BASE, 0, 1.0)


def test_sec_line() -> None:
    """SEC reads ``<epoch> <element> <cause> <specific problem or -> <severity>``."""
    assert sec_line(BASE.events[0]) == b"1609459200 dev-1 pcicType1 - major\n"
    assert (
        sec_line(conversion(BASE, "storm").events[2]) == b"1609459320 dev-1 lossOfSignal pcicType1 cleared\n"
    )


@pytest.mark.skipif(not Path(SEC).is_file(), reason=f"{SEC} not installed (Debian package sec)")
def test_sec_ruleset_dedups_pairs_and_counts(tmp_path: Path) -> None:
    """The SEC peer does the work it is credited with: a repeat is absorbed, a clear closes the
    pair, a raise after the clear is a new occurrence, 5 new raises on one element are a storm."""
    lines = [
        "1 dev-1 pcicType5 - major",
        "2 dev-1 pcicType5 - major",
        "3 dev-1 pcicType5 - cleared",
        "4 dev-1 pcicType5 - major",
        "5 dev-1 a - major",
        "6 dev-1 b - major",
        "7 dev-1 c - major",
        "8 dev-2 c - cleared",
    ]
    events = tmp_path / "events.txt"
    events.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [SEC, f"--conf={SEC_RULES}", f"--input={events}", "--notail", "--fromstart", "--log=/dev/null"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.decode().splitlines() == [
        "raised dev-1 pcicType5 -",
        "paired dev-1 pcicType5 -",
        "raised dev-1 pcicType5 -",
        "raised dev-1 a -",
        "raised dev-1 b -",
        "raised dev-1 c -",
        "storm on dev-1",
    ]


def test_report_prints_the_goals_of_issue_11_beside_the_figures() -> None:
    """Goals 1, 2 and 5 each get their line: the ratios to SEC and Alertmanager, the cost per event
    at 10k/100k/1M against the first interval, and resident memory at 1M against 100k events."""
    engine = Run(
        events=1_200_000,
        wall=600.0,
        cpu=600.0,
        rss_mib=900.0,
        outputs=10,
        checkpoints=((10_000, 4.0), (100_000, 40.0), (1_000_000, 490.0), (1_200_000, 600.0)),
        incidents=5,
        held=(
            (10_000, 150.0, 40, 4, 900),
            (100_000, 300.0, 80, 7, 1500),
            (1_000_000, 600.0, 90, 8, 1600),
            (1_200_000, 610.0, 0, 0, 200),
        ),
    )
    sec = Run(events=1_200_000, wall=60.0, cpu=60.0, rss_mib=20.0, outputs=3)
    am = Run(events=1_200_000, wall=30.0, cpu=24.0, rss_mib=40.0, outputs=1)
    text = "\n".join(report("readme", [engine], [sec], [am]))
    assert "engine/SEC: events/s 0.100 (goal ≥ 2), CPU per event 10.00×" in text
    assert "engine 2,000 events per CPU-second: engine/Alertmanager 0.040 (goal ≥ 1)" in text
    assert "events 100,001–1,000,000: 500 µs/event" in text
    assert "µs per event, events 100,001–1,000,000 against 10,001–100,000: 1.25× (goal: flat)" in text
    assert "100,000 events: RSS 300 MiB, 80 active alarms, 7 open incidents, 1,500 entries" in text
    assert "1,200,000 events (the end, drained): RSS 610 MiB, 0 active alarms" in text
    assert "RSS at 1,000,000 / at 100,000 events: 2.00× (goal ≤ 1.5×; active alarms 90 against 80)" in text


@pytest.mark.parametrize("events", [10_000, 10_001])
def test_engine_worker_replays_every_line_with_a_checkpoint_at_10k(tmp_path: Path, events: int) -> None:
    """The engine worker reads its file in blocks and still replays every line, with a checkpoint
    before line 10,000 only when the file has that line (and one after the drain)."""
    stream = Converted(
        name="many",
        topology=BASE.topology,
        events=[
            _alarm(
                "dev-1", "pcicType1", "cleared" if i % 2 else "major", format_time(1_609_459_200.0 + 10 * i)
            )
            for i in range(events)
        ],
        config=BASE.config,
        summary={},
    )
    write(stream, tmp_path)
    assert engine_worker(tmp_path) == 0
    report = orjson.loads((tmp_path / "engine-report.json").read_bytes())
    assert report["events"] == events
    marks = [n for n, _ in report["checkpoints"]]
    assert marks == ([10_000, events] if events > 10_000 else [events])
