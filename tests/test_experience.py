"""Customer experience and SLAs (``engine.core.experience``): the CEI by hand, health caps, bands, the SLA
tiers, downtime over the sliding period, breaches (exact instants, once per episode), time to breach,
the urgency mapping and the tracker's dump/load round trip."""

from __future__ import annotations

import ast
import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import engine.core.experience
from engine.core.experience import (
    Breach,
    ExperienceSettings,
    KqiScore,
    KqiStatus,
    SlaSettings,
    SlaTier,
    SlaTracker,
    UrgencySettings,
    breach_urgency,
    customer_down,
    customer_experience,
    experience_band,
    service_experience,
)
from engine.core.impact import Health

EXP = ExperienceSettings()
SLA = SlaSettings()
T0 = 1767225600.0  # 2026-01-01T00:00:00Z
DAY = 86400.0
P = 30 * DAY  # the default period: 2,592,000 s


def kqi(status: KqiStatus, weight: float = 1.0, name: str = "k") -> KqiScore:
    return KqiScore(name=name, category="integrity", status=status, weight=weight)


# --- CEI: one service -------------------------------------------------------------------------------


def test_service_weighted_mean_of_mixed_statuses() -> None:
    kqis = [
        KqiScore("call setup success", "accessibility", "met", 1.0),
        KqiScore("call drop rate", "retainability", "at_risk", 1.0),
        KqiScore("MOS", "integrity", "violated", 2.0, value=3.2, target=3.8),
    ]
    # (1×100 + 1×60 + 2×0) / (1 + 1 + 2) = 160 / 4 = 40
    assert service_experience(kqis, Health.OK, EXP) == 40.0


def test_unknown_and_zero_weight_kqis_are_excluded() -> None:
    # unknown (weight 5) and a zero-weight violated KQI left out: (100 + 0) / 2 = 50, not (100+0+0)/8
    kqis = [kqi("met"), kqi("unknown", 5.0), kqi("violated"), kqi("violated", 0.0)]
    assert service_experience(kqis, Health.OK, EXP) == 50.0
    # nothing known: 100 (nothing to complain about), as with no KQI at all
    assert service_experience([kqi("unknown"), kqi("unknown", 3.0)], Health.OK, EXP) == 100.0
    assert service_experience([], Health.OK, EXP) == 100.0


@pytest.mark.parametrize(
    ("kqis", "health", "expected"),
    [
        ([kqi("met")], Health.OK, 100.0),
        ([kqi("met")], Health.AT_RISK, 100.0),  # no cap by default
        ([kqi("met")], Health.DEGRADED, 50.0),  # capped at 50
        ([kqi("met")], Health.DOWN, 0.0),  # DOWN → 0
        ([kqi("violated"), kqi("at_risk")], Health.DEGRADED, 30.0),  # (0 + 60) / 2 = 30 < 50: a ceiling
        ([], Health.DEGRADED, 50.0),  # no KQI known: 100, capped
        ([], Health.DOWN, 0.0),
        ([kqi("at_risk")], Health.AT_RISK, 60.0),
    ],
)
def test_health_caps(kqis: Sequence[KqiScore], health: Health, expected: float) -> None:
    assert service_experience(kqis, health, EXP) == expected


def test_caps_are_settings() -> None:
    s = ExperienceSettings(down_cap=10.0, degraded_cap=40.0, at_risk_cap=90.0)
    assert service_experience([], Health.DOWN, s) == 10.0
    assert service_experience([], Health.DEGRADED, s) == 40.0
    assert service_experience([], Health.AT_RISK, s) == 90.0
    assert service_experience([], Health.OK, s) == 100.0


def test_worse_status_or_health_never_raises_the_score() -> None:
    rng = random.Random(7)
    order: list[KqiStatus] = ["violated", "at_risk", "met"]
    for _ in range(500):
        kqis = [
            kqi(rng.choice([*order, "unknown"]), rng.choice([0.0, 0.5, 1.0, 2.0]))
            for _ in range(rng.randint(1, 5))
        ]
        health = Health(rng.randint(0, 3))
        base = service_experience(kqis, health, EXP)
        assert 0.0 <= base <= 100.0
        i = rng.randrange(len(kqis))
        if kqis[i].status in ("at_risk", "met"):
            worse = [*kqis]
            worse[i] = kqi(order[order.index(kqis[i].status) - 1], kqis[i].weight)
            assert service_experience(worse, health, EXP) <= base
        if health < Health.DOWN:
            assert service_experience(kqis, Health(health + 1), EXP) <= base


# --- CEI: one customer ------------------------------------------------------------------------------

WORKED: Mapping[str, tuple[Sequence[KqiScore], Health]] = {
    # voice: (100 + 60 + 2×0) / 4 = 40, health OK → 40 (weight 1.0)
    "voice": (
        [
            KqiScore("call setup success", "accessibility", "met"),
            KqiScore("call drop rate", "retainability", "at_risk"),
            KqiScore("MOS", "integrity", "violated", 2.0),
        ],
        Health.OK,
    ),
    # internet: (100 + 100) / 2 = 100 (latency unknown, excluded), DEGRADED → 50 (weight 1.0)
    "internet": (
        [
            KqiScore("throughput", "integrity", "met"),
            KqiScore("session availability", "availability", "met"),
            KqiScore("latency", "integrity", "unknown"),
        ],
        Health.DEGRADED,
    ),
    # iptv: no KQI, health AT_RISK (no cap) → 100 (weight 0.7)
    "iptv": ([], Health.AT_RISK),
}


def test_customer_worked_example() -> None:
    exp = customer_experience(WORKED, EXP)
    # (1.0×40 + 1.0×50 + 0.7×100) / (1.0 + 1.0 + 0.7) = 160 / 2.7 = 59.259… → 59.3, "poor" (40 ≤ · < 60)
    assert exp.index == 59.3
    assert exp.band == "poor"
    assert exp.services == {"internet": 50.0, "iptv": 100.0, "voice": 40.0}
    assert exp.worst_service == "voice"
    assert exp.at_risk == ("iptv",)
    assert json.loads(json.dumps(exp.to_record())) == {
        "index": 59.3,
        "band": "poor",
        "services": {"internet": 50.0, "iptv": 100.0, "voice": 40.0},
        "worst_service": "voice",
        "at_risk": ["iptv"],
    }


def test_service_weights_are_settings() -> None:
    # iptv weighed like the others: (40 + 50 + 100) / 3 = 63.33… → 63.3, "fair"
    s = ExperienceSettings(service_weights={"iptv": 1.0})
    exp = customer_experience(WORKED, s)
    assert (exp.index, exp.band) == (63.3, "fair")
    # unlisted services take default_service_weight: voice 2, internet 2, iptv 1 → (80 + 100 + 100) / 5 = 56
    s = ExperienceSettings(service_weights={"iptv": 1.0}, default_service_weight=2.0)
    assert customer_experience(WORKED, s).index == 56.0


def test_customer_without_services() -> None:
    exp = customer_experience({}, EXP)
    assert (exp.index, exp.band, exp.worst_service, dict(exp.services)) == (100.0, "good", None, {})


def test_worst_service_ties() -> None:
    down: tuple[Sequence[KqiScore], Health] = ([], Health.DOWN)
    # voice and iptv both 0: voice weighs 1.0 against 0.7
    assert customer_experience({"iptv": down, "voice": down}, EXP).worst_service == "voice"
    # voice and internet both 0 and both weigh 1.0: by name
    assert customer_experience({"voice": down, "internet": down}, EXP).worst_service == "internet"


@pytest.mark.parametrize(
    ("index", "band"),
    [
        (100.0, "good"),
        (80.0, "good"),
        (79.9, "fair"),
        (60.0, "fair"),
        (59.9, "poor"),
        (40.0, "poor"),
        (39.9, "bad"),
        (0.0, "bad"),
    ],
)
def test_bands(index: float, band: str) -> None:
    assert experience_band(index, EXP) == band


def test_band_follows_the_rounded_index() -> None:
    s = ExperienceSettings(status_scores={"met": 79.96, "at_risk": 60.0, "violated": 0.0})
    exp = customer_experience({"voice": ([kqi("met")], Health.OK)}, s)
    assert (exp.index, exp.band) == (80.0, "good")  # 79.96 → 80.0, shown as 80.0 and "good"


@pytest.mark.parametrize(
    "data",
    [
        {"status_scores": {"met": 100.0, "at_risk": 60.0}},  # violated missing
        {"status_scores": {"met": 100.0, "at_risk": 60.0, "violated": 0.0, "unknown": 50.0}},
        {"status_scores": {"met": 50.0, "at_risk": 60.0, "violated": 0.0}},  # not monotonic
        {"status_scores": {"met": 120.0, "at_risk": 60.0, "violated": 0.0}},
        {"degraded_cap": 0.0, "down_cap": 10.0},
        {"at_risk_cap": 40.0},  # below degraded_cap 50
        {"service_weights": {"voice": 0.0}},
        {"default_service_weight": -1.0},
        {"bands": [60.0, 80.0, 40.0]},
        {"bands": [80.0, 60.0, 101.0]},
        {"nonsense": 1},
    ],
)
def test_experience_settings_are_validated(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ExperienceSettings.model_validate(data)


def test_kqi_score_is_validated() -> None:
    with pytest.raises(ValueError, match="status"):
        KqiScore("x", "integrity", "great")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight"):
        kqi("met", -1.0)
    with pytest.raises(ValueError, match="weight"):
        kqi("met", float("nan"))


def test_customer_down() -> None:
    assert customer_down([Health.OK, Health.DOWN])
    assert not customer_down([Health.DEGRADED, Health.AT_RISK, Health.OK])
    assert not customer_down([])


# --- SLA tiers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "target", "budget", "ttr", "mos"),
    [
        ("platinum", 0.9995, 1296.0, 7200.0, 4.0),  # 2,592,000 × 0.0005 = 1296 s (21.6 min)
        ("gold", 0.999, 2592.0, 14400.0, 3.8),  # × 0.001 = 2592 s (43.2 min)
        ("silver", 0.995, 12960.0, 28800.0, 3.6),  # × 0.005 = 12,960 s (3.6 h)
        ("bronze", 0.99, 25920.0, 86400.0, 3.1),  # × 0.01 = 25,920 s (7.2 h)
    ],
)
def test_default_tiers(tier: str, target: float, budget: float, ttr: float, mos: float) -> None:
    t = SLA.tiers[tier]
    assert (t.availability, t.period, t.budget, t.time_to_restore, t.mos_floor) == (
        target,
        P,
        budget,
        ttr,
        mos,
    )


def test_sla_settings_from_config_data() -> None:
    s = SlaSettings.model_validate(
        {
            "tiers": {"gold": {"availability": 0.999, "period": "7d", "time_to_restore": "4h"}},
            "urgency": {"urgent": "10m", "horizon": "2h"},
        }
    )
    gold = s.tiers["gold"]
    assert (gold.period, gold.budget, gold.time_to_restore, gold.mos_floor) == (
        604800.0,
        604.8,
        14400.0,
        None,
    )
    assert (s.urgency.urgent, s.urgency.horizon) == (600.0, 7200.0)
    for bad in (
        {"tiers": {"gold": {"availability": 1.5}}},
        {"tiers": {"gold": {"availability": 0.0}}},
        {"tiers": {"gold": {"availability": 0.99, "period": 0}}},
        {"tiers": {"gold": {"availability": 0.99, "mos_floor": 5.5}}},
        {"tiers": {"gold": {"availability": 0.99, "color": "gold"}}},
        {"urgency": {"urgent": "5h", "horizon": "4h"}},
    ):
        with pytest.raises(ValidationError):
            SlaSettings.model_validate(bad)


# --- SLA tracking ------------------------------------------------------------------------------------


def test_platinum_outage_time_to_breach_and_breaches() -> None:
    tr = SlaTracker(SLA)
    tr.update("c1", "platinum", False, T0)
    tr.update("c1", "platinum", True, T0 + 100)  # outage starts
    # 1000 s into it: budget left 1296 − 1000 = 296 s; time to restore left 7200 − 1000 = 6200 s → 296
    assert tr.time_to_breach("c1", "platinum", T0 + 1100) == 296.0
    st = tr.state("c1", "platinum", T0 + 1100)
    assert (st.downtime, st.budget, st.budget_left) == (1000.0, 1296.0, 296.0)
    assert st.availability == pytest.approx(1 - 1000 / P)  # 0.999614
    assert (st.down, st.outage_started, st.outage_duration) == (True, T0 + 100, 1000.0)
    assert (st.time_to_restore_left, st.time_to_breach) == (6200.0, 296.0)
    assert not st.availability_breached
    assert tr.breaches() == []  # queries record nothing

    # re-observed at T0 + 1400: 1300 s down > 1296 → breached at T0 + 100 + 1296 = T0 + 1396
    tr.update("c1", "platinum", True, T0 + 1400)
    assert tr.time_to_breach("c1", "platinum", T0 + 1400) == 0.0
    budget_detail = {"budget": 1296.0, "target": 0.9995, "period": P}
    first = Breach("c1", "platinum", "availability", T0 + 1396, budget_detail)
    assert tr.breaches() == [first]
    tr.update("c1", "platinum", True, T0 + 1500)
    assert tr.tick(T0 + 1600) == []
    assert tr.breaches() == [first]  # once per episode
    assert tr.state("c1", "platinum", T0 + 1600).availability_breached

    # the outage outlasts the 2 h time to restore: breached at T0 + 100 + 7200 = T0 + 7300, once
    tr.update("c1", "platinum", True, T0 + 8000)
    tr.update("c1", "platinum", False, T0 + 9000)
    ttr = Breach(
        "c1",
        "platinum",
        "time_to_restore",
        T0 + 7300,
        {"time_to_restore": 7200.0, "outage_started": T0 + 100},
    )
    assert tr.breaches() == [first, ttr]
    assert ttr.to_record() == {
        "subject": "c1",
        "tier": "platinum",
        "kind": "time_to_restore",
        "at": "2026-01-01T02:01:40.000Z",
        "detail": {"time_to_restore": 7200.0, "outage_started": "2026-01-01T00:01:40.000Z"},
    }
    st = tr.state("c1", "platinum", T0 + 9000)
    assert (st.down, st.downtime, st.time_to_breach, st.time_to_restore_left) == (False, 8900.0, None, None)
    assert st.availability_breached
    assert not st.time_to_restore_breached  # the outage is over


def test_breach_during_an_outage_is_dated_when_it_happened() -> None:
    tr = SlaTracker(SLA)
    tr.update("c1", "platinum", True, T0)
    tr.update("c1", "platinum", False, T0 + 2000)  # noticed only at the end: budget gone at T0 + 1296
    assert [(b.kind, b.at) for b in tr.breaches()] == [("availability", T0 + 1296)]


def test_time_to_breach_is_none_when_up_or_unknown() -> None:
    tr = SlaTracker(SLA)
    tr.update("c1", "gold", False, T0)
    assert tr.time_to_breach("c1", "gold", T0 + 10) is None  # up
    assert tr.time_to_breach("nobody", "gold", T0 + 10) is None  # never seen
    assert tr.time_to_breach("c1", "copper", T0 + 10) is None  # no SLA for the tier


def test_time_to_restore_can_come_first() -> None:
    s = SlaSettings(tiers={"gold": SlaTier(availability=0.99, time_to_restore=600.0)})
    tr = SlaTracker(s)
    tr.update("c1", "gold", True, T0)
    # budget 25,920 − 100 = 25,820 s; time to restore 600 − 100 = 500 s → 500
    assert tr.time_to_breach("c1", "gold", T0 + 100) == 500.0


def test_downtime_counts_from_the_first_update_assuming_up_before() -> None:
    tr = SlaTracker(SLA)
    tr.update("c1", "gold", True, T0)
    st = tr.state("c1", "gold", T0 + 100)
    # 100 s down over the full 30-day period (not over the 100 s observed): 1 − 100 / 2,592,000
    assert st.downtime == 100.0
    assert st.availability == 1 - 100 / P
    assert st.observed_since == T0
    never = tr.state("c2", "gold", T0 + 100)
    assert (never.availability, never.down, never.observed_since, never.time_to_breach) == (
        1.0,
        False,
        None,
        None,
    )


def test_old_outages_leave_the_sliding_period() -> None:
    tr = SlaTracker(SLA)
    tr.update("c1", "gold", False, T0)
    tr.update("c1", "gold", True, T0 + 100)
    tr.update("c1", "gold", False, T0 + 1100)  # a 1000 s outage
    assert tr.state("c1", "gold", T0 + DAY).downtime == 1000.0
    # window [T0 + 600, T0 + P + 600]: 500 s of the outage left in it
    st = tr.state("c1", "gold", T0 + P + 600)
    assert (st.downtime, st.availability) == (500.0, 1 - 500 / P)
    # window starts at T0 + 1100: the outage is out, and it is dropped by the next update
    assert tr.state("c1", "gold", T0 + P + 1100).availability == 1.0
    assert tr.dump()["subjects"]["c1"]["intervals"] == [[T0 + 100, T0 + 1100]]
    tr.update("c1", "gold", False, T0 + P + 1100)
    assert tr.dump()["subjects"]["c1"]["intervals"] == []


def test_downtime_sliding_out_during_an_outage_delays_the_breach() -> None:
    # gold: budget 2592 s. An old 2000 s outage [T0, T0 + 2000]; a new one from S = T0 + P − 200.
    # D(t) = 2000 + (t − S) up to S + 200; then the old one leaves as fast as the new one grows:
    # flat at 2200 until S + 2200; then t − S: it reaches 2592 at S + 2592 (not at S + 592).
    tr = SlaTracker(SLA)
    tr.update("c1", "gold", True, T0)
    tr.update("c1", "gold", False, T0 + 2000)
    s = T0 + P - 200
    tr.update("c1", "gold", True, s)
    # at S + 1000: D = 2200, so 392 s left as time to breach (errs early: the real breach is 1592 s away)
    assert tr.state("c1", "gold", s + 1000).downtime == pytest.approx(2200.0)
    assert tr.time_to_breach("c1", "gold", s + 1000) == pytest.approx(392.0)
    tr.update("c1", "gold", True, s + 3000)  # one call across every breakpoint
    [breach] = tr.breaches()
    assert breach.kind == "availability"
    assert breach.at == pytest.approx(s + 2592)


def test_a_new_availability_episode_after_the_budget_recovers() -> None:
    tr = SlaTracker(SLA)
    tr.update("c1", "gold", True, T0)
    tr.update("c1", "gold", False, T0 + 3000)  # 3000 s > 2592: breach at T0 + 2592
    tr.update("c1", "gold", True, T0 + 4000)  # still 3000 s in the period: the same episode
    tr.update("c1", "gold", False, T0 + 4010)
    assert [b.at for b in tr.breaches()] == [T0 + 2592]
    s = T0 + P + 5000  # both old outages are out of the period: the episode is over
    tr.update("c1", "gold", True, s)
    tr.update("c1", "gold", False, s + 2600)  # 2600 > 2592: a second breach at S + 2592
    # the first breach left the period with its outage: only the last period's are kept
    assert [b.at for b in tr.breaches()] == [s + 2592]


def test_breaches_older_than_the_period_are_forgotten() -> None:
    """A long run keeps a bounded list: breaches of the last (longest) period only."""
    tr = SlaTracker(SLA)
    for n in range(5):  # an outage longer than the time to restore every two periods
        start = T0 + 2 * n * P
        tr.update("c1", "gold", True, start)
        tr.update("c1", "gold", False, start + 5 * 3600)
        assert [b.at for b in tr.breaches()] == [start + 2592, start + 4 * 3600]


def test_older_now_is_ignored() -> None:
    tr = SlaTracker(SLA)
    tr.update("c1", "gold", False, T0)
    tr.update("c1", "gold", False, T0 + 2000)
    before = tr.dump()
    tr.update("c1", "gold", True, T0 + 1000)  # older than T0 + 2000: ignored
    assert tr.dump() == before
    st = tr.state("c1", "gold", T0 + 500)  # queries evaluate at the latest instant instead
    assert (st.at, st.down, st.downtime) == (T0 + 2000, False, 0.0)
    assert tr.tick(T0 + 1000) == []
    assert tr.dump() == before


def test_re_observing_the_same_state_is_idempotent() -> None:
    tr = SlaTracker(SLA)
    tr.update("c1", "gold", True, T0)
    tr.update("c1", "gold", True, T0 + 60)
    once = tr.dump()
    tr.update("c1", "gold", True, T0 + 60)
    assert tr.dump() == once
    tr.update("c1", "gold", True, T0 + 120)
    st = tr.state("c1", "gold", T0 + 120)
    assert (st.outage_started, st.outage_duration, st.downtime) == (T0, 120.0, 120.0)
    tr.update("c1", "gold", False, T0 + 120)
    tr.update("c1", "gold", False, T0 + 180)
    assert tr.dump()["subjects"]["c1"]["intervals"] == [[T0, T0 + 120]]


def test_tick_records_breaches_of_long_outages() -> None:
    tr = SlaTracker(SLA)
    tr.update("a", "platinum", True, T0)
    tr.update("b", "bronze", True, T0)
    tr.update("c", "gold", False, T0)
    # at T0 + 3 h: a exhausted its 1296 s budget at T0 + 1296 and its 2 h restore time at T0 + 7200;
    # b (bronze: 25,920 s budget, 24 h restore) and c (up) did not breach
    new = tr.tick(T0 + 3 * 3600)
    assert [(b.subject, b.kind, b.at) for b in new] == [
        ("a", "availability", T0 + 1296),
        ("a", "time_to_restore", T0 + 7200),
    ]
    assert tr.breaches() == new
    assert tr.tick(T0 + 4 * 3600) == []


def _down_from_t0(tr: SlaTracker) -> None:
    tr.update("a", "platinum", True, T0)


def _old_outage_sliding_out(tr: SlaTracker) -> None:
    tr.update("a", "platinum", True, T0)
    tr.update("a", "platinum", False, T0 + 1000)
    tr.update("a", "platinum", True, T0 + P + 500)


@pytest.mark.parametrize(
    ("history", "availability_at", "restore_at"),
    [
        (lambda tr: tr.update("a", "platinum", False, T0), None, None),
        (_down_from_t0, T0 + 1296, T0 + 7200),
        (_old_outage_sliding_out, T0 + P + 1796, T0 + P + 500 + 7200),
    ],
    ids=["up", "down-from-t0", "old-outage-sliding-out"],
)
def test_next_breach_is_when_a_tick_records_the_next_breach(
    history: Any, availability_at: float | None, restore_at: float | None
) -> None:
    """Platinum: budget 1,296 s, time to restore 7,200 s. Down from T0: the budget is exhausted at
    T0 + 1,296, the restore time at T0 + 7,200. Down 0–1,000 s, then again from P + 500: the old
    outage slides out of the period at the rate the new one adds downtime, so the downtime stays
    500 s until P + 1,000, then grows: 500 + (t − (P + 1,000)) = 1,296 at P + 1,796; the restore
    time ends at P + 500 + 7,200. ``next_breach`` is the float just after each instant (a breach is
    the downtime *exceeding* the limit), and a ``tick`` there records the breach dated exactly."""
    tr = SlaTracker(SLA)
    history(tr)
    if availability_at is None:
        assert tr.next_breach() is None
        return
    assert restore_at is not None
    due = tr.next_breach()
    assert due == math.nextafter(availability_at, math.inf)
    assert tr.tick(due - 0.001) == []
    assert [(b.kind, b.at) for b in tr.tick(due)] == [("availability", availability_at)]
    due = tr.next_breach()
    assert due == math.nextafter(restore_at, math.inf)
    assert [(b.kind, b.at) for b in tr.tick(due)] == [("time_to_restore", restore_at)]
    assert tr.next_breach() is None  # every breach of the running outage is recorded
    tr.update("a", "platinum", False, due + 1)
    assert tr.next_breach() is None


def test_mos_floor_breach_once_per_episode() -> None:
    tr = SlaTracker(SLA)  # silver floor 3.6
    first = tr.observe_mos("c1", "silver", 3.5, T0)
    assert first == Breach("c1", "silver", "mos", T0, {"mos": 3.5, "floor": 3.6})
    assert tr.observe_mos("c1", "silver", 3.4, T0 + 60) is None  # same episode
    assert tr.state("c1", "silver", T0 + 60).mos_breached
    assert tr.observe_mos("c1", "silver", 3.0, T0 + 30) is None  # older: ignored
    assert tr.observe_mos("c1", "silver", 3.6, T0 + 120) is None  # at the floor: the episode ends
    st = tr.state("c1", "silver", T0 + 120)
    assert (st.mos, st.mos_floor, st.mos_breached) == (3.6, 3.6, False)
    second = tr.observe_mos("c1", "silver", 3.0, T0 + 180)
    assert second is not None
    assert second.at == T0 + 180
    assert tr.breaches() == [first, second]
    no_floor = SlaTracker(SlaSettings(tiers={"gold": SlaTier(availability=0.999)}))
    assert no_floor.observe_mos("c1", "gold", 1.0, T0) is None
    assert no_floor.breaches() == []
    with pytest.raises(ValueError, match="MOS"):
        tr.observe_mos("c1", "silver", float("nan"), T0 + 200)


def test_tiers_without_sla_are_not_tracked() -> None:
    tr = SlaTracker(SLA)
    tr.update("c1", "copper", True, T0)
    assert len(tr) == 0
    assert tr.observe_mos("c1", "copper", 1.0, T0) is None
    with pytest.raises(KeyError, match="copper"):
        tr.state("c1", "copper", T0)


def test_forget() -> None:
    tr = SlaTracker(SLA)
    tr.update("c1", "platinum", True, T0)
    tr.tick(T0 + 2000)
    tr.forget("c1")
    assert len(tr) == 0
    assert tr.time_to_breach("c1", "platinum", T0 + 2000) is None
    assert len(tr.breaches()) == 1  # recorded breaches stay


def test_state_shows_the_mos_of_another_subject_when_asked() -> None:
    """A group's availability with one customer's MOS (``mos_of``): the group "g" is up, customer
    "c1" of it measured MOS 3.5 under the silver floor 3.6; the group itself has no MOS."""
    tr = SlaTracker(SLA)
    tr.update("g", "silver", False, T0)
    tr.observe_mos("c1", "silver", 3.5, T0 + 10)
    own = tr.state("g", "silver", T0 + 20)
    mine = tr.state("g", "silver", T0 + 20, mos_of="c1")
    assert (own.mos, own.mos_breached) == (None, False)
    assert (mine.subject, mine.mos, mine.mos_floor, mine.mos_breached) == ("g", 3.5, 3.6, True)
    assert mine.downtime == own.downtime == 0.0


def test_state_record_is_json_ready() -> None:
    tr = SlaTracker(SLA)
    tr.update("c1", "platinum", False, T0)
    tr.update("c1", "platinum", True, T0 + 100)
    tr.observe_mos("c1", "platinum", 3.9, T0 + 200)
    rec = tr.state("c1", "platinum", T0 + 1100).to_record()
    assert json.loads(json.dumps(rec)) == rec
    assert rec["at"] == "2026-01-01T00:18:20.000Z"
    assert rec["outage_started"] == "2026-01-01T00:01:40.000Z"
    assert rec["observed_since"] == "2026-01-01T00:00:00.000Z"
    assert rec["time_to_breach"] == 296.0
    assert rec["breached"] == {"availability": False, "time_to_restore": False, "mos": True}


# --- urgency ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "urgency"),
    [
        (None, 0.0),  # no breach ahead
        (0.0, 1.0),  # already breached
        (600.0, 1.0),  # 10 min ≤ 15 min
        (900.0, 1.0),  # exactly 15 min
        (1200.0, 2400 / 2700),  # 20 min: (3,600 − 1,200) / (3,600 − 900) = 0.8889
        (1800.0, 1800 / 2700),  # 30 min: 0.6667
        (2700.0, 900 / 2700),  # 45 min: 0.3333
        (3600.0, 0.0),  # 1 h
        (8100.0, 0.0),  # 2 h 15 min
        (86400.0, 0.0),
    ],
)
def test_breach_urgency(seconds: float | None, urgency: float) -> None:
    assert breach_urgency(seconds, SLA) == pytest.approx(urgency)
    assert breach_urgency(seconds, SLA.urgency) == pytest.approx(urgency)


def test_breach_urgency_is_monotonic_and_configurable() -> None:
    values = [breach_urgency(float(s), SLA) for s in range(0, 20000, 50)]
    assert values == sorted(values, reverse=True)
    assert all(0.0 <= v <= 1.0 for v in values)
    u = UrgencySettings(urgent=0.0, horizon=3600.0)
    assert breach_urgency(1800.0, u) == 0.5
    with pytest.raises(ValueError, match="NaN"):
        breach_urgency(float("nan"), SLA)


def test_an_imminent_platinum_breach_outranks_none() -> None:
    tr = SlaTracker(SLA)
    tr.update("plat", "platinum", True, T0)  # budget 1296 s: at T0 + 96, 1200 s (20 min) left
    tr.update("bronze", "bronze", True, T0)  # budget 25,920 s, restore 24 h: far away
    tr.update("up", "gold", False, T0)
    now = T0 + 96
    assert tr.time_to_breach("plat", "platinum", now) == 1200.0
    urgency = {
        cid: breach_urgency(tr.time_to_breach(cid, tier, now), SLA)
        for cid, tier in (("plat", "platinum"), ("bronze", "bronze"), ("up", "gold"))
    }
    assert urgency == pytest.approx({"plat": 2400 / 2700, "bronze": 0.0, "up": 0.0})


# --- persistence ------------------------------------------------------------------------------------


def _scenario(tr: SlaTracker, start: float) -> None:
    for i in range(12):
        t = start + i * 700.5
        tr.update("a", "platinum", i % 3 != 0, t)
        tr.update("b", "gold", i in (4, 5, 6, 7), t + 0.25)
        tr.observe_mos("a", "platinum", 3.5 + i * 0.05, t + 1)


def test_dump_load_round_trip() -> None:
    tr = SlaTracker(SLA)
    _scenario(tr, T0)
    tr.update("c", "silver", True, T0 + 9999.125)
    dumped = tr.dump()
    text = json.dumps(dumped)
    restored = SlaTracker(SLA)
    restored.load(json.loads(text))
    assert restored.dump() == dumped
    assert json.dumps(restored.dump()) == text
    assert restored.breaches() == tr.breaches()
    assert tr.breaches()  # the scenario does breach
    for t in (tr, restored):  # and both go on identically
        _scenario(t, T0 + 20000)
        t.tick(T0 + 40000)
    assert restored.dump() == tr.dump()
    for cid, tier in (("a", "platinum"), ("b", "gold"), ("c", "silver")):
        assert restored.state(cid, tier, T0 + 40000) == tr.state(cid, tier, T0 + 40000)


def test_load_refuses_a_malformed_state() -> None:
    tr = SlaTracker(SLA)
    good = tr.dump()
    for bad in (
        {},
        {**good, "version": 3},
        {**good, "subjects": {"x": {"tier": "gold"}}},
        {**good, "breaches": [{"subject": "x", "tier": "gold", "kind": "late", "at": T0, "detail": {}}]},
    ):
        with pytest.raises(ValueError, match="invalid SLA tracker state"):
            tr.load(bad)
    interval = {
        "tier": "gold",
        "first_seen": T0,
        "last": T0,
        "down_since": None,
        "intervals": [[T0 + 5, T0]],
        "availability_breached": False,
        "time_to_restore_breached": False,
    }
    with pytest.raises(ValueError, match="start"):
        tr.load({**good, "subjects": {"x": interval}})


def test_a_version_1_dump_loads_as_version_2() -> None:
    """Version 1 named every subject a customer (``customers``, breaches with ``customer_id``); the
    same state loads, and dumps as version 2 with ``subjects`` and ``subject``."""
    tr = SlaTracker(SLA)
    _scenario(tr, T0)
    v2 = tr.dump()
    v1 = {
        "version": 1,
        "customers": v2["subjects"],
        "mos": v2["mos"],
        "breaches": [
            {("customer_id" if k == "subject" else k): v for k, v in b.items()} for b in v2["breaches"]
        ],
    }
    assert v1["breaches"]
    assert "customer_id" in v1["breaches"][0]
    restored = SlaTracker(SLA)
    restored.load(json.loads(json.dumps(v1)))
    assert restored.dump() == v2


def test_module_is_pure() -> None:
    """No module of the experience package imports a clock, I/O, randomness or an event loop."""
    imported: set[str] = set()
    package = Path(engine.core.experience.__file__).parent
    trees = [ast.parse(p.read_text(encoding="utf-8")) for p in sorted(package.glob("*.py"))]
    assert len(trees) > 1
    for node in (n for tree in trees for n in ast.walk(tree)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported.isdisjoint({"time", "datetime", "asyncio", "os", "socket", "random", "pathlib"})
