"""The PCIC 2021 replay through the real core (as ``bench.replay`` runs it) and its quality measure."""

from __future__ import annotations

from typing import Any

import pytest

from bench.replay import DEFAULT_SHARED, dataset_dir, final_records, quality, replay
from engine.tools.datasets.pcic import convert

REAL_24V = dataset_dir(DEFAULT_SHARED, "24V_439N_Microwave")
needs_24v = pytest.mark.skipif(
    not REAL_24V.is_dir(), reason=f"PCIC 2021 dataset not present at {REAL_24V} (see docs/datasets.md)"
)


@pytest.mark.slow
@needs_24v
def test_full_24v_replay_processes_every_event_and_resolves_every_incident() -> None:
    """All 129,196 messages of 24V go through the core, none rejected; every incident opened is
    resolved or merged after the drain, the stream leaves no incident open, and incidents are fewer
    than alarm rows."""
    converted = convert(REAL_24V)
    result = replay(converted)
    s, st = result.summary, result.stats

    assert st.events == 129_196
    assert st.bad_lines == 0
    assert s["messages"] == 129_196
    assert s["alarm_messages"] == 129_196
    assert s["invalid"] == 0
    assert result.dead_letters == []

    opened = s["incidents_opened"]
    assert opened > 0
    assert s["incidents_resolved"] + s["incidents_merged"] == opened
    assert result.open_at_end == 0
    assert converted.summary["alarms"] / opened > 1

    events = [r["event"] for r in result.records]
    assert events.count("opened") == opened
    assert events.count("resolved") == opened
    finals = final_records(result.records)
    assert len(finals) == opened
    assert all(r["event"] == "resolved" for r in finals)
    still_open: set[str] = set()  # by incident id, following the stream in order
    for rec in result.records:
        if rec["event"] == "opened":
            assert rec["incident_id"] not in still_open
            still_open.add(rec["incident_id"])
        elif rec["event"] == "resolved":
            still_open.remove(rec["incident_id"])
        else:
            assert rec["incident_id"] in still_open
    assert still_open == set()
    # An incident id is opened once: a resolved root does not come back under its old id.
    opened_ids = [r["incident_id"] for r in result.records if r["event"] == "opened"]
    assert len(opened_ids) == len(set(opened_ids))
    # A merge always names an incident the receivers were told about, before the merge.
    published: set[str] = set()
    for rec in result.records:
        if rec.get("merged_into") is not None:
            assert rec["merged_into"] in published
        published.add(rec["incident_id"])


@needs_24v
def test_a_5000_row_prefix_replays_to_byte_identical_records_twice() -> None:
    """Two fresh cores replaying the same 5,000-row prefix of 24V emit byte-identical records."""
    converted = convert(REAL_24V, limit=5000)
    first = replay(converted)
    second = replay(converted)
    assert first.records  # something to compare
    assert first.output() == second.output()


def _rec(
    iid: str,
    event: str,
    root: str,
    suppressed: list[tuple[str, str]],
    resolution: str | None = None,
) -> dict[str, Any]:
    """A minimal incident record: ``suppressed`` holds (symptom key, direct root key) pairs."""
    rec: dict[str, Any] = {
        "incident_id": iid,
        "event": event,
        "root_cause": {"alarm_id": root, "probable_cause": root.rpartition(":")[2]},
        "suppressed": [
            {"alarm_id": key, "probable_cause": key.rpartition(":")[2], "root": by} for key, by in suppressed
        ],
    }
    if resolution is not None:
        rec["resolution"] = resolution
    return rec


def test_quality_counts_direct_roots_of_final_records_against_the_dag_and_a_chance_baseline() -> None:
    """Only each incident's final record counts (a reused id is a new incident, a merged record is
    skipped as its group moved on); the root is the direct one; same-type pairs are set apart;
    precision, closure precision, reversed share and the type-shuffled baseline are exact."""
    dag = [("A", "B"), ("B", "C")]  # closure adds (A, C)
    records = [
        # incident 1: the opened record is superseded by its resolved record
        _rec("i1", "opened", "d1:A", [("d1:B", "d1:A")]),
        _rec(
            "i1",
            "resolved",
            "d1:A",
            [("d1:B", "d1:A"), ("d2:C", "d1:B"), ("d3:A", "d1:A")],  # A→B edge, B→C edge, same type
            "cleared",
        ),
        # the same id again after it resolved: another incident, its final record counts too
        _rec("i1", "opened", "d1:A", [("d4:C", "d1:A")]),
        _rec("i1", "resolved", "d1:A", [("d4:C", "d1:A")], "cleared"),  # A→C: closure only
        # merged into i3: its entries reappear in i3's final record, so they are not counted here
        _rec("i2", "resolved", "d5:C", [("d6:C", "d5:C"), ("d7:B", "d5:C")], "merged"),
        # still open at the end: its latest record counts
        _rec("i3", "updated", "d8:B", [("d5:C", "d8:B"), ("d6:C", "d5:C"), ("d7:B", "d5:C")]),
    ]
    assert [(r["incident_id"], r["event"]) for r in final_records(records)] == [
        ("i1", "resolved"),
        ("i1", "resolved"),
        ("i2", "resolved"),
        ("i3", "updated"),
    ]

    q = quality(records, dag)
    # judged: (A,B) (B,C) (A,A) | (A,C) | (B,C) (C,C) (C,B); 2 merged entries skipped
    assert q.pairs == 7
    assert q.merged_entries == 2
    assert q.same_type == 2
    assert q.cross_type == 5
    assert q.in_dag == 3  # (A,B), (B,C) twice
    assert q.in_closure == 4  # + (A,C)
    assert q.reversed == 1  # (C,B): B→C is the edge
    assert q.precision == pytest.approx(3 / 5)
    assert q.closure_precision == pytest.approx(4 / 5)
    # root types of the cross-type pairs: A 2, B 2, C 1; symptom types: B 2, C 3.
    # symptom B draws from {A 2, C 1}: edge A→B with 2/3. symptom C draws from {A 2, B 2}: B→C with 2/4,
    # closure A→C and B→C with 4/4.
    assert q.baseline_dag == pytest.approx((2 * 2 / 3 + 3 * 2 / 4) / 5)
    assert q.baseline_closure == pytest.approx((2 * 2 / 3 + 3 * 4 / 4) / 5)
    assert q.dag_density == pytest.approx(2 / 6)  # 2 edges over 3 * 2 ordered pairs of types


def test_quality_of_records_without_suppressions_has_no_precision() -> None:
    """With nothing suppressed there is nothing to judge: counts are zero and the ratios are None."""
    q = quality([_rec("i1", "resolved", "d1:A", [], "cleared")], [("A", "B")])
    assert (q.pairs, q.cross_type, q.in_dag) == (0, 0, 0)
    assert (q.precision, q.closure_precision, q.baseline_dag, q.baseline_closure) == (None, None, None, None)
