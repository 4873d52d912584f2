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

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from engine.errors import RulesetError
from engine.model.linear_regex import RegexRefused, linear_regex
from engine.model.messages import METRIC_NAME_PATTERN
from engine.model.schedule import Schedule
from engine.model.timeutil import Duration, format_duration
from engine.model.topology import MAX_HOPS
from engine.model.wording import EXPECTED, dotted, reason, type_name, unknown_field
from engine.model.yamlsource import Locator, load_document, load_file

SEVERITIES = ("indeterminate", "warning", "minor", "major", "critical")
SEVERITY_RANK = {"cleared": 0, "indeterminate": 1, "warning": 2, "minor": 3, "major": 4, "critical": 5}
EFFECTS = ("outage", "degraded", "none")
EVENT_TYPES = (
    "communicationsAlarm",
    "qualityOfServiceAlarm",
    "processingErrorAlarm",
    "equipmentAlarm",
    "environmentalAlarm",
)
ALARM_FIELDS = ("ne_id", "severity", "probable_cause", "event_type", "specific_problem", "effect", "text")
ELEMENT_FIELDS = ("element_type", "site", "region", "service_type")
MATCH_FIELDS = ALARM_FIELDS + ELEMENT_FIELDS
SCOPE_FIELDS = ("ne_id", *ELEMENT_FIELDS)  # what a ruleset's `defaults.scope` may name
KEY_FIELDS = (
    "ne_id",
    "severity",
    "probable_cause",
    "event_type",
    "specific_problem",
    "element_type",
    "site",
    "region",
)
Relation = Literal[
    "downstream_of",
    "upstream_of",
    "same_element",
    "same_site",
    "same_region",
    "same_service_path",
    "neighbour",
]
RELATIONS: tuple[str, ...] = get_args(Relation)
NEIGHBOUR = "neighbour"
MIN_HOPS = 2  # one link away, an element is always above or below: `downstream_of`/`upstream_of`
DEFAULT_HOPS = 2
FORMS = ("correlate", "group", "inhibit", "threshold", "pair", "kpi_threshold", "maintenance", "priority")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_OPERATORS = ("not", "at_least", "at_most", "regex")
MAX_REGEXES = 100  # each becomes one fact property; durable-rules allows 255 per fact
MAX_RULE_DURATION = 366 * 86400.0  # the longest window, lead, wait, interval, `for` or `over`: a year
_METRIC = re.compile(METRIC_NAME_PATTERN)

Scalar = str | int | float | bool


class Condition(BaseModel):
    """One field's condition, normalised: ``any_of`` values, ``none_of`` values, a rank range, a regex."""

    model_config = ConfigDict(frozen=True)

    any_of: tuple[Scalar, ...] = ()
    none_of: tuple[Scalar, ...] = ()
    at_least: str | None = None
    at_most: str | None = None
    regex: str | None = None


def _condition(field: str, raw: Any) -> Condition:
    if isinstance(raw, list):
        if not raw:
            raise ValueError("an empty list matches nothing; remove the field to match anything")
        values = tuple(_scalar(field, v) for v in raw)
        return Condition(any_of=values)
    if isinstance(raw, dict):
        if len(raw) != 1:
            raise ValueError(
                f"a condition mapping takes exactly one operator ({', '.join(_OPERATORS)}), got {sorted(raw)}"
            )
        op, arg = next(iter(raw.items()))
        if op == "not":
            values = tuple(_scalar(field, v) for v in (arg if isinstance(arg, list) else [arg]))
            return Condition(none_of=values)
        if op in ("at_least", "at_most"):
            if field != "severity":
                raise ValueError(f"{op!r} applies to severity only")
            if arg not in SEVERITIES:
                raise ValueError(f"{op!r} takes one of {', '.join(SEVERITIES)}, got {arg!r}")
            return Condition(**{op: str(arg)})
        if op == "regex":
            if field in ("severity", "effect", "service_type"):
                raise ValueError(f"'regex' does not apply to {field} (use a value or a list)")
            if not isinstance(arg, str):
                raise ValueError(f"'regex' takes a string, got {type_name(arg)}")
            try:
                linear_regex(arg)  # RE2: what it cannot run in linear time is refused here, not run
            except RegexRefused as exc:
                raise ValueError(exc.describe()) from None
            return Condition(regex=arg)
        raise ValueError(f"unknown operator {op!r} (known: {', '.join(_OPERATORS)})")
    if field == "text":
        raise ValueError("text takes a {regex: ...} condition only")
    return Condition(any_of=(_scalar(field, raw),))


def _scalar(field: str, value: Any) -> Scalar:
    if value is None or isinstance(value, dict | list):
        raise ValueError(f"expected a plain value, got {type_name(value)}")
    if field == "severity" and value not in SEVERITY_RANK:
        raise ValueError(f"{value!r} is not a severity (known: {', '.join(SEVERITY_RANK)})")
    if field == "effect" and value not in EFFECTS:
        raise ValueError(f"{value!r} is not an effect (known: {', '.join(EFFECTS)})")
    if field == "event_type" and value not in EVENT_TYPES:
        raise ValueError(f"{value!r} is not an X.733 event type (known: {', '.join(EVENT_TYPES)})")
    if isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"expected a plain value, got {type_name(value)}")


def _match(raw: Any) -> dict[str, Condition]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"a match is a mapping of field to condition, got {type_name(raw)}")
    out: dict[str, Condition] = {}
    for field, cond in raw.items():
        if field not in MATCH_FIELDS:
            raise ValueError(unknown_field(field, MATCH_FIELDS))
        try:
            out[field] = _condition(field, cond)
        except ValueError as exc:
            raise ValueError(f"{field}: {exc}") from None
    return out


Match = Annotated[dict[str, Condition], BeforeValidator(_match)]


def _keys(raw: Any) -> Any:
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, list):
        for k in raw:
            if k not in KEY_FIELDS:
                raise ValueError(f"{k!r} cannot be a key field (known: {', '.join(KEY_FIELDS)})")
        if len(set(raw)) != len(raw):
            raise ValueError("a key field is listed twice")
    return raw


KeyFields = Annotated[tuple[str, ...], BeforeValidator(_keys)]


def _bounded(seconds: float) -> float:
    if seconds > MAX_RULE_DURATION:
        raise ValueError(
            f"must be at most {format_duration(MAX_RULE_DURATION)}, got {format_duration(seconds)}"
        )
    return seconds


RuleDuration = Annotated[Duration, AfterValidator(_bounded)]
"""A rule's duration: as ``Duration`` (``30s``, ``5m``, ``1h``…), at most ``MAX_RULE_DURATION``."""


def _nonblank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


ProbableCause = Annotated[str, AfterValidator(_nonblank)]


class _Form(BaseModel):
    """A rule's spec (or a part of one). A form's spec says itself which of its fields are alarm
    matches (``alarm_matches``, or ``alarm_parts`` when a part is conditional or nested): the
    compiler classifies alarms by them and the ruleset's scope is merged into them (``scoped``),
    with no list of forms anywhere else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alarm_matches: ClassVar[tuple[str, ...]] = ()

    def alarm_parts(self) -> list[tuple[str, Mapping[str, Condition]]]:
        """Its alarm matches by part name (the classify action suffix ``rule#<part>``)."""
        return [(f, getattr(self, f)) for f in self.alarm_matches]

    def scoped(self, scope: Mapping[str, Condition]) -> Self:
        """This spec with the ruleset's ``scope`` merged into each alarm match (the rule's own
        condition on a field wins); itself when it has none."""
        update = {part: _inherit(match, scope) for part, match in self.alarm_parts()}
        return self.model_copy(update=update) if update else self


FormSpec = _Form


class Emit(_Form):
    """A synthetic alarm a rule raises (an escalation, a storm, a KPI breach): X.733 fields."""

    probable_cause: ProbableCause
    severity: Literal["critical", "major", "minor", "warning", "indeterminate"] = "major"
    event_type: Literal[
        "communicationsAlarm",
        "qualityOfServiceAlarm",
        "processingErrorAlarm",
        "equipmentAlarm",
        "environmentalAlarm",
    ] = "processingErrorAlarm"
    specific_problem: str | None = None
    effect: Literal["outage", "degraded", "none"] = "none"
    text: str | None = None


class Correlate(_Form):
    """Root and symptom alarms related by topology within a window; symptoms are suppressed.
    Its sides are joined (not classified by parts), and both inherit the ruleset's scope."""

    root: Match = Field(default_factory=dict)
    symptom: Match = Field(default_factory=dict)
    relation: Relation
    # `neighbour` only: how many links apart the two elements may be (``Topology.neighbours``)
    hops: int | None = Field(None, strict=True)
    window: RuleDuration | None = None  # how long after the root a symptom may be raised
    lead: RuleDuration | None = (
        None  # how long before the root a symptom may be raised (storms arrive unordered)
    )

    @field_validator("hops")
    @classmethod
    def _hops(cls, v: int | None, info: ValidationInfo) -> int | None:
        relation = info.data.get("relation")
        if v is None or relation is None:  # no hops, or the relation itself is wrong (said there)
            return v
        if relation != NEIGHBOUR:
            raise ValueError(f"hops applies to relation {NEIGHBOUR} only, not to {relation}")
        if not MIN_HOPS <= v <= MAX_HOPS:
            raise ValueError(
                f"hops must be within {MIN_HOPS}..{MAX_HOPS}, got {v} (one link away an element is "
                f"always above or below: downstream_of, upstream_of; past {MAX_HOPS} a neighbourhood "
                "can span much of a network)"
            )
        return v

    @property
    def scope_relation(self) -> str:
        """The relation as the correlator's scopes know it: ``neighbour:<hops>`` for a neighbour
        rule (each distance has its own scopes), the relation itself otherwise."""
        if self.relation == NEIGHBOUR:
            return relation_key(self.hops or DEFAULT_HOPS)
        return self.relation

    def scoped(self, scope: Mapping[str, Condition]) -> Self:
        update = {"root": _inherit(self.root, scope), "symptom": _inherit(self.symptom, scope)}
        return self.model_copy(update=update)


def relation_key(hops: int) -> str:
    """A neighbour relation's name in compiled rules, explanations and records: ``neighbour:2``."""
    return f"{NEIGHBOUR}:{hops}"


def neighbour_hops(relation: str) -> int | None:
    """The hops of a compiled neighbour relation (``neighbour:2`` -> 2); ``None`` for any other."""
    name, sep, hops = relation.partition(":")
    return int(hops) if sep and name == NEIGHBOUR else None


class Group(_Form):
    """Alarms sharing the ``by`` fields within ``window`` of the group's first one become one incident."""

    alarm_matches: ClassVar[tuple[str, ...]] = ("match",)

    match: Match = Field(default_factory=dict)
    by: KeyFields
    window: RuleDuration | None = None
    wait: RuleDuration | None = None  # group_wait: how long the incident gathers before `opened`
    interval: RuleDuration | None = None  # group_interval: at most one `updated` per interval

    @field_validator("by")
    @classmethod
    def _by(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("give at least one field to group by")
        return v


class Inhibit(_Form):
    """While a source alarm is active, target alarms with the ``equal`` fields equal are suppressed."""

    alarm_matches: ClassVar[tuple[str, ...]] = ("source", "target")

    source: Match
    target: Match
    equal: KeyFields = ()


class Threshold(_Form):
    """``count`` matching alarms (per ``by`` key) within ``window`` raise one storm alarm, once per window."""

    alarm_matches: ClassVar[tuple[str, ...]] = ("match",)

    match: Match = Field(default_factory=dict)
    by: KeyFields = ()
    count: int = Field(ge=2, le=100000)
    window: RuleDuration
    raise_: Emit = Field(alias="raise")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("window")
    @classmethod
    def _window(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("window must be longer than 0s")
        return v


class OnTimeout(_Form):
    raise_: Emit = Field(alias="raise")
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class OnPair(_Form):
    """What a completed pair does besides (optionally) discarding the first alarm's incident: raise
    an *event*, a synthetic alarm raised and cleared at once on the first alarm's element, that
    other rules can count (a threshold on bounces) or group."""

    raise_: Emit = Field(alias="raise")
    discard: bool = False
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Pair(_Form):
    """An alarm expects a matching one (or its own clear) within ``window``.

    ``on_timeout`` raises an escalation alarm when the second does not come; ``on_pair: discard``
    holds the first alarm's incident for the window and drops it if the pair completes (a transient).
    """

    first: Match
    second: Match | Literal["clear"] = "clear"
    equal: KeyFields = ()
    window: RuleDuration
    on_timeout: OnTimeout | None = None
    on_pair: Literal["discard", "none"] | OnPair = "none"

    def alarm_parts(self) -> list[tuple[str, Mapping[str, Condition]]]:
        parts: list[tuple[str, Mapping[str, Condition]]] = [("first", self.first)]
        if self.second != "clear":
            parts.append(("second", self.second))
        return parts

    @property
    def discards(self) -> bool:
        """The first alarm's incident is held for the window and dropped if the pair completes."""
        return self.on_pair == "discard" or (isinstance(self.on_pair, OnPair) and self.on_pair.discard)

    @model_validator(mode="after")
    def _does_something(self) -> Pair:
        if self.on_timeout is None and self.on_pair == "none":
            raise ValueError("a pair rule needs on_timeout, on_pair (discard, or {raise: …}), or both")
        if self.window <= 0:
            raise ValueError("window must be longer than 0s")
        return self


FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]


class KpiScope(_Form):
    element_type: tuple[str, ...] = ()
    service_type: tuple[str, ...] = ()
    target: tuple[str, ...] = ()
    site: tuple[str, ...] = ()
    region: tuple[str, ...] = ()

    @field_validator("*", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class KpiThreshold(_Form):
    """A KPI beyond ``above``/``below`` for ``for`` raises a QoS alarm; it clears past ``clear``."""

    metric: str
    above: FiniteNumber | None = None
    below: FiniteNumber | None = None
    clear: FiniteNumber | None = None  # hysteresis: the value that clears it (default: the threshold)
    for_: RuleDuration = Field(0.0, alias="for")
    aggregate: Literal["last", "mean", "max", "min", "p95"] = "last"
    over: RuleDuration | None = None  # window of the aggregate (required unless aggregate is `last`)
    scope: KpiScope = Field(default_factory=KpiScope)
    severity: Literal["critical", "major", "minor", "warning"] = "major"
    probable_cause: ProbableCause = "thresholdCrossed"
    effect: Literal["outage", "degraded", "none"] = "degraded"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if not _METRIC.match(v):
            raise ValueError(f"{v!r} is not a metric name samples can carry ({METRIC_NAME_PATTERN})")
        return v

    @model_validator(mode="after")
    def _check(self) -> KpiThreshold:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        if self.aggregate != "last" and not self.over:
            raise ValueError(f"aggregate {self.aggregate!r} needs `over` (the window, e.g. 5m)")
        if self.aggregate == "last" and self.over is not None:
            raise ValueError("`over` applies to an aggregate (mean, max, min, p95), not to `last`")
        if self.clear is not None:
            if self.above is not None and self.clear > self.above:
                raise ValueError(
                    f"clear ({self.clear:g}) must be at or below the threshold (above {self.above:g})"
                )
            if self.below is not None and self.clear < self.below:
                raise ValueError(
                    f"clear ({self.clear:g}) must be at or above the threshold (below {self.below:g})"
                )
        return self

    @property
    def threshold(self) -> float:
        return self.above if self.above is not None else self.below  # type: ignore[return-value]

    @property
    def clear_value(self) -> float:
        return self.clear if self.clear is not None else self.threshold

    def breaching(self, value: float) -> bool:
        return value > self.above if self.above is not None else value < self.threshold

    def cleared(self, value: float) -> bool:
        return value <= self.clear_value if self.above is not None else value >= self.clear_value


class MaintenanceScope(_Form):
    elements: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    services: tuple[str, ...] = ()

    @field_validator("*", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _some(self) -> MaintenanceScope:
        if not (self.elements or self.sites or self.regions or self.services):
            raise ValueError("a maintenance scope names elements, sites, regions or services")
        return self


class Maintenance(_Form):
    """Planned work: no incident opens (nor is notified) for roots in scope during the schedule."""

    scope: MaintenanceScope
    schedule: Schedule


class When(_Form):
    root: Match = Field(default_factory=dict)
    customers: tuple[str, ...] = ()  # any of these customers affected
    tiers: tuple[str, ...] = ()  # any customer of these tiers affected
    services: tuple[str, ...] = ()  # any of these service types affected
    min_customers: int | None = Field(None, ge=1)

    @field_validator("customers", "tiers", "services", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class PriorityOverride(_Form):
    """Adjust an incident's priority (1 = highest) or severity when ``when`` holds."""

    when: When = Field(default_factory=When)
    set: int | None = Field(None, ge=1, le=5)
    raise_: int | None = Field(None, alias="raise", ge=1, le=4)
    lower: int | None = Field(None, ge=1, le=4)
    severity: Literal["critical", "major", "minor", "warning", "indeterminate"] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def alarm_parts(self) -> list[tuple[str, Mapping[str, Condition]]]:
        return [("root", self.when.root)]

    def scoped(self, scope: Mapping[str, Condition]) -> Self:
        when = self.when.model_copy(update={"root": _inherit(self.when.root, scope)})
        return self.model_copy(update={"when": when})

    @model_validator(mode="after")
    def _one(self) -> PriorityOverride:
        given = [k for k in ("set", "raise_", "lower") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError("give at most one of set, raise, lower")
        if not given and self.severity is None:
            raise ValueError("give one of set, raise, lower (priority steps) or severity")
        return self


class FormSchema(_Form):
    """The schema of a rule form added beside the built-in ones (``register_form``).

    ``alarm_matches`` names its fields that are alarm matches (``dict[str, Condition]``, a
    ``Match``): each is a part the correlator classifies alarms by (``ruleset/rule#<field>``, in
    ``Raised.parts``), inherits the ruleset's scope and is explained condition by condition.
    ``window`` and ``lead`` fields, when it has them, are read like the built-in forms'.
    """


_ADDED_FORMS: dict[str, type[FormSchema]] = {}


def register_form(name: str, schema: type[FormSchema]) -> None:
    """Add a rule form to the language: rules may then say ``<name>: {...}``, validated by
    ``schema``. The core runs it when its form is in the pipeline's registry
    (``engine.core.forms.registry``). ``unregister_form`` takes it back (tests)."""
    if name in FORMS or name in Rule.model_fields or not _NAME.match(name) or "-" in name or "." in name:
        raise ValueError(f"{name!r} cannot name a rule form (a built-in name, a rule field or not a-z0-9_)")
    if name in _ADDED_FORMS and _ADDED_FORMS[name] is not schema:
        raise ValueError(f"rule form {name!r} is already registered with another schema")
    _ADDED_FORMS[name] = schema


def unregister_form(name: str) -> None:
    _ADDED_FORMS.pop(name, None)


def rule_forms() -> tuple[str, ...]:
    """Every rule form the language knows: the built-in ones, then the registered ones."""
    return (*FORMS, *_ADDED_FORMS)


class AddedForm(BaseModel):
    """The spec of a rule of a registered form (``register_form``), under ``Rule.added``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    form: str
    spec: Any

    @model_validator(mode="after")
    def _spec(self) -> AddedForm:
        schema = _ADDED_FORMS.get(self.form)
        if schema is None:
            raise ValueError(f"unknown rule form {self.form!r}")
        if not isinstance(self.spec, schema):
            object.__setattr__(self, "spec", schema.model_validate(self.spec))
        return self


_ADDED = "added"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    enabled: bool = True
    correlate: Correlate | None = None
    group: Group | None = None
    inhibit: Inhibit | None = None
    threshold: Threshold | None = None
    pair: Pair | None = None
    kpi_threshold: KpiThreshold | None = None
    maintenance: Maintenance | None = None
    priority: PriorityOverride | None = None
    added: AddedForm | None = None  # a registered form's rule (``register_form``), never written as such

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                "a rule name is 1-63 chars of a-z, 0-9, '_', '.', '-', starting with a letter or digit"
            )
        return v

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            if _ADDED in data:
                raise ValueError(f"unknown field {_ADDED!r}")
            known = rule_forms()
            forms = [f for f in known if f in data]
            if len(forms) != 1:
                what = f"got {', '.join(forms)}" if forms else "got none"
                raise ValueError(f"a rule has exactly one form ({', '.join(known)}); {what}")
            if forms[0] in _ADDED_FORMS:
                name = forms[0]
                raw = data[name]
                data = {k: v for k, v in data.items() if k != name}
                data[_ADDED] = {"form": name, "spec": raw}
        return data

    @property
    def form(self) -> str:
        if self.added is not None:
            return self.added.form
        return next(f for f in FORMS if getattr(self, f) is not None)

    @property
    def spec(self) -> BaseModel:
        if self.added is not None:
            added: BaseModel = self.added.spec
            return added
        spec: BaseModel = getattr(self, self.form)
        return spec


def _scope_match(raw: Any) -> dict[str, Condition]:
    for field in raw if isinstance(raw, dict) else ():
        if field in MATCH_FIELDS and field not in SCOPE_FIELDS:
            raise ValueError(
                f"{field!r} cannot scope a ruleset: a scope is about where in the network "
                f"(known: {', '.join(SCOPE_FIELDS)})"
            )
        if field not in SCOPE_FIELDS:
            raise ValueError(unknown_field(field, SCOPE_FIELDS))
    return _match(raw)


ScopeMatch = Annotated[dict[str, Condition], BeforeValidator(_scope_match)]


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window: RuleDuration = 300.0
    lead: RuleDuration = 30.0
    # Where in the network the ruleset applies: a match on elements that every rule inherits (a
    # rule's own condition on the same field wins). See ``Ruleset._apply_scope``.
    scope: ScopeMatch = Field(default_factory=dict)


_DUPLICATE = "duplicate_rule_name"


class Ruleset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    defaults: Defaults = Field(default_factory=Defaults)
    rules: list[Rule]
    source: str = "<inline>"
    _locator: Locator | None = PrivateAttr(None)  # lines of the YAML document, when loaded from one

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("a ruleset name is 1-63 chars of a-z, 0-9, '_', '.', '-'")
        return v

    @model_validator(mode="after")
    def _whole(self) -> Ruleset:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                # `ruleset_from_data` reports duplicates itself, with their paths, even when other
                # fields fail (when this validator does not run); this keeps the model honest
                raise PydanticCustomError(_DUPLICATE, "duplicate rule name {name!r}", {"name": rule.name})
            seen.add(rule.name)
        if not self.rules:
            raise ValueError("a ruleset needs at least one rule")
        if self.defaults.scope:
            # frozen model: the scoped rules replace the parsed ones once, during validation
            object.__setattr__(self, "rules", [scoped(r, self.defaults.scope) for r in self.rules])
        return self

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path`` (``("rules", 3, "name")``) in the file, or of its nearest ancestor;
        ``None`` when the ruleset was not read from YAML."""
        return self._locator.line(path) if self._locator is not None else None

    def window(self, rule: Rule) -> float:
        w = getattr(rule.spec, "window", None)
        return float(w) if w is not None else self.defaults.window

    def lead(self, rule: Rule) -> float:
        lead = getattr(rule.spec, "lead", None)
        return float(lead) if lead is not None else self.defaults.lead


def _inherit(match: Mapping[str, Condition], scope: Mapping[str, Condition]) -> dict[str, Condition]:
    return {**scope, **match}  # the rule's own condition on a field wins over the ruleset's


def scoped(rule: Rule, scope: Mapping[str, Condition]) -> Rule:
    """``rule`` with the ruleset's scope merged into each of its alarm matches.

    Every alarm match inherits the scope's conditions on the fields it does not name itself:
    correlate ``root`` and ``symptom``, group ``match``, inhibit ``source`` and ``target``, threshold
    ``match``, pair ``first`` and a matching ``second``, priority ``when.root``. ``kpi_threshold`` and
    ``maintenance`` match elements, not alarms: they read the scope from ``Ruleset.defaults.scope``
    through ``element_in_scope`` (the compiled rule carries it).
    """
    spec = rule.spec
    new = spec.scoped(scope) if isinstance(spec, FormSpec) else spec  # each form's spec knows its matches
    if new is spec:
        return rule
    if rule.added is not None:
        return rule.model_copy(update={_ADDED: rule.added.model_copy(update={"spec": new})})
    return rule.model_copy(update={rule.form: new})


def element_in_scope(
    scope: Mapping[str, Condition], ne_id: str, attrs: Mapping[str, str | None], services: Iterable[str]
) -> bool:
    """Whether an element is in a ruleset's scope, with the semantics durable gives alarm matches.

    ``attrs`` holds ``element_type``, ``site`` and ``region``; an absent one compares as the empty
    string (it equals nothing, ``not`` holds, a regex is searched in ""). ``service_type`` holds when
    a service type whose paths cross the element is among the values (``not``: none of them is).
    """
    for field, cond in scope.items():
        if field == "service_type":
            have = set(services)
            if cond.any_of and not have & {str(v) for v in cond.any_of}:
                return False
            if cond.none_of and have & {str(v) for v in cond.none_of}:
                return False
            continue
        value = ne_id if field == "ne_id" else (attrs.get(field) or "")
        if cond.any_of and value not in {str(v) for v in cond.any_of}:
            return False
        if cond.none_of and value in {str(v) for v in cond.none_of}:
            return False
        if cond.regex is not None and not linear_regex(cond.regex).search(value):
            return False
    return True


def parse_ruleset(text: str, source: str) -> Ruleset:
    data, locator = load_document(text, source, RulesetError)
    return ruleset_from_data(data, source, locator)


def load_ruleset_file(path: str | Path) -> Ruleset:
    """A ruleset from a YAML file: unreadable, not UTF-8, malformed or invalid is a ``RulesetError``."""
    data, locator = load_file(path, RulesetError)
    return ruleset_from_data(data, str(path), locator)


def ruleset_from_data(data: Any, source: str, locator: Locator | None = None) -> Ruleset:
    """Validate a parsed ruleset. Every error of the document is found: the first is raised, with
    the others, in line order, in its ``more`` (``engine rules check`` lists them all)."""
    if not isinstance(data, Mapping):
        raise RulesetError(source, "", f"a ruleset is a mapping with name and rules, got {type_name(data)}")
    errors = _duplicate_rules(data, source, locator)
    try:
        ruleset = Ruleset.model_validate({**data, "source": source})
    except ValidationError as exc:
        errors.extend(
            _translate(err, data, source, locator)
            for err in exc.errors(include_url=False)
            if err["type"] != _DUPLICATE  # already in `errors`, with the rule's path
        )
    if errors:
        errors.sort(key=lambda e: e.line or 0)
        first = errors[0]
        first.more = errors[1:]
        raise first from None
    ruleset._locator = locator
    return ruleset


def _duplicate_rules(data: Mapping[str, Any], source: str, locator: Locator | None) -> list[RulesetError]:
    """A rule name used twice, at the second rule's name (checked on the raw document, so that it is
    reported with every other error of the file)."""
    rules = data.get("rules")
    first: dict[str, int] = {}
    out: list[RulesetError] = []
    for i, raw in enumerate(rules if isinstance(rules, list) else ()):
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if not isinstance(name, str):
            continue
        if name not in first:
            first[name] = i
            continue
        j = first[name]
        other = locator.line(("rules", j, "name")) if locator else None
        also = f"rules[{j}], line {other}" if other is not None else f"rules[{j}]"
        line = locator.line(("rules", i, "name")) if locator else None
        reason = f"duplicate rule name {name!r} (also {also})"
        out.append(RulesetError(source, f"rules[{i}].name", reason, line=line, rule=name))
    return out


def _translate(
    err: Mapping[str, Any], data: Mapping[str, Any], source: str, locator: Locator | None
) -> RulesetError:
    loc = tuple(err["loc"])
    rule: str | None = None
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = data.get("rules")
        if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], Mapping):
            name = rules[loc[1]].get("name")
            rule = name if isinstance(name, str) else None
            if len(loc) >= 3 and loc[2] == _ADDED:  # a registered form's errors, at its own key
                form = next((f for f in _ADDED_FORMS if f in rules[loc[1]]), _ADDED)
                loc = (*loc[:2], form, *loc[3:])
    line = locator.line(loc) if locator else None
    return RulesetError(source, dotted(loc), _reason(err), line=line, rule=rule)


def _reason(err: Mapping[str, Any]) -> str:
    """``engine.model.wording``'s words, with the rule list and a rule named as such."""
    kind = err["type"]
    if kind in EXPECTED and tuple(err["loc"]) == ("rules",):
        return f"expected a list of rules, got {type_name(err.get('input'))}"
    if kind in EXPECTED and (err.get("ctx") or {}).get("class_name") == "Rule":
        return f"expected a mapping (a rule), got {type_name(err.get('input'))}"
    return reason(err, Ruleset)


DEFAULT_RULESET = Path(__file__).resolve().parents[1] / "data" / "default-ruleset.yaml"
FALLBACK_RULESET = Path(__file__).resolve().parents[1] / "data" / "topology-cluster-ruleset.yaml"
"""Clustering by time and topology, loaded after the default ruleset when no rulesets are given."""
SERVICE_QUALITY_RULESET = Path(__file__).resolve().parents[1] / "data" / "service-quality-ruleset.yaml"
"""The engine's own ``service-quality`` ruleset, added after the operator's when inference is on."""


def builtin_rulesets(*, inference: bool) -> list[Ruleset]:
    """Rulesets the engine adds after the operator's: with inference on, ``service-quality`` (an
    inferred degradation is the root of the KQI and KPI breaches below it). Read once per process,
    so building a pipeline reads no file."""
    return [_service_quality_ruleset()] if inference else []


@functools.cache
def _service_quality_ruleset() -> Ruleset:
    return load_ruleset_file(SERVICE_QUALITY_RULESET)


def fallback_last(rulesets: Sequence[Ruleset]) -> list[Ruleset]:
    """The rulesets in order, the topology-cluster fallback (by its file) moved after all others, the
    engine's built-in ones included: whatever else could explain an alarm wins over it."""
    fallback = FALLBACK_RULESET.resolve()
    return sorted(rulesets, key=lambda rs: Path(rs.source).resolve() == fallback)


def load_rulesets(paths: Sequence[str | Path] | None) -> list[Ruleset]:
    """Rulesets from files and directories (``*.yaml``/``*.yml``, sorted); when none, the built-in
    default: the default ruleset, then the topology-cluster fallback."""
    if not paths:
        return [load_ruleset_file(DEFAULT_RULESET), load_ruleset_file(FALLBACK_RULESET)]
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
