"""The replay's output side: fast paths that must give exactly what the general ones give.

``format_time`` writes a whole second from a table and the day's prefix; everything else (fractions,
times before 1970 or past 9999, not finite) through ``datetime`` as before. ``RecordBuilder.record``
makes its record as a draft of the same slots (not through the frozen dataclass's ``__init__``).
``IncidentRecord.to_json``, the line ``engine replay`` writes, puts each symptom's JSON in as made
once."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.core.incident_records import Acknowledgement, IncidentRecord, SuppressedAlarm
from engine.core.pipeline import Pipeline
from engine.model import timeutil
from engine.model.timeutil import format_time
from engine.model.topology import load_topology
from engine.rules.schema import load_rulesets
from engine.tools.replay import Replayer, dumps

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _by_datetime(t: float) -> str:
    """``format_time`` as it was written before its table (``datetime``, then ``_expanded``)."""
    try:
        return datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    except (OverflowError, ValueError, OSError):
        return timeutil._expanded(t)


def _times(rng: random.Random) -> list[float]:
    edges = [0.0, -0.0, 1.0, 59.0, 60.0, 3599.0, 3600.0, 86399.0, 86400.0, 951782400.0, 951868799.0]
    edges += [1709164800.0, 4107456000.0, 253402214400.0, 253402300799.0, 253402300800.0, 253402300801.0]
    edges += [0.5, 0.0004999, 0.0005, 0.9995, 0.9999996, 1e15, -1.0, -86400.5, math.inf, -math.inf]
    # whole seconds over the whole range, and on leap days (29 February of 1972 … 9996, and 2000)
    out = edges + [float(rng.randrange(0, 253402300800)) for _ in range(20000)]
    for year in [*range(1972, 2100, 4), 2000, 2400, 9996]:
        day = datetime(year, 2, 29, tzinfo=UTC).timestamp()
        out += [day + rng.randrange(86400) for _ in range(5)] + [day - 1.0, day + 86399.0, day + 86400.0]
    # times near the replays' (2021) with and without a fraction
    fractions = [0.0, 0.0, 0.001, 0.25, 0.9996]
    out += [1609459200.0 + rng.randrange(10**7) + rng.choice(fractions) for _ in range(5000)]
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_format_time_by_table_is_the_datetime_text(seed: int) -> None:
    """The table path (whole seconds from 1970 to 9999) against ``datetime``, over many times; the
    cache bypassed (``__wrapped__``) and used."""
    rng = random.Random(seed)
    for t in _times(rng):
        want = _by_datetime(t)
        assert format_time.__wrapped__(t) == want, t
        assert format_time(t) == want, t


def test_format_time_keeps_its_day_prefixes_bounded() -> None:
    for day in range(timeutil._DAYS_KEPT + 10):
        assert format_time.__wrapped__(day * 86400.0) == _by_datetime(day * 86400.0)
        assert len(timeutil._DAYS) <= timeutil._DAYS_KEPT


def _records() -> list[IncidentRecord]:
    """The typed records of the fiber-cut example replayed (opened, updated, resolved; symptoms)."""
    pipeline = Pipeline(load_topology(EXAMPLES / "topology.yaml"), load_rulesets(None))
    out: list[IncidentRecord] = []
    Replayer(pipeline, emit=lambda _rec: None, on_record=out.append).run(
        (EXAMPLES / "fiber-cut.jsonl").read_bytes().splitlines()
    )
    assert {r.event for r in out} >= {"opened", "updated", "resolved"}
    assert any(r.suppressed for r in out)
    return out


def test_a_record_made_by_the_builder_is_the_frozen_dataclass_of_its_fields() -> None:
    """``RecordBuilder.record`` makes an ``IncidentRecord`` (through its twin on the source, native
    on the compiled core): every field set, equal to (and written as) the dataclass made of its
    fields, frozen."""
    for rec in _records():
        assert type(rec) is IncidentRecord
        made = IncidentRecord(**{f.name: getattr(rec, f.name) for f in dataclasses.fields(IncidentRecord)})
        assert rec == made
        assert repr(rec) == repr(made)
        assert dataclasses.replace(rec, version=rec.version) == rec
        with pytest.raises(dataclasses.FrozenInstanceError):
            rec.version = 0  # type: ignore[misc]


def test_a_records_json_line_is_dumps_of_its_wire_form() -> None:
    """``IncidentRecord.to_json`` (each symptom's JSON made once and put in as it is) against
    ``dumps(to_wire())``, byte for byte: the example's records, again (the entries' JSON kept), and
    variants with symptoms carrying threshold information, text to escape, an acknowledgement and a
    merge."""
    records = _records()
    symptom = SuppressedAlarm(
        'olt-9:"los"\\', "olt-9", None, "cleared", "agg-3:x", "r/é", "explained by\n agg-3 \u2028", None
    )
    info = {"indicator": "latency_ms", "direction": "up", "observed_value": 81.5, "threshold": None}
    variants = [
        dataclasses.replace(
            rec,
            suppressed=(*rec.suppressed, symptom, dataclasses.replace(symptom, threshold_info=info)),
            acknowledged=Acknowledgement("ops \U0001f600", 1609459200.25, None),
            event="resolved",
            resolution="merged",
            merged_into="inc-x",
        )
        for rec in records[:5]
    ]
    for rec in [*records, *records, *variants, *variants]:
        assert rec.to_json() == dumps(rec.to_wire())
    assert any(rec.suppressed for rec in records)


def test_the_replays_lines_are_dumps_of_what_emit_is_given() -> None:
    pipeline = Pipeline(load_topology(EXAMPLES / "topology.yaml"), load_rulesets(None))
    given: list[bytes] = []
    lines: list[bytes] = []
    Replayer(pipeline, emit=lambda rec: given.append(dumps(rec)), emit_line=lines.append).run(
        (EXAMPLES / "fiber-cut.jsonl").read_bytes().splitlines()
    )
    assert lines
    assert lines == given


def test_an_empty_tuple_is_written_as_each_part_writes_it() -> None:
    """The parts' JSON is kept by the part's identity, and ``()`` is one object that two parts can
    hold: ``alarms`` (written ``[]``) and ``suppressed`` (its entries joined, written without the
    brackets that ``to_json`` adds around them: empty). A record with ``suppressed=()`` followed by
    one with ``alarms=()`` wrote ``"alarms":,`` (not JSON) before the cache minded the writer."""
    rec = _records()[0]
    first = dataclasses.replace(rec, alarms=("x",), suppressed=())
    second = dataclasses.replace(rec, alarms=(), suppressed=())
    for r in (first, second, first):
        assert r.to_json() == dumps(r.to_wire())
