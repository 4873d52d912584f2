"""``SlaTracker``: downtime per subject as intervals, SLA breaches at the exact instants they happen
(once per episode), time to the next breach, and its dump/load (version 2; version 1 read too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from engine.core.experience.sla import Breach, SlaSettings, SlaState, SlaTier
from engine.core.experience.tracker_dump import _Dump
from engine.model.wording import dotted, first_problem

__all__ = ["SlaTracker"]


class _Subject:
    """Downtime of one subject: closed outages (start, end), oldest first, and the running one."""

    __slots__ = ("avail_breached", "down_since", "first_seen", "intervals", "last", "tier", "ttr_breached")

    def __init__(self, tier: str, now: float, down_since: float | None) -> None:
        self.tier = tier
        self.first_seen = now
        self.last = now
        self.down_since = down_since
        self.intervals: list[tuple[float, float]] = []
        self.avail_breached = False  # in an availability breach episode (recorded once)
        self.ttr_breached = False  # the running outage has been recorded as a time-to-restore breach

    def downtime(self, start: float, end: float) -> float:
        """Seconds down within [start, end], the running outage counted up to ``end``."""
        total = 0.0
        for s, e in self.intervals:
            lo, hi = max(s, start), min(e, end)
            if hi > lo:
                total += hi - lo
        if self.down_since is not None:
            lo = max(self.down_since, start)
            if end > lo:
                total += end - lo
        return total

    def crossing(self, period: float, budget: float, a: float, b: float) -> float | None:
        """The first instant in [a, b] at which the downtime of the sliding period exceeds ``budget``,
        the subject being down throughout. The downtime is piecewise linear in the window's end,
        with breakpoints where the window's start passes an outage boundary; interpolated exactly."""
        t0, d0 = a, self.downtime(a - period, a)
        if d0 > budget:
            return a
        edges = {x + period for interval in self.intervals for x in interval}
        if self.down_since is not None:
            edges.add(self.down_since + period)
        for t1 in [*sorted(x for x in edges if a < x < b), b]:
            d1 = self.downtime(t1 - period, t1)
            if d1 > budget:
                return min(t1, max(t0, t0 + (budget - d0) * (t1 - t0) / (d1 - d0)))
            t0, d0 = t1, d1
        return None


class _Mos:
    __slots__ = ("at", "below", "mos")

    def __init__(self, at: float, mos: float, below: bool) -> None:
        self.at, self.mos, self.below = at, mos, below


class SlaTracker:
    """Downtime and SLA breaches per *subject*: whoever shares one SLA fate, named by the caller —
    a customer, or (as ``engine.core.quality`` does for availability and time to restore) a group of
    customers on the same access element with the same tier and services; MOS is observed per
    customer. Only ``update``, ``observe_mos``, ``tick`` and ``load`` change it; ``state``,
    ``time_to_breach`` and ``next_breach`` are queries.

    * Downtime is counted from a subject's first ``update``; before that the subject counts as up
      (availability is over the full period, assuming up). An outage is the subject being ``down``
      (the caller's test; ``customer_down``: any service DOWN).
    * A call with a ``now`` older than the subject's latest is ignored (queries evaluate at the
      latest instead). Re-observing the same state only advances time.
    * Closed outages are kept while they overlap the longest configured period, then dropped; so
      are recorded breaches (``breaches()``: those of the last period, not the whole history).
    * Breaches are detected by ``update`` and ``tick`` over the time elapsed since the subject's
      previous call, and stamped with the exact instant they happened; ``next_breach`` says when to
      ``tick`` to record the next one as it happens. Availability: downtime in the
      sliding period exceeds the budget — once per episode (a new one only after the downtime fell back
      within budget). Time to restore: once per outage. MOS: once per continuous run below the floor.
    * Subjects of a tier without an SLA in the settings are not tracked: ``update`` and
      ``observe_mos`` ignore them, ``time_to_breach`` is ``None``, ``state`` raises ``KeyError``.
    """

    def __init__(self, settings: SlaSettings) -> None:
        self._settings = settings
        self._keep = max((t.period for t in settings.tiers.values()), default=0.0)
        self._subjects: dict[str, _Subject] = {}
        self._mos: dict[str, _Mos] = {}
        self._breaches: list[Breach] = []
        self._down: set[str] = set()  # subjects down now
        self._next: float | None = None  # next_breach(), while _next_known
        self._next_known = False

    @property
    def settings(self) -> SlaSettings:
        return self._settings

    def describe(self) -> str:
        """What the tracker holds (names its state when its tick raised)."""
        down = sorted(self._down)
        more = f" and {len(down) - 5} more" if len(down) > 5 else ""
        return (
            f"SLA tracker: {len(self._subjects)} subject(s), {len(down)} down now"
            + (f" ({', '.join(down[:5])}{more})" if down else "")
            + f", {len(self._breaches)} breach(es) recorded"
        )

    def __len__(self) -> int:
        """Subjects with downtime tracking."""
        return len(self._subjects)

    # -- changes --

    def update(self, subject: str, tier: str, down: bool, now: float) -> None:
        """The subject's service-affecting state changed or was re-observed at ``now``."""
        sla = self._settings.tiers.get(tier)
        if sla is None:
            return
        self._next_known = False
        rec = self._subjects.get(subject)
        if rec is None:
            self._subjects[subject] = _Subject(tier, now, now if down else None)
            if down:
                self._down.add(subject)
            return
        if now < rec.last:
            return
        self._record(self._advance(subject, rec, tier, sla, now), now)
        if down and rec.down_since is None:
            rec.down_since = now
            self._down.add(subject)
        elif not down and rec.down_since is not None:
            if now > rec.down_since:
                rec.intervals.append((rec.down_since, now))
            rec.down_since = None
            rec.ttr_breached = False
            self._down.discard(subject)
        rec.tier = tier
        cutoff = now - self._keep
        drop = 0
        while drop < len(rec.intervals) and rec.intervals[drop][1] <= cutoff:
            drop += 1
        if drop:
            del rec.intervals[:drop]

    def tick(self, now: float) -> list[Breach]:
        """Re-observe every tracked subject in its current state at ``now``; returns the new breaches
        (also in ``breaches()``), oldest first. Call it periodically so that breaches of long outages
        are recorded without waiting for the next ``update``."""
        self._next_known = False
        new: list[Breach] = []
        for subject, rec in self._subjects.items():
            sla = self._settings.tiers.get(rec.tier)
            if sla is not None and now >= rec.last:
                new.extend(self._advance(subject, rec, rec.tier, sla, now))
        new.sort(key=lambda b: (b.at, b.subject, b.kind))
        self._record(new, now)
        return new

    def observe_mos(self, subject: str, tier: str, mos: float, now: float) -> Breach | None:
        """A voice MOS observation. Below the tier's floor starts a breach episode (recorded once, at
        ``now``); at or above the floor ends it. Returns the breach when one is recorded."""
        if not math.isfinite(mos):
            raise ValueError(f"MOS must be a finite number, got {mos}")
        sla = self._settings.tiers.get(tier)
        if sla is None or sla.mos_floor is None:
            return None
        floor = sla.mos_floor
        m = self._mos.get(subject)
        if m is not None and now < m.at:
            return None
        was_below = m is not None and m.below
        below = mos < floor
        if m is None:
            self._mos[subject] = _Mos(now, mos, below)
        else:
            m.at, m.mos, m.below = now, mos, below
        if below and not was_below:
            breach = Breach(subject, tier, "mos", now, {"mos": mos, "floor": floor})
            self._record([breach], now)
            return breach
        return None

    def forget(self, subject: str) -> None:
        """Drop a subject's tracking (e.g. removed from the inventory). Recorded breaches stay."""
        self._next_known = False
        self._down.discard(subject)
        self._subjects.pop(subject, None)
        self._mos.pop(subject, None)

    def _record(self, new: list[Breach], now: float) -> None:
        """Keep the new breaches; forget those older than the longest SLA period before ``now``
        (history no period covers any more), so a long run holds a bounded list."""
        self._breaches.extend(new)
        cutoff = now - self._keep
        if self._breaches and self._breaches[0].at < cutoff:  # recorded nearly in time order
            self._breaches = [b for b in self._breaches if b.at >= cutoff]

    def _advance(self, subject: str, rec: _Subject, tier: str, sla: SlaTier, now: float) -> list[Breach]:
        """Detect the breaches of [rec.last, now] (the state unchanged meanwhile) and move rec to now."""
        new: list[Breach] = []
        budget, period = sla.budget, sla.period
        ds = rec.down_since
        if ds is not None:
            if not rec.avail_breached:
                at = rec.crossing(period, budget, rec.last, now)
                if at is not None:
                    rec.avail_breached = True
                    detail = {"budget": budget, "target": sla.availability, "period": period}
                    new.append(Breach(subject, tier, "availability", at, detail))
            ttr = sla.time_to_restore
            if ttr is not None and not rec.ttr_breached and now - ds > ttr:
                rec.ttr_breached = True
                detail = {"time_to_restore": ttr, "outage_started": ds}
                new.append(Breach(subject, tier, "time_to_restore", ds + ttr, detail))
        if rec.avail_breached and rec.downtime(now - period, now) <= budget:
            rec.avail_breached = False
        rec.last = now
        new.sort(key=lambda b: (b.at, b.kind))
        return new

    # -- queries --

    def next_breach(self) -> float | None:
        """When to call ``tick`` next so that the next breach of a subject that stays down is recorded
        as it happens: the earliest, over the subjects down, of the first instant after their latest
        call at which a ``tick`` records their availability breach (the downtime of the sliding
        period exceeding the budget: exactly, as ``tick`` dates it) or their time-to-restore breach
        (outage start + time to restore). ``None`` when no subject is down or every breach of the
        running outages is recorded already. A breach happens when the downtime *exceeds* its limit,
        so the instant returned is the next float after the breach's own instant (its ``at``).
        Cached until the next ``update``, ``tick`` or ``load``."""
        if not self._next_known:
            self._next = self._compute_next()
            self._next_known = True
        return self._next

    def _compute_next(self) -> float | None:
        best: float | None = None
        for subject in self._down:
            rec = self._subjects[subject]
            sla = self._settings.tiers.get(rec.tier)
            if rec.down_since is None or sla is None:
                continue
            instants = []
            if not rec.avail_breached:
                # Down throughout a whole period the downtime is the period itself, more than any
                # budget (availability > 0): the crossing is within [last, last + period].
                at = rec.crossing(sla.period, sla.budget, rec.last, rec.last + sla.period)
                if at is not None:
                    instants.append(at)
            if sla.time_to_restore is not None and not rec.ttr_breached:
                instants.append(rec.down_since + sla.time_to_restore)
            for at in instants:
                due = math.nextafter(max(at, rec.last), math.inf)
                if best is None or due < best:
                    best = due
        return best

    def time_to_breach(self, subject: str, tier: str, now: float) -> float | None:
        """Seconds until this subject breaches its SLA if the current outage continues:
        min(availability budget left, time to restore left). ``None`` when not down (or no SLA);
        0 when already breached. The budget left ignores old downtime leaving the sliding period
        meanwhile, so the figure errs on the early side."""
        sla = self._settings.tiers.get(tier)
        rec = self._subjects.get(subject)
        if sla is None or rec is None or rec.down_since is None:
            return None
        now = max(now, rec.last)
        return self._time_to_breach(rec, sla, now)

    @staticmethod
    def _time_to_breach(rec: _Subject, sla: SlaTier, now: float) -> float | None:
        if rec.down_since is None:
            return None
        left = sla.budget - rec.downtime(now - sla.period, now)
        ttr = sla.time_to_restore
        if ttr is not None:
            left = min(left, ttr - (now - rec.down_since))
        return max(0.0, left)

    def state(self, subject: str, tier: str, now: float, *, mos_of: str | None = None) -> SlaState:
        """The subject's SLA standing at ``now`` (at its latest call if that is later). A subject
        never updated is up with no downtime. The MOS fields are those of ``mos_of`` (default: the
        subject itself; a group's state can show one customer's MOS). Raises ``KeyError`` for a tier
        without an SLA."""
        sla = self._settings.tiers.get(tier)
        if sla is None:
            raise KeyError(f"no SLA for tier {tier!r} (SLA tiers: {', '.join(self._settings.tiers)})")
        rec = self._subjects.get(subject)
        m = self._mos.get(subject if mos_of is None else mos_of)
        if rec is not None:
            now = max(now, rec.last)
        period, budget = sla.period, sla.budget
        downtime = rec.downtime(now - period, now) if rec is not None else 0.0
        ds = rec.down_since if rec is not None else None
        ttr = sla.time_to_restore
        duration = now - ds if ds is not None else None
        return SlaState(
            subject=subject,
            tier=tier,
            at=now,
            period=period,
            target=sla.availability,
            downtime=downtime,
            availability=1.0 - downtime / period,
            budget=budget,
            budget_left=max(0.0, budget - downtime),
            down=ds is not None,
            outage_started=ds,
            outage_duration=duration,
            time_to_restore=ttr,
            time_to_restore_left=(
                max(0.0, ttr - duration) if ttr is not None and duration is not None else None
            ),
            time_to_breach=self._time_to_breach(rec, sla, now) if rec is not None else None,
            availability_breached=downtime > budget,
            time_to_restore_breached=ttr is not None and duration is not None and duration > ttr,
            mos_floor=sla.mos_floor,
            mos=m.mos if m is not None else None,
            mos_breached=m is not None and m.below and sla.mos_floor is not None,
            observed_since=rec.first_seen if rec is not None else None,
        )

    def breaches(self) -> list[Breach]:
        """The breaches recorded within the longest SLA period (older ones are forgotten as new ones
        come), in the order recorded (chronological within one call)."""
        return list(self._breaches)

    # -- persistence --

    def dump(self) -> dict[str, Any]:
        """JSON-ready state; ``load(dump())`` restores it exactly (floats survive JSON unchanged)."""
        return {
            "version": 2,
            "subjects": {
                key: {
                    "tier": r.tier,
                    "first_seen": r.first_seen,
                    "last": r.last,
                    "down_since": r.down_since,
                    "intervals": [[s, e] for s, e in r.intervals],
                    "availability_breached": r.avail_breached,
                    "time_to_restore_breached": r.ttr_breached,
                }
                for key, r in self._subjects.items()
            },
            "mos": {key: {"at": m.at, "mos": m.mos, "below": m.below} for key, m in self._mos.items()},
            "breaches": [
                {
                    "subject": b.subject,
                    "tier": b.tier,
                    "kind": b.kind,
                    "at": b.at,
                    "detail": dict(b.detail),
                }
                for b in self._breaches
            ],
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Replace the tracker's state with a ``dump()``. Raises ``ValueError`` on a malformed one.
        A version 1 dump (``customers``, breaches with ``customer_id``) is read as version 2."""
        if isinstance(state, Mapping) and state.get("version") == 1:
            state = _from_version_1(state)
        try:
            doc = _Dump.model_validate(state)
        except ValidationError as exc:
            loc, reason = first_problem(exc)
            raise ValueError(f"invalid SLA tracker state at {dotted(loc) or '<top>'}: {reason}") from None
        subjects: dict[str, _Subject] = {}
        for key, c in doc.subjects.items():
            rec = _Subject(c.tier, c.first_seen, c.down_since)
            rec.last = c.last
            rec.intervals = [(s, e) for s, e in c.intervals]
            rec.avail_breached = c.availability_breached
            rec.ttr_breached = c.time_to_restore_breached
            subjects[key] = rec
        self._subjects = subjects
        self._down = {key for key, rec in subjects.items() if rec.down_since is not None}
        self._next_known = False
        self._mos = {key: _Mos(m.at, m.mos, m.below) for key, m in doc.mos.items()}
        self._breaches = [Breach(b.subject, b.tier, b.kind, b.at, dict(b.detail)) for b in doc.breaches]


def _from_version_1(state: Mapping[str, Any]) -> dict[str, Any]:
    """A version 1 dump in the version 2 form: ``customers`` → ``subjects``, ``customer_id`` → ``subject``
    (the same data; version 1 named every subject a customer)."""
    out = {k: v for k, v in state.items() if k not in ("version", "customers", "breaches")}
    out["version"] = 2
    if "customers" in state:
        out["subjects"] = state["customers"]
    breaches = state.get("breaches")
    if isinstance(breaches, list):
        out["breaches"] = [
            {("subject" if k == "customer_id" else k): v for k, v in b.items()}
            if isinstance(b, Mapping)
            else b
            for b in breaches
        ]
    elif breaches is not None:
        out["breaches"] = breaches
    return out
