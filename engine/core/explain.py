"""Why did the engine do this? Explanations of an alarm or an incident, read from a pipeline.

Theory of operation
-------------------
Everything here is read-only over a ``Pipeline``: nothing it calls changes the core's state, so it
can run on a replayed pipeline (``engine rules explain --replay``) or on the daemon's live one,
between two items of its core task (``GET /explain/...``), without a lock.

*Which rules matched and how.* The correlator's durable host only knows the correlate rules as
two-alias joins and the other forms as whole parts, so it cannot say whether one alarm satisfies a
correlate rule's root or symptom side, nor which condition failed. At explain time a **private**
``RuleHost`` is loaded with ``compiler.match_definitions(program)``: one single-alias rule per part
of every loaded rule and one per condition, compiled by the same builder as the correlator's rules.
The alarm's fact is built by the correlator's own fact builder (``Correlator._base_fact``, a private
method called here on purpose, so regex and service properties are filled exactly as on the hot
path), asserted, retracted, and the host is closed afterwards. The correlator's host never sees it.

*What was decided.* Read from the incident book (suppression, incident, maintenance, priority
overrides) and the alarm table. *Why not* is inferred for every rule whose parts matched but which
did not decide: for a correlate rule, other alarms in the rule's scope (the same sids the correlator
asserts them under, from ``Correlator._scopes``, also private) are matched the same way and their
event times compared with the rule's window.

Limits: the engine forgets a resolved incident and the explanations it held, and a discarded
transient leaves no trace but its clear; such cases are said as what can be inferred. An alarm
that re-surfaced after its incident resolved was correlated as of that moment, not as of its first
raise; the window checks here use its first raise.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from engine.core.alarms import ActiveAlarm
from engine.core.forms.keys import describe, key_of
from engine.core.forms.synthetic import raised_by
from engine.core.incidents import Incident, IncidentRecord, Suppression
from engine.core.pipeline import Pipeline
from engine.core.priority import explain as explain_priority
from engine.model.timeutil import format_time
from engine.model.topology import Topology
from engine.rules.compiler import CompiledRule, match_definitions, match_parts
from engine.rules.host import RuleHost
from engine.rules.schema import (
    Condition,
    Correlate,
    Group,
    Inhibit,
    Maintenance,
    Pair,
    PriorityOverride,
    Threshold,
)

__all__ = [
    "NotFound",
    "PostMortems",
    "explain",
    "explain_alarm",
    "explain_incident",
    "render",
]


MAX_CANDIDATES = 5000  # other alarms examined per correlate rule for "why not" (the nearest in time first)
MAX_LISTED = 5  # alarm keys named in one sentence before "… and N more"
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


# ------------------------------------------------------------------------------------- public API


def explain(pipeline: Pipeline, ident: str) -> dict[str, Any]:
    """An incident (``inc-…``) or an alarm key."""
    if ident.startswith("inc-"):
        return explain_incident(pipeline, ident)
    return explain_alarm(pipeline, ident)


def explain_alarm(pipeline: Pipeline, key: str) -> dict[str, Any]:
    """Which rules an alarm matched and how, what the engine decided for it, and why not otherwise.

    Raises ``NotFound`` when the alarm table does not hold ``key``."""
    if pipeline.alarms.get(key) is None:
        raise _alarm_not_found(pipeline, key)
    with _Context.open(pipeline) as ctx:
        return ctx.alarm(key)


def explain_incident(pipeline: Pipeline, incident_id: str) -> dict[str, Any]:
    """An incident's current record, its root's explanation, each member with its reason, its
    grouping rules, priority (with overrides), maintenance and kind, and plain-English lines.

    Raises ``NotFound`` when no live incident has that id (the core forgets resolved ones)."""
    inc = next((i for i in pipeline.incidents.incidents() if i.id == incident_id), None)
    if inc is None:
        raise _incident_not_found(pipeline, incident_id)
    with _Context.open(pipeline) as ctx:
        return ctx.incident(inc)


class PostMortems:
    """The explanation of each incident as it resolves (cleared or merged), for post-mortems.

    The core forgets an incident once it resolves; the daemon sets an instance as the incident
    book's ``on_resolved`` hook, so each incident is explained at that moment, while the book still
    holds its members and their suppressions, and hands the result to ``keep(incident_id, time,
    explanation)`` (the daemon's store). One private matcher serves the pipeline's whole life
    (a durable host per explanation would leak the C engine's memory, ~200 KB each, measured);
    about 1 to 3 ms per incident of 50 alarms. Read-only: the core's decisions do not change.
    ``close()`` frees the matcher. A failure is counted and handed to ``on_error`` (the daemon
    logs it); it never reaches the core (see ``__call__``).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        keep: Callable[[str, float, dict[str, Any]], None],
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._keep = keep
        self._on_error = on_error
        self._matcher: _Matcher | None = None
        self.failures = 0

    def __call__(self, inc: Incident, record: IncidentRecord) -> None:
        try:
            out = self.explain(inc, record)
        except Exception as exc:  # explaining is a side show: it never stops the core
            self.failures += 1
            if self._on_error is not None:
                self._on_error(inc.id, exc)
            return
        self._keep(inc.id, self._pipeline.clock, out)

    def explain(self, inc: Incident, resolved: IncidentRecord) -> dict[str, Any]:
        """``explain_incident``'s answer for ``inc`` as it resolves with ``resolved``."""
        record = resolved.to_wire()
        if self._matcher is None:
            self._matcher = _Matcher(self._pipeline)
        self._matcher._fired.clear()  # alarms change between two resolutions
        out = _Context(self._pipeline, self._matcher).incident(inc)
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


# ---------------------------------------------------------------------------------------- matcher


class _Matcher:
    """A private durable host holding ``match_definitions`` of the pipeline's program."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._host = RuleHost()
        try:
            definitions = match_definitions(pipeline.correlator.program)
            for name, definition in definitions.items():
                self._host.load(name, definition)
        except BaseException:
            self._host.close()
            raise
        self._names = list(definitions)
        self._fired: dict[str, frozenset[str]] = {}

    def fired(self, alarm: ActiveAlarm) -> frozenset[str]:
        """Actions fired: ``rule#part`` (the whole part holds) and ``rule#part@field`` (one condition)."""
        cached = self._fired.get(alarm.key)
        if cached is not None:
            return cached
        # The correlator's own fact builder (private on purpose): identical properties, rx<n> included.
        base = self._pipeline.correlator._base_fact(alarm, alarm.first_seen)
        fact = {**base, "sid": "explain", "id": alarm.occurrence_id, "role": "x"}
        out: set[str] = set()
        for name in self._names:
            out.update(m.action for m in self._host.assert_fact(name, fact))
            self._host.retract_fact(name, fact)
        result = frozenset(out)
        self._fired[alarm.key] = result
        return result

    def close(self) -> None:
        self._host.close()


# ---------------------------------------------------------------------------------------- context


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the engine holds about the alarm being explained."""

    alarm: ActiveAlarm
    fired: frozenset[str]  # match actions (``rule#part``, ``rule#part@field``)
    sup: Suppression | None
    inc: Incident | None
    explains: Mapping[str, list[str]]  # rule -> alarms it explains directly
    synthetic: str | None  # the loaded rule that raised it


class _Context:
    """One explanation's view of the pipeline: the matcher and a few lazily built indexes."""

    def __init__(self, pipeline: Pipeline, matcher: _Matcher) -> None:
        self.p = pipeline
        self.matcher = matcher
        self.topology = pipeline.topology
        self.book = pipeline.incidents
        self.rules = sorted(pipeline.correlator.program.rules.values(), key=lambda r: r.order)
        self._by_element: dict[str, list[ActiveAlarm]] | None = None
        self._sids: dict[tuple[str, str, str], frozenset[str]] = {}
        self._reasons: dict[str, dict[str, str]] = {}

    @classmethod
    @contextmanager
    def open(cls, pipeline: Pipeline) -> Iterator[_Context]:
        matcher = _Matcher(pipeline)
        try:
            yield cls(pipeline, matcher)
        finally:
            matcher.close()

    # -- lookups -------------------------------------------------------------------------------
    def by_element(self) -> dict[str, list[ActiveAlarm]]:
        """Every alarm the table holds (active, and cleared ones still retained), by element."""
        if self._by_element is None:
            self._by_element = {}
            for d in self.p.alarms.dump()["alarms"]:
                a = self.p.alarms.get(d["key"])
                if a is not None:
                    self._by_element.setdefault(a.ne_id, []).append(a)
        return self._by_element

    def sids(self, relation: str, ne_id: str, role: str) -> frozenset[str]:
        """The correlation scopes an alarm on ``ne_id`` is asserted under in ``role`` (the correlator's
        own scope function, private on purpose, so "in scope" means exactly what durable joins)."""
        k = (relation, ne_id, role)
        hit = self._sids.get(k)
        if hit is None:
            scopes = self.p.correlator._scopes(relation, ne_id)
            hit = self._sids[k] = frozenset(sid for sid, r in scopes if r == role)
        return hit

    def top(self, key: str) -> str:
        seen = {key}
        while (sup := self.book.suppression(key)) is not None and sup.root not in seen:
            key = sup.root
            seen.add(key)
        return key

    def reason(self, inc: Incident, key: str) -> str | None:
        """The suppression reason exactly as the incident's record words it."""
        if inc.id not in self._reasons:
            rec = self.book.record(inc, "current", self.p.clock).to_wire()
            self._reasons[inc.id] = {s["alarm_id"]: s["reason"] for s in rec["suppressed"]}
        return self._reasons[inc.id].get(key)

    def explained_by(self, key: str) -> dict[str, list[str]]:
        """Alarms ``key`` explains directly, by rule."""
        inc = self.book.incident_of(key)
        out: dict[str, list[str]] = {}
        if inc is None:
            return out
        for m in sorted(inc.members):
            sup = self.book.suppression(m)
            if sup is not None and sup.root == key:
                out.setdefault(sup.rule, []).append(m)
        return out

    # -- alarm ---------------------------------------------------------------------------------
    def alarm(self, key: str) -> dict[str, Any]:
        a = self.p.alarms.get(key)
        assert a is not None
        el = self.topology.element(a.ne_id)
        fired = self.matcher.fired(a)
        sup = self.book.suppression(key)
        inc = self.book.incident_of(key)
        explains = self.explained_by(key)
        synthetic = _synthetic_rule(key, self.p.correlator.program.rules)
        seen = _Seen(a, fired, sup, inc, explains, synthetic)
        rules = [self.rule_entry(cr, seen) for cr in self.rules]
        decision = self.decision(seen)
        out: dict[str, Any] = {
            "kind": "alarm",
            "as_of": format_time(self.p.clock),
            "alarm": _alarm_record(a, synthetic),
            "element": {"id": el.id, "type": el.type, "name": el.name, "site": el.site, "region": el.region},
            "rules": rules,
            "matched_rules": [r["rule"] for r in rules if r["matched"]],
            "decided_by": [r["rule"] for r in rules if r["decided"]],
            "decision": decision,
        }
        out["why"] = self.alarm_why(a, el.type, out)
        return out

    def decision(self, seen: _Seen) -> dict[str, Any]:
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
        covering = self.p.calendar.covering(a.ne_id, self.p.clock) if self.p.calendar else None
        engine_parts = sorted(self.p.correlator.parts(a.key))
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
        rule = self.p.correlator.program.rules.get(action.split("#", 1)[0])
        return rule.form if rule is not None else None

    def transient(self, seen: _Seen) -> str | None:
        """What can be inferred about an alarm that left no incident behind."""
        a, inc, fired = seen.alarm, seen.inc, seen.fired
        if inc is not None or a.active or a.effect == "none" or a.cleared_time is None:
            return None
        for cr in self.rules:
            spec = cr.rule.spec
            if (
                isinstance(spec, Pair)
                and spec.discards
                and spec.second == "clear"
                and f"{cr.qualified}#first" in fired
                and a.cleared_time - a.first_seen <= spec.window
            ):
                return (
                    f"dropped as a transient by {cr.qualified}: it cleared "
                    f"{a.cleared_time - a.first_seen:g} s after it was raised, within the pair's "
                    f"{spec.window:g} s window"
                )
        covering = self.p.calendar.covering(a.ne_id, a.cleared_time) if self.p.calendar else None
        if covering is not None:
            return (
                f"raised and cleared inside maintenance window {covering[0]}: its incident was dropped "
                "without a notification"
            )
        return None

    # -- one rule ------------------------------------------------------------------------------
    def rule_entry(self, cr: CompiledRule, seen: _Seen) -> dict[str, Any]:
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
        if isinstance(spec, Correlate):
            decided, outcome = self.correlate(cr, seen)
        elif isinstance(spec, Group):
            decided, outcome = self.group(cr, spec, seen)
        elif isinstance(spec, Inhibit):
            decided, outcome = self.inhibit(cr, spec, seen)
        elif isinstance(spec, Threshold):
            decided, outcome = self.threshold(cr, spec, seen)
        elif isinstance(spec, Pair):
            decided, outcome = self.pair(cr, spec, seen)
        elif isinstance(spec, PriorityOverride):
            decided, outcome = self.priority(cr, spec, seen)
        elif isinstance(spec, Maintenance):
            decided, outcome, matched = self.maintenance(cr, spec, a, seen.inc)
        elif raised_here:  # kpi_threshold
            decided, outcome = True, f"raised by this rule: {a.text or ''}".rstrip(": ")
        else:
            decided, outcome = False, "evaluates KPI samples, not alarms"
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

    def correlate(self, cr: CompiledRule, seen: _Seen) -> tuple[bool, str]:
        a, fired, sup, explains = seen.alarm, seen.fired, seen.sup, seen.explains
        q = cr.qualified
        root_m, sym_m = f"{q}#root" in fired, f"{q}#symptom" in fired
        decided = False
        said: list[str] = []
        if sym_m:
            if sup is not None and sup.rule == q:
                decided = True
                said.append(
                    f"symptom side matched: explained by {sup.root} ({sup.relation}, "
                    f"{sup.delay:+.1f} s from the root)"
                )
            else:
                said.append("symptom side matched, but " + self.no_root(cr, a, sup))
        if root_m:
            mine = explains.get(q, [])
            if mine:
                decided = True
                said.append(f"root side matched: explains {_few(mine)} through this rule")
            else:
                said.append("root side matched, but " + self.no_symptom(cr, a))
        if not (root_m or sym_m):
            said.append("neither side matched")
        return decided, "; ".join(said)

    def _candidates(self, cr: CompiledRule, a: ActiveAlarm, *, a_is: str) -> list[ActiveAlarm]:
        """Other alarms in the rule's scope with ``a`` (as root or symptom) matching the other side,
        nearest in time first."""
        q, other = cr.qualified, ("symptom" if a_is == "root" else "root")
        mine = self.sids(cr.relation, a.ne_id, "root" if a_is == "root" else "sym")
        theirs = "sym" if a_is == "root" else "root"
        out: list[ActiveAlarm] = []
        for ne, alarms in self.by_element().items():  # one scope test per element, not per alarm
            if mine & self.sids(cr.relation, ne, theirs):
                out.extend(x for x in alarms if x.key != a.key)
        out.sort(key=lambda x: (abs(x.first_seen - a.first_seen), x.key))
        return [x for x in out[:MAX_CANDIDATES] if f"{q}#{other}" in self.matcher.fired(x)]

    def no_root(self, cr: CompiledRule, a: ActiveAlarm, sup: Suppression | None) -> str:
        """Why a symptom-side match was not explained through this rule (``sup``: by another one)."""
        roots = self._candidates(cr, a, a_is="symptom")
        where = _scope_phrase(cr.relation, a, self.topology, a_is="symptom")
        if not roots:
            return f"no root within its window: no alarm {where} matches the root side"
        inside = [r for r in roots if r.first_seen - cr.lead <= a.first_seen <= r.first_seen + cr.window]
        if not inside:
            r = roots[0]
            return (
                f"no root within its window: {r.key} matches the root side {where} but {a.key} was raised "
                f"{a.first_seen - r.first_seen:+.1f} s from it (the window is -{cr.lead:g} s … "
                f"+{cr.window:g} s from the root)"
            )
        r = min(inside, key=lambda x: (x.first_seen, x.key))
        if sup is not None:
            return (
                f"{r.key} is a root in scope and within the window, but {a.key} was already explained by "
                f"{sup.root} through {sup.rule} (an alarm keeps its first explanation)"
            )
        if self.top(r.key) == a.key:
            return (
                f"{r.key} would be its root, but {a.key} already explains {r.key} (directly or through a "
                "chain): no cycles"
            )
        if not a.active and self.book.incident_of(a.key) is None:
            return (
                f"{r.key} is a root in scope and within the window, yet no explanation is held now: the "
                "incident that held it has resolved (resolved incidents and their explanations are "
                "forgotten); explain an earlier moment (--at)"
            )
        if self.book.incident_of(r.key) is None and not r.active:
            return (
                f"{r.key} is a root in scope and within the window, but it is cleared and its incident "
                "has resolved: a resolved incident explains nothing more"
            )
        return (
            f"{r.key} is a root in scope and within the window, yet the engine did not pair them: the "
            "root's facts had expired or were retracted, or this alarm was correlated again later (as "
            "of that moment, after an incident resolved)"
        )

    def no_symptom(self, cr: CompiledRule, a: ActiveAlarm) -> str:
        syms = self._candidates(cr, a, a_is="root")
        where = _scope_phrase(cr.relation, a, self.topology, a_is="root")
        inside = [s for s in syms if a.first_seen - cr.lead <= s.first_seen <= a.first_seen + cr.window]
        if not inside:
            return (
                f"no alarm {where} matches the symptom side within its window (-{cr.lead:g} s … "
                f"+{cr.window:g} s): it explains nothing through this rule"
            )
        said = []
        other = [(s, sup) for s in inside if (sup := self.book.suppression(s.key)) is not None]
        if other:
            listed = ", ".join(f"{s.key} by {sup.root} ({sup.rule})" for s, sup in other[:MAX_LISTED])
            more = f" and {len(other) - MAX_LISTED} more" if len(other) > MAX_LISTED else ""
            said.append(
                f"{len(other)} alarm(s) {where} within the window were already explained otherwise: "
                f"{listed}{more}"
            )
        free = [s.key for s in inside if self.book.suppression(s.key) is None]
        if free:
            said.append(
                f"{_few(free)} {where} within the window are not explained by it (they may be the "
                "root of its own chain, or the root's facts had gone)"
            )
        return "; ".join(said)

    def group(self, cr: CompiledRule, spec: Group, seen: _Seen) -> tuple[bool, str]:
        a, fired, sup, inc, explains = seen.alarm, seen.fired, seen.sup, seen.inc, seen.explains
        q = cr.qualified
        if f"{q}#match" not in fired:
            return False, "did not match"
        kd = describe(spec.by, key_of(a, spec.by, self.topology))
        if sup is not None and sup.rule == q:
            return True, f"matched: joined the group anchored by {sup.root} ({sup.detail or kd})"
        if inc is not None and inc.root == a.key and inc.kind == "group":
            joined = explains.get(q, [])
            more = f"; {_few(joined)} joined it" if joined else "; nothing joined it"
            return True, f"matched: anchors a group ({kd}), a group incident{more}"
        if sup is not None:
            return False, (
                f"matched ({kd}), but it was already explained by {sup.root} through {sup.rule} "
                "(an alarm keeps its first explanation)"
            )
        return False, (
            f"matched ({kd}), but it neither joined nor anchors a group now: the group's window "
            f"({cr.window:g} s) had passed, or its incident was already notified or part of a larger one"
        )

    def inhibit(self, cr: CompiledRule, spec: Inhibit, seen: _Seen) -> tuple[bool, str]:
        a, fired, sup, explains = seen.alarm, seen.fired, seen.sup, seen.explains
        q = cr.qualified
        src, tgt = f"{q}#source" in fired, f"{q}#target" in fired
        kd = describe(spec.equal, key_of(a, spec.equal, self.topology))
        decided = False
        said = []
        if tgt:
            if sup is not None and sup.rule == q:
                decided = True
                said.append(f"target side matched: inhibited by {sup.root} while it is active ({kd} equal)")
            elif sup is not None:
                said.append(
                    f"target side matched, but it was already explained by {sup.root} through {sup.rule}"
                )
            else:
                said.append(f"target side matched, but no source with {kd} was active when it was raised")
        if src:
            mine = explains.get(q, [])
            if mine:
                decided = True
                said.append(f"source side matched: inhibits {_few(mine)}")
            else:
                cleared = "" if a.active else " (it has cleared: it inhibits nothing any more)"
                said.append(f"source side matched, but it inhibits no target with {kd}{cleared}")
        if not (src or tgt):
            said.append("neither source nor target matched")
        return decided, "; ".join(said)

    def threshold(self, cr: CompiledRule, spec: Threshold, seen: _Seen) -> tuple[bool, str]:
        a, fired, sup, explains = seen.alarm, seen.fired, seen.sup, seen.explains
        raised_here = seen.synthetic == cr.qualified
        q = cr.qualified
        if raised_here:
            members = explains.get(q, [])
            tail = f"; {_few(members)} in it" if members else ""
            return True, f"raised by this rule (the storm alarm): {a.text or ''}{tail}"
        if f"{q}#match" not in fired:
            return False, "did not match"
        kd = describe(spec.by, key_of(a, spec.by, self.topology))
        if sup is not None and sup.rule == q:
            return True, f"matched: part of the storm {sup.root} ({sup.detail or kd})"
        if sup is not None:
            return False, (
                f"matched and counted ({kd}), but it was already explained by {sup.root} through {sup.rule}"
            )
        return False, (
            f"matched and counted ({kd}), but no storm took it: fewer than {spec.count} matching alarms "
            f"arrived within {spec.window:g} s of each other"
        )

    def pair(self, cr: CompiledRule, spec: Pair, seen: _Seen) -> tuple[bool, str]:
        a, fired, sup, inc = seen.alarm, seen.fired, seen.sup, seen.inc
        raised_here = seen.synthetic == cr.qualified
        q = cr.qualified
        if raised_here:
            return True, f"raised by this rule (an escalation): {a.text or ''}"
        first, second = f"{q}#first" in fired, f"{q}#second" in fired
        said = []
        decided = False
        awaited = "its own clear" if spec.second == "clear" else "a matching second alarm"
        kd = describe(spec.equal, key_of(a, spec.equal, self.topology))
        if first:
            deadline = a.first_seen + spec.window
            if sup is not None and sup.rule == q:
                decided = True
                said.append(f"first side matched: escalated ({sup.detail or 'no pair'}) as {sup.root}")
            elif spec.second == "clear" and a.cleared_time is not None and a.cleared_time <= deadline:
                dropped = spec.discards and inc is None
                decided = dropped
                said.append(
                    f"first side matched: its clear came {a.cleared_time - a.first_seen:g} s later, within "
                    f"the {spec.window:g} s window: the pair completed"
                    + (", a transient: its incident was dropped (on_pair: discard)" if dropped else "")
                )
            elif a.active and self.p.clock < deadline:
                said.append(f"first side matched: waiting for {awaited} until {format_time(deadline)}")
            else:
                timeout = ", else an escalation" if spec.on_timeout is not None else ""
                said.append(
                    f"first side matched ({kd}): it expected {awaited} within {spec.window:g} s{timeout}; "
                    "no pair decision about it is visible now"
                )
        if second:
            said.append(f"second side matched: it completes a pair pending with {kd}, if one was open")
        if not (first or second):
            said.append("neither side matched")
        return decided, "; ".join(said)

    def priority(self, cr: CompiledRule, spec: PriorityOverride, seen: _Seen) -> tuple[bool, str]:
        a, fired, inc = seen.alarm, seen.fired, seen.inc
        q = cr.qualified
        if f"{q}#root" not in fired:
            return False, "its root condition did not match"
        if inc is None or inc.root != a.key:
            return False, (
                "its root condition matched, but this alarm is not the root of an incident (overrides "
                "apply to an incident's root)"
            )
        applied = [
            o for o in (inc.priority.breakdown.get("overrides", []) if inc.priority else []) if o["rule"] == q
        ]
        if applied:
            o = applied[0]
            severity = f", severity {spec.severity}" if spec.severity else ""
            return True, f"applied to incident {inc.id}: P{o['from']} → P{o['to']}{severity}"
        if f"{q}#root" not in self.p.correlator.parts(a.key):
            return False, (
                "its root condition matches now, but the engine's classification of this alarm (made "
                "when it was last raised or changed) did not include it"
            )
        return False, f"its root condition matched, but the rest of `when` did not hold ({_when(spec)})"

    def maintenance(
        self, cr: CompiledRule, spec: Maintenance, a: ActiveAlarm, inc: Incident | None
    ) -> tuple[bool, str, bool]:
        sc = spec.scope
        el = self.topology.element(a.ne_id)
        in_scope = (
            a.ne_id in sc.elements
            or (el.site is not None and el.site in sc.sites)
            or (el.region is not None and el.region in sc.regions)
            or bool(set(sc.services) & self.topology.platform_services(a.ne_id))
        )
        if inc is not None and inc.maintenance == cr.qualified:
            until = format_time(inc.hold_until) if inc.hold_until is not None else "its end"
            return True, f"holds back incident {inc.id} until {until}", True
        if not in_scope:
            return False, f"{a.ne_id} is not in its scope", False
        window = spec.schedule.window_at(self.p.clock)
        if window is not None:
            now = f"a window is open now until {format_time(window[1])}"
        else:
            now = f"no window is open now ({spec.schedule.describe()})"
        return False, f"{a.ne_id} is in its scope; {now}", True

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

    def alarm_why(self, a: ActiveAlarm, el_type: str, ex: Mapping[str, Any]) -> list[str]:
        el = self.topology.element(a.ne_id)
        where = ", ".join(
            x
            for x in (
                el_type,
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
            lines.append(f"explains {_few(keys)} through {rule}")
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

    # -- incident ------------------------------------------------------------------------------
    def incident(self, inc: Incident) -> dict[str, Any]:
        clock = self.p.clock
        record = self.book.record(inc, "current", clock).to_wire()
        reasons = {s["alarm_id"]: s for s in record["suppressed"]}
        members = []
        for key in sorted(inc.members, key=lambda k: (k != inc.root, k)):
            a = self.p.alarms.get(key)
            sup = self.book.suppression(key)
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
        root = self.alarm(inc.root) if self.p.alarms.get(inc.root) is not None else None
        p = inc.priority
        settings = self.p.settings.incidents
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
        out["why"] = self.incident_why(inc, out)
        return out

    def _opens_at(self, inc: Incident) -> str | None:
        if inc.phase != "pending":
            return None
        settle = inc.settle if inc.settle is not None else self.p.settings.incidents.settle
        due = inc.created + settle
        if inc.hold_until is not None:
            due = max(due, inc.hold_until)
        return format_time(due)

    def incident_why(self, inc: Incident, ex: Mapping[str, Any]) -> list[str]:
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


# -------------------------------------------------------------------------------------- not found


def _alarm_not_found(pipeline: Pipeline, key: str) -> NotFound:
    known = {d["key"] for d in pipeline.alarms.dump()["alarms"]}
    return NotFound(
        "alarm",
        key,
        searched=f"searched {len(known)} alarm(s) held as of {format_time(pipeline.clock)}: active ones and "
        "cleared ones within their retention",
        suggestions=_suggest(key, known),
        hint="An alarm key is ne_id:probable_cause[:specific_problem], or its alarm_id when it had one.",
    )


def _incident_not_found(pipeline: Pipeline, incident_id: str) -> NotFound:
    known = {i.id for i in pipeline.incidents.incidents()}
    return NotFound(
        "incident",
        incident_id,
        searched=f"searched {len(known)} live incident(s) as of {format_time(pipeline.clock)}",
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


# ------------------------------------------------------------------------------------------ words


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


def _when(spec: PriorityOverride) -> str:
    w = spec.when
    said = []
    if w.min_customers is not None:
        said.append(f"at least {w.min_customers} customer(s) affected")
    if w.tiers:
        said.append("a customer of tier " + "/".join(w.tiers) + " affected")
    if w.services:
        said.append("service " + "/".join(w.services) + " affected")
    if w.customers:
        said.append("customer " + "/".join(w.customers) + " affected")
    return "; ".join(said) or "nothing more"


def _scope_phrase(relation: str, a: ActiveAlarm, topology: Topology, *, a_is: str) -> str:
    el = topology.element(a.ne_id)
    if relation == "downstream_of":
        return f"at or above {a.ne_id}" if a_is == "symptom" else f"at or below {a.ne_id}"
    if relation == "upstream_of":
        return f"at or below {a.ne_id}" if a_is == "symptom" else f"at or above {a.ne_id}"
    if relation == "same_element":
        return f"on {a.ne_id}"
    if relation == "same_site":
        return f"at site {el.site}" if el.site else "at its site (it has none)"
    if relation == "same_region":
        return f"in region {el.region}" if el.region else "in its region (it has none)"
    return "on a path of a service type through " + a.ne_id


def _few(keys: Sequence[str]) -> str:
    listed = ", ".join(keys[:MAX_LISTED])
    more = f" and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else ""
    return f"{len(keys)} alarm(s) ({listed}{more})"


def _synthetic_rule(key: str, rules: Mapping[str, CompiledRule]) -> str | None:
    """The loaded rule that raised an alarm (``rule:<ruleset>/<rule>:<scope>``), if one did."""
    q = raised_by(key)
    return q if q in rules else None


def _alarm_record(a: ActiveAlarm, synthetic: str | None) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------- renderer


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
