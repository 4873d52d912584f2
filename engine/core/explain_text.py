"""Explanations in words: the terminal renderer, conditions in words, an alarm's record, and the
error for an alarm or incident the pipeline does not hold (with suggestions)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.core.alarms import ActiveAlarm
from engine.core.forms.base import few
from engine.core.forms.synthetic import raised_by
from engine.core.priority import explain as explain_priority
from engine.model.timeutil import format_time
from engine.model.topology import Element
from engine.rules.schema import Condition

if TYPE_CHECKING:
    from engine.core.incidents import Incident
    from engine.core.query import CoreQuery

MAX_SUGGESTIONS = 5


class NotFound(LookupError):
    """No such alarm or incident in the pipeline's state; says what was searched and suggests ids."""

    def __init__(
        self, what: str, ident: str, *, searched: str, suggestions: Sequence[str], hint: str
    ) -> None:
        self.what = what
        self.ident = ident
        self.searched = searched
        self.suggestions = list(suggestions)
        self.hint = hint
        text = f"no {what} {ident!r} ({searched})"
        if self.suggestions:
            text += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        else:
            text += "."
        if hint:
            text += f" {hint}"
        super().__init__(text)

    def __str__(self) -> str:
        return str(self.args[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": str(self),
            "what": self.what,
            "id": self.ident,
            "searched": self.searched,
            "suggestions": self.suggestions,
        }


def alarm_not_found(query: CoreQuery, key: str) -> NotFound:
    known = {a.key for a in query.alarm_states()}
    return NotFound(
        "alarm",
        key,
        searched=f"searched {len(known)} alarm(s) held as of {format_time(query.clock)}: active ones and "
        "cleared ones within their retention",
        suggestions=_suggest(key, known),
        hint="An alarm key is ne_id:probable_cause[:specific_problem], or its alarm_id when it had one.",
    )


def incident_not_found(query: CoreQuery, incident_id: str) -> NotFound:
    known = {i.id for i in query.incident_states()}
    return NotFound(
        "incident",
        incident_id,
        searched=f"searched {len(known)} live incident(s) as of {format_time(query.clock)}",
        suggestions=_suggest(incident_id, known),
        hint="The core forgets an incident once it resolves (or merges); the daemon keeps its last "
        "record (GET /incidents/{id}) and its explanation as it resolved (store.keep_explanations); "
        "with --replay, explain an earlier moment (--at).",
    )


def _suggest(given: str, known: Iterable[str]) -> list[str]:
    """Ids starting with what was given; else those of the same element; else containing it; else typos."""
    pool = sorted(known)
    low = given.lower()
    out = [k for k in pool if k.lower().startswith(low)]
    if not out and ":" in given:  # the element is right, the rest is not
        out = [k for k in pool if k.lower().startswith(low.split(":", 1)[0] + ":")]
    if not out:
        out = [k for k in pool if low and low in k.lower()]
    if not out:  # a typo: the closest spellings
        out = difflib.get_close_matches(given, pool, n=MAX_SUGGESTIONS, cutoff=0.6)
    return out[:MAX_SUGGESTIONS]


def describe_condition(field: str, cond: Condition) -> str:
    """A condition in words: ``effect = outage``, ``severity at least major``."""
    said = []
    if cond.any_of:
        values = [str(v) for v in cond.any_of]
        said.append(f"= {values[0]}" if len(values) == 1 else "one of " + ", ".join(values))
    if cond.none_of:
        said.append("not " + ", ".join(str(v) for v in cond.none_of))
    if cond.at_least is not None:
        said.append(f"at least {cond.at_least}")
    if cond.at_most is not None:
        said.append(f"at most {cond.at_most}")
    if cond.regex is not None:
        said.append(f"matching /{cond.regex}/")
    return f"{field} " + " and ".join(said)


def alarm_record(a: ActiveAlarm, synthetic: str | None) -> dict[str, Any]:
    return {
        "alarm_id": a.key,
        "ne_id": a.ne_id,
        "severity": a.severity,
        "probable_cause": a.probable_cause,
        "event_type": a.event_type,
        "specific_problem": a.specific_problem,
        "text": a.text,
        "effect": a.effect,
        "active": a.active,
        "flapping": a.flapping,
        "count": a.count,
        "occurrence": a.occurrence,
        "first_seen": format_time(a.first_seen),
        "last_seen": format_time(a.last_seen),
        "cleared_time": format_time(a.cleared_time) if a.cleared_time is not None else None,
        "raised_by_rule": synthetic,
        "raised_by": raised_by(a.key),
        "threshold_info": dict(a.threshold_info) if a.threshold_info is not None else None,
    }


def alarm_why(a: ActiveAlarm, el: Element, ex: Mapping[str, Any]) -> list[str]:
    """An alarm's explanation in plain lines, from its explanation's fields."""
    where = ", ".join(
        x
        for x in (
            el.type,
            f"site {el.site}" if el.site else "",
            f"region {el.region}" if el.region else "",
        )
        if x
    )
    state = f"cleared {format_time(a.cleared_time)}" if not a.active and a.cleared_time else "active"
    lines = [
        f"{a.key}: {a.probable_cause} ({a.severity}, effect {a.effect}) on {a.ne_id} ({where}); raised "
        f"{format_time(a.first_seen)}, {state}"
    ]
    synthetic, raised_by = ex["alarm"]["raised_by_rule"], ex["alarm"]["raised_by"]
    if synthetic:
        lines.append(f"raised by rule {synthetic}" + (f": {a.text}" if a.text else ""))
    elif raised_by:
        lines.append(f"raised by the engine ({raised_by})" + (f": {a.text}" if a.text else ""))
    if a.flapping:
        lines.append(f"flapping: {a.count} raises in this occurrence; it stays one active alarm")
    d = ex["decision"]
    sup, inc = d["suppressed"], d["incident"]
    if sup is not None:
        detail = f" ({sup['detail']})" if sup["detail"] and not sup["reason"] else ""
        lines.append(f"suppressed: {sup['reason'] or 'explained by ' + sup['root']}{detail}")
    if inc is not None:
        if inc["role"] == "root":
            kind = "a group incident it anchors" if inc["kind"] == "group" else "no rule explains it"
            lines.append(f"root of incident {inc['incident_id']} ({inc['phase']}): {kind}")
        else:
            lines.append(f"member of incident {inc['incident_id']} ({inc['phase']}), root {inc['root']}")
    elif d["transient"]:
        lines.append(d["transient"])
    elif a.effect == "none":
        lines.append(
            "in no incident: its effect is none, so it opens none of its own, and no rule related it "
            "to another alarm"
        )
    elif not a.active:
        lines.append(
            "in no incident now: it is cleared, and the incident it was part of (if any) has "
            "resolved; resolved incidents are forgotten (explain an earlier moment with --at)"
        )
    else:
        lines.append("in no incident")
    for rule, keys in d["explains"].items():
        lines.append(f"explains {few(keys)} through {rule}")
    m = d["maintenance"]
    if m["held_back_by"]:
        lines.append(f"its incident is held back by maintenance {m['held_back_by']} until {m['until']}")
    elif m["window_open_now"]:
        w = m["window_open_now"]
        lines.append(f"its element is in maintenance window {w['rule']} now, until {w['until']}")
    for o in d["overrides"]:
        lines.append(f"priority override {o['rule']}: P{o['from']} → P{o['to']}")
    if not d["engine_parts_agree"]:
        lines.append(
            "note: the engine classified this alarm when it was last raised or changed as "
            f"{', '.join(d['engine_parts']) or 'matching no part'}; "
            "the rules as loaded match it differently"
        )
    matched = [r for r in ex["rules"] if r["matched"]]
    if not matched:
        lines.append("it matched no part of any loaded rule")
    for r in matched:
        if not r["decided"]:
            lines.append(f"why not {r['rule']}: {r['outcome']}")
    return lines


def incident_why(inc: Incident, ex: Mapping[str, Any]) -> list[str]:
    """An incident's explanation in plain lines, from its explanation's fields."""
    lines: list[str] = []
    root = ex["root"]
    if root is not None:
        lines.append(f"root {root['why'][0]}")
        if root["alarm"]["raised_by"]:
            lines.append(root["why"][1])
    else:
        lines.append(f"root {inc.root}: no longer in the alarm table (forgotten after its retention)")
    if inc.kind == "group":
        lines.append("a group incident: it resolves when none of its alarms is active")
    i = ex["incident"]
    if inc.phase == "pending":
        held = f", held until {format_time(inc.hold_until)}" if inc.hold_until is not None else ""
        lines.append(f"pending: gathering symptoms; opens at {i['opens_at']}{held}")
    elif inc.phase == "open":
        lines.append(f"open since {i['opened_at']}")
    elif inc.phase == "clearing":
        lines.append(
            f"clearing: the root cleared at {i['clear_since']}; resolves at {i['resolves_at']} unless "
            "it is raised again"
        )
    if inc.maintenance:
        m = ex["maintenance"]
        lines.append(f"held back by maintenance window {inc.maintenance} until {m['until']}")
    symptoms = [m for m in ex["members"] if m["role"] == "symptom"]
    by_rule: dict[str, int] = {}
    for m in symptoms:
        by_rule[m["rule"] or "?"] = by_rule.get(m["rule"] or "?", 0) + 1
    if symptoms:
        counts = ", ".join(f"{n} by {rule}" for rule, n in sorted(by_rule.items()))
        lines.append(f"{len(ex['members'])} alarm(s): the root and {len(symptoms)} suppressed ({counts})")
    else:
        lines.append("no other alarm was related to its root")
    if inc.priority is not None:
        lines.append(explain_priority(inc.priority))
    for o in ex["overrides"]:
        lines.append(f"priority override {o['rule']}: P{o['from']} → P{o['to']}")
    if inc.acknowledged:
        lines.append(f"acknowledged by {inc.acknowledged.by} at {format_time(inc.acknowledged.at)}")
    if inc.reraised:
        lines.append(f"the root was raised again {inc.reraised} time(s) while clearing; same incident")
    return lines


def render(explanation: Mapping[str, Any]) -> str:
    """An explanation (from ``explain_alarm`` or ``explain_incident``) as text for a terminal."""
    if explanation.get("kind") == "incident":
        return _render_incident(explanation)
    return _render_alarm(explanation)


def _render_alarm(ex: Mapping[str, Any], indent: str = "") -> str:
    a, el = ex["alarm"], ex["element"]
    out = [f"{indent}alarm {a['alarm_id']}  (as of {ex['as_of']})"]
    state = "active" if a["active"] else f"cleared {a['cleared_time']}"
    flap = ", flapping" if a["flapping"] else ""
    out.append(
        f"{indent}  {a['probable_cause']}, {a['severity']}, effect {a['effect']}, {state}{flap}; "
        f"raised {a['first_seen']}, {a['count']} raise(s)"
    )
    where = ", ".join(
        x
        for x in (
            el["type"],
            f"site {el['site']}" if el["site"] else "",
            f"region {el['region']}" if el["region"] else "",
        )
        if x
    )
    out.append(f"{indent}  on {el['id']} ({where})")
    out.append("")
    out.append(f"{indent}why")
    out.extend(f"{indent}  - {line}" for line in ex["why"])
    out.append("")
    out.append(f"{indent}rules, in order")
    for r in ex["rules"]:
        mark = "decided" if r["decided"] else ("matched" if r["matched"] else "-")
        extra = f" {r['relation']}" if r.get("relation") else ""
        out.append(f"{indent}  [{mark}] {r['rule']} ({r['form']}{extra})")
        for p in r["parts"]:
            if p["matched"]:
                out.append(f"{indent}      {p['part']}: matched")
            else:
                unmet = "; ".join(f"wants {u['condition']}, is {_show(u['value'])}" for u in p["unmet"])
                out.append(f"{indent}      {p['part']}: not matched ({unmet or 'see the rule'})")
        out.append(f"{indent}      → {r['outcome']}")
    return "\n".join(out) + "\n"


def _render_incident(ex: Mapping[str, Any]) -> str:
    i = ex["incident"]
    out = [f"incident {i['incident_id']}  (as of {ex['as_of']})"]
    rec = ex["record"]
    out.append(
        f"  {i['phase']}, {i['kind']} incident, P{rec['priority']} score {rec['score']}, "
        f"state {rec['state']}; root {i['root']}"
    )
    out.append("")
    out.append("why")
    out.extend(f"  - {line}" for line in ex["why"])
    out.append("")
    if ex["grouping_rules"]:
        out.append("grouping rules: " + ", ".join(ex["grouping_rules"]))
    if ex["priority"] is not None:
        out.append("priority breakdown")
        for name, part in ex["priority"]["breakdown"].items():
            if name == "overrides":
                for o in part:
                    out.append(f"  override {o['rule']}: P{o['from']} → P{o['to']}")
            else:
                fields = ", ".join(f"{k} {v}" for k, v in part.items())
                out.append(f"  {name}: {fields}")
    out.append("")
    out.append(f"members ({len(ex['members'])})")
    for m in ex["members"]:
        if m["role"] == "root":
            out.append(f"  {m['alarm_id']}  root, {m['state']}")
        else:
            out.append(f"  {m['alarm_id']}  {m['state']}: {m['reason'] or m['detail'] or m['rule']}")
    if ex["root"] is not None:
        out.append("")
        out.append("root alarm")
        out.append(_render_alarm(ex["root"], indent="  ").rstrip("\n"))
    return "\n".join(out) + "\n"


def _show(value: Any) -> str:
    if value is None:
        return "absent"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
