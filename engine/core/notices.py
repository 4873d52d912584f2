"""Notices: inputs the core applied but worth an operator's eye, as frozen typed objects.

A notice keeps its times as epoch seconds; its words (``detail``) and its JSON form (``to_wire()``)
are produced only at the edges (the daemon's log lines and metrics, a cluster member's counters).
Kinds: ``clear_unknown``, ``stale_raise``, ``stale_clear`` (the alarm table), ``clock_ahead``,
``clock_behind`` (an event time clamped to the receive time) and ``late`` (an event out of order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from engine.model.timeutil import format_time

__all__ = ["AlarmNotice", "ClockNotice", "LateNotice", "Notice"]


@dataclass(frozen=True, slots=True)
class AlarmNotice:
    """A notice of the alarm table: a clear that matches nothing (``clear_unknown``), a raise older
    than its alarm's last clear (``stale_raise``, ``other``: that clear), a clear older than the
    active occurrence (``stale_clear``, ``other``: its raise). Times: epoch seconds."""

    kind: Literal["clear_unknown", "stale_raise", "stale_clear"]
    alarm: str
    event_time: float
    other: float | None = None

    @property
    def detail(self) -> str:
        if self.kind == "clear_unknown":
            return "a clear that matches no active alarm (never raised, already cleared or forgotten)"
        other = format_time(self.other or 0.0)
        if self.kind == "stale_raise":
            return f"a raise older than the last clear of its alarm ({other}): ignored"
        return f"a clear older than the active occurrence (raised {other}): ignored"

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "alarm": self.alarm,
            "event_time": format_time(self.event_time),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ClockNotice:
    """An event time beyond the ``core.clock`` bounds (``clock_ahead`` of or ``clock_behind`` the
    receive time ``received`` by more than ``limit`` seconds), clamped to the receive time."""

    kind: Literal["clock_ahead", "clock_behind"]
    topic: str
    field: str  # the event time's field: event_time, time, samples[3].time
    event_time: float
    received: float
    limit: float

    @property
    def reason(self) -> str:
        """Why the time is out of bounds (also the error of a refused one)."""
        if self.kind == "clock_ahead":
            gap, bound = f"{self.event_time - self.received:.0f} s ahead of", "max_ahead"
        else:
            gap, bound = f"{self.received - self.event_time:.0f} s behind", "max_behind"
        return (
            f"{format_time(self.event_time)} is {gap} the receive time {format_time(self.received)} "
            f"(core.clock.{bound} {self.limit:g} s)"
        )

    @property
    def detail(self) -> str:
        return self.reason + "; applied at the receive time"

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "topic": self.topic,
            "field": self.field,
            "event_time": format_time(self.event_time),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class LateNotice:
    """An event (``what``) older than the latest one applied (``watermark``) by more than the
    reorder ``tolerance``: applied at the current clock."""

    topic: str
    event_time: float
    what: str
    watermark: float
    tolerance: float
    kind: Literal["late"] = "late"

    @property
    def detail(self) -> str:
        return (
            f"{self.what} at {format_time(self.event_time)} arrived after events up to "
            f"{format_time(self.watermark)} (reorder tolerance {self.tolerance:g} s)"
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "topic": self.topic,
            "event_time": format_time(self.event_time),
            "detail": self.detail,
        }


Notice = AlarmNotice | ClockNotice | LateNotice
