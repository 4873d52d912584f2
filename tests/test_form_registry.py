"""A rule form is one module plus its schema: this file adds one without touching the engine.

How a form is added (all of it below, nothing else changes):

1. its schema, a ``FormSchema`` (``alarm_matches`` names its alarm-match fields: the correlator
   classifies alarms by them), registered with ``register_form(name, schema)``: rules may then say
   ``<name>: {...}`` and are validated, scoped, compiled and explained like any other;
2. its form, a ``BaseForm`` with a ``name`` (its part: quarantine, snapshot) and the ``rule_form``
   it runs, overriding what it needs of ``observe``/``tick``/``next_due``/``dump``/``load``/
   ``explain``/``counters`` (``engine.core.forms.base``);
3. a registry that holds it: ``Pipeline(topology, rulesets, forms=(*FORMS, MyForm))``. In the engine
   itself that is one line of ``FORMS`` (``engine.core.forms.registry``).

The form here, ``linger``, escalates an alarm still active ``hold`` after it was raised: it raises
the rule's alarm on the element, and the lingering alarm becomes a member of that alarm's incident.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import orjson
import pytest
from pydantic import ConfigDict, Field

from bench.scenarios import T0, alarm, clear, example_topology
from engine.core.explain import explain_alarm
from engine.core.forms.base import (
    NOTHING,
    BaseForm,
    Cleared,
    Explanation,
    Fact,
    FormContext,
    Outcome,
    Raised,
    Released,
    Seen,
    Verdict,
)
from engine.core.forms.registry import FORMS
from engine.core.forms.synthetic import Synthetic, clear_alarm, raise_alarm
from engine.core.pipeline import Pipeline
from engine.errors import RulesetError
from engine.model.messages import Alarm
from engine.model.timeutil import format_time
from engine.model.topology import topology_from_dict
from engine.rules import compiler as compiler_module
from engine.rules import schema as schema_module
from engine.rules.compiler import CompiledRule
from engine.rules.schema import (
    Emit,
    FormSchema,
    FormSpec,
    Match,
    RuleDuration,
    Ruleset,
    load_rulesets,
    parse_ruleset,
    register_form,
    ruleset_from_data,
    unregister_form,
)
from engine.tools.replay import event_time


# -- the form's schema ----------------------------------------------------------------------------
class Linger(FormSchema):
    """An alarm matching ``match`` still active ``hold`` after it was raised raises ``raise``."""

    alarm_matches: ClassVar[tuple[str, ...]] = ("match",)
    match: Match
    hold: RuleDuration
    raise_: Emit = Field(alias="raise")
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- the form -------------------------------------------------------------------------------------
class Lingering(BaseForm):
    name = "lingering"
    rule_form = "linger"

    def __init__(self, ctx: FormContext) -> None:
        self._rules = {r.qualified: r for r in ctx.rules_of("linger")}
        self._waiting: dict[str, tuple[float, str, str, float]] = {}  # key -> (due, rule, ne, raised)
        self._raised: dict[str, tuple[str, Alarm]] = {}  # key -> (rule, its escalation)
        self.escalated = 0

    def _spec(self, q: str) -> Linger:
        spec = self._rules[q].rule.spec
        assert isinstance(spec, Linger)
        return spec

    def observe(self, fact: Fact, now: float) -> Outcome:
        if isinstance(fact, Raised) and fact.arrival:
            for q in self._rules:
                if f"{q}#match" in fact.parts:
                    due = fact.t + self._spec(q).hold
                    self._waiting[fact.alarm.key] = (due, q, fact.alarm.ne_id, fact.t)
                    break
        elif isinstance(fact, Cleared):
            self._waiting.pop(fact.alarm.key, None)
            raised = self._raised.pop(fact.alarm.key, None)
            if raised is not None:
                q, escalation = raised
                return Outcome(alarms=(clear_alarm(escalation, rule=q, t=now, text="it cleared"),))
        return NOTHING

    def next_due(self) -> float | None:
        return min((due for due, _, _, _ in self._waiting.values()), default=None)

    def tick(self, now: float) -> Outcome:
        alarms: list[Synthetic] = []
        members: list[Explanation] = []
        for key, (due, q, ne, t) in sorted(self._waiting.items()):
            if due > now:
                continue
            del self._waiting[key]
            spec = self._spec(q)
            syn = raise_alarm(
                spec.raise_, rule=q, scope=key, ne_id=ne, t=due, text=f"{key} active {spec.hold:g}s"
            )
            self._raised[key] = (q, syn.alarm)
            self.escalated += 1
            alarms.append(syn)
            detail = f"still active {spec.hold:g}s after it was raised"
            members.append(Explanation(syn.alarm.alarm_id or "", key, self._rules[q], due, t, detail=detail))
        return Outcome(alarms=tuple(alarms), members=tuple(members)) if alarms else NOTHING

    def dump(self) -> dict[str, Any]:
        return {
            "waiting": {k: list(v) for k, v in self._waiting.items()},
            "raised": {k: [q, a.model_dump(mode="json")] for k, (q, a) in self._raised.items()},
            "escalated": self.escalated,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self._waiting = {
            k: (d, q, ne, t) for k, (d, q, ne, t) in state["waiting"].items() if q in self._rules
        }
        self._raised = {
            k: (q, Alarm.model_validate(a, strict=False))
            for k, (q, a) in state["raised"].items()
            if q in self._rules
        }
        self.escalated = state["escalated"]

    def explain(self, rule: CompiledRule, seen: Seen) -> Verdict:
        q = rule.qualified
        if seen.synthetic == q:
            return Verdict(True, f"raised by this rule: {seen.alarm.text}")
        if f"{q}#match" not in seen.fired:
            return Verdict(False, "did not match")
        if seen.sup is not None and seen.sup.rule == q:
            return Verdict(True, f"matched: it lingered, escalated as {seen.sup.root}")
        waiting = self._waiting.get(seen.alarm.key)
        if waiting is not None:
            return Verdict(False, f"matched: escalates at {format_time(waiting[0])} unless it clears")
        return Verdict(False, f"matched, but it cleared within {self._spec(q).hold:g} s")

    def counters(self) -> dict[str, int]:
        return {"lingered": self.escalated}


# -- the tests ------------------------------------------------------------------------------------
@pytest.fixture
def linger() -> Iterator[None]:
    register_form("linger", Linger)
    try:
        yield
    finally:
        unregister_form("linger")


HOT = {
    "name": "hot",
    "linger": {
        "match": {"probable_cause": "highTemperature"},
        "hold": "6m",
        "raise": {"probable_cause": "coolingFailure", "severity": "major", "effect": "degraded"},
    },
}
KEY = "olt-001:highTemperature"


def _rulesets() -> list[Ruleset]:
    return [ruleset_from_data({"name": "linger", "rules": [HOT]}, "<linger>"), *load_rulesets(None)]


def _lines() -> list[dict[str, Any]]:
    lines = [
        alarm("olt-001", "highTemperature", 0, "minor"),
        alarm("olt-006", "highTemperature", 10, "minor"),
        clear("olt-006", "highTemperature", 60),
        clear("olt-001", "highTemperature", 900),
    ]
    return sorted(lines, key=lambda x: event_time(x) or 0.0)


def _run(p: Pipeline, lines: list[dict[str, Any]], *, until: float | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in lines:
        t = event_time(line)
        assert t is not None
        out.extend(r.to_wire() for r in p.advance_to(t).records)
        out.extend(r.to_wire() for r in p.feed(line["topic"], orjson.dumps(line["payload"]), t).records)
    out.extend(r.to_wire() for r in (p.advance_to(until) if until is not None else p.drain()).records)
    return out


def test_a_form_added_by_a_test_observes_ticks_and_decides_through_the_pipeline(linger: None) -> None:
    """The linger form, defined above and registered beside the engine's forms, escalates the alarm
    that stayed active 6 minutes (its incident holds the alarm as a suppressed member with the
    form's reason) and not the one that cleared after 50 s; its counter is in the summary."""
    p = Pipeline(topology_from_dict(example_topology()), _rulesets(), forms=(*FORMS, Lingering))
    records = _run(p, _lines(), until=T0 + 400)
    escalation = f"rule:linger/hot:{KEY}"
    opened = [r for r in records if r["root_cause"]["alarm_id"] == escalation]
    assert opened, "the escalation opens an incident"
    suppressed = {s["alarm_id"]: s for s in opened[-1]["suppressed"]}
    assert KEY in suppressed
    assert "still active 360s after it was raised" in suppressed[KEY]["reason"]
    roots = {r["root_cause"]["alarm_id"] for r in records}
    assert roots == {KEY, "olt-006:highTemperature", escalation}  # olt-006 cleared in time
    assert p.summary()["lingered"] == 1
    assert p.form(Lingering).escalated == 1
    p.close()


def test_the_added_form_explains_its_rule_from_its_own_state(linger: None) -> None:
    """``engine rules explain`` asks the form for its rule: why it decided (escalated), why not
    (cleared in time, still waiting), and for the alarm it raised."""
    p = Pipeline(topology_from_dict(example_topology()), _rulesets(), forms=(*FORMS, Lingering))
    _run(p, _lines()[:2], until=T0 + 100)
    (waiting,) = [r for r in explain_alarm(p.query, KEY)["rules"] if r["rule"] == "linger/hot"]
    assert waiting["matched"]
    assert not waiting["decided"]
    assert waiting["outcome"] == "matched: escalates at 2026-01-01T00:06:00.000Z unless it clears"
    _run(p, _lines()[2:3], until=T0 + 400)
    (done,) = [r for r in explain_alarm(p.query, KEY)["rules"] if r["rule"] == "linger/hot"]
    assert done["decided"]
    assert done["outcome"] == f"matched: it lingered, escalated as rule:linger/hot:{KEY}"
    (cleared,) = [
        r for r in explain_alarm(p.query, "olt-006:highTemperature")["rules"] if r["rule"] == "linger/hot"
    ]
    assert cleared["outcome"] == "matched, but it cleared within 360 s"
    (own,) = [
        r for r in explain_alarm(p.query, f"rule:linger/hot:{KEY}")["rules"] if r["rule"] == "linger/hot"
    ]
    assert own["decided"]
    assert own["outcome"].startswith("raised by this rule")
    p.close()


def test_the_added_form_state_survives_a_snapshot(linger: None) -> None:
    """Its state is in the snapshot under its name; a restored pipeline escalates exactly as an
    uninterrupted one would."""
    topo = topology_from_dict(example_topology())
    lines = _lines()
    p = Pipeline(topo, _rulesets(), forms=(*FORMS, Lingering))
    whole = _run(p, lines)
    p.close()
    first = Pipeline(topo, _rulesets(), forms=(*FORMS, Lingering))
    head = _run(first, lines[:2], until=T0 + 20)
    blob = first.snapshot()
    first.close()
    assert orjson.loads(blob)["forms"]["lingering"]["waiting"][KEY][0] == T0 + 360
    second = Pipeline(topo, _rulesets(), forms=(*FORMS, Lingering))
    second.restore(blob)
    assert head + _run(second, lines[2:]) == whole
    second.close()


def test_a_rule_whose_form_the_pipeline_does_not_run_is_said_so(linger: None) -> None:
    """With the default registry the linger rule loads and classifies, but nothing runs it: nothing
    escalates, and explain says why."""
    p = Pipeline(topology_from_dict(example_topology()), _rulesets())
    records = _run(p, _lines(), until=T0 + 400)
    assert not any(r["root_cause"]["alarm_id"].startswith("rule:linger/") for r in records)
    (entry,) = [r for r in explain_alarm(p.query, KEY)["rules"] if r["rule"] == "linger/hot"]
    assert entry["matched"]
    assert entry["outcome"] == "no form of the core runs it"
    p.close()


def test_the_added_schema_validates_with_file_lines_and_scopes(linger: None) -> None:
    """A registered form's rules are checked like the built-in ones: an error names the form's own
    key and its line; the ruleset's scope is merged into its alarm matches; unregistered, the key is
    an unknown form."""
    text = (
        "name: hot\n"
        "defaults:\n"
        "  scope: {site: s1}\n"
        "rules:\n"
        "  - name: warm\n"
        "    linger:\n"
        "      match: {probable_cause: highTemperature}\n"
        "      hold: soon\n"
        "      raise: {probable_cause: coolingFailure}\n"
    )
    with pytest.raises(RulesetError) as err:
        parse_ruleset(text, "hot.yaml")
    assert (err.value.line, err.value.rule) == (8, "warm")
    assert err.value.location == "line 8: rule 'warm', rules[0].linger.hold"
    rs = parse_ruleset(text.replace("hold: soon", "hold: 2m"), "hot.yaml")
    spec = rs.rules[0].spec
    assert isinstance(spec, Linger)
    assert set(spec.match) == {"probable_cause", "site"}
    assert (rs.rules[0].form, spec.hold) == ("linger", 120.0)
    with pytest.raises(RulesetError, match="unknown field 'added'"):
        ruleset_from_data({"name": "x", "rules": [{"name": "r", "added": {"form": "linger"}}]}, "<x>")
    unregister_form("linger")
    with pytest.raises(RulesetError, match="exactly one form"):
        parse_ruleset(text, "hot.yaml")


def _names(fn: Any) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    }


def test_the_compiler_and_the_language_name_no_form(linger: None) -> None:
    """What a form's rules are classified by and inherit from the ruleset's scope is its own
    schema's answer (``FormSpec.alarm_parts``, ``FormSpec.scoped``): the compiler's ``_parts`` and
    the language's ``scoped`` name no form, built-in or added, so a new form touches only its
    module, its schema and a test (this file). The added form's rule goes the same way as a
    built-in one's: its parts are its alarm matches, by field name, scoped."""
    schemas = {
        name
        for name, obj in vars(schema_module).items()
        if isinstance(obj, type) and issubclass(obj, FormSpec) and obj is not FormSpec
    }
    assert {"Group", "Inhibit", "Pair", "PriorityOverride", "FormSchema"} <= schemas
    assert _names(compiler_module._parts) & schemas == set()
    assert _names(schema_module.scoped) & schemas == set()
    rs = parse_ruleset(
        "name: hot\ndefaults: {scope: {site: s1}}\nrules:\n  - name: warm\n    linger:\n"
        "      match: {probable_cause: highTemperature}\n      hold: 2m\n"
        "      raise: {probable_cause: coolingFailure}\n",
        "hot.yaml",
    )
    ((part, match),) = compiler_module._parts(rs.rules[0])
    assert (part, set(match)) == ("match", {"probable_cause", "site"})


def test_idle_forms_are_left_out_of_the_alarm_path() -> None:
    """A built-in form with no rule of its form loaded and nothing held is idle: the registry calls
    neither its ``observe`` (alarm facts), ``tick`` nor ``next_due``; one with a rule is called."""
    pipeline = Pipeline(topology_from_dict(example_topology()), load_rulesets(None))
    forms = pipeline.forms
    assert [f.name for f in forms.timed] == ["correlator"]
    assert [f.name for f in forms.scheduled] == ["correlator"]
    assert len(forms.observe(Released("x"), 0.0)) == 1  # one outcome per observer: the correlator's
    bounce = {
        "name": "bounce",
        "pair": {"first": {"probable_cause": "portFlap"}, "window": "2m", "on_pair": "discard"},
    }
    pair_rules = [*load_rulesets(None), ruleset_from_data({"name": "t", "rules": [bounce]}, "test")]
    paired = Pipeline(topology_from_dict(example_topology()), pair_rules).forms
    assert [f.name for f in paired.timed] == ["correlator", "pairs"]
    assert [f.name for f in paired.scheduled] == ["correlator", "pairs"]
