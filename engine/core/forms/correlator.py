"""Correlation: which alarm explains which, by the compiled correlate rules, joined in our code.

durable-rules says which rule parts an alarm matches (``classify``: one single-alias fact, asserted
and retracted at once; the answer is reused for every alarm whose read properties agree, see
``engine.rules.compiler``). The join is ours: each alarm occurrence enters the *scopes* of each
relation (``_scopes``) as a root candidate and/or a symptom candidate, holding the rules whose
``root`` (or ``symptom``) it matches; entering a scope pairs it with the candidates of the other role
already there, rule by rule, and a pair is an ``Explanation`` when the symptom lies in the rule's
window. A ``neighbour`` relation pairs the same candidates without a scope per neighbour: each is kept
once on its element and meets the other role's through the elements between them
(``engine.core.forms.neighbourhood``), so a storm under a hub costs linear, not quadratic, entries.
Candidates leave their scopes when every window has passed (our clock), when the alarm is re-raised,
or when its identity is released.

The correlator decides nothing about incidents: it returns ``Explanation`` s, the incident book
chooses (sorted by ``Explanation.sort_key``, so the order pairs are found in never matters). It also
classifies each alarm for the other forms (``classify``), and says why a correlate rule related an
alarm to another, or why not (``explain``).

durable joined the pairs itself until its C engine was found reading past a freed action frame when
the second fact of a fired join was retracted (``engine.rules.host``): the join moved here, with the
same pairs in the same scopes, and durable keeps the part it does safely (alpha conditions).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter
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
from engine.core.forms.neighbourhood import Neighbourhood
from engine.core.forms.synthetic import QUALITY_SOURCES, raised_by
from engine.rules.compiler import CLASSIFY, CompiledRule, Program, compiled_regexes, service_property
from engine.rules.host import RuleHost, by_rule
from engine.rules.schema import neighbour_hops

__all__ = ["MATCH_CACHE_SIZE", "Correlator", "Explanation"]

MATCH_CACHE_SIZE = 65_536  # distinct match signatures remembered (oldest forgotten first)
_NO_PARTS: frozenset[str] = frozenset()


ScopeKey = tuple[str, str]  # (relation, sid): a scope of the index
# One scope an alarm enters in one role: (its dict of that role's candidates, the other role's, its
# sid). A neighbour relation's entries have no dicts (None, None, the element): its
# ``Neighbourhood`` joins them.
_Entry = tuple[dict[str, "_Candidate"] | None, dict[str, "_Candidate"] | None, str]
# What one alarm entered for one relation and role: (relation, as root, the entries)
_Entered = tuple[str, bool, tuple[_Entry, ...]]
# The rules two candidates share, in rule order, with their compiled rules (empty: none)
_Shared = tuple[tuple[str, "CompiledRule"], ...]


def _nothing_explained(_key: str) -> bool:
    return False


# The alarm fields that decide each fact property of ``Correlator.base_fact`` (the element's
# properties are decided by its id: the topology does not change). ``t`` is the first raise's time.
_DECIDED_BY: dict[str, tuple[str, ...]] = {
    "aid": ("key", "occurrence"),
    "key": ("key",),
    "t": ("first_seen",),
    "ne": ("ne_id",),
    "severity": ("severity",),
    "sev": ("severity",),
    "cause": ("probable_cause",),
    "etype": ("event_type",),
    "sp": ("specific_problem",),
    "effect": ("effect",),
    "etype_ne": ("ne_id",),
    "site": ("ne_id",),
    "region": ("ne_id",),
    "text": ("text",),
}


def match_signature(fact: Mapping[str, Any], reads: Iterable[str]) -> tuple[str, ...]:
    """A fact's match signature: the values of the properties some condition reads (``reads``, the
    program's), on which alone durable's answer for the fact depends. The correlator's cache and the
    explanations' matcher (``engine.core.explain_match``) are keyed by it."""
    return tuple([str(fact.get(p, "")) for p in reads])  # (a list: no generator)


def _match_key(program: Program) -> Callable[[ActiveAlarm], Any] | None:
    """A function of an alarm giving a key that determines every fact property the program's
    conditions read (``Program.reads``): the fields deciding them and the element, read by one
    ``attrgetter``. Two alarms with the same key have the same match signature (a
    finer key than the signature, never a coarser one). None when a read property is not known
    here (the signature is then made from the whole fact)."""
    fields = {"ne_id"}  # always: the fact's element is looked up (an unknown one fails as before)
    for read in program.reads:
        if read.startswith("svc:"):
            continue  # (the element decides it)
        prop = read
        if read.startswith("rx") and read[2:].isdigit() and int(read[2:]) < len(program.regexes):
            prop = program.regexes[int(read[2:])][0]  # the property the regex reads decides it
        decided = _DECIDED_BY.get(prop)
        if decided is None:
            return None
        fields.update(decided)
    return attrgetter(*sorted(fields))


@dataclass(frozen=True, slots=True)
class _Matched:
    """Which rule parts one match signature satisfies."""

    others: frozenset[str]  # non-correlate parts (``ruleset/rule#part``): ``classify``'s answer
    roots: Mapping[str, frozenset[str]]  # relation -> correlate rules whose ``root`` it matches
    symptoms: Mapping[str, frozenset[str]]  # relation -> correlate rules whose ``symptom`` it matches
    # (relation, its ``roots``, its ``symptoms``; None for none) for each relation with either, in
    # the program's order of relations: what the join walks
    relations: tuple[tuple[str, frozenset[str] | None, frozenset[str] | None], ...] = ()


class _Candidate:
    """An alarm occurrence in one scope, in one role, with the rules it may pair by. Never changed
    once made (a plain slotted class: two are made per alarm, and a frozen dataclass sets each
    field through ``object.__setattr__``)."""

    __slots__ = ("aid", "condition", "key", "rules", "t")

    def __init__(self, key: str, aid: str, t: float, rules: frozenset[str], condition: bool = False) -> None:
        self.key = key
        self.aid = aid  # occurrence id
        self.t = t
        self.rules = rules
        self.condition = condition  # ``Correlator.is_condition(key)``: no lead limit as a symptom


class _Scope:
    """The candidates of one (relation, sid), by role, in arrival order. Kept once made (one per
    relation and scope the topology has: elements, sites, regions, services), so the join's scope
    lists hold its two dicts themselves."""

    __slots__ = ("roots", "symptoms")

    def __init__(self) -> None:
        self.roots: dict[str, _Candidate] = {}
        self.symptoms: dict[str, _Candidate] = {}


class Correlator(BaseForm):
    name = "correlator"
    reads_samples = False  # alarms only
    rule_form: str | None = "correlate"

    def __init__(self, ctx: FormContext) -> None:
        program = self._program = ctx.program
        self._topology = ctx.topology
        self._alarm = ctx.alarm
        self._grace = ctx.grace
        self._host = RuleHost()
        for name, definition in program.definitions.items():
            self._host.load(name, definition)
        self._names = list(program.definitions)
        self._matched: dict[tuple[str, ...], _Matched] = {}  # match signature -> parts (bounded)
        self._relations: dict[str, list[str]] = {}  # relation -> its correlate rules, in order
        for rule in program.by_form("correlate"):
            self._relations.setdefault(rule.relation, []).append(rule.qualified)
        self._index: dict[tuple[str, str], _Scope] = {}  # (relation, sid) -> candidates (kept)
        # a neighbour relation's candidates, joined through the elements between them (not scopes)
        self._near: dict[str, Neighbourhood[_Candidate]] = {}
        for relation in program.max_window:
            hops = neighbour_hops(relation)
            if hops is not None:
                self._near[relation] = Neighbourhood(self._topology, hops)
        self._facts: dict[
            str, list[_Entered]
        ] = {}  # alarm key -> the scopes it entered, by relation and role
        self._entered: dict[str, int] = {}  # alarm key -> how many scopes it entered (``fact_count``)
        self._t: dict[str, float] = {}  # alarm key -> the time its candidates were entered as of
        self._expiry: list[tuple[float, int, str, str]] = []  # (due, seq, alarm key, occurrence id)
        self._due: dict[str, tuple[float, str]] = {}
        # how long candidates must stay: the largest window or lead of any relation
        self._lifetime = max(program.max_window.values(), default=0.0)
        self.outside_window = 0  # pairs joined that the window check turned down
        self.asserts = 0  # candidates entered into scopes
        self.retracts = 0  # candidates removed
        self.firings = 0  # pairs joined (an alarm paired with itself included) and parts classified
        # "ruleset/rule" (joins), "ruleset/rule#part" -> firings: a plain dict, not a ``Counter``
        # (whose ``__delitem__`` makes every item assignment a Python-level ``__setitem__`` call:
        # about 1,000 instructions per count, several counts per pair joined)
        self.rule_firings: dict[str, int] = {}
        self._seq = 0
        self._match_seq = 0
        self._regexes = compiled_regexes(program)
        self._classify = any(r.form != "correlate" for r in program.rules.values())
        self._parts: dict[str, frozenset[str]] = {}  # alarm key -> rule parts its current state matches
        self._sids: dict[tuple[str, str, str], frozenset[str]] = {}  # explain's scope lookups
        # the join's scopes per (relation, element), as root and as symptom: see ``_scope_list``
        self._scope_lists: dict[tuple[str, str], tuple[tuple[_Entry, ...], tuple[_Entry, ...]]] = {}
        # Whether an alarm is already a symptom (the pipeline sets the incident book's answer). An
        # alarm keeps its first explanation, so the book ignores every later pair that would explain
        # it again: the join counts such a pair (``firings``) but makes no ``Explanation`` of it
        # (on 24V, 87-92 % of the pairs joined). Nothing is explained when no book is attached.
        self.explained: Callable[[str], bool] = _nothing_explained
        self._classified: tuple[ActiveAlarm, _Matched] | None = None  # see ``classify``
        # the rules two candidates share, in rule order with their compiled rules (``_pair``): one
        # entry per set of rules that pair (the rules bound it)
        self._ordered: dict[frozenset[str], _Shared] = {}
        # a candidate's rules -> the other candidate's rules -> what they share (``_ordered``'s, or
        # empty): one look-up per pair tried, no set made (a candidate's rules are ``_Matched``'s
        # sets, so few distinct ones)
        self._shared: dict[frozenset[str], dict[frozenset[str], _Shared]] = {}
        # The match signature's values, read from the alarm in one call: the alarm fields that
        # decide every fact property some condition reads (``_match_key``), None when a property
        # is read that no field decides alone. Alarms that agree on them share one answer.
        self._key_of = _match_key(program)
        self._by_key: dict[Any, _Matched] = {}  # that key -> the answer (bounded like ``_matched``)

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
        """Remove the candidates whose every window has passed."""
        while self._expiry and self._expiry[0][0] <= now:
            due, _, key, occ = heapq.heappop(self._expiry)
            if self._due.get(key) == (due, occ):  # not re-observed since this entry was pushed
                self.forget(key)
        return NOTHING

    def explain(self, rule: CompiledRule, seen: Seen) -> Verdict:
        return explain_correlate(rule, seen, self._topology, self.scopes)

    def scopes(self, relation: str, ne_id: str, role: str) -> frozenset[str]:
        """The correlation scopes (sids) an alarm on ``ne_id`` enters in ``role`` (``root`` or
        ``sym``) for one relation: "in scope" means exactly what the join pairs (for a neighbour
        relation, the root's element among the symptom's neighbours: what its ``Neighbourhood``
        pairs, ``tests/test_neighbour_join.py``). Remembered, but not for a neighbour relation: a
        symptom's set holds every neighbour (up to 20,205 within 3 links on the bench's
        50,000-element network)."""
        k = (relation, ne_id, role)
        hit = self._sids.get(k)
        if hit is None:
            hit = frozenset(sid for sid, r in self._scopes(relation, ne_id) if r == role)
            if neighbour_hops(relation) is None:
                self._sids[k] = hit
        return hit

    @property
    def program(self) -> Program:
        return self._program

    @property
    def host(self) -> RuleHost:
        """The durable host that matches alarms against the rule parts (never joins)."""
        return self._host

    def fact_count(self) -> int:
        """Candidates in scopes now."""
        return sum(self._entered.values())

    def scope_count(self) -> int:
        """Scopes holding at least one candidate now (for a neighbour relation: elements, per role)."""
        held = sum(1 for scope in self._index.values() if scope.roots or scope.symptoms)
        return held + sum(near.elements() for near in self._near.values())

    def firings_by_rule(self) -> Counter[str]:
        """Firings per qualified rule: its pairs joined plus the matches of its condition parts in
        classification (``ruleset/rule#part``). They sum to ``firings``."""
        return by_rule(self.rule_firings)

    def next_due(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    def _assert(self, alarm: ActiveAlarm, now: float, *, t: float, join: bool = True) -> list[Explanation]:
        """Enter an alarm occurrence, as of ``t``, into its scopes; return every pair the rules join
        (none with ``join=False``: a snapshot's candidates re-entered, their pairs applied before)."""
        key = alarm.key
        occ = alarm.occurrence_id
        if key in self._facts or key in self._due:
            self.forget(key)  # one live occurrence per identity: a re-raise replaces the old one
        # the match ``classify`` just made of this alarm, on its way to this join (taken once)
        last, self._classified = self._classified, None
        matched = last[1] if last is not None and last[0] is alarm else self._match(alarm)
        entered: list[_Entered] = []
        count = 0
        out: list[Explanation] = []
        # a storm summarises its members: it explains, it is never explained. Both are alarms a
        # rule or an engine part raised (``rule:...``): an alarm from the network is neither
        synthetic = key.startswith("rule:")
        summary = synthetic and self._is_storm(key)
        condition = synthetic and self.is_condition(key)
        as_root = as_symptom = None  # this occurrence's candidate in each role, made once
        scope_lists, ne_id = self._scope_lists, alarm.ne_id
        for relation, roots, matched_symptoms in matched.relations:
            symptoms = None if summary else matched_symptoms
            if not roots and not symptoms:
                continue  # an alarm no rule of this relation can pair enters none of its scopes
            as_roots, as_symptoms = scope_lists.get((relation, ne_id)) or self._scope_list(relation, ne_id)
            # the root's scopes, then the symptom's (the book sorts what they pair: order is free)
            if roots and as_roots:
                if as_root is None or as_root.rules is not roots:
                    as_root = _Candidate(key, occ, t, roots, condition)
                self._enter(relation, True, as_root, as_roots, join, out)
                entered.append((relation, True, as_roots))
                count += len(as_roots)
            if symptoms and as_symptoms:
                if as_symptom is None or as_symptom.rules is not symptoms:
                    as_symptom = _Candidate(key, occ, t, symptoms, condition)
                self._enter(relation, False, as_symptom, as_symptoms, join, out)
                entered.append((relation, False, as_symptoms))
                count += len(as_symptoms)
        if entered:
            self.asserts += count
            self._facts[key] = entered
            self._entered[key] = count
            self._t[key] = t
            if alarm.active and condition:
                self._due[key] = (math.inf, occ)  # lives while the condition holds: see `cleared`
            else:  # ``_expire``, inlined
                due = (now if now > t else t) + self._lifetime + self._grace
                self._seq += 1
                self._due[key] = (due, occ)
                heapq.heappush(self._expiry, (due, self._seq, key, occ))
        return out

    def _enter(  # noqa: PLR0917 (the join's inner step, called per relation and role)
        self,
        relation: str,
        is_root: bool,
        mine: _Candidate,
        entries: tuple[_Entry, ...],
        join: bool,
        out: list[Explanation],
    ) -> None:
        """One candidate into its scopes of one relation in one role, paired first with the other
        role's candidates it meets there (on the neighbours of its element, for a neighbour
        relation): every rule the two share, in rule order. It never meets itself."""
        key, rules = mine.key, mine.rules
        shared = self._shared.get(rules)
        if shared is None:
            shared = self._shared[rules] = {}
        for home, there, sid in entries:
            if home is None:  # a neighbour relation: its ``Neighbourhood`` holds the candidates
                near = self._near[relation]
                role = "root" if is_root else "sym"
                if join:
                    for other in near.others(role, sid):
                        common = shared.get(other.rules)
                        if common is None:
                            common = shared[other.rules] = self._common(rules & other.rules)
                        if common:
                            if is_root:
                                self._pair(mine, other, common, out)
                            else:
                                self._pair(other, mine, common, out)
                near.add(role, sid, key, mine)
                continue
            if join and there:
                if is_root:
                    self._as_root(mine, there, shared, out)
                else:
                    self._as_symptom(mine, there, shared, out)
            home[key] = mine

    def _as_root(
        self,
        r: _Candidate,
        symptoms: dict[str, _Candidate],
        shared: dict[frozenset[str], _Shared],
        out: list[Explanation],
    ) -> None:
        """``_pair`` of a root with each symptom of a scope, inlined (the join's inner loop)."""
        rule_firings = self.rule_firings
        explained = self.explained
        fired = outside = 0
        aid, rt, rkey = r.aid, r.t, r.key
        for s in symptoms.values():
            common = shared.get(s.rules)
            if common is None:
                common = shared[s.rules] = self._common(r.rules & s.rules)
            if not common:
                continue
            fired += len(common)
            if s.aid == aid:  # an alarm is never its own symptom (the pair is counted)
                for name, _ in common:
                    rule_firings[name] = rule_firings.get(name, 0) + 1
                continue
            st = s.t
            known = None  # whether the symptom is explained already: asked once, when needed
            for name, rule in common:
                rule_firings[name] = rule_firings.get(name, 0) + 1
                lead = math.inf if s.condition else rule.lead
                if not rt - lead <= st <= rt + rule.window:
                    outside += 1
                    continue
                if known is None:
                    known = explained(s.key)
                if not known:  # else the book would keep its first explanation
                    out.append(Explanation(rkey, s.key, rule, rt, st))
        self.firings += fired
        self.outside_window += outside

    def _as_symptom(
        self,
        s: _Candidate,
        roots: dict[str, _Candidate],
        shared: dict[frozenset[str], _Shared],
        out: list[Explanation],
    ) -> None:
        """``_pair`` of a symptom with each root of a scope, inlined (the join's inner loop); whether
        the symptom is explained already is asked once, when a pair first needs it."""
        rule_firings = self.rule_firings
        fired = outside = 0
        aid, st, skey, condition = s.aid, s.t, s.key, s.condition
        explained: bool | None = None
        for r in roots.values():
            common = shared.get(r.rules)
            if common is None:
                common = shared[r.rules] = self._common(s.rules & r.rules)
            if not common:
                continue
            fired += len(common)
            if r.aid == aid:  # an alarm is never its own symptom (the pair is counted)
                for name, _ in common:
                    rule_firings[name] = rule_firings.get(name, 0) + 1
                continue
            rt = r.t
            for name, rule in common:
                rule_firings[name] = rule_firings.get(name, 0) + 1
                lead = math.inf if condition else rule.lead
                if not rt - lead <= st <= rt + rule.window:
                    outside += 1
                    continue
                if explained is None:
                    explained = self.explained(skey)
                if not explained:  # else the book would keep its first explanation
                    out.append(Explanation(r.key, skey, rule, rt, st))
        self.firings += fired
        self.outside_window += outside

    def _common(self, rules: frozenset[str]) -> _Shared:
        """Rules in rule order, with their compiled rules (empty for none), one tuple per set."""
        if not rules:
            return ()
        ordered = self._ordered.get(rules)
        if ordered is None:
            compiled = self._program.rules
            ordered = self._ordered[rules] = tuple(
                (name, compiled[name]) for name in sorted(rules, key=lambda q: compiled[q].order)
            )
        return ordered

    def _pair(self, r: _Candidate, s: _Candidate, common: _Shared, out: list[Explanation]) -> None:
        """Join a root and a symptom candidate of one scope by every rule both match (``common``,
        not empty, in rule order)."""
        self.firings += len(common)
        rule_firings = self.rule_firings
        for name, _rule in common:
            rule_firings[name] = rule_firings.get(name, 0) + 1
        if r.aid == s.aid:
            return  # an alarm is never its own symptom
        rt, st = r.t, s.t
        for _, rule in common:
            lead = math.inf if s.condition else rule.lead
            if not rt - lead <= st <= rt + rule.window:
                self.outside_window += 1
                continue
            if self.explained(s.key):
                continue  # explained already: the book would keep its first explanation
            out.append(Explanation(r.key, s.key, rule, rt, st))

    def _match(self, alarm: ActiveAlarm) -> _Matched:
        """The rule parts the alarm's current state matches, decided by durable once per signature
        (the values of the fact properties some condition reads)."""
        key_of = self._key_of
        if key_of is not None:
            k = key_of(alarm)
            hit = self._by_key.get(k)
            if hit is None:
                hit = self._by_signature(alarm)
                if len(self._by_key) >= MATCH_CACHE_SIZE:
                    del self._by_key[next(iter(self._by_key))]
                self._by_key[k] = hit
            return hit
        return self._by_signature(alarm)

    def _by_signature(self, alarm: ActiveAlarm) -> _Matched:
        """``_match`` by the signature of the alarm's fact, asking durable once per signature."""
        fact = self.base_fact(alarm, alarm.first_seen)
        signature = match_signature(fact, self._program.reads)
        hit = self._matched.get(signature)
        if hit is not None:
            return hit
        self._match_seq += 1
        fact.update(sid=CLASSIFY, id=f"m{self._match_seq}", role="x")
        actions = self._host.match(self._names, fact)
        others: set[str] = set()
        roots: dict[str, set[str]] = {}
        symptoms: dict[str, set[str]] = {}
        for action in actions:
            qualified, _, part = action.partition("#")
            rule = self._program.rules[qualified]
            if rule.form != "correlate":
                others.add(action)
            elif part == "root":
                roots.setdefault(rule.relation, set()).add(qualified)
            else:
                symptoms.setdefault(rule.relation, set()).add(qualified)
        by_root = {k: frozenset(v) for k, v in roots.items()}
        by_symptom = {k: frozenset(v) for k, v in symptoms.items()}
        relations = tuple(
            (relation, by_root.get(relation), by_symptom.get(relation))
            for relation in self._program.max_window
            if relation in by_root or relation in by_symptom
        )
        hit = _Matched(frozenset(others), by_root, by_symptom, relations)
        if len(self._matched) >= MATCH_CACHE_SIZE:
            del self._matched[next(iter(self._matched))]
        self._matched[signature] = hit
        return hit

    def _expire(self, key: str, occ: str, due: float) -> None:
        self._seq += 1
        self._due[key] = (due, occ)
        heapq.heappush(self._expiry, (due, self._seq, key, occ))

    def is_condition(self, key: str) -> bool:
        """A KQI or KPI breach (raised by service quality, inference or a ``kpi_threshold`` rule):
        a *condition* that holds while it is active, not an event of its raise time.

        Its candidates stay while it is active, and as a symptom it has no lead limit: a root on its
        path raised at any time while it holds explains it (the degradation was its early sign, or
        the evidence of a fault nobody had alarmed yet), within the rule's window after the root as
        usual.
        """
        source = raised_by(key)
        if source is None:
            return False
        if source in QUALITY_SOURCES:
            return True
        rule = self._program.rules.get(source)
        return rule is not None and rule.form == "kpi_threshold"

    def _cleared(self, alarm: ActiveAlarm, now: float) -> None:
        """An alarm cleared: a condition's candidates now expire like an event's, from the clear."""
        due = self._due.get(alarm.key)
        if due is not None and due[0] == math.inf:
            self._expire(alarm.key, due[1], now + self._lifetime + self._grace)

    def _is_storm(self, key: str) -> bool:
        """A storm alarm raised by a threshold rule (``rule:<ruleset>/<rule>:<key>``)."""
        q = raised_by(key)
        rule = self._program.rules.get(q) if q is not None else None
        return rule is not None and rule.form == "threshold"

    def classify(self, alarm: ActiveAlarm) -> frozenset[str]:
        """The rule parts (``ruleset/rule#part``) of non-correlate forms this alarm matches now.

        Remembered per alarm identity (``parts``) until re-classified.
        """
        if not self._classify:
            return _NO_PARTS
        matched = self._match(alarm)
        self._classified = (alarm, matched)  # the raise's join that follows reads the same state
        parts = matched.others
        self.firings += len(parts)
        rule_firings = self.rule_firings
        for part in parts:  # (``Counter.update``'s count, in the set's order)
            rule_firings[part] = rule_firings.get(part, 0) + 1
        self._parts[alarm.key] = parts
        return parts

    def parts(self, key: str) -> frozenset[str]:
        return self._parts.get(key, _NO_PARTS)

    def drop_parts(self, key: str) -> None:
        self._parts.pop(key, None)

    def close(self) -> None:
        self._host.close()

    # -- snapshot ------------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        """Which alarm occurrences have candidates, as of which time, until when (JSON-ready)."""
        live = []
        for key in self._facts:
            due, occ = self._due[key]
            live.append([key, occ, self._t[key], due if math.isfinite(due) else None])
        return {
            "live": live,
            "expiry": [list(e) for e in self._expiry],
            "seq": self._seq,
            "outside_window": self.outside_window,
            "parts": {k: sorted(v) for k, v in self._parts.items()},
            "host": {
                "asserts": self.asserts,
                "retracts": self.retracts,
                "firings": self.firings,
                "rule_firings": dict(self.rule_firings),
            },
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Re-enter the candidates of a dump without applying what they pair (applied before the
        dump). Candidates are rebuilt from the current alarms and topology, so a reload with new
        rules or topology gets candidates in the new shape."""
        for key, occ, t, due in state["live"]:
            a = self._alarm(key)
            if a is None or a.occurrence_id != occ:
                continue
            self._assert(a, 0.0, t=t, join=False)
            self._due[key] = (math.inf if due is None else due, occ)
        self._expiry = [(due, seq, key, occ) for due, seq, key, occ in state["expiry"]]
        heapq.heapify(self._expiry)
        self._seq = state["seq"]
        self.outside_window = state["outside_window"]
        self._parts = {k: frozenset(v) for k, v in state["parts"].items()}
        host = state["host"]
        self.asserts, self.retracts, self.firings = host["asserts"], host["retracts"], host["firings"]
        # per-rule firings carry over for the rules (and parts) still loaded; a removed rule's go
        known = {r["run"] for d in self._program.definitions.values() for r in d.values()}
        known |= {q for q, r in self._program.rules.items() if r.form == "correlate"}
        self.rule_firings = {a: n for a, n in host.get("rule_firings", {}).items() if a in known}

    def forget(self, key: str) -> None:
        """Remove every candidate of an alarm identity."""
        self._due.pop(key, None)
        self._t.pop(key, None)
        entered = self._facts.pop(key, None)
        if entered is None:
            return
        self.retracts += self._entered.pop(key)
        for relation, is_root, entries in entered:
            for home, _, sid in entries:
                if home is None:
                    self._near[relation].remove("root" if is_root else "sym", sid, key)
                else:
                    del home[key]

    # -- internals -----------------------------------------------------------------------------
    def _scope_list(self, relation: str, ne_id: str) -> tuple[tuple[_Entry, ...], tuple[_Entry, ...]]:
        """The scopes the join enters for one relation and element, as root and as symptom,
        remembered (the topology does not change): ``_scopes``, each with its dict of that role's
        candidates and the other role's (the scope is made here, and kept). A neighbour relation's
        are its element in each role, without dicts (its ``Neighbourhood`` joins them)."""
        k = (relation, ne_id)
        hit = self._scope_lists.get(k)
        if hit is None:
            as_roots: list[_Entry] = []
            as_symptoms: list[_Entry] = []
            if relation in self._near:
                as_roots.append((None, None, ne_id))
                as_symptoms.append((None, None, ne_id))
            else:
                for sid, role in self._scopes(relation, ne_id):
                    scope = self._index.get((relation, sid))
                    if scope is None:
                        scope = self._index[relation, sid] = _Scope()
                    if role == "root":
                        as_roots.append((scope.roots, scope.symptoms, sid))
                    else:
                        as_symptoms.append((scope.symptoms, scope.roots, sid))
            hit = self._scope_lists[k] = (tuple(as_roots), tuple(as_symptoms))
        return hit

    def _scopes(self, relation: str, ne_id: str) -> Iterable[tuple[str, str]]:
        """The (sid, role) pairs an alarm on ``ne_id`` enters for one relation; for a neighbour
        relation, the scopes it would enter (explain's test), which its ``Neighbourhood`` joins
        without entering them: a root and a symptom share one exactly when the join pairs them."""
        el = self._topology.element(ne_id)
        hops = neighbour_hops(relation)
        if hops is not None:  # the root in its element's scope, a symptom in its neighbours'
            yield ne_id, "root"
            for z in self._topology.neighbours(ne_id, hops):
                yield z, "sym"
            return
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
            fact[f"rx{n}"] = "1" if rx.search_kept(str(fact.get(prop, ""))) else "0"
        return fact
