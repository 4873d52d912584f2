"""The alarm lifecycle: deduplication, clears, re-raise, flapping, reordering, effects."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from engine.core.alarms import AlarmTable, alarm_key, classify
from engine.core.settings import DEFAULT_EFFECTS, AlarmSettings, EffectRule, FlappingSettings
from engine.model.messages import Alarm, plain_alarm

T0 = 1_767_225_600.0


def mk(severity: str = "major", t: float = 0.0, **kw: Any) -> Alarm:
    fields: dict[str, Any] = {"ne_id": "olt-1", "probable_cause": "linkDown", "severity": severity}
    fields.update(kw)
    return Alarm.model_validate({**fields, "event_time": T0 + t})


def kinds(changes: list[Any]) -> list[str]:
    return [c.kind for c in changes]


def table(**flap: Any) -> AlarmTable:
    return AlarmTable(AlarmSettings(flapping=FlappingSettings(**flap)) if flap else AlarmSettings())


def test_first_raise_then_duplicates_are_deduplicated_with_count_and_last_seen() -> None:
    """A repeated raise of the same identity is one alarm with a count, first and last seen."""
    t = table()
    assert kinds(t.apply(mk(t=0), T0)) == ["raised"]
    assert kinds(t.apply(mk(t=5), T0 + 5)) == ["repeated"]
    assert kinds(t.apply(mk(t=9), T0 + 9)) == ["repeated"]
    rec = t.get("olt-1:linkDown")
    assert rec is not None
    assert (rec.count, rec.first_seen, rec.last_seen) == (3, T0, T0 + 9)


def test_severity_change_is_reported_with_the_previous_effect() -> None:
    """A raise with another severity changes the alarm and may change its effect (outage → degraded)."""
    t = table()
    t.apply(mk("critical"), T0)
    (change,) = t.apply(mk("minor", t=1), T0 + 1)
    assert change.kind == "severity"
    assert change.previous_effect == "outage"
    assert change.alarm.effect == "degraded"


def test_clear_pairs_with_the_active_alarm_and_reraise_is_a_new_occurrence() -> None:
    """Clear closes the occurrence; a later raise opens occurrence 2 of the same identity."""
    t = table()
    t.apply(mk(), T0)
    assert kinds(t.apply(mk("cleared", t=10), T0 + 10)) == ["cleared"]
    rec = t.get("olt-1:linkDown")
    assert rec is not None
    assert not rec.active
    assert kinds(t.apply(mk(t=20), T0 + 20)) == ["raised"]
    assert rec.occurrence == 2
    assert rec.active
    assert rec.count == 1


def test_clear_for_unknown_alarm_is_harmless_and_counted() -> None:
    """A clear nobody raised changes nothing and is counted."""
    t = table()
    assert t.apply(mk("cleared"), T0) == []
    assert t.counters.clear_unknown == 1
    assert len(list(t.active())) == 0


def test_reordered_raise_after_its_clear_does_not_stay_active() -> None:
    """Delivered out of order (clear first), the raise is applied, then cleared: the table gives
    the raise and announces the clear it owes (``late_clear``), which the applier asks for once
    the raise has gone through the parts (its element down, its incident made), so the outage the
    clear ends is seen."""
    t = table()
    t.apply(mk("cleared", t=10), T0 + 10)
    changes = t.apply(mk(t=0), T0 + 11)
    assert kinds(changes) == ["raised", "late_clear"]
    assert changes[1].alarm.active  # not cleared before the raise is applied
    assert kinds(t.late_clear(changes[1].alarm.key, T0 + 11)) == ["cleared"]
    assert len(list(t.active())) == 0
    assert t.late_clear(changes[1].alarm.key, T0 + 11) == []  # owed once


def test_reordered_raise_of_a_later_occurrence_after_its_clear_does_not_stay_active() -> None:
    """Raise 0, clear 10, then the clear of 40 before the raise of 20: that raise (a second
    occurrence) is cleared by the clear that came first (it stayed active for ever). A clear older
    than the raise that follows it cleared something earlier and is dropped."""
    t = table()
    t.apply(mk(t=0), T0)
    t.apply(mk("cleared", t=10), T0 + 10)
    t.apply(mk("cleared", t=40), T0 + 40)
    changes = t.apply(mk(t=20), T0 + 41)
    assert kinds(changes) == ["raised", "late_clear"]
    assert kinds(t.late_clear(changes[1].alarm.key, T0 + 41)) == ["cleared"]
    rec = changes[0].alarm
    assert (rec.active, rec.occurrence, rec.cleared_time) == (False, 2, T0 + 40)
    t.apply(mk("cleared", t=50), T0 + 50)  # an orphan again, older than the next raise
    assert kinds(t.apply(mk(t=60), T0 + 60)) == ["raised"]
    assert rec.active


def test_stale_raise_older_than_the_last_clear_is_ignored() -> None:
    """A late duplicate raise from before the clear does not resurrect the alarm."""
    t = table()
    t.apply(mk(t=0), T0)
    t.apply(mk("cleared", t=10), T0 + 10)
    assert t.apply(mk(t=5), T0 + 12) == []
    assert t.counters.stale == 1


def test_flapping_alarm_becomes_one_flapping_alarm_not_many() -> None:
    """N raise/clear transitions within the window make the alarm flap: later transitions are absorbed."""
    t = table(transitions=4, window=600, quiet=300)
    out: list[str] = kinds(t.apply(mk(t=0), T0))
    for i in range(1, 10):
        sev = "cleared" if i % 2 else "major"
        out += kinds(t.apply(mk(sev, t=i * 10), T0 + i * 10))
    # raise, clear, raise, clear, raise (4th transition: flapping), then 5 transitions absorbed
    assert out == ["raised", "cleared", "raised", "cleared", "raised", "flapping"]
    assert out.count("flapping") == 1
    rec = t.get("olt-1:linkDown")
    assert rec is not None
    assert rec.flapping
    assert rec.active
    assert t.counters.absorbed == 5


def test_flapping_ends_after_quiet_period_and_settles_on_last_state() -> None:
    """After the quiet period the alarm stops flapping; if its last word was a clear it clears."""
    t = table(transitions=3, window=600, quiet=120)
    t.apply(mk(t=0), T0)
    t.apply(mk("cleared", t=1), T0 + 1)
    t.apply(mk(t=2), T0 + 2)
    assert kinds(t.apply(mk("cleared", t=3), T0 + 3)) == ["flapping"]
    assert t.tick(T0 + 60) == []
    assert kinds(t.tick(T0 + 200)) == ["unflapped", "cleared"]
    rec = t.get("olt-1:linkDown")
    assert rec is not None
    assert not rec.active
    assert not rec.flapping


def test_cleared_alarms_are_forgotten_after_retention() -> None:
    """Memory is bounded: a cleared identity is dropped after `retain` seconds."""
    t = AlarmTable(AlarmSettings(retain=100))
    t.apply(mk(), T0)
    t.apply(mk("cleared", t=1), T0 + 1)
    t.tick(T0 + 50)
    assert len(t) == 1
    t.tick(T0 + 102)
    assert len(t) == 0


@pytest.mark.parametrize(
    ("fields", "effect"),
    [
        ({"probable_cause": "lossOfSignal", "severity": "critical"}, "outage"),
        ({"probable_cause": "LOSSOFSIGNAL", "severity": "major"}, "outage"),
        ({"probable_cause": "lossOfSignal", "severity": "minor"}, "degraded"),
        (
            {
                "probable_cause": "thresholdCrossed",
                "severity": "major",
                "event_type": "qualityOfServiceAlarm",
            },
            "degraded",
        ),
        ({"probable_cause": "fanFailure", "severity": "major"}, "degraded"),
        ({"probable_cause": "mainsFailure", "severity": "critical"}, "outage"),
        ({"probable_cause": "doorOpen", "severity": "warning"}, "none"),
        ({"probable_cause": "x", "severity": "indeterminate"}, "none"),
    ],
    ids=[
        "los-critical",
        "case-insensitive",
        "los-minor",
        "qos",
        "other-major",
        "mains",
        "warning",
        "indeterminate",
    ],
)
def test_default_effects(fields: dict[str, Any], effect: str) -> None:
    """The documented default effect policy: outage causes at major+, degraded at minor+, else none."""
    a = Alarm.model_validate({"ne_id": "x", "event_time": T0, **fields})
    assert classify(a, DEFAULT_EFFECTS) == effect


def test_alarm_key_is_readable_and_uses_alarm_id_when_given() -> None:
    """Incident records name alarms by a short key: the alarm_id, else ne:cause[:specific problem]."""
    assert alarm_key(mk(specific_problem="port 1")) == "olt-1:linkDown:port 1"
    assert alarm_key(mk(alarm_id="A-17")) == "A-17"


EFFECT_RULES = (
    DEFAULT_EFFECTS,
    (
        EffectRule(probable_cause=("LinkDown", "x"), event_type=("equipmentAlarm",), effect="outage"),
        EffectRule(
            event_type=("communicationsAlarm", "qualityOfServiceAlarm"), severity="minor", effect="degraded"
        ),
        EffectRule(severity=("warning",), effect="outage"),
    ),
    (EffectRule(effect="degraded"),),
)


@pytest.mark.parametrize("rules", EFFECT_RULES, ids=["default", "mixed", "one-rule"])
def test_the_table_gives_each_raise_the_effect_classify_gives(rules: tuple[EffectRule, ...]) -> None:
    """The table reads its effect rules once as plain values: each raise gets the effect ``classify``
    gives the alarm (causes compared in lower case, first matching rule, else none)."""
    t = AlarmTable(AlarmSettings(effects=rules))
    causes = ("linkDown", "LINKDOWN", "lossOfSignal", "x", "X", "fanFailure")
    types = ("communicationsAlarm", "equipmentAlarm", "qualityOfServiceAlarm")
    severities = ("critical", "major", "minor", "warning", "indeterminate")
    n = 0
    for cause in causes:
        for event_type in types:
            for severity in severities:
                n += 1
                a = mk(severity, t=n, probable_cause=cause, event_type=event_type, alarm_id=f"a-{n}")
                (change,) = t.apply(a, T0 + n)
                assert change.kind == "raised"
                assert change.alarm.effect == classify(a, rules), (cause, event_type, severity)


def test_the_table_does_the_same_with_an_alarms_plain_fields_as_with_its_model() -> None:
    """``Decoder.read`` gives the core a native alarm's fields (``PlainAlarm``) instead of its model:
    3,000 random raises, clears and repeats over a few identities (severity changes, orphan and
    stale clears, reordered raises, flapping, re-raises, ticks) give the same changes and the same
    table, field for field."""
    rng = random.Random(5)
    by_model, by_fields = (
        table(window=60.0, transitions=4, quiet=30.0),
        table(window=60.0, transitions=4, quiet=30.0),
    )
    now = T0
    for _ in range(3000):
        now += rng.choice([0.0, 0.5, 3.0, 20.0])
        fields: dict[str, Any] = {
            "ne_id": rng.choice(["olt-1", "olt-2"]),
            "probable_cause": rng.choice(["linkDown", "LOS"]),
            "severity": rng.choice(["major", "critical", "minor", "cleared", "cleared", "CLEARED"]),
            "event_time": now + rng.choice([0.0, -5.0, -40.0, 2.0]),
        }
        if rng.random() < 0.3:
            fields["specific_problem"] = rng.choice(["a", "b"])
        if rng.random() < 0.2:
            fields["alarm_id"] = rng.choice(["id-1", "id-2"])
        if rng.random() < 0.3:
            fields["text"] = rng.choice(["down", "up", ""])
        parsed = orjson.loads(orjson.dumps(fields))
        plain = plain_alarm(parsed)
        assert plain is not None
        model = Alarm.model_validate(parsed)
        a, b = by_model.apply(model, now), by_fields.apply(plain, now)
        assert [(c.kind, c.alarm.key, c.previous_effect) for c in a] == [
            (c.kind, c.alarm.key, c.previous_effect) for c in b
        ]
        assert by_model.notices == by_fields.notices
        by_model.notices.clear()
        by_fields.notices.clear()
        if rng.random() < 0.1:
            assert kinds(by_model.tick(now)) == kinds(by_fields.tick(now))
        assert by_model.dump() == by_fields.dump()
