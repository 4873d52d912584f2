"""What an incident derives from its members' alarms is kept on it, and never shows stale.

A record's suppressed entries, flapping members and suppressed-count line (``Incident.walked``,
brought up to date for the members that joined and those whose alarms changed), its root cause
(``cause``, while what it shows of the root's alarm is the same), the first explanation line
(``said_root``, while the root's alarm object, severity and effect are the same), the explanation
lines (``said_lines``), a re-assessment's active members (``active``, while the member count and
the count of member alarm changes are the same) and its assessment (``assessed``, while its impact,
state and severity are the same) are kept on the incident. These tests replay the scenarios, and
an incident merging into a later root's, with the kept values and with every one of them made
afresh at each use: the records must be the same, byte for byte (and the lines ``to_json`` writes
from its parts' kept JSON the same bytes again).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from bench.scenarios import example_topology
from engine.core.assessment import Assessor
from engine.core.impact import Health, Impact
from engine.core.incident_records import Acknowledgement, RecordBuilder
from engine.core.incident_state import Signature
from engine.core.incidents import IncidentBook
from engine.core.pipeline import Pipeline
from engine.model.topology import topology_from_dict
from engine.rules.schema import load_rulesets
from engine.tools.replay import Replayer, dumps
from engine.tools.scenarios import SCENARIOS, replay_lines

START = 1_767_225_600.0


def _afresh(mp: pytest.MonkeyPatch) -> None:
    """Every kept value dropped before each use: what the book would show without them."""
    record, active_members, refresh = RecordBuilder.record, Assessor.active_members, Assessor.refresh

    def fresh_record(self: RecordBuilder, inc: Any, *args: Any, **kwargs: Any) -> Any:
        inc.walked = inc.cause = inc.said_root = inc.said_lines = None
        return record(self, inc, *args, **kwargs)

    def fresh_active(self: Assessor, inc: Any, *args: Any, **kwargs: Any) -> Any:
        inc.active = None
        return active_members(self, inc, *args, **kwargs)

    def fresh_refresh(self: Assessor, inc: Any, *args: Any, **kwargs: Any) -> Any:
        inc.assessed = inc.derived = None
        return refresh(self, inc, *args, **kwargs)

    mp.setattr(RecordBuilder, "record", fresh_record)
    mp.setattr(Assessor, "refresh", fresh_refresh)
    mp.setattr(Assessor, "active_members", fresh_active)


def _replay(lines: list[dict[str, Any]]) -> list[bytes]:
    pipeline = Pipeline(topology_from_dict(example_topology()), load_rulesets(None))
    records: list[bytes] = []
    lines_written: list[bytes] = []  # ``to_json``: its parts' JSON kept by identity
    Replayer(pipeline, emit=lambda r: records.append(dumps(r)), emit_line=lines_written.append).run(
        [orjson.dumps(x) for x in lines]
    )
    assert lines_written == records
    return records


def _alarm(at: float, ne: str, cause: str, severity: str = "critical") -> dict[str, Any]:
    payload = {
        "ne_id": ne,
        "severity": severity,
        "probable_cause": cause,
        "event_type": "communicationsAlarm",
        "event_time": START + at,
    }
    return {"topic": f"soc/alarms/{ne}", "payload": payload}


# olt-001's incident (its power problem explains its link down) opens at settle (30.5 s); agg-3's
# alarm 30 s after the power problem explains it (the cluster rule's lead), so olt-001's incident
# merges into agg-3's: its `resolved` record lists its former root as suppressed, which nothing
# else about its members changed to show
MERGE = [
    _alarm(0.0, "olt-001", "linkDown"),
    _alarm(0.5, "olt-001", "powerProblem"),
    _alarm(30.5, "agg-3", "lossOfSignal"),
    _alarm(200.0, "agg-3", "lossOfSignal", "cleared"),
    _alarm(201.0, "olt-001", "linkDown", "cleared"),
    _alarm(201.5, "olt-001", "powerProblem", "cleared"),
]


def _cases() -> dict[str, list[dict[str, Any]]]:
    cases = {name: list(replay_lines(SCENARIOS[name](), start=START)) for name in sorted(SCENARIOS)}
    cases["merge"] = MERGE
    return cases


def test_merged_record_lists_its_former_root_as_a_symptom() -> None:
    """The merged incident's last record shows its root explained by the absorbing root."""
    records = [orjson.loads(r) for r in _replay(MERGE)]
    merged = [r for r in records if r.get("resolution") == "merged"]
    assert len(merged) == 1
    suppressed = {s["alarm_id"]: s["root"] for s in merged[0]["suppressed"]}
    assert suppressed == {
        "olt-001:linkDown": "olt-001:powerProblem",
        "olt-001:powerProblem": "agg-3:lossOfSignal",
    }
    assert "2 alarm(s) suppressed as symptoms" in " ".join(merged[0]["explanation"])


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_kept_values_give_the_records_made_afresh() -> None:
    """Each scenario, and the merge, give the same records with and without the kept values."""
    with pytest.MonkeyPatch.context() as mp:
        _afresh(mp)
        fresh = {name: _replay(lines) for name, lines in _cases().items()}
    for name, lines in _cases().items():
        assert _replay(lines) == fresh[name], name


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_signature_text_is_the_repr_it_always_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signature's text, written only when asked, is the ``repr`` of the whole tuple that
    snapshots have always stored (a loaded signature compares equal to a new one); and two
    signatures are the ``same`` exactly when their texts are equal (compared with the incident's
    last one, and with its text as a snapshot would load it)."""
    signature = IncidentBook._signature
    checked = compared = 0

    def plain(book: IncidentBook, inc: Any, members: Any = None) -> Signature:
        nonlocal checked, compared
        sig = signature(book, inc, members)
        active = members if members is not None else book._assessor.active_members(inc)
        p, impact, ack, sla = inc.priority, inc.impact, inc.acknowledged, inc.sla
        assert sig.text() == repr(
            (
                inc.phase,
                inc.state,
                p.priority if p else None,
                p.score if p else None,
                impact.to_record() if impact else None,
                inc.sorted_members(),
                tuple((a.key, a.severity, a.flapping) for a in active),
                inc.reraised,
                ack.to_wire() if ack else None,
                (sla.customers_down, sla.customers_breached) if sla else None,
            )
        )
        last = inc.signature
        if isinstance(last, Signature):
            assert sig.same(last) is (sig.text() == last.text())
            assert sig.same(last.text()) is (sig.text() == last.text())
            compared += 1
        checked += 1
        return sig

    monkeypatch.setattr(IncidentBook, "_signature", plain)
    for lines in _cases().values():
        _replay(lines)
    assert checked > 10
    assert compared > 5


def test_signatures_are_the_same_exactly_when_their_texts_are() -> None:
    """``Signature.same`` part by part against the texts, on the parts whose equality is not their
    text's: a score of 0.0 and -0.0, equal impacts that are other objects, acknowledgements."""
    impact = Impact(
        elements={"olt-1": Health.DOWN},
        state="outage",
        services={"internet": 2},
        customers=2,
        by_tier={"gold": 2},
        by_state={},
    )
    twin = dataclasses.replace(impact)
    other = dataclasses.replace(impact, customers=3)
    ack = Acknowledgement("ops", 1_767_225_600.25, None)
    view = (("a", "critical", False),)

    def sig(
        score: float, im: Impact | None, acked: Acknowledgement | None, flapping: bool = False
    ) -> Signature:
        parts = ("open", "outage", 2, score, 2, (("a", "critical", flapping),), 0, acked, None)
        return Signature(im, parts, ("a", "b"))

    cases = [
        sig(1.0, impact, None),
        sig(1.0, twin, None),
        sig(1.0, other, None),
        sig(0.0, impact, None),
        sig(-0.0, impact, None),
        sig(1.0, None, None),
        sig(1.0, impact, ack),
        sig(1.0, impact, dataclasses.replace(ack)),
        sig(1.0, impact, dataclasses.replace(ack, at=1_767_225_600.2504)),  # the same text (ms)
        sig(1.0, impact, None, flapping=True),
    ]
    assert view == cases[0].parts[5]
    for a in cases:
        for b in cases:
            assert a.same(b) is (a.text() == b.text()), (a.text(), b.text())
            assert a.same(b.text()) is (a.text() == b.text())
        assert not a.same(None)
