"""The explanations' matcher: a private durable host holding the match definitions of a pipeline's
rules, to say which rule parts (and which of their conditions) an alarm satisfies.

A durable host cannot be freed (the C engine keeps ~200 KB of each, measured), so each pipeline
has one for its whole life: ``matcher_for`` keeps it on the pipeline, gone with it, and
``PostMortems`` keeps its own. Read-only: asserting and retracting one single-alias fact in the
matcher's own host changes no decision of the core.

An answer depends only on the values of the fact properties some condition reads (the program's
``reads``, the correlator's match signature: the definitions are compiled from the same conditions
by the same builder), so it is asked of durable once per signature and kept (bounded, oldest
forgotten first) for the matcher's life. A post-mortem explains every member of a resolving
incident against every rule, asking this of each alarm in the rule's scope: one durable round trip
per alarm, across every match ruleset, made a daemon resolving incidents spend about as much CPU on
its explanations as on its decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.core.alarms import ActiveAlarm
from engine.core.forms.correlator import match_signature
from engine.rules.compiler import match_definitions
from engine.rules.host import RuleHost

if TYPE_CHECKING:
    from engine.core.pipeline import Pipeline


ANSWERS_KEPT = 4096  # match answers kept by signature (about 2 KB each; oldest forgotten first)


class Matcher:
    """A private durable host holding ``match_definitions`` of the pipeline's program."""

    def __init__(self, pipeline: Pipeline) -> None:
        # The correlator, not the pipeline: a matcher kept on a pipeline (``matcher_for``) must not
        # keep that pipeline alive (no cycle).
        self._correlator = pipeline.correlator
        self._host = RuleHost()
        try:
            definitions = match_definitions(pipeline.correlator.program)
            for name, definition in definitions.items():
                self._host.load(name, definition)
        except BaseException:
            self._host.close()
            raise
        self._names = list(definitions)
        self._reads = pipeline.correlator.program.reads
        self._fired: dict[str, frozenset[str]] = {}  # alarm key -> answer, for one explanation
        self._by_signature: dict[tuple[str, ...], frozenset[str]] = {}  # bounded: ANSWERS_KEPT
        self.asked = 0  # facts asserted in durable (the rest answered from ``_by_signature``)

    def fired(self, alarm: ActiveAlarm) -> frozenset[str]:
        """Actions fired: ``rule#part`` (the whole part holds) and ``rule#part@field`` (one condition)."""
        cached = self._fired.get(alarm.key)
        if cached is not None:
            return cached
        # The correlator's own fact builder: identical properties, rx<n> included.
        base = self._correlator.base_fact(alarm, alarm.first_seen)
        signature = match_signature(base, self._reads)
        result = self._by_signature.get(signature)
        if result is None:
            fact = {**base, "sid": "explain", "id": alarm.occurrence_id, "role": "x"}
            result = self._host.match(self._names, fact)
            self.asked += 1
            if len(self._by_signature) >= ANSWERS_KEPT:
                del self._by_signature[next(iter(self._by_signature))]
            self._by_signature[signature] = result
        self._fired[alarm.key] = result
        return result

    def close(self) -> None:
        self._host.close()


def matcher_for(pipeline: Pipeline) -> Matcher:
    """The pipeline's matcher (made on first use, remade if its correlator changed; kept on the
    pipeline, gone with it: a cache that changes no decision), with its cache of fired actions
    emptied: alarms change between two explanations."""
    matcher = pipeline.explain_matcher
    if not isinstance(matcher, Matcher) or matcher._correlator is not pipeline.correlator:
        if matcher is not None:
            matcher.close()
        matcher = pipeline.explain_matcher = Matcher(pipeline)
    matcher._fired.clear()
    return matcher
