"""The dashboard's Alarms and Element pages: the active alarm list and an element's neighbourhood.

Read through the core's query interface (``CoreQuery``, the API's ``CoreView.query``) between two
items of the daemon's core task, like the API's explanations and reports: the active alarms, their
suppressions, the network's health and the topology. Nothing here changes the core.

The neighbourhood graph is bounded: everything the element needs up to the core (its ancestors,
redundancy groups as compound nodes), and what depends on it for ``depth`` levels, at most
``MAX_NODES`` nodes, the rest counted. Never the whole network.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Final
from urllib.parse import urlencode

from engine.core.impact import Health

if TYPE_CHECKING:
    from engine.adapters.dashboard.trends import QualityHistory
    from engine.core.query import AlarmView, CoreQuery

__all__ = ["AlarmFilters", "AlarmRow", "alarm_page", "neighbourhood"]

ALARM_PAGE: Final = 100
MAX_NODES: Final = 60
MAX_FANOUT: Final = 8
MAX_SCOPES: Final = 500  # element scopes offered in the chart's menu
MAX_POINTS: Final = 2000  # points per chart series (evenly thinned beyond; 24 h is 1,440)
CHART_HOURS: Final = (1, 6, 24)  # the ranges a chart offers
SEVERITIES: Final = ("critical", "major", "minor", "warning", "indeterminate")
HEALTH_WORDS: Final = {
    Health.OK: "ok",
    Health.AT_RISK: "at_risk",
    Health.DEGRADED: "degraded",
    Health.DOWN: "down",
}


# ------------------------------------------------------------------------------------------ alarms


@dataclass(frozen=True, slots=True)
class AlarmRow:
    key: str
    ne_id: str
    severity: str
    probable_cause: str
    event_type: str
    specific_problem: str | None
    text: str | None
    effect: str
    first_seen: float
    last_seen: float
    count: int
    flapping: bool
    suppressed_by: str | None


class AlarmFilterError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class AlarmFilters:
    severity: str | None = None
    element: str | None = None  # a part of the element id
    suppressed: str | None = None  # "yes" | "no"
    flapping: str | None = None  # "yes"
    page: int = 1

    KEYS: ClassVar[tuple[str, ...]] = ("severity", "element", "suppressed", "flapping", "page")

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> AlarmFilters:
        def get(name: str) -> str | None:
            value = query.get(name, "").strip()
            return value or None

        severity = get("severity")
        if severity is not None and severity not in SEVERITIES:
            raise AlarmFilterError(f"severity: expected one of {', '.join(SEVERITIES)}, got {severity!r}")
        suppressed = get("suppressed")
        if suppressed is not None and suppressed not in ("yes", "no"):
            raise AlarmFilterError(f"suppressed: expected yes or no, got {suppressed!r}")
        flapping = get("flapping")
        if flapping is not None and flapping != "yes":
            raise AlarmFilterError(f"flapping: expected yes, got {flapping!r}")
        element = get("element")
        if element is not None and len(element) > 256:
            raise AlarmFilterError("element: longer than 256 characters")
        page = get("page") or "1"
        if not page.isdigit() or not 1 <= int(page) <= 1_000_000:
            raise AlarmFilterError(f"page: expected a page number from 1, got {page!r}")
        return cls(severity, element, suppressed, flapping, int(page))

    def query(self, **changes: Any) -> str:
        f = replace(self, **changes)
        pairs = [(k, getattr(f, k)) for k in self.KEYS]
        return urlencode([(k, str(v)) for k, v in pairs if v is not None and not (k == "page" and v == 1)])

    @property
    def active(self) -> bool:
        return any(getattr(self, k) is not None for k in self.KEYS if k != "page")


@dataclass(frozen=True, slots=True)
class AlarmPage:
    rows: list[AlarmRow]
    total: int
    active_total: int
    page: int
    pages: int
    first: int
    last: int
    by_severity: dict[str, int]


def _row(a: AlarmView, suppressed_by: str | None) -> AlarmRow:
    return AlarmRow(
        key=a.key,
        ne_id=a.ne_id,
        severity=a.severity,
        probable_cause=a.probable_cause,
        event_type=a.event_type,
        specific_problem=a.specific_problem,
        text=a.text,
        effect=a.effect,
        first_seen=a.first_seen,
        last_seen=a.last_seen,
        count=a.count,
        flapping=a.flapping,
        suppressed_by=suppressed_by,
    )


def alarm_page(q: CoreQuery, filters: AlarmFilters, *, size: int = ALARM_PAGE) -> AlarmPage:
    """The active alarms that match, most severe and most recent first, one page of them.

    One pass over the active alarms (counting per severity and keeping the matches), then only the
    first ``page * size`` matches are ordered (a heap), not all of them."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    by_severity = dict.fromkeys(SEVERITIES, 0)
    needle = filters.element.lower() if filters.element else None
    wanted_suppressed = None if filters.suppressed is None else filters.suppressed == "yes"
    chosen: list[AlarmView] = []
    total_active = 0
    for a in q.active_alarms():
        total_active += 1
        by_severity[a.severity] = by_severity.get(a.severity, 0) + 1
        if filters.severity is not None and a.severity != filters.severity:
            continue
        if needle is not None and needle not in a.ne_id.lower():
            continue
        if filters.flapping == "yes" and not a.flapping:
            continue
        if wanted_suppressed is not None and (q.suppression(a.key) is not None) != wanted_suppressed:
            continue
        chosen.append(a)
    total = len(chosen)
    pages = max(1, math.ceil(total / size))
    page = min(filters.page, pages)
    start = (page - 1) * size
    first = heapq.nsmallest(
        start + size, chosen, key=lambda a: (rank.get(a.severity, len(SEVERITIES)), -a.last_seen, a.key)
    )
    shown = []
    for a in first[start:]:
        sup = q.suppression(a.key)
        shown.append(_row(a, sup.root if sup else None))
    return AlarmPage(
        shown, total, total_active, page, pages, start + 1 if shown else 0, start + len(shown), by_severity
    )


# ------------------------------------------------------------------------------------ neighbourhood


def neighbourhood(
    q: CoreQuery, ne_id: str, *, depth: int = 2, limit: int = MAX_NODES, fanout: int = MAX_FANOUT
) -> dict[str, Any]:
    """Cytoscape elements for ``ne_id``'s neighbourhood, coloured by effective health.

    Nodes carry ``health`` (ok, at_risk, degraded, down) and ``label`` (the id, the type and the
    health in words: colour is never the only cue); a redundancy group (a ``depends_on`` item of
    several elements) is a compound node holding its members; edges go downstream, from an element
    to what depends on it. Each element shows at most ``fanout`` dependents, the rest as one
    "+N more" node; the whole graph at most ``limit`` elements.
    """
    topology = q.topology
    view = q.health()
    up = set(topology.ancestors(ne_id))
    down: list[str] = []
    more: dict[str, int] = {}  # element → dependents not drawn
    frontier = [ne_id]
    seen = {ne_id, *up}
    for _ in range(depth):
        nxt = []
        for n in frontier:
            fresh = [d for d in topology.dependents(n) if d not in seen]
            room = max(0, min(fanout, limit - len(up) - len(down) - 1))
            for d in fresh[:room]:
                seen.add(d)
                down.append(d)
                nxt.append(d)
            if len(fresh) > room:
                more[n] = len(fresh) - room
        frontier = nxt
    shown = [ne_id, *sorted(up), *down]
    members = set(shown)
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    groups: dict[tuple[str, ...], str] = {}
    parent_of: dict[str, str] = {}
    for n in shown:
        for item in topology.element(n).depends_on:
            if len(item) > 1 and all(m in members for m in item):
                gid = groups.setdefault(item, f"group:{'|'.join(item)}")
                for m in item:
                    parent_of.setdefault(m, gid)
    for item, gid in groups.items():
        nodes.append({"data": {"id": gid, "label": "any of " + ", ".join(item), "group": True}})
    for n in shown:
        el = topology.element(n)
        health = HEALTH_WORDS[view.health(n)]
        data: dict[str, Any] = {
            "id": n,
            "label": f"{n}\n{el.type} · {health.replace('_', ' ')}",
            "health": health,
            "focus": n == ne_id,
        }
        if n in parent_of:
            data["parent"] = parent_of[n]
        nodes.append({"data": data})
        for item in el.depends_on:
            for m in item:
                if m in members:
                    edges.append(
                        {"data": {"id": f"{m}->{n}", "source": m, "target": n, "redundant": len(item) > 1}}
                    )
    for n, count in more.items():
        mid = f"more:{n}"
        nodes.append({"data": {"id": mid, "label": f"+{count} more", "more": True}})
        edges.append({"data": {"id": f"{n}->{mid}", "source": n, "target": mid, "redundant": False}})
    roots = [
        n for n in shown if not any(m in members for item in topology.element(n).depends_on for m in item)
    ]
    return {
        "elements": {"nodes": nodes, "edges": edges},
        "focus": ne_id,
        "roots": roots,
        "left_out": sum(more.values()),
    }


# ------------------------------------------------------------------------------------- KQI charts


def kqi_series(q: CoreQuery, scope: str, history: QualityHistory, hours: int) -> dict[str, Any]:
    """One scope's charts (``ne:<id>/<service>``, ``path:<customer>/<service>``) over the last
    ``hours``, per metric: one point per minute (mean, min, max) from the history, then the minutes
    of the samples the windows hold beyond it; with the targets and limits of the KQIs that read
    that metric, for uPlot."""
    service = scope.rsplit("/", 1)[1] if "/" in scope else None
    kqis = q.settings.quality.kqis.for_service(service) if service else ()
    held = q.sample_series(scope)
    since = q.clock - hours * 3600
    charts = []
    for metric in sorted(set(held) | set(history.metrics(scope))):
        times, values = held.get(metric, ([], []))
        points = history.chart(scope, metric, times, values, since)
        if not points["t"]:
            continue
        step = max(1, math.ceil(len(points["t"]) / MAX_POINTS))
        charts.append(
            {
                "metric": metric,
                **{k: v[::step] for k, v in points.items()},
                "kqis": [
                    {
                        "name": k.name,
                        "objective": k.objective,
                        "target": k.target,
                        "limit": k.limit,
                        "window_s": k.window,
                    }
                    for k in kqis
                    if k.metric == metric
                ],
            }
        )
    return {
        "scope": scope,
        "hours": hours,
        "step_s": history.step,
        "charts": charts,
        "history": {
            "series": history.series_count,
            "max_series": history.max_series,
            "dropped_samples": history.dropped,
        },
    }
