"""Containment: a part of the core that raises is quarantined, named and retried later; the rest goes on.

Theory of operation
-------------------
The core is made of timed parts (the alarm table, the correlator, each rule form, service quality
with its KQI windows and SLA tracker, the incident book with its incidents). Bad input is refused at
the edge (``engine.model.messages``), so an exception inside a part is a bug or an input nobody foresaw.
Either way it must cost that part only, never the core: before this module one poisoned KQI window
made every tick (and every message, which flushes the timers) raise, for as long as the poison stayed
in the window, and no incident opened, updated or resolved anywhere.

Every call into a part that can fail on its own goes through ``Quarantine.run(part, item, now, fn)``:

* ``item`` narrows the part where it holds independent things: a KQI scope (``ne:olt-7/voip``), an
  incident id. ``""`` is the whole part (a rule form, the correlator).
* When ``fn`` raises, the (part, item) is *quarantined*: a ``Fault`` records the error, what poisoned
  it (``poison``: the inputs the caller can name) and when it will be tried again. The retry backs
  off exponentially (1 s, 2 s, 4 s … at most ``max_backoff``), on the core's clock, so a failure is
  never retried in a tight loop and the decisions stay deterministic (journal replay meets the same
  faults at the same times).
* While quarantined, ``run`` skips the call and returns the default; the parts' ``next_due`` move
  their due time to the retry (``retry_at``), so no timer spins on it.
* A retry that succeeds lifts the quarantine: a KQI window whose poison left it heals by itself.
* After ``give_up`` failures in a row (20: about an hour of retries) the part stays quarantined
  without retries (``retry_at`` None) until a reload builds the core again: a replay's final drain
  ends instead of retrying a dead part for the rest of its horizon.

Each new failure is returned once by ``take()`` (the pipeline turns it into a dead letter, the
daemon into an error metric and a log line); ``faults()`` lists what is quarantined now (``/readyz``
and the ``soc_core_quarantined`` gauge). Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, TypeVar

from engine.model.timeutil import format_time

__all__ = ["Fault", "Quarantine"]

T = TypeVar("T")

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 300.0
GIVE_UP = 20  # failures in a row after which a part is no longer retried (about an hour)


@dataclass(frozen=True, slots=True)
class Fault:
    """One quarantined part (or item of a part), as of its latest failure (times: epoch seconds)."""

    part: str  # "quality", "incidents", "storms", "correlator", "sla" …
    item: str  # "" for the whole part; a KQI scope, an incident id …
    error: str  # "OverflowError: intermediate overflow in fsum"
    poison: str  # what the core can name of the input that poisoned it
    since: float  # first failure
    at: float  # latest failure
    retry_at: float | None  # None: given up, quarantined until a reload
    failures: int = 1

    @property
    def name(self) -> str:
        return f"{self.part}[{self.item}]" if self.item else self.part

    def to_wire(self) -> dict[str, Any]:
        """Its JSON form (in its dead letter, the daemon's log line, ``/readyz``)."""
        return {
            "part": self.part,
            "item": self.item,
            "error": self.error,
            "poison": self.poison,
            "since": format_time(self.since),
            "failures": self.failures,
            "retry_at": None if self.retry_at is None else format_time(self.retry_at),
        }


class Quarantine:
    def __init__(
        self, *, initial: float = INITIAL_BACKOFF, maximum: float = MAX_BACKOFF, give_up: int = GIVE_UP
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.give_up = give_up
        self._faults: dict[tuple[str, str], Fault] = {}
        # the same map, never replaced (``load`` refills it): its truth says whether anything is
        # quarantined without a method call, for the parts that ask after every message
        self.held: Mapping[tuple[str, str], Fault] = self._faults
        self._new: list[Fault] = []
        self.failures = 0  # every failure, retries included

    def __bool__(self) -> bool:
        return bool(self._faults)

    def run(
        self,
        part: str,
        item: str,
        now: float,
        fn: Callable[[], T],
        default: T,
        *,
        poison: Callable[[], str] | None = None,
    ) -> T:
        """``fn()``, or ``default`` while (part, item) is quarantined or when ``fn`` raises (which
        quarantines it). ``poison`` describes the input, called only on a failure."""
        key = (part, item)
        if self._faults:
            fault = self._faults.get(key)
            if fault is not None and (fault.retry_at is None or now < fault.retry_at):
                return default
        try:
            result = fn()
        except Exception as exc:  # containment: any failure of a part is the part's, not the core's
            self.failed(part, item, exc, now, poison() if poison is not None else "")
            return default
        if self._faults:
            self._faults.pop(key, None)
        return result

    def failed(self, part: str, item: str, exc: BaseException, now: float, poison: str) -> Fault:
        """Record a failure of (part, item) at ``now``: quarantined until the next retry."""
        self.failures += 1
        error = f"{type(exc).__name__}: {exc}"
        fault = self._faults.get((part, item))
        if fault is None:
            fault = Fault(part, item, error, poison, since=now, at=now, retry_at=now + self.initial)
            self._faults[part, item] = fault
        else:
            failures = fault.failures + 1
            backoff = min(self.maximum, self.initial * 2 ** min(failures - 1, 30))
            fault = replace(
                fault,
                failures=failures,
                at=now,
                error=error,
                poison=poison or fault.poison,
                retry_at=None if failures >= self.give_up else now + backoff,
            )
            self._faults[part, item] = fault
        self._new.append(fault)
        return fault

    def get(self, part: str, item: str = "") -> Fault | None:
        return self._faults.get((part, item)) if self._faults else None

    def due(self, part: str, due: float | None, item: str = "") -> float | None:
        """A part's next due time, moved to its retry while it is quarantined (None once given up)."""
        fault = self.get(part, item)
        if fault is None or due is None:
            return due
        return None if fault.retry_at is None else max(due, fault.retry_at)

    def items(self, part: str) -> Iterable[Fault]:
        return (f for (p, _), f in self._faults.items() if p == part)

    def faults(self) -> list[Fault]:
        """Everything quarantined now, by part and item."""
        return [self._faults[k] for k in sorted(self._faults)]

    def take(self) -> Sequence[Fault]:
        """The failures since the last call (each once), oldest first."""
        if not self._new:  # the usual answer, after every message: no list made for it
            return ()
        out, self._new = self._new, []
        return out

    def by_part(self) -> Mapping[str, int]:
        counts: dict[str, int] = {}
        for part, _ in self._faults:
            counts[part] = counts.get(part, 0) + 1
        return counts

    # -- snapshot ----------------------------------------------------------------------------------
    def dump(self) -> list[dict[str, Any]]:
        return [asdict(self._faults[k]) for k in sorted(self._faults)]

    def load(self, state: Iterable[Mapping[str, Any]]) -> None:
        faults = {(d["part"], d["item"]): Fault(**d) for d in state}
        self._faults.clear()  # the same dictionary: ``held`` is it
        self._faults.update(faults)
        self._new = []
