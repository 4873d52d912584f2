"""Compile validated rulesets into durable-rules JSON rulesets.

Theory of operation
-------------------
Correlation facts are alarms. Every relation has its own durable ruleset and its own *scope*: the
``sid`` under which facts are asserted, because durable joins only facts of the same sid.

============== ===================================== =============================================
relation       a root candidate is asserted in sid    a symptom candidate is asserted in sids
============== ===================================== =============================================
downstream_of  ``its element``                        its element and every element it depends on
same_site      ``its site``                           its site
same_region    ``its region``                         its region
============== ===================================== =============================================

An alarm is asserted as two facts in its own scope, a root candidate (``role: "root"``) and a symptom
candidate (``role: "sym"``), and as symptom candidates only in the sids of the elements it depends
on, so the two aliases of a join never bind the same fact.

Each correlate rule becomes one durable rule with two aliases joined in the sid::

    r: role == root  AND <root conditions>
    s: role == sym   AND <symptom conditions>

The rule holds no expression between the aliases. durable 2.0.28 mis-evaluates them: with window
terms (``s.t >= r.t - lead``…) in the join, asserts segfaulted inside ``reduceExpressionSequence``
(``src/rules/events.c``) depending on memory layout, and that function's source shows an alpha
``$or`` ahead of join terms ends the ``$and`` before the join terms are read. So durable does what it
does reliably
(alpha conditions and the join by sid), and the correlator checks, for every pair it reports, that
the symptom was raised within ``[root - lead, root + window]`` and is another alarm. Facts are
retracted once their window has passed, so the pairs durable reports stay few.

Conditions are always an explicit ``$and`` of single-key conditions (durable silently reads only the
first key of a multi-key object). Severity thresholds compare the numeric ``sev`` field.
The action of every rule is the rule's qualified name (``ruleset/rule``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import RulesetError
from engine.rules.host import MAX_RULES_PER_RULESET
from engine.rules.schema import RELATIONS, SEVERITY_RANK, Condition, Rule, Ruleset

FACT_FIELDS = {  # match field -> fact property
    "ne_id": "ne",
    "severity": "severity",
    "probable_cause": "cause",
    "event_type": "etype",
    "specific_problem": "sp",
    "effect": "effect",
    "element_type": "etype_ne",
    "site": "site",
    "region": "region",
}


@dataclass(frozen=True, slots=True)
class CompiledRule:
    qualified: str  # "ruleset/rule"
    ruleset: str
    rule: Rule
    relation: str
    window: float
    lead: float
    order: int  # position across all loaded rulesets: lower wins when two roots explain one alarm


@dataclass(frozen=True, slots=True)
class Program:
    """Everything the correlator needs: durable definitions by relation and the rules behind them."""

    definitions: Mapping[str, Mapping[str, Any]]  # durable ruleset name -> definition
    rules: Mapping[str, CompiledRule]  # qualified name -> rule
    max_window: Mapping[str, float]  # relation -> largest window or lead (how long facts must live)

    @staticmethod
    def durable_name(relation: str) -> str:
        return f"corr.{relation}"


def compile_rulesets(rulesets: Sequence[Ruleset]) -> Program:
    """Compile rulesets (loaded together; rule names are qualified by ruleset) into a Program."""
    names: dict[str, str] = {}
    for rs in rulesets:
        if rs.name in names:
            raise RulesetError(
                rs.source, "name", f"ruleset name {rs.name!r} is also used by {names[rs.name]}"
            )
        names[rs.name] = rs.source
    per_relation: dict[str, dict[str, Any]] = {rel: {} for rel in RELATIONS}
    rules: dict[str, CompiledRule] = {}
    max_window: dict[str, float] = {}
    order = 0
    for rs in rulesets:
        for rule in rs.rules:
            if not rule.enabled:
                continue
            qualified = f"{rs.name}/{rule.name}"
            spec = rule.correlate
            window, lead = rs.window(rule), rs.lead(rule)
            compiled = CompiledRule(qualified, rs.name, rule, spec.relation, window, lead, order)
            order += 1
            rules[qualified] = compiled
            definition = per_relation[spec.relation]
            definition[f"r{len(definition)}"] = {
                "all": [
                    {"r": _and([{"role": "root"}, *_conditions(rule.correlate.root)])},
                    {"s": _and([{"role": "sym"}, *_conditions(rule.correlate.symptom)])},
                ],
                "run": qualified,
            }
            if len(definition) > MAX_RULES_PER_RULESET:
                raise RulesetError(
                    rs.source,
                    "rules",
                    f"more than {MAX_RULES_PER_RULESET} enabled '{spec.relation}' rules across the loaded "
                    "rulesets; durable-rules cannot hold more in one ruleset",
                    rule=rule.name,
                )
            max_window[spec.relation] = max(max_window.get(spec.relation, 0.0), window, lead)
    definitions = {Program.durable_name(rel): d for rel, d in per_relation.items() if d}
    return Program(definitions, rules, max_window)


def _and(conditions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    items = list(conditions)
    return {"$and": items}


def _conditions(match: Mapping[str, Condition]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for field in sorted(match):
        cond = match[field]
        prop = FACT_FIELDS[field]
        if cond.at_least is not None:
            out.append({"$gte": {"sev": SEVERITY_RANK[cond.at_least]}})
        if len(cond.any_of) == 1:
            out.append({prop: _value(cond.any_of[0])})
        elif cond.any_of:
            out.append({"$or": [{prop: _value(v)} for v in cond.any_of]})
        out.extend({"$neq": {prop: _value(v)}} for v in cond.none_of)
    return out


def _value(v: object) -> Any:
    # Facts carry every property as a string (absent -> ""), so conditions compare strings.
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
