"""Compile validated rulesets into durable-rules JSON rulesets.

Theory of operation
-------------------
Correlation pairs an alarm with alarms of the same *scope* (a sid): every relation has its own.

================= ====================================== =============================================
relation          a root candidate enters the scopes     a symptom candidate enters the scopes
================= ====================================== =============================================
downstream_of     its element                            its element and every element it depends on
upstream_of       its element and every element it       its element
                  depends on
same_element      its element                            its element
same_site         its site                               its site
same_region       its region                             its region
same_service_path ``svc:<s>`` for each service type s    the same
                  whose paths cross its element
neighbour:<k>     its element                            every element within k links of its element
                                                         in any direction that is neither it, nor
                                                         above it, nor below it (``Topology.neighbours``)
================= ====================================== =============================================

An alarm is a root candidate and a symptom candidate in its own scope, and a symptom candidate only
in the scopes of the elements it depends on (``downstream_of``). A ``neighbour`` rule's relation is
``neighbour:<hops>`` here (``Correlate.scope_relation``): each distance has scopes of its own, and a
symptom never enters its own element's (same element, above and below are the other relations', as
the miner measures them: ``engine.tools.mining.stats``). The correlator pairs a neighbour relation's
candidates as if they entered these scopes, without entering one per neighbour
(``engine.core.forms.neighbourhood``).

durable-rules decides what each rule *matches*, one alarm at a time: every alarm match of every rule
(a correlate rule's ``root`` and ``symptom``, a group's ``match``, an inhibit's ``source`` and
``target``…) compiles to one single-alias durable rule whose action is ``ruleset/rule#part``::

    m: role == x AND <the part's conditions>

These rules form the ``classify`` rulesets (``classify.0``, ``classify.1``…, at most
``MAX_FIRINGS_PER_FACT`` rules each: past 255 rules firing on one fact durable fires wrong actions,
and at 256 it segfaults, measured). An alarm's fact is asserted there once, every matching part
fires, and the fact is retracted at once: one fact per fired frame, the only use of durable its
memory handling survives (see ``engine.rules.host``). A rule's conditions read only the fact
properties in ``Program.reads``, so the correlator reuses one answer for every alarm that agrees on
them.

Everything else is ours, on our clock. The correlator joins root and symptom candidates of one
scope in Python (``engine.core.forms.correlator``): an alarm enters the scopes of the table above in
its role, and a pair is reported when the root matches a rule's ``root``, the symptom the same rule's
``symptom``, they are different alarms and the symptom lies within ``[root - lead, root + window]``.
durable 2.0.28 did this join for us until it proved unsafe: with window terms (``s.t >= r.t -
lead``…) in the join, asserts segfaulted inside ``reduceExpressionSequence``, and without them,
retracting the second fact of a fired join read past a freed action frame (``engine.rules.host``).
Keys, windows, counts and pairing of the other forms are kept by our code (``engine.core.forms``);
durable never sees time. KPI thresholds and maintenance windows match elements, not alarms, and are
evaluated by the forms from the topology.

Regex conditions and ``service_type`` become boolean fact properties (``rx<n>``, ``svc:<name>``)
that the fact builder fills in; durable compares them as plain strings. durable never sees a regex
(its own ``$mt`` operator is not used): the fact builder searches each one with RE2, in time linear
in the field (``engine.model.linear_regex``).

Conditions are always an explicit ``$and`` of single-key conditions (durable silently reads only the
first key of a multi-key object). Severity thresholds compare the numeric ``sev`` field.
The action of every rule is the part's qualified name (``ruleset/rule#part``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import RulesetError
from engine.model.linear_regex import LinearRegex, linear_regex
from engine.model.topology import Topology
from engine.rules.host import MAX_FIRINGS_PER_FACT
from engine.rules.schema import (
    MAX_REGEXES,
    SEVERITY_RANK,
    Condition,
    Correlate,
    FormSpec,
    Rule,
    Ruleset,
    element_in_scope,
)

FACT_FIELDS = {  # match field -> fact property
    "ne_id": "ne",
    "severity": "severity",
    "probable_cause": "cause",
    "event_type": "etype",
    "specific_problem": "sp",
    "effect": "effect",
    "text": "text",
    "element_type": "etype_ne",
    "site": "site",
    "region": "region",
}
CLASSIFY = "classify"


@dataclass(frozen=True, slots=True)
class CompiledRule:
    qualified: str  # "ruleset/rule"
    ruleset: str
    rule: Rule
    relation: str  # correlate rules only (``neighbour:<hops>`` for a neighbour rule); "" otherwise
    window: float
    lead: float
    order: int  # position across all loaded rulesets: lower wins when two roots explain one alarm
    source: str = "<inline>"
    # the ruleset's `defaults.scope`: already merged into alarm matches; kpi_threshold and
    # maintenance, which match elements, check it with `in_scope`
    scope: Mapping[str, Condition] = dataclasses.field(default_factory=dict)

    def in_scope(self, topology: Topology, ne_id: str) -> bool:
        """Whether an element lies in the scope of this rule's ruleset (always, without a scope)."""
        if not self.scope:
            return True
        el = topology.element(ne_id)
        attrs = {"element_type": el.type, "site": el.site, "region": el.region}
        return element_in_scope(self.scope, ne_id, attrs, topology.services_through(ne_id))

    @property
    def form(self) -> str:
        return self.rule.form


@dataclass(frozen=True, slots=True)
class Program:
    """Everything the correlator needs: the durable match rulesets and the rules behind them."""

    definitions: Mapping[str, Mapping[str, Any]]  # durable ruleset name (classify.<n>) -> definition
    rules: Mapping[str, CompiledRule]  # qualified name -> rule
    max_window: Mapping[str, float]  # relation -> largest window or lead (how long facts must live)
    regexes: tuple[tuple[str, str], ...] = ()  # (fact property, pattern) of rx0, rx1, ...
    services: frozenset[str] = frozenset()  # service types conditions name (svc:<name> properties)
    reads: tuple[str, ...] = ()  # the fact properties any condition reads, sorted

    def by_form(self, form: str) -> list[CompiledRule]:
        return sorted((r for r in self.rules.values() if r.form == form), key=lambda r: r.order)


def service_property(name: str) -> str:
    return f"svc:{name}"


class _Builder:
    def __init__(self) -> None:
        self.regexes: dict[tuple[str, str], int] = {}
        self.services: set[str] = set()
        self.reads: set[str] = set()  # fact properties the conditions compiled so far read

    def conditions(self, match: Mapping[str, Condition]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for field in sorted(match):
            cond = match[field]
            if field == "service_type":
                self.services.update(str(v) for v in (*cond.any_of, *cond.none_of))
                self.reads.update(service_property(str(v)) for v in (*cond.any_of, *cond.none_of))
                if cond.any_of:
                    out.append(_or([{service_property(str(v)): "1"} for v in cond.any_of]))
                out.extend({"$neq": {service_property(str(v)): "1"}} for v in cond.none_of)
                continue
            prop = FACT_FIELDS[field]
            if cond.at_least is not None:
                out.append({"$gte": {"sev": SEVERITY_RANK[cond.at_least]}})
                self.reads.add("sev")
            if cond.at_most is not None:
                out.append({"$lte": {"sev": SEVERITY_RANK[cond.at_most]}})
                self.reads.add("sev")
            if cond.regex is not None:
                key = (prop, cond.regex)
                n = self.regexes.setdefault(key, len(self.regexes))
                out.append({f"rx{n}": "1"})
                self.reads.add(f"rx{n}")
            if cond.any_of or cond.none_of:
                self.reads.add(prop)
            if cond.any_of:
                out.append(_or([{prop: _value(v)} for v in cond.any_of]))
            out.extend({"$neq": {prop: _value(v)}} for v in cond.none_of)
        return out

    def single(self, match: Mapping[str, Condition]) -> dict[str, Any]:
        return _and([{"role": "x"}, *self.conditions(match)])


def _parts(rule: Rule) -> list[tuple[str, Mapping[str, Condition]]]:
    """The alarm matches of a non-correlate rule, by part name (the classify action suffix): each
    form's spec names its own (``FormSpec.alarm_parts``), so no form is listed here."""
    spec = rule.spec
    return spec.alarm_parts() if isinstance(spec, FormSpec) else []


def compile_rulesets(rulesets: Sequence[Ruleset]) -> Program:
    """Compile rulesets (loaded together; rule names are qualified by ruleset) into a Program.

    Every error is found: the first is raised with the others in its ``more``. A ruleset whose name
    another one already uses is reported at its ``name:`` line and left out; each limit is reported
    once, at the first rule past it.
    """
    errors: list[RulesetError] = []
    names: dict[str, Ruleset] = {}
    unique: list[Ruleset] = []
    for rs in rulesets:
        other = names.get(rs.name)
        if other is not None:
            line = other.line(("name",))
            where = f"{other.source} (line {line})" if line is not None else other.source
            errors.append(
                RulesetError(
                    rs.source,
                    "name",
                    f"ruleset name {rs.name!r} is also used by {where}",
                    line=rs.line(("name",)),
                )
            )
            continue
        names[rs.name] = rs
        unique.append(rs)
    matches: list[tuple[str, dict[str, Any]]] = []  # (action ruleset/rule#part, single-alias condition)
    rules: dict[str, CompiledRule] = {}
    max_window: dict[str, float] = {}
    builder = _Builder()
    order = 0
    past: set[str] = set()  # the limits already reported

    def limit(key: str, rs: Ruleset, index: int, rule: Rule, reason: str) -> None:
        if key not in past:
            past.add(key)
            where = f"rules[{index}]"
            errors.append(
                RulesetError(rs.source, where, reason, line=rs.line(("rules", index)), rule=rule.name)
            )

    for rs in unique:
        for index, rule in enumerate(rs.rules):
            if not rule.enabled:
                continue
            qualified = f"{rs.name}/{rule.name}"
            window, lead = rs.window(rule), rs.lead(rule)
            spec = rule.spec
            relation = spec.scope_relation if isinstance(spec, Correlate) else ""
            compiled = CompiledRule(
                qualified, rs.name, rule, relation, window, lead, order, rs.source, rs.defaults.scope
            )
            order += 1
            rules[qualified] = compiled
            if isinstance(spec, Correlate):
                max_window[relation] = max(max_window.get(relation, 0.0), window, lead)
            for part, match in match_parts(compiled):
                matches.append((f"{qualified}#{part}", builder.single(match)))
            if len(builder.services) > MAX_REGEXES:
                limit(
                    "services",
                    rs,
                    index,
                    rule,
                    f"more than {MAX_REGEXES} distinct service types in conditions across the loaded "
                    "rulesets",
                )
            if len(builder.regexes) > MAX_REGEXES:
                limit(
                    "regexes",
                    rs,
                    index,
                    rule,
                    f"more than {MAX_REGEXES} distinct regex conditions across the loaded rulesets "
                    "(each becomes a fact property; durable-rules allows 255 per fact)",
                )
    if errors:
        first = errors[0]
        first.more = errors[1:]
        raise first
    definitions: dict[str, dict[str, Any]] = {}
    for start in range(0, len(matches), MAX_FIRINGS_PER_FACT):
        chunk = matches[start : start + MAX_FIRINGS_PER_FACT]
        definitions[f"{CLASSIFY}.{len(definitions)}"] = {
            f"c{start + n}": {"all": [{"m": cond}], "run": action} for n, (action, cond) in enumerate(chunk)
        }
    regexes = tuple(k for k, _ in sorted(builder.regexes.items(), key=lambda kv: kv[1]))
    return Program(
        definitions, rules, max_window, regexes, frozenset(builder.services), tuple(sorted(builder.reads))
    )


def compiled_regexes(program: Program) -> list[tuple[str, LinearRegex]]:
    """The program's regexes (``rx<n>``) compiled by RE2: searched in time linear in the field."""
    return [(prop, linear_regex(pattern)) for prop, pattern in program.regexes]


def _and(conditions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    items = list(conditions)
    return {"$and": items}


def _or(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return conditions[0] if len(conditions) == 1 else {"$or": conditions}


def _value(v: object) -> Any:
    # Facts carry every property as a string (absent -> ""), so conditions compare strings.
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# -- explain (read-only, never on the hot path) ------------------------------------------------------

MATCH_PREFIX = "explain.match"


def match_parts(rule: CompiledRule) -> list[tuple[str, Mapping[str, Condition]]]:
    """Every alarm match of a rule by part name: ``root``/``symptom`` for correlate, else ``_parts``."""
    spec = rule.rule.spec
    if isinstance(spec, Correlate):
        return [("root", spec.root), ("symptom", spec.symptom)]
    return _parts(rule.rule)


def match_definitions(program: Program) -> dict[str, dict[str, Any]]:
    """Single-alias durable rulesets saying which rule parts, and which of their conditions, an alarm
    satisfies: for ``engine rules explain``, in a private host, never in the correlator's.

    For every part of every rule (correlate ``root`` and ``symptom`` included), one rule fires
    ``ruleset/rule#part`` when the whole part matches, and one per field fires
    ``ruleset/rule#part@field`` when that field's condition holds. Conditions are compiled by the
    same ``_Builder`` as ``compile_rulesets``, with the program's regex numbering, so a fact built
    for the correlator (``rx<n>``, ``svc:<name>`` properties included) is read identically. The rules
    are split into rulesets of at most ``MAX_FIRINGS_PER_FACT``, named ``explain.match.<n>``.
    """
    builder = _Builder()
    builder.regexes = {key: n for n, key in enumerate(program.regexes)}
    builder.services = set(program.services)
    items: list[tuple[str, dict[str, Any]]] = []
    for rule in sorted(program.rules.values(), key=lambda r: r.order):
        for part, match in match_parts(rule):
            items.append((f"{rule.qualified}#{part}", builder.single(match)))
            for field in sorted(match):
                items.append((f"{rule.qualified}#{part}@{field}", builder.single({field: match[field]})))
    if len(builder.regexes) != len(program.regexes):  # pragma: no cover - the program compiled them all
        raise RulesetError("<program>", "", "a regex condition is missing from the compiled program")
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(items), MAX_FIRINGS_PER_FACT):
        chunk = items[start : start + MAX_FIRINGS_PER_FACT]
        out[f"{MATCH_PREFIX}.{len(out)}"] = {
            f"m{n}": {"all": [{"m": cond}], "run": action} for n, (action, cond) in enumerate(chunk)
        }
    return out
