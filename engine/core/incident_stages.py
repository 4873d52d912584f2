"""Stages an incident passes through between the lifecycle's transitions: maintenance and SLA.

Neither changes an incident's phase (``engine.core.lifecycle`` does). Each looks at one incident
at a given time, answers with a small frozen verdict, and the book writes the verdict's reason on
the incident, so explanations read why instead of re-deriving it:

* ``MaintenanceStage.hold``: a window covering a pending incident's root holds its opening until
  the window ends (``Incident.maintenance``: the window's rule, ``hold_until``: its end).
* ``MaintenanceStage.mute``: a window covering an open incident's root mutes its ``updated``
  records until the window ends (``muted_by``, ``muted_until``); its resolution is never held.
* ``SlaStage.milestone``: an open incident is re-assessed when the time left before its soonest
  SLA breach reaches the next milestone (``sla_due``); ``escalation`` says which milestone came.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.core.alarms import ActiveAlarm
from engine.core.experience.sla import SlaFacts, UrgencySettings
from engine.core.forms.maintenance import Calendar


@dataclass(frozen=True, slots=True)
class Covered:
    """A maintenance window covers the incident's root: its rule, and when it ends."""

    rule: str
    until: float


class MaintenanceStage:
    def __init__(self, calendar: Calendar | None, alarm: Callable[[str], ActiveAlarm | None]) -> None:
        self._calendar = calendar
        self._alarm = alarm

    def covering(self, root: str, now: float) -> Covered | None:
        """The maintenance window covering the alarm ``root`` now, if any."""
        if not self._calendar:
            return None
        alarm = self._alarm(root)
        found = self._calendar.covering(alarm.ne_id, now) if alarm is not None else None
        return Covered(*found) if found is not None else None

    def hold(self, root: str, now: float) -> Covered | None:
        """Whether a pending incident rooted at ``root`` is held back (until the window ends)."""
        return self.covering(root, now)

    def mute(self, root: str, now: float) -> Covered | None:
        """Whether an open incident's update is muted: a window ending now mutes nothing."""
        if not self._calendar:  # (``covering``'s first test: asked before every update)
            return None
        covered = self.covering(root, now)
        return covered if covered is not None and covered.until > now else None


@dataclass(frozen=True, slots=True)
class Milestone:
    """The next re-assessment of an open incident's SLA urgency: when, and at what time left."""

    due: float
    seconds_to_breach: float | None  # None: restored from a snapshot that did not keep it

    @property
    def reason(self) -> str:
        if self.seconds_to_breach is None:
            return "SLA milestone"
        if self.seconds_to_breach <= 0:
            return "SLA breached"
        return f"SLA milestone: {self.seconds_to_breach:g} s to breach"


class SlaStage:
    def __init__(
        self,
        facts: Callable[[Any, float], SlaFacts | None] | None,
        milestones: Sequence[float],
    ) -> None:
        self.facts = facts
        # Seconds-to-breach values at which an open incident is re-assessed (its urgency steps, the
        # breach itself), highest first: SLA urgency grows with time, not only with alarms.
        self._milestones = tuple(sorted({float(m) for m in milestones if m >= 0}, reverse=True))

    def milestone(self, sla: SlaFacts | None, now: float) -> Milestone | None:
        """When the soonest breach's time left reaches the next milestone below it, if the outage
        lasts: then the urgency (and the score) has moved a step, or the breach has happened."""
        if sla is None:
            return None
        left = sla.soonest if sla.soonest is not None else sla.seconds_to_breach  # (unrounded)
        if left is None:
            return None
        below = [m for m in self._milestones if m < left]
        if below:  # (later than ``now`` even where the float sum cannot hold so small a step)
            return Milestone(max(now + (left - below[0]), math.nextafter(now, math.inf)), below[0])
        if sla.next_breach is not None and 0.0 in self._milestones:
            # Breached, and more customers breach later (another group's outage began later, or
            # its tier allows longer): looked at again then, so ``customers_breached`` follows.
            return Milestone(max(now + sla.next_breach, math.nextafter(now, math.inf)), 0.0)
        return None


def sla_milestones(urgency: UrgencySettings) -> tuple[float, ...]:
    """Seconds to breach at which an open incident's SLA urgency is re-assessed while its outage
    lasts: a third and two thirds of the way from ``horizon`` to ``urgent``, ``urgent`` (full
    urgency) and 0 (the breach): four steps of urgency, so the score follows the clock without an
    ``updated`` record every minute (then one per later breach of another customer group)."""
    step = (urgency.horizon - urgency.urgent) / 3
    return (urgency.urgent + 2 * step, urgency.urgent + step, urgency.urgent, 0.0)
