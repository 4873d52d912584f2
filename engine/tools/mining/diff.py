"""``engine rules diff``: replay a history under two sets of rulesets and say what changes for an
operator (incidents opened, merged, split, roots changed, compression, pages).

Both replays run the same events through fresh cores (the same topology and config, each side its
own rulesets). An incident is its final record (``resolved``, or the last one if still open): its
root, its members (root and suppressed alarm keys), its time span and its highest priority.

* **merged**: a new incident whose members were spread over two or more old incidents;
* **split**: an old incident whose members are spread over two or more new incidents;
* **root changed**: an old and a new incident with the same members and another root.

Members are matched by alarm key within overlapping time spans, give or take ten minutes (an alarm
key recurs over a long history): each member of a new incident goes to the old incident holding the
same key that started closest to it. An incident open for a long time around a recurring alarm can
thus count as split when the new rules cut that time into several incidents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from engine.core.pipeline import Pipeline
from engine.core.settings import CoreSettings
from engine.model.timeutil import parse_time
from engine.model.topology import Topology
from engine.rules.schema import Ruleset
from engine.tools.replay import Replayer, event_time

PAGES = (1, 2)  # priorities that page someone
SLACK = 600.0  # seconds: an incident's records trail its alarms (settle, windows, hold-down)


@dataclass(frozen=True)
class Incident:
    incident_id: str
    root: str
    members: frozenset[str]
    start: float
    end: float
    priority: int | None

    def overlaps(self, other: Incident) -> bool:
        """Their record times overlap, give or take ``SLACK`` (records come after the alarms)."""
        return self.start - SLACK <= other.end and other.start - SLACK <= self.end


@dataclass(frozen=True)
class Side:
    incidents: tuple[Incident, ...]
    raises: int
    summary: Mapping[str, Any]

    @property
    def compression(self) -> float:
        return 1 - len(self.incidents) / self.raises if self.raises else 0.0

    def pages(self) -> dict[str, int]:
        return {f"P{p}": sum(1 for i in self.incidents if i.priority == p) for p in PAGES}


def incidents_of(records: Iterable[Mapping[str, Any]]) -> tuple[Incident, ...]:
    """One ``Incident`` per incident of the stream (an id reused after it resolved is another one)."""
    open_: dict[str, list[Mapping[str, Any]]] = {}
    done: list[list[Mapping[str, Any]]] = []
    for rec in records:
        iid = rec["incident_id"]
        open_.setdefault(iid, []).append(rec)
        if rec["event"] == "resolved":
            done.append(open_.pop(iid))
    done.extend(open_.values())
    out: list[Incident] = []
    for recs in done:
        last = recs[-1]
        if last.get("resolution") == "merged":
            continue  # its members are in the incident that absorbed it
        root = last["root_cause"]["alarm_id"]
        members = frozenset([root, *(s["alarm_id"] for s in last.get("suppressed") or ())])
        times = [parse_time(r["time"]) for r in recs]
        prios = [r["priority"] for r in recs if r.get("priority") is not None]
        out.append(
            Incident(
                last["incident_id"], root, members, min(times), max(times), min(prios) if prios else None
            )
        )
    return tuple(out)


def replay_side(
    topology: Topology, rulesets: list[Ruleset], settings: CoreSettings, lines: Sequence[bytes]
) -> Side:
    pipeline = Pipeline(topology, rulesets, settings)
    records: list[dict[str, Any]] = []
    try:
        Replayer(pipeline, emit=records.append).run(lines)
        summary = pipeline.summary()
    finally:
        pipeline.close()
    return Side(incidents_of(records), int(summary["raise_messages"]), summary)


def select_lines(lines: Iterable[bytes], since: float | None) -> list[bytes]:
    """The lines at or after ``since`` (all when None); lines without a time are kept."""
    out: list[bytes] = []
    for line in lines:
        if not line.strip():
            continue
        if since is not None:
            try:
                t = event_time(orjson.loads(line))
            except orjson.JSONDecodeError:
                t = None
            if t is not None and t < since:
                continue
        out.append(line)
    return out


def _groups(a: Sequence[Incident], b: Sequence[Incident]) -> dict[int, set[int]]:
    """For each incident of ``a`` (by index), the incidents of ``b`` its members went to.

    Each member goes to the incident of ``b`` holding the same alarm key, overlapping in time, that
    started closest to the incident of ``a`` (an alarm key recurs over a history; this picks the
    occurrence that belongs to this incident).
    """
    by_key: dict[str, list[int]] = {}
    for j, inc in enumerate(b):
        for key in inc.members:
            by_key.setdefault(key, []).append(j)
    out: dict[int, set[int]] = {}
    for i, inc in enumerate(a):
        hit: set[int] = set()
        for key in inc.members:
            near = [j for j in by_key.get(key, ()) if inc.overlaps(b[j])]
            if near:
                hit.add(min(near, key=lambda j: (abs(b[j].start - inc.start), j)))
        out[i] = hit
    return out


def diff(old: Side, new: Side, *, examples: int = 5) -> dict[str, Any]:
    """What changed from ``old`` to ``new``, as a JSON-ready report."""
    o, n = old.incidents, new.incidents
    new_to_old = _groups(n, o)
    old_to_new: dict[int, set[int]] = {i: set() for i in range(len(o))}
    for j, olds in new_to_old.items():  # one assignment of members, read both ways
        for i in olds:
            old_to_new[i].add(j)
    merged = [j for j, olds in new_to_old.items() if len(olds) > 1]
    split = [i for i, news in old_to_new.items() if len(news) > 1]
    same = [
        (i, j)
        for i, news in old_to_new.items()
        if len(news) == 1 and new_to_old[j := next(iter(news))] == {i} and o[i].members == n[j].members
    ]
    roots = [(i, j) for i, j in same if o[i].root != n[j].root]
    absorbed_old = {i for j in merged for i in new_to_old[j]}

    def show(inc: Incident) -> dict[str, Any]:
        return {
            "incident_id": inc.incident_id,
            "root": inc.root,
            "alarms": len(inc.members),
            "priority": inc.priority,
        }

    return {
        "old": {"incidents": len(o), "compression": round(old.compression, 4), "pages": old.pages()},
        "new": {"incidents": len(n), "compression": round(new.compression, 4), "pages": new.pages()},
        "alarms": old.raises,
        "merged": len(merged),
        "split": len(split),
        "roots_changed": len(roots),
        "unchanged": len(same) - len(roots),
        "absorbed": len(absorbed_old),
        "otherwise_changed": len(o) - len(set(split) | {i for i, _ in same} | absorbed_old),
        "examples": {
            "merged": [
                {
                    "new": show(n[j]),
                    "old_incidents": len(new_to_old[j]),
                    "old": [show(o[i]) for i in sorted(new_to_old[j])][:examples],
                }
                for j in sorted(merged, key=lambda j: (-len(new_to_old[j]), n[j].start))[:examples]
            ],
            "split": [
                {
                    "old": show(o[i]),
                    "new_incidents": len(old_to_new[i]),
                    "new": [show(n[j]) for j in sorted(old_to_new[i])][:examples],
                }
                for i in sorted(split, key=lambda i: (-len(old_to_new[i]), o[i].start))[:examples]
            ],
            "roots_changed": [{"old": show(o[i]), "new": show(n[j])} for i, j in roots[:examples]],
        },
    }


def _more(total: int, shown: Sequence[Any]) -> str:
    return ", …" if total > len(shown) else ""


def render(report: Mapping[str, Any]) -> str:
    """The report as text for an operator."""
    o, n = report["old"], report["new"]
    lines = [
        f"alarms replayed: {report['alarms']:,}",
        f"incidents:   old {o['incidents']:,}   new {n['incidents']:,}",
        f"compression: old {o['compression']:.3f}   new {n['compression']:.3f}   (1 - incidents / alarms)",
        f"pages:       old P1 {o['pages']['P1']:,} P2 {o['pages']['P2']:,}   "
        f"new P1 {n['pages']['P1']:,} P2 {n['pages']['P2']:,}",
        f"merged (several old incidents are one new): {report['merged']:,} "
        f"(absorbing {report['absorbed']:,} old incidents)",
        f"split (one old incident is several new):    {report['split']:,}",
        f"same alarms, another root:                  {report['roots_changed']:,}",
        f"unchanged:                                  {report['unchanged']:,}",
        f"other old incidents changed (alarms added or taken away): {report['otherwise_changed']:,}",
    ]
    ex = report["examples"]
    for item in ex["merged"]:
        olds = ", ".join(f"{x['root']} ({x['alarms']})" for x in item["old"])
        lines.append(
            f"  merged: {item['new']['incident_id']} root {item['new']['root']} <- "
            f"{item['old_incidents']} old incidents: {olds}{_more(item['old_incidents'], item['old'])}"
        )
    for item in ex["split"]:
        news = ", ".join(f"{x['root']} ({x['alarms']})" for x in item["new"])
        lines.append(
            f"  split: {item['old']['incident_id']} root {item['old']['root']} -> "
            f"{item['new_incidents']} new incidents: {news}{_more(item['new_incidents'], item['new'])}"
        )
    for item in ex["roots_changed"]:
        lines.append(
            f"  root changed: {item['old']['root']} -> {item['new']['root']} ({item['new']['incident_id']})"
        )
    return "\n".join(lines) + "\n"
