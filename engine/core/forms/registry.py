"""The registry of rule forms: which forms a pipeline runs, in which order.

``FORMS`` is the default registry, an ordered tuple of builders (a form's class, or any callable
taking a ``FormContext``). The order is part of the decisions: every form observes a fact in this
order, then their outcomes are applied in this order (``engine.core.forms.base``), timers are ticked
in this order, and ``Pipeline.summary()`` lists the forms' counters in this order. The correlator
comes first: it classifies the alarms every other form reads (``Raised.parts``).

Adding a form is its module (a ``BaseForm`` subclass with its ``name``, ``rule_form`` and the
methods it needs) and its line here; a pipeline built with another registry runs other forms
without any change to the pipeline::

    from engine.core.forms.registry import FORMS
    pipeline = Pipeline(topology, rulesets, forms=(*FORMS, MyForm))

(``tests/test_form_registry.py`` does exactly that with a form defined in the test.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from engine.core.forms.base import BaseForm, Fact, Form, FormContext, Outcome
from engine.core.forms.breaches import Breaches
from engine.core.forms.correlator import Correlator
from engine.core.forms.groups import Groups
from engine.core.forms.inhibitions import Inhibitions
from engine.core.forms.maintenance import Calendar
from engine.core.forms.overrides import Overrides
from engine.core.forms.pairs import Pairs
from engine.core.forms.storms import Storms
from engine.errors import EngineError

__all__ = ["FORMS", "Builder", "Forms"]

Builder = Callable[[FormContext], Form]

FORMS: tuple[Builder, ...] = (
    Correlator,  # correlate rules; classifies every alarm for the forms after it
    Groups,  # group
    Storms,  # threshold
    Pairs,  # pair
    Inhibitions,  # inhibit
    Breaches,  # kpi_threshold
    Calendar,  # maintenance windows and silences (read by the incident book)
    Overrides,  # priority (applied by the incident book)
)
"""The default registry, in the order of the decisions."""

F = TypeVar("F")


class Forms:
    """The forms of one pipeline, built from a registry, in its order."""

    def __init__(self, builders: Sequence[Builder], ctx: FormContext) -> None:
        self._forms: tuple[Form, ...] = tuple(build(ctx) for build in builders)
        names = [f.name for f in self._forms]
        if len(set(names)) != len(names) or not all(names):
            raise EngineError(f"form names must be unique and non-empty: {names}")
        self._by_rule_form = {f.rule_form: f for f in self._forms if f.rule_form is not None}
        self._arrange()

    def _arrange(self) -> None:
        """Which forms the alarm path calls: those with timers, those that observe facts (the
        others keep BaseForm's no-op), and those whose ``next_due`` can say something; a form that
        is idle (``BaseForm.idle``: no rule of its form, nothing held) is left out of all three."""
        busy = [f for f in self._forms if not _idle(f)]
        self.timed = tuple(f for f in busy if not _inherited(f, "tick"))
        self._observers = tuple(f for f in busy if not _inherited(f, "observe"))
        # the one observer when there is one (the built-in rulesets: the correlator), called
        # without a comprehension per fact
        self._only = self._observers[0] if len(self._observers) == 1 else None
        self.scheduled = tuple(f for f in busy if not _inherited(f, "next_due"))
        # the observers a KPI sample is offered to (``BaseForm.reads_samples``; a form that does not
        # say is offered every sample), idle or not, as before idleness was asked
        self.sample_observers = tuple(
            f for f in self._forms if not _inherited(f, "observe") and getattr(f, "reads_samples", True)
        )

    def __iter__(self) -> Iterator[Form]:
        return iter(self._forms)

    def find(self, kind: type[F]) -> F | None:
        """The form of that class, if the registry has one."""
        return next((f for f in self._forms if isinstance(f, kind)), None)

    def of_rule(self, rule_form: str) -> Form | None:
        """The form that implements rules of ``rule_form`` (``Rule.form``)."""
        return self._by_rule_form.get(rule_form)

    def observe(self, fact: Fact, now: float) -> list[Outcome]:
        """Every form observes the fact, in order; their outcomes, in the same order, unapplied."""
        if (only := self._only) is not None:
            return [only.observe(fact, now)]
        return [f.observe(fact, now) for f in self._observers]

    def observe_sample(self, fact: Fact, now: float) -> list[Outcome]:
        """``observe`` for a KPI sample: only the forms that read samples (each returns nothing for
        one otherwise), in order."""
        return [f.observe(fact, now) for f in self.sample_observers]

    def next_due(self) -> dict[str, float | None]:
        return {f.name: f.next_due() for f in self._forms}

    def counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self._forms:
            out.update(f.counters())
        return out

    def dump(self) -> dict[str, Any]:
        return {f.name: f.dump() for f in self._forms}

    def load(self, state: dict[str, Any]) -> None:
        """Each form loads its own part; a form the snapshot does not know starts fresh."""
        for f in self._forms:
            if f.name in state:
                f.load(state[f.name])
        self._arrange()  # a form may hold what it loaded

    def close(self) -> None:
        for f in self._forms:
            close = getattr(f, "close", None)
            if close is not None:
                close()


def _idle(form: Form) -> bool:
    """Whether the form says it is idle (a form without ``idle`` never is)."""
    idle = getattr(form, "idle", None)
    return bool(idle()) if idle is not None else False


def _inherited(form: Form, method: str) -> bool:
    """Whether ``form`` keeps ``BaseForm``'s no-op ``method``."""
    return getattr(type(form), method, None) is getattr(BaseForm, method)
