"""Correlation facts: which alarm explains which, decided by the compiled rules on durable-rules.

The correlator asserts one fact per alarm occurrence per scope (see ``compiler``), collects the pairs
durable's joins produce, and retracts facts when their window can no longer matter (our clock).
It decides nothing about incidents: it returns ``Explanation`` s, the incident book chooses. It also
classifies each alarm (which parts of the other forms' rules it matches, ``classify``), and says why
a correlate rule related an alarm to another, or why not (``explain``).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from engine.core.alarms import ActiveAlarm
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
from engine.core.forms.explain_correlate import explain_correlate
from engine.core.forms.synthetic import QUALITY_SOURCES, raised_by
from engine.rules.compiler import CLASSIFY, CompiledRule, Program, compiled_regexes, service_property
from engine.rules.host import RuleHost

__all__ = ["Correlator", "Explanation"]


class Correlator(BaseForm):
    name = "correlator"
    rule_form = "correlate"

    def __init__(self, ctx: FormContext) -> None:
        program = self._program = ctx.program
        self._topology = ctx.topology
        self._alarm = ctx.alarm
        self._grace = ctx.grace
        self._host = RuleHost()
        for name, definition in program.definitions.items():
            self._host.load(name, definition)
        self._facts: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # alarm key -> asserted facts
        self._expiry: list[tuple[float, int, str, str]] = []  # (due, seq, alarm key, occurrence id)
        self._due: dict[str, tuple[float, str]] = {}
        self.outside_window = 0  # pairs durable joined that our window check turned down
        self._seq = 0
        self._regexes = compiled_regexes(program)
        self._classify = CLASSIFY in program.definitions
        self._parts: dict[str, frozenset[str]] = {}  # alarm key -> rule parts its current state matches
        self._sids: dict[tuple[str, str, str], frozenset[str]] = {}  # explain's scope lookups

    # -- the form --------------------------------------------------------------------------------
    def observe(self, fact: Fact, now: float) -> Outcome:
        if isinstance(fact, Raised):
            found = self._assert(fact.alarm, now, t=fact.t)
            return Outcome(explanations=tuple(found)) if found else NOTHING
        if isinstance(fact, Cleared):
            self._cleared(fact.alarm, now)
        elif isinstance(fact, Released):
            self.forget(fact.key)
        return NOTHING

    def tick(self, now: float) -> Outcome:
        """Retract facts whose every window has passed."""
        while self._expiry and self._expiry[0][0] <= now:
            due, _, key, occ = heapq.heappop(self._expiry)
            if self._due.get(key) == (due, occ):  # not re-observed since this entry was pushed
                self.forget(key)
        return NOTHING

    def explain(self, rule: CompiledRule, seen: Seen) -> Verdict:
        return explain_correlate(rule, seen, self._topology, self.scopes)

    def scopes(self, relation: str, ne_id: str, role: str) -> frozenset[str]:
        """The correlation scopes (sids) an alarm on ``ne_id`` is asserted under in ``role`` (``root``
        or ``sym``) for one relation: "in scope" means exactly what durable joins."""
        k = (relation, ne_id, role)
        hit = self._sids.get(k)
        if hit is None:
            hit = self._sids[k] = frozenset(sid for sid, r in self._scopes(relation, ne_id) if r == role)
        return hit

    @property
    def program(self) -> Program:
        return self._program

    @property
    def host(self) -> RuleHost:
        return self._host

    def fact_count(self) -> int:
        return sum(len(v) for v in self._facts.values())

    def next_due(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    def _assert(self, alarm: ActiveAlarm, now: float, *, t: float) -> list[Explanation]:
        """Assert the facts of an alarm occurrence as of ``t``; return every pair the rules matched."""
        occ = alarm.occurrence_id
        self.forget(alarm.key)  # one live occurrence per identity: a re-raise replaces the old facts
        base = self.base_fact(alarm, t)
        asserted: list[tuple[str, dict[str, Any]]] = []
        out: list[Explanation] = []
        lifetime = 0.0
        summary = self._is_storm(alarm.key)
        for relation in self._program.max_window:
            ruleset = Program.durable_name(relation)
            for sid, role in self._scopes(relation, alarm.ne_id):
                if summary and role == "sym":
                    continue  # a storm summarises its members: it explains, it is never explained
                fact = {**base, "sid": sid, "id": f"{occ}@{sid}#{role}", "role": role}
                for m in self._host.assert_fact(ruleset, fact):
                    ex = self._explanation(m.action, m.facts)
                    if ex is not None:
                        out.append(ex)
                asserted.append((ruleset, fact))
            lifetime = max(lifetime, self._program.max_window[relation])
        if asserted:
            self._facts[alarm.key] = asserted
            if alarm.active and self.is_condition(alarm.key):
                self._due[alarm.key] = (math.inf, occ)  # lives while the condition holds: see `cleared`
            else:
                self._expire(alarm.key, occ, max(now, base["t"]) + lifetime + self._grace)
        return out

    def _expire(self, key: str, occ: str, due: float) -> None:
        self._seq += 1
        self._due[key] = (due, occ)
        heapq.heappush(self._expiry, (due, self._seq, key, occ))

    def is_condition(self, key: str) -> bool:
        """A KQI or KPI breach (raised by service quality, inference or a ``kpi_threshold`` rule):
        a *condition* that holds while it is active, not an event of its raise time.

        Its facts live while it is active, and as a symptom it has no lead limit: a root on its path
        raised at any time while it holds explains it (the degradation was its early sign, or the
        evidence of a fault nobody had alarmed yet), within the rule's window after the root as usual.
        """
        source = raised_by(key)
        if source is None:
            return False
        if source in QUALITY_SOURCES:
            return True
        rule = self._program.rules.get(source)
        return rule is not None and rule.form == "kpi_threshold"

    def _cleared(self, alarm: ActiveAlarm, now: float) -> None:
        """An alarm cleared: a condition's facts now expire like an event's, counted from the clear."""
        due = self._due.get(alarm.key)
        if due is not None and due[0] == math.inf:
            lifetime = max(self._program.max_window.values(), default=0.0)
            self._expire(alarm.key, due[1], now + lifetime + self._grace)

    def _is_storm(self, key: str) -> bool:
        """A storm alarm raised by a threshold rule (``rule:<ruleset>/<rule>:<key>``)."""
        q = raised_by(key)
        rule = self._program.rules.get(q) if q is not None else None
        return rule is not None and rule.form == "threshold"

    def classify(self, alarm: ActiveAlarm) -> frozenset[str]:
        """The rule parts (``ruleset/rule#part``) of non-correlate forms this alarm matches now.

        Asserted into durable's ``classify`` ruleset and retracted at once: single-alias rules fire
        for every matching part. Remembered per alarm identity (``parts``) until re-classified.
        """
        if not self._classify:
            return frozenset()
        fact = {
            **self.base_fact(alarm, alarm.first_seen),
            "sid": CLASSIFY,
            "id": alarm.occurrence_id,
            "role": "x",
        }
        matched = self._host.assert_fact(CLASSIFY, fact)
        self._host.retract_fact(CLASSIFY, fact)
        parts = frozenset(m.action for m in matched)
        self._parts[alarm.key] = parts
        return parts

    def parts(self, key: str) -> frozenset[str]:
        return self._parts.get(key, frozenset())

    def drop_parts(self, key: str) -> None:
        self._parts.pop(key, None)

    def close(self) -> None:
        self._host.close()

    # -- snapshot ------------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        """Which alarm occurrences have live facts, as of which time, until when (JSON-ready)."""
        live = []
        for key, facts in self._facts.items():
            due, occ = self._due[key]
            live.append([key, occ, facts[0][1]["t"], due if math.isfinite(due) else None])
        return {
            "live": live,
            "expiry": [list(e) for e in self._expiry],
            "seq": self._seq,
            "outside_window": self.outside_window,
            "parts": {k: sorted(v) for k, v in self._parts.items()},
            "host": {
                "asserts": self._host.asserts,
                "retracts": self._host.retracts,
                "firings": self._host.firings,
                "rule_firings": dict(self._host.rule_firings),
            },
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Re-assert the facts of a dump into this (fresh) host without applying what they match.

        The pairs those facts formed were applied before the dump; re-asserting makes durable fire
        them again, and they are discarded here. Facts are rebuilt from the current alarms and
        topology, so a reload with new rules or topology gets facts in the new shape.
        """
        for key, occ, t, due in state["live"]:
            a = self._alarm(key)
            if a is None or a.occurrence_id != occ:
                continue
            self._assert(a, 0.0, t=t)  # the pairs this fires were applied before the dump
            self._due[key] = (math.inf if due is None else due, occ)
        self._expiry = [(due, seq, key, occ) for due, seq, key, occ in state["expiry"]]
        heapq.heapify(self._expiry)
        self._seq = state["seq"]
        self.outside_window = state["outside_window"]
        self._parts = {k: frozenset(v) for k, v in state["parts"].items()}
        host = state["host"]
        self._host.asserts, self._host.retracts, self._host.firings = (
            host["asserts"],
            host["retracts"],
            host["firings"],
        )
        # per-rule firings carry over for the rules (actions) still loaded; a removed rule's go
        known = {r["run"] for d in self._program.definitions.values() for r in d.values()}
        self._host.rule_firings = Counter(
            {a: n for a, n in host.get("rule_firings", {}).items() if a in known}
        )

    def forget(self, key: str) -> None:
        """Retract every fact of an alarm identity."""
        self._due.pop(key, None)
        for ruleset, fact in self._facts.pop(key, ()):
            self._host.retract_fact(ruleset, fact)

    # -- internals -----------------------------------------------------------------------------
    def _scopes(self, relation: str, ne_id: str) -> Iterable[tuple[str, str]]:
        """The (sid, role) pairs an alarm on ``ne_id`` is asserted under for one relation."""
        el = self._topology.element(ne_id)
        if relation == "same_service_path":
            for s in sorted(self._topology.services_through(ne_id)):
                yield f"svc:{s}", "root"
                yield f"svc:{s}", "sym"
            return
        own: str | None = None
        if relation in ("downstream_of", "upstream_of", "same_element"):
            own = ne_id
        elif relation == "same_site" and el.site:
            own = f"site:{el.site}"
        elif relation == "same_region" and el.region:
            own = f"region:{el.region}"
        if own is None:
            return
        yield own, "root"
        yield own, "sym"
        if relation == "downstream_of":
            for up in sorted(self._topology.ancestors(ne_id)):
                yield up, "sym"
        elif relation == "upstream_of":
            for up in sorted(self._topology.ancestors(ne_id)):
                yield up, "root"

    def base_fact(self, alarm: ActiveAlarm, t: float) -> dict[str, Any]:
        """An alarm's durable fact as of ``t``, without scope (explain's matcher asserts the same)."""
        el = self._topology.element(alarm.ne_id)
        fact: dict[str, Any] = {
            "aid": alarm.occurrence_id,
            "key": alarm.key,
            "t": t,
            "ne": alarm.ne_id,
            "severity": alarm.severity,
            "sev": alarm.severity_rank,
            "cause": alarm.probable_cause,
            "etype": alarm.event_type,
            "sp": alarm.specific_problem or "",
            "effect": alarm.effect,
            "etype_ne": el.type,
            "site": el.site or "",
            "region": el.region or "",
            "text": alarm.text or "",
        }
        for s in self._program.services & self._topology.services_through(alarm.ne_id):
            fact[service_property(s)] = "1"
        for n, (prop, rx) in enumerate(self._regexes):
            fact[f"rx{n}"] = "1" if rx.search(str(fact.get(prop, ""))) else "0"
        return fact

    def _explanation(self, action: str, facts: Mapping[str, Mapping[str, Any]]) -> Explanation | None:
        """A pair durable joined in one scope, if the symptom lies in the rule's window."""
        r, s = facts["r"], facts["s"]
        if r["aid"] == s["aid"]:
            return None  # an alarm is never its own symptom
        rule = self._program.rules[action]
        rt, st = float(r["t"]), float(s["t"])
        lead = math.inf if self.is_condition(str(s["key"])) else rule.lead
        if not rt - lead <= st <= rt + rule.window:
            self.outside_window += 1
            return None
        return Explanation(
            root=str(r["key"]), symptom=str(s["key"]), rule=rule, root_time=rt, symptom_time=st
        )
