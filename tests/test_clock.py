"""Event times against the receive time (``core.clock``), and the notices of clears that match
nothing, stale raises and clears and events out of order.

The core is fed as the daemon feeds it: each message with the time it was received."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from bench.scenarios import T0, example_topology
from engine.core.notices import AlarmNotice, ClockNotice
from engine.core.pipeline import Decisions, Pipeline
from engine.core.settings import CoreSettings, core_settings_from_data
from engine.model.timeutil import format_time
from engine.model.topology import topology_from_dict
from engine.rules.schema import load_rulesets

TOPOLOGY = topology_from_dict(example_topology(olts=5, customers_per_olt=2))
Y2036 = 2_082_758_400.0  # 2036-01-01T00:00:00Z


def pipeline(**core: Any) -> Pipeline:
    settings = core_settings_from_data(core) if core else CoreSettings()
    return Pipeline(TOPOLOGY, load_rulesets(None), settings)


def los(event_time: float, severity: str = "critical", ne: str = "agg-3") -> bytes:
    return orjson.dumps(
        {
            "ne_id": ne,
            "severity": severity,
            "probable_cause": "lossOfSignal",
            "event_time": format_time(event_time),
        }
    )


def feed(p: Pipeline, payload: bytes, received: float, topic: str = "soc/alarms/x") -> Decisions:
    """Feed at ``received`` after firing the timers due by then, as the daemon does."""
    out = p.advance_to(received)
    out.extend(p.feed(topic, payload, received))
    return out


def run_to(p: Pipeline, t: float, out: Decisions) -> None:
    out.extend(p.advance_to(t))


def events(out: Decisions) -> list[tuple[str, str]]:
    return [(r["event"], r["time"]) for r in (x.to_wire() for x in out.records)]


def test_an_alarm_from_2036_is_applied_at_the_receive_time_and_its_clear_closes_it() -> None:
    """The issue's case: a raise stamped 2036 opened a P1 whose clear (with the right time) was
    dropped as stale, so the incident never closed. Now its time is clamped to the receive time,
    with a notice naming both times, and the clear resolves the incident after the hold-down."""
    p = pipeline()
    out = feed(p, los(Y2036), T0)
    assert [n.kind for n in out.notices] == ["clock_ahead"]
    notice = out.notices[0].to_wire()  # its JSON form (the daemon's log line)
    assert notice["event_time"] == "2036-01-01T00:00:00.000Z"
    assert (
        "ahead of the receive time 2026-01-01T00:00:00.000Z (core.clock.max_ahead 300 s)" in notice["detail"]
    )
    run_to(p, T0 + 60, out)
    out.extend(feed(p, los(T0 + 120, "cleared"), T0 + 120))
    run_to(p, T0 + 1000, out)
    assert events(out) == [("opened", format_time(T0 + 30)), ("resolved", format_time(T0 + 120 + 300))]
    assert p.summary()["clock_clamped"] == 1
    assert p.summary()["stale"] == 0


def test_a_time_within_the_allowed_skew_is_kept() -> None:
    """A sender's clock up to ``max_ahead`` (5 min) fast is normal drift: its time is kept."""
    p = pipeline()
    out = feed(p, los(T0 + 299), T0)
    assert out.notices == []
    assert p.alarms.get("agg-3:lossOfSignal") is not None
    assert p.alarms.get("agg-3:lossOfSignal").first_seen == T0 + 299  # type: ignore[union-attr]


def test_with_ahead_reject_a_future_time_is_a_dead_letter_naming_the_field_and_bound() -> None:
    """``clock: {ahead: reject}`` refuses the message instead, naming the field and the bound."""
    p = pipeline(clock={"ahead": "reject", "max_ahead": "1m"})
    out = feed(p, los(T0 + 61), T0)
    assert out.records == []
    (dl,) = out.dead_letters
    assert dl.to_wire()["errors"] == [
        {
            "field": "event_time",
            "reason": "2026-01-01T00:01:01.000Z is 61 s ahead of the receive time "
            "2026-01-01T00:00:00.000Z (core.clock.max_ahead 60 s)",
        }
    ]
    assert p.summary()["clock_rejected"] == 1


def test_very_old_times_are_kept_by_default_and_the_incident_still_opens_and_resolves() -> None:
    """Old times are normal (a network element re-sending what it buffered during a DCN outage):
    by default they are kept, an alarm from 2020 opens its incident at once (its settle time is
    long past) and its clear resolves it."""
    old = T0 - 6 * 365 * 86400
    p = pipeline()
    out = feed(p, los(old), T0)
    assert out.notices == []
    out.extend(feed(p, los(old + 60, "cleared"), T0 + 10))
    run_to(p, T0 + 1000, out)
    assert [e for e, _ in events(out)] == ["opened", "resolved"]
    assert events(out)[-1] == ("resolved", format_time(T0 + 10 + 300))


@pytest.mark.parametrize(
    ("behind", "kind"),
    [("clamp", "clock_behind"), ("reject", None)],
)
def test_with_max_behind_old_times_are_clamped_or_refused(behind: str, kind: str | None) -> None:
    """``clock: {max_behind: 1h}``: a network element whose clock reset to 1970 sends alarms the
    engine applies at the receive time (``behind: clamp``) or refuses (``behind: reject``)."""
    p = pipeline(clock={"max_behind": "1h", "behind": behind})
    out = feed(p, los(0.0), T0)
    if kind is None:
        ((where, reason),) = out.dead_letters[0].errors
        assert where == "event_time"
        assert "behind the receive time" in reason
        return
    assert [n.kind for n in out.notices] == [kind]
    out.extend(feed(p, los(60.0, "cleared"), T0 + 10))  # its clear, from the same broken clock
    run_to(p, T0 + 1000, out)
    assert [e for e, _ in events(out)] == ["opened", "resolved"]


def test_sample_times_ahead_are_clamped_one_by_one_in_a_batch() -> None:
    """A sample stamped in the future would trim every older sample out of its KQI window: its
    time is clamped like an alarm's; the others of the batch keep theirs."""
    p = pipeline()
    batch = {
        "samples": [
            {"probe_id": "p", "target": "olt-001", "time": T0 - 1, "metrics": {"latency_ms": 5.0}},
            {"probe_id": "p", "target": "olt-001", "time": Y2036, "metrics": {"latency_ms": 6.0}},
        ]
    }
    out = feed(p, orjson.dumps(batch), T0, topic="soc/probes/p")
    assert [(n.kind, n.field) for n in out.notices if isinstance(n, ClockNotice)] == [
        ("clock_ahead", "samples[1].time")
    ]
    assert out.dead_letters == []
    assert p.stats.samples == 2


def test_orphan_and_stale_clears_and_late_events_are_notices() -> None:
    """What the replay summary counted only is now a notice of each feed (the daemon counts and
    logs them): a clear that matches nothing, a clear older than the occurrence it would clear,
    a raise older than the last clear, an event older than the latest one by more than the reorder
    tolerance."""
    p = pipeline()
    out = feed(p, los(T0, "cleared", ne="agg-1"), T0)
    assert [(n.kind, n.alarm) for n in out.notices if isinstance(n, AlarmNotice)] == [
        ("clear_unknown", "agg-1:lossOfSignal")
    ]
    feed(p, los(T0 + 100), T0 + 100)
    out = feed(p, los(T0 + 50, "cleared"), T0 + 101)  # older than the raise: stale, and late
    assert [n.kind for n in out.notices] == ["late", "stale_clear"]
    feed(p, los(T0 + 200, "cleared"), T0 + 200)
    out = feed(p, los(T0 + 150), T0 + 201)  # a raise older than the clear: stale, and late
    assert [n.kind for n in out.notices] == ["late", "stale_raise"]
    s = p.summary()
    assert (s["clears_unknown"], s["stale"], s["stale_clears"], s["late_events"]) == (1, 2, 1, 2)


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (T0 + 0.1234, "2026-01-01T00:00:00.123Z"),
        (T0 + 59.9999, "2026-01-01T00:00:59.999Z"),  # milliseconds truncated, never rounded up
        (T0 + 59.9999996, "2026-01-01T00:01:00.000Z"),  # microseconds round first (fromtimestamp)
        (Y2036 - 0.001, "2035-12-31T23:59:59.999Z"),
    ],
)
def test_format_time_is_rfc3339_utc_with_truncated_milliseconds(t: float, text: str) -> None:
    """Records carry times in this exact text (the decisions' digests hash it); the same as
    ``strftime("%Y-%m-%dT%H:%M:%S.")`` and the microseconds // 1000, which it was written as before."""
    dt = datetime.fromtimestamp(t, tz=UTC)
    assert dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z" == text
    assert format_time(t) == text
