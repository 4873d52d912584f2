"""The rule forms' one interface: facts in, one typed outcome out, and their "why / why not".

Theory of operation
-------------------
A *form* is one kind of rule with the state it keeps: the correlator (``correlate`` rules), group,
inhibit, threshold, pair, kpi_threshold, maintenance and priority. The pipeline knows them only
through ``Form`` and the ordered registry (``engine.core.forms.registry``); it names none of them
when it feeds, ticks, snapshots or summarises.

* ``observe(fact, now)``: every form sees every fact, in registry order: an alarm occurrence
  (``Raised``: new, re-surfaced or changed, with the rule parts it matches), its clear
  (``Cleared``), alarms whose incident went away (``Released``: their facts and anchors go) and KPI
  samples (``KpiSample``). A form updates its own state and returns one frozen ``Outcome``
  (``NOTHING`` for a fact it does not care about).
* The pipeline applies the outcomes only after *every* form has observed the fact, then in
  registry order: the explanations of the observed alarm with its raise, then per form its group
  starts, holds, the alarms its rules raised or cleared, the explanations whose root is one of
  those alarms (``members``) and its discards. Applying can raise further alarms, which go the same
  way; so the registry order is part of the decisions, like Alertmanager's stage order.
* ``tick(now)``: the form's timers due by ``now`` (``next_due()`` says when the next one is), one
  ``Outcome`` applied at once, each form contained on its own (``engine.core.containment``).
* ``dump()`` / ``load(state)``: its state, JSON-ready, under its ``name`` in the snapshot.
* ``explain(rule, seen)``: for one of its rules (``rule_form`` says which rules are its) and one
  alarm, whether the rule decided something about it and why, or why not, from the form's own
  state and what the engine holds (``Seen``); ``engine.core.explain`` only assembles the answers.
  ``transient(seen)``: what it can tell of a cleared alarm that left no incident behind.
* ``counters()``: what it counts, for ``Pipeline.summary()``.

``BaseForm`` gives the defaults (no timers, no state, no counters); a form overrides what it has.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mypy_extensions import mypyc_attr

from engine.core.alarms import ActiveAlarm
from engine.core.forms.synthetic import Synthetic
from engine.model.messages import KpiSample
from engine.model.topology import Topology
from engine.model.twins import twin_built
from engine.rules.compiler import CompiledRule, Program

if TYPE_CHECKING:
    from engine.core.incidents import Incident
    from engine.core.merge_graph import Suppression

MAX_LISTED = 5  # alarm keys named in one sentence before "… and N more"


# -- what the forms decide --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Explanation:
    """``symptom`` (an alarm key) is explained by ``root`` (an alarm key) through ``rule``."""

    root: str
    symptom: str
    rule: CompiledRule
    root_time: float
    symptom_time: float
    detail: str = ""  # what related them, in words (key values, window), for the suppression reason

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(  # noqa: PLR0917 (the dataclass's parameters, positional as there)
        self,
        root: str,
        symptom: str,
        rule: CompiledRule,
        root_time: float,
        symptom_time: float,
        detail: str = "",
    ) -> None:
        self.root = root  # type: ignore[misc]
        self.symptom = symptom  # type: ignore[misc]
        self.rule = rule  # type: ignore[misc]
        self.root_time = root_time  # type: ignore[misc]
        self.symptom_time = symptom_time  # type: ignore[misc]
        self.detail = detail  # type: ignore[misc]

    def sort_key(self) -> tuple[int, float, str, float, str]:
        return (self.rule.order, self.root_time, self.root, self.symptom_time, self.symptom)


twin_built(Explanation)


@dataclass(frozen=True, slots=True)
class GroupStart:
    """``anchor`` starts a group: its incident waits ``wait`` and updates every ``interval``."""

    anchor: str
    rule: CompiledRule
    wait: float | None
    interval: float | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one form decided on one ``observe`` or ``tick``, in the order the pipeline applies it."""

    explanations: tuple[Explanation, ...] = ()  # about the observed alarm: applied with its raise
    starts: tuple[GroupStart, ...] = ()  # incidents anchored by a group rule
    holds: tuple[tuple[str, float], ...] = ()  # (alarm key, until): its pending incident waits
    alarms: tuple[Synthetic, ...] = ()  # alarms the form's rules raised or cleared
    members: tuple[Explanation, ...] = ()  # explained by one of ``alarms``: applied after them
    discards: tuple[tuple[str, str], ...] = ()  # (alarm key, rule): its pending incident is dropped

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(  # noqa: PLR0917 (the dataclass's parameters, positional as there)
        self,
        explanations: tuple[Explanation, ...] = (),
        starts: tuple[GroupStart, ...] = (),
        holds: tuple[tuple[str, float], ...] = (),
        alarms: tuple[Synthetic, ...] = (),
        members: tuple[Explanation, ...] = (),
        discards: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.explanations = explanations  # type: ignore[misc]
        self.starts = starts  # type: ignore[misc]
        self.holds = holds  # type: ignore[misc]
        self.alarms = alarms  # type: ignore[misc]
        self.members = members  # type: ignore[misc]
        self.discards = discards  # type: ignore[misc]

    def __bool__(self) -> bool:
        return bool(
            self.explanations or self.starts or self.holds or self.alarms or self.members or self.discards
        )

    def __add__(self, other: Outcome) -> Outcome:
        if not other:
            return self
        if not self:
            return other
        return Outcome(
            self.explanations + other.explanations,
            self.starts + other.starts,
            self.holds + other.holds,
            self.alarms + other.alarms,
            self.members + other.members,
            self.discards + other.discards,
        )


twin_built(Outcome)


NOTHING = Outcome()


# -- what the forms observe -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Raised:
    """An alarm occurrence to correlate as of ``t`` (its first raise, or the moment it re-surfaced).

    ``parts`` are the rule parts (``ruleset/rule#part``) it matches now; ``arrival`` is true for a
    new occurrence only: thresholds count and pairs wait for arrivals, not for an alarm that changed
    severity or re-surfaced."""

    alarm: ActiveAlarm
    parts: frozenset[str]
    t: float
    arrival: bool

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(self, alarm: ActiveAlarm, parts: frozenset[str], t: float, arrival: bool) -> None:
        self.alarm = alarm  # type: ignore[misc]
        self.parts = parts  # type: ignore[misc]
        self.t = t  # type: ignore[misc]
        self.arrival = arrival  # type: ignore[misc]


twin_built(Raised)


@dataclass(frozen=True, slots=True)
class Cleared:
    """An alarm cleared (applied to the alarm table; its incident has been told)."""

    alarm: ActiveAlarm

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(self, alarm: ActiveAlarm) -> None:
        self.alarm = alarm  # type: ignore[misc]


twin_built(Cleared)


@dataclass(frozen=True, slots=True)
class Released:
    """An alarm whose incident went away (resolved or discarded): what the forms hold of it goes."""

    key: str

    # the dataclass's ``__init__`` written out, compiled by mypyc (``twin_built``): the one place a
    # frozen field is assigned
    def __init__(self, key: str) -> None:
        self.key = key  # type: ignore[misc]


twin_built(Released)


Fact = Raised | Cleared | Released | KpiSample


@dataclass(frozen=True, slots=True)
class FormContext:
    """What a form is built from: the compiled program, the topology and a read-only alarm lookup."""

    program: Program
    topology: Topology
    alarm: Callable[[str], ActiveAlarm | None]
    grace: float = 0.0  # the core's reorder tolerance: facts live this much longer than their window

    @property
    def rules(self) -> list[CompiledRule]:
        return list(self.program.rules.values())

    def rules_of(self, form: str) -> list[CompiledRule]:
        """The loaded rules of one rule form, in load order (as the forms always kept them)."""
        return [r for r in self.program.rules.values() if r.form == form]


# -- why / why not ----------------------------------------------------------------------------------
class Evidence(Protocol):
    """Read-only lookups an explanation may make beyond the alarm itself (``engine.core.explain``)."""

    def suppression(self, key: str) -> Suppression | None: ...

    def incident_of(self, key: str) -> Incident | None: ...

    def top(self, key: str) -> str:
        """The top root above ``key`` (``key`` itself when nothing explains it)."""
        ...

    def elements_with_alarms(self) -> Collection[str]:
        """The elements the table may hold alarms on (active, or cleared and still retained)."""
        ...

    def alarms_on(self, ne_id: str) -> Sequence[ActiveAlarm]:
        """The alarms the table holds on one element, in no particular order."""
        ...

    def fired(self, alarm: ActiveAlarm) -> frozenset[str]:
        """The match actions an alarm fires: ``rule#part`` and ``rule#part@field``."""
        ...


@dataclass(frozen=True, slots=True)
class Seen:
    """What the engine holds about the alarm being explained."""

    alarm: ActiveAlarm
    fired: frozenset[str]  # match actions (``rule#part``, ``rule#part@field``)
    classified: frozenset[str]  # the engine's own classification when it was last raised or changed
    sup: Suppression | None
    inc: Incident | None
    explains: Mapping[str, list[str]]  # rule -> alarms it explains directly
    synthetic: str | None  # the loaded rule that raised it
    clock: float
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class Verdict:
    """A form's answer about one of its rules for one alarm: did it decide, and why (or why not)."""

    decided: bool
    outcome: str
    matched: bool | None = None  # None: as the rule's alarm parts say; else the form's own reading


def few(keys: Sequence[str]) -> str:
    """``3 alarm(s) (a, b, c)``, at most ``MAX_LISTED`` named."""
    listed = ", ".join(keys[:MAX_LISTED])
    more = f" and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else ""
    return f"{len(keys)} alarm(s) ({listed}{more})"


# -- the interface ----------------------------------------------------------------------------------
class Form(Protocol):
    @property
    def name(self) -> str:
        """Its part name: quarantine, snapshot key, stuck-timer reports."""
        ...

    @property
    def rule_form(self) -> str | None:
        """The rule language's form it implements (``Rule.form``), if any."""
        ...

    def observe(self, fact: Fact, now: float) -> Outcome: ...

    def tick(self, now: float) -> Outcome: ...

    def next_due(self) -> float | None: ...

    def dump(self) -> Any: ...

    def load(self, state: Any) -> None: ...

    def explain(self, rule: CompiledRule, seen: Seen) -> Verdict: ...

    def transient(self, seen: Seen) -> str | None:
        """What the form can tell of a cleared alarm that left no incident behind (or None)."""
        ...

    def counters(self) -> dict[str, int]: ...


@mypyc_attr(allow_interpreted_subclasses=True)  # plug-in forms derive from it (engine.compiled)
class BaseForm:
    """Defaults for a form: no timers, no state, nothing counted, nothing to say."""

    name: str = ""
    rule_form: str | None = None
    # False: ``observe`` never acts on a KPI sample (the registry then does not offer it one)
    reads_samples: bool = True

    def observe(self, fact: Fact, now: float) -> Outcome:
        return NOTHING

    def tick(self, now: float) -> Outcome:
        return NOTHING

    def next_due(self) -> float | None:
        return None

    def dump(self) -> Any:
        return {}

    def load(self, state: Any) -> None:
        return None

    def explain(self, rule: CompiledRule, seen: Seen) -> Verdict:
        return Verdict(False, "nothing to say")

    def transient(self, seen: Seen) -> str | None:
        return None

    def counters(self) -> dict[str, int]:
        return {}

    def idle(self) -> bool:
        """True while ``observe`` (of an alarm fact), ``tick`` and ``next_due`` can do nothing: no
        rule of its form is loaded and it holds nothing. The registry then leaves it out of the
        alarm path (asked again after a snapshot is loaded)."""
        return False

    def close(self) -> None:
        return None
