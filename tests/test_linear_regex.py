"""Users' regexes in linear time: RE2 runs what it accepts in time linear in the input; what it
cannot run (backreferences, lookaround…) is refused with the feature named, never run another way.

The catastrophic patterns here made Python's backtracking ``re`` run for hours on a few dozen
characters; no test times them: each just has to finish within the suite's per-test timeout.
"""

from __future__ import annotations

import re

import pytest

from engine.core.forms.silences import Matcher, MatcherError, parse_matcher
from engine.errors import RulesetError
from engine.model.linear_regex import _ANSWER_TEXT, _ANSWERS, LinearRegex, RegexRefused, linear_regex
from engine.rules.schema import Condition, element_in_scope, parse_ruleset

SIXTY_KIB = "a" * (60 * 1024) + "!"
CATASTROPHIC = ["(a+)+$", "(a|a)+$", "(a|aa)+$", "(.*a){20}$", "^(a+)+b"]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_a_catastrophic_looking_pattern_runs_on_60_kib_in_every_place(pattern: str) -> None:
    """``(a+)+$`` and kin, which RE2 accepts, answer on 60 KiB of ``a`` and a ``!`` wherever a user's
    regex meets input: a ruleset condition (searched), a ruleset scope, an Alertmanager matcher
    (anchored, ``=~`` and ``!~``). With Python's ``re`` each of these ran for hours."""
    assert not linear_regex(pattern).search(SIXTY_KIB)
    assert not linear_regex(pattern).fullmatch(SIXTY_KIB)
    assert linear_regex(pattern).search("a" * 30) == (pattern != "^(a+)+b")
    assert not Matcher("alertname", pattern, is_regex=True).matches(SIXTY_KIB)
    assert Matcher("alertname", pattern, is_regex=True, is_equal=False).matches(SIXTY_KIB)
    scope = {"site": Condition(regex=pattern)}
    assert not element_in_scope(scope, "olt-1", {"site": SIXTY_KIB}, [])


ORDINARY = [
    ("^lab-", ["lab-1", "a-lab-1", ""]),
    ("fibre|fiber", ["fiber cut", "Fibre", "no"]),
    ("port [0-9]/", ["port 1/1", "port x/1"]),
    (r"\d+\.\d+", ["v1.2", "1."]),
    ("(?i)LOSS", ["lossOfSignal", "los"]),
    ("crit.*", ["critical", "a critical", "crit\nical"]),
    ("", ["", "x"]),
    ("a$", ["a", "a\nb", "ba"]),
    ("site-[ab]", ["site-a", "site-c", "site-ab"]),
    ("(?s:.*)", ["two\nlines"]),
]


@pytest.mark.parametrize(("pattern", "texts"), ORDINARY)
def test_ordinary_patterns_mean_what_they_meant_with_python_re(pattern: str, texts: list[str]) -> None:
    """For the patterns rulesets and matchers use, RE2 answers as ``re`` did: a ruleset condition is
    searched (``re.search``), a matcher matches the whole value (``re.fullmatch``)."""
    for text in texts:
        assert linear_regex(pattern).search(text) == (re.search(pattern, text) is not None), text
        assert linear_regex(pattern).fullmatch(text) == (re.fullmatch(pattern, text) is not None), text


def test_answers_kept_by_text_are_the_engines_own_and_bounded() -> None:
    """A ruleset's condition keeps its answers by text (values such as an element's id repeat):
    asked again, after its table has been emptied for being full, and for a text too long to keep,
    it answers as RE2 and ``re`` do; the table never holds more than its bound, nor a long text; the
    API's matchers (``search``, ``fullmatch``) keep nothing."""
    rx = LinearRegex("^olt-[0-9]*7$")
    texts = [f"olt-{i}" for i in range(3 * _ANSWERS)] + ["olt-7" + "0" * _ANSWER_TEXT + "7"]
    for _ in range(2):  # the second pass: answers kept, and the ones asked again after a refill
        for text in texts:
            assert rx.search_kept(text) is (re.search("^olt-[0-9]*7$", text) is not None), text
            assert len(rx._searched) <= _ANSWERS
    assert all(len(text) <= _ANSWER_TEXT for text in rx._searched)
    assert texts[-2] in rx._searched  # kept at all: the table is no pass-through
    other = LinearRegex("^olt-")
    assert other.search("olt-1")
    assert other.fullmatch("olt-1x") is False
    assert other._searched == {}


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [
        (r"(a)\1", r"a backreference (\1)"),
        (r"(?P<x>a)(?P=x)", "a backreference to a named group (?P=…)"),
        ("(?=a)a", "a lookahead (?=…)"),
        ("(?!a)b", "a negative lookahead (?!…)"),
        ("(?<=a)b", "a lookbehind (?<=…)"),
        ("(?<!a)b", "a negative lookbehind (?<!…)"),
        ("(a)?(?(1)b|c)", "a conditional group (?(…)…|…), which refers back to a group"),
        ("(?>a+)b", "an atomic group (?>…)"),
        ("a++b", "a possessive quantifier (++)"),
        ("a{2000}", "a repetition count over 1000 ({2000})"),
        (r"end\Z", r"\Z (the end of the text is \z in RE2 syntax)"),
    ],
)
def test_patterns_re2_cannot_run_are_refused_naming_the_feature(pattern: str, feature: str) -> None:
    """Python's ``re`` accepts these; RE2 cannot run them in linear time (or spells them otherwise):
    refused with the feature named, in the words a ruleset error and an API 400 use."""
    with pytest.raises(RegexRefused) as info:
        LinearRegex(pattern)
    assert info.value.unsupported
    assert str(info.value) == (
        f"regex {pattern!r} uses a feature a linear-time regex engine cannot run: {feature}"
    )


def test_a_pattern_that_is_no_regex_is_invalid_with_re2s_reason() -> None:
    """A pattern Python's ``re`` refuses too is just invalid, with RE2's reason."""
    with pytest.raises(RegexRefused, match=r"^invalid regex '\(': missing \): \($") as info:
        linear_regex("(")
    assert not info.value.unsupported


def test_input_python_can_hold_but_utf8_cannot_is_matched_not_raised() -> None:
    """A lone surrogate (a ``str`` can hold one) is one character to RE2, as to ``re``: no error."""
    assert linear_regex("^.x$").search("\ud800x")
    assert Matcher("site", "s.*", is_regex=True).matches("s\udc80")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            r'alertname=~"(a)\\1"',
            r'matcher alertname=~"(a)\\1": the regular expression uses a feature a linear-time regex '
            r"engine cannot run: a backreference (\1)",
        ),
        (
            'site!~"(?<!x)y"',
            'matcher site!~"(?<!x)y": the regular expression uses a feature a linear-time regex engine '
            "cannot run: a negative lookbehind (?<!…)",
        ),
    ],
)
def test_a_matcher_re2_cannot_run_is_refused_naming_the_matcher(text: str, message: str) -> None:
    """An Alertmanager matcher (API filter, silence) whose regex RE2 cannot run is a ``MatcherError``
    naming the matcher as written and the feature."""
    with pytest.raises(MatcherError) as info:
        parse_matcher(text)
    assert str(info.value) == message


def test_a_matcher_with_spaces_in_its_value_is_read_in_linear_time() -> None:
    """The matcher syntax itself: a value with a long run of spaces inside (its pattern was quadratic
    in them: half a second of the event loop for an 8 KB filter) is read as before."""
    value = "x" + " " * 60_000 + "x"
    assert parse_matcher(f"  a =  {value}  ") == Matcher("a", value)
    with pytest.raises(MatcherError, match="bad matcher format"):
        parse_matcher("a" + " " * 60_000 + "b")


RULESET = """\
name: r
rules:
  - name: ok
    group: {{by: ne_id, match: {{text: {{regex: '(a+)+$'}}}}}}
  - name: refused
    group: {{by: ne_id, match: {{probable_cause: {{regex: '{pattern}'}}}}}}
"""


def test_a_ruleset_regex_re2_cannot_run_is_refused_with_its_line_rule_and_field() -> None:
    """``(a+)+$`` loads (RE2 runs it in linear time); a backreference is a ruleset error at its line,
    naming the rule, the field and the feature."""
    with pytest.raises(RulesetError) as info:
        parse_ruleset(RULESET.format(pattern=r"(\w)\1"), "r.yaml")
    assert str(info.value) == (
        "r.yaml: line 6: rule 'refused', rules[1].group.match: probable_cause: regex '(\\\\w)\\\\1' uses "
        "a feature a linear-time regex engine cannot run: a backreference (\\1)"
    )
    assert parse_ruleset(RULESET.format(pattern="^loss"), "r.yaml").rules[0].name == "ok"
