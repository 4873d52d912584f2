"""``Incident``: what the incident book knows about one incident, and its snapshot form.

The fields are the book's working state: the lifecycle's (``phase``, ``opened_at``,
``clear_since``, ``reraised``) change only through ``engine.core.lifecycle``; the rest are small
frozen parts (``Assessment``, ``Emitted``, ``GroupTimers``, the stages' ``Milestone`` and
``Covered``), each replaced whole by the part of the book that owns it.
``dump_incident``/``load_incident`` are the snapshot form (JSON-ready), which also reads incidents
written by snapshot format 2 (an acknowledgement's time as RFC 3339 text, fewer stage fields).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.core.experience.sla import SlaFacts
from engine.core.impact import Health, Impact, ImpactCounts
from engine.core.incident_records import Acknowledgement
from engine.core.incident_stages import Covered, Milestone
from engine.core.lifecycle import Phase
from engine.core.priority import Priority
from engine.core.settings import IncidentSettings
from engine.model.timeutil import parse_time
from engine.model.twins import twin_built


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the last assessment said of an incident (``engine.core.assessment``), replaced whole."""

    impact: Impact | None = None
    state: str = "at_risk"
    severity: str = "indeterminate"
    priority: Priority | None = None
    sla: SlaFacts | None = None  # SLA facts of its impact at that assessment

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(
        self,
        impact: Impact | None = None,
        state: str = "at_risk",
        severity: str = "indeterminate",
        priority: Priority | None = None,
        sla: SlaFacts | None = None,
    ) -> None:
        self.impact = impact  # type: ignore[misc]
        self.state = state  # type: ignore[misc]
        self.severity = severity  # type: ignore[misc]
        self.priority = priority  # type: ignore[misc]
        self.sla = sla  # type: ignore[misc]


twin_built(Assessment)


class Signature:
    """What an `updated` record of an incident would say that matters (``IncidentBook._signature``):
    a record is emitted only when it differs from the last one's.

    Snapshots store it as text, the ``repr`` of the tuple of its parts with the impact's record and
    the sorted members in place of the impact and the member count; that text is written only when
    asked (``text``: a snapshot, or a comparison with a loaded text). Two signatures of one incident
    are compared part by part (``same``) with exactly the text's equality: each part's text is its
    ``repr`` (equal ints, strings, booleans and tuples of them have equal reprs, and back), the
    members only grow while an incident lasts (the same count is the same members), and the score,
    the impact and the acknowledgement, whose equality is not their text's, are compared by their
    text unless they are the same object."""

    __slots__ = ("_impact_text", "_text", "impact", "members", "parts")

    def __init__(self, impact: Impact | None, parts: tuple[Any, ...], members: tuple[str, ...]) -> None:
        self.impact = impact
        # (phase, state, priority, score, member count, active members' view, reraised,
        # acknowledgement, SLA counts): as ``IncidentBook._signature`` gives them
        self.parts = parts
        self.members = members  # sorted, at that count
        self._impact_text: str | None = None
        self._text: str | None = None

    def impact_text(self) -> str:
        made = self._impact_text
        if made is None:
            im = self.impact
            made = self._impact_text = repr(im.to_record() if im is not None else None)
        return made

    def text(self) -> str:
        """The text snapshots store (as it has always been written)."""
        made = self._text
        if made is None:
            phase, state, priority, score, _, view, reraised, ack, sla = self.parts
            # the ``repr`` of the tuple of them, written as ``repr`` writes a tuple
            made = self._text = "({})".format(
                ", ".join(
                    (
                        repr(phase),
                        repr(state),
                        repr(priority),
                        repr(score),
                        self.impact_text(),
                        repr(self.members),
                        repr(view),
                        repr(reraised),
                        _ack_text(ack),  # as snapshots before kept it
                        repr(sla),
                    )
                )
            )
        return made

    def same(self, other: Signature | str | None) -> bool:
        """Whether ``other`` (this incident's last signature, or its text as loaded) has the same text."""
        if other is self:
            return True
        if other is None:
            return False
        if isinstance(other, str):
            return self.text() == other
        a, b = self.parts, other.parts
        return (
            a[0] == b[0]  # phase
            and a[1] == b[1]  # state
            and a[2] == b[2]  # priority (an int)
            and a[4] == b[4]  # member count
            and a[6] == b[6]  # reraised
            and a[8] == b[8]  # SLA counts (ints)
            and a[5] == b[5]  # the active members' (key, severity, flapping)
            and (a[3] is b[3] or repr(a[3]) == repr(b[3]))  # the score: 0.0 == -0.0, nan != nan
            and (a[7] is b[7] or _ack_text(a[7]) == _ack_text(b[7]))
            and (self.impact is other.impact or self.impact_text() == other.impact_text())
        )


def _ack_text(ack: Acknowledgement | None) -> str:
    return repr(ack.to_wire() if ack else None)


@dataclass(frozen=True, slots=True)
class Emitted:
    """Its latest record: the version, when, and what it said (to skip no-change updates)."""

    version: int = 0
    at: float | None = None
    signature: Signature | str | None = None  # the text when loaded from a snapshot

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(
        self, version: int = 0, at: float | None = None, signature: Signature | str | None = None
    ) -> None:
        self.version = version  # type: ignore[misc]
        self.at = at  # type: ignore[misc]
        self.signature = signature  # type: ignore[misc]


twin_built(Emitted)


@dataclass(frozen=True, slots=True)
class GroupTimers:
    """A group incident's own timers (its rule's ``wait`` and ``interval``; None: the settings')."""

    settle: float | None = None
    interval: float | None = None


@dataclass
class Incident:
    """The book's working state of one incident. Four fields change only through the lifecycle
    table (``engine.core.lifecycle.fire``): ``phase``, ``opened_at``, ``clear_since`` and
    ``reraised``. The others are small frozen parts, each replaced whole by the one part of the book
    that owns it: ``assessment`` (the assessor), ``emitted`` (a record emitted), ``group`` (a group
    rule anchors it), ``milestone`` (the SLA stage), ``muted`` (the maintenance stage)."""

    id: str
    root: str  # alarm key of the top root
    created: float
    # event time of the root's first raise (the records' ``root_cause.raised_at``: a flapping root's
    # later raises begin new occurrences of its alarm, not a new fault); None: restored from a
    # snapshot that did not keep it (the root alarm's own first raise is shown then)
    fault_start: float | None = None
    phase: Phase = "pending"  # changed by engine.core.lifecycle.fire only
    members: set[str] = field(default_factory=set)  # alarm keys, root included
    opened_at: float | None = None  # lifecycle only
    clear_since: float | None = None  # lifecycle only (or at creation, for a cleared root)
    reraised: int = 0  # lifecycle only
    emitted: Emitted = Emitted()
    dirty: bool = True
    assessment: Assessment = Assessment()
    acknowledged: Acknowledgement | None = None  # once an operator acknowledged it
    grouping_rules: set[str] = field(default_factory=set)
    scheduled: float | None = None  # the due time of its live entry in the book's timer heap
    group: GroupTimers | None = None  # anchored by a group rule: resolves when no member is active
    hold_until: float | None = None  # stays pending until then (a pair's window, a maintenance window)
    maintenance: str | None = None  # the maintenance rule that held it back, while it does
    milestone: Milestone | None = None  # the next SLA milestone (when, at what time left)
    escalation: str | None = None  # why the SLA stage last re-assessed it ("SLA milestone: ...")
    muted: Covered | None = None  # open, root under maintenance: no `updated` before its end
    # the book's latest signature text and what it was made of (its impact, the other parts): a
    # cache, not state (no snapshot keeps it; it is rebuilt on the first signature after a load)
    said: tuple[Any, tuple[Any, ...], Signature] | None = field(default=None, compare=False, repr=False)
    # its records' explanation words for its impact and priority, with the two objects they were
    # written of (``RecordBuilder``): a cache too, rebuilt when either object is replaced
    words: tuple[Any, str, Any, str] | None = field(default=None, compare=False, repr=False)
    # ``sorted_members()`` and the member count it was sorted at: a cache as well
    ordered: tuple[int, tuple[str, ...]] | None = field(default=None, init=False, compare=False, repr=False)
    # how many changes its members' alarms went through while they were its members (the book
    # counts every ``AlarmChange`` of a member, ``IncidentBook.alarm_changed``): with the member
    # count, the key of what is derived from its members' alarms alone (``active``)
    alarm_changes: int = field(default=0, init=False, compare=False, repr=False)
    # the members whose alarms changed since its records last walked them (the same count), and
    # what its records show of its members (``engine.core.incident_records.Walk``): a cache
    changed_members: set[str] = field(default_factory=set, init=False, compare=False, repr=False)
    walked: Any = field(default=None, init=False, compare=False, repr=False)
    # its records' root cause (``RecordBuilder``), with the root's alarm, its severity and state,
    # its threshold info and the count of grouping rules it was made of
    cause: tuple[Any, tuple[Any, ...], Any, int, Any] | None = field(
        default=None, init=False, compare=False, repr=False
    )
    # its active members (``Assessor.active_members``), with the member count and ``alarm_changes``
    active: tuple[int, int, tuple[Any, ...]] | None = field(
        default=None, init=False, compare=False, repr=False
    )
    # what its assessment reads of its active members (``Assessor.refresh``: the seeds of its
    # impact, the services it alone concerns, the worst severity's rank), with that tuple of them
    derived: tuple[tuple[Any, ...], list[str], frozenset[str] | None, int | None] | None = field(
        default=None, init=False, compare=False, repr=False
    )
    # its assessment when the assessor made it of its impact, state and severity alone (no SLA
    # facts, no overrides), with those three (``Assessor.refresh``: the same again keeps it)
    assessed: tuple[Any, Any, str, str] | None = field(default=None, init=False, compare=False, repr=False)
    # its records' first explanation line (``RecordBuilder._explanation``), with the root's alarm
    # object, severity and effect it was written of
    said_root: tuple[Any, str, str, str] | None = field(default=None, init=False, compare=False, repr=False)
    # its records' explanation lines (``RecordBuilder.record``), with what they were made of: the
    # root's alarm object, what they show of it and of the incident, its impact and priority
    said_lines: tuple[Any, tuple[Any, ...], Any, Any, tuple[str, ...]] | None = field(
        default=None, init=False, compare=False, repr=False
    )
    # its signature's view of its active members (``IncidentBook._signature``), with that tuple
    said_active: tuple[tuple[Any, ...], tuple[Any, ...]] | None = field(
        default=None, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        # The caches above with a plain default, set on the object: ``dataclasses`` leaves such an
        # ``init=False`` field to the class attribute, which a class compiled by mypyc does not have
        # (``engine.compiled``: its instances would have them unset).
        self.ordered = self.walked = self.cause = self.active = self.derived = None
        self.assessed = self.said_root = self.said_lines = self.said_active = None
        self.alarm_changes = 0

    def sorted_members(self) -> tuple[str, ...]:
        """Its members in sorted order (re-assessments, signatures and records walk them so), sorted
        again only when their count changed: members only join an incident while it lasts (the
        merge graph adds them; the incident goes away whole), so the same count is the same set."""
        ordered, members = self.ordered, self.members
        if ordered is None or ordered[0] != len(members):
            ordered = self.ordered = (len(members), tuple(sorted(members)))
        return ordered[1]

    # -- read-through views of the parts -------------------------------------------------------
    @property
    def version(self) -> int:
        return self.emitted.version

    @property
    def last_emit(self) -> float | None:
        return self.emitted.at

    @property
    def signature(self) -> Signature | str | None:
        return self.emitted.signature

    @property
    def impact(self) -> Impact | None:
        return self.assessment.impact

    @property
    def state(self) -> str:
        return self.assessment.state

    @property
    def severity(self) -> str:
        return self.assessment.severity

    @property
    def priority(self) -> Priority | None:
        return self.assessment.priority

    @property
    def sla(self) -> SlaFacts | None:
        return self.assessment.sla

    @property
    def kind(self) -> str:
        """``group``: anchored by a group rule; ``root``: by its root alarm."""
        return "group" if self.group is not None else "root"

    @property
    def settle(self) -> float | None:
        return self.group.settle if self.group is not None else None

    @property
    def interval(self) -> float | None:
        return self.group.interval if self.group is not None else None

    @property
    def sla_due(self) -> float | None:
        return self.milestone.due if self.milestone is not None else None

    @property
    def muted_until(self) -> float | None:
        return self.muted.until if self.muted is not None else None

    @property
    def muted_by(self) -> str | None:
        return self.muted.rule or None if self.muted is not None else None


def incident_id(root_key: str, first_seen: float, after: str | None = None) -> str:
    """Stable across replays and restarts: derived from the root identity and its first event time,
    and for an incident rooted at an alarm that the end of another incident released (its own
    incident merged into that one, or a symptom of it), that incident's id too (``after``): a new
    incident, a new id, never a second version 1 of an id receivers have seen resolved."""
    text = f"{root_key}|{first_seen:.3f}" if after is None else f"{root_key}|{first_seen:.3f}|{after}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    return f"inc-{digest}"


def phase_due(inc: Incident, settings: IncidentSettings) -> float | None:
    """When the incident next needs the book's tick, from its phase and timers: a pending one at
    settle (or the end of its hold), a clearing one at the end of the hold-down, an open one at its
    next update slot (not before a maintenance mute ends) or SLA milestone."""
    # the fields read directly, not through the properties: the book asks this for the top of
    # its timer heap at every step (the same values as ``settle``, ``last_emit``, ``muted_until``,
    # ``sla_due`` and ``update_interval``)
    phase, group = inc.phase, inc.group
    if phase == "pending":
        settle = group.settle if group is not None else None
        due = inc.created + (settle if settle is not None else settings.settle)
        return max(due, inc.hold_until) if inc.hold_until is not None else due
    if phase == "clearing" and inc.clear_since is not None:
        return inc.clear_since + settings.hold_down
    if phase == "open":
        update = None
        if inc.dirty:
            at = inc.emitted.at
            if at is None:
                update = inc.created
            else:
                interval = group.interval if group is not None else None
                update = at + (interval if interval is not None else settings.update_interval)
            if inc.muted is not None:
                update = max(update, inc.muted.until)
        if inc.milestone is not None:
            sla_due = inc.milestone.due
            return sla_due if update is None else min(update, sla_due)
        return update
    return None


def update_interval(inc: Incident, settings: IncidentSettings) -> float:
    return inc.interval if inc.interval is not None else settings.update_interval


def describe(inc: Incident) -> str:
    """What an operator needs to find a quarantined incident's poison: its root and members."""
    members = sorted(inc.members)
    more = f" and {len(members) - 5} more" if len(members) > 5 else ""
    return f"incident {inc.id} ({inc.phase}), root {inc.root}, members {', '.join(members[:5])}{more}"


def dump_incident(inc: Incident) -> dict[str, Any]:
    """The snapshot form: flat, in the order snapshots have always kept it."""
    p = inc.priority
    return {
        "id": inc.id,
        "root": inc.root,
        "created": inc.created,
        "fault_start": inc.fault_start,
        "phase": inc.phase,
        "members": sorted(inc.members),
        "version": inc.version,
        "opened_at": inc.opened_at,
        "clear_since": inc.clear_since,
        "last_emit": inc.last_emit,
        "dirty": inc.dirty,
        "reraised": inc.reraised,
        "impact": _impact_dump(inc.impact) if inc.impact is not None else None,
        "priority": {"priority": p.priority, "score": p.score, "breakdown": p.breakdown} if p else None,
        "state": inc.state,
        "severity": inc.severity,
        "signature": sig.text() if isinstance(sig := inc.signature, Signature) else sig,
        "acknowledged": asdict(inc.acknowledged) if inc.acknowledged is not None else None,
        "grouping_rules": sorted(inc.grouping_rules),
        "scheduled": inc.scheduled,
        "kind": inc.kind,
        "settle": inc.settle,
        "interval": inc.interval,
        "hold_until": inc.hold_until,
        "maintenance": inc.maintenance,
        "sla": inc.sla.to_wire() if inc.sla is not None else None,
        "sla_due": inc.sla_due,
        "sla_milestone": inc.milestone.seconds_to_breach if inc.milestone is not None else None,
        "escalation": inc.escalation,
        "muted_until": inc.muted_until,
        "muted_by": inc.muted_by,
    }


def load_incident(d: Mapping[str, Any]) -> tuple[Incident, Impact | None]:
    """An incident as dumped, and its impact (which the caller sets once it watched it)."""
    ack = d.get("acknowledged")
    due, muted_until = d.get("sla_due"), d.get("muted_until")
    inc = Incident(
        id=d["id"],
        root=d["root"],
        created=d["created"],
        fault_start=d.get("fault_start"),
        phase=d["phase"],
        members=set(d["members"]),  # verbatim: a member may outlive its alarm's retention
        opened_at=d.get("opened_at"),
        clear_since=d.get("clear_since"),
        reraised=d.get("reraised", 0),
        emitted=Emitted(d.get("version", 0), d.get("last_emit"), d.get("signature")),
        dirty=d.get("dirty", True),
        assessment=Assessment(
            state=d.get("state", "at_risk"),
            severity=d.get("severity", "indeterminate"),
            priority=Priority(**d["priority"]) if d.get("priority") is not None else None,
            sla=SlaFacts(**d["sla"]) if d.get("sla") else None,
        ),
        acknowledged=Acknowledgement(ack["by"], parse_time(ack["at"]), ack["note"]) if ack else None,
        grouping_rules=set(d["grouping_rules"]),
        scheduled=d.get("scheduled"),
        group=GroupTimers(d.get("settle"), d.get("interval")) if d.get("kind") == "group" else None,
        hold_until=d.get("hold_until"),
        maintenance=d.get("maintenance"),
        milestone=Milestone(due, d.get("sla_milestone")) if due is not None else None,
        escalation=d.get("escalation"),
        muted=Covered(d.get("muted_by") or "", muted_until) if muted_until is not None else None,
    )
    return inc, _impact_load(d["impact"]) if d["impact"] is not None else None


def _impact_dump(im: Impact) -> dict[str, Any]:
    return {
        "elements": {ne: int(h) for ne, h in im.elements.items()},
        "state": im.state,
        "services": dict(im.services),
        "customers": im.customers,
        "by_tier": dict(im.by_tier),
        "by_state": {
            k: {"customers": c.customers, "services": dict(c.services), "by_tier": dict(c.by_tier)}
            for k, c in im.by_state.items()
        },
    }


def _impact_load(d: Mapping[str, Any]) -> Impact:
    return Impact(
        elements={ne: Health(h) for ne, h in d["elements"].items()},
        state=d["state"],
        services=d["services"],
        customers=d["customers"],
        by_tier=d["by_tier"],
        by_state={k: ImpactCounts(**c) for k, c in d["by_state"].items()},
    )
