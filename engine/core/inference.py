"""Locate degradations nobody alarmed: the element shared by degraded service paths and few healthy ones.

Every observed customer service is a *path*: the set of elements it traverses (``path_elements``). KQI
evaluation marks some paths degraded. ``infer_location`` then looks for the element that explains the
most degraded paths while carrying the fewest healthy ones (see its docstring and ``docs/kqi.md``).

Pure and deterministic: no clock, no I/O; ties are broken by specificity, then by element id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from engine.model.topology import Topology

__all__ = [
    "MAX_CANDIDATES",
    "Inference",
    "Suspect",
    "access_path_elements",
    "infer_location",
    "path_elements",
]

MAX_CANDIDATES = 5


@dataclass(frozen=True)
class Suspect:
    """A candidate location: ``degraded`` / ``healthy`` paths through it, and its score."""

    element: str
    degraded: int
    healthy: int
    score: float

    def to_record(self) -> dict[str, Any]:
        return {
            "element": self.element,
            "degraded": self.degraded,
            "healthy": self.healthy,
            "score": round(self.score, 3),
        }


@dataclass(frozen=True)
class Inference:
    """The most likely location of a degradation (``element``), or None, with the evidence."""

    element: str | None
    degraded_paths: int  # degraded paths considered (those in ``paths``)
    healthy_paths: int  # the other paths
    covered: int  # degraded paths through ``element``
    healthy_through: int  # healthy paths through ``element``
    confidence: float  # covered/degraded_paths × (1 − healthy_through/(covered + healthy_through))
    candidates: tuple[Suspect, ...]  # at most MAX_CANDIDATES, best first

    def to_record(self) -> dict[str, Any]:
        return {
            "element": self.element,
            "degraded_paths": self.degraded_paths,
            "healthy_paths": self.healthy_paths,
            "covered": self.covered,
            "healthy_through": self.healthy_through,
            "confidence": round(self.confidence, 3),
            "candidates": [c.to_record() for c in self.candidates],
        }


def access_path_elements(topology: Topology, access: str, service_type: str) -> frozenset[str]:
    """``path_elements`` for any customer on ``access``: the same for all of them, so callers with many
    customers can memoise on (access, service type). ``KeyError`` for an unknown element or service."""
    elements = {access} | topology.ancestors(access)
    for ne in topology.service_types[service_type].platform:
        elements.add(ne)
        elements |= topology.ancestors(ne)
    return frozenset(elements)


def path_elements(topology: Topology, customer_id: str, service_type: str) -> frozenset[str]:
    """Elements a customer's service traverses: its access element and everything it depends on
    (``topology.ancestors``: every member of a redundancy group counts), plus the service type's
    platform elements and their ancestors. ``KeyError`` for an unknown customer or service type."""
    return access_path_elements(topology, topology.customer(customer_id).access, service_type)


def infer_location(
    paths: Mapping[str, frozenset[str]],
    degraded: AbstractSet[str],
    *,
    min_degraded: int = 3,
    exclude: AbstractSet[str] = frozenset(),
    depth: Mapping[str, int] | None = None,
) -> Inference:
    """The element most likely behind the ``degraded`` paths.

    ``paths``: path id → elements it traverses; ``degraded``: ids of degraded paths (ids not in
    ``paths`` are ignored); every other path is healthy. With D degraded and H healthy paths, and for
    an element e, c(e) degraded and h(e) healthy paths through it:

    * candidates: elements not in ``exclude`` (they have an active alarm the caller handles) with
      c(e) >= ``min_degraded``;
    * score(e) = c(e)/D − h(e)/max(1, H): the share of the degradation e explains minus the share of
      the healthy population it carries (a set-cover score penalised by false positives);
    * best first: highest score, then the most specific element (fewest paths through it in total),
      then the deepest (``depth``: how many elements it depends on; when the evidence cannot tell an
      element from those it depends on — a redundant pair above an OLT carries exactly the OLT's
      paths — the lowest shared element is named, and the others stay in ``candidates``), then id;
    * ``element`` is the best candidate if its score is > 0 (it is more common among degraded paths
      than among healthy ones), else None;
    * confidence = c(e)/D × (1 − h(e)/(c(e) + h(e))): how much of the degradation e explains times
      the share of its paths that are degraded. 1 only when e explains every degraded path and carries
      no healthy one.

    One pass over the paths with counters: O(Σ path sizes).
    """
    if min_degraded < 1:
        raise ValueError(f"min_degraded must be >= 1 (got {min_degraded})")
    through: Counter[str] = Counter()
    covered: Counter[str] = Counter()
    n_degraded = 0
    for path_id, elements in paths.items():
        through.update(elements)
        if path_id in degraded:
            covered.update(elements)
            n_degraded += 1
    n_healthy = len(paths) - n_degraded

    suspects: list[tuple[float, int, int, str, Suspect]] = []
    for element, c in covered.items():
        if c < min_degraded or element in exclude:
            continue
        h = through[element] - c
        score = c / n_degraded - h / max(1, n_healthy)
        deep = -(depth or {}).get(element, 0)
        suspects.append((-score, through[element], deep, element, Suspect(element, c, h, score)))
    suspects.sort(key=lambda s: s[:4])
    candidates = tuple(s[4] for s in suspects[:MAX_CANDIDATES])

    if not candidates or candidates[0].score <= 0.0:
        return Inference(None, n_degraded, n_healthy, 0, 0, 0.0, candidates)
    best = candidates[0]
    confidence = best.degraded / n_degraded * (1.0 - best.healthy / (best.degraded + best.healthy))
    return Inference(best.element, n_degraded, n_healthy, best.degraded, best.healthy, confidence, candidates)
