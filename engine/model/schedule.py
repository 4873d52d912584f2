"""Maintenance-window schedules: whether planned works are on, as pure functions of ``now``.

A schedule is exactly one of three kinds::

    {start: "2026-01-01T00:00:00Z", end: "2026-01-01T04:00:00Z"}        # one-off
    {weekly: {days: [sat, sun], at: "02:00", duration: 2h}, timezone: Europe/Paris}
    {cron: "0 2 * * 0", duration: 2h, timezone: Europe/Paris}          # cron gives start times

Theory of operation
-------------------
Time is a float of epoch seconds, UTC (``engine.model.timeutil``). Nothing here reads the clock, does I/O
or keeps state between calls: every method takes ``now`` and gives the same answer for the same
arguments.

*Windows.* A one-off schedule is the window ``[start, end)``. A recurring schedule (``weekly`` or
``cron``) is a set of start instants, each opening ``[s, s + duration)``; the duration is elapsed
time, so a 2h window that spans a DST change still lasts 7200 seconds. Windows are half-open: the
start is inside, the end is not. Windows that overlap or touch (one starts at or before the previous
one ends) *merge*: ``window_at`` gives the merged window and ``next_change`` skips the starts that
fall inside an open window, so ``active()`` never blinks.

*Wall time.* ``weekly.at`` and cron fields are wall-clock times in ``timezone`` (an IANA name, read
with ``zoneinfo``; ``"UTC"`` needs no time-zone database). A wall time becomes an instant with
``fold=0`` (PEP 495), always:

* a wall time that does not exist (skipped at spring-forward) is read with the offset in force
  before the change, i.e. it moves forward by the gap: in Europe/Paris on 29 March 2026, 02:30 is
  read as 02:30+01:00 = 01:30Z, which is 03:30 CEST;
* a wall time that happens twice (fall-back) is its first occurrence: on 25 October 2026, 02:30 is
  02:30+02:00 = 00:30Z; it does not fire again at 02:30 CET.

So every matching wall time fires exactly once; two wall times that land on the same instant (cron
``*/30`` at 02:00 and 03:00 on the spring-forward day) open one window, and nothing starts during the
repeated hour of a fall-back (``* * * * *`` for 2m has a one-hour gap then). ``timezone`` does not
apply to one-off windows: their ``start`` and ``end`` are instants.

*Search.* Starts are enumerated per local calendar day: a day whose local midnights have the same
UTC offset is ``midnight + minutes`` (arithmetic on a precomputed table of runs of starts less than
``duration`` apart); only the day of a DST change converts each start on its own. Within a day, runs
of starts closer than ``duration`` are one block; blocks of consecutive days chain when one starts
at or before the previous one ends. Each call looks at most ``HORIZON_DAYS`` (400) days either side
of ``now``: ``next_change`` returns ``None`` when nothing changes within it (``0 0 29 2 *`` when the
next 29 February is further away, or a cron that fires so often its windows never close), and
``window_at`` cuts a merged window that reaches past the horizon at the last start/end it found
there. Durations are at most 7 days, so finding the window around ``now`` looks at a few days, not
the horizon.

*Cron dialect* (Vixie cron): five fields ``minute hour day-of-month month day-of-week`` with ranges
0-59, 0-23, 1-31, 1-12 (or ``jan``..``dec``), 0-7 (0 and 7 are Sunday, or ``sun``..``sat``; names
are case-insensitive); each field is a comma list of ``*``, ``n``, ``a-b``, ``*/n`` or ``a-b/n``.
A day-of-week range that ends on Sunday may be written ``fri-sun`` (read as 5-7). When both
day-of-month and day-of-week are restricted, a day matches if *either* does; a field that begins
with ``*`` (``*``, ``*/2``) counts as unrestricted, as in Vixie cron. An expression that matches no
date at all (``0 3 31 2 *``, 31 February) is refused: it would never fire. No ``@daily``, ``L``, ``W``,
``#`` or seconds. In YAML, quote the expression (a plain scalar may not start with ``*``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from engine.model.message_models import message_time
from engine.model.timeutil import Duration, format_duration, format_time
from engine.model.wording import type_name

HORIZON_DAYS = 400
"""How far ``window_at`` and ``next_change`` look from ``now``, in local days, each way."""

MAX_DURATION = 7 * 86400.0
"""The longest recurring window: a week."""

_DAY = 86400.0

# ---------------------------------------------------------------------------------------------- names

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
_WEEKDAY_NAMES = {
    **{d: i for i, d in enumerate(_WEEKDAYS)},
    **{
        full: i
        for i, full in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_CRON_MONTHS = {m: i + 1 for i, m in enumerate(_MONTHS)}
_CRON_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}  # 0 = Sunday


def _check_duration(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be more than 0")
    if seconds > MAX_DURATION:
        raise ValueError(f"must be at most 7d, got {format_duration(seconds)}")
    return seconds


def _zone(name: str) -> tzinfo:
    if name == "UTC":
        return UTC
    return ZoneInfo(name)


# ----------------------------------------------------------------------------------------------- cron


@dataclass(frozen=True, slots=True)
class _Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]  # 0 = Sunday … 6 = Saturday
    dom_any: bool  # the field began with "*"
    dow_any: bool

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.doms
        dow = day.isoweekday() % 7 in self.dows
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow  # Vixie: both restricted → either matches

    def times(self) -> tuple[int, ...]:
        return tuple(sorted(h * 60 + m for h in self.hours for m in self.minutes))

    def fires(self) -> bool:
        """Whether any date ever matches. Every day that exists in a month (29 February included, in
        leap years) falls on each weekday in some year, so only the month lengths can rule out a day."""
        for month in self.months:
            for dom in range(1, _MONTH_DAYS[month - 1] + 1):
                for dow in range(7):
                    dom_ok, dow_ok = dom in self.doms, dow in self.dows
                    if (dom_ok and dow_ok) if self.dom_any or self.dow_any else (dom_ok or dow_ok):
                        return True
        return False

    def never_fires_reason(self) -> str:
        """Why ``fires()`` is false, e.g. ``there is no day 31 in feb``."""
        days = sorted(self.doms)
        months = [_MONTHS[m - 1] for m in sorted(self.months)]
        return f"there is no day {_either([str(d) for d in days])} in {_either(months)}"


def _either(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # the most days each month can have


_CronField = tuple[str, int, int, dict[str, int] | None]  # name, lowest, highest, names
_CRON_FIELDS: tuple[_CronField, ...] = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day-of-month", 1, 31, None),
    ("month", 1, 12, _CRON_MONTHS),
    ("day-of-week", 0, 7, _CRON_DAYS),
)


def _parse_cron(text: str) -> _Cron:
    """A 5-field cron expression → its sets. ``ValueError`` names the field and the bad value."""
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}")
    sets = [
        _parse_cron_field(part, i + 1, field)
        for i, (part, field) in enumerate(zip(parts, _CRON_FIELDS, strict=True))
    ]
    dows = frozenset(d % 7 for d in sets[4])
    return _Cron(
        minutes=sets[0],
        hours=sets[1],
        doms=sets[2],
        months=sets[3],
        dows=dows,
        dom_any=parts[2].startswith("*"),
        dow_any=parts[4].startswith("*"),
    )


def _parse_cron_field(text: str, index: int, field: _CronField) -> frozenset[int]:
    name, lo, hi, names = field
    where = f"field {index} ({name})"

    def value(token: str) -> int:
        if token.isdigit():
            n = int(token)
        elif names is not None and token.lower() in names:
            n = names[token.lower()]
        else:
            hint = f" or a name ({next(iter(names))}..{list(names)[-1]})" if names else ""
            raise ValueError(f"{where} {token!r} is not a number{hint}")
        if not lo <= n <= hi:
            raise ValueError(f"{where} value {n} is out of range {lo}-{hi}")
        return n

    out: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"{where} has an empty list item in {text!r}")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit():
                raise ValueError(f"{where} step {step_text!r} is not a number")
            step = int(step_text)
            if step < 1:
                raise ValueError(f"{where} step must be at least 1")
        if base == "*":
            first, last = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = value(a), value(b)
            if names is _CRON_DAYS and last == 0 and first > 0:
                last = 7  # fri-sun
            if first > last:
                raise ValueError(f"{where} range {base} is backwards")
        else:
            first = last = value(base)
            if slash:
                raise ValueError(f"{where} {item!r}: a step needs * or a range (write {base}-{hi}/{step})")
        out.update(range(first, last + 1, step))
    return frozenset(out)


# --------------------------------------------------------------------------------- recurrence engine


@dataclass(frozen=True, slots=True)
class _Recurrence:
    """Start times of a recurring schedule, per local day, and how they merge."""

    tz: tzinfo
    duration: float
    times: tuple[int, ...]  # minutes after local midnight, sorted, distinct
    runs: tuple[tuple[int, int], ...]  # (first, last) minute of runs whose gaps are ≤ duration
    day_matches: Callable[[date], bool]

    def blocks(self, ordinal: int) -> list[tuple[float, float]]:
        """Merged windows of the starts on one local day, in order (they do not overlap each other)."""
        day = date.fromordinal(ordinal)
        if not self.times or not self.day_matches(day):
            return []
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        following = midnight + timedelta(days=1)  # wall-clock arithmetic: next local midnight
        if midnight.utcoffset() == following.utcoffset():
            base = midnight.timestamp()
            return [(base + a * 60.0, base + b * 60.0 + self.duration) for a, b in self.runs]
        # A day with a DST change: start = wall time - UTC offset (fold=0). The offset is read once
        # per hour, and per start only in the hour of the change.
        wall_midnight = (ordinal - _EPOCH_ORDINAL) * _DAY
        hour_offsets: dict[int, float | None] = {}
        found: set[float] = set()
        for t in self.times:
            hour, minute = divmod(t, 60)
            if hour not in hour_offsets:
                first = _offset(day, hour, 0, self.tz)
                hour_offsets[hour] = first if first == _offset(day, hour, 59, self.tz) else None
            offset = hour_offsets[hour]
            if offset is None:
                offset = _offset(day, hour, minute, self.tz)
            found.add(wall_midnight + t * 60.0 - offset)
        starts = sorted(found)
        out: list[tuple[float, float]] = []
        for s in starts:
            if out and s <= out[-1][1]:
                out[-1] = (out[-1][0], s + self.duration)
            else:
                out.append((s, s + self.duration))
        return out

    def local_ordinal(self, t: float) -> int:
        try:
            return datetime.fromtimestamp(t, self.tz).toordinal()
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"time out of range: {t!r}") from None

    def window(self, now: float) -> tuple[float, float, bool] | None:
        """The merged window containing ``now``, and whether its end was cut at the horizon."""
        today = self.local_ordinal(now)
        lo = max(today - HORIZON_DAYS, _MIN_ORDINAL)
        hi = min(today + HORIZON_DAYS, _MAX_ORDINAL)
        # The latest block that starts at or before now: it has the latest end of all of them, since
        # every block ends `duration` after its last start. A block ends before its day's end plus
        # `duration`, so days further back cannot reach now.
        reach = math.ceil(self.duration / _DAY) + 2
        found: tuple[int, float, float] | None = None
        for o in range(min(today + 1, hi), max(today - reach, lo) - 1, -1):
            before = [b for b in self.blocks(o) if b[0] <= now]
            if before:
                found = (o, *before[-1])
                break
        if found is None or found[2] <= now:
            return None
        day, start, end = found
        return self._back(day, start, lo), *self._forward(day, start, end, hi)

    def _back(self, day: int, start: float, lo: int) -> float:
        """Extend a window's start over earlier blocks that reach it (ends are in start order too,
        so the first earlier block that does not reach it ends the chain)."""
        for o in range(day, lo - 1, -1):
            for s, e in reversed([b for b in self.blocks(o) if b[0] < start]):
                if e < start:
                    return start
                start = s
            if o <= self.local_ordinal(start - self.duration) - 1:
                break  # blocks of earlier days end too early to reach start
        return start

    def _forward(self, day: int, first: float, end: float, hi: int) -> tuple[float, bool]:
        """Extend a window's end over later blocks that start at or before it; ``True`` if cut."""
        for o in range(day, hi + 1):
            for s, e in self.blocks(o):
                if s <= first:
                    continue
                if s > end:
                    return end, False
                end = max(end, e)
            if o >= self.local_ordinal(end) + 1:
                return end, False  # blocks of later days start after end
        return end, True

    def next_start(self, now: float) -> float | None:
        """The first window start strictly after ``now`` within the horizon."""
        today = self.local_ordinal(now)
        for o in range(max(today - 1, _MIN_ORDINAL), min(today + HORIZON_DAYS, _MAX_ORDINAL) + 1):
            for s, _ in self.blocks(o):
                if s > now:
                    return s
        return None


def _offset(day: date, hour: int, minute: int, tz: tzinfo) -> float:
    """The UTC offset of a wall time, in seconds (fold=0)."""
    offset = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).utcoffset()
    return 0.0 if offset is None else offset.total_seconds()


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MIN_ORDINAL = date(1, 1, 3).toordinal()
_MAX_ORDINAL = date(9999, 12, 29).toordinal()


def _runs(times: tuple[int, ...], duration: float) -> tuple[tuple[int, int], ...]:
    runs: list[tuple[int, int]] = []
    for t in times:
        if runs and (t - runs[-1][1]) * 60.0 <= duration:
            runs[-1] = (runs[-1][0], t)
        else:
            runs.append((t, t))
    return tuple(runs)


@lru_cache(maxsize=256)
def _recurrence(weekly: Weekly | None, cron: str | None, duration: float | None, tz: str) -> _Recurrence:
    zone = _zone(tz)
    if weekly is not None:
        h, m = weekly.at.split(":")
        times: tuple[int, ...] = (int(h) * 60 + int(m),)
        wanted = frozenset(_WEEKDAYS.index(d) for d in weekly.days)
        return _Recurrence(
            zone,
            weekly.duration,
            times,
            _runs(times, weekly.duration),
            lambda day: day.weekday() in wanted,
        )
    assert cron is not None  # guaranteed by Schedule validation
    assert duration is not None
    spec = _parse_cron(cron)
    times = spec.times()
    return _Recurrence(zone, duration, times, _runs(times, duration), spec.matches_day)


# --------------------------------------------------------------------------------------------- models


class Weekly(BaseModel):
    """Every ``days`` at ``at`` (wall time in the schedule's timezone), for ``duration``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    days: tuple[str, ...]  # normalised: distinct 3-letter names in week order, mon first
    at: str  # normalised "HH:MM"
    duration: Duration

    @field_validator("days", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("days")
    @classmethod
    def _days(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("give at least one weekday (mon..sun)")
        wanted: set[int] = set()
        for name in v:
            i = _WEEKDAY_NAMES.get(name.strip().lower())
            if i is None:
                raise ValueError(f"{name!r} is not a weekday (mon..sun)")
            wanted.add(i)
        return tuple(_WEEKDAYS[i] for i in sorted(wanted))

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool) and 60 <= v < 24 * 60:
            # YAML 1.1 reads an unquoted 22:30 as the base-60 number 1350 (but 02:30 as a string).
            hhmm = f"{v // 60}:{v % 60:02d}"
            raise ValueError(
                f'got the number {v}, which is how YAML reads an unquoted {hhmm}: write "{hhmm}"'
            )
        if not isinstance(v, str):
            raise ValueError(f'expected a time of day "HH:MM", got {type_name(v)}')
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", v)
        if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
            raise ValueError(f"{v!r} is not a time of day (HH:MM, 00:00 to 23:59)")
        return f"{int(m.group(1)):02d}:{m.group(2)}"

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: float) -> float:
        return _check_duration(v)


class Schedule(BaseModel):
    """A maintenance-window schedule: exactly one of ``start``/``end``, ``weekly`` or ``cron``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    start: float | None = None  # one-off: RFC 3339 or epoch seconds
    end: float | None = None
    weekly: Weekly | None = None
    cron: str | None = None  # normalised: fields separated by single spaces
    duration: Duration | None = None  # with cron only
    timezone: str = "UTC"  # IANA name; how weekly and cron wall times are read (one-off ignores it)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _instant(cls, v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, date):  # the YAML loader resolves unquoted timestamps to datetime/date
            v = v.isoformat()
        return message_time(v)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return None
        spec = _parse_cron(v)
        if not spec.fires():
            raise ValueError(f"{v!r} never fires: {spec.never_fires_reason()}")
        return " ".join(v.split())

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: float | None) -> float | None:
        return None if v is None else _check_duration(v)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        try:
            _zone(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown timezone {v!r}") from None
        return v

    @model_validator(mode="after")
    def _kind(self) -> Schedule:
        one_off = self.start is not None or self.end is not None
        if one_off + (self.weekly is not None) + (self.cron is not None) != 1:
            raise ValueError("give exactly one of start/end, weekly, cron")
        if one_off:
            if self.start is None:
                raise ValueError("start is required with end")
            if self.end is None:
                raise ValueError("end is required with start")
            if self.end <= self.start:
                raise ValueError("end must be after start")
            if self.duration is not None:
                raise ValueError("duration is not allowed with start/end")
        elif self.weekly is not None:
            if self.duration is not None:
                raise ValueError("duration is not allowed with weekly (give weekly.duration)")
        elif self.duration is None:
            raise ValueError("duration is required with cron")
        return self

    # -------------------------------------------------------------------------------------- queries

    def _plan(self) -> _Recurrence:
        return _recurrence(self.weekly, self.cron, self.duration, self.timezone)

    def window_at(self, now: float) -> tuple[float, float] | None:
        """The [start, end) window containing now, or None.

        Overlapping or touching recurring windows are merged; a merged window that reaches past
        ``HORIZON_DAYS`` from ``now`` is cut at the last start/end found within the horizon.
        """
        if self.start is not None and self.end is not None:
            return (self.start, self.end) if self.start <= now < self.end else None
        found = self._plan().window(now)
        return None if found is None else (found[0], found[1])

    def active(self, now: float) -> bool:
        return self.window_at(now) is not None

    def next_change(self, now: float) -> float | None:
        """The first time strictly after now at which active() changes (a window's start or end);
        None if never (one-off in the past) or not within ``HORIZON_DAYS``."""
        if self.start is not None and self.end is not None:
            if now < self.start:
                return self.start
            return self.end if now < self.end else None
        rec = self._plan()
        found = rec.window(now)
        if found is not None:
            _, end, clipped = found
            return None if clipped else end
        return rec.next_start(now)

    def describe(self) -> str:
        if self.start is not None and self.end is not None:
            return f"{format_time(self.start)} → {format_time(self.end)}"
        if self.weekly is not None:
            w = self.weekly
            return f"weekly {','.join(w.days)} {w.at} for {format_duration(w.duration)} ({self.timezone})"
        assert self.duration is not None
        return f"cron {self.cron!r} for {format_duration(self.duration)} ({self.timezone})"
