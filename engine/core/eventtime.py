"""Event times against the receive time: clamped, refused, or noticed as late.

An event time too far ahead of (or behind) the time the core received the message, beyond the
``core.clock`` bounds, is clamped to the receive time (a notice) or refused (``InvalidMessage``),
per ``clock.ahead`` / ``clock.behind``. An event older than the latest one applied by more than the
reorder tolerance is applied at the current clock and noticed as ``late`` (its own time still orders
it among its alarm's raises and clears).
"""

from __future__ import annotations

from engine.core.decisions import Decisions, Stats
from engine.core.settings import CoreSettings
from engine.errors import InvalidMessage
from engine.model.messages import Decoded, KpiSample
from engine.model.timeutil import format_time


class EventTimes:
    def __init__(self, settings: CoreSettings, stats: Stats) -> None:
        self._settings = settings
        self._stats = stats
        self.watermark = 0.0  # the latest event time applied: older by > tolerance is late

    def on_time(self, decoded: Decoded, received: float, out: Decisions) -> Decoded:
        """The message with its event times within bounds (clamped ones replaced, a notice each);
        ``InvalidMessage`` when one is refused (a batch: when all its samples are)."""
        if decoded.alarm is not None:
            t = self._check(decoded.topic, "event_time", decoded.alarm.event_time, received, out)
            if t is None:
                return decoded
            alarm = decoded.alarm.model_copy(update={"event_time": t})
            return Decoded(decoded.topic, decoded.kind, alarm, (), ())
        samples: list[KpiSample] = []
        changed = False
        rejected = list(decoded.rejected)
        # Positions are those of the batch when none of it was rejected (else they are unknown here).
        batch = len(decoded.samples) > 1 or bool(decoded.rejected)
        for i, sample in enumerate(decoded.samples):
            field_name = ("samples[].time" if decoded.rejected else f"samples[{i}].time") if batch else "time"
            try:
                t = self._check(decoded.topic, field_name, sample.time, received, out)
            except InvalidMessage as err:
                rejected.extend(err.errors)
                changed = True
                continue
            if t is not None:
                changed = True
            samples.append(sample if t is None else sample.model_copy(update={"time": t}))
        if not changed:
            return decoded
        if not samples:
            raise InvalidMessage(decoded.topic, rejected)
        return Decoded(decoded.topic, decoded.kind, None, tuple(samples), tuple(rejected))

    def _check(self, topic: str, field_name: str, t: float, received: float, out: Decisions) -> float | None:
        """None when ``t`` is within bounds, else the receive time (clamp) or ``InvalidMessage``."""
        c = self._settings.clock
        if t > received + c.max_ahead:
            kind, policy, bound = "clock_ahead", c.ahead, f"core.clock.max_ahead {c.max_ahead:g} s"
            gap = f"{t - received:.0f} s ahead of"
        elif c.max_behind is not None and t < received - c.max_behind:
            kind, policy, bound = "clock_behind", c.behind, f"core.clock.max_behind {c.max_behind:g} s"
            gap = f"{received - t:.0f} s behind"
        else:
            return None
        detail = f"{format_time(t)} is {gap} the receive time {format_time(received)} ({bound})"
        if policy == "reject":
            self._stats.notices[kind + "_rejected"] += 1
            raise InvalidMessage(topic, [(field_name, detail)])
        self._stats.notices[kind] += 1
        out.notices.append(
            {
                "kind": kind,
                "topic": topic,
                "field": field_name,
                "event_time": format_time(t),
                "detail": detail + "; applied at the receive time",
            }
        )
        return received

    def late(self, topic: str, t: float, what: str, out: Decisions) -> None:
        """An event older than the latest one applied by more than ``reorder_tolerance``: applied at
        the current clock (its own time still orders it among its alarm's raises and clears)."""
        tolerance = self._settings.reorder_tolerance
        if t < self.watermark - tolerance:
            self._stats.notices["late"] += 1
            out.notices.append(
                {
                    "kind": "late",
                    "topic": topic,
                    "event_time": format_time(t),
                    "detail": f"{what} at {format_time(t)} arrived after events up to "
                    f"{format_time(self.watermark)} (reorder tolerance {tolerance:g} s)",
                }
            )
        else:
            self.watermark = max(self.watermark, t)
