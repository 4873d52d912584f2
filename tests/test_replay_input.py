"""The replay's input side: each line parsed once, its payload handed to the core as bytes and as
the mapping already parsed, with the same decisions as from the bytes alone."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.core.pipeline import Pipeline
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
