"""Incident records: the typed decisions the incident book returns, and the words they carry.

An ``IncidentRecord`` is frozen and keeps times as epoch seconds (floats). Its JSON form, the one
receivers, the store, the HTTP API and replay output carry, is ``to_wire()``: the only place a
record's times become RFC 3339 text and its key order is fixed. Adapters call it at the edge;
nothing in the core reads a record back from its wire form.

``RecordBuilder`` turns an incident as the book holds it into a record: the root cause, each
suppressed symptom with its reason, and the explanation lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from engine.core.alarms import ActiveAlarm
from engine.core.experience.sla import SlaFacts
from engine.core.forms.synthetic import raised_by
from engine.core.impact import Impact
from engine.core.priority import Priority, explain
from engine.model.timeutil import format_time
from engine.model.topology import Topology
from engine.model.twins import twin_built
from engine.rules.schema import neighbour_hops

# ``orjson``'s functions, read once: the compiled core reads a module's attribute through
# ``getattr`` each time (about 270 instructions), several times per record
_dumps: Final = orjson.dumps
_Fragment: Final = orjson.Fragment
_APPEND_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE

if TYPE_CHECKING:
    from engine.core.incidents import Incident, Suppression

RecordEvent = Literal["opened", "updated", "resolved", "current"]
Resolution = Literal["cleared", "merged"]


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """An operator took the incident (``at``: epoch seconds)."""

    by: str
    at: float
    note: str | None

    def to_wire(self) -> dict[str, Any]:
        return {"by": self.by, "at": format_time(self.at), "note": self.note}


@dataclass(frozen=True, slots=True)
class RootCause:
    alarm_id: str
    ne_id: str | None
    probable_cause: str | None
    severity: str | None
    element_type: str | None
    site: str | None
    region: str | None
    active: bool
    rule: str | None  # the first grouping rule, by name
    threshold_info: Mapping[str, Any] | None = None
    raised_at: float | None = None  # event time of the root's first raise while the incident lasts
    cleared_at: float | None = None  # event time of its clear, while the element says it is clear
    # ``to_wire`` as JSON, made the first time a record's line needs it: the record builder hands an
    # incident's records the same root cause while it does not change (bytes, not the
    # ``orjson.Fragment``: copies and pickles of a root cause carry it)
    _json: bytes | None = field(default=None, init=False, repr=False, compare=False)

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(  # noqa: PLR0917 (the dataclass's parameters, positional as there)
        self,
        alarm_id: str,
        ne_id: str | None,
        probable_cause: str | None,
        severity: str | None,
        element_type: str | None,
        site: str | None,
        region: str | None,
        active: bool,
        rule: str | None,
        threshold_info: Mapping[str, Any] | None = None,
        raised_at: float | None = None,
        cleared_at: float | None = None,
    ) -> None:
        self.alarm_id = alarm_id  # type: ignore[misc]
        self.ne_id = ne_id  # type: ignore[misc]
        self.probable_cause = probable_cause  # type: ignore[misc]
        self.severity = severity  # type: ignore[misc]
        self.element_type = element_type  # type: ignore[misc]
        self.site = site  # type: ignore[misc]
        self.region = region  # type: ignore[misc]
        self.active = active  # type: ignore[misc]
        self.rule = rule  # type: ignore[misc]
        self.threshold_info = threshold_info  # type: ignore[misc]
        self.raised_at = raised_at  # type: ignore[misc]
        self.cleared_at = cleared_at  # type: ignore[misc]
        self._json = None  # type: ignore[misc]

    def json(self) -> bytes:
        """``orjson.dumps(self.to_wire())``, made once (the root cause is frozen), as
        ``SuppressedAlarm.json``."""
        made = self._json
        if made is None:
            made = _dumps(self.to_wire())
            object.__setattr__(self, "_json", made)
        return made

    def to_wire(self) -> dict[str, Any]:
        raised, cleared = self.raised_at, self.cleared_at
        out: dict[str, Any] = {
            "ne_id": self.ne_id,
            "alarm_id": self.alarm_id,
            "probable_cause": self.probable_cause,
            "severity": self.severity,
            "element_type": self.element_type,
            "site": self.site,
            "region": self.region,
            "active": self.active,
            "raised_at": format_time(raised) if raised is not None else None,
            "cleared_at": format_time(cleared) if cleared is not None else None,
            "rule": self.rule,
        }
        if self.threshold_info is not None:
            out["threshold_info"] = dict(self.threshold_info)
        return out


twin_built(RootCause)


@dataclass(frozen=True, slots=True)
class SuppressedAlarm:
    """A symptom of the incident, and the words for why it is one."""

    alarm_id: str
    ne_id: str | None
    probable_cause: str | None
    state: Literal["active", "cleared"]
    root: str  # the alarm that explains it directly
    rule: str
    reason: str
    threshold_info: Mapping[str, Any] | None = None  # the evidence: which KPI, how far
    # its wire form but ``threshold_info``, built once: the record builder reuses a symptom's entry
    # in every record of its incident (21 symptoms per record on 24V), and ``to_wire`` copies it
    _wire: dict[str, Any] = field(init=False, repr=False, compare=False)
    # ``to_wire`` as JSON, made the first time a record's line (``IncidentRecord.to_json``) needs it
    _json: bytes | None = field(init=False, repr=False, compare=False)

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(  # noqa: PLR0917 (the dataclass's parameters, positional as there)
        self,
        alarm_id: str,
        ne_id: str | None,
        probable_cause: str | None,
        state: Literal["active", "cleared"],
        root: str,
        rule: str,
        reason: str,
        threshold_info: Mapping[str, Any] | None = None,
    ) -> None:
        self.alarm_id = alarm_id  # type: ignore[misc]
        self.ne_id = ne_id  # type: ignore[misc]
        self.probable_cause = probable_cause  # type: ignore[misc]
        self.state = state  # type: ignore[misc]
        self.root = root  # type: ignore[misc]
        self.rule = rule  # type: ignore[misc]
        self.reason = reason  # type: ignore[misc]
        self.threshold_info = threshold_info  # type: ignore[misc]
        self.__post_init__()

    def __post_init__(self) -> None:
        wire = {
            "alarm_id": self.alarm_id,
            "ne_id": self.ne_id,
            "probable_cause": self.probable_cause,
            "state": self.state,
            "root": self.root,
            "rule": self.rule,
            "reason": self.reason,
        }
        object.__setattr__(self, "_wire", wire)
        object.__setattr__(self, "_json", None)

    def to_wire(self) -> dict[str, Any]:
        out = self._wire.copy()  # a copy: a receiver may change what it is given
        if self.threshold_info is not None:
            out["threshold_info"] = dict(self.threshold_info)
        return out

    def json(self) -> bytes:
        """``orjson.dumps(self.to_wire())``, made once (the entry is frozen)."""
        made = self._json
        if made is None:
            # (written, not kept: the wire form itself where there is no threshold info to add)
            made = _dumps(self._wire if self.threshold_info is None else self.to_wire())
            object.__setattr__(self, "_json", made)
        return made


twin_built(SuppressedAlarm)


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """One incident transition (``event``), or its ``current`` state for a query."""

    incident_id: str
    event: RecordEvent
    version: int
    time: float
    priority: int
    score: float
    state: str
    severity: str  # the worst active member's, or a priority rule's override
    root_cause: RootCause
    impact: Impact | None
    alarms: tuple[str, ...]
    suppressed: tuple[SuppressedAlarm, ...]
    flapping: tuple[str, ...]
    opened_at: float | None
    acknowledged: Acknowledgement | None
    priority_breakdown: Mapping[str, Any]
    sla: SlaFacts | None
    explanation: tuple[str, ...]
    resolution: Resolution | None = None  # a resolved record's: cleared, or merged (into merged_into)
    merged_into: str | None = None

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(  # noqa: PLR0917 (the dataclass's parameters, positional as there)
        self,
        incident_id: str,
        event: RecordEvent,
        version: int,
        time: float,
        priority: int,
        score: float,
        state: str,
        severity: str,
        root_cause: RootCause,
        impact: Impact | None,
        alarms: tuple[str, ...],
        suppressed: tuple[SuppressedAlarm, ...],
        flapping: tuple[str, ...],
        opened_at: float | None,
        acknowledged: Acknowledgement | None,
        priority_breakdown: Mapping[str, Any],
        sla: SlaFacts | None,
        explanation: tuple[str, ...],
        resolution: Resolution | None = None,
        merged_into: str | None = None,
    ) -> None:
        self.incident_id = incident_id  # type: ignore[misc]
        self.event = event  # type: ignore[misc]
        self.version = version  # type: ignore[misc]
        self.time = time  # type: ignore[misc]
        self.priority = priority  # type: ignore[misc]
        self.score = score  # type: ignore[misc]
        self.state = state  # type: ignore[misc]
        self.severity = severity  # type: ignore[misc]
        self.root_cause = root_cause  # type: ignore[misc]
        self.impact = impact  # type: ignore[misc]
        self.alarms = alarms  # type: ignore[misc]
        self.suppressed = suppressed  # type: ignore[misc]
        self.flapping = flapping  # type: ignore[misc]
        self.opened_at = opened_at  # type: ignore[misc]  # a copy of the incident's (test_lifecycle)
        self.acknowledged = acknowledged  # type: ignore[misc]
        self.priority_breakdown = priority_breakdown  # type: ignore[misc]
        self.sla = sla  # type: ignore[misc]
        self.explanation = explanation  # type: ignore[misc]
        self.resolution = resolution  # type: ignore[misc]
        self.merged_into = merged_into  # type: ignore[misc]

    def to_wire(self) -> dict[str, Any]:
        """The record as JSON-ready data, byte for byte what receivers have always been sent."""
        impact, ack, sla = self.impact, self.acknowledged, self.sla
        return self._wire_with(
            root_cause=self.root_cause.to_wire(),
            impact=impact.to_record() if impact is not None else _empty_impact(),
            alarms=list(self.alarms),
            # ``SuppressedAlarm.to_wire`` inlined for the common entry (21 per record on 24V)
            suppressed=[s._wire.copy() if s.threshold_info is None else s.to_wire() for s in self.suppressed],
            flapping=list(self.flapping),
            acknowledged=ack.to_wire() if ack is not None else None,
            priority_breakdown=dict(self.priority_breakdown),
            sla=sla.to_wire() if sla is not None else None,
            explanation=list(self.explanation),
        )

    def to_json(self) -> bytes:
        """The record's JSON line: ``orjson.dumps(self.to_wire(), option=OPT_APPEND_NEWLINE)``, byte
        for byte (``tests/test_output_fast_paths.py``), without making its parts again: the parts an
        incident's records share from one record to the next while they do not change (the same
        objects: its suppressed entries, impact, root cause and members) are put
        in as JSON made once (``_fragment``), and the tuples as they are (orjson writes a tuple as
        the list ``to_wire`` gives). What ``engine replay`` writes."""
        impact, breakdown, sla = self.impact, self.priority_breakdown, self.sla
        ack, alarms, suppressed = self.acknowledged, self.alarms, self.suppressed
        rec = self._wire_with(
            root_cause=_Fragment(self.root_cause.json()),
            impact=_fragment(impact, _impact_json) if impact is not None else _EMPTY_IMPACT,
            # (a record made elsewhere may hold lists: those are written as they are now)
            alarms=_fragment(alarms, _dumps) if type(alarms) is tuple else alarms,
            # (a list of one fragment, the entries joined: orjson writes the brackets around them)
            suppressed=[
                _fragment(suppressed, _suppressed_json)
                if type(suppressed) is tuple
                else _Fragment(_suppressed_json(suppressed))
            ],
            flapping=self.flapping,
            acknowledged=ack.to_wire() if ack is not None else None,
            # (a copy in ``to_wire``: here only written; orjson writes a dict, not any mapping)
            priority_breakdown=breakdown if type(breakdown) is dict else dict(breakdown),
            sla=sla.to_wire() if sla is not None else None,
            # (written as it is: the lines change with most records, so a kept copy seldom pays)
            explanation=self.explanation,
        )
        return _dumps(rec, option=_APPEND_NEWLINE)

    def _wire_with(
        self,
        *,
        root_cause: Any,
        impact: Any,
        alarms: Any,
        suppressed: Any,
        flapping: Any,
        acknowledged: Any,
        priority_breakdown: Any,
        sla: Any,
        explanation: Any,
    ) -> dict[str, Any]:
        """The record's dictionary, in its keys' order, with the parts as each form gives them
        (``to_wire``: JSON-ready data; ``to_json``: the same, or JSON already made)."""
        time = format_time(self.time)
        rec: dict[str, Any] = {
            "incident_id": self.incident_id,
            "event": self.event,
            "version": self.version,
            "time": time,
            "priority": self.priority,
            "score": self.score,
            "state": self.state,
            "severity": self.severity,
            "root_cause": root_cause,
            "impact": impact,
            "alarms": alarms,
            "suppressed": suppressed,
            "flapping": flapping,
            "opened_at": format_time(self.opened_at) if self.opened_at is not None else None,
            "acknowledged": acknowledged,
            "priority_breakdown": priority_breakdown,
            "sla": sla,
            "explanation": explanation,
        }
        if self.event == "resolved":
            rec["resolved_at"] = time
            rec["resolution"] = self.resolution or "cleared"
            if self.merged_into is not None:
                rec["merged_into"] = self.merged_into
        return rec


twin_built(IncidentRecord)


def _empty_impact() -> dict[str, Any]:
    return {"elements": 0, "services": {}, "customers": {"total": 0, "by_tier": {}}, "by_state": {}}


_EMPTY_IMPACT = orjson.Fragment(orjson.dumps(_empty_impact()))

# A record part's JSON (``IncidentRecord.to_json``), by the part's identity: the part itself (kept,
# so that its ``id`` is not reused while the entry lasts), the writer (``()`` has two) and its JSON.
# The parts are frozen or tuples (impact, members, suppressed entries), and the record builder hands
# the same objects to every record of an incident while they do not change (on 24V most records
# repeat most parts of the one before). Bounded: cleared when full. (The root cause keeps its own
# JSON, ``RootCause.json``, for as long as its incident holds it. The impact's JSON kept
# on the impact the same way made 65 % fewer of them on 24V ×8, but the impacts live on in the
# health's cache, 4,096 of them replaced one by one, and their JSON pinned memory: resident memory
# after 1M events 108 → 128 MiB, over goal 2's 1.5× of that after 100k. Not kept.)
_FRAGMENTS: dict[int, tuple[object, Callable[[Any], bytes], orjson.Fragment]] = {}
_FRAGMENTS_KEPT = 256  # (4,096 held 60 MB more on 24V's replays: parts of long-gone records)


def _fragment(part: Any, write: Callable[[Any], bytes]) -> orjson.Fragment:
    """``part``'s JSON as ``write`` makes it, made once per part object (see ``_FRAGMENTS``)."""
    hit = _FRAGMENTS.get(id(part))
    if hit is not None and hit[0] is part and hit[1] is write:  # (one object, two writers: ``()``)
        return hit[2]
    if len(_FRAGMENTS) >= _FRAGMENTS_KEPT:
        _FRAGMENTS.clear()
    made = _Fragment(write(part))
    _FRAGMENTS[id(part)] = (part, write, made)
    return made


def _impact_json(impact: Impact) -> bytes:
    return _dumps(impact.to_record())


def _suppressed_json(entries: Iterable[SuppressedAlarm]) -> bytes:
    """The entries' JSON, comma-separated, without the list's brackets: ``to_json`` puts it in a
    list, whose brackets orjson writes (no copy of the joined entries to add them; empty for none)."""
    return b",".join([s._json or s.json() for s in entries])


# ``explain(p)`` by the priority's identity, with the priority itself (kept, so that its ``id`` is
# not reused while the entry lasts): the assessor hands every incident assessed alike the same
# ``Priority`` object (``Assessor._priorities``), so its words are written once for all of them
_PRIORITY_WORDS: dict[int, tuple[Priority, str]] = {}
_PRIORITY_WORDS_KEPT = 256


def _priority_words(p: Priority) -> str:
    hit = _PRIORITY_WORDS.get(id(p))
    if hit is not None and hit[0] is p:
        return hit[1]
    if len(_PRIORITY_WORDS) >= _PRIORITY_WORDS_KEPT:
        _PRIORITY_WORDS.clear()
    words = explain(p)
    _PRIORITY_WORDS[id(p)] = (p, words)
    return words


ROOT_UNEXPLAINED: Final = "; no rule explains it"  # the end of an explanation's first line

_ENTRIES_KEPT = 100_000  # suppressed entries the record builder reuses (cleared past that)

_WHERE = {
    "downstream_of": "{a} is at or below {r}",
    "upstream_of": "{a} is at or above {r}",
    "same_element": "same element {a}",
    "same_site": "same site {site}",
    "same_region": "same region {region}",
    "same_service_path": "on a path of the same service type",
}


class Walk:
    """What a record shows of an incident's members, kept on the incident (``Incident.walked``):
    each member's alarm object as it was walked, the suppressed entries (by member, in member
    order), the suppressed members counted by rule and the explanation's line saying so, the
    flapping members. Brought up to date for the members that joined since (members only join while
    an incident lasts: ``RecordBuilder._grow``) and for those whose alarms changed
    (``Incident.changed_members``, ``RecordBuilder._rewalk``); a member's suppression is fixed while
    it is a member."""

    __slots__ = ("alarms", "by_rule", "count", "entries", "flapping", "flapping_keys", "line", "suppressed")

    def __init__(self) -> None:
        self.count = 0  # the members walked
        self.alarms: dict[str, ActiveAlarm | None] = {}  # member -> its alarm object
        self.entries: dict[str, SuppressedAlarm] = {}  # suppressed member -> its entry, in member order
        self.by_rule: dict[str, int] = {}  # rule -> the suppressed members it explains
        self.flapping_keys: set[str] = set()
        self.suppressed: tuple[SuppressedAlarm, ...] = ()  # the entries, in member order
        self.flapping: tuple[str, ...] = ()  # the flapping members, in member order
        self.line = ""


class RecordBuilder:
    """Builds records from the book's incidents; reads alarms, suppressions and the topology only."""

    def __init__(
        self,
        topology: Topology,
        alarm: Callable[[str], ActiveAlarm | None],
        suppression: Callable[[str], Suppression | None],
    ) -> None:
        self._topology = topology
        self._alarm = alarm
        self._suppression = suppression
        # symptom key -> (its suppression, its alarm, active then, its root's alarm, the entry):
        # an incident's records list the same symptoms again and again; an entry is built anew
        # only when one of what it is made of changed. An entry reads of an alarm its element and
        # probable cause (fixed for the alarm's life), ``active`` and ``threshold_info`` (compared:
        # the latter is replaced, never mutated in place); ``AlarmTable`` also changes severity,
        # text and first-seen in place, which an entry does not show
        self._entries: dict[
            str,
            tuple[Suppression, ActiveAlarm | None, bool, Any, ActiveAlarm | None, SuppressedAlarm],
        ] = {}

    def record(
        self,
        inc: Incident,
        event: RecordEvent,
        now: float,
        *,
        resolution: Resolution | None = None,
        merged_into: str | None = None,
        merged_root: str | None = None,
    ) -> IncidentRecord:
        """``merged_into`` and ``merged_root``: the incident a ``resolved`` record's incident was
        merged into, and that incident's root."""
        root = self._alarm(inc.root)
        assessment = inc.assessment  # (its parts read from it once, not through the properties)
        p = assessment.priority
        alarms = inc.sorted_members()
        walked = inc.walked
        changed = inc.changed_members
        if walked is None or walked.count > len(alarms):
            walked = inc.walked = self._walk(alarms)
        else:
            if walked.count != len(alarms):  # members joined: theirs added (see ``_grow``)
                self._grow(walked, sorted(inc.members.difference(walked.alarms)))
            if changed and not self._rewalk(walked, changed):
                walked = inc.walked = self._walk(alarms)
        changed.clear()
        # the root cause, made again only when what it shows of the root's alarm changed
        cause = inc.cause
        rules = len(inc.grouping_rules)
        if root is None:
            shown: tuple[Any, ...] = (None, False)
            info = None
        else:
            shown = (root.severity, root.active, root.first_seen, root.raw_active, root.cleared_time)
            info = root.threshold_info
        if (
            cause is None
            or cause[0] is not root
            or cause[1] != shown
            or cause[2] is not info
            or cause[3] != rules
        ):
            cause = inc.cause = (root, shown, info, rules, self._root_cause(inc, root))
        # the explanation lines, written again only when what they say changed: kept on the incident
        # (``Incident.said_lines``) with what they are made of (the root's alarm object and what
        # they show of it, the incident's parts they read, its impact and priority objects)
        line = walked.line
        im = assessment.impact
        if root is None:
            shown_root: tuple[Any, ...] = ()
        else:
            flapping = root.flapping
            shown_root = (root.severity, root.effect, flapping, root.count if flapping else 0, root.text)
        # (the objects compared by identity: equal impacts may order their counts otherwise)
        said = inc.said_lines
        made_of = (shown_root, inc.group is not None, inc.maintenance, line, inc.reraised, assessment.state)
        if said is None or said[0] is not root or said[2] is not im or said[3] is not p or said[1] != made_of:
            said = inc.said_lines = (root, made_of, im, p, tuple(self._explanation(inc, root, line)))
        explanation = said[4]
        if merged_into is not None and event == "resolved":
            explanation = self._merged(inc, explanation, merged_into, merged_root)
        return IncidentRecord(
            incident_id=inc.id,
            event=event,
            version=inc.emitted.version,
            time=now,
            priority=p.priority if p else 5,
            score=p.score if p else 0.0,
            state=assessment.state,
            severity=assessment.severity,
            root_cause=cause[4],
            impact=assessment.impact,
            alarms=alarms,
            suppressed=walked.suppressed,
            flapping=walked.flapping,
            opened_at=inc.opened_at,
            acknowledged=inc.acknowledged,
            priority_breakdown=dict(p.breakdown) if p else {},
            sla=assessment.sla,
            explanation=explanation,
            resolution=(resolution or "cleared") if event == "resolved" else None,
            merged_into=merged_into if event == "resolved" else None,
        )

    def _merged(
        self, inc: Incident, lines: tuple[str, ...], merged_into: str, merged_root: str | None
    ) -> tuple[str, ...]:
        """The explanation of the record that resolves ``inc`` as merged: its first line says what
        explains its root now (where it said no rule explains it), and a last line names the
        incident it moved into and that incident's root."""
        why = self._suppression(inc.root)  # (a merge is the root's suppression: there while it lasts)
        if why is not None and lines and lines[0].endswith(ROOT_UNEXPLAINED):
            cut = len(ROOT_UNEXPLAINED)
            lines = (lines[0][:-cut] + f"; explained by {why.root} (rule {why.rule})", *lines[1:])
        into = f"merged into {merged_into}" + (f" (root {merged_root})" if merged_root is not None else "")
        return (*lines, f"{into}: the incident resolves into it")

    def _walk(self, alarms: tuple[str, ...]) -> Walk:
        """What a record shows of an incident's members (``alarms``, sorted): see ``Walk``."""
        walk = Walk()
        self._grow(walk, alarms)
        return walk

    def _grow(self, walk: Walk, joined: list[str] | tuple[str, ...]) -> None:
        """Add to ``walk`` the members that ``joined`` (sorted) since it was made (or all of them):
        only theirs is looked up, and the walk's entries are put in member order again (the keys
        of the entries, in member order already but for the joined, sorted in C)."""
        get, suppression, entries = self._alarm, self._suppression, self._entries
        alarms, by_key, by_rule = walk.alarms, walk.entries, walk.by_rule
        flapping = suppressed = False
        for key in joined:
            a = alarms[key] = get(key)
            if a is not None and a.flapping:
                walk.flapping_keys.add(key)
                flapping = True
            sup = suppression(key)
            if sup is not None:
                # ``_entry``, its reuse inlined: the common case of a record of a large incident
                hit = entries.get(key)
                if (
                    hit is not None
                    and hit[0] is sup
                    and hit[1] is a
                    and hit[2] is (a is not None and a.active)
                    and hit[3] is (a.threshold_info if a is not None else None)
                    and hit[4] is get(sup.root)
                ):
                    entry = hit[5]
                else:
                    entry = self._entry(key, a, sup)
                by_key[key] = entry
                by_rule[entry.rule] = by_rule.get(entry.rule, 0) + 1
                suppressed = True
        walk.count = len(alarms)
        if suppressed:
            if walk.suppressed:  # (the first walk adds them in member order)
                walk.entries = by_key = dict(sorted(by_key.items()))
            walk.suppressed = tuple(by_key.values())
            parts = ", ".join(f"{n} by {rule}" for rule, n in sorted(by_rule.items()))
            walk.line = f"{len(by_key)} alarm(s) suppressed as symptoms: {parts}"
        if flapping:
            walk.flapping = tuple(sorted(walk.flapping_keys))

    def _rewalk(self, walk: Walk, changed: Iterable[str]) -> bool:
        """Bring ``walk`` up to date for the members whose alarms changed since it was made; False
        when one of them is another alarm object now (forgotten, or raised anew after that): the
        entries that name it as their root may read it, so the caller walks every member again."""
        get, suppression = self._alarm, self._suppression
        alarms, by_key, flapping_keys = walk.alarms, walk.entries, walk.flapping_keys
        flapping = entries = False
        for key in changed:
            a = get(key)
            if a is not alarms.get(key, walk):
                return False
            if (a is not None and a.flapping) is not (key in flapping_keys):
                if key in flapping_keys:
                    flapping_keys.discard(key)
                else:
                    flapping_keys.add(key)
                flapping = True
            if key in by_key:
                sup = suppression(key)
                assert sup is not None  # a member's suppression stays while it is a member
                by_key[key] = self._entry(key, a, sup)  # (in its place: the order stays)
                entries = True
        if entries:
            walk.suppressed = tuple(by_key.values())
        if flapping:
            walk.flapping = tuple(sorted(flapping_keys))
        return True

    def _root_cause(self, inc: Incident, root: ActiveAlarm | None) -> RootCause:
        """The record's root cause: of the root's alarm (its element and probable cause are fixed
        for the alarm object's life; its severity, state and threshold info, replaced whole, are
        compared) and the incident's first grouping rule (rules only join while an incident lasts,
        so the same count is the same set). Kept on the incident (``Incident.cause``) with what it
        was made of."""
        el = self._topology.element(root.ne_id) if root is not None else None
        return RootCause(
            alarm_id=inc.root,
            ne_id=root.ne_id if root else None,
            probable_cause=root.probable_cause if root else None,
            severity=root.severity if root else None,
            element_type=el.type if el else None,
            site=el.site if el else None,
            region=el.region if el else None,
            active=bool(root and root.active),
            rule=min(inc.grouping_rules) if inc.grouping_rules else None,
            threshold_info=(dict(root.threshold_info) if root and root.threshold_info is not None else None),
            raised_at=(inc.fault_start if inc.fault_start is not None else root.first_seen) if root else None,
            # the element's own clear, even while a flapping root is held active for correlation
            cleared_at=root.cleared_time if root and not root.raw_active else None,
        )

    def forget(self, keys: Iterable[str]) -> None:
        """Drop what is kept for these symptoms (their incident went away)."""
        for key in keys:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Drop everything kept (the book loaded another state)."""
        self._entries.clear()

    def _entry(self, key: str, a: ActiveAlarm | None, sup: Suppression) -> SuppressedAlarm:
        """``_suppressed``, reused while the suppression, both alarms and the symptom's state and
        threshold info are the same objects and values as when it was built."""
        root = self._alarm(sup.root)
        active = a is not None and a.active
        info = a.threshold_info if a is not None else None
        hit = self._entries.get(key)
        if hit is not None and hit[0] is sup and hit[1] is a and hit[3] is info and hit[4] is root:
            entry = hit[5]
            if hit[2] is active:
                return entry
            # only the symptom's state changed (it cleared, or came back): the same words
            entry = SuppressedAlarm(
                key,
                entry.ne_id,
                entry.probable_cause,
                "active" if active else "cleared",
                entry.root,
                entry.rule,
                entry.reason,
                entry.threshold_info,
            )
        else:
            entry = self._suppressed(key, a, sup, root)
        if len(self._entries) >= _ENTRIES_KEPT:
            self._entries.clear()  # bounded whatever happens (the book forgets them as incidents go)
        self._entries[key] = (sup, a, active, info, root, entry)
        return entry

    def _suppressed(
        self, key: str, a: ActiveAlarm | None, sup: Suppression, root: ActiveAlarm | None
    ) -> SuppressedAlarm:
        template = _WHERE.get(sup.relation)
        hops = neighbour_hops(sup.relation)
        if hops is not None:
            where = f"{a.ne_id if a else '?'} is within {hops} links of {root.ne_id if root else '?'}"
        elif template is None:
            where = sup.detail or sup.relation
        else:
            el = self._topology.element(a.ne_id) if a is not None else None  # (looked up once)
            where = template.format(
                a=a.ne_id if a else "?",
                r=root.ne_id if root else "?",
                site=(el.site or "?") if el is not None else "?",
                region=(el.region or "?") if el is not None else "?",
            )
        return SuppressedAlarm(
            alarm_id=key,
            ne_id=a.ne_id if a else None,
            probable_cause=a.probable_cause if a else None,
            state="active" if a and a.active else "cleared",
            root=sup.root,
            rule=sup.rule,
            reason=f"explained by {sup.root} (rule {sup.rule}: {where}, {sup.delay:+.1f} s from the root)",
            threshold_info=dict(a.threshold_info) if a is not None and a.threshold_info is not None else None,
        )

    def _explanation(self, inc: Incident, root: ActiveAlarm | None, suppressed: str) -> list[str]:
        """The record's explanation lines (``suppressed``: the line counting the suppressed by rule,
        empty when none is)."""
        lines: list[str] = []
        if root is not None:
            # its first line, kept on the incident with the root's alarm object (whose element and
            # probable cause are fixed for its life) and the severity and effect it was written of
            said = inc.said_root
            severity, effect = root.severity, root.effect
            if said is None or said[0] is not root or said[1] != severity or said[2] != effect:
                el = self._topology.element(root.ne_id)
                where = ", ".join(
                    x for x in (el.type, f"site {el.site}" if el.site else "", el.region or "") if x
                )
                line = (
                    f"root cause: {root.probable_cause} ({severity}, effect {effect}) on {root.ne_id} "
                    f"({where}){ROOT_UNEXPLAINED}"
                )
                said = inc.said_root = (root, severity, effect, line)
            lines.append(said[3])
            if root.flapping:
                lines.append(f"the root alarm is flapping ({root.count} raises in this occurrence)")
            if root.text and root.key.startswith("rule:"):
                lines.append(f"raised by rule {raised_by(inc.root)}: {root.text}")
        if inc.group is not None:  # (``kind`` "group")
            lines.append("a group incident: it resolves when none of its alarms is active")
        if inc.maintenance is not None:
            lines.append(f"held back by maintenance window {inc.maintenance} until it ended")
        if suppressed:
            lines.append(suppressed)
        if inc.reraised:
            lines.append(f"the root was re-raised {inc.reraised} time(s) during the hold-down; same incident")
        # the words for its impact and its priority, kept on the incident with the objects they
        # were written of (both frozen, and the same objects from one record to the next while
        # they do not change)
        words = inc.words
        assessment = inc.assessment
        im, p = assessment.impact, assessment.priority
        if words is None or words[0] is not im or words[2] is not p:
            # each written again only when its own object changed (most often one of the two)
            if words is not None and words[0] is im:
                impact_words = words[1]
            elif im is not None:
                tiers = ", ".join(f"{t} {n}" for t, n in im.by_tier.items())
                services = ", ".join(f"{s} {n}" for s, n in im.services.items())
                impact_words = (
                    f"impact: {len(im.elements)} element(s) affected; {im.customers} customer(s)"
                    + (f" ({tiers})" if tiers else "")
                    + (f"; services {services}" if services else "")
                )
            else:
                impact_words = ""
            if words is not None and words[2] is p:
                priority_words = words[3]
            else:
                priority_words = _priority_words(p) if p is not None else ""
            words = inc.words = (im, impact_words, p, priority_words)
        if im is not None:
            lines.append(f"{words[1]}; state {assessment.state}")
        if p is not None:
            lines.append(words[3])
        return lines
