"""The incident lifecycle: one transition table, and the only code that changes an incident's phase
and the fields that go with it (``opened_at``, ``clear_since``, ``reraised``).

Theory of operation
-------------------
Rule 1: everything that moves an incident from one phase to another lives in this module. The
book (``engine.core.incidents``) decides *that* something happened (a settle timer elapsed, the
root cleared, another root explains this one) and fires the matching ``Event``; this table says
what the incident becomes and which record the transition emits. ``tests/test_lifecycle.py``
walks every phase × event pair, and fails if an assignment to ``.phase``, ``.opened_at``,
``.clear_since`` or ``.reraised`` appears anywhere else.

Rule 2: a pair that is not in the table is refused: ``fire`` raises ``LifecycleError`` (a bug in
the caller, never a user error). Callers that may legitimately see such a pair (an operator
acknowledging a pending incident, a member clearing while the incident already clears) ask
``allows`` first and do nothing.

========== ==================== ========== ========== =================================================
phase      event                next       stamps     record emitted
========== ==================== ========== ========== =================================================
pending    SETTLED              open       opened     opened (with every symptom gathered so far)
pending    SETTLED_CLEARED      clearing   opened     opened (the root cleared before settle)
pending    ROOT_CLEARED         pending    cleared    none (the hold-down starts when it opens)
pending    ROOT_RERAISED        pending    reraised   none
pending    MERGED               resolved              none: the group merges silently
pending    DISCARDED            resolved              none: a transient (pair), or raised and cleared
                                                      in maintenance
open       UPDATE_DUE           open                  updated, when what a record would say changed
open       ACKNOWLEDGED         open                  updated
open       ROOT_CLEARED         clearing   cleared    none yet (impact and priority freeze)
open       MERGED               resolved              resolved, resolution "merged", merged_into
clearing   ROOT_RERAISED        open       reraised   none now; updated at the next slot
clearing   ACKNOWLEDGED         clearing              updated
clearing   HOLD_DOWN_ELAPSED    resolved              resolved; still-active symptoms re-surface
clearing   MERGED               resolved              resolved, resolution "merged", merged_into
resolved   (anything)           refused
========== ==================== ========== ========== =================================================

Stamps: ``opened``: ``opened_at`` = now; ``cleared``: ``clear_since`` = now (the hold-down runs
from there); ``reraised``: ``clear_since`` = None and ``reraised`` + 1.

What does not change the phase is not here: an update slot is muted while a maintenance window
covers the root, an opening is held back by one (``engine.core.incident_stages``); both keep the
phase and record their reason on the incident.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from mypy_extensions import mypyc_attr

Phase = Literal["pending", "open", "clearing", "resolved"]
PHASES: tuple[Phase, ...] = ("pending", "open", "clearing", "resolved")
Emits = Literal["opened", "updated", "resolved"]
Stamp = Literal["opened", "cleared", "reraised"]


class Event(StrEnum):
    SETTLED = "settled"  # settle (or a hold) elapsed, root active
    SETTLED_CLEARED = "settled_cleared"  # settle elapsed, root already cleared
    ROOT_CLEARED = "root_cleared"  # the root (a group: its last active member) cleared
    ROOT_RERAISED = "root_reraised"  # the root raised again before the hold-down ended
    UPDATE_DUE = "update_due"  # an update slot came with changes to report
    ACKNOWLEDGED = "acknowledged"  # an operator took it
    HOLD_DOWN_ELAPSED = "hold_down_elapsed"  # the root stayed clear for the hold-down
    MERGED = "merged"  # another root explains this incident's root
    DISCARDED = "discarded"  # dropped before anyone heard of it


@dataclass(frozen=True, slots=True)
class Transition:
    next: Phase
    emits: Emits | None  # the record the transition emits (UPDATE_DUE: only if something changed)
    stamps: Stamp | None = None  # the lifecycle fields it sets (see the table)


TABLE: dict[Phase, dict[Event, Transition]] = {
    "pending": {
        Event.SETTLED: Transition("open", "opened", "opened"),
        Event.SETTLED_CLEARED: Transition("clearing", "opened", "opened"),
        Event.ROOT_CLEARED: Transition("pending", None, "cleared"),
        Event.ROOT_RERAISED: Transition("pending", None, "reraised"),
        Event.MERGED: Transition("resolved", None),
        Event.DISCARDED: Transition("resolved", None),
    },
    "open": {
        Event.UPDATE_DUE: Transition("open", "updated"),
        Event.ACKNOWLEDGED: Transition("open", "updated"),
        Event.ROOT_CLEARED: Transition("clearing", None, "cleared"),
        Event.MERGED: Transition("resolved", "resolved"),
    },
    "clearing": {
        Event.ROOT_RERAISED: Transition("open", None, "reraised"),
        Event.ACKNOWLEDGED: Transition("clearing", "updated"),
        Event.HOLD_DOWN_ELAPSED: Transition("resolved", "resolved"),
        Event.MERGED: Transition("resolved", "resolved"),
    },
    "resolved": {},
}


@mypyc_attr(native_class=False)  # mypyc: a native class cannot derive from RuntimeError
class LifecycleError(RuntimeError):
    """A transition the table refuses: the caller's bug, carrying the phase and the event."""

    def __init__(self, incident_id: str, phase: Phase, event: Event) -> None:
        super().__init__(f"incident {incident_id}: {event.value} is not a transition from {phase}")
        self.incident_id = incident_id
        self.phase = phase
        self.event = event


class HasPhase(Protocol):
    id: str
    phase: Phase
    opened_at: float | None
    clear_since: float | None
    reraised: int


def allows(phase: Phase, event: Event) -> bool:
    """Whether the table has a transition for ``event`` from ``phase``."""
    return event in TABLE[phase]


def fire(inc: HasPhase, event: Event, now: float) -> Transition:
    """Apply ``event`` to ``inc`` at ``now``: its phase becomes the table's next one and the
    transition's stamps are set. Returns the transition (its ``emits`` says which record the caller
    builds). Raises ``LifecycleError`` if refused."""
    transition = TABLE[inc.phase].get(event)
    if transition is None:
        raise LifecycleError(inc.id, inc.phase, event)
    inc.phase = transition.next
    if transition.stamps == "opened":
        inc.opened_at = now
    elif transition.stamps == "cleared":
        inc.clear_since = now
    elif transition.stamps == "reraised":
        inc.clear_since = None
        inc.reraised += 1
    return transition
