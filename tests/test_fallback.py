"""The built-in topology-cluster fallback: a network nobody described still gets one incident per
cluster of alarms along a dependency chain within five minutes, rooted at the most upstream element."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from engine.cli import main
from engine.model.timeutil import format_time
from engine.model.topology import topology_from_dict
from engine.rules.schema import FALLBACK_RULESET, fallback_last, load_ruleset_file, load_rulesets
from tests.harness import run, settings

T0 = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY: dict[str, Any] = {
    "elements": [
        {"id": "hub", "type": "router", "depends_on": []},
        {"id": "a", "type": "switch", "depends_on": ["hub"]},
        {"id": "b", "type": "switch", "depends_on": ["hub"]},
        {"id": "a1", "type": "olt", "depends_on": ["a"]},
        {"id": "a2", "type": "olt", "depends_on": ["a"]},
        {"id": "lone", "type": "olt", "depends_on": []},
    ],
    "customers": [],
}
TOPO = topology_from_dict(TOPOLOGY)
NO_SEMANTICS = settings(alarms={"effects": [{"effect": "degraded"}]})


def raise_(at: float, ne: str, cause: str) -> dict[str, Any]:
    return {
        "topic": f"soc/alarms/{ne}",
        "payload": {
            "ne_id": ne,
            "severity": "major",
            "probable_cause": cause,
            "event_time": format_time(T0 + at),
        },
    }


def roots(lines: list[dict[str, Any]], **kw: Any) -> dict[str, list[str]]:
    r = run(lines, topology=TOPO, core=NO_SEMANTICS, **kw)
    return {
        o["root_cause"]["alarm_id"]: sorted(s["alarm_id"] for s in o["suppressed"])
        for o in r.events("opened")
    }


def test_alarms_along_a_chain_within_five_minutes_are_one_incident_rooted_upstream() -> None:
    """a1 first, then a (10 s later, within the 30 s lead), then hub: one incident rooted at hub,
    the most upstream alarmed element, though it came last; a2 joins it after it opened; the reason
    names the fallback rule."""
    lines = [raise_(0, "a1", "x1"), raise_(10, "a", "x2"), raise_(20, "hub", "x3"), raise_(100, "a2", "x1")]
    r = run(lines, topology=TOPO, core=NO_SEMANTICS)
    (opened,) = r.events("opened")
    assert opened["root_cause"]["alarm_id"] == "hub:x3"
    assert r.incident_ids() == [opened["incident_id"]]
    by = {s["alarm_id"]: s for s in r.last(opened["incident_id"])["suppressed"]}
    assert sorted(by) == ["a1:x1", "a2:x1", "a:x2"]
    assert all(s["rule"] == "topology-cluster/cluster" for s in by.values())
    assert "a2 is at or below a," in by["a2:x1"]["reason"]  # its direct root: the earliest that explains it


def test_siblings_unrelated_elements_and_late_alarms_stay_apart() -> None:
    """Two siblings with no alarm above them, an element linked to nothing, and an alarm 6 minutes
    after the root are not grouped: the fallback follows dependencies and a five-minute window."""
    lines = [raise_(0, "a1", "x"), raise_(5, "a2", "x"), raise_(6, "lone", "x"), raise_(10, "a", "y")]
    lines.append(raise_(10 + 360, "a1", "z"))
    assert roots(lines) == {"a:y": ["a1:x", "a2:x"], "lone:x": [], "a1:z": []}


def test_any_other_rule_wins_over_the_fallback_and_it_is_always_compiled_last() -> None:
    """An outage root (topology-root-cause) claims its symptoms before the fallback does, and the
    fallback is moved after every ruleset, the engine's built-in ones included."""
    core = settings(
        alarms={"effects": [{"probable_cause": "cut", "effect": "outage"}, {"effect": "degraded"}]}
    )
    r = run([raise_(0, "a", "cut"), raise_(1, "a1", "x")], topology=TOPO, core=core)
    (opened,) = r.events("opened")
    assert [s["rule"] for s in opened["suppressed"]] == ["default/topology-root-cause"]
    default, fallback = load_rulesets(None)
    assert fallback.name == "topology-cluster"
    extra = load_ruleset_file(FALLBACK_RULESET)
    assert [rs.name for rs in fallback_last([fallback, default])] == ["default", "topology-cluster"]
    assert fallback_last([extra, default])[-1] is extra


def test_rules_diff_reports_the_merge_the_fallback_makes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``engine rules diff``: the default ruleset alone (three incidents) against the built-in rules
    with the fallback (one): one merge absorbing three, compression 0 → 2/3, examples; ``--since``
    replays only the later part; bad options are errors naming them."""
    events = tmp_path / "e.jsonl"
    lines = [raise_(0, "a1", "x"), raise_(2, "a", "y"), raise_(4, "hub", "z"), raise_(3600, "b", "w")]
    events.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    topo = tmp_path / "t.yaml"
    topo.write_text(yaml.safe_dump(TOPOLOGY))
    config = tmp_path / "c.yaml"
    config.write_text("alarms:\n  effects:\n    - {effect: degraded}\n")
    base = [
        str(events),
        "--topology",
        str(topo),
        "--config",
        str(config),
        "--old",
        str(ROOT / "rulesets/default.yaml"),
    ]
    new = ["--new", str(ROOT / "rulesets/default.yaml"), "--new", str(FALLBACK_RULESET)]
    assert main(["rules", "diff", *base, *new, "--format", "json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert (report["alarms"], report["old"]["incidents"], report["new"]["incidents"]) == (4, 4, 2)
    assert (report["merged"], report["absorbed"], report["split"], report["unchanged"]) == (1, 3, 0, 1)
    assert (report["old"]["compression"], report["new"]["compression"]) == (0.0, 0.5)
    (example,) = report["examples"]["merged"]
    assert example["new"]["root"] == "hub:z"
    assert sorted(x["root"] for x in example["old"]) == ["a1:x", "a:y", "hub:z"]

    assert main(["rules", "diff", *base, *new]) == 0
    text = capsys.readouterr().out
    assert "merged (several old incidents are one new): 1 (absorbing 3 old incidents)" in text
    assert "  merged: inc-" in text

    since = format_time(T0 + 60)
    assert main(["rules", "diff", *base, *new, "--since", since, "--format", "json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["alarms"] == 1
    assert main(["rules", "diff", *base, *new, "--since", "soon"]) == 2
    assert capsys.readouterr().err.startswith("error: --since: ")
