"""What one ``feed`` or ``tick`` of the core returns (``Decisions``), the core's counters (``Stats``),
and the dead letter the core writes about itself (a quarantined part's)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.core.containment import Fault
from engine.core.incident_records import IncidentRecord
from engine.core.notices import Notice
from engine.errors import InvalidMessage
from engine.model.messages import DeadLetter, dead_letter_record
from engine.model.timeutil import format_time


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    """What became of the message one ``feed`` took: ``kind`` ``alarm`` or ``samples`` (decoded,
    valid and applied: accepted) or ``invalid`` (refused whole: dead-lettered). ``samples``: the
    samples of a batch applied, ``rejected``: those refused (dead-lettered together); ``failed``: its
    application raised inside the core (a bug: dead-lettered, counted, the core went on)."""

    kind: Literal["alarm", "samples", "invalid"]
    samples: int = 0
    rejected: int = 0
    failed: bool = False

    @property
    def accepted(self) -> bool:
        return self.kind != "invalid"


@dataclass(slots=True)
class Decisions:
    """What one ``feed`` or ``tick`` decided, each a frozen typed object with its times as epoch
    seconds (``to_wire()`` is the JSON form, produced only at the edges): incident records, dead
    letters (``DeadLetter``), the parts of the core that failed (``faults``: each is also a dead
    letter) and ``notices``: inputs applied but worth an operator's eye (a clear that matches
    nothing, a stale raise or clear, an event out of order, an event time clamped to the receive
    time). ``message``: what became of the message a ``feed`` took (None for anything else)."""

    records: list[IncidentRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    message: MessageOutcome | None = None

    # the dataclass's ``__init__`` written out, so that mypyc compiles it (``dataclasses`` generates
    # one in the interpreter): one is made per ``feed`` and per ``tick``
    def __init__(
        self,
        records: list[IncidentRecord] | None = None,
        dead_letters: list[DeadLetter] | None = None,
        faults: list[Fault] | None = None,
        notices: list[Notice] | None = None,
        message: MessageOutcome | None = None,
    ) -> None:
        self.records = [] if records is None else records
        self.dead_letters = [] if dead_letters is None else dead_letters
        self.faults = [] if faults is None else faults
        self.notices = [] if notices is None else notices
        self.message = message

    def extend(self, other: Decisions) -> None:
        self.records.extend(other.records)
        self.dead_letters.extend(other.dead_letters)
        self.faults.extend(other.faults)
        self.notices.extend(other.notices)


@dataclass
class Stats:
    # by outcome: alarm, samples, invalid. A plain dict, counted with ``get``: a ``Counter`` defines
    # ``__delitem__``, so CPython stores each count through a Python-level slot (about 1,000
    # instructions per message, callgrind; about 100 with a dict)
    messages: dict[str, int] = field(default_factory=dict)
    invalid_reasons: Counter[str] = field(default_factory=Counter)  # by first field in error
    samples: int = 0
    samples_rejected: int = 0
    notices: Counter[str] = field(default_factory=Counter)  # by kind (see Decisions.notices)
    internal_errors: int = 0  # messages whose application raised (dead-lettered, core went on)

    def dump(self) -> dict[str, Any]:
        return {
            "messages": dict(self.messages),
            "invalid_reasons": dict(self.invalid_reasons),
            "samples": self.samples,
            "samples_rejected": self.samples_rejected,
            "notices": dict(self.notices),
            "internal_errors": self.internal_errors,
        }

    def load(self, st: dict[str, Any]) -> None:
        self.messages = dict(st["messages"])
        self.invalid_reasons = Counter(st["invalid_reasons"])
        self.samples, self.samples_rejected = st["samples"], st["samples_rejected"]
        self.notices = Counter(st.get("notices", {}))
        self.internal_errors = st.get("internal_errors", 0)


def fault_dead_letter(fault: Fault, now: float) -> DeadLetter:
    """The dead letter of a quarantined part: which part (and item), what it raised, what poisoned
    it and when it is tried again. Its topic is ``<core:part[item]>``."""
    retry = (
        f"retried at {format_time(fault.retry_at)}"
        if fault.retry_at is not None
        else f"no more retries after {fault.failures} failures: a reload tries it again"
    )
    reason = f"{fault.error}; quarantined (failure {fault.failures}), the rest of the core goes on; {retry}"
    err = InvalidMessage(f"<core:{fault.name}>", [(fault.name, reason)])
    return dead_letter_record(err.topic, fault.poison, err, now=now, quarantine=fault)
