"""Regression tests for the durable-rules 2.0.28 crashes the rule host works around.

1. durable's C engine keeps a stored fact's ``sid`` and ``id`` pointing into the JSON text it was given;
   through its Python shim that text was a temporary, so stored facts dangled and the process crashed
   once garbage collection reused the memory. ``RuleHost`` keeps each fact's JSON alive while the fact
   is asserted and frees the engine's rulesets on ``close`` (see ``engine/rules/host.py``).
2. Expressions between the aliases of a join crashed durable's beta-join evaluation depending on memory
   layout, and retracting a second fact of a fired join read freed memory: the compiler emits
   single-fact rules only and the correlator joins in Python (``engine/rules/compiler.py``).

Both showed as a segfault, which would kill pytest itself. So each stress body runs in a child process
(``python -m tests.test_host_stress <body>``, this very module) and the test asserts that the child
exited 0 and printed ``ok``: a regression is a failed test with the child's stderr (faulthandler's
traceback included), not a dead test run.
"""

from __future__ import annotations

import gc
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.scenarios import alarm, clear, example_topology, fiber_cut, site_power_failure
from engine.model.topology import topology_from_dict
from engine.rules.compiler import Program, compile_rulesets
from engine.rules.host import Match, RuleHost
from engine.rules.schema import load_rulesets
from tests.harness import Run, run

ROOT = Path(__file__).resolve().parents[1]

# --- stress bodies (run in the child) ---------------------------------------------------------------


def _redundancy() -> list[dict[str, Any]]:
    """Both uplinks of olt-7 fail one minute apart, then come back."""
    return [
        alarm("agg-1", "lossOfSignal", 0.0, "critical"),
        alarm("agg-2", "lossOfSignal", 60.0, "critical"),
        alarm("olt-7", "linkDown", 61.0, "critical"),
        alarm("cell-c1", "lossOfSignal", 62.0, "major"),
        clear("agg-2", "lossOfSignal", 600.0),
        clear("olt-7", "linkDown", 601.0),
        clear("cell-c1", "lossOfSignal", 602.0),
        clear("agg-1", "lossOfSignal", 900.0),
    ]


STORM_CAUSES = (
    "linkDown",
    "lossOfSignal",
    "mainsFailure",
    "powerProblem",
    "equipmentMalfunction",
    "highTemperature",
    "thresholdCrossed",
)
STORM_SEVERITIES = ("critical", "major", "minor", "warning")


STORM_MEAN_GAPS = (0.5, 5.0, 20.0)  # seconds between messages, by seed: one burst, then sparser storms


def _storm(seed: int, alarms: int = 300) -> list[dict[str, Any]]:
    """Seeded random raises on random elements of the example topology, with clears interleaved and
    every alarm still active cleared at the end: many facts asserted, joined, expired and retracted."""
    rng = random.Random(seed)
    rate = 1.0 / STORM_MEAN_GAPS[seed % len(STORM_MEAN_GAPS)]
    elements = [e["id"] for e in example_topology()["elements"]]
    lines: list[dict[str, Any]] = []
    active: list[tuple[str, str]] = []
    t = 0.0
    for _ in range(alarms):
        t += rng.expovariate(rate)
        ne, cause = rng.choice(elements), rng.choice(STORM_CAUSES)
        lines.append(alarm(ne, cause, t, rng.choice(STORM_SEVERITIES)))
        if (ne, cause) not in active:
            active.append((ne, cause))
        if active and rng.random() < 0.4:
            t += rng.expovariate(rate)
            ne, cause = active.pop(rng.randrange(len(active)))
            lines.append(clear(ne, cause, t))
    for ne, cause in active:
        t += 0.5
        lines.append(clear(ne, cause, t))
    return lines


def _every_incident_resolved(r: Run) -> None:
    last = {rec["incident_id"]: rec["event"] for rec in r.records}
    assert last, "no incident at all"
    assert set(last.values()) == {"resolved"}, last


def _no_fact_left(r: Run) -> None:
    assert r.pipeline is not None
    assert r.pipeline.correlator.fact_count() == 0
    assert r.pipeline.correlator.host.fact_count() == 0


def _check_fiber_cut(r: Run) -> None:
    assert len(r.incident_ids()) == 1
    (opened,) = r.events("opened")
    assert opened["root_cause"]["alarm_id"] == "agg-3:lossOfSignal:port 1/1/1"
    assert len(opened["suppressed"]) == 50
    assert opened["priority"] == 1
    _every_incident_resolved(r)
    _no_fact_left(r)


def _check_site_power(r: Run) -> None:
    (opened,) = r.events("opened")
    assert opened["root_cause"]["ne_id"] == "pwr-c"
    assert sorted(s["alarm_id"] for s in opened["suppressed"]) == [
        "cell-c1:lossOfSignal",
        "olt-7:equipmentMalfunction",
    ]
    _every_incident_resolved(r)
    _no_fact_left(r)


def _check_redundancy(r: Run) -> None:
    roots = {rec["root_cause"]["ne_id"] for rec in r.records}
    assert roots == {"agg-1", "agg-2"}
    first = [rec for rec in r.records if rec["root_cause"]["ne_id"] == "agg-1"]
    assert (first[0]["event"], first[0]["state"]) == ("opened", "at_risk")
    assert any(rec["state"] == "outage" for rec in first)
    explained = {s["alarm_id"] for rec in r.records for s in rec["suppressed"]}
    assert {"olt-7:linkDown", "cell-c1:lossOfSignal"} <= explained
    _every_incident_resolved(r)
    _no_fact_left(r)


def stress_pipelines(rounds: int = 30) -> str:
    """Build ``rounds`` pipelines in one process, each replaying a scenario (fiber cut, site power
    failure, redundancy, a seeded random storm), drop each one and collect garbage before the next."""
    topology = topology_from_dict(example_topology())
    rulesets = load_rulesets(None)
    storms: dict[int, bytes] = {}
    for i in range(rounds):
        kind = i % 4
        if kind == 0:
            r = run(fiber_cut(), topology=topology, rulesets=rulesets)
            _check_fiber_cut(r)
        elif kind == 1:
            r = run(site_power_failure(), topology=topology, rulesets=rulesets)
            _check_site_power(r)
        elif kind == 2:
            r = run(_redundancy(), topology=topology, rulesets=rulesets)
            _check_redundancy(r)
        else:
            seed = i % 3  # each storm seed replays more than once: the outputs must be identical
            r = run(_storm(seed), topology=topology, rulesets=rulesets)
            assert len(r.incident_ids()) >= (1, 20, 50)[seed]  # the sparser, the more incidents
            _every_incident_resolved(r)
            _no_fact_left(r)
            assert r.pipeline is not None
            assert r.pipeline.correlator.retracts > 100
            output = r.output()
            assert storms.setdefault(seed, output) == output, f"storm {seed} replayed differently"
        del r
        gc.collect()
    assert len(storms) == 3
    return f"ok {rounds} pipelines"


def _fact(sid: str, role: str, n: int, **props: Any) -> dict[str, Any]:
    """A correlation fact shaped like the correlator's (every property the compiled rules test)."""
    fact: dict[str, Any] = {
        "aid": f"a{n}",
        "key": f"k{n}",
        "t": 100.0 + n % 10,  # within every rule's window of every other fact
        "ne": "olt-001",
        "severity": "critical",
        "sev": 5,
        "cause": "linkDown",
        "etype": "communicationsAlarm",
        "sp": "",
        "effect": "outage",
        "etype_ne": "olt",
        "site": "site-d1",
        "region": "south",
        "sid": sid,
        "id": f"a{n}@{sid}#{role}",
        "role": role,
    }
    fact.update(props)
    return fact


TOPO, POWER = "default/topology-root-cause", "default/site-power-failure"


def _fired(matches: list[Match]) -> list[str]:
    assert all(set(m.facts) == {"m"} for m in matches), matches  # one fact bound: no join
    return sorted(m.action for m in matches)


def _exercise(host: RuleHost, program: Program, i: int) -> None:
    """Load the program, assert alarm facts and check which rule parts each fires, check the stored
    facts, retract; every other host is closed with its facts still asserted."""
    for name, definition in program.definitions.items():
        host.load(name, definition)
    (match,) = program.definitions
    links = [_fact("classify", "x", n) for n in range(8)]  # critical link downs (outage)
    for fact in links:
        assert _fired(host.assert_fact(match, fact)) == [
            f"{POWER}#symptom",
            f"{TOPO}#root",
            f"{TOPO}#symptom",
        ]
    assert host.assert_fact(match, links[0]) == []  # already asserted: not again
    power = _fact("classify", "x", 200, ne="pwr-c", cause="mainsFailure")
    weak = _fact("classify", "x", 201, ne="pwr-c", cause="mainsFailure", severity="minor", sev=3)
    hot = _fact("classify", "x", 202, ne="olt-7", cause="highTemperature", effect="degraded")
    assert f"{POWER}#root" in _fired(host.assert_fact(match, power))
    assert f"{POWER}#root" not in _fired(host.assert_fact(match, weak))  # below the severity threshold
    assert _fired(host.assert_fact(match, hot)) == [f"{POWER}#symptom", f"{TOPO}#symptom"]  # no outage
    gc.collect()
    stored = sorted(str(f["id"]) for f in host.facts(match, "classify"))
    assert stored == sorted(str(f["id"]) for f in (*links, power, weak, hot)), stored
    if i % 2:
        host.close()  # with facts still asserted: the engine frees them before their JSON goes away
        return
    for fact in (*links, power, weak, hot):
        host.retract_fact(match, fact)
    host.retract_fact(match, hot)  # retracting an absent fact is harmless
    assert host.fact_count() == 0
    assert host.facts(match, "classify") == []
    host.close()


def stress_hosts(hosts: int = 200) -> str:
    """Create, use and close ``hosts`` RuleHosts in a loop, collecting garbage between them."""
    program = compile_rulesets(load_rulesets(None)[:1])  # the default ruleset, without the fallback
    for i in range(hosts):
        host = RuleHost()
        _exercise(host, program, i)
        assert host.rulesets == {}
        del host
        gc.collect()
    return f"ok {hosts} hosts"


def stress_sids(sids: int = 3000) -> str:
    """More sids than one durable ruleset holds (1,024): the host places them in shards, for good,
    so a long run over many sids never runs out (the engine itself now asserts under one sid)."""
    program = compile_rulesets(load_rulesets(None)[:1])  # the default ruleset, without the fallback
    host = RuleHost()
    for name, definition in program.definitions.items():
        host.load(name, definition)
    (match,) = program.definitions
    facts = [_fact(f"el-{n}", "x", n) for n in range(sids)]
    for fact in facts:
        assert f"{TOPO}#root" in _fired(host.assert_fact(match, fact))
    assert host.sid_count(match) == sids
    assert host.shard_count(match) == (sids + 999) // 1000
    late = _fact("el-0", "x", sids + 1)  # a fact in the first shard still fires
    assert f"{TOPO}#root" in _fired(host.assert_fact(match, late))
    for fact in (*facts, late):
        host.retract_fact(match, fact)
    for fact in facts:  # the same sids again: their states are reused, no new shard
        host.assert_fact(match, fact)
        host.retract_fact(match, fact)
    assert host.shard_count(match) == (sids + 999) // 1000
    assert host.fact_count() == 0
    host.close()
    fiber = run(fiber_cut(olts=50))  # and the pipeline on top still works as before
    assert len(fiber.incident_ids()) == 1
    return f"ok {sids} sids"


STRESS: dict[str, Callable[[], str]] = {
    "pipelines": stress_pipelines,
    "hosts": stress_hosts,
    "sids": stress_sids,
}


# --- the tests (in the parent) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("pipelines", "ok 30 pipelines", id="30-pipelines-replaying-scenarios-and-storms"),
        pytest.param("hosts", "ok 200 hosts", id="200-rule-hosts-created-used-and-closed"),
        pytest.param("sids", "ok 3000 sids", id="more-live-sids-than-a-durable-ruleset-holds"),
    ],
)
def test_stress_survives_in_a_child_process(body: str, expected: str) -> None:
    """The stress body runs to the end in a child process (exit 0, ``ok`` printed): no segfault from
    dangling fact JSON or join expressions, and every scenario gives the expected incidents."""
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-m", "tests.test_host_stress", body],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode} (negative: killed by that signal)\n{proc.stderr[-6000:]}"
    )
    assert proc.stdout.splitlines() == [expected], proc.stdout


if __name__ == "__main__":
    print(STRESS[sys.argv[1]]())
