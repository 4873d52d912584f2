"""The ruleset language, its compiler onto durable-rules, and our host around durable-rules."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigError, RuleEngineError, RulesetError
from engine.model.topology import topology_from_dict
from engine.rules.compiler import compile_rulesets
from engine.rules.host import RuleHost
from engine.rules.references import unknown_references
from engine.rules.schema import load_rulesets, parse_ruleset

GOLDEN = Path(__file__).parent / "golden"

VALID = """\
name: t
rules:
  - name: topo
    correlate:
      root: {effect: outage, severity: {at_least: major}}
      symptom: {probable_cause: [linkDown, lossOfSignal], site: {not: lab}}
      relation: downstream_of
      window: 5m
"""


def test_host_starts_no_threads_and_treats_no_match_as_normal() -> None:
    """One private host per engine: no durable timer threads; a fact no rule completes is no error."""
    before = threading.active_count()
    host = RuleHost()
    host.load("x", {"r0": {"all": [{"m": {"$and": [{"kind": "a"}]}}], "run": "act"}})
    assert host.assert_fact("x", {"sid": "s", "id": "1", "kind": "b"}) == []
    assert threading.active_count() == before


def test_host_refuses_a_join_by_name() -> None:
    """A rule binding two facts is refused at load, naming the rule: durable reads freed memory when
    joined facts are retracted, so the engine joins in Python and durable matches one fact."""
    host = RuleHost()
    with pytest.raises(RuleEngineError, match=r"rule 'r0' of ruleset 'x' binds 2 facts; this host runs"):
        host.load(
            "x",
            {
                "r0": {
                    "all": [{"r": {"$and": [{"k": "root"}]}}, {"s": {"$and": [{"k": "sym"}]}}],
                    "run": "pair",
                }
            },
        )
    assert host.rulesets == {}


def test_host_duplicate_fact_is_already_there_not_an_error() -> None:
    """durable raises MessageObservedException on an identical fact; our host treats it as present."""
    host = RuleHost()
    host.load("x", {"r0": {"all": [{"m": {"$and": [{"k": "a"}]}}], "run": "act"}})
    assert len(host.assert_fact("x", {"sid": "s", "id": "1", "k": "a"})) == 1
    assert host.assert_fact("x", {"sid": "s", "id": "1", "k": "a"}) == []


def test_host_rejects_bad_ruleset_unknown_ruleset_and_fact_without_id() -> None:
    """Engine failures become RuleEngineError with the reason, never durable's bare error codes."""
    host = RuleHost()
    with pytest.raises(RuleEngineError, match="durable-rules refused ruleset 'bad'"):
        host.load("bad", {"r0": {"all": [{"m": {"$iany": {"a": {"item": {"r": "x"}}}}}], "run": "a"}})
    with pytest.raises(RuleEngineError, match="unknown ruleset 'nope'"):
        host.assert_fact("nope", {"sid": "s", "id": "1"})
    host.load("x", {"r0": {"all": [{"m": {"$and": [{"k": "a"}]}}], "run": "act"}})
    with pytest.raises(RuleEngineError, match="needs 'id' and 'sid'"):
        host.assert_fact("x", {"k": "a"})


def test_compiled_default_ruleset_matches_the_golden_file() -> None:
    """The compiled form of the shipped default ruleset is pinned: explicit $and, one key per condition."""
    program = compile_rulesets(load_rulesets(None))
    got = json.loads(json.dumps(program.definitions, sort_keys=True))
    golden = GOLDEN / "default-ruleset.compiled.json"
    assert got == json.loads(golden.read_text())
    for definition in got.values():
        for rule in definition.values():
            for cond in rule["all"]:
                (alias, body) = next(iter(cond.items()))
                assert list(body) == ["$and"], alias
                assert all(len(c) == 1 for c in body["$and"])


def test_rule_names_are_qualified_and_windows_default_from_the_ruleset() -> None:
    """Rules are addressed as ruleset/rule; a rule without a window takes the ruleset default."""
    rs = parse_ruleset(VALID.replace("      window: 5m\n", "") + "defaults: {window: 90s}\n", "t.yaml")
    program = compile_rulesets([rs])
    assert list(program.rules) == ["t/topo"]
    assert program.rules["t/topo"].window == 90.0
    assert program.max_window == {"downstream_of": 90.0}


def test_two_rulesets_with_one_name_are_refused() -> None:
    """Several rulesets load together, but their names must differ."""
    rs = parse_ruleset(VALID, "a.yaml")
    with pytest.raises(RulesetError, match=r"also used by a\.yaml"):
        compile_rulesets([rs, parse_ruleset(VALID, "b.yaml")])


BAD: list[tuple[str, str, str]] = [
    ("relation", VALID.replace("downstream_of", "downstream"), "line 7: rule 'topo'"),
    ("window", VALID.replace("5m", "five"), "not a duration: 'five'"),
    ("field", VALID.replace("effect: outage", "effekt: outage"), "unknown field 'effekt'"),
    ("severity", VALID.replace("major", "fatal"), "'at_least' takes one of"),
    ("effect-value", VALID.replace("effect: outage", "effect: down"), "'down' is not an effect"),
    (
        "unknown-key",
        VALID.replace("      window", "      windw"),
        "line 8: rule 'topo', rules[0].correlate.windw",
    ),
    ("empty-list", VALID.replace("[linkDown, lossOfSignal]", "[]"), "an empty list matches nothing"),
    ("no-rules", "name: x\nrules: []\n", "at least one rule"),
    ("not-mapping", "- a\n", "a ruleset is a mapping"),
    ("duplicate-rule", VALID + VALID[VALID.index("  - name") :], "duplicate rule name 'topo'"),
    ("yaml", "name: [a\n", "line 2, column 1: malformed YAML"),
    ("bad-name", VALID.replace("name: topo", "name: Topo Rule"), "a rule name is"),
    ("operator", VALID.replace("{not: lab}", "{like: lab}"), "unknown operator 'like'"),
    (
        "dup-key",
        VALID.replace("    correlate:\n", "    correlate:\n      relation: same_site\n"),
        "duplicate key",
    ),
]


@pytest.mark.parametrize(("text", "fragment"), [(t, f) for _, t, f in BAD], ids=[i for i, _, _ in BAD])
def test_broken_rulesets_get_precise_errors(text: str, fragment: str) -> None:
    """Every mistake names the file, the line when known, the rule and what is wrong."""
    with pytest.raises(RulesetError) as info:
        parse_ruleset(text, "t.yaml")
    assert str(info.value).startswith("t.yaml: ")
    assert fragment in str(info.value)


def test_loading_a_directory_reads_every_yaml_and_a_missing_path_is_an_error(tmp_path: Path) -> None:
    """`--rulesets DIR` loads *.yaml sorted; a path that is not there says so."""
    (tmp_path / "b.yaml").write_text(VALID.replace("name: t", "name: b"))
    (tmp_path / "a.yaml").write_text(VALID.replace("name: t", "name: a"))
    assert [rs.name for rs in load_rulesets([tmp_path])] == ["a", "b"]
    with pytest.raises(ConfigError, match="no such file"):
        load_rulesets([tmp_path / "missing"])


def _compiled(text: str) -> dict[str, Any]:
    return dict(compile_rulesets([parse_ruleset(text, "t.yaml")]).definitions)


def test_conditions_compile_to_single_key_terms() -> None:
    """Lists become $or of equalities, `not` becomes $neq terms, severity thresholds compare ranks."""
    d = _compiled(VALID)["classify.0"]
    assert [r["run"] for r in d.values()] == ["t/topo#root", "t/topo#symptom"]
    root, sym = d["c0"]["all"][0]["m"]["$and"], d["c1"]["all"][0]["m"]["$and"]
    assert {"role": "x"} in root
    assert {"$gte": {"sev": 4}} in root
    assert {"$or": [{"cause": "linkDown"}, {"cause": "lossOfSignal"}]} in sym
    assert {"$neq": {"site": "lab"}} in sym
    # Every rule is single-alias: durable matches one alarm at a time, the join is the correlator's
    # (durable's own joins read freed memory, see engine.rules.host).
    assert all(len(r["all"]) == 1 for r in d.values())


def test_reads_name_every_fact_property_a_condition_reads() -> None:
    """The correlator reuses one match for every alarm agreeing on ``reads``: a property missing from
    it would give an alarm another alarm's answer."""
    program = compile_rulesets([parse_ruleset(VALID, "t.yaml")])
    assert program.reads == ("cause", "effect", "sev", "site")
    regex = VALID.replace("{not: lab}", "{regex: '^lab'}")
    assert compile_rulesets([parse_ruleset(regex, "t.yaml")]).reads == ("cause", "effect", "rx0", "sev")


def test_many_rules_compile_into_several_match_rulesets_that_all_match() -> None:
    """Past 255 rules firing on one fact durable fires wrong actions (at 256 it segfaults): the alarm
    matches of many rules are split over ``classify.<n>`` rulesets of at most 255, and a fact asserted
    into each fires exactly the parts it matches (here 300 empty symptoms and one root)."""
    text = _numbered("a", 300, "correlate: {relation: same_site, root: {probable_cause: c{i}}}")
    program = compile_rulesets([parse_ruleset(text, "a.yaml")])
    assert {k: len(v) for k, v in program.definitions.items()} == {
        "classify.0": 255,
        "classify.1": 255,
        "classify.2": 90,
    }
    host = RuleHost()
    try:
        fired: list[str] = []
        for name, definition in program.definitions.items():
            host.load(name, definition)
            fact = {"sid": "classify", "id": "1", "role": "x", "cause": "c299"}
            fired += [m.action for m in host.assert_fact(name, fact)]
            host.retract_fact(name, fact)
    finally:
        host.close()
    assert sorted(fired) == sorted(["a/r299#root"] + [f"a/r{i}#symptom" for i in range(300)])


def test_compiled_shipped_rulesets_match_the_golden_file() -> None:
    """Every shipped ruleset loaded together: the correlate joins by relation and the classify ruleset
    of the other forms (single-fact rules, explicit $and, one key per condition), the regex and
    service-type properties. Regenerate deliberately when a ruleset or the compiler changes."""
    program = compile_rulesets(load_rulesets([Path(__file__).parents[1] / "rulesets"]))
    got = json.loads(
        json.dumps(
            {
                "definitions": program.definitions,
                "regexes": [list(r) for r in program.regexes],
                "services": sorted(program.services),
            },
            sort_keys=True,
        )
    )
    assert got == json.loads((GOLDEN / "shipped-rulesets.compiled.json").read_text())
    assert list(got["definitions"]) == ["classify.0"]
    for definition in got["definitions"].values():
        assert len(definition) <= 512
        for rule in definition.values():
            for cond in rule["all"]:
                (_alias, body) = next(iter(cond.items()))
                assert list(body) == ["$and"]
                assert all(len(c) == 1 for c in body["$and"])


# --- every error of a file, in line order --------------------------------------------------------


def errors_of(text: str) -> list[str]:
    """Every error of one ruleset document, as ``rules check`` lists them (the first, then ``more``)."""
    with pytest.raises(RulesetError) as info:
        parse_ruleset(text, "t.yaml")
    return [str(e) for e in (info.value, *info.value.more)]


GROUP = "    group: {by: ne_id}\n"
KPI = "    kpi_threshold: {metric: latency_ms, above: 100, aggregate: mean, over: 5m}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "name: t\nrules:\n  - name: a\n" + GROUP + "  - name: a\n" + GROUP,
            ["t.yaml: line 5: rule 'a', rules[1].name: duplicate rule name 'a' (also rules[0], line 3)"],
            id="duplicate-alone",
        ),
        pytest.param(
            "name: t\nrules:\n  - name: a\n    group: {by: colour}\n  - name: a\n"
            + GROUP
            + "  - name: b\n"
            + GROUP
            + "  - name: a\n"
            + GROUP,
            [
                "t.yaml: line 4: rule 'a', rules[0].group.by: 'colour' cannot be a key field (known: ne_id, "
                "severity, probable_cause, event_type, specific_problem, element_type, site, region)",
                "t.yaml: line 5: rule 'a', rules[1].name: duplicate rule name 'a' (also rules[0], line 3)",
                "t.yaml: line 9: rule 'a', rules[3].name: duplicate rule name 'a' (also rules[0], line 3)",
            ],
            id="duplicates-with-another-error",
        ),
        pytest.param(
            "name: t\nrules: x\n",
            ["t.yaml: line 2: rules: expected a list of rules, got string"],
            id="rules-not-a-list",
        ),
        pytest.param(
            "name: t\nrules:\n  - topo\n  - name: a\n    correlate: downstream_of\n",
            [
                "t.yaml: line 3: rules[0]: expected a mapping (a rule), got string",
                "t.yaml: line 5: rule 'a', rules[1].correlate: expected a mapping, got string",
            ],
            id="rule-not-a-mapping",
        ),
        pytest.param(
            "name: t\nrules:\n  - name: [a]\n    enabled: maybe\n" + GROUP,
            [
                "t.yaml: line 3: rules[0].name: expected a string, got list",
                "t.yaml: line 4: rules[0].enabled: expected true or false, got 'maybe'",
            ],
            id="wrong-types-in-plain-words",
        ),
        pytest.param(
            "name: t\nrules:\n  - name: s\n"
            "    threshold: {count: 1, window: 1m, raise: {probable_cause: x}}\n",
            ["t.yaml: line 4: rule 's', rules[0].threshold.count: must be at least 2, got 1"],
            id="bound",
        ),
        pytest.param(
            "name: t\ndefaults: {scope: {colour: red}}\nrules:\n  - name: a\n" + GROUP,
            [
                "t.yaml: line 2: defaults.scope: unknown field 'colour' "
                "(expected one of ne_id, element_type, site, region, service_type)"
            ],
            id="scope-unknown-field",
        ),
        pytest.param(
            "name: t\nrules:\n  - name: k\n    kpi_threshold:\n      metric: latency ms\n"
            "      above: .inf\n      clear: .nan\n"
            "  - name: j\n    kpi_threshold: {metric: x, below: -.inf}\n",
            [
                "t.yaml: line 5: rule 'k', rules[0].kpi_threshold.metric: 'latency ms' is not a metric name "
                "samples can carry (^[A-Za-z][A-Za-z0-9_.-]{0,63}$)",
                "t.yaml: line 6: rule 'k', rules[0].kpi_threshold.above: expected a finite number, got inf",
                "t.yaml: line 7: rule 'k', rules[0].kpi_threshold.clear: expected a finite number, got nan",
                "t.yaml: line 9: rule 'j', rules[1].kpi_threshold.below: expected a finite number, got -inf",
            ],
            id="kpi-values-that-never-work",
        ),
        pytest.param(
            "name: t\nrules:\n  - name: m\n    maintenance:\n      scope: {sites: [site-a]}\n"
            '      schedule: {cron: "0 3 31 2 *", duration: 1h}\n',
            [
                "t.yaml: line 6: rule 'm', rules[0].maintenance.schedule.cron: '0 3 31 2 *' never fires: "
                "there is no day 31 in feb"
            ],
            id="cron-never-fires",
        ),
        pytest.param(
            "name: t\nrules:\n  - name: s\n    threshold:\n      count: 5\n      window: 1m\n"
            '      raise: {probable_cause: ""}\n  - name: p\n    pair:\n      first: {}\n      window: 1m\n'
            "      on_timeout: {raise: {probable_cause: ' ', severity: major}}\n",
            [
                "t.yaml: line 7: rule 's', rules[0].threshold.raise.probable_cause: must not be empty",
                "t.yaml: line 12: rule 'p', rules[1].pair.on_timeout.raise.probable_cause: must not be empty",
            ],
            id="empty-probable-cause",
        ),
        pytest.param(
            "name: t\ndefaults: {window: 400d}\nrules:\n  - name: g\n    group: {by: ne_id, "
            "window: 99999999999h}\n  - name: k\n    kpi_threshold: {metric: x, above: 1, for: 367d}\n",
            [
                "t.yaml: line 2: defaults.window: must be at most 366d, got 400d",
                "t.yaml: line 5: rule 'g', rules[0].group.window: must be at most 366d, got 99999999999h",
                "t.yaml: line 7: rule 'k', rules[1].kpi_threshold.for: must be at most 366d, got 367d",
            ],
            id="absurd-durations",
        ),
    ],
)
def test_every_error_of_a_ruleset_is_listed_with_its_line_and_rule(text: str, expected: list[str]) -> None:
    """A ruleset's errors come all together, in line order, each with the file, line, rule and field:
    a duplicate rule name too (at the second rule's name, naming the first), in plain words, and values
    that could never work (non-finite thresholds, metric names no sample carries, a cron that never
    fires, an empty probable cause, a duration beyond a year) are refused."""
    assert errors_of(text) == expected


def test_a_duration_of_a_year_is_accepted() -> None:
    """366 days is the longest duration a rule may give: a long SLA-style window still loads."""
    rs = parse_ruleset("name: t\nrules:\n  - name: g\n    group: {by: ne_id, window: 366d}\n", "t.yaml")
    assert rs.window(rs.rules[0]) == 366 * 86400.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            b"name: t\nrules:\n  - name: caf\xe9\n",
            "line 3: not valid UTF-8: byte 0xe9 at offset 28 (invalid continuation byte)",
            id="latin-1",
        ),
        pytest.param(
            b"\xff\xfen\x00a\x00",
            "line 1: not valid UTF-8: byte 0xff at offset 0 (invalid start byte)",
            id="utf-16",
        ),
    ],
)
def test_a_ruleset_file_that_is_not_utf8_is_a_ruleset_error(
    tmp_path: Path, raw: bytes, expected: str
) -> None:
    """A ruleset file in another encoding is refused naming the file, the line, the byte and its offset
    (a RulesetError, so a replay or a daemon reload refuses it cleanly), not a decoding traceback."""
    path = tmp_path / "latin.yaml"
    path.write_bytes(raw)
    with pytest.raises(RulesetError) as info:
        load_rulesets([path])
    assert str(info.value) == f"{path}: {expected}"


# --- across rulesets ------------------------------------------------------------------------------


def _numbered(name: str, count: int, rule: str) -> str:
    """A ruleset of ``count`` rules named r0, r1, … each of the form ``rule`` (``{i}`` is its number)."""
    body = "".join(f"  - name: r{i}\n    {rule.replace('{i}', str(i))}\n" for i in range(count))
    return f"name: {name}\nrules:\n{body}"


def compile_errors(*texts: tuple[str, str]) -> list[str]:
    """Every error of compiling the rulesets ``(source, text)`` together."""
    with pytest.raises(RulesetError) as info:
        compile_rulesets([parse_ruleset(text, source) for source, text in texts])
    return [str(e) for e in (info.value, *info.value.more)]


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        pytest.param(
            [("a.yaml", VALID), ("b.yaml", "# the transport team's copy\n" + VALID), ("c.yaml", VALID)],
            [
                "b.yaml: line 2: name: ruleset name 't' is also used by a.yaml (line 1)",
                "c.yaml: line 1: name: ruleset name 't' is also used by a.yaml (line 1)",
            ],
            id="duplicate-ruleset-names",
        ),
        pytest.param(
            [
                ("a.yaml", _numbered("a", 513, "correlate: {relation: same_site}")),
                ("b.yaml", _numbered("b", 101, "group: {by: ne_id, match: {text: {regex: x{i}}}}")),
            ],
            [
                "b.yaml: line 203: rule 'r100', rules[100]: more than 100 distinct regex conditions across "
                "the loaded rulesets (each becomes a fact property; durable-rules allows 255 per fact)",
            ],
            id="regex-limit-with-its-rule",
        ),
    ],
)
def test_compile_errors_name_the_file_line_and_rule(
    texts: list[tuple[str, str]], expected: list[str]
) -> None:
    """Errors across rulesets are all reported: a ruleset name used twice at the line of its ``name:``
    (naming the file and line of the first), each limit once, at the line of the first rule past it."""
    assert compile_errors(*texts) == expected


# --- names the topology lacks ---------------------------------------------------------------------

REFERENCE_TOPOLOGY: dict[str, Any] = {
    "tiers": {"platinum": {"weight": 8}, "gold": {"weight": 4}},
    "service_types": {"voip": {"criticality": 5, "platform": ["sbc-1"]}, "internet": {"criticality": 3}},
    "elements": [
        {"id": "core-1", "type": "router", "site": "site-a", "region": "north"},
        {"id": "sbc-1", "type": "sbc", "site": "site-a", "region": "north", "depends_on": ["core-1"]},
        {"id": "agg-3", "type": "aggregation", "site": "site-b", "region": "south", "depends_on": ["core-1"]},
    ],
    "customers": [{"id": "c-1", "tier": "gold", "access": "agg-3", "services": ["internet"]}],
}

REFERENCES = """\
name: refs
rules:
  - name: works
    maintenance:
      scope:
        elements: [agg-3, agg-33]
        sites: site-x
        regions: [north, westeros]
        services: [voip, vopi]
      schedule: {cron: "0 3 * * 0", duration: 1h}
  - name: vip
    priority:
      when:
        customers: [c-1, c-nope]
        tiers: [gold, platnum]
        services: iptv
      set: 1
  - name: latency
    kpi_threshold:
      metric: latency_ms
      above: 100
      scope: {target: [sbc-1, sbc-9], service_type: [voip, video]}
  - name: generic
    correlate:
      root: {element_type: olt, site: nowhere, ne_id: ghost}
      symptom: {region: atlantis}
      relation: downstream_of
"""


def test_names_the_topology_lacks_are_listed_with_file_line_rule_and_field() -> None:
    """Maintenance scopes (elements, sites, regions, services), priority conditions (customers, tiers,
    services) and KPI scopes (targets, service types) that name nothing in the topology are listed,
    each with its line, rule and field (short lists of known names as a hint). Alarm matches are not
    checked: a generic ruleset may name element types, sites or elements a network lacks."""
    (rs,) = [parse_ruleset(REFERENCES, "refs.yaml")]
    found = unknown_references([rs], topology_from_dict(REFERENCE_TOPOLOGY))
    assert [str(e) for e in found] == [
        "refs.yaml: line 6: rule 'works', rules[0].maintenance.scope.elements: unknown element 'agg-33'",
        "refs.yaml: line 7: rule 'works', rules[0].maintenance.scope.sites: unknown site 'site-x'",
        "refs.yaml: line 8: rule 'works', rules[0].maintenance.scope.regions: unknown region 'westeros'",
        "refs.yaml: line 9: rule 'works', rules[0].maintenance.scope.services: unknown service type 'vopi' "
        "(known: internet, voip)",
        "refs.yaml: line 14: rule 'vip', rules[1].priority.when.customers: unknown customer 'c-nope'",
        "refs.yaml: line 15: rule 'vip', rules[1].priority.when.tiers: unknown tier 'platnum' "
        "(known: gold, platinum)",
        "refs.yaml: line 16: rule 'vip', rules[1].priority.when.services: unknown service type 'iptv' "
        "(known: internet, voip)",
        "refs.yaml: line 22: rule 'latency', rules[2].kpi_threshold.scope.target: unknown element 'sbc-9'",
        "refs.yaml: line 22: rule 'latency', rules[2].kpi_threshold.scope.service_type: unknown service type "
        "'video' (known: internet, voip)",
    ]
    assert [(e.kind, e.value, e.field) for e in found[:1]] == [
        ("element", "agg-33", "maintenance.scope.elements")
    ]
