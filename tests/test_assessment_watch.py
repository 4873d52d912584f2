"""``Assessor.watching``: the incidents an element's health change concerns, found from the watch.

It looks the watched elements up among the element's descendants, or the descendants up among the
watched elements, whichever side is smaller; both must give what walking every descendant gives,
in sorted order."""

from __future__ import annotations

import orjson

from bench.scenarios import example_topology, fiber_cut, site_power_failure
from engine.core.pipeline import Pipeline
from engine.model.timeutil import parse_time
from engine.model.topology import topology_from_dict
from engine.rules.schema import load_rulesets
from tests.harness import settings


def test_watching_is_the_descendant_walk_in_sorted_order() -> None:
    topology = topology_from_dict(example_topology())
    pipeline = Pipeline(topology, load_rulesets(None), settings())
    # both scenarios at once, their clears left out: two incidents stay open with their impacts
    lines = [x for x in fiber_cut() + site_power_failure() if x["payload"]["severity"] != "cleared"]
    last = 0.0
    for line in sorted(lines, key=lambda x: str(x["payload"]["event_time"])):
        last = parse_time(line["payload"]["event_time"])
        pipeline.advance_to(last)
        pipeline.feed(line["topic"], orjson.dumps(line["payload"]), last)
    pipeline.advance_to(last + 120.0)
    assessor = pipeline.incidents._assessor
    watch = assessor._watch
    assert len({r for roots in watch.values() for r in roots}) >= 2  # two incidents watched
    smaller = larger = 0
    for ne in [*topology.elements, "not-an-element"]:
        below = topology.descendants(ne)
        smaller += len(watch) < len(below)
        larger += len(watch) >= len(below)
        walked = {r for x in (ne, *below) for r in watch.get(x, ())}
        assert list(assessor.watching(ne)) == sorted(walked), ne
    # both ways of finding them were taken
    assert smaller > 0
    assert larger > 0
