"""Correlation facts: which alarm explains which, decided by the compiled rules on durable-rules.

The correlator asserts one fact per alarm occurrence per scope (see ``compiler``), collects the pairs
durable's joins produce, and retracts facts when their window can no longer matter (our clock).
It decides nothing about incidents: it returns ``Explanation`` s, the incident book chooses.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.core.alarms import ActiveAlarm
from engine.core.forms.synthetic import QUALITY_SOURCES, raised_by
from engine.model.topology import Topology
from engine.rules.compiler import CLASSIFY, CompiledRule, Program, compiled_regexes, service_property
from engine.rules.host import RuleHost


@dataclass(frozen=True, slots=True)
class Explanation:
    """``symptom`` (an alarm key) is explained by ``root`` (an alarm key) through ``rule``."""

    root: str
    symptom: str
    rule: CompiledRule
    root_time: float
    symptom_time: float
    detail: str = ""  # what related them, in words (key values, window), for the suppression reason

    def sort_key(self) -> tuple[int, float, str, float, str]:
        return (self.rule.order, self.root_time, self.root, self.symptom_time, self.symptom)


class Correlator:
    def __init__(self, program: Program, topology: Topology, *, grace: float = 0.0) -> None:
        self._program = program
        self._topology = topology
        self._grace = grace
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

    def observe(self, alarm: ActiveAlarm, now: float, *, t: float | None = None) -> list[Explanation]:
        """Assert the facts of an alarm occurrence; return every pair the rules matched."""
        occ = alarm.occurrence_id
        self.forget(alarm.key)  # one live occurrence per identity: a re-raise replaces the old facts
        base = self._base_fact(alarm, alarm.first_seen if t is None else t)
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

    def cleared(self, alarm: ActiveAlarm, now: float) -> None:
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
            **self._base_fact(alarm, alarm.first_seen),
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

    def load(self, state: Mapping[str, Any], alarm: Callable[[str], ActiveAlarm | None]) -> None:
        """Re-assert the facts of a dump into this (fresh) host without applying what they match.

        The pairs those facts formed were applied before the dump; re-asserting makes durable fire
        them again, and they are discarded here. Facts are rebuilt from the current alarms and
        topology, so a reload with new rules or topology gets facts in the new shape.
        """
        for key, occ, t, due in state["live"]:
            a = alarm(key)
            if a is None or a.occurrence_id != occ:
                continue
            self.observe(a, 0.0, t=t)  # the pairs this fires were applied before the dump
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

    def tick(self, now: float) -> None:
        """Retract facts whose every window has passed."""
        while self._expiry and self._expiry[0][0] <= now:
            due, _, key, occ = heapq.heappop(self._expiry)
            if self._due.get(key) == (due, occ):  # not re-observed since this entry was pushed
                self.forget(key)

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

    def _base_fact(self, alarm: ActiveAlarm, t: float) -> dict[str, Any]:
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
