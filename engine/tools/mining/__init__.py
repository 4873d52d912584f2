"""Rule mining: learn correlation rules from the network's own alarm history (``engine rules mine``).

``mine_lines`` reads replay lines (the ``engine replay`` format, or the daemon's journal turned into
them by ``journal_lines``), validates them as the engine would,
streams every raise through :class:`engine.tools.mining.stats.CoOccurrence` and selects rules
(:func:`engine.tools.mining.rules.select`). Memory is bounded by the number of alarm types and the recent
history, not by the length of the log. Method and figures: docs/mining.md.
"""

from __future__ import annotations

import heapq
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from engine.adapters.store import check_schema, journal_packed, journal_payload
from engine.errors import ConfigError, InvalidMessage
from engine.model.messages import DEFAULT_ROUTES, Decoder, Routes, message_time, payload_bytes
from engine.model.timeutil import format_time, parse_duration, parse_time
from engine.model.topology import Topology, load_topology
from engine.rules.schema import ruleset_from_data
from engine.tools.mining.rules import (
    ORIENTATIONS,
    Mined,
    Thresholds,
    effects_document,
    ruleset_document,
    select,
)
from engine.tools.mining.stats import CoOccurrence, relations_of
from engine.tools.replay import event_time

__all__ = ["Journal", "MineStats", "journal_lines", "mine_file", "mine_lines"]


@dataclass
class MineStats:
    lines: int = 0
    raises: int = 0
    clears: int = 0
    other: int = 0  # KPI samples and other messages: not alarms
    invalid: int = 0
    late: int = 0  # more than the reorder tolerance out of order: used at the current time
    invalid_examples: list[str] = field(default_factory=list)


def mine_lines(
    lines: Iterable[bytes | str],
    topology: Topology,
    *,
    max_lag: float = 600.0,
    shift: float = 3600.0,
    hops: int = 2,
    reorder_tolerance: float = 5.0,
    thresholds: Thresholds | None = None,
    until: float | None = None,
    routes: Routes = DEFAULT_ROUTES,
    patterns: bool | None = None,
) -> tuple[Mined, MineStats]:
    """Mine rules from replay lines; raises at or after ``until`` (epoch seconds) are ignored.
    ``routes``: which topics hold alarms (the daemon's ``mqtt.alarm_topics`` for its journal).
    ``patterns``: keep what the joint fit needs (default: when ``thresholds.explain_away``), so that
    the counts can be selected again with it."""
    decoder = Decoder(routes=routes, known_elements=topology.elements)
    th = thresholds or Thresholds()
    co = CoOccurrence(
        topology,
        max_lag=max_lag,
        shift=shift,
        hops=hops,
        patterns=th.explain_away if patterns is None else patterns,
    )
    stats = MineStats()
    pending: list[tuple[float, int, str, str]] = []
    clock = -float("inf")
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        stats.lines += 1
        try:
            line = orjson.loads(raw)
            if not isinstance(line, dict):
                raise InvalidMessage("", [("", "expected a JSON object per line")])
            topic, payload = line.get("topic"), line.get("payload")
            if not isinstance(topic, str):
                raise InvalidMessage("", [("topic", "a string is required")])
            if line.get("time") is not None:  # the line's own time, as the replay refuses it
                try:
                    message_time(line["time"])
                except ValueError as exc:
                    raise InvalidMessage("", [("time", str(exc))]) from None
            decoded = decoder.decode(topic, payload_bytes(payload))
        except (orjson.JSONDecodeError, InvalidMessage, ValueError) as exc:
            stats.invalid += 1
            if len(stats.invalid_examples) < 5:
                stats.invalid_examples.append(f"line {n}: {exc}")
            continue
        alarm = decoded.alarm
        if alarm is None:
            stats.other += 1
            continue
        if alarm.is_clear:
            stats.clears += 1
            continue
        t = event_time(line)
        t = alarm.event_time if t is None else t
        if until is not None and t >= until:
            continue
        stats.raises += 1
        if t < clock:
            stats.late += 1
            t = clock
        heapq.heappush(pending, (t, n, alarm.ne_id, alarm.probable_cause))
        while pending and pending[0][0] <= t - reorder_tolerance:
            ready = heapq.heappop(pending)
            clock = ready[0]
            co.add(ready[0], ready[2], ready[3])
    while pending:
        ready = heapq.heappop(pending)
        co.add(ready[0], ready[2], ready[3])
    return select(co.close(), th), stats


def _nothing_mined(stats: MineStats, th: Thresholds, out: Path) -> str:
    """Why no rule was mined, in terms of the input and the thresholds."""
    if stats.raises == 0:
        counts = (
            f"{stats.lines} lines: {stats.invalid} invalid, {stats.clears} clears, {stats.other} not alarms"
            if stats.lines
            else "not one line"
        )
        first = f"; {stats.invalid_examples[0]}" if stats.invalid_examples else ""
        return f"no alarm raised in the events ({counts}{first}): nothing written to {out}"
    return (
        f"no rule passed the thresholds ({stats.raises} raises; --min-support {th.min_support},"
        f" --min-confidence {th.min_confidence:g}, --min-lift {th.min_lift:g}, --min-z {th.min_z:g}):"
        f" nothing written to {out}; lower them, or mine a longer history"
    )


def _lines(path: Path) -> Iterator[bytes]:
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read events: {exc.strerror or exc}") from None
    with fh:
        yield from fh


@dataclass
class Journal:
    """What was read from a store's journal: messages, and how many of them the latest snapshot
    already covers (history kept by ``store.keep_journal``)."""

    path: Path
    messages: int = 0
    before_snapshot: int = 0
    snapshot_seq: int | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "store": str(self.path),
            "messages": self.messages,
            "messages_before_the_snapshot": self.before_snapshot,
        }


def journal_lines(journal: Journal, *, chunk: int = 1000) -> Iterator[bytes]:
    """The messages the daemon journaled in ``journal.path`` (its SQLite store), oldest first, as
    replay lines (``{"topic", "payload"}``: the alarm's own time is used, not the arrival time).
    Read-only, in chunks, so it is safe while the daemon runs and memory stays bounded. The store
    keeps the entries after its latest snapshot, and those before it for ``store.keep_journal``."""
    p = journal.path
    if not p.exists():
        raise ConfigError(str(p), "", "no such store (the daemon's `store.path`)")
    try:
        db = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigError(str(p), "", f"cannot open the store: {exc}") from None
    try:
        check_schema(db, p)
        row = db.execute("SELECT upto_seq FROM snapshot WHERE id = 1").fetchone()
        journal.snapshot_seq = None if row is None else int(row[0])
        seq = 0
        packed = journal_packed(db)
        while True:
            rows = db.execute(
                f"SELECT seq, topic, payload, {packed} FROM journal"
                " WHERE seq > ? AND kind IN ('msg', 'msg-held') ORDER BY seq LIMIT ?",
                (seq, chunk),
            ).fetchall()
            for seq, topic, stored, zipped in rows:
                payload = journal_payload(stored, zipped, path=p, seq=seq)
                journal.messages += 1
                if journal.snapshot_seq is not None and seq <= journal.snapshot_seq:
                    journal.before_snapshot += 1
                yield orjson.dumps({"topic": topic, "payload": orjson.Fragment(payload)})
            if len(rows) < chunk:
                return
    except sqlite3.Error as exc:
        raise ConfigError(str(p), "", f"not an engine store: {exc}") from None
    finally:
        db.close()


def _check(name: str, ok: bool, reason: str) -> None:
    if not ok:
        raise ConfigError(name, "", reason)


def mine_file(
    events: Path | Journal,
    topology_path: Path,
    *,
    out: Path,
    routes: Routes = DEFAULT_ROUTES,
    effects_out: Path | None = None,
    name: str = "mined",
    until: str | None = None,
    max_lag: str = "10m",
    hops: int = 2,
    min_support: int = 5,
    min_confidence: float = 0.005,
    min_lift: float = 1.5,
    min_z: float = 3.0,
    orient: str = "topology",
    explain_away: bool = False,
) -> dict[str, Any]:
    """``engine rules mine``: read (a replay file, or a daemon's store's journal), mine, write the
    ruleset (and the effects); the report as a dict.

    Bad arguments and unreadable files raise ``ConfigError`` naming the option or the file.
    """
    try:
        lag = parse_duration(max_lag)
    except ValueError as exc:
        raise ConfigError("--max-lag", "", str(exc)) from None
    _check("--max-lag", 0 < lag <= 3600, f"must be within 1s..1h, got {max_lag}")
    _check("--hops", 1 <= hops <= 5, f"must be within 1..5, got {hops}")
    _check("--min-support", min_support >= 1, f"must be at least 1, got {min_support}")
    _check("--min-confidence", 0 <= min_confidence <= 1, f"must be within 0..1, got {min_confidence}")
    _check("--min-lift", min_lift >= 1, f"must be at least 1, got {min_lift}")
    _check("--min-z", 0 <= min_z <= 100, f"must be within 0..100, got {min_z}")
    _check("--orient", orient in ORIENTATIONS, f"must be one of {', '.join(ORIENTATIONS)}, got {orient}")
    end: float | None = None
    if until is not None:
        try:
            end = parse_time(until)
        except ValueError as exc:
            raise ConfigError("--until", "", str(exc)) from None
    try:
        ruleset_from_data({"name": name, "rules": [{"name": "x", "group": {"by": "ne_id"}}]}, "--name")
    except ConfigError as exc:
        raise ConfigError("--name", "", exc.reason) from None
    topology = load_topology(topology_path)
    started = time.perf_counter()
    thresholds = Thresholds(
        min_support=min_support,
        min_confidence=min_confidence,
        min_lift=min_lift,
        min_z=min_z,
        orient=orient,
        explain_away=explain_away,
    )
    source = journal_lines(events) if isinstance(events, Journal) else _lines(events)
    mined, stats = mine_lines(
        source,
        topology,
        max_lag=lag,
        shift=max(3600.0, 6 * lag),
        hops=hops,
        thresholds=thresholds,
        until=end,
        routes=routes,
    )
    what = f"--store {events.path.name}" if isinstance(events, Journal) else events.name
    if not mined.rules:  # the input or the thresholds, not the ruleset: say which, write nothing
        read = str(events.path if isinstance(events, Journal) else events)
        raise ConfigError(read, "", _nothing_mined(stats, thresholds, out))
    params: dict[str, Any] = {"lead": thresholds.lead}
    params["orient"] = orient
    params["explain_away"] = explain_away
    document = ruleset_document(mined, name=name, source=what, params=params)
    ruleset_from_data(document, str(out))  # what we write must load: a bug here is not the user's
    header = (
        f"# Mined by `engine rules mine {what} --topology {topology_path.name}`: review before use.\n"
        "# Every rule: support = symptoms preceded by the root in the relation within the window;\n"
        "# confidence = support / raises of the symptom type; lift = (support + 1) over (the same\n"
        "# count one hour earlier + 1) (time-shifted baseline); the figures are within the lag bound\n"
        "# of highest lift among those with enough support and excess (z), and each rule's window is\n"
        "# the bound where the support most exceeds twice its baseline. Method: docs/mining.md.\n"
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(header + yaml.safe_dump(document, sort_keys=False, width=100), encoding="utf-8")
        if effects_out is not None:
            effects_out.parent.mkdir(parents=True, exist_ok=True)
            effects_out.write_text(
                "# Learned by `engine rules mine`: alarm types that behave as element-down roots.\n"
                + yaml.safe_dump(effects_document(mined), sort_keys=False),
                encoding="utf-8",
            )
    except OSError as exc:
        raise ConfigError(str(exc.filename or out), "", f"cannot write: {exc.strerror or exc}") from None
    c = mined.counts
    journal = {"journal": events.to_record()} if isinstance(events, Journal) else {}
    return {
        **journal,
        "lines": stats.lines,
        "raises": stats.raises,
        "clears": stats.clears,
        "other": stats.other,
        "invalid": stats.invalid,
        "invalid_examples": stats.invalid_examples,
        "late": stats.late,
        "first": None if c.first_time is None else format_time(c.first_time),
        "last": None if c.last_time is None else format_time(c.last_time),
        "alarm_types": len(c.raises),
        "elements": c.elements,
        "evidence_by_relation": relations_of(c),
        "rules": len(mined.rules),
        "cross_type_rules": sum(1 for r in mined.rules if r.root != r.symptom),
        "neighbour_rules_not_written": len(mined.unexpressed),
        "explained_away": mined.explained_away if explain_away else None,
        "patterns": len(c.patterns),
        "patterns_past_the_limit": c.patterns_dropped,
        "down_roots": [r.probable_cause for r in mined.roots],
        "out": str(out),
        "effects_out": None if effects_out is None else str(effects_out),
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
