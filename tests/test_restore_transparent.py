"""A snapshot and restore changes nothing: random traffic (raises, clears, severity changes, late
events, acknowledgements, silences, timers) decides the same with a restore into a fresh pipeline
every so often as without one.

The daemon restores on every restart, and a partition's new owner restores what the old one wrote:
an incident that a restore loses is never resolved downstream. This is how a group whose first
member the alarm table had forgotten was found to vanish on restore
(``test_snapshot.py::test_a_group_whose_first_member_was_forgotten_survives_a_restore``).
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from bench.scenarios import T0, alarm
from engine.core.decisions import Decisions
from engine.core.pipeline import Pipeline
from engine.model.topology import Topology, topology_from_dict
from engine.rules.schema import Ruleset
from engine.tools.scenarios import example_topology
from tests.test_state_bounded import SETTINGS, rulesets

CAUSES = (
    ("lossOfSignal", "communicationsAlarm"),
    ("linkDown", "communicationsAlarm"),
    ("mainsFailure", "environmentalAlarm"),
    ("portFlap", "communicationsAlarm"),
    ("coldStart", "equipmentAlarm"),
    ("restartComplete", "equipmentAlarm"),
    ("highTemperature", "environmentalAlarm"),
    ("fanFailure", "environmentalAlarm"),
    ("equipmentMalfunction", "equipmentAlarm"),
)
SEVERITIES = ("critical", "major", "minor", "warning")
STEPS = (0.0, 0.5, 1.0, 3.0, 10.0, 60.0, 300.0)


def _run(seed: int, ops: int, topology: Topology, rules: list[Ruleset], *, restore: bool) -> list[bytes]:
    """The records (and the answers of commands) of ``ops`` random operations drawn from ``seed``;
    with ``restore``, about one operation in 70 replaces the pipeline by a restore of its snapshot
    (the draws are the same either way)."""
    rnd = random.Random(seed)
    elements = sorted(topology.elements)
    p = Pipeline(topology, rules, SETTINGS)
    out: list[bytes] = []
    active: list[tuple[str, str, str | None]] = []
    t = 0.0

    def take(d: Decisions) -> None:
        out.extend(orjson.dumps(r.to_wire(), option=orjson.OPT_SORT_KEYS) for r in d.records)
        out.extend(b"dead letter " + orjson.dumps(x.to_wire()) for x in d.dead_letters)

    def feed(line: dict[str, Any], now: float) -> None:
        take(p.feed(line["topic"], orjson.dumps(line["payload"]), now))

    for i in range(ops):
        t += rnd.choice(STEPS)
        now = T0 + t
        op = rnd.random()
        if op < 0.45 or not active:
            ne, (cause, event_type) = rnd.choice(elements), rnd.choice(CAUSES)
            sp = rnd.choice((None, "port 1", "port 2"))
            late = rnd.choice((5.0, 120.0, 4000.0)) if rnd.random() < 0.1 else 0.0
            feed(alarm(ne, cause, t - late, rnd.choice(SEVERITIES), sp=sp, event_type=event_type), now)
            active.append((ne, cause, sp))
        elif op < 0.80:
            ne, cause, sp = active.pop(rnd.randrange(len(active)))
            feed(alarm(ne, cause, t, "cleared", sp=sp), now)
        elif op < 0.88:
            ne, cause, sp = rnd.choice(active)
            feed(alarm(ne, cause, t, rnd.choice(SEVERITIES), sp=sp), now)
        elif op < 0.92:
            take(p.tick(now))
        elif op < 0.95:
            ids = sorted(i.id for i in p.query.incidents(open_only=True))
            if ids:
                r = p.acknowledge(rnd.choice(ids), rnd.choice(("ann", "bob")), None, now)
                out.append(b"ack " + (orjson.dumps(r.to_wire()) if r is not None else b"none"))
        elif op < 0.97:
            silence = {
                "id": f"s{i}",
                "matchers": [{"name": "ne_id", "value": rnd.choice(elements), "isRegex": False}],
                "startsAt": now,
                "endsAt": now + rnd.choice((60, 600, 3600)),
                "createdBy": "test",
                "comment": "random",
                "updatedAt": now,
            }
            out.append(b"silence " + orjson.dumps(p.silence({"op": "set", "silence": silence}, now)))
        elif op < 0.985:
            if restore:
                q = Pipeline(topology, rules, SETTINGS)
                assert q.restore(p.snapshot()) == {"alarms_dropped": 0, "incidents_root_removed": 0}
                p.close()
                p = q
        else:
            due = p.next_due()
            if due is not None and due <= now + 3600:
                t = max(t, due - T0)
                take(p.tick(T0 + t))
    take(p.drain())
    p.close()
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_traffic_decides_the_same_with_restores(seed: int) -> None:
    topology = topology_from_dict(example_topology())
    rules = rulesets()
    with_restores = _run(seed, 1500, topology, rules, restore=True)
    without = _run(seed, 1500, topology, rules, restore=False)
    assert len(with_restores) > 1000  # the traffic decides something
    assert with_restores == without
