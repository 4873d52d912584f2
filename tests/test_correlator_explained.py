"""The correlator makes no ``Explanation`` for an alarm the incident book already explains.

An alarm keeps its first explanation (``MergeGraph.can_link``), so the book ignores every later pair
that would explain it again; the pipeline gives the correlator the book's answer
(``Correlator.explained``) and the join skips those pairs after counting them. Decisions and every
counter are the same as with the pairs made and ignored (a correlator that knows of no book).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from bench.scenarios import example_topology
from engine.core.pipeline import Pipeline
from engine.model.topology import topology_from_dict
from engine.rules.schema import load_rulesets
from engine.tools.replay import Replayer, dumps
from engine.tools.scenarios import SCENARIOS, replay_lines


def _run(name: str, *, book_known: bool) -> tuple[list[bytes], dict[str, Any], int]:
    pipeline = Pipeline(topology_from_dict(example_topology()), load_rulesets(None))
    if not book_known:
        pipeline.correlator.explained = lambda _key: False  # every pair made, the book ignores some
    made = 0
    explain: Callable[..., Any] = pipeline.incidents.explain

    def counting(explanations: Any, now: float) -> Any:
        nonlocal made
        explanations = list(explanations)
        made += len(explanations)
        return explain(explanations, now)

    pipeline.incidents.explain = counting  # type: ignore[method-assign]
    records: list[bytes] = []
    lines = [orjson.dumps(line) for line in replay_lines(SCENARIOS[name](), start=1_767_225_600.0)]
    Replayer(pipeline, emit=lambda r: records.append(dumps(r))).run(lines)
    c = pipeline.correlator
    counters = {
        "firings": c.firings,
        "outside_window": c.outside_window,
        "rule_firings": dict(c.rule_firings),
        "asserts": c.asserts,
    }
    return records, counters, made


@pytest.mark.source_only  # replaces a core method: on the compiled core, run on the source
def test_pairs_of_explained_alarms_are_counted_not_made() -> None:
    fewer = 0
    for name in sorted(SCENARIOS):
        records, counters, made = _run(name, book_known=True)
        records0, counters0, made0 = _run(name, book_known=False)
        assert records == records0, name
        assert counters == counters0, name
        assert made <= made0, name
        fewer += made0 - made
    assert fewer > 0  # some scenario pairs an alarm again after it was explained
