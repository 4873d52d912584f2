"""Logging: one structlog pipeline, configured once at start, JSON off a terminal and pretty on one.

``configure_logging(settings)`` sets the processor list (contextvars, level, UTC ISO timestamp,
exceptions, renderer) and the level filter. The same renderer formats the standard library's
records (aiohttp, aiomqtt, asyncio…), so the process writes one stream in one format.

Context travels in contextvars: ``with bound(incident_id=..., ne_id=...):`` adds those keys to every
line logged inside the block, in this task and the tasks it starts. ``log_transition(record)``
writes the one canonical line of an incident transition.

Loggers are not cached on first use, so ``structlog.testing.capture_logs()`` and a second
``configure_logging`` (tests) see every logger; the cost is a few microseconds per line, and the
engine logs per transition and per request, never per message.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Final, TextIO

import orjson
import structlog
from structlog.typing import Processor

from engine.service.config import LoggingSettings
from engine.service.terminal import printable

__all__ = ["RateLimited", "bound", "configure_logging", "log_transition"]

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_HANDLER_NAME: Final = "engine"  # our handler on the root logger, replaced by each configure_logging

_log = structlog.get_logger("engine.core.incidents")


def _dumps(obj: Any, **kw: Any) -> str:
    """orjson for structlog's JSONRenderer (which passes ``default=``); keys need not be strings."""
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, **kw).decode()


def _renderer(settings: LoggingSettings, stream: TextIO) -> tuple[list[Processor], bool]:
    """The processors that end the chain: (renderer and what it needs, is_json)."""
    as_json = settings.format == "json" or (settings.format == "auto" and not _isatty(stream))
    # On a terminal, text from the network (alarm fields, topics) must not drive the screen.
    safe: list[Processor] = [_printable_values] if _isatty(stream) else []
    if as_json:
        return [
            *safe,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ], True
    # ConsoleRenderer formats exceptions itself (and warns if format_exc_info ran before it); plain
    # tracebacks, since rich's would print local variables, passwords and tokens included.
    renderer = structlog.dev.ConsoleRenderer(
        colors=_isatty(stream), exception_formatter=structlog.dev.plain_traceback
    )
    return [*safe, renderer], False


def _printable_values(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Escape control characters in a line's text values (nested values are printed with repr,
    which escapes them already)."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = printable(value)
    return event_dict


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def configure_logging(settings: LoggingSettings, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library's root logger to write to ``stream`` (stderr).

    ``format``: ``json`` (one orjson object per line), ``console`` (aligned, coloured on a
    terminal), ``auto`` (console on a terminal, else JSON). Lines below ``level`` are dropped
    before any processor runs. Calling it again replaces the previous configuration.
    """
    out = sys.stderr if stream is None else stream
    level = _LEVELS[settings.level]
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    tail, _ = _renderer(settings, out)
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamper,
        structlog.processors.StackInfoRenderer(),
        *tail,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        context_class=dict,
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )

    # Records of the standard library (aiohttp, aiomqtt, asyncio) go through the same renderer.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


@contextmanager
def bound(**context: Any) -> Iterator[None]:
    """Add ``context`` (keys with a value of ``None`` are skipped) to every line logged in the block.

    Nested blocks stack; on exit the previous values come back. Bound in contextvars, so tasks
    started inside the block inherit it.
    """
    kw = {k: v for k, v in context.items() if v is not None}
    with structlog.contextvars.bound_contextvars(**kw):
        yield


def _get(record: Mapping[str, Any], *path: str) -> Any:
    node: Any = record
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def log_transition(record: Mapping[str, Any]) -> None:
    """The canonical line of one incident transition, at info: ``incident opened`` and its figures.

    Keys: ``incident_id``, ``transition`` (the record's ``event``; structlog's own ``event`` key
    holds the message), ``version``, ``priority``, ``score``, ``state``, ``root_ne_id``,
    ``root_alarm_id``, ``customers`` (total), ``alarms`` and ``suppressed`` (counts), and for a
    resolved record ``resolution`` and ``merged_into`` when present. Missing parts read as null.
    """
    event = record.get("event")
    alarms = record.get("alarms")
    suppressed = record.get("suppressed")
    fields: dict[str, Any] = {
        "incident_id": record.get("incident_id"),
        "transition": event,
        "version": record.get("version"),
        "priority": record.get("priority"),
        "score": record.get("score"),
        "state": record.get("state"),
        "root_ne_id": _get(record, "root_cause", "ne_id"),
        "root_alarm_id": _get(record, "root_cause", "alarm_id"),
        "customers": _get(record, "impact", "customers", "total"),
        "alarms": len(alarms) if isinstance(alarms, list) else None,
        "suppressed": len(suppressed) if isinstance(suppressed, list) else None,
    }
    if event == "resolved":
        fields["resolution"] = record.get("resolution")
        if "merged_into" in record:
            fields["merged_into"] = record["merged_into"]
    _log.info(f"incident {event}", **fields)


class RateLimited:
    """At most ``burst`` lines per ``interval`` seconds of one kind; the rest are counted.

    ``allow(now)`` says whether to log this one; when it does after some were suppressed, the
    caller adds ``suppressed=take()`` to the line it writes, so every rejection is accounted for.
    ``pending(now)`` returns the count to report alone when the interval is over and nothing came
    to carry it (the daemon calls it once a second)."""

    def __init__(self, *, burst: int = 10, interval: float = 10.0) -> None:
        if burst < 1 or interval <= 0:
            raise ValueError(f"burst must be at least 1 and interval positive, got {burst} and {interval}")
        self.burst = burst
        self.interval = interval
        self._window = float("-inf")
        self._logged = 0
        self.suppressed = 0  # since the last line that reported them

    def allow(self, now: float) -> bool:
        if now - self._window >= self.interval:
            self._window, self._logged = now, 0
        if self._logged < self.burst:
            self._logged += 1
            return True
        self.suppressed += 1
        return False

    def take(self) -> int:
        """The count suppressed since the last report, reset to 0."""
        n, self.suppressed = self.suppressed, 0
        return n

    def pending(self, now: float) -> int:
        """Suppressed lines to report on their own once the current interval is over (else 0)."""
        if self.suppressed and now - self._window >= self.interval:
            self._window, self._logged = now, 0
            return self.take()
        return 0
