"""The ruleset language, its compiler onto durable-rules, and our host around durable-rules."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigError, RuleEngineError, RulesetError
from engine.rules.compiler import compile_rulesets
from engine.rules.host import RuleHost
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


def test_host_join_fires_inline_with_both_facts_late_join_included() -> None:
    """A two-alias join fires in the call that completes it, whichever fact came first."""
    host = RuleHost()
    host.load(
        "x",
        {"r0": {"all": [{"r": {"$and": [{"k": "root"}]}}, {"s": {"$and": [{"k": "sym"}]}}], "run": "pair"}},
    )
    assert host.assert_fact("x", {"sid": "s", "id": "2", "k": "sym"}) == []
    (m,) = host.assert_fact("x", {"sid": "s", "id": "1", "k": "root"})
    assert m.action == "pair"
    assert (m.facts["r"]["id"], m.facts["s"]["id"]) == ("1", "2")
    # Another scope (sid) never joins.
    assert host.assert_fact("x", {"sid": "other", "id": "3", "k": "sym"}) == []


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
    d = _compiled(VALID)["corr.downstream_of"]["r0"]["all"]
    root, sym = d[0]["r"]["$and"], d[1]["s"]["$and"]
    assert {"role": "root"} in root
    assert {"$gte": {"sev": 4}} in root
    assert {"$or": [{"cause": "linkDown"}, {"cause": "lossOfSignal"}]} in sym
    assert {"$neq": {"site": "lab"}} in sym
    # No expression refers to the other alias: durable mis-evaluates them (see engine.rules.compiler).
    assert "{'r':" not in repr(sym)


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
    assert "classify" in got["definitions"]
    for definition in got["definitions"].values():
        assert len(definition) <= 512
        for rule in definition.values():
            for cond in rule["all"]:
                (_alias, body) = next(iter(cond.items()))
                assert list(body) == ["$and"]
                assert all(len(c) == 1 for c in body["$and"])
