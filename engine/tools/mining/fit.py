"""Explaining away: a Hawkes-style fit of each symptom type's rate over its candidate causes (pure).

The counting in :mod:`engine.tools.mining.stats` scores each (cause, symptom, relation) triple on
its own: when C causes B and A usually comes with C, A → B gets C's lift too. This module fits, for
each symptom type B, one model of all of B's candidate causes together, so that a candidate whose
co-occurrence with B is already explained by another loses its score.

The model is a multivariate Hawkes process with a piecewise-constant kernel, one per candidate
``k = (A, relation)`` with its lag window ``w_k`` (chosen by the counting): B is raised on an
element at the rate

    λ(t) = μ + Σ_k α_k · [an A was raised in the relation within w_k before t]

and the fit maximises the Poisson likelihood ``Σ_i log λ(t_i) − ∫ λ`` by EM (the standard Hawkes
EM: each B raise is given to the background or to one of the candidates active before it, in
proportion to their rates; then each rate is what it was given over its exposure). The data are the
*patterns* the counting kept (which candidates preceded each B raise, and at which lag bucket), so
the fit needs no second pass. The exposure of a candidate, ``∫ [k active]`` in units where B's
time is 1, comes from the shifted baseline (:func:`exposure`).

What a candidate is given, ``attributed_k = Σ_i r_ik``, is its conditional support: the B raises it
explains once the others have taken theirs. The rule is kept when that support, added to the
baseline, is still above chance by the same floors as the counting (support, z, lift); the ratio
``α_k / μ`` says how many times B's background rate the candidate adds while active, and orders
the rules of one symptom (the correlator takes the first rule that explains a symptom).

Deterministic: fixed iterations from a fixed start, sorted keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.tools.mining.stats import Counts, Item, Pattern, unpack

ITERATIONS = 200
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Candidate:
    """One candidate cause of a symptom type: its root type, relation, window (a lag bucket index)
    and what the counting found within that window."""

    root: str
    relation: str
    window: int
    support: int
    baseline: int
    exposure: float  # the share of the symptom's time the candidate is active by chance, > 0


@dataclass(frozen=True)
class Fitted:
    root: str
    relation: str
    attributed: float  # the symptom's raises this candidate explains, given the others
    rate: float  # α / μ: times the background rate it adds while active


def exposure(baseline: int, raises: int, window: float, max_lag: float) -> float:
    """The share of the time a candidate is active by chance where its symptom is raised: the
    shifted look-back of ``max_lag`` found A in ``baseline`` of the symptom's ``raises`` (at least
    half of one, at most all but half of one); taken as a Poisson presence, that is a rate of
    ``-ln(1 - p) / max_lag``, and the chance that a window of ``window`` seconds (at least 1 s, the
    timestamps' resolution) holds one is ``1 - exp(-rate * window)``. The whole look-back is used
    rather than the window's own count, which is a handful for short windows."""
    p = min(max(baseline, 0.5), raises - 0.5) / raises if raises > 1 else 0.5
    rate = -math.log(1 - p) / max_lag
    return 1 - math.exp(-rate * max(window, 1.0))


def group_patterns(patterns: Mapping[Pattern, int]) -> dict[str, list[tuple[int, bytes]]]:
    """The (packed) patterns per symptom type, in a fixed order."""
    out: dict[str, list[tuple[int, bytes]]] = {}
    for (kind, items), n in sorted(patterns.items()):
        out.setdefault(kind, []).append((n, items))
    return out


def fit_symptom(
    raises: int,
    candidates: Sequence[Candidate],
    patterns: Sequence[tuple[int, tuple[Item, ...]]],
) -> list[Fitted]:
    """EM for one symptom type (see the module's text); one ``Fitted`` per candidate, same order."""
    if not candidates or raises <= 0:
        return []
    index = {(c.root, c.relation): i for i, c in enumerate(candidates)}
    windows = [c.window for c in candidates]
    merged: dict[tuple[int, ...], int] = {}
    seen = 0
    for n, items in patterns:
        seen += n
        active = tuple(
            sorted(
                {
                    i
                    for a, rel, bucket in items
                    if (i := index.get((a, rel), -1)) >= 0 and bucket <= windows[i]
                }
            )
        )
        merged[active] = merged.get(active, 0) + n
    if seen < raises:  # raises left out of the patterns (past MAX_PATTERNS): no candidate known
        merged[()] = merged.get((), 0) + raises - seen
    rows = [(n, active) for active, n in sorted(merged.items())]
    exposure = [c.exposure for c in candidates]
    total = float(raises)
    mu = total / 2
    alpha = [max(c.support - c.baseline, 0.5) / e for c, e in zip(candidates, exposure, strict=True)]
    given = [0.0] * len(candidates)
    for _ in range(ITERATIONS):
        background = 0.0
        given = [0.0] * len(candidates)
        for n, active in rows:
            denom = mu + sum(alpha[i] for i in active)
            background += n * mu / denom
            for i in active:
                given[i] += n * alpha[i] / denom
        new_mu = background  # over B's time, 1
        new_alpha = [g / e for g, e in zip(given, exposure, strict=True)]
        change = abs(new_mu - mu) + sum(abs(x - y) for x, y in zip(new_alpha, alpha, strict=True))
        mu, alpha = new_mu, new_alpha
        if change <= TOLERANCE * total:
            break
    floor = max(mu, 1e-9)
    return [
        Fitted(c.root, c.relation, g, a / floor) for c, g, a in zip(candidates, given, alpha, strict=True)
    ]


def fit(counts: Counts, candidates: Mapping[str, Sequence[Candidate]]) -> dict[tuple[str, str, str], Fitted]:
    """Fit every symptom type's candidates; keyed by (root, symptom, relation)."""
    grouped = group_patterns(counts.patterns)
    out: dict[tuple[str, str, str], Fitted] = {}
    for symptom in sorted(candidates):
        rows = [(n, unpack(items, counts.names)) for n, items in grouped.get(symptom, [])]
        for f in fit_symptom(counts.raises[symptom], candidates[symptom], rows):
            out[(f.root, symptom, f.relation)] = f
    return out
