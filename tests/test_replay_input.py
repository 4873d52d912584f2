"""The replay's input side: each line parsed once, its payload handed to the core as bytes and as
the mapping already parsed, with the same decisions as from the bytes alone."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.core.pipeline import Pipeline
from engine.model.messages import payload_bytes
from engine.model.timeutil import _expanded, format_time
from engine.model.topology import load_topology
from engine.rules.schema import load_rulesets
from engine.tools.replay import Replayer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _lines(seed: int) -> list[bytes]:
    """The fiber-cut example's lines, many of them written in forms orjson does not write (spaces, a
    key repeated, escapes, numbers in exponent form) or made bad, oversized, untimed or late."""
    rng = random.Random(seed)
    out: list[bytes] = [
        b'{"topic": "soc/alarms/olt-001", "payload": {"ne_id": "olt-001", "severity": "major"}}'
    ]
    for raw in (EXAMPLES / "fiber-cut.jsonl").read_bytes().splitlines():
        line = orjson.loads(raw)
        payload: dict[str, Any] = line["payload"]
        for _ in range(3):
            text = raw
            r = rng.random()
            if r < 0.15:
                text = text.replace(b'":', b'" : ').replace(b',"', b',  "')
            elif r < 0.3:
                text = text.replace(b"olt-", b"\\u006flt-")
            elif r < 0.4:
                text = text.replace(b'"payload":{', b'"payload":{"ne_id":"nope","x":1e5,"y":-0.0,', 1)
            elif r < 0.5:
                big = {**payload, "text": "é" * rng.randint(50, 300)}
                text = orjson.dumps({**line, "payload": big})
            elif r < 0.55:
                text = orjson.dumps({**line, "payload": [payload]})
            elif r < 0.6:
                text = orjson.dumps({**line, "payload": {**payload, "event_time": "soon"}})
            elif r < 0.65:
                text = orjson.dumps({**line, "time": "2026-01-01T00:00:00Z"})
            out.append(text)
    out += [b"", b"  ", b"not json", b'{"topic": 1, "payload": {}}']
    return out


def _replay(lines: list[bytes], *, parsed: bool) -> list[bytes]:
    pipeline = Pipeline(load_topology(EXAMPLES / "topology.yaml"), load_rulesets(None), max_bytes=500)
    if not parsed:  # the bytes alone, as before the replay passed its parse along
        feed = pipeline.feed

        def bytes_only(
            topic: str, payload: Any, now: float, *, flush: bool = True, parsed: dict[str, Any] | None = None
        ) -> Any:
            return feed(topic, payload, now, flush=flush)

        pipeline.feed = bytes_only  # type: ignore[method-assign]
    out: list[bytes] = []
    replayer = Replayer(
        pipeline,
        emit=lambda rec: out.append(b"record " + orjson.dumps(rec)),
        dead_letter=lambda dl: out.append(b"dead " + orjson.dumps(dl)),
    )
    stats = replayer.run(lines)
    out.append(orjson.dumps([stats.events, stats.bad_lines, stats.late, stats.first_time, stats.last_time]))
    out.append(orjson.dumps(pipeline.summary(), default=str))
    return out


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_replay_decides_as_from_the_payload_bytes_alone(seed: int) -> None:
    """Lines in forms orjson does not write, oversized, bad, untimed and late: the records, dead
    letters (the payload's bytes as orjson writes them, the size limit counted on those) and
    counters are byte for byte those of a replay that gives the core the payload's bytes alone."""
    lines = _lines(seed)
    got = _replay(lines, parsed=True)
    assert got == _replay(lines, parsed=False)
    dead = [orjson.loads(d.removeprefix(b"dead ")) for d in got if d.startswith(b"dead ")]
    reasons = {e["reason"].split(" ")[0] for d in dead for e in d["errors"]}
    assert {"payload", "expected"} <= reasons  # the size limit and the shapes were met
    assert any(d.startswith(b"record ") for d in got)


def test_times_past_year_9999_are_dead_letters_and_a_clock_there_is_written_expanded() -> None:
    """A line whose time is past year 9999 (``1e300`` seconds, a 31-digit integer) is no clock the
    replay can run on: the core refuses it in words, at the current time; an alarm at the last
    second of 9999 is applied, and its incident's timers, due past it, write their times in ISO
    8601's expanded form instead of raising (the replay used to stop with a traceback on both)."""
    base = {"ne_id": "olt-001", "severity": "major", "probable_cause": "linkDown"}
    lines = [
        orjson.dumps({"topic": "soc/alarms/x", "payload": {**base, "event_time": "2026-01-01T00:00:00Z"}}),
        orjson.dumps({"topic": "soc/alarms/x", "payload": {**base, "event_time": 1e300}}),
        orjson.dumps({"topic": "soc/alarms/x", "payload": {**base, "event_time": 1}}).replace(
            b":1}", b":%d}" % 10**30
        ),
        orjson.dumps(
            {"topic": "soc/alarms/y", "payload": {**base, "ne_id": "olt-002", "event_time": 253402300799}}
        ),
    ]
    pipeline = Pipeline(load_topology(EXAMPLES / "topology.yaml"), load_rulesets(None))
    records: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    stats = Replayer(pipeline, emit=records.append, dead_letter=dead.append).run(lines)
    assert stats.events == 4
    assert [d["errors"][0]["reason"] for d in dead] == [
        "time 1e+300 is after year 9999 (epoch milliseconds sent as seconds?)",
        "time 1e+30 is after year 9999 (epoch milliseconds sent as seconds?)",
    ]
    assert [d["time"] for d in dead] == ["2026-01-01T00:00:00.000Z"] * 2  # at the current clock
    times = [r["time"] for r in records if r["root_cause"]["ne_id"] == "olt-002"]
    assert times
    assert all(t.startswith("+10000-01-01T") for t in times)


def test_format_time_past_year_9999_continues_the_calendar() -> None:
    """``format_time`` beyond ``datetime``'s years: the proleptic Gregorian calendar by arithmetic,
    the year signed; within the range it agrees with ``datetime`` (checked there, with the sign and
    a leading zero added)."""
    rng = random.Random(7)
    for t in [0.0, 0.9999996, 951782400.0, 253402300799.999] + [
        rng.uniform(0, 253402300799) for _ in range(5000)
    ]:
        assert _expanded(t) == "+0" + format_time(t)
    assert format_time(253402300800.0) == "+10000-01-01T00:00:00.000Z"
    assert format_time(253402300800.0 + 59 * 86400 + 1.5) == "+10000-02-29T00:00:01.500Z"  # a leap year
    assert format_time(1e15) == "+31690708-07-05T01:46:40.000Z"


def _nested(depth: int) -> bytes:
    """An alarm line whose payload carries a list nested ``depth`` levels deep (a field of its own)."""
    head = (
        b'{"topic":"soc/alarms/olt-001","payload":{"ne_id":"olt-001","severity":"major",'
        b'"probable_cause":"linkDown","event_time":"2026-01-01T00:00:00Z","x":'
    )
    return head + b"[" * depth + b"]" * depth + b"}}"


def test_a_payload_nested_deeper_than_orjson_writes_is_applied_and_deeper_still_is_a_bad_line() -> None:
    """orjson reads 1,024 levels of nesting but writes 254: a payload nested 300 deep (which the
    daemon, given the bytes, takes) is applied as any other, its bytes written by the standard
    library; one nested 1,000 deep, more than even that writes, is a bad line that says so, and the
    replay goes on to the next line (both stopped the replay with a traceback: ``TypeError:
    Recursion limit reached``)."""
    fine = orjson.dumps(
        {
            "topic": "soc/alarms/olt-002",
            "payload": {
                "ne_id": "olt-002",
                "severity": "major",
                "probable_cause": "linkDown",
                "event_time": "2026-01-01T00:00:01Z",
            },
        }
    )
    pipeline = Pipeline(load_topology(EXAMPLES / "topology.yaml"), load_rulesets(None))
    records: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    stats = Replayer(pipeline, emit=records.append, dead_letter=dead.append).run(
        [_nested(300), _nested(1000), fine]
    )
    assert (stats.events, stats.bad_lines) == (2, 1)
    assert stats.bad_line_examples == [
        "line 2: payload nested too deeply to be written back as JSON (about 990 levels at most)"
    ]
    assert {r["root_cause"]["ne_id"] for r in records} == {"olt-001", "olt-002"}
    assert [d["errors"][0]["reason"] for d in dead] == [
        "payload nested too deeply to be written back as JSON (about 990 levels at most)"
    ]


def test_payload_bytes_writes_what_orjson_cannot_as_orjson_would() -> None:
    """``payload_bytes`` gives orjson's bytes where orjson writes them, and beyond its 254 levels
    the standard library's with the same separators and UTF-8 as they are (no ``\\u`` escapes)."""
    shallow = {"a": [1, 2.5, "é", None, True], "b": {"c": "x"}}
    assert payload_bytes(shallow) == orjson.dumps(shallow)
    deep = orjson.loads(b'{"t":"\xc3\xa9","x":' + b"[" * 300 + b"]" * 300 + b"}")
    assert payload_bytes(deep) == b'{"t":"\xc3\xa9","x":' + b"[" * 300 + b"]" * 300 + b"}"
    with pytest.raises(ValueError, match="nested too deeply"):
        payload_bytes(orjson.loads(b"[" * 1000 + b"]" * 1000))
    # what is no JSON value (a rule test's YAML can hold one) is refused as orjson refuses it
    with pytest.raises(ValueError, match=r"^payload is not JSON: Dict key must be str$"):
        payload_bytes({1: "x"})
    with pytest.raises(ValueError, match=r"^payload is not JSON: Type is not JSON serializable: set$"):
        payload_bytes({"a": {1, 2}})
