"""What the dashboard's pages show, computed from incident records: no HTTP, no templates, no clock.

``Row`` is one open incident as the incident list shows it, cut from its latest record (the JSON
record the API serves, or a light one without its long lists). ``index.IncidentIndex`` keeps one
per open incident.

``Filters`` parses the list's query string (priority, state, region, service, acknowledged,
page); a bad value is a ``FilterError`` naming the parameter. ``select`` filters, sorts (priority,
then score, then age) and cuts one page; ``priority_counts`` counts per priority under the other
filters, so each count is also a link to that priority.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final
from urllib.parse import urlencode

from engine.model.timeutil import parse_time

__all__ = [
    "PAGE_SIZE",
    "FilterError",
    "Filters",
    "Page",
    "Row",
    "priority_counts",
    "row_of",
    "select",
    "suppression_tree",
    "timeline",
]

PAGE_SIZE: Final = 50
PRIORITIES: Final = (1, 2, 3, 4, 5)
STATES: Final = ("outage", "degraded", "at_risk")
ACK_CHOICES: Final = ("yes", "no")
STATE_WORDS: Final = {"outage": "outage", "degraded": "degraded", "at_risk": "at risk"}
TIER_ORDER: Final = ("platinum", "gold", "silver", "bronze")
MAX_TREE: Final = 2000  # suppressed alarms drawn in one incident's tree; the rest are counted


@dataclass(frozen=True, slots=True)
class Row:
    """One open incident as the list shows it."""

    incident_id: str
    version: int
    event: str
    time: float
    priority: int
    score: float
    state: str
    severity: str
    root_ne: str
    root_alarm: str
    cause: str
    region: str
    services: tuple[tuple[str, int], ...]
    tiers: tuple[tuple[str, int], ...]
    customers: int
    opened_at: float
    breach_at: float | None  # when the first SLA breaches (record time + seconds to breach)
    breached: int
    suppressed: int
    acked_by: str | None
    acked_at: float | None


def _time(value: Any, default: float) -> float:
    try:
        return parse_time(value)
    except ValueError:
        return default


def _tier_rank(item: tuple[str, int]) -> tuple[int, str]:
    """The usual tiers from the most demanding down; any other tier after them, by name."""
    return (TIER_ORDER.index(item[0]) if item[0] in TIER_ORDER else len(TIER_ORDER), item[0])


def row_of(record: Mapping[str, Any]) -> Row:
    """A record → its list row. Tolerant: a field missing from a record shows as empty."""
    root = record.get("root_cause") or {}
    impact = record.get("impact") or {}
    customers = impact.get("customers") or {}
    by_tier = customers.get("by_tier") or {}
    sla = record.get("sla") or {}
    ack = record.get("acknowledged") or {}
    t = _time(record.get("time"), 0.0)
    breach_at = None
    if sla and sla.get("seconds_to_breach") is not None:
        breach_at = t + float(sla["seconds_to_breach"])
    return Row(
        incident_id=str(record.get("incident_id", "")),
        version=int(record.get("version", 0)),
        event=str(record.get("event", "")),
        time=t,
        priority=int(record.get("priority") or 5),
        score=float(record.get("score") or 0.0),
        state=str(record.get("state", "")),
        severity=str(record.get("severity", "")),
        root_ne=str(root.get("ne_id", "")),
        root_alarm=str(root.get("alarm_id", "")),
        cause=str(root.get("probable_cause", "")),
        region=str(root.get("region") or ""),
        services=tuple(sorted((str(k), int(v)) for k, v in (impact.get("services") or {}).items())),
        tiers=tuple(sorted(((str(k), int(v)) for k, v in by_tier.items()), key=_tier_rank)),
        customers=int(customers.get("total") or 0),
        opened_at=_time(record.get("opened_at"), t),
        breach_at=breach_at,
        breached=int(sla.get("customers_breached") or 0) if sla else 0,
        suppressed=int(record["suppressed_count"])  # a light record (StoreReader.light_records)
        if "suppressed_count" in record
        else len(record.get("suppressed") or ()),
        acked_by=str(ack["by"]) if ack.get("by") else None,
        acked_at=_time(ack.get("at"), t) if ack.get("at") else None,
    )


# --------------------------------------------------------------------------------------- filters


class FilterError(ValueError):
    """A query parameter of the incident list with a value it cannot take."""

    def __init__(self, name: str, reason: str, given: str) -> None:
        super().__init__(f"{name}: {reason}, got {given!r}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Filters:
    priority: int | None = None
    state: str | None = None
    region: str | None = None
    service: str | None = None
    ack: str | None = None  # "yes" | "no"
    page: int = 1

    KEYS: ClassVar[tuple[str, ...]] = ("priority", "state", "region", "service", "ack", "page")

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        """The list's query string → filters. Empty values mean "any"; unknown keys are ignored
        (a bookmarked URL of an older version still opens). Raises ``FilterError``."""

        def get(name: str) -> str | None:
            value = query.get(name, "").strip()
            return value or None

        priority = get("priority")
        if priority is not None and priority not in ("1", "2", "3", "4", "5"):
            raise FilterError("priority", "expected 1 to 5", priority)
        state = get("state")
        if state is not None and state not in STATES:
            raise FilterError("state", f"expected one of {', '.join(STATES)}", state)
        ack = get("ack")
        if ack is not None and ack not in ACK_CHOICES:
            raise FilterError("ack", "expected yes or no", ack)
        page_text = get("page") or "1"
        if not page_text.isdigit() or not 1 <= int(page_text) <= 1_000_000:
            raise FilterError("page", "expected a page number from 1", page_text)
        for name in ("region", "service"):
            value = get(name)
            if value is not None and len(value) > 200:
                raise FilterError(name, "longer than 200 characters", value[:40] + "…")
        return cls(
            priority=int(priority) if priority else None,
            state=state,
            region=get("region"),
            service=get("service"),
            ack=ack,
            page=int(page_text),
        )

    def query(self, **changes: Any) -> str:
        """This filter set as a query string (with ``changes``), empty values left out."""
        f = replace(self, **changes)
        pairs = [(k, getattr(f, k)) for k in self.KEYS]
        return urlencode([(k, str(v)) for k, v in pairs if v is not None and not (k == "page" and v == 1)])

    @property
    def active(self) -> bool:
        return any(getattr(self, k) is not None for k in self.KEYS if k != "page")

    def matches(self, row: Row, *, ignore_priority: bool = False) -> bool:
        if not ignore_priority and self.priority is not None and row.priority != self.priority:
            return False
        if self.state is not None and row.state != self.state:
            return False
        if self.region is not None and row.region != self.region:
            return False
        if self.service is not None and all(name != self.service for name, _ in row.services):
            return False
        return self.ack is None or (row.acked_by is not None) == (self.ack == "yes")


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Row]
    total: int  # rows matching the filters
    page: int
    pages: int
    first: int  # 1-based position of the first row shown (0 when none)
    last: int


def sort_key(row: Row) -> tuple[int, float, float, str]:
    """Priority first (P1 on top), then the higher score, then the older incident."""
    return (row.priority, -row.score, row.opened_at, row.incident_id)


def select(rows: Iterable[Row], filters: Filters, *, size: int = PAGE_SIZE) -> Page:
    matching = sorted((r for r in rows if filters.matches(r)), key=sort_key)
    total = len(matching)
    pages = max(1, math.ceil(total / size))
    page = min(filters.page, pages)
    start = (page - 1) * size
    shown = matching[start : start + size]
    return Page(shown, total, page, pages, start + 1 if shown else 0, start + len(shown))


def priority_counts(rows: Iterable[Row], filters: Filters) -> dict[int, int]:
    """Open incidents per priority under every filter but priority (P1..P5, zeros included)."""
    counts = dict.fromkeys(PRIORITIES, 0)
    for r in rows:
        if filters.matches(r, ignore_priority=True):
            counts[r.priority] = counts.get(r.priority, 0) + 1
    return counts


def facets(rows: Iterable[Row]) -> tuple[list[str], list[str]]:
    """Regions and services among the open incidents, for the filter menus."""
    regions: set[str] = set()
    services: set[str] = set()
    for r in rows:
        if r.region:
            regions.add(r.region)
        services.update(name for name, _ in r.services)
    return sorted(regions), sorted(services)


# ------------------------------------------------------------------------------------ the detail


@dataclass(frozen=True, slots=True)
class TreeNode:
    alarm_id: str
    ne_id: str
    probable_cause: str
    state: str
    rule: str | None
    reason: str | None
    children: list[TreeNode]


def suppression_tree(record: Mapping[str, Any]) -> tuple[TreeNode, list[str], int]:
    """The root and every suppressed alarm under the alarm that explains it.

    Returns the root node, the incident's other alarms (neither the root nor suppressed: co-roots
    merged into it) and how many suppressed alarms were left out beyond ``MAX_TREE``. An entry
    whose ``root`` is outside the record, or whose chain of roots loops, hangs under the root.
    """
    root = record.get("root_cause") or {}
    root_id = str(root.get("alarm_id", ""))
    entries = [e for e in record.get("suppressed") or () if isinstance(e, Mapping)]
    left_out = max(0, len(entries) - MAX_TREE)
    entries = entries[:MAX_TREE]
    children: dict[str, list[TreeNode]] = {root_id: []}
    nodes: dict[str, TreeNode] = {}
    parent: dict[str, str] = {}
    for e in entries:
        aid = str(e.get("alarm_id", ""))
        if aid in nodes or aid == root_id:
            continue
        children[aid] = []
        nodes[aid] = TreeNode(
            alarm_id=aid,
            ne_id=str(e.get("ne_id", "")),
            probable_cause=str(e.get("probable_cause", "")),
            state=str(e.get("state", "")),
            rule=e.get("rule"),
            reason=e.get("reason"),
            children=children[aid],
        )
        parent[aid] = str(e.get("root") or root_id)
    for aid in nodes:
        if parent[aid] not in children or _loops(parent, aid):
            parent[aid] = root_id
    for aid, node in nodes.items():
        children[parent[aid]].append(node)
    root_node = TreeNode(
        alarm_id=root_id,
        ne_id=str(root.get("ne_id", "")),
        probable_cause=str(root.get("probable_cause", "")),
        state="active" if root.get("active", True) else "cleared",
        rule=root.get("rule"),
        reason=None,
        children=children[root_id],
    )
    listed = {root_id, *nodes}
    others = [str(a) for a in record.get("alarms") or () if str(a) not in listed]
    return root_node, others, left_out


def _loops(parent: Mapping[str, str], aid: str) -> bool:
    """Does following ``root`` pointers from ``aid`` come back to it?"""
    seen = {aid}
    at = parent.get(aid)
    while at is not None and at in parent:
        if at in seen:
            return True
        seen.add(at)
        at = parent[at]
    return False


# ---------------------------------------------------------------------------------- the timeline


@dataclass(frozen=True, slots=True)
class Step:
    version: int
    event: str
    time: float
    changes: list[str]


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _facts_known(h: Mapping[str, Any]) -> bool:
    """A summary with the incident's facts (not the bare "opened" ``known_history`` makes)."""
    return h.get("priority") is not None


def _known_both(h: Mapping[str, Any], before: Mapping[str, Any], key: str) -> bool:
    return h.get(key) is not None and before.get(key) is not None


def _resolved_words(h: Mapping[str, Any]) -> str:
    """Why a resolved version came: merged into another incident, or its root cleared (and the
    hold-down elapsed), with the symptoms still active, which re-surface on their own."""
    if h.get("resolution") == "merged":
        into = h.get("merged_into")
        return f"merged into {into}: a later root explains its root" if into else "merged into another one"
    if h.get("resolution") is None and h.get("symptoms_active") is None:  # a summary kept before
        return "resolved (its root cleared, after the hold-down)"
    words = "its root cleared; resolved after the hold-down"
    active = h.get("symptoms_active") or 0
    if active:
        words += f"; {_plural(active, 'symptom')} still active, each re-surfacing on its own"
    return words


def timeline(history: Iterable[Mapping[str, Any]]) -> list[Step]:
    """Each version of an incident (``Store.incident_history`` summaries, completed by
    ``known_history``) with what changed since the one before it, in words: opened → updated … →
    resolved. Versions without a summary are said to be missing; the first version after them is
    described in full, like an opening."""
    steps: list[Step] = []
    before: Mapping[str, Any] | None = None
    for h in history:
        changes: list[str] = []
        gap: list[str] = []
        version = int(h.get("version") or 0)
        if before is not None and version - int(before.get("version") or 0) > 1:
            first, last = int(before.get("version") or 0) + 1, version - 1
            span = f"version {first}" if first == last else f"versions {first}–{last}"
            gap.append(f"{span} not recorded (stored before per-version history was kept)")
        if not _facts_known(h):
            changes.append("its facts at this version were not recorded")
        elif before is None or not _facts_known(before):
            state = STATE_WORDS.get(str(h.get("state")), h.get("state"))
            changes.append(
                f"P{h.get('priority')} {state}, score {h.get('score')},"
                f" {_plural(h.get('customers') or 0, 'customer')}, {_plural(h.get('alarms') or 0, 'alarm')}"
                f" ({h.get('suppressed') or 0} suppressed)"
            )
            ack = h.get("acknowledged")
            if before is not None and ack:
                changes.append(f"acknowledged by {ack.get('by')}")
            if before is not None and h.get("event") == "resolved":
                changes.append(_resolved_words(h))
        else:
            if h.get("priority") != before.get("priority"):
                changes.append(f"priority P{before.get('priority')} → P{h.get('priority')}")
            if h.get("state") != before.get("state"):
                old, new = before.get("state"), h.get("state")
                changes.append(f"state {STATE_WORDS.get(str(old), old)} → {STATE_WORDS.get(str(new), new)}")
            if h.get("score") != before.get("score") and h.get("event") != "resolved":
                changes.append(f"score {before.get('score')} → {h.get('score')}")
            if h.get("root") != before.get("root"):
                changes.append(f"root alarm {before.get('root')} → {h.get('root')}")
            if h.get("customers") != before.get("customers"):
                changes.append(f"customers {before.get('customers')} → {h.get('customers')}")
            if h.get("services") != before.get("services"):
                changes.append("services " + ", ".join(f"{k} {v}" for k, v in sorted(h["services"].items())))
            if h.get("alarms") != before.get("alarms") or h.get("suppressed") != before.get("suppressed"):
                changes.append(
                    f"{_plural(h.get('alarms') or 0, 'alarm')} ({h.get('suppressed') or 0} suppressed)"
                )
            if h.get("severity") != before.get("severity"):
                changes.append(f"severity {before.get('severity')} → {h.get('severity')}")
            ack, was = h.get("acknowledged"), before.get("acknowledged")
            if ack and ack != was:
                changes.append(
                    f"acknowledged by {ack.get('by')}" + (f": {ack['note']}" if ack.get("note") else "")
                )
            # (summaries kept before these were recorded have none of them: nothing said)
            if (
                h.get("event") != "resolved"
                and _known_both(h, before, "root_active")
                and h["root_active"] != before["root_active"]
            ):
                changes.append("root alarm raised again" if h["root_active"] else "root alarm cleared")
            active = h.get("symptoms_active")
            if _known_both(h, before, "symptoms_active") and active != before["symptoms_active"]:
                changes.append(f"{active} of {h.get('suppressed') or 0} symptom(s) active")
            if _known_both(h, before, "flapping") and h["flapping"] != before["flapping"]:
                changes.append(
                    f"{_plural(h['flapping'], 'alarm')} flapping" if h["flapping"] else "no alarm flapping"
                )
            if h.get("breached") != before.get("breached") and h.get("breached"):
                changes.append(f"SLA: {_plural(h.get('breached'), 'customer')} in breach")
            elif (
                h.get("seconds_to_breach") != before.get("seconds_to_breach")
                and not changes
                and h.get("event") != "resolved"
            ):
                left = h.get("seconds_to_breach")
                changes.append("SLA re-assessed" + (f": {round(left / 60)} min to breach" if left else ""))
            if h.get("event") == "resolved":
                changes.append(_resolved_words(h))
            if not changes:
                changes.append("re-assessed, nothing shown here changed")
        if h.get("recorded") is False and _facts_known(h):
            changes.append("as the latest record says (no summary of this version was kept)")
        changes = gap + changes
        steps.append(Step(version, str(h.get("event") or ""), _time(h.get("time"), 0.0), changes))
        before = h
    return steps
