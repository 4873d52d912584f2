"""The incident book hears of a health change only when an effective level moved (no customers).

An alarm on an element below one that is already as unhealthy changes the element's own level but
no effective level: no incident's impact can change, so the book is not told (its incidents are not
marked for a re-assessment that would give them back). Where customers are tracked the book is
still told of every change of health: a re-assessment there reads the time as well (SLA facts).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine.core.incidents import IncidentBook
from engine.core.pipeline import Pipeline
from engine.model.topology import topology_from_dict
from engine.rules.schema import load_rulesets

START = 1_767_225_600.0
LATER = 3 * 3600.0  # far outside every rule's window: the second alarm is nobody's symptom


def _topology(customers: bool) -> dict[str, Any]:
    topo: dict[str, Any] = {
        "service_types": {"internet": {"criticality": 3}},
        "elements": [
            {"id": "agg-1", "type": "switch"},
            {"id": "olt-1", "type": "olt", "depends_on": ["agg-1"]},
        ],
    }
    if customers:
        topo["customers"] = [{"id": "c-1", "tier": "gold", "access": "olt-1", "services": ["internet"]}]
    return topo


def _alarm(ne: str, cause: str) -> bytes:
    return orjson.dumps(
        {
            "ne_id": ne,
            "severity": "critical",
            "probable_cause": cause,
            "event_type": "communicationsAlarm",
            "event_time": START,
        }
    )


def _run(customers: bool, mp: pytest.MonkeyPatch) -> tuple[bool, bool, list[str]]:
    """agg-1 down, its incident opened and notified; much later olt-1 (below it, down already)
    gets its own alarm. Returns (whether olt-1's own level changed, whether any effective level
    moved, the elements the book was told of after the first alarm)."""
    told: list[str] = []
    health_changed = IncidentBook.health_changed

    def telling(self: IncidentBook, ne_id: str) -> None:
        told.append(ne_id)
        health_changed(self, ne_id)

    mp.setattr(IncidentBook, "health_changed", telling)
    p = Pipeline(topology_from_dict(_topology(customers)), load_rulesets(None))
    p.feed("soc/alarms/agg-1", _alarm("agg-1", "lossOfSignal"), START)
    p.advance_to(START + 600.0)
    inc = p.incidents.incident_of("agg-1:lossOfSignal")
    assert inc is not None
    assert inc.phase == "open"
    version = p.health.live.version
    told.clear()
    p.feed("soc/alarms/olt-1", _alarm("olt-1", "powerProblem"), START + LATER)
    assert p.incidents.incident_of("olt-1:powerProblem") is not inc  # not its symptom
    own_changed = p.health.own.get("olt-1") is not None
    return own_changed, p.health.live.version != version, told


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_an_own_change_that_moves_no_level_is_not_news_to_the_book(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without customers: olt-1's own level changes, no effective level moves, and the book (whose
    agg-1 incident's impact holds olt-1) is not told."""
    assert _run(False, monkeypatch) == (True, False, [])


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_where_customers_are_tracked_every_health_change_is_news(monkeypatch: pytest.MonkeyPatch) -> None:
    """With customers the book is told of the same change, as before (its incidents' SLA facts
    read the time)."""
    assert _run(True, monkeypatch) == (True, False, ["olt-1"])
