"""Replay: drive the core from a JSON-lines file on virtual time.

Each input line is ``{"topic": "...", "payload": {...}}`` (optionally ``"time"``: RFC 3339 or epoch
seconds, which overrides the time read from the payload; a line whose ``time`` does not parse is a
bad line, counted and dead-lettered with the reason). The clock is the events' own time: an
alarm's ``event_time`` (TMF642: ``alarmClearedTime``/``alarmRaisedTime``), a sample's ``time``.
Events up to ``reorder_tolerance`` seconds out of order are re-sorted before they reach the core;
later ones are still applied, at the current clock, and counted as late. Timers fire at their due
times between events. At the end of input the clock advances until nothing is pending, so the final
``resolved`` records appear. Same input → byte-identical output.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from engine.core.incidents import IncidentRecord
from engine.core.pipeline import Decisions, Pipeline
from engine.errors import InvalidMessage
from engine.model.messages import MAX_TIME, dead_letter_record, message_time, payload_bytes
from engine.model.timeutil import parse_text, parse_time

_heappush, _heappop = heapq.heappush, heapq.heappop  # (per event: no module attribute read)
# (``orjson.loads`` and ``orjson.dumps`` read once: the compiled core reads a module's attribute
# through ``getattr`` each time, about 270 instructions, twice per line)
_loads: Final = orjson.loads
_dumps: Final = orjson.dumps


@dataclass
class ReplayStats:
    lines: int = 0
    events: int = 0
    bad_lines: int = 0
    late: int = 0
    records: int = 0
    dead_letters: int = 0
    wall_seconds: float = 0.0
    first_time: float | None = None
    last_time: float | None = None
    bad_line_examples: list[str] = field(default_factory=list)


def event_time(line: Mapping[str, Any]) -> float | None:
    """The virtual time of one replay line, or None when it carries none that parses within
    ``0..MAX_TIME`` (the end of year 9999: a time past it is no clock the core can run on or
    write; the core refuses such an event in words, as one without a time). A line's own ``time``,
    when present, is its time: one that does not parse gives None (the replay refuses that line as
    a bad one, ``message_time`` saying why), not the payload's time."""
    value = line.get("time")
    if value is not None:
        try:
            return message_time(value)
        except ValueError:
            return None
    payload = line.get("payload")
    if isinstance(payload, dict) and (t := _payload_time(payload)) is not None:
        return t  # the common line: a payload whose ``event_time`` parses
    return _search_time(line)


def _payload_time(payload: dict[str, Any]) -> float | None:
    """``event_time``'s common case: the payload's ``event_time`` as a string that parses within
    ``0..MAX_TIME``; None otherwise (``_search_time`` then tries every field in order). (A ``dict``,
    as orjson parses it: the compiled core reads a ``dict`` directly, any other mapping's ``get``
    through a method call.)"""
    if isinstance(value := payload.get("event_time"), str):
        try:
            if (t := parse_text(value)) <= MAX_TIME:  # ``parse_time`` of a string
                return t
        except ValueError:
            pass
    return None


def _search_time(line: Mapping[str, Any]) -> float | None:
    """``event_time`` of a line without its own ``time``: the first of the payload's time fields
    that parses."""
    candidates: list[Any] = []
    payload = line.get("payload")
    if isinstance(payload, Mapping):
        candidates += [
            payload.get("event_time"),
            payload.get("alarmClearedTime"),
            payload.get("alarmChangedTime"),
            payload.get("alarmRaisedTime"),
            payload.get("time"),
        ]
        samples = payload.get("samples")
        if isinstance(samples, list) and samples and isinstance(samples[0], Mapping):
            candidates.append(samples[0].get("time"))
    for value in candidates:
        if value is None:
            continue
        try:
            t = parse_time(value)
        except ValueError:
            continue
        if t <= MAX_TIME:
            return t
    return None


class Replayer:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        emit: Callable[[dict[str, Any]], None] | None = None,
        dead_letter: Callable[[dict[str, Any]], None] | None = None,
        on_record: Callable[[IncidentRecord], None] | None = None,
        emit_line: Callable[[bytes], object] | None = None,
    ) -> None:
        """``emit`` (if given) gets each incident record's JSON form (``IncidentRecord.to_wire``),
        ``emit_line`` (if given) its JSON line (``IncidentRecord.to_json``: ``dumps`` of that form,
        what ``engine replay`` writes), ``on_record`` (if given) the typed record first."""
        self.pipeline = pipeline
        self._on_record = on_record
        self.tolerance = pipeline.settings.reorder_tolerance
        self._emit = emit
        self._emit_line = emit_line
        self._dead = dead_letter
        # (time, sequence, topic, payload, the payload as parsed when it is a mapping)
        self._heap: list[tuple[float, int, str, bytes, dict[str, Any] | None]] = []
        self._untimed: list[tuple[str, bytes, dict[str, Any] | None]] = []
        self._seq = 0
        self._watermark = 0.0
        self.stats = ReplayStats()

    def run(self, lines: Iterable[bytes | str]) -> ReplayStats:
        started = time.perf_counter()
        stats, heap, tolerance = self.stats, self._heap, self.tolerance  # (read once, not per line)
        push, release = self._push, self._release
        for n, raw in enumerate(lines, start=1):
            stats.lines += 1
            if not raw or raw.isspace():  # (``not raw.strip()`` without a copy of each line)
                continue
            push(n, raw)
            while heap and heap[0][0] <= self._watermark - tolerance:
                release()
        for topic, early, parsed in self._untimed:  # nothing in the file had a time
            self._seq += 1
            heapq.heappush(self._heap, (0.0, self._seq, topic, early, parsed))
        self._untimed.clear()
        while self._heap:
            self._release()
        self._deliver(self.pipeline.drain())
        self.stats.wall_seconds = time.perf_counter() - started
        return self.stats

    def _push(self, n: int, raw: bytes | str) -> None:
        try:
            line = _loads(raw)
        except orjson.JSONDecodeError as exc:
            self._bad(n, raw, f"malformed JSON: {exc}")
            return
        if type(line) is not dict or type(topic := line.get("topic")) is not str or "payload" not in line:
            self._bad(n, raw, 'expected {"topic": "...", "payload": {...}}')
            return
        # The core sees the payload as bytes, as from MQTT, so every check (size included) applies
        # to them and dead letters show them. It is given the parsed payload too, so it does not parse
        # it again: orjson parses its own output back to an equal mapping, types included.
        body = line["payload"]
        try:
            payload = _dumps(body)
        except TypeError:  # nested deeper than orjson writes (``payload_bytes``: not per line)
            try:
                payload = payload_bytes(body)
            except ValueError as exc:
                self._bad(n, raw, str(exc))
                return
        parsed = body if type(body) is dict else None
        # ``event_time``, on the payload already in hand
        if (own := line.get("time")) is None:
            t = _payload_time(parsed) if parsed is not None else None
            if t is None:
                t = _search_time(line)
        else:  # the line's own time, which overrides the payload's: refused when it does not parse
            try:
                t = message_time(own)
            except ValueError as exc:
                self._bad(n, raw, str(exc), field="time")
                return
        stats = self.stats
        if t is None:  # the core will reject it with the precise reason, at the current time
            if stats.first_time is None:
                self._untimed.append((topic, payload, parsed))  # no time known yet: wait for one
                return
            t = self._watermark
        else:  # (``max`` and ``min`` as comparisons: per line)
            if t > self._watermark:  # noqa: PLR1730
                self._watermark = t
            first = stats.first_time
            if first is None or t < first:
                stats.first_time = t
            last = stats.last_time
            if last is None or t > last:
                stats.last_time = t
        if self._untimed:
            for early_topic, early, parsed_early in self._untimed:
                self._seq += 1
                _heappush(self._heap, (t, self._seq, early_topic, early, parsed_early))
            self._untimed.clear()
        self._seq = seq = self._seq + 1
        _heappush(self._heap, (t, seq, topic, payload, parsed))

    def _release(self) -> None:
        t, _, topic, payload, parsed = _heappop(self._heap)
        p = self.pipeline
        if (due := p.next_due()) is not None and due <= t:  # most events find no timer due first
            self._deliver(p.advance_to(t, due=due))  # (``due`` not asked again)
        stats = self.stats
        if t < p.clock:
            stats.late += 1
        stats.events += 1
        d = p.feed(topic, payload, t, parsed=parsed)
        if d.records or d.dead_letters:  # (``_deliver``'s own test, without its call: most events)
            self._deliver(d)

    def _deliver(self, d: Decisions) -> None:
        if not d.records and not d.dead_letters:
            return
        for rec in d.records:
            self.stats.records += 1
            if self._on_record is not None:
                self._on_record(rec)
            if self._emit is not None:
                self._emit(rec.to_wire())  # the edge: the record's JSON form, as replay output
            if self._emit_line is not None:
                self._emit_line(rec.to_json())  # its line, as ``dumps`` writes that form
        for dl in d.dead_letters:
            self.stats.dead_letters += 1
            if self._dead is not None:
                self._dead(dl.to_wire())  # the edge: the dead letter's JSON form

    def _bad(self, n: int, raw: bytes | str, reason: str, field: str = "") -> None:
        """Line ``n`` is refused (``field``: the part of the line at fault, as a message's field)."""
        self.stats.bad_lines += 1
        if len(self.stats.bad_line_examples) < 5:
            self.stats.bad_line_examples.append(
                f"line {n}: {field}: {reason}" if field else f"line {n}: {reason}"
            )
        if self._dead is not None:
            err = InvalidMessage(f"<replay line {n}>", [(field, reason)])
            self.stats.dead_letters += 1
            self._dead(dead_letter_record(err.topic, raw.rstrip(), err, now=self.pipeline.clock).to_wire())


def dumps(record: Mapping[str, Any]) -> bytes:
    """One JSON line (orjson writes the newline itself: no copy of the line to add it)."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
