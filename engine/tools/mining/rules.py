"""From co-occurrence counts to a reviewed-ready ruleset: selection, orientation, windows, YAML.

Pure: counts in, a ruleset document (and the effects it found) out. See docs/mining.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine.model.topology import MAX_HOPS
from engine.rules.schema import MIN_HOPS
from engine.tools.mining.fit import Candidate, exposure, fit
from engine.tools.mining.stats import (
    LAG_BOUNDS,
    MIRROR,
    NEIGHBOUR,
    RELATION_ORDER,
    Counts,
    Key,
    lag_quantile,
)

ORIENTATIONS = ("topology", "time")
"""How ``select`` orients a pair of types (``engine rules mine --orient``)."""

EXPRESSIBLE = ("same_element", "downstream_of", "upstream_of", "neighbour", "same_site")
"""Relations the ruleset language has. ``neighbour`` rules are written with the hops they were
mined with (``Counts.hops``) when the language allows it (``MIN_HOPS`` .. ``MAX_HOPS``); mined
farther, they are reported (``Mined.unexpressed``), not written."""


def expressible(relation: str, counts: Counts) -> bool:
    """Whether a rule of ``relation``, mined into ``counts``, can be written as a ruleset rule."""
    return relation in EXPRESSIBLE and (relation != NEIGHBOUR or MIN_HOPS <= counts.hops <= MAX_HOPS)


@dataclass(frozen=True)
class Thresholds:
    min_support: int = 5  # evidence: symptoms preceded by the root in the relation
    min_confidence: float = 0.005  # evidence / raises of the symptom type
    min_lift: float = 1.5  # (evidence + 1) / (shifted baseline + 1), in the rule's window
    min_z: float = 3.0  # the evidence's excess over the baseline, about a z-score (poisson_z)
    min_window: float = 5.0
    lead: float = 1.0
    root_min_followed: float = 0.3  # a down root: followed by another alarm on or below its element
    root_min_lift: float = 2.0
    orient: str = "topology"  # a pair's direction: "topology" (raised nearer the top) or "time"
    explain_away: bool = False  # drop the candidates the joint fit (``fit``) explains away


@dataclass(frozen=True)
class MinedRule:
    root: str
    symptom: str
    relation: str
    support: int
    strict: int
    reverse_strict: int
    baseline: int
    confidence: float
    lift: float
    window: float  # the window written: where the support most exceeds twice its baseline (``_reach``)
    lag_p50: float
    lead: float  # how long the root may come after the symptom
    follows: bool = False  # oriented by topology against the time order: the root came after
    attributed: float | None = None  # the symptoms the joint fit gives this rule (``fit``)
    rate: float | None = None  # α / μ of the joint fit: times the symptom's background rate
    explained: bool = False  # explained away by the joint fit: its attributed support fails a floor
    lift_window: float = 0.0  # the window of highest lift: the support, confidence and lift are within it
    reach_support: int = 0  # the support within ``window``
    reach_baseline: int = 0  # the time-shifted baseline within ``window``
    episodes: tuple[int, int, int] | None = None  # oriented by ``_by_episodes``: root first, symptom
    # first, both in the same second (episodes on one element)

    @property
    def name(self) -> str:
        return f"{_slug(self.root)}-explains-{_slug(self.symptom)}-{self.relation.replace('_', '-')}"


@dataclass(frozen=True)
class RootType:
    probable_cause: str
    raises: int
    followed: float
    base_followed: float
    lift: float


@dataclass(frozen=True)
class Mined:
    rules: tuple[MinedRule, ...]  # ordered by confidence (then support, names)
    roots: tuple[RootType, ...]  # element-down types
    unexpressed: tuple[MinedRule, ...]  # neighbour rules mined farther than the language's hops
    counts: Counts
    explained_away: int = 0  # candidates the joint fit explained away (``Thresholds.explain_away``)

    def type_graph(self) -> frozenset[tuple[str, str]]:
        """The cross-type (cause, effect) pairs of the rules, every relation together."""
        return frozenset((r.root, r.symptom) for r in (*self.rules, *self.unexpressed) if r.root != r.symptom)


def _slug(cause: str) -> str:
    out = "".join(ch if ch.isalnum() else "-" for ch in cause.lower()).strip("-")
    return out[:24] or "x"


def poisson_z(observed: int, expected: float) -> float:
    """How far ``observed`` is above a Poisson count of mean ``expected`` (at least 0.5): the signed
    root of the likelihood-ratio statistic, about a z-score; 0 when not above."""
    mean = max(expected, 0.5)
    if observed <= mean:
        return 0.0
    return math.sqrt(max(0.0, 2 * (observed * math.log(observed / mean) - (observed - mean))))


def _passing(
    evidence: list[int], baseline: list[int] | None, raises: int, th: Thresholds
) -> Iterator[tuple[int, int, int]]:
    """``(bucket, support, baseline)`` of each lag window, shortest first, whose support, confidence
    and excess over the baseline (``poisson_z``) pass the floors; support and baseline are counted
    up to that bucket's bound."""
    n = b = 0
    for i in range(len(LAG_BOUNDS)):
        n += evidence[i]
        b += baseline[i] if baseline is not None else 0
        if n >= th.min_support and n / raises >= th.min_confidence and poisson_z(n, b) >= th.min_z:
            yield i, n, b


def _window(evidence: list[int], baseline: list[int] | None, raises: int, th: Thresholds) -> int | None:
    """The lag bucket whose bound is the window of the rule's figures: of the windows that pass the
    floors (``_passing``), the one with the highest lift (the shortest on a tie); None when none
    does. The rule is kept, oriented and fitted by the figures within it; it is written with the
    window of ``_reach``."""
    best: tuple[float, int] | None = None
    for i, n, b in _passing(evidence, baseline, raises, th):
        lift = (n + 1) / (b + 1)
        if best is None or lift > best[0]:
            best = (lift, i)
    return None if best is None else best[1]


def _reach(evidence: list[int], baseline: list[int] | None, raises: int, th: Thresholds) -> int | None:
    """The lag bucket whose bound is the window the rule is written with: of the windows that pass
    the floors (``_passing``), the one where the support most exceeds twice its baseline
    (``support - 2 * baseline`` highest, the shortest on a tie). A lag bucket is worth grouping when
    the symptoms in it are more often caused than coincidental (more than twice the baseline: over
    half of them are the excess), so this is the window where the groupings expected right most
    outnumber those expected wrong; the window of highest lift is the most precise one, and often
    seconds where the cause keeps acting for minutes."""
    best: tuple[int, int] | None = None
    for i, n, b in _passing(evidence, baseline, raises, th):
        if best is None or n - 2 * b > best[0]:
            best = (n - 2 * b, i)
    return None if best is None else best[1]


def select(counts: Counts, th: Thresholds = Thresholds()) -> Mined:
    """Keep the (root type, symptom type, relation) triples above the thresholds, each with its own
    lag window, one direction per pair of types."""
    candidates: dict[Key, MinedRule] = {}
    windows: dict[Key, int] = {}
    for key in sorted(counts.evidence):
        a, b, rel = key
        if counts.evidence[key] < th.min_support:
            continue
        lags = counts.lags[key]
        base_lags = counts.base_lags.get(key)
        i = _window(lags, base_lags, counts.raises[b], th)
        if i is None:
            continue
        n = sum(lags[: i + 1])
        base = sum(base_lags[: i + 1]) if base_lags is not None else 0
        lift = (n + 1) / (base + 1)
        if lift < th.min_lift:
            continue
        mirror = counts.lags.get((b, a, MIRROR[rel]))
        within = [*lags[: i + 1], *([0] * (len(lags) - i - 1))]
        j = _reach(lags, base_lags, counts.raises[b], th)
        j = i if j is None else j  # not reached: the window of highest lift passes the same floors
        candidates[key] = MinedRule(
            root=a,
            symptom=b,
            relation=rel,
            support=n,
            strict=n - lags[0],
            reverse_strict=0 if mirror is None else sum(mirror[1 : i + 1]),
            baseline=base,
            confidence=round(n / counts.raises[b], 4),
            lift=round(lift, 2),
            window=max(th.min_window, LAG_BOUNDS[j]),
            lag_p50=lag_quantile(within, 0.5),
            lead=th.lead,
            lift_window=max(th.min_window, LAG_BOUNDS[i]),
            reach_support=sum(lags[: j + 1]),
            reach_baseline=sum(base_lags[: j + 1]) if base_lags is not None else 0,
        )
        windows[key] = i
    explained_away = 0
    if th.explain_away:
        fitted = _condition(candidates, windows, counts, th)
        candidates = {k: r for k, r in fitted.items() if not r.explained}
        explained_away = len(fitted) - len(candidates)
    kept = _orient(candidates, counts, th)
    kept.sort(key=lambda r: (-r.confidence, -r.support, r.root, r.symptom, RELATION_ORDER.index(r.relation)))
    # Every kept triple is written: at most one rule per (root type, symptom type, relation), so at
    # most 5 x types^2, the triples whose counters the counting already holds; the rule engine has no
    # limit per relation (the compiler splits the match rules into rulesets of 255).
    rules = [r for r in kept if expressible(r.relation, counts)]
    unexpressed = tuple(r for r in kept if not expressible(r.relation, counts))
    return Mined(
        rules=tuple(rules),
        roots=_roots(counts, tuple(rules), th),
        unexpressed=unexpressed,
        counts=counts,
        explained_away=explained_away,
    )


def _condition(
    candidates: Mapping[Key, MinedRule], windows: Mapping[Key, int], counts: Counts, th: Thresholds
) -> dict[Key, MinedRule]:
    """The cross-type candidates of each symptom type fitted together (``fit``), each annotated with
    what the fit attributes to it and its rate; ``explained`` when that support, over the
    candidate's baseline, no longer passes the support, z or lift floor. Repeats of a type (A
    explains A) are left as they are."""
    if not counts.has_patterns:
        raise ValueError("explain_away needs the counts' patterns (CoOccurrence(patterns=True))")
    per_symptom: dict[str, list[Candidate]] = {}
    for (a, b, rel), r in candidates.items():
        if a != b:
            i = windows[(a, b, rel)]
            chance = exposure(counts.baseline[(a, b, rel)], counts.raises[b], LAG_BOUNDS[i], counts.max_lag)
            per_symptom.setdefault(b, []).append(Candidate(a, rel, i, r.support, r.baseline, chance))
    fitted = fit(counts, per_symptom)
    out: dict[Key, MinedRule] = {}
    for key, r in candidates.items():
        f = fitted.get(key)
        if f is None:
            out[key] = r
            continue
        n = round(f.attributed + r.baseline)
        explained = (
            f.attributed < th.min_support
            or poisson_z(n, r.baseline) < th.min_z
            or (n + 1) / (r.baseline + 1) < th.min_lift
        )
        out[key] = replace(r, attributed=round(f.attributed, 1), rate=round(f.rate, 2), explained=explained)
    return out


def _orient(candidates: Mapping[Key, MinedRule], counts: Counts, th: Thresholds) -> list[MinedRule]:
    """One direction per pair of types, over every relation.

    By time (the default), when both directions were kept: the one of higher lift (a cause precedes
    its effect further above chance than the effect precedes the cause); on a tie the one in which
    the root came strictly first more often, then the more frequent type as the root, then by name.

    By topology: the type raised, on average, nearer the top of the network (fewer dependency hops
    up to an element that depends on nothing) is the cause, whichever came first; its rules are the
    ones kept that way round, or, when only the other way was kept, those turned round (the root
    then follows its symptom: the rule's lead is the window, see ``_turned``). Types raised at the
    same mean depth (a network without links) are oriented by time. Except a pair kept both ways
    whose support is mostly on one element (``same_element`` over half of it, both directions, every
    relation): where they meet the depth is the same, and the types' mean depths say only where
    their other raises are, so the order in which their bursts on that element begin decides when
    it is decisive (``_by_episodes``), the depth otherwise. At equal depth the time order (the
    lift) decides, as before.
    """
    first: dict[tuple[str, str], int] = {}
    best: dict[tuple[str, str], float] = {}
    same: dict[frozenset[str], int] = {}
    total: dict[frozenset[str], int] = {}
    for r in candidates.values():
        if r.root != r.symptom:
            first[(r.root, r.symptom)] = first.get((r.root, r.symptom), 0) + r.strict
            best[(r.root, r.symptom)] = max(best.get((r.root, r.symptom), 0.0), r.lift)
            pair = frozenset((r.root, r.symptom))
            total[pair] = total.get(pair, 0) + r.support
            same[pair] = same.get(pair, 0) + (r.support if r.relation == "same_element" else 0)
    kept: list[MinedRule] = []
    for (a, b, _), rule in candidates.items():
        if a == b:
            kept.append(rule)
            continue
        if th.orient == "topology":
            up = _nearer_the_top(a, b, counts)
            pair = frozenset((a, b))
            both = up is not None and (b, a) in first and 2 * same[pair] > total[pair]
            by_episodes = _by_episodes(a, b, counts, th) if both else None
            if by_episodes is not None:
                if by_episodes == a:
                    ties = counts.first_ties[(min(a, b), max(a, b))]
                    kept.append(replace(rule, episodes=(counts.first[(a, b)], counts.first[(b, a)], ties)))
                continue
            if up == b:  # the pair is b → a: kept as b's rules, or as this one turned round
                if (b, a) not in first:
                    kept.append(_turned(rule, th))
                continue
            if up == a:
                kept.append(rule)
                continue
        if (b, a) in first and _loses(a, b, first, best, counts):
            continue  # the pair is kept the other way round
        kept.append(rule)
    return kept


def _by_episodes(a: str, b: str, counts: Counts, th: Thresholds) -> str | None:
    """The type whose bursts on one element begin before the other's, when that order is decisive:
    of the episodes (``engine.tools.mining.stats``) holding both, the first raise of one strictly
    before the other's in clearly more of them (a sign test, ``|n_ab - n_ba| / sqrt(n_ab + n_ba)``
    at least ``min_z``, the same floor as the evidence's excess); None otherwise, and always on a
    tie (with ``min_z`` 0 a tie would pass, and each direction's rule would yield to the other)."""
    ab, ba = counts.first[(a, b)], counts.first[(b, a)]
    if ab == ba or abs(ab - ba) / math.sqrt(ab + ba) < th.min_z:
        return None
    return a if ab > ba else b


def _nearer_the_top(a: str, b: str, counts: Counts) -> str | None:
    """The type of the lower mean depth, or None when they are equal (compared exactly)."""
    da, db = counts.depth.get(a, 0) * counts.raises[b], counts.depth.get(b, 0) * counts.raises[a]
    return None if da == db else a if da < db else b


def _turned(rule: MinedRule, th: Thresholds) -> MinedRule:
    """``rule`` (B explains A) as A explains B: the same evidence, A's element in the mirrored
    relation, B raised up to the window *before* A (the lead), or up to ``min_window`` after it."""
    return MinedRule(
        root=rule.symptom,
        symptom=rule.root,
        relation=MIRROR[rule.relation],
        support=rule.support,
        strict=rule.reverse_strict,
        reverse_strict=rule.strict,
        baseline=rule.baseline,
        confidence=rule.confidence,
        lift=rule.lift,
        window=th.min_window,
        lag_p50=rule.lag_p50,
        lead=max(th.lead, rule.window),
        follows=True,
        attributed=rule.attributed,
        rate=rule.rate,
        explained=rule.explained,
        lift_window=rule.lift_window,
        reach_support=rule.reach_support,
        reach_baseline=rule.reach_baseline,
    )


def _loses(
    a: str,
    b: str,
    first: Mapping[tuple[str, str], int],
    best: Mapping[tuple[str, str], float],
    counts: Counts,
) -> bool:
    """Whether a → b loses to b → a by time (see ``_orient``)."""
    if best[(a, b)] != best[(b, a)]:
        return best[(a, b)] < best[(b, a)]
    ab, ba = first[(a, b)], first[(b, a)]
    if ab != ba:
        return ab < ba
    if counts.raises[a] != counts.raises[b]:
        return counts.raises[a] < counts.raises[b]
    return a > b


def _roots(counts: Counts, rules: tuple[MinedRule, ...], th: Thresholds) -> tuple[RootType, ...]:
    """Types that behave as element-down roots: the root of a kept cross-type rule on the same or a
    downstream element, more often a root than a symptom in the kept rules (by support), and usually
    followed by other alarms on its element or below, far more often than by chance."""
    as_root: dict[str, int] = {}
    as_symptom: dict[str, int] = {}
    for r in rules:
        if r.root != r.symptom:
            as_symptom[r.symptom] = as_symptom.get(r.symptom, 0) + r.support
            if r.relation in ("same_element", "downstream_of"):
                as_root[r.root] = as_root.get(r.root, 0) + r.support
    out: list[RootType] = []
    for kind in sorted(k for k, n in as_root.items() if n > as_symptom.get(k, 0)):
        done = counts.finished.get(kind, 0)
        if not done:
            continue
        followed = counts.followed.get(kind, 0) / done
        base = counts.base_followed.get(kind, 0) / done
        lift = (counts.followed.get(kind, 0) + 1) / (counts.base_followed.get(kind, 0) + 1)
        if followed >= th.root_min_followed and lift >= th.root_min_lift:
            out.append(
                RootType(kind, counts.raises[kind], round(followed, 4), round(base, 4), round(lift, 2))
            )
    return tuple(out)


def _duration(seconds: float) -> str:
    s = math.ceil(seconds)
    if s % 3600 == 0:
        return f"{s // 3600}h"
    if s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"


def ruleset_document(mined: Mined, *, name: str, source: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ruleset as a YAML-ready mapping: one correlate rule per kept triple, with its figures."""
    c = mined.counts
    rules: list[dict[str, Any]] = []
    for r in mined.rules:
        what = "a repeat of" if r.root == r.symptom else "caused by"
        lag = _duration(r.lag_p50) if r.lag_p50 else "0s"
        figures = r.lift_window or (r.lead if r.follows else r.window)  # the window of highest lift
        reach = r.lead if r.follows else r.window  # the window written (the lead, turned round)
        grouped = (
            f"; grouped within {_duration(reach)}, where {r.reach_support} followed against "
            f"{r.reach_baseline} one hour earlier (the window where they most exceed twice that)"
            if r.lift_window and _duration(reach) != _duration(figures)
            else ""
        )
        if r.follows:
            evidence = (
                f"oriented by topology ({r.root} is raised nearer the top of the network) though "
                f"{r.symptom} comes first: {r.symptom} preceded {r.support} of {r.root}'s raises within "
                f"{_duration(figures)}, confidence {r.confidence:.3f}, lift {r.lift:.1f} (time-shifted "
                f"baseline {r.baseline}){grouped}; {r.root} first strictly {r.strict} times, the other "
                f"way {r.reverse_strict}; lag median <= {lag}"
            )
        else:
            within = f" within {_duration(figures)}" if grouped else ""
            evidence = (
                f"support {r.support}, confidence {r.confidence:.3f}, lift {r.lift:.1f}{within} "
                f"(time-shifted baseline {r.baseline}){grouped}; first strictly {r.strict} times, the "
                f"other way {r.reverse_strict}; lag median <= {lag}"
            )
        if r.episodes is not None:
            root_first, symptom_first, ties = r.episodes
            evidence += (
                f"; oriented by how their bursts on one element begin: {r.root} raised first in "
                f"{root_first}, {r.symptom} in {symptom_first}, both in the same second in {ties}"
            )
        if r.attributed is not None:
            fitted = r.root if r.follows else r.symptom  # the fit is of the type that came after
            evidence += (
                f"; joint fit with {fitted}'s other candidate causes: {r.attributed:g} of its raises "
                f"attributed, {r.rate:g} times its background rate"
            )
        relation = f"{r.relation} within {c.hops} links" if r.relation == NEIGHBOUR else r.relation
        hops = {"hops": c.hops} if r.relation == NEIGHBOUR else {}
        rules.append(
            {
                "name": r.name,
                "description": f"mined: {r.symptom} is {what} {r.root} ({relation}); {evidence}",
                "correlate": {
                    "root": {"probable_cause": r.root},
                    "symptom": {"probable_cause": r.symptom},
                    "relation": r.relation,
                    **hops,
                    "window": _duration(r.window),
                    "lead": _duration(r.lead) if r.lead else "0s",
                },
            }
        )
    span = (c.last_time or 0.0) - (c.first_time or 0.0)
    return {
        "name": name,
        "description": (
            f"Mined by `engine rules mine` from {source}: {sum(c.raises.values())} raises of "
            f"{len(c.raises)} alarm types on {c.elements} elements over {span / 86400:.1f} days. "
            f"{len(mined.rules)} rules, ordered by confidence"
            + (
                "; pairs of types oriented by topology (the type raised nearer the top of the "
                "network is the cause), then by time"
                if params.get("orient") == "topology"
                else ""
            )
            + (
                f"; {mined.explained_away} candidates explained away by a joint fit of each symptom "
                "type's causes"
                if params.get("explain_away")
                else ""
            )
            + ". Review before use."
        ),
        "rules": rules,
    }


def effects_document(mined: Mined) -> dict[str, Any]:
    """The core config section ``alarms.effects``: learned down roots → outage, the rest degraded."""
    effects: list[dict[str, Any]] = []
    if mined.roots:
        effects.append({"probable_cause": [r.probable_cause for r in mined.roots], "effect": "outage"})
    effects.append({"effect": "degraded"})
    return {"alarms": {"effects": effects}}
