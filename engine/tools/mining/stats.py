"""Streaming co-occurrence statistics of alarm types over a topology (pure: data in, counts out).

Theory of operation
-------------------
Alarms arrive as raises ``(time, element, type)`` in non-decreasing time. For every raise of type B
on element Y the miner looks back ``max_lag`` seconds on the elements related to Y and notes, once
per (type A, relation), the most recent raise of A there: that is one *evidence* that "A on a related
element precedes B". Relations of a root element Z to the symptom element Y, the first that holds:

================ ===========================================================================
same_element     Z is Y
downstream_of    Y depends on Z, directly or transitively (the symptom is below the root)
upstream_of      Z depends on Y (the symptom is above the root)
neighbour        Z is within ``hops`` links of Y, in any direction, but none of the above
same_site        Z is at Y's site (elements with a site only)
================ ===========================================================================

The *baseline* is the same look-back shifted ``shift`` seconds into the past (``[t - shift -
max_lag, t - shift]``): it keeps each element's own alarm rate and burstiness but breaks any causal
coupling at short lags, so ``evidence / baseline`` is the lift of the rule over coincidence. Both
keep a histogram of the lag of the most recent A (the baseline's measured from ``t - shift``), so
the evidence and the baseline within any shorter window ``w <= max_lag`` (a bucket bound) are known
too: :mod:`engine.tools.mining.rules` picks each rule's window from them.

Raises at the same second are taken as one batch: all are recorded first, then each looks back, so
two alarms of the same second count for each other in both directions (``strict`` counts only the
evidence with a positive lag: it orients the pair).

Each type's raises also add up the *depth* of their element (dependency hops up to an element that
depends on nothing), so a type's mean depth says how near the top of the network it is raised.

Each type's raises are also followed forward: a raise of A is *followed* when some other alarm
appears on its element or below it within ``max_lag`` (and *base-followed* likewise in the shifted
look-back). Types that are followed far more often than by chance behave as element-down roots.

Each element's raises also form *episodes*: raises on one element with no gap longer than
``max_lag``. When an episode ends, every pair of types raised in it counts which of the two was
raised first (``first[(a, b)]``: a's first raise in the episode strictly before b's first), or
``first_ties`` when their first raises share the second: the order in which a burst begins, which
repeats and re-raises inside the burst do not blur (see ``engine.tools.mining.rules._orient``).

With ``patterns=True`` each raise's *pattern* is counted too: the set of (type, relation, lag
bucket) found in its look-back, packed in 5 bytes per item, for the joint fit that explains away
(:mod:`engine.tools.mining.fit`). Raises with the same pattern share one counter.

Memory is bounded: the counters are per (type, type, relation), an element's open episode holds at
most one time per type, the history per element holds only
the last ``shift + max_lag`` seconds, the set of open forward follow-ups only the last ``max_lag``
seconds, and the patterns at most ``MAX_PATTERNS``. One pass, no second read of the input.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.model.topology import Topology

SAME, DOWN, UP, NEIGHBOUR, SITE = "same_element", "downstream_of", "upstream_of", "neighbour", "same_site"
RELATION_ORDER = (SAME, DOWN, UP, NEIGHBOUR, SITE)
MIRROR = {SAME: SAME, DOWN: UP, UP: DOWN, NEIGHBOUR: NEIGHBOUR, SITE: SITE}
LAG_BOUNDS = (0.0, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Upper bounds (seconds, inclusive) of the lag histogram's buckets."""

Key = tuple[str, str, str]  # (root type, symptom type, relation)
Pattern = tuple[str, bytes]  # (symptom type, its candidate causes packed: see ``unpack``)
Item = tuple[str, str, int]  # (root type, relation, lag bucket): one candidate cause of a raise
MAX_PATTERNS = 200_000
"""Distinct patterns kept for the joint fit (``engine.tools.mining.fit``; about 420 bytes each
with the counter's entry, measured on the 24V log: at most about 85 MB); past it, a raise whose
pattern is new is counted in ``patterns_dropped`` and left out of the fit (as a raise with no
candidate cause)."""


@dataclass
class Counts:
    """Everything the miner learned; plain counters, merged by addition."""

    raises: Counter[str] = field(default_factory=Counter)  # per type
    evidence: Counter[Key] = field(default_factory=Counter)
    strict: Counter[Key] = field(default_factory=Counter)  # evidence with a positive lag
    baseline: Counter[Key] = field(default_factory=Counter)
    lags: dict[Key, list[int]] = field(default_factory=dict)  # per LAG_BOUNDS bucket
    base_lags: dict[Key, list[int]] = field(default_factory=dict)  # the baseline's, from t - shift
    followed: Counter[str] = field(default_factory=Counter)
    base_followed: Counter[str] = field(default_factory=Counter)
    finished: Counter[str] = field(default_factory=Counter)  # raises whose follow-up window closed
    depth: Counter[str] = field(default_factory=Counter)  # per type: the sum of its raises' depths
    first: Counter[tuple[str, str]] = field(default_factory=Counter)  # episodes begun by a before b
    first_ties: Counter[tuple[str, str]] = field(default_factory=Counter)  # (a, b) sorted: same second
    patterns: Counter[Pattern] = field(default_factory=Counter)  # what preceded each raise, jointly
    patterns_dropped: int = 0
    names: list[str] = field(default_factory=list)  # the types' names by the ids in the patterns
    has_patterns: bool = False  # patterns were kept (``CoOccurrence(patterns=True)``)
    elements: int = 0
    max_lag: float = 600.0  # the look-back the counts were made with
    hops: int = 2  # how far a ``neighbour`` was looked for
    first_time: float | None = None
    last_time: float | None = None


class _History:
    """One element's recent raises, oldest first, with a moving start (amortised pruning)."""

    __slots__ = ("ids", "start", "times", "types")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.types: list[str] = []
        self.ids: list[int] = []
        self.start = 0

    def add(self, t: float, kind: str, ident: int) -> None:
        self.times.append(t)
        self.types.append(kind)
        self.ids.append(ident)

    def prune(self, before: float) -> None:
        self.start = bisect.bisect_left(self.times, before, self.start)
        if self.start > 64 and self.start * 2 > len(self.times):
            del self.times[: self.start], self.types[: self.start], self.ids[: self.start]
            self.start = 0

    def between(self, lo: float, hi: float) -> range:
        a = bisect.bisect_left(self.times, lo, self.start)
        b = bisect.bisect_right(self.times, hi, a)
        return range(a, b)


class CoOccurrence:
    """Feed raises in time order with ``add``; read ``counts`` after ``close``."""

    def __init__(
        self,
        topology: Topology,
        *,
        max_lag: float = 600.0,
        shift: float = 3600.0,
        hops: int = 2,
        patterns: bool = False,
    ) -> None:
        if max_lag <= 0 or shift <= max_lag or hops < 1:
            raise ValueError("need max_lag > 0, shift > max_lag and hops >= 1")
        self._topology = topology
        self.max_lag = max_lag
        self.shift = shift
        self.hops = hops
        self.counts = Counts(max_lag=max_lag, hops=hops, has_patterns=patterns)
        self._history: dict[str, _History] = {}
        self.patterns = patterns  # keep each raise's pattern of candidate causes (for the joint fit)
        self._ids: dict[str, int] = {}
        self._related: dict[str, tuple[tuple[str, str], ...]] = {}
        self._below: dict[str, frozenset[str]] = {}
        self._depth: dict[str, int] = {}
        self._batch: list[tuple[str, str, int]] = []
        self._batch_time: float | None = None
        self._open: deque[tuple[float, str, int]] = deque()  # raises whose follow-up is open
        self._followed: set[int] = set()
        self._base_marked: set[int] = set()  # raises already counted as base-followed
        self._base_queue: deque[tuple[float, int]] = deque()  # (time, id) of those, to forget them
        self._seq = 0
        self._episodes: dict[str, tuple[float, dict[str, float]]] = {}  # ne -> (last raise, firsts)

    # -- topology ------------------------------------------------------------------------------
    def related(self, ne: str) -> tuple[tuple[str, str], ...]:
        """(element, relation of that element as a root to ``ne`` as the symptom), sorted."""
        cached = self._related.get(ne)
        if cached is not None:
            return cached
        topo = self._topology
        out: dict[str, str] = {ne: SAME}
        for z in topo.ancestors(ne):
            out.setdefault(z, DOWN)
        for z in topo.descendants(ne):
            out.setdefault(z, UP)
        for y in topo.within(ne, self.hops):
            out.setdefault(y, NEIGHBOUR)
        site = topo.element(ne).site
        if site:
            for z in topo.elements_at_site(site):
                out.setdefault(z, SITE)
        result = tuple(sorted(out.items()))
        self._related[ne] = result
        return result

    def depth(self, ne: str) -> int:
        """Dependency hops from ``ne`` up to an element that depends on nothing (the fewest): 0 for a
        top element or one without links, 1 for what depends on one, and so on."""
        known = self._depth
        if ne in known:
            return known[ne]
        topo = self._topology
        stack = [ne]
        while stack:
            x = stack[-1]
            ups = [u for item in topo.element(x).depends_on for u in item]
            todo = [u for u in ups if u not in known]
            if todo:
                stack.extend(todo)  # a DAG (the topology is checked): this ends
                continue
            stack.pop()
            known[x] = 1 + min(known[u] for u in ups) if ups else 0
        return known[ne]

    def _down_or_same(self, ne: str) -> frozenset[str]:
        """Elements a root on which explains an alarm on ``ne`` as its element-down effect."""
        cached = self._below.get(ne)
        if cached is None:
            cached = self._below[ne] = frozenset({ne}) | self._topology.ancestors(ne)
        return cached

    # -- feeding -------------------------------------------------------------------------------
    def add(self, t: float, ne: str, kind: str) -> None:
        """One raise. Times must not decrease (the caller reorders)."""
        if self._batch_time is not None and t < self._batch_time:
            raise ValueError(f"time went back: {t} after {self._batch_time}")
        if t != self._batch_time:
            self._flush()
            self._batch_time = t
        self._seq += 1
        self._batch.append((ne, kind, self._seq))

    def close(self) -> Counts:
        self._flush()
        for _, firsts in self._episodes.values():
            self._episode_ends(firsts)
        self._episodes.clear()
        while self._open:
            self._finish(*self._open.popleft())
        self.counts.elements = len(self._history)
        return self.counts

    def _finish(self, _t: float, kind: str, ident: int) -> None:
        c = self.counts
        c.finished[kind] += 1
        if ident in self._followed:
            self._followed.discard(ident)
            c.followed[kind] += 1

    def _episode_ends(self, firsts: dict[str, float]) -> None:
        """Count, for every pair of types of an ended episode, which was raised first."""
        c = self.counts
        kinds = sorted(firsts)
        for i, a in enumerate(kinds):
            for b in kinds[i + 1 :]:
                if firsts[a] < firsts[b]:
                    c.first[(a, b)] += 1
                elif firsts[b] < firsts[a]:
                    c.first[(b, a)] += 1
                else:
                    c.first_ties[(a, b)] += 1

    def _episode(self, t: float, ne: str, kind: str) -> None:
        """``kind`` raised on ``ne`` at ``t``: the element's episode goes on, or ends and a new one
        begins (a gap longer than ``max_lag``)."""
        episode = self._episodes.get(ne)
        if episode is None or t - episode[0] > self.max_lag:
            if episode is not None:
                self._episode_ends(episode[1])
            firsts = {kind: t}
        else:
            firsts = episode[1]
            firsts.setdefault(kind, t)
        self._episodes[ne] = (t, firsts)

    def _flush(self) -> None:
        t = self._batch_time
        if t is None or not self._batch:
            return
        c = self.counts
        if c.first_time is None:
            c.first_time = t
        c.last_time = t
        while self._open and self._open[0][0] < t - self.max_lag:
            self._finish(*self._open.popleft())
        horizon = t - self.shift - self.max_lag
        while self._base_queue and self._base_queue[0][0] < horizon:
            self._base_marked.discard(self._base_queue.popleft()[1])
        for ne, kind, ident in self._batch:
            h = self._history.get(ne)
            if h is None:
                h = self._history[ne] = _History()
            h.prune(t - self.shift - self.max_lag)
            h.add(t, kind, ident)
            self._open.append((t, kind, ident))
            self._episode(t, ne, kind)
        lo, hi = t - self.max_lag, t
        blo, bhi = t - self.shift - self.max_lag, t - self.shift
        for ne, kind, ident in self._batch:
            c.raises[kind] += 1
            c.depth[kind] += self.depth(ne)
            seen: dict[tuple[str, str], float] = {}
            base: dict[tuple[str, str], float] = {}
            below = self._down_or_same(ne)
            for z, rel in self.related(ne):
                h = self._history.get(z)
                if h is None:
                    continue
                for i in h.between(lo, hi):
                    other = h.ids[i]
                    if other == ident:
                        continue
                    lag = t - h.times[i]
                    seen[(h.types[i], rel)] = lag  # ascending times: the last is the most recent
                    if z in below:
                        self._followed.add(other)
                for i in h.between(blo, bhi):
                    base[(h.types[i], rel)] = bhi - h.times[i]  # the last is the most recent
                    other = h.ids[i]
                    if z in below and other != ident and other not in self._base_marked:
                        self._base_marked.add(other)
                        self._base_queue.append((h.times[i], other))
                        c.base_followed[h.types[i]] += 1
            packed = bytearray()
            for (a, rel), lag in seen.items():
                key = (a, kind, rel)
                c.evidence[key] += 1
                if lag > 0:
                    c.strict[key] += 1
                buckets = c.lags.get(key)
                if buckets is None:
                    buckets = c.lags[key] = [0] * len(LAG_BOUNDS)
                bucket = bisect.bisect_left(LAG_BOUNDS, lag)
                buckets[bucket] += 1
                if self.patterns:
                    packed += self._item(a, rel, bucket)
            if self.patterns:
                self._pattern(kind, packed)
            for (a, rel), lag in base.items():
                key = (a, kind, rel)
                c.baseline[key] += 1
                buckets = c.base_lags.get(key)
                if buckets is None:
                    buckets = c.base_lags[key] = [0] * len(LAG_BOUNDS)
                buckets[bisect.bisect_left(LAG_BOUNDS, lag)] += 1
        self._batch = []

    def _item(self, kind: str, rel: str, bucket: int) -> bytes:
        ident = self._ids.get(kind)
        if ident is None:
            ident = self._ids[kind] = len(self.counts.names)
            self.counts.names.append(kind)
        return bytes((ident >> 16 & 255, ident >> 8 & 255, ident & 255, RELATION_ORDER.index(rel), bucket))

    def _pattern(self, kind: str, packed: bytearray) -> None:
        """Count the raise's pattern: its items (5 bytes each, in ``seen``'s order) sorted."""
        c = self.counts
        items = sorted(bytes(packed[i : i + 5]) for i in range(0, len(packed), 5))
        pattern = (kind, b"".join(items))
        if pattern in c.patterns or len(c.patterns) < MAX_PATTERNS:
            c.patterns[pattern] += 1
        else:
            c.patterns_dropped += 1


def unpack(packed: bytes, names: list[str]) -> tuple[Item, ...]:
    """A pattern's items: (root type, relation, lag bucket), as ``CoOccurrence`` packed them."""
    return tuple(
        (
            names[packed[i] << 16 | packed[i + 1] << 8 | packed[i + 2]],
            RELATION_ORDER[packed[i + 3]],
            packed[i + 4],
        )
        for i in range(0, len(packed), 5)
    )


def lag_quantile(buckets: Iterable[int], q: float) -> float:
    """The upper bound of the bucket where the ``q`` quantile of the lags falls."""
    counts = list(buckets)
    total = sum(counts)
    need = q * total
    run = 0
    for bound, n in zip(LAG_BOUNDS, counts, strict=True):
        run += n
        if run >= need and run > 0:
            return bound
    return LAG_BOUNDS[-1]


def relations_of(counts: Counts) -> Mapping[str, int]:
    """Evidence per relation (for the report)."""
    out: Counter[str] = Counter()
    for (_, _, rel), n in counts.evidence.items():
        out[rel] += n
    return dict(sorted(out.items(), key=lambda kv: RELATION_ORDER.index(kv[0])))
