"""The replay's input side: fast paths that must give exactly what the general ones give.

``parse_text`` hands a time ending in ``Z`` to ``datetime.fromisoformat`` as it is (Python 3.11
reads the ``Z`` as UTC) before the general path (strip, ``Z``/``z`` → ``+00:00``), which takes
anything that fails and words the error. ``Pipeline.advance_to(t, due=...)`` takes the due time its
caller just asked for instead of asking again."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import pytest

from engine.core.pipeline import Decisions, Pipeline
from engine.model import timeutil
from engine.model.topology import load_topology
from engine.rules.schema import load_rulesets
from engine.tools.replay import Replayer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _general(value: str) -> float | str:
    """``parse_text`` as it was written before its fast path: the time, or the error's words."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return f"not an RFC 3339 time: {value!r}"
    if dt.tzinfo is None:
        return f"RFC 3339 time needs an offset or Z: {value!r}"
    t = dt.timestamp()
    if t < 0:
        return f"time {value!r} is before 1970-01-01T00:00:00Z (the Unix epoch)"
    return t


def _parsed(value: str) -> float | str:
    try:
        return timeutil.parse_text.__wrapped__(value)  # (the cache bypassed)
    except ValueError as exc:
        return str(exc)


_BASES = [
    "2021-01-01T00:00:00.000Z",
    "2021-01-01",
    "2021-01-01T00:00",
    "2021-W01-1T00:00:00",
    "2021-001T00:00:00",
    "20210101T000000",
    "2021-01-01 00:00:00",
    "2021-01-01T00:00:00.123456789",
    "2021-01-01T00:00:00,5",
    "2021-01-01T24:00:00",
    "2021-01-01T00:00:00+01:00",
    "2021-01-01T00",
    "2021-01-01T0000",
    "2021-01-01T00:00:00.1",
    "2021-02-29T00:00:00",
    "2024-02-29T23:59:59.999",
    "1969-12-31T23:59:59",
    "1970-01-01T00:00:00",
    "9999-12-31T23:59:59.999999",
]
_CHARACTERS = "0123456789-:T Zz+.,W\t\n"


def _candidates(rng: random.Random, mutations: int) -> set[str]:
    """Times in many forms with ``Z``, ``z``, spaces and offsets around them, and random edits."""
    out: set[str] = set()
    for base in _BASES:
        for suffix in ["Z", "z", " Z", "Z ", "+00:00Z", "ZZ", "", " ", "\nZ"]:
            out |= {base + suffix, " " + base + suffix, base[:10] + suffix, base[:16] + suffix}
    for _ in range(mutations):
        chars = list(rng.choice(_BASES))
        for _ in range(rng.randint(0, 3)):
            i = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.4:
                chars[i] = rng.choice(_CHARACTERS)
            elif op < 0.7:
                chars.insert(i, rng.choice(_CHARACTERS))
            else:
                del chars[i]
        text = "".join(chars)
        out |= {text, text + "Z"}
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_parse_text_fast_path_is_the_general_one(seed: int) -> None:
    """Every string, good or bad, parses to the same time or fails with the same words as before
    the fast path (the cache bypassed); many of them end in ``Z`` and parse."""
    parsed = 0
    for value in sorted(_candidates(random.Random(seed), 40_000)):
        want = _general(value)
        assert _parsed(value) == want, value
        parsed += isinstance(want, float) and value.endswith("Z")
    assert parsed > 1_000


def _replay(due_given: bool) -> tuple[list[bytes], dict[str, object], int]:
    """The fiber-cut example's replay: its records' lines, its summary and how many times the replay
    advanced to a due timer; ``due_given`` False: ``advance_to`` asks ``next_due`` again, as it did
    before it was handed the answer."""
    pipeline = Pipeline(load_topology(EXAMPLES / "topology.yaml"), load_rulesets(None))
    advance = pipeline.advance_to
    advanced = 0

    def advance_to(t: float, *, due: float | None = None) -> Decisions:
        nonlocal advanced
        advanced += due is not None
        return advance(t, due=due) if due_given else advance(t)

    pipeline.advance_to = advance_to  # type: ignore[method-assign]
    lines: list[bytes] = []
    Replayer(pipeline, emit_line=lines.append).run((EXAMPLES / "fiber-cut.jsonl").read_bytes().splitlines())
    summary = pipeline.summary()
    pipeline.close()
    return lines, summary, advanced


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_advance_to_with_the_due_time_given_decides_the_same() -> None:
    lines, summary, advanced = _replay(due_given=True)
    assert (lines, summary, advanced) == _replay(due_given=False)
    assert lines
    assert advanced > 0  # the replay found timers due between events and handed their time on
