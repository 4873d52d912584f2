"""The correlator's match answer, remembered by the alarm fields that decide the fact's properties.

``Correlator._match`` asks durable once per *match signature* (the values of the fact properties some
condition reads). Building the whole fact to learn its signature cost more than the join per alarm,
so the answer is first looked up by a key read from the alarm in one call (``_match_key``: the fields
that decide every property read, and the element). That key must never be coarser than the
signature: two alarms with one key must have one signature. Here random alarms on every field a
condition can read (regexes on the alarm's text, its specific problem and the element's type,
service types, severity ranks, sites, regions) get the same answer as from the signature alone.
"""

from __future__ import annotations

import random
from typing import Any

from bench.scenarios import example_topology
from engine.core.alarms import ActiveAlarm
from engine.core.forms import correlator as module
from engine.core.pipeline import Pipeline
from engine.model.topology import topology_from_dict
from engine.rules.schema import ruleset_from_data

RULES: list[dict[str, Any]] = [
    {
        "name": "by-cause",
        "correlate": {
            "root": {"probable_cause": ["powerProblem", "lossOfSignal"], "severity": {"at_least": "major"}},
            "symptom": {"event_type": "communicationsAlarm"},
            "relation": "same_site",
            "window": "5m",
        },
    },
    {
        "name": "by-text",
        "correlate": {
            "root": {"text": {"regex": "fibre|fiber"}, "region": "north"},
            "symptom": {"specific_problem": {"regex": "^port"}, "effect": ["outage", "degraded"]},
            "relation": "downstream_of",
            "window": "5m",
        },
    },
    {
        "name": "by-element",
        "correlate": {
            "root": {"element_type": {"regex": "^rout"}, "site": {"not": "site-b"}},
            "symptom": {"service_type": "voip", "severity": {"at_most": "minor"}},
            "relation": "same_service_path",
            "window": "5m",
        },
    },
    {
        "name": "one-element",
        "correlate": {
            "root": {"ne_id": ["core-1", "agg-2"]},
            "symptom": {"service_type": {"not": "internet"}},
            "relation": "same_element",
            "window": "5m",
        },
    },
]

CAUSES = ["powerProblem", "lossOfSignal", "linkDown", "equipmentMalfunction"]
SEVERITIES = ["critical", "major", "minor", "warning", "indeterminate"]
EVENT_TYPES = ["communicationsAlarm", "equipmentAlarm", "qualityOfServiceAlarm"]
TEXTS = [None, "", "fibre cut", "a fiber", "nothing", "FIBRE"]
PROBLEMS = [None, "", "port 1", "a port", "porthole"]
EFFECTS = ["outage", "degraded", "none"]


def _pipeline() -> Pipeline:
    ruleset = ruleset_from_data({"name": "keys", "rules": RULES}, "keys.yaml")
    return Pipeline(topology_from_dict(example_topology()), [ruleset])


def _alarm(rng: random.Random, elements: list[str], n: int) -> ActiveAlarm:
    return ActiveAlarm(
        key=f"a{n}",
        ne_id=rng.choice(elements),
        probable_cause=rng.choice(CAUSES),
        event_type=rng.choice(EVENT_TYPES),
        specific_problem=rng.choice(PROBLEMS),
        severity=rng.choice(SEVERITIES),
        effect=rng.choice(EFFECTS),  # type: ignore[arg-type]
        text=rng.choice(TEXTS),
        first_seen=float(rng.randrange(100)),
        last_seen=0.0,
        occurrence=rng.randint(1, 3),
    )


def test_the_match_key_never_joins_alarms_the_signature_tells_apart() -> None:
    keyed, plain = _pipeline(), _pipeline()
    try:
        c, reference = keyed.correlator, plain.correlator
        assert c._key_of is not None  # every property these rules read is decided by alarm fields
        reference._key_of = None  # every answer from the whole fact's signature
        elements = sorted(keyed.topology.elements)
        rng = random.Random(20261207)
        answers = set()
        for n in range(3000):
            a = _alarm(rng, elements, n)
            got, want = c._match(a), reference._match(a)
            assert (got.others, got.roots, got.symptoms) == (want.others, want.roots, want.symptoms), a
            answers.add((tuple(sorted(got.roots.items())), tuple(sorted(got.symptoms.items()))))
        assert len(answers) > 20  # the rules tell many alarms apart
        assert len(c._by_key) < 3000  # and alarms agreeing on the key shared an answer
    finally:
        keyed.close()
        plain.close()


def test_a_property_no_alarm_field_decides_alone_falls_back_to_the_signature() -> None:
    p = _pipeline()
    try:
        program = p.correlator.program
        assert module._match_key(program) is not None
        unknown = type(program)(
            program.definitions,
            program.rules,
            program.max_window,
            program.regexes,
            program.services,
            (*program.reads, "something-new"),
        )
        assert module._match_key(unknown) is None
    finally:
        p.close()
