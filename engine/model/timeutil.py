"""Time in the core is a float: seconds since the Unix epoch, UTC. These helpers convert at the edges."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Final

from pydantic import BeforeValidator

from engine.model.wording import type_name

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class BeforeEpoch(ValueError):
    """An RFC 3339 time before 1970-01-01T00:00:00Z, refused as negative epoch seconds are. Where
    such a time means "unset" (Alertmanager sends Go's zero time, ``0001-01-01T00:00:00Z``), the
    caller catches this one."""


def parse_time(value: object) -> float:
    """Epoch seconds (int or float) or an RFC 3339 string → epoch seconds.

    Raises ``ValueError`` with a specific reason: naive datetimes (no offset) are refused, since a
    network element's local time would silently shift every window.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            t = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise ValueError("time must be a finite number (this integer is too large)") from None
        if not math.isfinite(t):
            raise ValueError("time must be a finite number")
        if t < 0:
            raise ValueError("epoch seconds must not be negative")
        return t
    if isinstance(value, str):
        return _parse_text(value)
    raise ValueError(f"expected RFC 3339 time or epoch seconds, got {type_name(value)}")


@lru_cache(maxsize=4096)
def _parse_text(value: str) -> float:
    """An RFC 3339 string → epoch seconds; recent ones remembered (a message's time is parsed by
    the replay's reorder buffer and again by the decoder, and alarms come in bursts of one second).
    A string that fails raises every time (exceptions are not cached)."""
    dt: datetime | None = None
    if value.endswith("Z"):  # the usual form (``...T12:00:00.000Z``): ``fromisoformat`` reads a final
        # ``Z`` as UTC itself (Python 3.11), without the copies below (about half the cost of a
        # new time); anything it refuses takes the general path, which words the error
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            dt = None
    if dt is None:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an RFC 3339 time: {value!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"RFC 3339 time needs an offset or Z: {value!r}")
    t = dt.timestamp()
    if t < 0:  # as epoch seconds must not be negative
        raise BeforeEpoch(f"time {value!r} is before 1970-01-01T00:00:00Z (the Unix epoch)")
    return t


parse_text = _parse_text
"""``parse_time`` of a string, for a caller that already knows it holds one (no type tests)."""


@lru_cache(maxsize=4096)
def format_time(t: float) -> str:
    """Epoch seconds → RFC 3339 in UTC with millisecond precision and a ``Z``; recent ones
    remembered (every record carries its time, and records come in bursts at one time).

    Input times end with year 9999, but a virtual clock (a replay) may run past it by a timer's
    delay after such an event: those times are written in ISO 8601's expanded form (``+10000-…``),
    not an error (``_expanded``)."""
    if 0.0 <= t < _WHOLE_END and (s := int(t)) == t:  # whole seconds (most times): by table
        day, minute = divmod(s, 86_400)
        prefix = _DAYS.get(day)
        if prefix is None:
            prefix = _day_prefix(day)
        minute, sec = divmod(minute, 60)
        return prefix + _MINUTES[minute] + _SECONDS[sec]
    # the same text as ``strftime("%Y-%m-%dT%H:%M:%S.")`` and the milliseconds truncated
    # (``isoformat`` truncates to its ``timespec`` too), in one C call instead of two and a format
    try:
        return datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    except (OverflowError, ValueError, OSError):
        return _expanded(t)


# ``format_time`` of a whole second from 1970 to 9999: the day's ``YYYY-MM-DDT`` (as ``isoformat``
# writes it, kept per day), then ``HH:MM:`` and ``SS.000Z`` from tables: the same text as the
# ``datetime`` path (a whole second has no fraction to round), tested against it
_WHOLE_END = 253_402_300_800.0  # 10000-01-01T00:00:00Z
_MINUTES = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SECONDS = tuple(f"{s:02d}.000Z" for s in range(60))
_DAYS: dict[int, str] = {}  # days since 1970-01-01 -> "YYYY-MM-DDT" (bounded: cleared when full)
_DAYS_KEPT = 4096


def _day_prefix(day: int) -> str:
    if len(_DAYS) >= _DAYS_KEPT:
        _DAYS.clear()
    prefix = _DAYS[day] = datetime.fromtimestamp(day * 86_400, UTC).isoformat()[:11]
    return prefix


def _expanded(t: float) -> str:
    """``format_time`` of a time ``datetime`` cannot hold: the proleptic Gregorian date by
    arithmetic (days from civil, H. Hinnant's algorithm), the year signed and at least five digits;
    ``"nan"``/``"inf"`` as Python writes them (no time reaches the core as one)."""
    if not math.isfinite(t):
        return repr(t)
    # the fraction's microseconds rounded, then milliseconds truncated, as ``fromtimestamp`` and
    # ``isoformat`` do
    frac, whole = math.modf(t)
    us = round(frac * 1e6)
    ms = int(whole) * 1000 + us // 1000
    days, ms = divmod(ms, 86_400_000)
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    sec, milli = divmod(ms, 1000)
    sign = "+" if year >= 0 else "-"
    return (
        f"{sign}{abs(year):05d}-{month:02d}-{day:02d}T{sec // 3600:02d}:{sec // 60 % 60:02d}:"
        f"{sec % 60:02d}.{milli:03d}Z"
    )


def time_words(t: float) -> str:
    """A time in seconds for an error message: whole seconds, or six figures once it is too long
    to read (``1e+30``, not thirty-one digits of a float's binary expansion)."""
    return f"{t:.0f}" if abs(t) < 1e15 else f"{t:.6g}"


def parse_duration(value: object) -> float:
    """``300``, ``"300s"``, ``"5m"``, ``"1.5h"``, ``"250ms"`` → seconds. Raises ``ValueError``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise ValueError("duration must be a finite number (this integer is too large)") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"duration must be a finite, non-negative number, got {value}")
        return seconds
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 1h, 250ms)")
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration, got {type_name(value)}")


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field type: seconds, given as a number or as ``30s``, ``5m``, ``1h``, ``250ms``."""

MINUTE: Final = 60.0
HOUR: Final = 3600.0
DAY: Final = 86400.0


def format_duration(seconds: float) -> str:
    """``7200`` → ``2h``, ``5400`` → ``90m``, ``86400`` → ``1d``, ``90`` → ``90s``; past a day's
    worth of digits, six figures of seconds (``1e+300s``, not three hundred digits)."""
    if seconds >= 1e15:
        return f"{time_words(seconds)}s"
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def at_most(bound: float) -> BeforeValidator:
    """A duration field's upper bound, as pydantic metadata: ``Annotated[float, at_most(DAY)]``
    parses as ``Duration`` does, then refuses more than ``bound`` seconds, naming the bound and
    the value as given (``must be at most 7d, got 1e300s``). A timer set centuries ahead is
    never a setting someone means: it would silently never fire."""

    def check(value: object) -> float:
        seconds = parse_duration(value)
        if seconds > bound:
            given = value.strip() if isinstance(value, str) else format_duration(seconds)
            raise ValueError(f"must be at most {format_duration(bound)}, got {given}")
        return seconds

    return BeforeValidator(check)


# Duration field types with their upper bound (README, "Configuration": the bounds of the keys)
Duration1m = Annotated[float, at_most(MINUTE)]
Duration1h = Annotated[float, at_most(HOUR)]
Duration1d = Annotated[float, at_most(DAY)]
Duration7d = Annotated[float, at_most(7 * DAY)]
Duration30d = Annotated[float, at_most(30 * DAY)]
Duration366d = Annotated[float, at_most(366 * DAY)]
"""``Duration`` at most a minute, an hour, a day, a week, 30 days, a leap year (as rule windows)."""
