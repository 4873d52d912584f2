"""Logging: renderer choice, level filtering, timestamps, exceptions, context binding, transitions."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

import orjson
import pytest
import structlog
from structlog.testing import capture_logs

from engine.service.config import LoggingSettings
from engine.service.logs import RateLimited, bound, configure_logging, log_transition

Level = Literal["debug", "info", "warning", "error"]
Format = Literal["auto", "json", "console"]

OPENED: dict[str, Any] = {
    "incident_id": "inc-8d44853b8cfe8679",
    "event": "opened",
    "version": 1,
    "time": "2026-01-01T00:00:31.200Z",
    "priority": 1,
    "score": 91.3,
    "state": "outage",
    "root_cause": {"ne_id": "agg-3", "alarm_id": "agg-3:lossOfSignal:port 1/1/1", "severity": "critical"},
    "impact": {"elements": 51, "customers": {"total": 1000, "by_tier": {"gold": 80}}},
    "alarms": ["agg-3:lossOfSignal:port 1/1/1", "olt-001:linkDown", "olt-002:linkDown"],
    "suppressed": [{"alarm_id": "olt-001:linkDown"}, {"alarm_id": "olt-002:linkDown"}],
}


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each test starts from structlog's defaults and leaves the root logger as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def configured(level: Level = "info", fmt: Format = "json", stream: io.StringIO | None = None) -> io.StringIO:
    out = io.StringIO() if stream is None else stream
    configure_logging(LoggingSettings(level=level, format=fmt), stream=out)
    return out


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """The JSON objects written to ``stream``, one per line."""
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_have_level_utc_timestamp_and_fields() -> None:
    """format json: one JSON object per line with event, level, an ISO UTC timestamp and the fields."""
    out = configured()
    structlog.get_logger("t").info("hello", ne_id="agg-3", count=2, ratio=0.5)
    [line] = lines(out)
    assert {k: line[k] for k in ("event", "level", "ne_id", "count", "ratio")} == {
        "event": "hello",
        "level": "info",
        "ne_id": "agg-3",
        "count": 2,
        "ratio": 0.5,
    }
    assert line["timestamp"].endswith("Z")
    assert datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).utcoffset() is not None


@pytest.mark.parametrize(
    ("fmt", "stream", "as_json"),
    [
        ("json", io.StringIO(), True),
        ("json", Terminal(), True),
        ("auto", io.StringIO(), True),
        ("auto", Terminal(), False),
        ("console", io.StringIO(), False),
    ],
)
def test_renderer_follows_format_and_terminal(fmt: Format, stream: io.StringIO, as_json: bool) -> None:
    """auto is JSON off a terminal and console on one; json and console are what they say."""
    configured(fmt=fmt, stream=stream)
    structlog.get_logger().warning("disk almost full", pct=91)
    text = stream.getvalue()
    assert "disk almost full" in text
    if as_json:
        assert orjson.loads(text)["pct"] == 91
    else:
        assert not text.startswith("{")
        assert "pct" in text


def test_console_off_a_terminal_has_no_colour_codes() -> None:
    """The console renderer writes plain text to a stream that is not a terminal."""
    out = configured(fmt="console")
    structlog.get_logger().error("boom", x=1)
    assert "\x1b[" not in out.getvalue()


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("debug", ["debug", "info", "warning", "error"]),
        ("info", ["info", "warning", "error"]),
        ("warning", ["warning", "error"]),
        ("error", ["error"]),
    ],
)
def test_lines_below_the_level_are_dropped(level: Level, shown: list[str]) -> None:
    """Only lines at or above the configured level are written."""
    out = configured(level=level)
    log = structlog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["level"] for line in lines(out)] == shown


def test_exceptions_are_formatted_into_the_json_line() -> None:
    """log.exception in JSON writes the traceback as a string field of the same line."""
    out = configured()
    try:
        raise ValueError("bad frame")
    except ValueError:
        structlog.get_logger().exception("decode failed")
    [line] = lines(out)
    assert line["level"] == "error"
    assert "Traceback" in line["exception"]
    assert "ValueError: bad frame" in line["exception"]


def test_bound_context_is_added_and_removed() -> None:
    """bound() adds its keys to every line inside the block (None skipped), and nested blocks restore."""
    out = configured()
    log = structlog.get_logger()
    with bound(incident_id="inc-1", ne_id=None):
        log.info("outer")
        with bound(incident_id="inc-2", ne_id="olt-7"):
            log.info("inner")
        log.info("outer again")
    log.info("outside")
    got = [(line["event"], line.get("incident_id"), line.get("ne_id")) for line in lines(out)]
    assert got == [
        ("outer", "inc-1", None),
        ("inner", "inc-2", "olt-7"),
        ("outer again", "inc-1", None),
        ("outside", None, None),
    ]


async def test_bound_context_follows_tasks() -> None:
    """A task started inside a bound() block logs with the block's context."""
    out = configured()

    async def work() -> None:
        structlog.get_logger().info("in task")

    with bound(incident_id="inc-9"):
        task = asyncio.create_task(work())
    await task
    assert lines(out)[0]["incident_id"] == "inc-9"


def test_standard_library_records_use_the_same_renderer() -> None:
    """Records of stdlib loggers (aiohttp, aiomqtt) come out as the same JSON lines, with the logger name."""
    out = configured(level="info")
    with bound(ne_id="olt-7"):
        logging.getLogger("aiohttp.server").warning("Error handling request from %s", "10.0.0.1")
    logging.getLogger("aiomqtt").debug("below the level")
    [line] = lines(out)
    assert line["event"] == "Error handling request from 10.0.0.1"
    assert (line["level"], line["logger"], line["ne_id"]) == ("warning", "aiohttp.server", "olt-7")
    assert line["timestamp"].endswith("Z")


def test_configuring_again_replaces_the_previous_setup() -> None:
    """A second configure_logging writes to the new stream only, and does not duplicate stdlib lines."""
    first = configured()
    second = configured()
    structlog.get_logger().info("once")
    logging.getLogger("x").warning("stdlib once")
    assert first.getvalue() == ""
    assert [line["event"] for line in lines(second)] == ["once", "stdlib once"]


def test_transition_line_has_the_canonical_fields() -> None:
    """log_transition writes one info line per transition with the record's key figures."""
    with capture_logs() as logs:
        log_transition(OPENED)
    assert logs == [
        {
            "event": "incident opened",
            "log_level": "info",
            "incident_id": "inc-8d44853b8cfe8679",
            "transition": "opened",
            "version": 1,
            "priority": 1,
            "score": 91.3,
            "state": "outage",
            "root_ne_id": "agg-3",
            "root_alarm_id": "agg-3:lossOfSignal:port 1/1/1",
            "customers": 1000,
            "alarms": 3,
            "suppressed": 2,
        }
    ]


def test_resolved_transition_says_how() -> None:
    """A resolved record's line adds the resolution, and merged_into when it was merged."""
    record = dict(
        OPENED, event="resolved", version=4, resolution="merged", merged_into="inc-0000000000000001"
    )
    with capture_logs() as logs:
        log_transition(record)
        log_transition(dict(OPENED, event="resolved", resolution="cleared"))
    assert logs[0]["event"] == "incident resolved"
    assert (logs[0]["resolution"], logs[0]["merged_into"]) == ("merged", "inc-0000000000000001")
    assert (logs[1]["resolution"], "merged_into" in logs[1]) == ("cleared", False)


def test_transition_of_a_partial_record_logs_nulls() -> None:
    """Missing parts of a record read as null instead of failing: logging never breaks the engine."""
    with capture_logs() as logs:
        log_transition({"incident_id": "inc-1", "event": "updated", "root_cause": None, "impact": {}})
    [line] = logs
    assert line["incident_id"] == "inc-1"
    assert (line["root_ne_id"], line["customers"], line["alarms"], line["suppressed"]) == (None,) * 4


def test_transition_line_in_json_includes_bound_context() -> None:
    """Through the real JSON pipeline the transition line is one object, with contextvars merged in."""
    out = configured()
    with bound(request_id="r-1"):
        log_transition(OPENED)
    [line] = lines(out)
    assert (line["event"], line["transition"], line["customers"], line["request_id"]) == (
        "incident opened",
        "opened",
        1000,
        "r-1",
    )


def test_console_tracebacks_show_no_local_variables() -> None:
    """The console renderer prints a plain traceback: local variables (a password, say) never appear."""
    out = configured(fmt="console")
    password = "hunter2"
    try:
        raise ConnectionError("broker refused " + "credentials")
    except ConnectionError:
        structlog.get_logger().exception("connect failed")
    text = out.getvalue()
    assert "ConnectionError: broker refused credentials" in text
    assert password not in text


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_text_values_are_escaped_on_a_terminal(fmt: Format) -> None:
    """On a terminal, a logged value holding escape sequences (rejected input, a topic) is written
    escaped in either format; off a terminal the JSON line keeps the value exactly."""
    out = configured(fmt=fmt, stream=Terminal())
    structlog.get_logger().warning("input rejected", payload="\x1b[2J\x9b\u202e")
    text = out.getvalue()
    assert "\x1b[2J" not in text
    assert "\x9b" not in text
    assert "\u202e" not in text
    assert "x1b[2J" in text
    plain = configured(fmt="json")
    structlog.get_logger().warning("input rejected", payload="\x9b")
    assert lines(plain)[0]["payload"] == "\x9b"


def test_rate_limited_counts_what_it_suppresses() -> None:
    """Up to `burst` lines per interval; the rest are counted, reported by the next allowed line
    (`take`) or alone once the interval is over (`pending`)."""
    rl = RateLimited(burst=2, interval=10.0)
    assert [rl.allow(t) for t in (0.0, 1.0, 2.0, 3.0, 4.0)] == [True, True, False, False, False]
    assert rl.pending(9.0) == 0  # the interval is not over
    assert rl.allow(10.0)
    assert rl.take() == 3
    assert rl.allow(10.5)
    assert not rl.allow(11.0)
    assert not rl.allow(11.5)
    assert rl.pending(25.0) == 2
    assert rl.pending(40.0) == 0
    with pytest.raises(ValueError, match="burst"):
        RateLimited(burst=0)
