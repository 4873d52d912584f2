"""Maintenance-window schedules (engine.model.schedule). Expected instants are worked out by hand in comments.

Calendar used below: 2026-01-01 is a Thursday, so 2026-01-04 is a Sunday and 2026-01-05 a Monday.
Europe/Paris is CET (+01:00) until 2026-03-29 01:00Z (02:00 CET → 03:00 CEST) and CEST (+02:00)
until 2026-10-25 01:00Z (03:00 CEST → 02:00 CET).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from engine.model.schedule import HORIZON_DAYS, Schedule, Weekly
from engine.model.timeutil import format_time, parse_time

DAY = 86400.0


def t(text: str) -> float:
    """``"2026-01-01T02:00"`` (UTC) → epoch seconds."""
    return parse_time(text + "Z")


def iso(value: float | None) -> str | None:
    """Epoch seconds → ``"2026-01-01T02:00"`` (UTC, seconds dropped when zero), for readable asserts."""
    if value is None:
        return None
    text = format_time(value).removesuffix("Z").removesuffix(".000")
    return text.removesuffix(":00")


def window(s: Schedule, now: str) -> tuple[str | None, str | None] | None:
    w = s.window_at(t(now))
    return None if w is None else (iso(w[0]), iso(w[1]))


def starts(s: Schedule, after: str, n: int) -> list[str | None]:
    """The next ``n`` window starts strictly after ``after``, walking ``next_change``."""
    out: list[str | None] = []
    now = t(after)
    while len(out) < n:
        change = s.next_change(now)
        assert change is not None
        assert change > now
        if s.active(change):
            out.append(iso(change))
        now = change
    return out


def cron(expr: str, duration: str = "1m", timezone: str = "UTC") -> Schedule:
    return Schedule.model_validate({"cron": expr, "duration": duration, "timezone": timezone})


def weekly(days: list[str], at: str, duration: str, timezone: str = "UTC") -> Schedule:
    return Schedule.model_validate(
        {"weekly": {"days": days, "at": at, "duration": duration}, "timezone": timezone}
    )


# ------------------------------------------------------------------------------------------- one-off


def test_one_off_inside_outside_and_edges() -> None:
    s = Schedule.model_validate({"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T04:00:00Z"})
    start, end = t("2026-01-01T00:00"), t("2026-01-01T04:00")
    assert (s.start, s.end) == (start, end)
    assert not s.active(start - 0.001)
    assert s.active(start)  # start inclusive
    assert s.window_at(t("2026-01-01T02:00")) == (start, end)
    assert s.active(end - 0.001)
    assert not s.active(end)  # end exclusive
    assert s.window_at(end) is None


def test_one_off_next_change() -> None:
    s = Schedule.model_validate({"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T04:00:00Z"})
    assert iso(s.next_change(t("2025-12-31T00:00"))) == "2026-01-01T00:00"
    assert iso(s.next_change(t("2026-01-01T00:00"))) == "2026-01-01T04:00"  # strictly after now
    assert iso(s.next_change(t("2026-01-01T03:59"))) == "2026-01-01T04:00"
    assert s.next_change(t("2026-01-01T04:00")) is None  # in the past: never changes again
    assert s.next_change(t("2027-01-01T00:00")) is None


def test_one_off_accepts_epoch_numbers_offsets_and_yaml_datetimes() -> None:
    by_number = Schedule.model_validate({"start": 1767225600, "end": 1767240000.0})
    by_offset = Schedule.model_validate(
        {"start": "2026-01-01T01:00:00+01:00", "end": "2026-01-01T05:00:00+01:00"}
    )
    # The YAML loader turns an unquoted timestamp into a datetime.
    by_datetime = Schedule.model_validate(
        {"start": datetime(2026, 1, 1, tzinfo=UTC), "end": datetime(2026, 1, 1, 4, tzinfo=UTC)}
    )
    assert by_number == by_offset == by_datetime
    assert by_number.start == t("2026-01-01T00:00")  # 1767225600 = 2026-01-01T00:00Z


# -------------------------------------------------------------------------------------------- weekly


def test_weekly_across_the_week_boundary() -> None:
    # Sunday 22:00 for 4h: [Sun 2026-01-04 22:00Z, Mon 2026-01-05 02:00Z).
    s = weekly(["sun"], "22:00", "4h")
    assert window(s, "2026-01-05T01:59:59") == ("2026-01-04T22:00", "2026-01-05T02:00")
    assert not s.active(t("2026-01-05T02:00"))
    assert not s.active(t("2026-01-04T21:59:59"))
    assert iso(s.next_change(t("2026-01-05T01:00"))) == "2026-01-05T02:00"
    assert iso(s.next_change(t("2026-01-05T02:00"))) == "2026-01-11T22:00"  # the next Sunday
    assert starts(s, "2026-01-01T00:00", 3) == ["2026-01-04T22:00", "2026-01-11T22:00", "2026-01-18T22:00"]


def test_weekly_several_days() -> None:
    # Sat and Sun 23:00 for 2h: [Sat 3 23:00, Sun 4 01:00) and [Sun 4 23:00, Mon 5 01:00).
    s = weekly(["saturday", "SUN"], "23:00", "2h")
    assert window(s, "2026-01-04T00:30") == ("2026-01-03T23:00", "2026-01-04T01:00")
    assert iso(s.next_change(t("2026-01-04T00:30"))) == "2026-01-04T01:00"
    assert iso(s.next_change(t("2026-01-04T01:00"))) == "2026-01-04T23:00"
    assert window(s, "2026-01-05T00:59") == ("2026-01-04T23:00", "2026-01-05T01:00")
    assert iso(s.next_change(t("2026-01-05T01:00"))) == "2026-01-10T23:00"  # Saturday again


def test_weekly_days_and_time_are_normalised() -> None:
    w = Weekly.model_validate({"days": ["Sunday", "MON", "sat", "mon"], "at": "2:05", "duration": "90m"})
    assert w.days == ("mon", "sat", "sun")  # week order, distinct
    assert w.at == "02:05"
    assert w.duration == 5400.0
    assert Weekly.model_validate({"days": "sun", "at": "02:00", "duration": 60}).days == ("sun",)


def test_weekly_europe_paris_spring_forward_2026() -> None:
    s = weekly(["sun"], "02:30", "1h", "Europe/Paris")
    # 22 March (CET, +01:00): 02:30 local = 01:30Z.
    assert window(s, "2026-03-22T01:30") == ("2026-03-22T01:30", "2026-03-22T02:30")
    # 29 March: 02:30 does not exist (02:00 CET jumps to 03:00 CEST at 01:00Z). fold=0 reads it with
    # the offset before the change, +01:00 → 01:30Z, which is 03:30 CEST. The window lasts 1h of
    # elapsed time: [01:30Z, 02:30Z).
    assert iso(s.next_change(t("2026-03-22T02:30"))) == "2026-03-29T01:30"
    assert window(s, "2026-03-29T01:30") == ("2026-03-29T01:30", "2026-03-29T02:30")
    assert not s.active(t("2026-03-29T01:29:59"))
    assert not s.active(t("2026-03-29T02:30"))
    # 5 April (CEST, +02:00): 02:30 local = 00:30Z.
    assert iso(s.next_change(t("2026-03-29T02:30"))) == "2026-04-05T00:30"
    assert window(s, "2026-04-05T01:00") == ("2026-04-05T00:30", "2026-04-05T01:30")


def test_weekly_europe_paris_fall_back_2026() -> None:
    s = weekly(["sun"], "02:30", "1h", "Europe/Paris")
    # 18 October (CEST): 02:30 local = 00:30Z.
    assert starts(s, "2026-10-17T00:00", 1) == ["2026-10-18T00:30"]
    # 25 October: 02:30 happens twice (00:30Z in CEST, 01:30Z in CET); fold=0 takes the first only.
    assert starts(s, "2026-10-24T00:00", 1) == ["2026-10-25T00:30"]
    assert window(s, "2026-10-25T01:00") == ("2026-10-25T00:30", "2026-10-25T01:30")
    assert not s.active(t("2026-10-25T01:45"))  # 02:45 CET, the second 02:30 opened nothing
    # 1 November (CET): 02:30 local = 01:30Z.
    assert iso(s.next_change(t("2026-10-25T01:30"))) == "2026-11-01T01:30"


def test_weekly_duration_is_elapsed_time_across_dst() -> None:
    # Sunday 00:00 for 1d in Paris on 29 March: local midnight is 2026-03-28T23:00Z (CET); the window
    # lasts 24 real hours, to 23:00Z, which is already 01:00 CEST on Monday.
    s = weekly(["sun"], "00:00", "1d", "Europe/Paris")
    assert window(s, "2026-03-29T22:59") == ("2026-03-28T23:00", "2026-03-29T23:00")
    # 25 October: midnight is 2026-10-24T22:00Z (CEST); 24 real hours end at 22:00Z = 23:00 CET.
    assert window(s, "2026-10-25T12:00") == ("2026-10-24T22:00", "2026-10-25T22:00")


# ---------------------------------------------------------------------------------------------- cron


def test_cron_steps() -> None:
    s = cron("*/20 9 * * *")
    assert starts(s, "2026-01-01T00:00", 4) == [
        "2026-01-01T09:00",
        "2026-01-01T09:20",
        "2026-01-01T09:40",
        "2026-01-02T09:00",
    ]
    assert starts(cron("10-30/10 9 * * *"), "2026-01-01T00:00", 4) == [
        "2026-01-01T09:10",
        "2026-01-01T09:20",
        "2026-01-01T09:30",
        "2026-01-02T09:10",
    ]


def test_cron_ranges_and_lists() -> None:
    assert starts(cron("0 8-9,17 * * *"), "2026-01-01T00:00", 4) == [
        "2026-01-01T08:00",
        "2026-01-01T09:00",
        "2026-01-01T17:00",
        "2026-01-02T08:00",
    ]
    assert starts(cron("0 0 1 1,7 *"), "2026-01-01T00:00", 2) == ["2026-07-01T00:00", "2027-01-01T00:00"]


def test_cron_names_are_case_insensitive() -> None:
    # February 2026 starts on a Sunday: Mon 2, Tue 3, Wed 4, then Mon 9.
    assert starts(cron("0 12 * FEB Mon-wed"), "2026-01-01T00:00", 4) == [
        "2026-02-02T12:00",
        "2026-02-03T12:00",
        "2026-02-04T12:00",
        "2026-02-09T12:00",
    ]
    assert starts(cron("0 0 1 jan,JUL *"), "2026-01-01T00:00", 2) == ["2026-07-01T00:00", "2027-01-01T00:00"]


def test_cron_dom_and_dow_both_restricted_match_either() -> None:
    # The 13th OR a Friday: Fri 2, Fri 9, Tue 13, Fri 16 January 2026.
    assert starts(cron("0 0 13 * fri"), "2026-01-01T00:00", 4) == [
        "2026-01-02T00:00",
        "2026-01-09T00:00",
        "2026-01-13T00:00",
        "2026-01-16T00:00",
    ]
    # Only one restricted: that one alone (the other is "*").
    assert starts(cron("0 0 13 * *"), "2026-01-01T00:00", 2) == ["2026-01-13T00:00", "2026-02-13T00:00"]
    assert starts(cron("0 0 * * fri"), "2026-01-01T00:00", 2) == ["2026-01-02T00:00", "2026-01-09T00:00"]


def test_cron_star_step_counts_as_unrestricted_for_the_or_rule() -> None:
    # Vixie cron: a field beginning with "*" is not "restricted", so days 1, 11, 21, 31 AND Friday.
    # In 2026 the first such days are Fri 1 May and Fri 31 July.
    assert starts(cron("0 0 */10 * fri"), "2026-01-01T00:00", 2) == ["2026-05-01T00:00", "2026-07-31T00:00"]


@pytest.mark.parametrize("dow", ["0", "7", "sun", "SUN"])
def test_cron_sunday_is_0_and_7(dow: str) -> None:
    assert starts(cron(f"0 6 * * {dow}"), "2026-01-01T00:00", 2) == ["2026-01-04T06:00", "2026-01-11T06:00"]


@pytest.mark.parametrize("dow", ["5-7", "fri-sun", "5-0", "5,6,0"])
def test_cron_weekday_range_ending_on_sunday(dow: str) -> None:
    assert starts(cron(f"0 6 * * {dow}"), "2026-01-01T00:00", 4) == [
        "2026-01-02T06:00",  # Fri
        "2026-01-03T06:00",  # Sat
        "2026-01-04T06:00",  # Sun
        "2026-01-09T06:00",  # Fri
    ]


def test_cron_next_change_and_window() -> None:
    s = cron("0 2 * * 0", "2h")  # Sundays 02:00-04:00 UTC
    assert window(s, "2026-01-04T03:59") == ("2026-01-04T02:00", "2026-01-04T04:00")
    assert iso(s.next_change(t("2026-01-04T03:59"))) == "2026-01-04T04:00"
    assert iso(s.next_change(t("2026-01-04T04:00"))) == "2026-01-11T02:00"
    assert not s.active(t("2026-01-04T04:00"))


def test_cron_in_europe_paris_across_dst() -> None:
    s = cron("30 2 * * *", "1m", "Europe/Paris")
    # 28 March CET: 01:30Z. 29 March: 02:30 does not exist, read as +01:00 → 01:30Z. 30 March CEST: 00:30Z.
    assert starts(s, "2026-03-28T00:00", 3) == ["2026-03-28T01:30", "2026-03-29T01:30", "2026-03-30T00:30"]
    # 24 October CEST: 00:30Z. 25 October: first 02:30 only (CEST, 00:30Z). 26 October CET: 01:30Z.
    assert starts(s, "2026-10-24T00:00", 3) == ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30"]


def test_cron_wall_times_that_land_on_one_instant_fire_once() -> None:
    # Every 30 minutes on the spring-forward day: 01:30 CET = 00:30Z; 02:00 (skipped, +01:00) = 01:00Z,
    # the same instant as 03:00 CEST; 02:30 (skipped) = 01:30Z = 03:30 CEST; 04:00 CEST = 02:00Z.
    s = cron("*/30 * * * *", "1m", "Europe/Paris")
    assert starts(s, "2026-03-29T00:00", 4) == [
        "2026-03-29T00:30",
        "2026-03-29T01:00",
        "2026-03-29T01:30",
        "2026-03-29T02:00",
    ]


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("0 3 31 2 *", "there is no day 31 in feb"),
        ("0 0 30,31 feb *", "there is no day 30 or 31 in feb"),
        ("0 0 31 4,6,9,11 *", "there is no day 31 in apr, jun, sep or nov"),
        ("0 0 30 2 */2", "there is no day 30 in feb"),  # a `*/n` weekday counts as unrestricted: and
    ],
)
def test_a_cron_that_never_fires_is_refused(expr: str, reason: str) -> None:
    """A cron expression that matches no date at all is refused, saying why, rather than accepted as
    a maintenance window that never opens."""
    assert error({"cron": expr, "duration": "1h"}) == f"cron: {expr!r} never fires: {reason}"


@pytest.mark.parametrize(
    ("expr", "after", "first"),
    [
        ("0 0 29 2 *", "2027-06-01T00:00", "2028-02-29T00:00"),  # leap years only
        ("0 0 31 2 mon", "2026-01-01T00:00", "2026-02-02T00:00"),  # both restricted: Mondays of February
        ("0 0 31 1-2 *", "2026-01-01T00:00", "2026-01-31T00:00"),  # January has a 31st
    ],
)
def test_a_cron_that_fires_rarely_is_accepted(expr: str, after: str, first: str) -> None:
    """Only a date that can never exist is refused: 29 February, a day-of-month that some listed month
    has, or a weekday alternative keep the expression, and it fires on the first such date."""
    assert starts(cron(expr), after, 1) == [first]


def test_cron_search_horizon() -> None:
    leap = cron("0 0 29 2 *")
    # 2027-06-01 → 2028-02-29 is 273 days: found.
    assert iso(leap.next_change(t("2027-06-01T00:00"))) == "2028-02-29T00:00"
    # 2026-01-01 → 2028-02-29 is 789 days, beyond the horizon: None.
    assert HORIZON_DAYS == 400
    assert leap.next_change(t("2026-01-01T00:00")) is None


# -------------------------------------------------------------------------------------------- merging


def test_overlapping_weekly_windows_merge() -> None:
    # Mon and Tue 00:00 for 36h: [Mon 5 00:00, Tue 6 12:00) ∪ [Tue 6 00:00, Wed 7 12:00).
    s = weekly(["mon", "tue"], "00:00", "36h")
    merged = ("2026-01-05T00:00", "2026-01-07T12:00")
    assert window(s, "2026-01-05T06:00") == merged
    assert window(s, "2026-01-06T13:00") == merged  # inside Tuesday's window only: still the merged one
    assert iso(s.next_change(t("2026-01-05T06:00"))) == "2026-01-07T12:00"  # Tuesday's start skipped
    assert iso(s.next_change(t("2026-01-07T12:00"))) == "2026-01-12T00:00"


def test_touching_windows_merge() -> None:
    # Mon and Tue 00:00 for 1d: [Mon 5, Tue 6) and [Tue 6, Wed 7) touch, so active() never blinks.
    s = weekly(["mon", "tue"], "00:00", "1d")
    assert window(s, "2026-01-06T00:00") == ("2026-01-05T00:00", "2026-01-07T00:00")
    assert iso(s.next_change(t("2026-01-05T12:00"))) == "2026-01-07T00:00"


def test_overlapping_cron_windows_merge_within_and_across_days() -> None:
    # 08:00, 09:00, 10:00 for 90m each: [08:00, 11:30).
    s = cron("0 8-10 * * *", "90m")
    assert window(s, "2026-01-01T09:45") == ("2026-01-01T08:00", "2026-01-01T11:30")
    assert iso(s.next_change(t("2026-01-01T08:00"))) == "2026-01-01T11:30"
    assert iso(s.next_change(t("2026-01-01T11:30"))) == "2026-01-02T08:00"
    # 22:00 and 23:00 for 3h: [22:00, 01:00) ∪ [23:00, 02:00) = [22:00, 02:00) of the next day.
    s = cron("0 22,23 * * *", "3h")
    assert window(s, "2026-01-02T01:30") == ("2026-01-01T22:00", "2026-01-02T02:00")
    assert iso(s.next_change(t("2026-01-01T22:30"))) == "2026-01-02T02:00"


def test_windows_that_never_close_are_cut_at_the_horizon() -> None:
    now = t("2026-06-15T12:00")
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    for s in (cron("*/5 * * * *", "10m"), weekly(every_day, "00:00", "1d")):
        assert s.active(now)
        assert s.next_change(now) is None
        w = s.window_at(now)
        assert w is not None
        assert w[0] <= now - HORIZON_DAYS * DAY
        assert w[1] >= now + HORIZON_DAYS * DAY


def test_now_must_be_a_finite_time() -> None:
    s = cron("0 2 * * *", "1h")
    with pytest.raises(ValueError, match="time out of range"):
        s.active(math.nan)


# -------------------------------------------------------------------------------------------- describe


def test_describe() -> None:
    paris = weekly(["sun"], "02:00", "2h", "Europe/Paris")
    assert paris.describe() == "weekly sun 02:00 for 2h (Europe/Paris)"
    assert weekly(["sat", "sun"], "23:30", "90m").describe() == "weekly sat,sun 23:30 for 90m (UTC)"
    one_off = Schedule.model_validate({"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T04:00:00Z"})
    assert one_off.describe() == "2026-01-01T00:00:00.000Z → 2026-01-01T04:00:00.000Z"
    assert cron("0  2 * * 0", "2h").describe() == "cron '0 2 * * 0' for 2h (UTC)"  # spaces normalised


def test_schedules_are_frozen_and_hashable() -> None:
    s = cron("0 2 * * 0", "2h")
    assert hash(s) == hash(cron("0 2 * * 0", "2h"))
    with pytest.raises(ValidationError):
        s.cron = "0 3 * * 0"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ validation


def error(data: dict[str, Any]) -> str:
    """The first validation error as the ruleset loader shows it: ``location: reason``."""
    with pytest.raises(ValidationError) as info:
        Schedule.model_validate(data)
    err = info.value.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    reason = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {reason}" if where else reason


W = {"days": ["sun"], "at": "02:00", "duration": "2h"}
C = {"cron": "0 2 * * *", "duration": "1h"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cron": "0 25 * * *", "duration": "1h"}, "cron: field 2 (hour) value 25 is out of range 0-23"),
        ({"cron": "60 2 * * *", "duration": "1h"}, "cron: field 1 (minute) value 60 is out of range 0-59"),
        (
            {"cron": "0 2 0 * *", "duration": "1h"},
            "cron: field 3 (day-of-month) value 0 is out of range 1-31",
        ),
        ({"cron": "0 2 * 13 *", "duration": "1h"}, "cron: field 4 (month) value 13 is out of range 1-12"),
        ({"cron": "0 2 * * 8", "duration": "1h"}, "cron: field 5 (day-of-week) value 8 is out of range 0-7"),
        (
            {"cron": "0 2 * *", "duration": "1h"},
            "cron: expected 5 fields (minute hour day-of-month month day-of-week), got 4",
        ),
        ({"cron": "x 2 * * *", "duration": "1h"}, "cron: field 1 (minute) 'x' is not a number"),
        (
            {"cron": "0 2 * foo *", "duration": "1h"},
            "cron: field 4 (month) 'foo' is not a number or a name (jan..dec)",
        ),
        (
            {"cron": "0 2 * * mo", "duration": "1h"},
            "cron: field 5 (day-of-week) 'mo' is not a number or a name (sun..sat)",
        ),
        ({"cron": "0 jan * * *", "duration": "1h"}, "cron: field 2 (hour) 'jan' is not a number"),
        ({"cron": "0 5-3 * * *", "duration": "1h"}, "cron: field 2 (hour) range 5-3 is backwards"),
        ({"cron": "*/0 2 * * *", "duration": "1h"}, "cron: field 1 (minute) step must be at least 1"),
        ({"cron": "*/x 2 * * *", "duration": "1h"}, "cron: field 1 (minute) step 'x' is not a number"),
        (
            {"cron": "5/10 2 * * *", "duration": "1h"},
            "cron: field 1 (minute) '5/10': a step needs * or a range (write 5-59/10)",
        ),
        (
            {"cron": "0 2 1,,2 * *", "duration": "1h"},
            "cron: field 3 (day-of-month) has an empty list item in '1,,2'",
        ),
        ({"weekly": {**W, "days": ["mo"]}}, "weekly.days: 'mo' is not a weekday (mon..sun)"),
        ({"weekly": {**W, "days": []}}, "weekly.days: give at least one weekday (mon..sun)"),
        ({"weekly": {**W, "at": "24:00"}}, "weekly.at: '24:00' is not a time of day (HH:MM, 00:00 to 23:59)"),
        ({"weekly": {**W, "at": "2h"}}, "weekly.at: '2h' is not a time of day (HH:MM, 00:00 to 23:59)"),
        (
            {"weekly": {**W, "at": 1350}},  # what YAML makes of an unquoted 22:30
            'weekly.at: got the number 1350, which is how YAML reads an unquoted 22:30: write "22:30"',
        ),
        ({"weekly": {**W, "duration": 0}}, "weekly.duration: must be more than 0"),
        ({"weekly": {**W, "duration": "8d"}}, "weekly.duration: must be at most 7d, got 8d"),
        ({"weekly": {**W, "hour": 2}}, "weekly.hour: Extra inputs are not permitted"),
        ({}, "give exactly one of start/end, weekly, cron"),
        ({"timezone": "Europe/Paris"}, "give exactly one of start/end, weekly, cron"),
        ({"weekly": W, "cron": "0 2 * * *", "duration": "1h"}, "give exactly one of start/end, weekly, cron"),
        ({"start": 0, "end": 10, "cron": "0 2 * * *"}, "give exactly one of start/end, weekly, cron"),
        ({"start": "2026-01-01T04:00:00Z", "end": "2026-01-01T04:00:00Z"}, "end must be after start"),
        ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end must be after start"),
        ({"start": "2026-01-01T00:00:00Z"}, "end is required with start"),
        ({"end": "2026-01-01T00:00:00Z"}, "start is required with end"),
        (
            {"start": "2026-01-01T00:00:00", "end": "2026-01-02T00:00:00Z"},
            "start: RFC 3339 time needs an offset or Z: '2026-01-01T00:00:00'",
        ),
        (
            {"start": 0, "end": 1767225600000},
            "end: time 1767225600000 is after year 9999 (epoch milliseconds sent as seconds?)",
        ),
        ({"start": True, "end": 10}, "start: expected RFC 3339 time or epoch seconds, got boolean"),
        ({"start": 0, "end": 10, "duration": "1h"}, "duration is not allowed with start/end"),
        ({"weekly": W, "duration": "1h"}, "duration is not allowed with weekly (give weekly.duration)"),
        ({"cron": "0 2 * * *"}, "duration is required with cron"),
        ({"cron": "0 2 * * *", "duration": "0s"}, "duration: must be more than 0"),
        ({"cron": "0 2 * * *", "duration": "8d"}, "duration: must be at most 7d, got 8d"),
        ({**C, "timezone": "Mars/Base"}, "timezone: unknown timezone 'Mars/Base'"),
        ({**C, "timezone": "../etc"}, "timezone: unknown timezone '../etc'"),
        ({**C, "timezone": "europe/paris"}, "timezone: unknown timezone 'europe/paris'"),
    ],
)
def test_validation_errors(data: dict[str, Any], message: str) -> None:
    assert error(data) == message
