"""Why a ``correlate`` rule related an alarm to another, or why not (``Correlator.explain``).

A match on a side is not enough: the other side must match an alarm in the same correlation scope
(the sids the correlator asserts both under) within the rule's window, and the engine keeps an
alarm's first explanation, refuses cycles and forgets resolved incidents. The candidates on the
other side are found the way durable would join them (``Correlator.scopes``), nearest in time first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection

from engine.core.alarms import ActiveAlarm
from engine.core.forms.base import MAX_LISTED, Seen, Verdict, few
from engine.model.topology import Topology
from engine.rules.compiler import CompiledRule
from engine.rules.schema import neighbour_hops

MAX_CANDIDATES = 5000  # other alarms examined per correlate rule for "why not" (the nearest in time first)

Scopes = Callable[[str, str, str], frozenset[str]]


def explain_correlate(cr: CompiledRule, seen: Seen, topology: Topology, scopes: Scopes) -> Verdict:
    fired, sup, explains = seen.fired, seen.sup, seen.explains
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
            said.append("symptom side matched, but " + _no_root(cr, seen, topology, scopes))
    if root_m:
        mine = explains.get(q, [])
        if mine:
            decided = True
            said.append(f"root side matched: explains {few(mine)} through this rule")
        else:
            said.append("root side matched, but " + _no_symptom(cr, seen, topology, scopes))
    if not (root_m or sym_m):
        said.append("neither side matched")
    return Verdict(decided, "; ".join(said))


def _in_scope(
    cr: CompiledRule, seen: Seen, topology: Topology, scopes: Scopes, *, a_is: str
) -> list[ActiveAlarm]:
    """Other alarms in the rule's scope with the alarm (as root or symptom), nearest in time first,
    at most ``MAX_CANDIDATES``: the candidates for the other side, before asking which match it.

    Each element holding alarms is tested with the join's own scopes; only the elements the
    topology puts near enough to share one are looked at when they are fewer than the elements
    holding alarms (``_near``), so that an explanation in a large storm costs what the rule's
    reach holds, not every alarm held."""
    a, evidence = seen.alarm, seen.evidence
    mine = scopes(cr.relation, a.ne_id, "root" if a_is == "root" else "sym")
    theirs = "sym" if a_is == "root" else "root"
    held = evidence.elements_with_alarms()
    near = _near(cr.relation, a.ne_id, topology, fewer_than=len(held))
    elements = list(held) if near is None or len(near) >= len(held) else [ne for ne in near if ne in held]
    out: list[ActiveAlarm] = []
    for ne in elements:  # one scope test per element, not per alarm
        if mine & scopes(cr.relation, ne, theirs):
            out.extend(x for x in evidence.alarms_on(ne) if x.key != a.key)
    out.sort(key=lambda x: (abs(x.first_seen - a.first_seen), x.key))
    return out[:MAX_CANDIDATES]


def _near(
    relation: str, ne_id: str, topology: Topology, *, fewer_than: float = math.inf
) -> Collection[str] | None:
    """Every element that may share a correlation scope with ``ne_id`` in ``relation`` (a superset:
    ``_in_scope`` still tests each), or None where the topology keeps no index for it (or, along the
    paths, where they hold ``fewer_than`` elements or more: no union of large sets is built then)."""
    if relation == "same_element":
        return (ne_id,)
    if relation in ("downstream_of", "upstream_of"):  # along its paths, either way
        up, down = topology.ancestors(ne_id), topology.descendants(ne_id)
        return up | down | {ne_id} if len(up) + len(down) + 1 < fewer_than else None
    el = topology.element(ne_id)
    if relation == "same_site":
        return topology.elements_at_site(el.site) if el.site else ()
    if relation == "same_region":
        return topology.elements_in_region(el.region) if el.region else ()
    hops = neighbour_hops(relation)
    if hops is not None:  # a neighbour's neighbours include it: the relation is symmetric
        return topology.neighbours(ne_id, hops)
    return None  # same_service_path: every element holding alarms is tested


def _matching(cr: CompiledRule, seen: Seen, side: str) -> Callable[[ActiveAlarm], bool]:
    """Whether an alarm matches ``side`` of the rule. Each answer asserts a fact in the matcher's
    durable host, the dear part of an explanation: the callers ask it only of the candidates whose
    answer they use (those within the window, and the nearest one), not of every alarm in scope."""
    action, fired = f"{cr.qualified}#{side}", seen.evidence.fired
    return lambda x: action in fired(x)


def _no_root(cr: CompiledRule, seen: Seen, topology: Topology, scopes: Scopes) -> str:
    """Why a symptom-side match was not explained through this rule (``sup``: by another one)."""
    a, sup, book = seen.alarm, seen.sup, seen.evidence
    in_scope = _in_scope(cr, seen, topology, scopes, a_is="symptom")
    is_root = _matching(cr, seen, "root")
    where = scope_phrase(cr.relation, a, topology, a_is="symptom")
    inside = [
        r
        for r in in_scope
        if r.first_seen - cr.lead <= a.first_seen <= r.first_seen + cr.window and is_root(r)
    ]
    if not inside:
        r = next((r for r in in_scope if is_root(r)), None)  # the nearest in time
        if r is None:
            return f"no root within its window: no alarm {where} matches the root side"
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
    if book.top(r.key) == a.key:
        return (
            f"{r.key} would be its root, but {a.key} already explains {r.key} (directly or through a "
            "chain): no cycles"
        )
    if not a.active and book.incident_of(a.key) is None:
        return (
            f"{r.key} is a root in scope and within the window, yet no explanation is held now: the "
            "incident that held it has resolved (resolved incidents and their explanations are "
            "forgotten); explain an earlier moment (--at)"
        )
    if book.incident_of(r.key) is None and not r.active:
        return (
            f"{r.key} is a root in scope and within the window, but it is cleared and its incident "
            "has resolved: a resolved incident explains nothing more"
        )
    return (
        f"{r.key} is a root in scope and within the window, yet the engine did not pair them: the "
        "root's facts had expired or were retracted, or this alarm was correlated again later (as "
        "of that moment, after an incident resolved)"
    )


def _no_symptom(cr: CompiledRule, seen: Seen, topology: Topology, scopes: Scopes) -> str:
    a, book = seen.alarm, seen.evidence
    is_symptom = _matching(cr, seen, "symptom")
    where = scope_phrase(cr.relation, a, topology, a_is="root")
    inside = [
        s
        for s in _in_scope(cr, seen, topology, scopes, a_is="root")
        if a.first_seen - cr.lead <= s.first_seen <= a.first_seen + cr.window and is_symptom(s)
    ]
    if not inside:
        return (
            f"no alarm {where} matches the symptom side within its window (-{cr.lead:g} s … "
            f"+{cr.window:g} s): it explains nothing through this rule"
        )
    said = []
    other = [(s, sup) for s in inside if (sup := book.suppression(s.key)) is not None]
    if other:
        listed = ", ".join(f"{s.key} by {sup.root} ({sup.rule})" for s, sup in other[:MAX_LISTED])
        more = f" and {len(other) - MAX_LISTED} more" if len(other) > MAX_LISTED else ""
        said.append(
            f"{len(other)} alarm(s) {where} within the window were already explained otherwise: "
            f"{listed}{more}"
        )
    free = [s.key for s in inside if book.suppression(s.key) is None]
    if free:
        said.append(
            f"{few(free)} {where} within the window are not explained by it (they may be the "
            "root of its own chain, or the root's facts had gone)"
        )
    return "; ".join(said)


def scope_phrase(relation: str, a: ActiveAlarm, topology: Topology, *, a_is: str) -> str:
    """Where the other side of a relation must be, in words: ``at or above olt-7``, ``at site s1``."""
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
    hops = neighbour_hops(relation)
    if hops is not None:
        return f"within {hops} links of {a.ne_id} (neither on it, nor above, nor below it)"
    return "on a path of a service type through " + a.ne_id
