"""The engine's exceptions. Few, and each carries the data needed to say what went wrong and where.

Anything else escaping the core is a bug.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidMessage(EngineError):
    """An inbound message was rejected.

    ``errors`` is a list of ``(field, reason)``; ``field`` is a dotted path into the payload
    (``metrics.mos``, ``samples[3].time``) or ``""`` for the message as a whole.
    """

    def __init__(self, topic: str, errors: list[tuple[str, str]]) -> None:
        self.topic = topic
        self.errors = errors
        detail = "; ".join(f"{f}: {r}" if f else r for f, r in errors)
        super().__init__(f"invalid message on {topic!r}: {detail}")


class ConfigError(EngineError):
    """A configuration, topology or ruleset file is wrong.

    ``source`` names the file (or ``<inline>``), ``location`` the item inside it (``elements[3]``,
    ``rules[2].correlate.window``, a line number), ``reason`` what is wrong.
    """

    def __init__(self, source: str, location: str, reason: str) -> None:
        self.source = source
        self.location = location
        self.reason = reason
        where = f"{source}: {location}" if location else source
        super().__init__(f"{where}: {reason}")


class TopologyError(ConfigError):
    """The topology and inventory file is wrong (unknown reference, cycle, duplicate…)."""


class RulesetError(ConfigError):
    """A ruleset is wrong. ``line`` is the 1-based line in the YAML file when known."""

    def __init__(
        self, source: str, location: str, reason: str, *, line: int | None = None, rule: str | None = None
    ) -> None:
        self.line = line
        self.rule = rule
        self.more: list[
            RulesetError
        ] = []  # further errors in the same file (all are listed by `rules check`)
        loc = location
        if rule:
            loc = f"rule {rule!r}, {loc}" if loc else f"rule {rule!r}"
        if line is not None:
            loc = f"line {line}: {loc}" if loc else f"line {line}"
        super().__init__(source, loc, reason)


class RuleEngineError(EngineError):
    """durable-rules failed in a way that is not "no rule matched" (an action raised, a bad handle…)."""
