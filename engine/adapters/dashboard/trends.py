"""The KQI charts' history: one point per minute per (scope, metric), for 24 hours, bounded.

The engine's KQI windows keep raw samples only as long as the longest KQI window reading them
(5 minutes by default, an hour for availability): enough to evaluate the KQIs, not to see a trend
over a shift. ``QualityHistory`` keeps, per scope (``ne:<id>/<service>``, ``path:<customer>/
<service>``) and metric, one point per minute: the mean, the minimum and the maximum of the
minute's samples, for ``keep`` seconds (24 hours).

``collect`` runs every ``COLLECT_EVERY`` seconds on the event loop (the dashboard's task), between
two items of the core task (less often when a collection is long: ``interval``): it walks the
windows' series once (``CoreQuery.held_series``, in place, without copying them) and turns the
minutes that are over into points. A minute is over once a sample of a later minute has arrived,
or one minute after its end by the engine's clock; a sample arriving after its minute was turned
into a point is left out of the history (it still counts in the KQIs). A new series starts with
what the windows still hold. Points older than ``keep`` go; so does a series with none left.

Memory is bounded: at most ``max_series`` series (1,000 by default: 24 hours of one series is
1,440 points of 16 bytes, 23 KB; the whole history at most about 25 MB). Samples of a series beyond the
limit are not kept and are counted in ``dropped`` (and in ``soc_dashboard_history_dropped_total``);
such a series' chart shows what the windows hold, as before. The history is in memory only: a
restart begins it again from the windows (which the snapshot restores).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = [
    "COLLECT_EVERY",
    "KEEP",
    "MAX_SERIES",
    "STEP",
    "QualityHistory",
    "Trend",
    "interval",
    "minute_points",
]

STEP: Final = 60.0  # seconds per point
KEEP: Final = 24 * 3600.0  # seconds of history
MAX_SERIES: Final = 1000
COLLECT_EVERY: Final = 20.0  # seconds between two collections (the windows hold 5 minutes or more)
MAX_COLLECT_EVERY: Final = 120.0
BUSY: Final = 0.01  # the share of the event loop's time collections may take


def interval(took: float, shortest_window: float) -> float:
    """Seconds until the next collection, after one that took ``took`` seconds: ``COLLECT_EVERY``,
    longer when a collection is long (it reads every sample the windows hold: a few milliseconds
    with 1,000 series, tens with 10,000) so collections take at most ``BUSY`` of the loop's time,
    and never more than ``MAX_COLLECT_EVERY`` nor half the shortest KQI window (a sample must
    still be held when the next collection comes)."""
    limit = max(1.0, min(MAX_COLLECT_EVERY, shortest_window / 2))
    return min(limit, max(COLLECT_EVERY, took / BUSY))


def minute_points(
    times: Sequence[float],
    values: Sequence[float],
    lo_minute: int,
    hi_minute: int,
    step: float = STEP,
    *,
    start: int = 0,
) -> list[tuple[int, float, float, float]]:
    """(minute, mean, min, max) of the samples in minutes ``[lo_minute, hi_minute)``; ``times``
    sorted from index ``start`` (what comes before it is ignored). Minutes without samples have
    no point."""
    out: list[tuple[int, float, float, float]] = []
    i = bisect_left(times, lo_minute * step, start)
    end = bisect_left(times, hi_minute * step, i)
    while i < end:
        minute = math.floor(times[i] / step)
        j = bisect_left(times, (minute + 1) * step, i, end)
        chunk = values[i:j]
        out.append((minute, math.fsum(chunk) / len(chunk), min(chunk), max(chunk)))
        i = j
    return out


Held = tuple[str, str, Sequence[float], Sequence[float], int]  # scope, metric, times, values, start


class Trend:
    """One series' points: minute numbers (``floor(t / step)``) and the minute's mean, min, max."""

    __slots__ = ("hi", "lo", "mean", "minutes", "next_minute")

    def __init__(self, next_minute: int) -> None:
        self.minutes = array("i")
        self.mean = array("f")  # single precision: a chart's worth, half the memory
        self.lo = array("f")
        self.hi = array("f")
        self.next_minute = next_minute  # the first minute not turned into a point yet

    def __len__(self) -> int:
        return len(self.minutes)

    def add(self, points: Iterable[tuple[int, float, float, float]]) -> None:
        for minute, mean, lo, hi in points:
            self.minutes.append(minute)
            self.mean.append(mean)
            self.lo.append(lo)
            self.hi.append(hi)

    def trim(self, first_minute: int) -> None:
        """Forget the points before ``first_minute``."""
        n = bisect_left(self.minutes, first_minute)
        if n:
            for a in (self.minutes, self.mean, self.lo, self.hi):
                del a[:n]


def _f(x: float) -> float:
    """A single-precision value back as the short decimal it stood for (12.3, not 12.30000019)."""
    return float(f"{x:.7g}")


class QualityHistory:
    """The per-minute history of the KQI windows (see the module doc)."""

    def __init__(self, *, step: float = STEP, keep: float = KEEP, max_series: int = MAX_SERIES) -> None:
        if step <= 0 or keep < step or max_series < 1:
            raise ValueError(f"need step > 0, keep >= step, max_series >= 1: {step}, {keep}, {max_series}")
        self.step = step
        self.keep = keep
        self.max_series = max_series
        self._trends: dict[tuple[str, str], Trend] = {}
        self._last_now: float | None = None
        self.dropped = 0  # samples of series beyond max_series, not kept
        self.collections = 0

    def __len__(self) -> int:
        """Points held."""
        return sum(len(t) for t in self._trends.values())

    @property
    def series_count(self) -> int:
        return len(self._trends)

    def scopes(self) -> list[str]:
        return sorted({scope for scope, _ in self._trends})

    def collect(self, series: Iterable[Held], now: float) -> int:
        """Turn the minutes that are over into points. ``series``: (scope, metric, times, values,
        start) per series, times sorted (``CoreQuery.held_series``); ``now``: the engine's clock. Returns the
        samples dropped by this collection (beyond ``max_series``)."""
        step = self.step
        since = self._last_now
        dropped = 0
        for scope, metric, times, values, start in series:
            if len(times) <= start:
                continue
            key = (scope, metric)
            trend = self._trends.get(key)
            if trend is None:
                if len(self._trends) >= self.max_series:
                    # counted once: the samples since the last collection (all, the first time)
                    dropped += len(times) - (bisect_left(times, since, start) if since is not None else start)
                    continue
                trend = self._trends[key] = Trend(math.floor(times[start] / step))
            over = max(math.floor(times[-1] / step), math.floor((now - step) / step))
            if over > trend.next_minute:
                trend.add(minute_points(times, values, trend.next_minute, over, step, start=start))
                trend.next_minute = over
        first = math.floor((now - self.keep) / step)
        for key in [k for k, t in self._trends.items() if t.next_minute <= first]:
            del self._trends[key]  # nothing in the last `keep` seconds
        for trend in self._trends.values():
            if trend.minutes and trend.minutes[0] < first - 30:  # every half hour or so
                trend.trim(first)
        self._last_now = now
        self.dropped += dropped
        self.collections += 1
        return dropped

    def chart(
        self, scope: str, metric: str, times: Sequence[float], values: Sequence[float], since: float
    ) -> dict[str, list[float]]:
        """One chart's points from ``since``: the history's, then the minutes the windows' samples
        (``times``, ``values``: what they hold now) add beyond it, the current minute included."""
        step = self.step
        first = math.floor(since / step)
        t: list[float] = []
        v: list[float] = []
        lo: list[float] = []
        hi: list[float] = []
        trend = self._trends.get((scope, metric))
        start = first
        if trend is not None:
            i = bisect_left(trend.minutes, first)
            for k in range(i, len(trend.minutes)):
                t.append(trend.minutes[k] * step)
                v.append(_f(trend.mean[k]))
                lo.append(_f(trend.lo[k]))
                hi.append(_f(trend.hi[k]))
            start = max(first, trend.next_minute)
        if times:
            for minute, mean, low, high in minute_points(
                times, values, start, math.floor(times[-1] / step) + 1, step
            ):
                t.append(minute * step)
                v.append(mean)
                lo.append(low)
                hi.append(high)
        return {"t": t, "v": v, "lo": lo, "hi": hi}

    def metrics(self, scope: str) -> list[str]:
        return sorted(m for s, m in self._trends if s == scope)
