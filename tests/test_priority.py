"""The priority model (``engine.core.priority``): exact scores, bands, breakdown, monotonicity, bounds, and
the validation of the ``priority`` settings section."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pytest

from engine.core.priority import PriorityInput, assess, explain
from engine.core.settings import PrioritySettings, core_settings_from_data
from engine.errors import ConfigError
from engine.model.topology import DEFAULT_TIERS

DEFAULT = PrioritySettings()
STATES = ("at_risk", "degraded", "outage")  # from least to most severe
SEVERITIES = ("indeterminate", "warning", "minor", "major", "critical")  # from least to most severe
TIERS = ("bronze", "silver", "gold", "platinum")  # from lowest to highest weight


def _input(state: str, customers: Mapping[str, int], criticality: int, severity: str) -> PriorityInput:
    return PriorityInput(
        state=state,
        customers_by_tier=dict(customers),
        tier_weights=DEFAULT_TIERS,
        max_criticality=criticality,
        severity=severity,
    )


# --- the documented model, by hand -----------------------------------------------------------------

# Default weights: state 0.25, customers 0.45, criticality 0.15, severity 0.15; reference_impact 10,000,
# so the customer component is C = log10(1 + U) / log10(10001) with log10(10001) = 4.0000434.
HAND_COMPUTED = [
    pytest.param(
        _input("outage", {"bronze": 1000}, 5, "critical"),
        # S = 1.0, U = 1000 × 1 = 1000, C = log10(1001) / log10(10001) = 3.0004341 / 4.0000434 = 0.7501004
        # K = 5/5 = 1, V = 1.0
        # 100 × (0.25×1 + 0.45×1×0.7501004 + 0.15×1 + 0.15×1) = 25 + 33.7545 + 15 + 15 = 88.7545 → 88.8
        88.8,
        1,
        id="outage-1000-bronze-crit5-critical",
    ),
    pytest.param(
        _input("at_risk", {"platinum": 10}, 3, "major"),
        # S = 0.3, U = 10 × 8 = 80, C = log10(81) / 4.0000434 = 1.9084850 / 4.0000434 = 0.4771161
        # K = 3/5 = 0.6, V = 0.75
        # 25×0.3 + 45×0.3×0.4771161 + 15×0.6 + 15×0.75 = 7.5 + 6.4411 + 9 + 11.25 = 34.1911 → 34.2 (P4)
        34.2,
        4,
        id="at_risk-10-platinum-crit3-major",
    ),
    pytest.param(
        _input("degraded", {"gold": 25, "silver": 50}, 3, "minor"),
        # S = 0.6, U = 25×4 + 50×2 = 200, C = log10(201) / 4.0000434 = 2.3031961 / 4.0000434 = 0.5757928
        # K = 0.6, V = 0.5
        # 25×0.6 + 45×0.6×0.5757928 + 15×0.6 + 15×0.5 = 15 + 15.5464 + 9 + 7.5 = 47.0464 → 47.0 (P3)
        47.0,
        3,
        id="degraded-25-gold-50-silver-crit3-minor",
    ),
    pytest.param(
        _input("outage", {"platinum": 10000}, 5, "critical"),
        # U = 80,000 > U_ref: C is capped at 1 → 25 + 45 + 15 + 15 = 100.0
        100.0,
        1,
        id="saturated-customers-is-100",
    ),
    pytest.param(
        _input("at_risk", {}, 1, "minor"),
        # S = 0.3, no customers (C = log10(1) / … = 0), K = 1/5 = 0.2, V = 0.5
        # 25×0.3 + 0 + 15×0.2 + 15×0.5 = 7.5 + 0 + 3 + 7.5 = 18.0 (P5: below 20)
        18.0,
        5,
        id="at_risk-no-customers-crit1-minor",
    ),
]


@pytest.mark.parametrize(("inp", "score", "priority"), HAND_COMPUTED)
def test_hand_computed_scores(inp: PriorityInput, score: float, priority: int) -> None:
    """The score follows the documented formula exactly (rounded to 0.1) and falls in the right band."""
    p = assess(inp, DEFAULT)
    assert (p.score, p.priority) == (score, priority)


def test_breakdown_carries_every_component_and_its_points() -> None:
    """The breakdown has one entry per component with its value, factor and points; points add up to
    the score (before rounding to 0.1), and ``explain`` names them all."""
    p = assess(_input("outage", {"bronze": 1000}, 5, "critical"), DEFAULT)
    b = p.breakdown
    assert set(b) == {"state", "customers", "criticality", "severity"}
    assert b["state"] == {"value": "outage", "factor": 1.0, "points": 25.0}
    assert set(b["customers"]) == {"weighted", "factor", "points"}
    assert b["customers"]["weighted"] == 1000
    assert b["customers"]["factor"] == 0.7501
    assert b["customers"]["points"] == 33.75
    assert b["criticality"] == {"value": 5, "points": 15.0}
    assert b["severity"] == {"value": "critical", "factor": 1.0, "points": 15.0}
    total = sum(float(part["points"]) for part in b.values())
    assert abs(total - p.score) <= 0.05 + 4 * 0.005
    text = explain(p)
    assert text.startswith("priority P1 (score 88.8)")
    for fragment in ("state outage", "tier-weighted 1000", "service criticality 5", "severity critical"):
        assert fragment in text


def _criticality_only(bands: tuple[float, float, float, float]) -> PrioritySettings:
    """All weight on criticality: score = 100 × K = 20 × max_criticality, exactly 0, 20, …, 100."""
    return PrioritySettings(
        weights={"state": 0.0, "customers": 0.0, "criticality": 1.0, "severity": 0.0}, bands=bands
    )


@pytest.mark.parametrize(
    ("criticality", "bands", "score", "priority"),
    [
        pytest.param(5, (80.0, 60.0, 40.0, 20.0), 100.0, 1, id="100-is-P1"),
        pytest.param(4, (80.0, 60.0, 40.0, 20.0), 80.0, 1, id="80-is-P1"),
        pytest.param(3, (80.0, 60.0, 40.0, 20.0), 60.0, 2, id="60-is-P2"),
        pytest.param(2, (80.0, 60.0, 40.0, 20.0), 40.0, 3, id="40-is-P3"),
        pytest.param(1, (80.0, 60.0, 40.0, 20.0), 20.0, 4, id="20-is-P4"),
        pytest.param(0, (80.0, 60.0, 40.0, 20.0), 0.0, 5, id="0-is-P5"),
        pytest.param(4, (80.1, 60.1, 40.1, 20.1), 80.0, 2, id="just-below-P1-is-P2"),
        pytest.param(3, (80.1, 60.1, 40.1, 20.1), 60.0, 3, id="just-below-P2-is-P3"),
        pytest.param(2, (80.1, 60.1, 40.1, 20.1), 40.0, 4, id="just-below-P3-is-P4"),
        pytest.param(1, (80.1, 60.1, 40.1, 20.1), 20.0, 5, id="just-below-P4-is-P5"),
        pytest.param(3, (90.0, 70.0, 50.0, 30.0), 60.0, 3, id="configured-bands"),
    ],
)
def test_bands_are_inclusive_lower_bounds(
    criticality: int, bands: tuple[float, float, float, float], score: float, priority: int
) -> None:
    """P1 ≥ bands[0], P2 ≥ bands[1], P3 ≥ bands[2], P4 ≥ bands[3], else P5: a score equal to a
    threshold gets that band, a score just below it the next one."""
    p = assess(_input("outage", {}, criticality, "critical"), _criticality_only(bands))
    assert (p.score, p.priority) == (score, priority)


def test_default_bands_are_the_documented_ones() -> None:
    """The documented defaults: P1 ≥ 80, P2 ≥ 60, P3 ≥ 40, P4 ≥ 20."""
    assert DEFAULT.bands == (80.0, 60.0, 40.0, 20.0)


# --- monotonicity: a seeded randomized property ----------------------------------------------------


def _random_input(rng: random.Random) -> PriorityInput:
    customers: dict[str, int] = {}
    for tier in TIERS:
        if rng.random() < 0.6:
            customers[tier] = rng.choice((0, rng.randint(1, 20), rng.randint(1, 2000), rng.randint(1, 60000)))
    return _input(rng.choice(STATES), customers, rng.randint(0, 5), rng.choice(SEVERITIES))


def _random_settings(rng: random.Random) -> PrioritySettings:
    """Any valid settings: random non-negative weights summing to 1, ordered random factors."""
    raw = [rng.choice((0.0, rng.random())) for _ in range(4)]
    if sum(raw) == 0.0:
        raw[rng.randrange(4)] = 1.0
    total = sum(raw)
    weights = dict(
        zip(("state", "customers", "criticality", "severity"), (w / total for w in raw), strict=True)
    )
    states = sorted(rng.random() for _ in STATES)
    severities = sorted(rng.random() for _ in SEVERITIES)
    bands = sorted((rng.uniform(0.0, 100.0) for _ in range(4)), reverse=True)
    return PrioritySettings(
        weights=weights,
        state_factor=dict(zip(STATES, states, strict=True)),
        severity_factor=dict(zip(SEVERITIES, severities, strict=True)),
        reference_impact=rng.choice((10000.0, rng.uniform(1.5, 100.0), rng.uniform(100.0, 1e6))),
        bands=(bands[0], bands[1], bands[2], bands[3]),
    )


def _more_customers(rng: random.Random, inp: PriorityInput) -> PriorityInput:
    customers = dict(inp.customers_by_tier)
    tier = rng.choice(TIERS)
    customers[tier] = customers.get(tier, 0) + rng.choice((1, rng.randint(1, 100), rng.randint(1, 50000)))
    return replace(inp, customers_by_tier=customers)


def _higher_tiers(rng: random.Random, inp: PriorityInput) -> PriorityInput:
    """Move some customers from a lower tier that has any to a higher tier: the head count stays."""
    customers = dict(inp.customers_by_tier)
    lower = [i for i, tier in enumerate(TIERS[:-1]) if customers.get(tier, 0) > 0]
    if not lower:
        return inp
    low = rng.choice(lower)
    high = rng.randint(low + 1, len(TIERS) - 1)
    moved = rng.randint(1, customers[TIERS[low]])
    customers[TIERS[low]] -= moved
    customers[TIERS[high]] = customers.get(TIERS[high], 0) + moved
    return replace(inp, customers_by_tier=customers)


def _worse_state(rng: random.Random, inp: PriorityInput) -> PriorityInput:
    i = STATES.index(inp.state)
    return replace(inp, state=STATES[rng.randint(i, len(STATES) - 1)])


def _worse_severity(rng: random.Random, inp: PriorityInput) -> PriorityInput:
    i = SEVERITIES.index(inp.severity)
    return replace(inp, severity=SEVERITIES[rng.randint(i, len(SEVERITIES) - 1)])


def _higher_criticality(rng: random.Random, inp: PriorityInput) -> PriorityInput:
    return replace(inp, max_criticality=rng.randint(inp.max_criticality, 5))


def _all_at_once(rng: random.Random, inp: PriorityInput) -> PriorityInput:
    for change in rng.sample(CHANGES, rng.randint(1, len(CHANGES))):
        inp = change(rng, inp)
    return inp


Change = Callable[[random.Random, PriorityInput], PriorityInput]
CHANGES: list[Change] = [_more_customers, _higher_tiers, _worse_state, _worse_severity, _higher_criticality]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_more_customers, id="more-customers"),
        pytest.param(_higher_tiers, id="customers-move-to-higher-tiers"),
        pytest.param(_worse_state, id="worse-state"),
        pytest.param(_worse_severity, id="worse-severity"),
        pytest.param(_higher_criticality, id="higher-criticality"),
        pytest.param(_all_at_once, id="several-at-once"),
    ],
)
@pytest.mark.parametrize("random_settings", [False, True], ids=["default-settings", "random-settings"])
def test_a_worse_situation_never_lowers_the_score(change: Change, random_settings: bool) -> None:
    """More customers, customers in higher tiers, outage instead of degraded instead of at_risk, a worse
    severity, a higher criticality (and any mix of them) never lower the score nor raise the priority
    number, under the default settings and under any valid settings. 2,500 seeded random cases each."""
    rng = random.Random(f"{change.__name__}-{random_settings}")
    raised = 0
    for case in range(2500):
        settings = _random_settings(rng) if random_settings else DEFAULT
        before = _random_input(rng)
        if change is _higher_tiers:  # give it customers in a tier below platinum to move up
            bronze = before.customers_by_tier.get("bronze", 0) + rng.randint(1, 5000)
            before = replace(before, customers_by_tier={**before.customers_by_tier, "bronze": bronze})
        after = change(rng, before)
        p0, p1 = assess(before, settings), assess(after, settings)
        assert p1.score >= p0.score, (case, settings, before, after, p0, p1)
        assert p1.priority <= p0.priority, (case, settings, before, after, p0, p1)
        raised += p1.score > p0.score
    assert raised > 250  # the property is not vacuous: many changes did raise the score


def test_score_and_priority_stay_in_range() -> None:
    """Whatever the input and the (valid) settings, 0 ≤ score ≤ 100 and 1 ≤ priority ≤ 5; the extremes
    are reached: nothing affected at all scores 0, everything at its worst scores 100."""
    rng = random.Random(20260101)
    for case in range(3000):
        settings = _random_settings(rng) if case % 2 else DEFAULT
        inp = _random_input(rng)
        if case % 7 == 0:
            inp = replace(inp, max_criticality=rng.choice((-3, 0, 5, 9)))  # out of range is clamped to 0..5
        p = assess(inp, settings)
        assert 0.0 <= p.score <= 100.0, (case, settings, inp, p)
        assert p.priority in (1, 2, 3, 4, 5), (case, settings, inp, p)
        assert math.isfinite(p.score)
    nothing = PrioritySettings(
        state_factor={"outage": 1.0, "degraded": 0.5, "at_risk": 0.0},
        severity_factor=dict.fromkeys(SEVERITIES, 0.0),
    )
    least = assess(_input("at_risk", {}, 0, "warning"), nothing)
    assert (least.score, least.priority) == (0.0, 5)
    worst = assess(_input("outage", {"platinum": 10**9}, 5, "critical"), DEFAULT)
    assert (worst.score, worst.priority) == (100.0, 1)


# --- validation of the priority section ------------------------------------------------------------

GOOD_WEIGHTS = {"state": 0.25, "customers": 0.45, "criticality": 0.15, "severity": 0.15}
GOOD_SEVERITY = {"critical": 1.0, "major": 0.75, "minor": 0.5, "warning": 0.25, "indeterminate": 0.25}


@pytest.mark.parametrize(
    ("priority", "location", "reason"),
    [
        pytest.param(
            {"weights": {"state": 0.5, "customers": 0.5, "criticality": 0.5, "severity": 0.0}},
            "priority",
            "weights must be non-negative and sum to 1",
            id="weights-sum-above-1",
        ),
        pytest.param(
            {"weights": {"state": 0.1, "customers": 0.1, "criticality": 0.1, "severity": 0.1}},
            "priority",
            "weights must be non-negative and sum to 1",
            id="weights-sum-below-1",
        ),
        pytest.param(
            {"weights": {"state": -0.1, "customers": 0.7, "criticality": 0.25, "severity": 0.15}},
            "priority",
            "weights must be non-negative and sum to 1",
            id="negative-weight",
        ),
        pytest.param(
            {"weights": {"state": 0.5, "customers": 0.5}},
            "priority",
            "weights needs exactly ['criticality', 'customers', 'severity', 'state']",
            id="missing-weight",
        ),
        pytest.param(
            {"weights": {**GOOD_WEIGHTS, "colour": 0.0}},
            "priority",
            "weights needs exactly",
            id="unknown-weight",
        ),
        pytest.param(
            {"state_factor": {"outage": 0.5, "degraded": 0.6, "at_risk": 0.3}},
            "priority",
            "state_factor must satisfy 0 ≤ at_risk ≤ degraded ≤ outage ≤ 1",
            id="degraded-above-outage",
        ),
        pytest.param(
            {"state_factor": {"outage": 1.0, "degraded": 0.2, "at_risk": 0.3}},
            "priority",
            "state_factor must satisfy 0 ≤ at_risk ≤ degraded ≤ outage ≤ 1",
            id="at_risk-above-degraded",
        ),
        pytest.param(
            {"state_factor": {"outage": 1.5, "degraded": 0.6, "at_risk": 0.3}},
            "priority",
            "state_factor must satisfy 0 ≤ at_risk ≤ degraded ≤ outage ≤ 1",
            id="state-factor-above-1",
        ),
        pytest.param(
            {"state_factor": {"outage": 1.0, "degraded": 0.6}},
            "priority",
            "state_factor needs outage, degraded and at_risk",
            id="state-factor-missing-state",
        ),
        pytest.param(
            {"severity_factor": {**GOOD_SEVERITY, "critical": 0.5}},
            "priority",
            "severity_factor must be within 0..1 and not decrease with severity",
            id="critical-below-major",
        ),
        pytest.param(
            {"severity_factor": {**GOOD_SEVERITY, "indeterminate": 0.3}},
            "priority",
            "severity_factor must be within 0..1 and not decrease with severity",
            id="indeterminate-above-warning",
        ),
        pytest.param(
            {"severity_factor": {**GOOD_SEVERITY, "critical": 2.0}},
            "priority",
            "severity_factor must be within 0..1",
            id="severity-factor-above-1",
        ),
        pytest.param(
            {"severity_factor": {"critical": 1.0, "major": 0.5}},
            "priority",
            "severity_factor needs indeterminate, warning, minor, major, critical",
            id="severity-factor-missing",
        ),
        pytest.param(
            {"bands": [60, 80, 40, 20]},
            "priority",
            "bands must be strictly decreasing scores within 0..100",
            id="bands-P2-above-P1",
        ),
        pytest.param(
            {"bands": [20, 40, 60, 80]},
            "priority",
            "bands must be strictly decreasing scores within 0..100",
            id="bands-increasing",
        ),
        pytest.param({"bands": [80, 60, 40]}, "priority.bands[3]", "field required", id="three-bands"),
        pytest.param(
            {"reference_impact": 1},
            "priority.reference_impact",
            "must be more than 1, got 1",
            id="reference-impact-not-above-1",
        ),
    ],
)
def test_invalid_priority_settings_are_refused_with_a_clear_error(
    priority: dict[str, Any], location: str, reason: str
) -> None:
    """Each invalid priority section raises ConfigError naming the file, the section and the reason."""
    with pytest.raises(ConfigError) as info:
        core_settings_from_data({"priority": priority}, "cfg.yaml")
    err = info.value
    assert err.source == "cfg.yaml"
    assert err.location == location
    assert reason in err.reason
    assert str(err).startswith(f"cfg.yaml: {location}: ")


@pytest.mark.parametrize(
    "priority",
    [
        pytest.param(
            {"weights": {**GOOD_WEIGHTS, "state": math.nan}},
            id="nan-weight",
        ),
        pytest.param({"bands": [math.nan, 60, 40, 20]}, id="nan-P1-band"),
    ],
)
def test_not_a_number_in_the_priority_section_is_refused(priority: dict[str, Any]) -> None:
    """A NaN (YAML ``.nan``) weight or band is not a number the model can use: refused like any other
    invalid value.

    ENGINE BUG (engine/core/settings.py, PrioritySettings._check, lines 144 and 157): every comparison with
    NaN is false, so ``w < 0`` and ``abs(sum - 1) > 1e-9`` both pass and the bands compare as sorted.
    Accepted today; with a NaN weight every score is ``min(100.0, nan)`` = 100.0, so every incident is
    P1 whatever its impact; with a NaN P1 band no incident can be P1."""
    with pytest.raises(ConfigError) as info:
        core_settings_from_data({"priority": priority}, "cfg.yaml")
    assert info.value.location.startswith("priority")


def test_valid_priority_section_is_taken() -> None:
    """A valid priority section replaces the defaults."""
    core = core_settings_from_data(
        {
            "priority": {
                "weights": {"state": 0.4, "customers": 0.4, "criticality": 0.1, "severity": 0.1},
                "bands": [90, 70, 50, 30],
                "reference_impact": 500,
            }
        },
        "cfg.yaml",
    )
    assert core.priority.weights["state"] == 0.4
    assert core.priority.bands == (90.0, 70.0, 50.0, 30.0)
    assert core.priority.reference_impact == 500.0
