"""The ruleset language: YAML documents validated by pydantic, with errors that name file, line and rule.

A ruleset::

    name: default
    description: Topology root cause and site common cause.
    defaults: {window: 5m}
    rules:
      - name: topology-root-cause
        description: An alarm that takes an element down explains alarms below it.
        correlate:
          root: {effect: outage}
          symptom: {}
          relation: downstream_of
          window: 5m      # symptoms raised up to 5 minutes after the root
          lead: 30s       # … or up to 30 seconds before it (default 30s)

A match is a mapping of alarm fields to conditions (all must hold):

* a scalar: equality (``probable_cause: lossOfSignal``);
* a list: any of (``severity: [critical, major]``);
* ``{not: scalar-or-list}``: none of;
* ``severity: {at_least: major}``: severity rank at least that (X.733 order).

Fields: ``ne_id, severity, probable_cause, event_type, specific_problem, effect`` (of the alarm),
``element_type, site, region`` (of its element in the topology).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.errors import RulesetError
from engine.timeutil import Duration
from engine.yamlsource import Locator, load_document

SEVERITIES = ("indeterminate", "warning", "minor", "major", "critical")
SEVERITY_RANK = {"cleared": 0, "indeterminate": 1, "warning": 2, "minor": 3, "major": 4, "critical": 5}
EFFECTS = ("outage", "degraded", "none")
ALARM_FIELDS = ("ne_id", "severity", "probable_cause", "event_type", "specific_problem", "effect")
ELEMENT_FIELDS = ("element_type", "site", "region")
MATCH_FIELDS = ALARM_FIELDS + ELEMENT_FIELDS
Relation = Literal["downstream_of", "same_site", "same_region"]
RELATIONS: tuple[str, ...] = ("downstream_of", "same_site", "same_region")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")

Scalar = str | int | float | bool


class Condition(BaseModel):
    """One field's condition, normalised: ``any_of`` values, ``none_of`` values, or a minimum rank."""

    model_config = ConfigDict(frozen=True)

    any_of: tuple[Scalar, ...] = ()
    none_of: tuple[Scalar, ...] = ()
    at_least: str | None = None


def _condition(field: str, raw: Any) -> Condition:
    if isinstance(raw, list):
        if not raw:
            raise ValueError("an empty list matches nothing; remove the field to match anything")
        values = tuple(_scalar(field, v) for v in raw)
        return Condition(any_of=values)
    if isinstance(raw, dict):
        if len(raw) != 1:
            raise ValueError(
                f"a condition mapping takes exactly one operator (not, at_least), got {sorted(raw)}"
            )
        op, arg = next(iter(raw.items()))
        if op == "not":
            values = tuple(_scalar(field, v) for v in (arg if isinstance(arg, list) else [arg]))
            return Condition(none_of=values)
        if op == "at_least":
            if field != "severity":
                raise ValueError("'at_least' applies to severity only")
            if arg not in SEVERITIES:
                raise ValueError(f"'at_least' takes one of {', '.join(SEVERITIES)}, got {arg!r}")
            return Condition(at_least=str(arg))
        raise ValueError(f"unknown operator {op!r} (known: not, at_least)")
    return Condition(any_of=(_scalar(field, raw),))


def _scalar(field: str, value: Any) -> Scalar:
    if value is None or isinstance(value, dict | list):
        raise ValueError(f"expected a plain value, got {type(value).__name__}")
    if field == "severity" and value not in SEVERITY_RANK:
        raise ValueError(f"{value!r} is not a severity (known: {', '.join(SEVERITY_RANK)})")
    if field == "effect" and value not in EFFECTS:
        raise ValueError(f"{value!r} is not an effect (known: {', '.join(EFFECTS)})")
    if isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"expected a plain value, got {type(value).__name__}")


def _match(raw: Any) -> dict[str, Condition]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"a match is a mapping of field to condition, got {type(raw).__name__}")
    out: dict[str, Condition] = {}
    for field, cond in raw.items():
        if field not in MATCH_FIELDS:
            raise ValueError(f"unknown field {field!r} (known: {', '.join(MATCH_FIELDS)})")
        try:
            out[field] = _condition(field, cond)
        except ValueError as exc:
            raise ValueError(f"{field}: {exc}") from None
    return out


Match = Annotated[dict[str, Condition], BeforeValidator(_match)]


class Correlate(BaseModel):
    """Root and symptom alarms related by topology within a window; symptoms are suppressed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Match = Field(default_factory=dict)
    symptom: Match = Field(default_factory=dict)
    relation: Relation
    window: Duration | None = None  # how long after the root a symptom may be raised
    lead: Duration | None = None  # how long before the root a symptom may be raised (storms arrive unordered)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    enabled: bool = True
    correlate: Correlate

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                "a rule name is 1-63 chars of a-z, 0-9, '_', '.', '-', starting with a letter or digit"
            )
        return v


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window: Duration = 300.0
    lead: Duration = 30.0


class Ruleset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    defaults: Defaults = Field(default_factory=Defaults)
    rules: list[Rule]
    source: str = "<inline>"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("a ruleset name is 1-63 chars of a-z, 0-9, '_', '.', '-'")
        return v

    @model_validator(mode="after")
    def _unique(self) -> Ruleset:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"duplicate rule name {rule.name!r}")
            seen.add(rule.name)
        if not self.rules:
            raise ValueError("a ruleset needs at least one rule")
        return self

    def window(self, rule: Rule) -> float:
        return rule.correlate.window if rule.correlate.window is not None else self.defaults.window

    def lead(self, rule: Rule) -> float:
        return rule.correlate.lead if rule.correlate.lead is not None else self.defaults.lead


def parse_ruleset(text: str, source: str) -> Ruleset:
    data, locator = load_document(text, source, RulesetError)
    return ruleset_from_data(data, source, locator)


def load_ruleset_file(path: str | Path) -> Ruleset:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesetError(str(p), "", f"cannot read file: {exc}") from None
    return parse_ruleset(text, str(p))


def ruleset_from_data(data: Any, source: str, locator: Locator | None = None) -> Ruleset:
    if not isinstance(data, Mapping):
        raise RulesetError(
            source, "", f"a ruleset is a mapping with name and rules, got {type(data).__name__}"
        )
    try:
        return Ruleset.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise _translate(exc, data, source, locator) from None


def _translate(
    exc: ValidationError, data: Mapping[str, Any], source: str, locator: Locator | None
) -> RulesetError:
    err = exc.errors(include_url=False)[0]
    loc = tuple(err["loc"])
    rule: str | None = None
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = data.get("rules")
        if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], Mapping):
            name = rules[loc[1]].get("name")
            rule = str(name) if name is not None else None
    line = locator.line(loc) if locator else None
    where = _dotted(loc)
    return RulesetError(source, where, _reason(err), line=line, rule=rule)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-"):
            continue  # pydantic's name for a validator step, not a field
        else:
            out += f".{part}" if out else str(part)
    return out


def _reason(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{err['input']!r} is not one of {expected}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


DEFAULT_RULESET = Path(__file__).resolve().parents[1] / "data" / "default-ruleset.yaml"


def load_rulesets(paths: Sequence[str | Path] | None) -> list[Ruleset]:
    """Rulesets from files and directories (``*.yaml``/``*.yml``, sorted); the default when none."""
    if not paths:
        return [load_ruleset_file(DEFAULT_RULESET)]
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise RulesetError(str(p), "", "no *.yaml ruleset in this directory")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise RulesetError(str(p), "", "no such file or directory")
    return [load_ruleset_file(f) for f in files]
