"""`engine rules test`: rule tests on the virtual clock (engine/tools/ruletests.py)."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest

from engine.tools.ruletests import discover, main, run_files

REPO = Path(__file__).resolve().parent.parent
SHIPPED_TESTS = REPO / "rulesets" / "tests"
SHIPPED_FILES, SHIPPED_TOPOLOGIES = discover([SHIPPED_TESTS])

TOPOLOGY_DOC = """\
service_types: {internet: {criticality: 3}}
elements:
  - {id: agg-x, type: switch, site: s1, region: r1, depends_on: []}
  - {id: olt-x, type: olt, site: s2, region: r1, depends_on: [agg-x]}
customers:
  - {id: c-1, tier: gold, access: olt-x, services: [internet]}
"""
INLINE_TOPOLOGY = "topology:\n" + textwrap.indent(TOPOLOGY_DOC, "  ")

CUT = """\
tests:
  - name: cut
    timeline:
      - {at: 0s, alarm: {ne_id: agg-x, severity: critical, probable_cause: lossOfSignal}}
      - {at: 2s, alarm: {ne_id: olt-x, severity: critical, probable_cause: linkDown}}
      - {at: 10m, clear: {ne_id: agg-x, probable_cause: lossOfSignal}}
      - {at: 10m, clear: {ne_id: olt-x, probable_cause: linkDown}}
    expect:
      incidents: 1
      opened:
        - {root: agg-x:lossOfSignal, state: outage, customers: 1, suppressed: [olt-x:linkDown]}
      resolved:
        - {root: agg-x:lossOfSignal, resolution: cleared, at: 15m}
      not_opened: [olt-x:linkDown]
"""


def _run(*paths: Path) -> tuple[int, str]:
    out = io.StringIO()
    return run_files(list(paths), out=out), out.getvalue()


def _cut_expecting(expect: str) -> str:
    """The CUT test file (inline topology) with its `expect:` block replaced by ``expect``."""
    return INLINE_TOPOLOGY + CUT.split("    expect:\n", maxsplit=1)[0] + expect


def _write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=[p.name for p in SHIPPED_FILES])
def test_shipped_rule_tests_pass(path: Path) -> None:
    """Every test file in rulesets/tests/ passes against the current engine: exit 0, every case
    `PASS`, `N passed, 0 failed` (one pytest case per file)."""
    status, out = _run(path)
    lines = out.splitlines()
    assert status == 0, out
    assert lines[-1] == f"{len(lines) - 1} passed, 0 failed"
    assert all(line.startswith("PASS ") for line in lines[:-1])


def test_the_shipped_folder_runs_every_file_and_skips_its_topology() -> None:
    """`engine rules test rulesets/tests/` runs every test file of the folder (all of them pass) and
    skips the shared topology document with a `skip` line; each shipped ruleset has its test file."""
    assert [p.name for p in SHIPPED_TOPOLOGIES] == ["topology.yaml"]
    names = {p.stem for p in SHIPPED_FILES}
    shipped = {p.stem for p in (REPO / "rulesets").glob("*.yaml")}
    assert shipped <= names, f"rulesets without a test file: {sorted(shipped - names)}"
    status, out = _run(SHIPPED_TESTS)
    lines = out.splitlines()
    assert status == 0, out
    assert lines[0] == f"skip {SHIPPED_TESTS / 'topology.yaml'}: a topology document, not a test file"
    assert all(line.startswith("PASS ") for line in lines[1:-1])
    assert lines[-1] == f"{len(lines) - 2} passed, 0 failed"


def test_a_folder_skips_topology_documents_but_a_named_file_is_always_a_test(tmp_path: Path) -> None:
    """In a folder, a YAML document with `elements` and neither `tests` nor `topology` is a shared
    topology, skipped; named explicitly it is loaded as a test file (and is broken: exit 2). A broken
    test file in a folder is still reported, not skipped."""
    (tmp_path / "topo.yaml").write_text(TOPOLOGY_DOC)
    _write(tmp_path, "topology: topo.yaml\n" + CUT, "cut.yaml")
    status, out = _run(tmp_path)
    assert status == 0, out
    assert out.splitlines() == [
        f"skip {tmp_path / 'topo.yaml'}: a topology document, not a test file",
        "PASS cut",
        "1 passed, 0 failed",
    ]
    status, out = _run(tmp_path / "topo.yaml")
    assert status == 2
    assert out.startswith(f"error: {tmp_path / 'topo.yaml'}: line 1: service_types: unknown field"), out
    _write(tmp_path, "topology: topo.yaml\nelements: []\n", "broken.yaml")
    status, out = _run(tmp_path)
    assert status == 2
    assert f"error: {tmp_path / 'broken.yaml'}" in out


def test_inline_topology_and_default_ruleset(tmp_path: Path) -> None:
    """An inline topology mapping works; without `rulesets` the built-in default ruleset is used."""
    status, out = _run(_write(tmp_path, INLINE_TOPOLOGY + CUT))
    assert status == 0, out
    assert out.splitlines() == ["PASS cut", "1 passed, 0 failed"]


def test_relative_paths_resolve_against_the_test_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`topology` and `rulesets` paths are relative to the test file, not the working directory."""
    sub = tmp_path / "deep" / "tests"
    sub.mkdir(parents=True)
    (tmp_path / "deep" / "topo.yaml").write_text(TOPOLOGY_DOC)
    (tmp_path / "deep" / "rs.yaml").write_text((REPO / "rulesets" / "default.yaml").read_text())
    path = _write(sub, "topology: ../topo.yaml\nrulesets: [../rs.yaml]\n" + CUT)
    monkeypatch.chdir(REPO / "engine")
    status, out = _run(path)
    assert status == 0, out


def test_wrong_expectation_fails_with_what_was_seen(tmp_path: Path) -> None:
    """A wrong expectation makes the test FAIL (exit 1) naming the unmet expectation, the value seen
    and the incidents seen (root, state, priority, suppressed count); others still PASS."""
    wrong = CUT.replace("state: outage", "state: degraded").replace("incidents: 1", "incidents: 3")
    wrong = wrong.replace("name: cut", "name: wrong")
    text = INLINE_TOPOLOGY + wrong + CUT.removeprefix("tests:\n")
    status, out = _run(_write(tmp_path, text))
    assert status == 1
    lines = out.splitlines()
    assert lines[0] == "FAIL wrong"
    assert "  - incidents: expected 3, got 1" in lines
    assert "  - opened agg-x:lossOfSignal: state: expected degraded, got outage" in lines
    assert any("root agg-x:lossOfSignal state outage P" in ln and "suppressed 1" in ln for ln in lines)
    assert "PASS cut" in lines
    assert lines[-1] == "1 passed, 1 failed"


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        ("{opened: [{root: olt-x:linkDown}]}", "opened olt-x:linkDown: no incident with this root"),
        (
            "{not_opened: [agg-x:lossOfSignal]}",
            "not_opened: agg-x:lossOfSignal became an incident of its own",
        ),
        (
            "{opened: [{root: agg-x:lossOfSignal, priority: {at_least: 1, at_most: 1}}]}",
            "priority: expected at most 1",
        ),
        (
            "{opened: [{root: agg-x:lossOfSignal, suppressed: {count: 2}}]}",
            "suppressed: count expected 2, got 1",
        ),
        ("{opened: [{root: agg-x:lossOfSignal, suppressed: {includes: [a:b]}}]}", "suppressed: missing a:b"),
        ("{opened: [{root: agg-x:lossOfSignal, reason_contains: nope}]}", "reason_contains: olt-x:linkDown"),
        ("{resolved: [{root: agg-x:lossOfSignal, at: {at_most: 14m}}]}", "at: expected at most 14m, got 15m"),
        (
            "{resolved: [{root: agg-x:lossOfSignal, resolution: merged}]}",
            "resolution: expected merged, got cleared",
        ),
        ("{dead_letters: 1}", "dead_letters: expected 1, got 0"),
        ("{counters: {incidents_opened: 2}}", "counters: incidents_opened: expected 2, got 1"),
        ("{counters: {storms: {at_least: 1}}}", "counters: storms: expected at least 1, got 0"),
        ("{opened: [{root: agg-x:lossOfSignal, severity: major}]}", "severity: expected major, got critical"),
        ("{opened: [{root: agg-x:lossOfSignal, opened_at: 10s}]}", "opened_at: expected 10s, got 30s"),
        ("{opened: [{root: agg-x:lossOfSignal, updates: 1}]}", "updates: expected 1, got 0"),
        (
            "{opened: [{root: agg-x:lossOfSignal, overrides: [ov/x]}]}",
            "overrides: missing ov/x",
        ),
        (
            "{opened: [{root: agg-x:lossOfSignal, explanation_contains: nope}]}",
            "explanation_contains: no explanation line contains 'nope'",
        ),
        (
            "{opened: [{root: agg-x:lossOfSignal, reasons: {olt-x:linkDown: nope}}]}",
            "reasons: olt-x:linkDown: ",
        ),
        (
            "{opened: [{root: agg-x:lossOfSignal, reasons: {a:b: default}}]}",
            "reasons: a:b is not suppressed in this incident",
        ),
        (
            "{notifications: [{event: opened, root: agg-x:lossOfSignal}]}",
            "notifications: 1 more than expected: resolved agg-x:lossOfSignal at 15m P",
        ),
        (
            "{notifications: [{event: opened, root: agg-x:lossOfSignal},"
            " {event: updated, root: agg-x:lossOfSignal}, {event: resolved, root: agg-x:lossOfSignal}]}",
            "notifications[1]: expected updated agg-x:lossOfSignal, got resolved agg-x:lossOfSignal at 15m",
        ),
        (
            "{notifications: [{event: opened, root: agg-x:lossOfSignal, at: 10s, priority: 1,"
            " state: degraded}, {event: resolved, root: agg-x:lossOfSignal}]}",
            "notifications[0] (opened agg-x:lossOfSignal): at: expected 10s, got 30s",
        ),
        (
            "{notifications: [{event: opened, root: agg-x:lossOfSignal, state: degraded},"
            " {event: resolved, root: agg-x:lossOfSignal}]}",
            "notifications[0] (opened agg-x:lossOfSignal): state: expected degraded, got outage",
        ),
        (
            "{notifications: []}",
            "notifications: 2 more than expected: opened agg-x:lossOfSignal at 30s",
        ),
    ],
)
def test_each_kind_of_unmet_expectation_is_reported(tmp_path: Path, expect: str, message: str) -> None:
    """Each expectation kind, when unmet, fails the test with a line naming it and what was seen."""
    text = _cut_expecting(f"    expect: {expect}\n")
    status, out = _run(_write(tmp_path, text))
    assert status == 1, out
    assert message in out


def test_the_new_expectations_pass_when_met(tmp_path: Path) -> None:
    """`counters`, and per incident `severity`, `opened_at`, `updates`, `overrides`,
    `explanation_contains` and `reasons`, hold on the cut: opened at 30 s (settle) with its symptom,
    never updated (a clearing incident is not), no priority override, the symptom's reason names the
    rule."""
    expect = (
        "    expect:\n"
        "      counters: {incidents_opened: 1, incidents_resolved: 1, storms: 0, incidents_discarded: 0}\n"
        "      opened:\n"
        "        - root: agg-x:lossOfSignal\n"
        "          severity: critical\n"
        "          opened_at: 30s\n"
        "          updates: 0\n"
        "          overrides: []\n"
        "          explanation_contains: 'root cause: lossOfSignal (critical, effect outage) on agg-x'\n"
        "          reasons:\n"
        "            olt-x:linkDown: 'explained by agg-x:lossOfSignal (rule default/topology-root-cause'\n"
    )
    text = _cut_expecting(expect)
    status, out = _run(_write(tmp_path, text))
    assert status == 0, out


def test_the_notification_stream_passes_when_exactly_as_expected(tmp_path: Path) -> None:
    """`notifications` lists every record in order: the cut opens at 30 s (settle) and resolves at
    15 min (cleared at 10 min + 5 min hold-down); too few expected entries is a failure."""
    expect = (
        "    expect:\n"
        "      notifications:\n"
        "        - {event: opened, root: agg-x:lossOfSignal, at: 30s, state: outage,"
        " priority: {at_most: 3}}\n"
        "        - {event: resolved, root: agg-x:lossOfSignal, at: 15m}\n"
    )
    text = _cut_expecting(expect)
    status, out = _run(_write(tmp_path, text))
    assert status == 0, out
    short = text.replace("        - {event: resolved, root: agg-x:lossOfSignal, at: 15m}\n", "")
    status, out = _run(_write(tmp_path, short))
    assert status == 1
    assert "notifications: 1 more than expected: resolved agg-x:lossOfSignal at 15m" in out


def test_a_rejected_message_fails_a_test_that_does_not_expect_dead_letters(tmp_path: Path) -> None:
    """A typo in the timeline (an element the topology lacks) is rejected by the engine; without
    `dead_letters` in the expectations the test fails naming the message and the reason, instead of
    passing a `not_opened` that tested nothing."""
    typo = (
        "tests:\n  - name: typo\n    timeline:\n"
        "      - {at: 0s, alarm: {ne_id: olt-xx, severity: critical, probable_cause: linkDown}}\n"
        "    expect: {not_opened: [olt-xx:linkDown]}\n"
    )
    status, out = _run(_write(tmp_path, INLINE_TOPOLOGY + typo))
    assert status == 1, out
    assert (
        "dead_letters: 1 message(s) rejected and the test expects none (say `dead_letters: N` if that is "
        "the point): soc/alarms/olt-xx: ne_id: unknown element 'olt-xx'"
    ) in out
    expected = typo.replace("{not_opened:", "{dead_letters: 1, not_opened:")
    status, out = _run(_write(tmp_path, INLINE_TOPOLOGY + expected))
    assert status == 0, out


def test_raw_topic_step_and_dead_letters(tmp_path: Path) -> None:
    """A raw `topic` + `payload` step is routed as on MQTT; a bad payload counts as a dead letter."""
    text = INLINE_TOPOLOGY + (
        "tests:\n  - name: raw\n    timeline:\n"
        "      - {at: 0s, topic: soc/alarms/x, payload: {ne_id: olt-999, severity: critical,"
        " probable_cause: linkDown, event_time: '2026-01-01T00:00:00Z'}}\n"
        "      - {at: 1s, topic: soc/alarms/x, payload: 'not json'}\n"
        "      - {at: 2s, samples: {probe_id: p1, target: olt-x, metrics: {mos: 4.1}}}\n"
        "    expect: {incidents: 0, dead_letters: 2}\n"
    )
    status, out = _run(_write(tmp_path, text))
    assert status == 0, out


def test_a_step_nested_deeper_than_orjson_writes_is_fed_as_any_other(tmp_path: Path) -> None:
    """A raw step whose payload nests 300 levels deep (more than orjson writes back; YAML itself
    refuses a few dozen more) is fed as any other, and refused here for its element, in words: it
    stopped `engine rules test` with a traceback (``TypeError: Recursion limit reached``)."""
    text = INLINE_TOPOLOGY + (
        "tests:\n  - name: deep\n    timeline:\n"
        "      - {at: 0s, topic: soc/alarms/x, payload: {ne_id: olt-999, severity: critical,"
        " probable_cause: linkDown, event_time: '2026-01-01T00:00:00Z', x: DEEP}}\n"
        "    expect: {incidents: 0, dead_letters: 1}\n"
    ).replace("DEEP", "[" * 300 + "]" * 300)
    status, out = _run(_write(tmp_path, text))
    assert status == 0, out


STEP = "      - {at: 0s, alarm: {ne_id: agg-x, severity: critical, probable_cause: lossOfSignal}}\n"


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (
            INLINE_TOPOLOGY + "bogus: 1\n" + CUT,
            "line 8: bogus",
            "unknown field (expected one of topology, rulesets, config, tests)",
        ),
        (CUT, "", "topology: field required"),
        ("topology: nowhere.yaml\n" + CUT, "line 1: topology", "topology file not found"),
        (INLINE_TOPOLOGY + "rulesets: [nowhere.yaml]\n" + CUT, "line 8: rulesets", "bad ruleset"),
        (
            INLINE_TOPOLOGY + "config: {incidents: {settle: soon}}\n" + CUT,
            "line 8: config.incidents.settle",
            "not a duration",
        ),
        (
            INLINE_TOPOLOGY
            + "tests:\n  - name: x\n    timeline:\n      - {at: 5 minutes, clear: {ne_id: a}}\n"
            "    expect: {}\n",
            "line 11: tests[0].timeline[0].at",
            "not a duration: '5 minutes'",
        ),
        (
            INLINE_TOPOLOGY
            + "tests:\n  - name: x\n    timeline:\n"
            + STEP
            + "    expect:\n      opened_count: 1\n",
            "line 13: tests[0].expect.opened_count",
            "unknown field (expected one of incidents, opened, resolved, not_opened, dead_letters",
        ),
        (
            INLINE_TOPOLOGY + "tests:\n  - name: x\n    timeline:\n" + STEP + "    expect:\n      opened:\n"
            "        - {root: agg-x:lossOfSignal, priority: {below: 2}}\n",
            "line 14: tests[0].expect.opened[0].priority.below",
            "unknown field (expected one of exact, at_least, at_most)",
        ),
        (
            INLINE_TOPOLOGY + "tests:\n  - name: x\n    timeline:\n      - {at: 0s, fire: {ne_id: a}}\n"
            "    expect: {}\n",
            "line 11: tests[0].timeline[0].fire",
            "unknown field (expected one of at, alarm, clear, samples, topic, payload)",
        ),
        (
            INLINE_TOPOLOGY + "tests:\n  - name: x\n    timeline:\n      - {at: 1m, clear: {ne_id: a}}\n"
            "      - {at: 1s, clear: {ne_id: a}}\n    expect: {}\n",
            "line 12: tests[0].timeline[1].at",
            "steps go back in time",
        ),
        (
            INLINE_TOPOLOGY
            + "tests:\n  - name: x\n    timeline:\n"
            + STEP
            + "    expect:\n      counters: {alarms: 1}\n",
            "line 13: tests[0].expect.counters.alarms",
            "'alarms' is not one of 'alarms_raised', 'alarms_cleared'",
        ),
        (
            INLINE_TOPOLOGY + "tests:\n  - name: x\n    timeline:\n" + STEP + "    expect:\n      opened:\n"
            "        - {root: agg-x:lossOfSignal, severity: fatal}\n",
            "line 14: tests[0].expect.opened[0].severity",
            "'fatal' is not one of 'indeterminate', 'warning', 'minor', 'major' or 'critical'",
        ),
        (
            INLINE_TOPOLOGY + "tests:\n  - name: x\n    timeline:\n" + STEP + "    expect:\n      opened:\n"
            "        - {root: agg-x:lossOfSignal, opened_at: soon}\n",
            "line 14: tests[0].expect.opened[0].opened_at",
            "not a duration: 'soon'",
        ),
        (
            INLINE_TOPOLOGY + "tests:\n  - name: x\n    timeline:\n" + STEP + "    expect:\n      opened:\n"
            "        - {root: agg-x:lossOfSignal, reasons: [a]}\n",
            "line 14: tests[0].expect.opened[0].reasons",
            "expected a mapping, got list",
        ),
        (
            INLINE_TOPOLOGY + "tests:\n  - name: x\n    timeline:\n" + STEP + "    expect:\n      opened:\n"
            "        - {root: agg-x:lossOfSignal, state: outtage}\n",
            "line 14: tests[0].expect.opened[0].state",
            "'outtage' is not one of 'outage', 'degraded' or 'at_risk'",
        ),
        (
            INLINE_TOPOLOGY
            + "tests:\n  - name: x\n    timeline:\n"
            + STEP
            + "    expect:\n      notifications:\n"
            "        - {event: closed, root: agg-x:lossOfSignal}\n",
            "line 14: tests[0].expect.notifications[0].event",
            "'closed' is not one of 'opened', 'updated' or 'resolved'",
        ),
        (
            INLINE_TOPOLOGY
            + "tests:\n  - name: x\n    timeline:\n"
            + STEP
            + "    expect:\n      notifications:\n"
            "        - {event: opened}\n",
            "line 14: tests[0].expect.notifications[0].root",
            "field required",
        ),
        (INLINE_TOPOLOGY + "tests: [\n", "line ", "malformed YAML"),
    ],
)
def test_broken_files_exit_2_with_file_line_and_reason(
    tmp_path: Path, text: str, where: str, reason: str
) -> None:
    """A broken test file runs nothing and exits 2 with `error: FILE: line N: path: reason`."""
    path = _write(tmp_path, text)
    status, out = _run(path)
    assert status == 2, out
    assert out.startswith(f"error: {path}: {where}"), out
    assert reason in out
    assert "passed" not in out


def test_main_takes_files_and_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`main` accepts files and folders of *.yaml and returns the exit status; a missing file is a
    usage error (2), one line on stderr naming it; errors go to stderr, results to stdout."""
    _write(tmp_path, INLINE_TOPOLOGY + CUT)
    assert main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.endswith("1 passed, 0 failed\n")
    assert main([str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"engine rules test: error: argument FILE: no such file or directory: {tmp_path / 'missing.yaml'}"
        " (see `engine rules test --help`)\n"
    )
    (tmp_path / "broken.yaml").write_text("tests: [\n")
    assert main([str(tmp_path / "broken.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {tmp_path / 'broken.yaml'}: ")
    assert "error" not in captured.out


def _one_test(body: str) -> str:
    return INLINE_TOPOLOGY + "tests:\n  - name: x\n" + body


_STEPS = "    timeline:\n" + STEP
_OK = "tests:\n  - {name: x, timeline: [{at: 0s, clear: {ne_id: a}}], expect: {}}\n"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param("- 1\n", "line 1: expected a mapping, got list", id="not-a-mapping"),
        pytest.param(INLINE_TOPOLOGY + "tests: []\n", "line 8: tests: must not be empty", id="no-tests"),
        pytest.param(
            _one_test("    timeline:\n" + STEP), "line 9: tests[0].expect: field required", id="no-expect"
        ),
        pytest.param(
            INLINE_TOPOLOGY + _OK + "  - {name: x, timeline: [{at: 0s, clear: {ne_id: a}}], expect: {}}\n",
            "line 10: tests[1].name: duplicate test name 'x'",
            id="duplicate-name",
        ),
        pytest.param(
            "topology: 3\n" + _OK,
            "line 1: topology: expected a path or a mapping, got integer",
            id="topology-int",
        ),
        pytest.param(
            "topology: {elements: 3}\n" + _OK,
            "line 1: topology: bad topology: elements: expected a list, got integer",
            id="bad-inline-topology",
        ),
        pytest.param(
            INLINE_TOPOLOGY + "config:\n  alarms:\n    effects:\n      - {effect: explode}\n" + _OK,
            "line 11: config.alarms.effects[0].effect: 'explode' is not one of 'outage', 'degraded'",
            id="config-nested",
        ),
        pytest.param(
            _one_test(
                "    timeline:\n      - {at: 0s, alarm: {ne_id: a}, clear: {ne_id: a}}\n    expect: {}\n"
            ),
            "line 11: tests[0].timeline[0]: a step needs exactly one of alarm, clear, samples or topic",
            id="two-kinds",
        ),
        pytest.param(
            _one_test("    timeline:\n      - {at: 0s, payload: {a: 1}}\n    expect: {}\n"),
            "line 11: tests[0].timeline[0]: a raw payload needs a 'topic'",
            id="payload-without-topic",
        ),
        pytest.param(
            _one_test("    timeline:\n      - {at: 0s, alarm: {severity: major}}\n    expect: {}\n"),
            "line 11: tests[0].timeline[0].alarm: ne_id: field required",
            id="alarm-without-ne-id",
        ),
        pytest.param(
            _one_test(_STEPS + "    expect:\n      incidents: many\n"),
            "line 13: tests[0].expect.incidents: expected a number or a bound (at_least, at_most)",
            id="bound-not-a-number",
        ),
        pytest.param(
            _one_test(_STEPS + "    expect:\n      incidents: {}\n"),
            "line 13: tests[0].expect.incidents: expected at_least and/or at_most",
            id="empty-bound",
        ),
        pytest.param(
            _one_test("    timeline:\n      - {at: 0s, alarm: }\n    expect: {}\n"),
            "line 11: tests[0].timeline[0].alarm: expected a value, got null",
            id="empty-alarm",
        ),
        pytest.param(
            _one_test(_STEPS + "    expect:\n      opened:\n        - {root: a, state: }\n"),
            "line 14: tests[0].expect.opened[0].state: expected a value, got null",
            id="empty-state",
        ),
        pytest.param(
            _one_test(_STEPS + "    expect:\n      incidents: .nan\n"),
            "line 13: tests[0].expect.incidents: expected a finite number, got nan",
            id="bound-nan",
        ),
        pytest.param(
            _one_test(_STEPS + "    expect:\n      counters: {}\n"),
            "line 13: tests[0].expect.counters: must not be empty",
            id="no-counters",
        ),
        pytest.param(
            _one_test(_STEPS + "    expect:\n      opened:\n        - {root: a, suppressed: [a, 3]}\n"),
            "line 14: tests[0].expect.opened[0].suppressed[1]: expected a string, got integer",
            id="suppressed-item",
        ),
        pytest.param(
            _one_test(_STEPS + "    expect:\n      opened:\n        - {root: a, suppressed: {}}\n"),
            "line 14: tests[0].expect.opened[0].suppressed: expected count, includes and/or excludes",
            id="suppressed-empty",
        ),
        pytest.param(
            _one_test(_STEPS + "    expect:\n      resolved:\n        - {root: a, resolution: gone}\n"),
            "line 14: tests[0].expect.resolved[0].resolution: 'gone' is not one of 'cleared' or 'merged'",
            id="resolution",
        ),
        pytest.param(
            _one_test(
                _STEPS
                + "    expect:\n      notifications:\n        - {event: opened, root: a, at: {at_most: x}}\n"
            ),
            "line 14: tests[0].expect.notifications[0].at.at_most: not a duration: 'x'",
            id="duration-in-a-bound",
        ),
    ],
)
def test_every_broken_shape_names_the_line_and_the_item(tmp_path: Path, text: str, says: str) -> None:
    """The file's shape is checked by pydantic models; each error still reads
    `error: FILE: line N: path: reason`, in the engine's common wording, and nothing runs."""
    path = _write(tmp_path, text)
    status, out = _run(path)
    assert status == 2, out
    assert out.startswith(f"error: {path}: {says}"), out
