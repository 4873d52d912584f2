"""Event times against the receive time: clamped, refused, or noticed as late.

An event time too far ahead of (or behind) the time the core received the message, beyond the
``core.clock`` bounds, is clamped to the receive time (a notice) or refused (``InvalidMessage``),
per ``clock.ahead`` / ``clock.behind``. An event older than the latest one applied by more than the
reorder tolerance is applied at the current clock and noticed as ``late`` (its own time still orders
it among its alarm's raises and clears).
"""

from __future__ import annotations

from operator import itemgetter
from typing import overload

from engine.core.decisions import Decisions, Stats
from engine.core.notices import ClockNotice, LateNotice
from engine.core.settings import CoreSettings
from engine.errors import InvalidMessage
from engine.model.messages import Alarm, Decoded, PlainAlarm, SampleRow

_TIME = itemgetter("time")


class EventTimes:
    def __init__(self, settings: CoreSettings, stats: Stats) -> None:
        self._settings = settings
        self._stats = stats
        self.watermark = 0.0  # the latest event time applied: older by > tolerance is late
        # read per message; the settings are frozen (a pydantic model's attributes are slow to read)
        self._max_ahead = settings.clock.max_ahead
        self._max_behind = settings.clock.max_behind
        self._tolerance = settings.reorder_tolerance

    @overload
    def alarm(self, topic: str, alarm: Alarm, received: float, out: Decisions) -> Alarm: ...

    @overload
    def alarm(
        self, topic: str, alarm: Alarm | PlainAlarm, received: float, out: Decisions
    ) -> Alarm | PlainAlarm: ...

    def alarm(
        self, topic: str, alarm: Alarm | PlainAlarm, received: float, out: Decisions
    ) -> Alarm | PlainAlarm:
        """The alarm (its model or its plain fields) with its event time within bounds (clamped: a
        copy, and a notice); ``InvalidMessage`` when it is refused."""
        t = alarm.event_time
        behind = self._max_behind
        if t <= received + self._max_ahead and (behind is None or t >= received - behind):
            return alarm  # within bounds (``_check`` would say None)
        clamped = self._check(topic, "event_time", t, received, out)
        if clamped is None:
            return alarm
        if isinstance(alarm, PlainAlarm):
            return alarm.with_time(clamped)
        return alarm.model_copy(update={"event_time": clamped})

    def on_time(self, decoded: Decoded, received: float, out: Decisions) -> Decoded:
        """The message with its event times within bounds (clamped ones replaced, a notice each);
        ``InvalidMessage`` when one is refused (a batch: when all its samples are)."""
        if decoded.alarm is not None:
            alarm = self.alarm(decoded.topic, decoded.alarm, received, out)
            return decoded if alarm is decoded.alarm else Decoded(decoded.topic, decoded.kind, alarm, (), ())
        c = self._settings.clock
        rows = decoded.rows
        behind = c.max_behind
        columns = decoded.columns  # the batch's earliest and latest time, when the decoder took them
        if columns is not None:
            earliest, latest = columns.earliest, columns.latest
        elif rows:
            times = list(map(_TIME, rows))
            earliest, latest = min(times), max(times)
        else:
            return decoded  # no sample: no time to check
        if latest <= received + c.max_ahead and (behind is None or earliest >= received - behind):
            return decoded  # every time within bounds (``_check`` would return None for each)
        kept: list[SampleRow] = []
        changed = False
        rejected = list(decoded.rejected)
        # Positions are those of the batch when none of it was rejected (else they are unknown here).
        batch = len(rows) > 1 or bool(decoded.rejected)
        for i, row in enumerate(rows):
            field_name = ("samples[].time" if decoded.rejected else f"samples[{i}].time") if batch else "time"
            try:
                t = self._check(decoded.topic, field_name, row["time"], received, out)
            except InvalidMessage as err:
                rejected.extend(err.errors)
                changed = True
                continue
            if t is not None:
                changed = True
            kept.append(row if t is None else {**row, "time": t})
        if not changed:
            return decoded
        if not kept:
            raise InvalidMessage(decoded.topic, rejected)
        return Decoded(decoded.topic, decoded.kind, None, tuple(kept), tuple(rejected))

    def _check(self, topic: str, field_name: str, t: float, received: float, out: Decisions) -> float | None:
        """None when ``t`` is within bounds, else the receive time (clamp) or ``InvalidMessage``."""
        c = self._settings.clock
        if t > received + c.max_ahead:
            notice = ClockNotice("clock_ahead", topic, field_name, t, received, c.max_ahead)
            policy = c.ahead
        elif c.max_behind is not None and t < received - c.max_behind:
            notice = ClockNotice("clock_behind", topic, field_name, t, received, c.max_behind)
            policy = c.behind
        else:
            return None
        if policy == "reject":
            self._stats.notices[notice.kind + "_rejected"] += 1
            raise InvalidMessage(topic, [(field_name, notice.reason)])
        self._stats.notices[notice.kind] += 1
        out.notices.append(notice)
        return received

    def late(self, topic: str, t: float, kind: str, name: str, out: Decisions) -> None:
        """An event older than the latest one applied by more than ``reorder_tolerance``: applied at
        the current clock (its own time still orders it among its alarm's raises and clears). The
        notice names it ``f"{kind} {name}"`` (``alarm agg-1``, ``sample of olt-7``), written only
        when it is late."""
        tolerance = self._tolerance
        if t < self.watermark - tolerance:
            self._stats.notices["late"] += 1
            out.notices.append(LateNotice(topic, t, f"{kind} {name}", self.watermark, tolerance))
        elif t > self.watermark:  # (``max``, without its call: per message)
            self.watermark = t
