"""The incident lifecycle table (engine.core.lifecycle): every phase × event, refusals included, and
the rule that nothing else changes an incident's phase or the fields that go with it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine.core import lifecycle
from engine.core.incidents import Incident
from engine.core.lifecycle import PHASES, TABLE, Event, LifecycleError, Phase

ROOT = Path(__file__).resolve().parents[1]

# The whole table written out once more, by hand: (phase, event) -> (next phase, record emitted).
# A pair missing here is refused.
LIFECYCLE_FIELDS = ("phase", "opened_at", "clear_since", "reraised")
EXPECTED: dict[tuple[Phase, Event], tuple[Phase, str | None]] = {
    ("pending", Event.SETTLED): ("open", "opened"),
    ("pending", Event.SETTLED_CLEARED): ("clearing", "opened"),
    ("pending", Event.ROOT_CLEARED): ("pending", None),
    ("pending", Event.ROOT_RERAISED): ("pending", None),
    ("pending", Event.MERGED): ("resolved", None),
    ("pending", Event.DISCARDED): ("resolved", None),
    ("open", Event.UPDATE_DUE): ("open", "updated"),
    ("open", Event.ACKNOWLEDGED): ("open", "updated"),
    ("open", Event.ROOT_CLEARED): ("clearing", None),
    ("open", Event.MERGED): ("resolved", "resolved"),
    ("clearing", Event.ROOT_RERAISED): ("open", None),
    ("clearing", Event.ACKNOWLEDGED): ("clearing", "updated"),
    ("clearing", Event.HOLD_DOWN_ELAPSED): ("resolved", "resolved"),
    ("clearing", Event.MERGED): ("resolved", "resolved"),
}

ALL_PAIRS = [(phase, event) for phase in PHASES for event in Event]


@pytest.mark.parametrize(("phase", "event"), ALL_PAIRS, ids=[f"{p}-{e.value}" for p, e in ALL_PAIRS])
def test_every_phase_and_event(phase: Phase, event: Event) -> None:
    """Each pair of the table moves the incident to the expected phase and names the expected
    record; every other pair is refused with LifecycleError and leaves the phase as it was."""
    inc = Incident(id="inc-1", root="a", created=0.0, phase=phase)
    expected = EXPECTED.get((phase, event))
    assert lifecycle.allows(phase, event) is (expected is not None)
    if expected is None:
        with pytest.raises(LifecycleError, match=f"inc-1: {event.value} is not a transition from {phase}"):
            lifecycle.fire(inc, event, 5.0)
        assert inc.phase == phase
    else:
        transition = lifecycle.fire(inc, event, 5.0)
        assert (inc.phase, transition.emits) == expected
        assert transition.next == expected[0]


STAMPS: dict[Event, tuple[float | None, float | None, int]] = {
    # event -> (opened_at, clear_since, reraised) after it, from (None, 1.0, 0)
    Event.SETTLED: (5.0, 1.0, 0),
    Event.SETTLED_CLEARED: (5.0, 1.0, 0),
    Event.ROOT_CLEARED: (None, 5.0, 0),
    Event.ROOT_RERAISED: (None, None, 1),
}


@pytest.mark.parametrize(("phase", "event"), list(EXPECTED), ids=[f"{p}-{e.value}" for p, e in EXPECTED])
def test_each_transition_sets_its_lifecycle_fields(phase: Phase, event: Event) -> None:
    """The lifecycle fields change with the phase, in the table: opening stamps ``opened_at``, a
    root clearing starts the hold-down (``clear_since``), a re-raise ends it and counts; every other
    transition leaves them as they were."""
    inc = Incident(id="inc-1", root="a", created=0.0, phase=phase, clear_since=1.0)
    lifecycle.fire(inc, event, 5.0)
    assert (inc.opened_at, inc.clear_since, inc.reraised) == STAMPS.get(event, (None, 1.0, 0))


def test_the_table_has_nothing_the_test_does_not_know() -> None:
    """The module's table and this test's copy are the same pairs: a transition added to one
    without the other fails here."""
    pairs = {(phase, event) for phase, row in TABLE.items() for event in row}
    assert pairs == set(EXPECTED)
    assert set(TABLE) == set(PHASES)


def test_resolved_is_final() -> None:
    """Nothing leaves the resolved phase: every event is refused there."""
    assert TABLE["resolved"] == {}


def _lifecycle_assignments(path: Path) -> list[tuple[int, str]]:
    """(line, target) of each assignment to a lifecycle field's attribute in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets: list[ast.expr] = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Attribute) and sub.attr in LIFECYCLE_FIELDS:
                    found.append((sub.lineno, ast.unparse(sub)))
    return found


COPIES = {
    # ``IncidentRecord``'s written-out ``__init__`` (``engine.model.twins``): it stores each field,
    # ``opened_at`` among them, which ``RecordBuilder.record`` copies from the incident. A record
    # under construction, not an incident changing phase: no second state machine.
    ("engine/core/incident_records.py", "self.opened_at"),
}
"""Assignments to a field of the same name that are not an incident's lifecycle, each said why."""


def test_only_the_lifecycle_module_assigns_a_phase() -> None:
    """h11's rule 1: an assignment to ``<something>.phase`` (or ``.opened_at``, ``.clear_since``,
    ``.reraised``) anywhere in the engine outside engine/core/lifecycle.py is a second state
    machine, and fails here; but for the copies into a record being made listed in ``COPIES``."""
    offenders = []
    copies = set()
    for path in sorted((ROOT / "engine").rglob("*.py")):
        if path == ROOT / "engine" / "core" / "lifecycle.py":
            continue
        where = str(path.relative_to(ROOT))
        for line, target in _lifecycle_assignments(path):
            if (where, target) in COPIES:
                copies.add((where, target))
            else:
                offenders.append(f"{where}:{line} ({target})")
    assert offenders == []
    assert copies == COPIES  # each exception still needed
    assert _lifecycle_assignments(ROOT / "engine" / "core" / "lifecycle.py")  # the walk does find them
