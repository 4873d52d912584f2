"""Why did the engine do this? Explanations of an alarm or an incident, read from the core's query.

Theory of operation
-------------------
Everything here reads the core through its read-only query interface (``CoreQuery``,
``Pipeline.query``), never a pipeline part: nothing it calls changes the core's state, so it
can run on a replayed pipeline (``engine rules explain --replay``) or on the daemon's live one,
between two items of its core task (``GET /explain/...``), without a lock.

*Which rules matched and how.* The correlator's durable host only knows the correlate rules as
two-alias joins and the other forms as whole parts, so it cannot say whether one alarm satisfies a
correlate rule's root or symptom side, nor which condition failed. At explain time a **private**
``RuleHost`` is loaded with ``compiler.match_definitions(program)``: one single-alias rule per part
of every loaded rule and one per condition, compiled by the same builder as the correlator's rules.
The alarm's fact is built by the correlator's own fact builder (``Correlator.base_fact``), so regex
and service properties are filled exactly as on the hot path; it is asserted, retracted, and the
host is closed afterwards. The correlator's host never sees it.

*What was decided, and why not otherwise*, rule by rule, is each form's own answer
(``Form.explain``, ``engine.core.forms.base``): this module gathers what the engine holds about the
alarm (``Seen``: suppression, incident, what it explains, the matcher's parts) and asks the form of
each loaded rule, in rule order. It assembles the answers with the incident book's state
(suppression, incident, maintenance, priority overrides) and the alarm table. A correlate rule's
"why not" looks at other alarms in the rule's scope (``Correlator.scopes``: the sids the correlator
asserts them under), matched the same way (``Evidence.fired``).

Limits: the engine forgets a resolved incident and the explanations it held, and a discarded
transient leaves no trace but its clear; such cases are said as what can be inferred. An alarm
that re-surfaced after its incident resolved was correlated as of that moment, not as of its first
raise; the window checks here use its first raise.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from engine.core.alarms import ActiveAlarm
from engine.core.explain_match import Matcher
from engine.core.explain_text import (
    NotFound,
    alarm_not_found,
    alarm_record,
    alarm_why,
    describe_condition,
    incident_not_found,
    incident_why,
    render,
)
from engine.core.forms.base import Seen, Verdict
from engine.core.forms.synthetic import raised_by
from engine.core.incidents import Incident, IncidentRecord
from engine.core.merge_graph import Suppression
from engine.core.query import CoreQuery
from engine.model.timeutil import format_time
from engine.rules.compiler import CompiledRule, match_parts
from engine.rules.schema import Correlate, Group, Pair, Threshold

__all__ = [
    "NotFound",
    "PostMortems",
    "explain",
    "explain_alarm",
    "explain_incident",
    "render",
]


# ------------------------------------------------------------------------------------- public API


def explain(query: CoreQuery, ident: str) -> dict[str, Any]:
    """An incident (``inc-…``) or an alarm key."""
    if ident.startswith("inc-"):
        return explain_incident(query, ident)
    return explain_alarm(query, ident)


def explain_alarm(query: CoreQuery, key: str) -> dict[str, Any]:
    """Which rules an alarm matched and how, what the engine decided for it, and why not otherwise.

    Raises ``NotFound`` when the alarm table does not hold ``key``."""
    if query.alarm_state(key) is None:
        raise alarm_not_found(query, key)
    with _Context.open(query) as ctx:
        return ctx.alarm(key)


def explain_incident(query: CoreQuery, incident_id: str) -> dict[str, Any]:
    """An incident's current record, its root's explanation, each member with its reason, its
    grouping rules, priority (with overrides), maintenance and kind, and plain-English lines.

    Raises ``NotFound`` when no live incident has that id (the core forgets resolved ones)."""
    inc = query.incident_state(incident_id)
    if inc is None:
        raise incident_not_found(query, incident_id)
    with _Context.open(query) as ctx:
        return ctx.incident(inc)


class PostMortems:
    """The explanation of each incident as it resolves (cleared or merged), for post-mortems.

    The core forgets an incident once it resolves; the daemon sets an instance as the incident
    book's ``on_resolved`` hook, so each incident is explained at that moment, while the book still
    holds its members and their suppressions, and hands the result to ``keep(incident_id, time,
    explanation)`` (the daemon's store). One private matcher serves the pipeline's whole life
    (a durable host per explanation would leak the C engine's memory, ~200 KB each, measured);
    about 0.2 to 0.5 ms per incident on the 24V replays. Read-only: the core's decisions do not change.
    ``close()`` frees the matcher. A failure is counted and handed to ``on_error`` (the daemon
    logs it); it never reaches the core (see ``__call__``).
    """

    def __init__(
        self,
        query: CoreQuery,
        keep: Callable[[str, float, dict[str, Any]], None],
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self._query = query
        self._keep = keep
        self._on_error = on_error
        self._matcher: Matcher | None = None
        self.failures = 0

    def __call__(self, inc: Incident, record: IncidentRecord) -> None:
        try:
            out = self.explain(inc, record)
        except Exception as exc:  # explaining is a side show: it never stops the core
            self.failures += 1
            if self._on_error is not None:
                self._on_error(inc.id, exc)
            return
        self._keep(inc.id, self._query.clock, out)

    def explain(self, inc: Incident, resolved: IncidentRecord) -> dict[str, Any]:
        """``explain_incident``'s answer for ``inc`` as it resolves with ``resolved``."""
        record = resolved.to_wire()
        if self._matcher is None:
            self._matcher = self._query.new_matcher()
        self._matcher._fired.clear()  # alarms change between two resolutions
        out = _Context(self._query, self._matcher).incident(inc)
        i = out["incident"]
        i.update(phase="resolved", resolves_at=None, resolved_at=record.get("resolved_at"))
        i["resolution"] = record.get("resolution")
        if "merged_into" in record:
            i["merged_into"] = record["merged_into"]
        i["version"] = record.get("version", i["version"])
        out["record"] = dict(record)
        how = f"merged into {record['merged_into']}" if "merged_into" in record else "its root cleared"
        out["why"] = [line for line in out["why"] if not line.startswith(("clearing:", "pending:"))]
        out["why"].append(f"resolved at {record.get('resolved_at')}: {how} (explained as it resolved)")
        return out

    def close(self) -> None:
        matcher, self._matcher = self._matcher, None
        if matcher is not None:
            matcher.close()


# ---------------------------------------------------------------------------------------- context


class _Context:
    """One explanation's view of the core (its query): the matcher and a few lazily built indexes.
    It is the forms' ``Evidence``: what they may look up beyond the alarm they explain."""

    def __init__(self, query: CoreQuery, matcher: Matcher) -> None:
        self.q = query
        self.matcher = matcher
        self.topology = query.topology
        self.rules = query.rules()
        self._reasons: dict[str, dict[str, str]] = {}

    @classmethod
    @contextmanager
    def open(cls, query: CoreQuery) -> Iterator[_Context]:
        """A context on the pipeline's own matcher: one per pipeline for its whole life (a durable
        host per explanation would leak the C engine's memory, ~200 KB per request), its cache of
        fired actions emptied first, since alarms change between two explanations."""
        yield cls(query, query.matcher())

    # -- lookups -------------------------------------------------------------------------------
    def elements_with_alarms(self) -> Collection[str]:
        return self.q.elements_with_alarms()

    def alarms_on(self, ne_id: str) -> list[ActiveAlarm]:
        return self.q.alarm_states_on(ne_id)

    def suppression(self, key: str) -> Suppression | None:
        return self.q.suppression(key)

    def incident_of(self, key: str) -> Incident | None:
        return self.q.incident_state_of(key)

    def fired(self, alarm: ActiveAlarm) -> frozenset[str]:
        return self.matcher.fired(alarm)

    def top(self, key: str) -> str:
        seen = {key}
        while (sup := self.q.suppression(key)) is not None and sup.root not in seen:
            key = sup.root
            seen.add(key)
        return key

    def reason(self, inc: Incident, key: str) -> str | None:
        """The suppression reason exactly as the incident's record words it."""
        if inc.id not in self._reasons:
            rec = self.q.current_record(inc).to_wire()
            self._reasons[inc.id] = {s["alarm_id"]: s["reason"] for s in rec["suppressed"]}
        return self._reasons[inc.id].get(key)

    def explained_by(self, key: str) -> dict[str, list[str]]:
        """Alarms ``key`` explains directly, by rule."""
        inc = self.q.incident_state_of(key)
        out: dict[str, list[str]] = {}
        if inc is None:
            return out
        for m in sorted(inc.members):
            sup = self.q.suppression(m)
            if sup is not None and sup.root == key:
                out.setdefault(sup.rule, []).append(m)
        return out

    # -- alarm ---------------------------------------------------------------------------------
    def alarm(self, key: str) -> dict[str, Any]:
        a = self.q.alarm_state(key)
        assert a is not None
        el = self.topology.element(a.ne_id)
        fired = self.matcher.fired(a)
        sup = self.q.suppression(key)
        inc = self.q.incident_state_of(key)
        explains = self.explained_by(key)
        synthetic = _synthetic_rule(key, self.q)
        classified = self.q.classified(key)
        seen = Seen(a, fired, classified, sup, inc, explains, synthetic, self.q.clock, self)
        rules = [self.rule_entry(cr, seen) for cr in self.rules]
        decision = self.decision(seen)
        out: dict[str, Any] = {
            "kind": "alarm",
            "as_of": format_time(self.q.clock),
            "alarm": alarm_record(a, synthetic),
            "element": {"id": el.id, "type": el.type, "name": el.name, "site": el.site, "region": el.region},
            "rules": rules,
            "matched_rules": [r["rule"] for r in rules if r["matched"]],
            "decided_by": [r["rule"] for r in rules if r["decided"]],
            "decision": decision,
        }
        out["why"] = alarm_why(a, el, out)
        return out

    def decision(self, seen: Seen) -> dict[str, Any]:
        a, sup, inc, explains, fired = seen.alarm, seen.sup, seen.inc, seen.explains, seen.fired
        suppressed = None
        if sup is not None:
            suppressed = {
                "root": sup.root,
                "rule": sup.rule,
                "relation": sup.relation,
                "delay": sup.delay,
                "detail": sup.detail or None,
                "reason": self.reason(inc, a.key) if inc is not None else None,
            }
        incident = None
        overrides: list[dict[str, Any]] = []
        if inc is not None:
            incident = {
                "incident_id": inc.id,
                "phase": inc.phase,
                "kind": inc.kind,
                "root": inc.root,
                "role": "root" if inc.root == a.key else "member",
            }
            if inc.root == a.key and inc.priority is not None:
                overrides = list(inc.priority.breakdown.get("overrides", []))
        held = inc.maintenance if inc is not None else None
        covering = self.q.maintenance_covering(a.ne_id, self.q.clock)
        engine_parts = sorted(seen.classified)
        classify_parts = sorted(
            x for x in fired if "@" not in x and self._form_of(x) not in ("correlate", None)
        )
        return {
            "suppressed": suppressed,
            "incident": incident,
            "explains": dict(sorted(explains.items())),
            "inhibited": sup is not None and sup.relation == "inhibit",
            "storm": sup.root if sup is not None and sup.relation == "threshold" else None,
            "escalated": sup.root if sup is not None and sup.relation == "pair" else None,
            "grouped": sup.root if sup is not None and sup.relation == "group" else None,
            "maintenance": {
                "held_back_by": held,
                "until": format_time(inc.hold_until) if held and inc and inc.hold_until else None,
                "window_open_now": (
                    {"rule": covering[0], "until": format_time(covering[1])} if covering else None
                ),
            },
            "transient": self.transient(seen),
            "overrides": overrides,
            "engine_parts": engine_parts,
            "engine_parts_agree": engine_parts == classify_parts,
        }

    def _form_of(self, action: str) -> str | None:
        rule = self.q.rule(action.split("#", 1)[0])
        return rule.form if rule is not None else None

    def transient(self, seen: Seen) -> str | None:
        """What can be inferred about an alarm that left no incident behind (the forms' words)."""
        a = seen.alarm
        if seen.inc is not None or a.active or a.effect == "none" or a.cleared_time is None:
            return None
        return next((said for form in self.q.forms() if (said := form.transient(seen)) is not None), None)

    # -- one rule ------------------------------------------------------------------------------
    def rule_entry(self, cr: CompiledRule, seen: Seen) -> dict[str, Any]:
        q, a, fired = cr.qualified, seen.alarm, seen.fired
        parts = [
            {
                "part": part,
                "matched": f"{q}#{part}" in fired,
                "unmet": [
                    {
                        "field": field,
                        "condition": describe_condition(field, match[field]),
                        "value": self.value(a, field),
                    }
                    for field in sorted(match)
                    if f"{q}#{part}@{field}" not in fired
                ],
            }
            for part, match in match_parts(cr)
        ]
        matched: bool | None = any(p["matched"] for p in parts) if parts else None
        spec = cr.rule.spec
        raised_here = seen.synthetic == q
        form = self.q.form_of_rule(cr.form)
        verdict = (
            form.explain(cr, seen) if form is not None else Verdict(False, "no form of the core runs it")
        )
        decided, outcome = verdict.decided, verdict.outcome
        if verdict.matched is not None:
            matched = verdict.matched
        entry: dict[str, Any] = {
            "rule": q,
            "form": cr.form,
            "description": cr.rule.description.strip() or None,
            "source": cr.source,
            "parts": parts,
            "matched": True if raised_here else matched,
            "decided": decided,
            "outcome": outcome,
        }
        if isinstance(spec, Correlate):
            entry.update(relation=cr.relation, window=cr.window, lead=cr.lead)
        elif isinstance(spec, Group | Threshold | Pair):
            entry["window"] = cr.window
        return entry

    # -- words ---------------------------------------------------------------------------------
    def value(self, a: ActiveAlarm, field: str) -> Any:
        el = self.topology.element(a.ne_id)
        if field == "element_type":
            return el.type
        if field in ("site", "region"):
            return getattr(el, field)
        if field == "service_type":
            return sorted(self.topology.services_through(a.ne_id))
        return getattr(a, field)

    # -- incident ------------------------------------------------------------------------------
    def incident(self, inc: Incident) -> dict[str, Any]:
        clock = self.q.clock
        record = self.q.current_record(inc).to_wire()
        reasons = {s["alarm_id"]: s for s in record["suppressed"]}
        members = []
        for key in sorted(inc.members, key=lambda k: (k != inc.root, k)):
            a = self.q.alarm_state(key)
            sup = self.q.suppression(key)
            members.append(
                {
                    "alarm_id": key,
                    "ne_id": a.ne_id if a else None,
                    "probable_cause": a.probable_cause if a else None,
                    "severity": a.severity if a else None,
                    "state": "active" if a and a.active else ("cleared" if a else "forgotten"),
                    "role": "root" if key == inc.root else "symptom",
                    "root": sup.root if sup else None,
                    "rule": sup.rule if sup else None,
                    "relation": sup.relation if sup else None,
                    "delay": sup.delay if sup else None,
                    "detail": (sup.detail or None) if sup else None,
                    "reason": reasons[key]["reason"] if key in reasons else None,
                }
            )
        root = self.alarm(inc.root) if self.q.alarm_state(inc.root) is not None else None
        p = inc.priority
        settings = self.q.settings.incidents
        out: dict[str, Any] = {
            "kind": "incident",
            "as_of": format_time(clock),
            "incident": {
                "incident_id": inc.id,
                "phase": inc.phase,
                "kind": inc.kind,
                "root": inc.root,
                "created": format_time(inc.created),
                "opened_at": format_time(inc.opened_at) if inc.opened_at is not None else None,
                "clear_since": format_time(inc.clear_since) if inc.clear_since is not None else None,
                "opens_at": self._opens_at(inc),
                "resolves_at": (
                    format_time(inc.clear_since + settings.hold_down)
                    if inc.clear_since is not None and inc.phase == "clearing"
                    else None
                ),
                "version": inc.version,
                "reraised": inc.reraised,
                "acknowledged": inc.acknowledged.to_wire() if inc.acknowledged else None,
            },
            "record": record,
            "root": root,
            "members": members,
            "grouping_rules": sorted(inc.grouping_rules),
            "priority": (
                {"priority": p.priority, "score": p.score, "breakdown": dict(p.breakdown)} if p else None
            ),
            "overrides": list(p.breakdown.get("overrides", [])) if p else [],
            "maintenance": (
                {
                    "rule": inc.maintenance,
                    "until": format_time(inc.hold_until) if inc.hold_until is not None else None,
                }
                if inc.maintenance
                else None
            ),
        }
        out["why"] = incident_why(inc, out)
        return out

    def _opens_at(self, inc: Incident) -> str | None:
        if inc.phase != "pending":
            return None
        settle = inc.settle if inc.settle is not None else self.q.settings.incidents.settle
        due = inc.created + settle
        if inc.hold_until is not None:
            due = max(due, inc.hold_until)
        return format_time(due)


def _synthetic_rule(key: str, query: CoreQuery) -> str | None:
    """The loaded rule that raised an alarm (``rule:<ruleset>/<rule>:<scope>``), if one did."""
    q = raised_by(key)
    return q if q is not None and query.rule(q) is not None else None
