"""The core's state outside the daemon, for reports and explanations: rebuilt from a replay file or
from the daemon's SQLite store (read-only: the latest snapshot, then the journal after it, exactly as
the daemon recovers), never touching a running daemon's files."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import orjson

from engine.adapters.store import check_schema, journal_packed, journal_payload
from engine.core.pipeline import Decisions, Pipeline
from engine.core.settings import CoreSettings
from engine.errors import ConfigError
from engine.model.timeutil import format_time
from engine.model.topology import Topology
from engine.rules.schema import Ruleset
from engine.tools.replay import Replayer, ReplayStats, event_time


def from_store(pipeline: Pipeline, path: str | Path, *, until: float | None = None) -> int:
    """Restore ``pipeline`` (fresh, built from the daemon's topology, rulesets and config) from the
    store at ``path``; returns how many journal entries were applied after the snapshot. With
    ``until`` (epoch seconds), as of that time: journal entries later than it are not applied and
    the timers due up to it fire; a store whose snapshot is later cannot go back (``ConfigError``)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(str(p), "", "no such store (the daemon's `store.path`)")
    try:
        db = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigError(str(p), "", f"cannot open the store: {exc}") from None
    try:
        check_schema(db, p)
        row = db.execute("SELECT state, upto_seq, time FROM snapshot WHERE id = 1").fetchone()
        after = 0
        if row is not None and until is not None and float(row[2]) > until:
            raise ConfigError(
                "--at",
                "",
                f"{p}: its latest snapshot is from {format_time(float(row[2]))}, after "
                f"{format_time(until)}; the state before it is not kept",
            )
        if row is not None:
            pipeline.restore(bytes(row[0]))
            after = int(row[1])
        applied = 0
        packed = journal_packed(db)
        for seq, kind, topic, stored, t, zipped in db.execute(
            f"SELECT seq, kind, topic, payload, time, {packed} FROM journal WHERE seq > ? ORDER BY seq",
            (after,),
        ):
            if until is not None and t > until:
                break
            payload = journal_payload(stored, zipped, path=p, seq=seq)  # (after: only what is read)
            applied += 1
            if kind in ("msg", "msg-held"):
                pipeline.feed(topic, payload, t, flush=kind == "msg")
            elif kind == "tick":
                pipeline.tick(t)
            elif kind == "ack":
                args = orjson.loads(payload)
                pipeline.acknowledge(args["incident_id"], args["by"], args.get("note"), t)
            elif kind == "silence":
                pipeline.silence(orjson.loads(payload), t)
    except sqlite3.Error as exc:
        raise ConfigError(str(p), "", f"not an engine store: {exc}") from None
    finally:
        db.close()
    if until is not None and until > pipeline.clock:
        pipeline.tick(until)
    return applied


def replay_pipeline(
    topology: Topology,
    rulesets: Sequence[Ruleset],
    settings: CoreSettings,
    lines: Iterable[bytes | str],
    *,
    until: float | None = None,
) -> ReplayedPipeline:
    """A pipeline fed with replay lines on the virtual clock, like ``engine replay``, but left as of
    the end of the input (no drain) or, with ``until``, as of that time: lines whose event time is
    later are skipped and timers due up to ``until`` fire. Its ``replay_stats`` count the lines read
    and refused. The caller closes the pipeline."""
    pipeline = ReplayedPipeline(topology, rulesets, settings)
    pipeline.until = until
    source = lines if until is None else _up_to(lines, until)
    try:
        pipeline.replay_stats = Replayer(pipeline).run(source)
    except BaseException:
        pipeline.close()
        raise
    return pipeline


class ReplayedPipeline(Pipeline):
    """The replayer drains at the end of its input; here the drain stops at ``until`` (or at once)."""

    until: float | None = None
    replay_stats: ReplayStats | None = None

    def drain(self, *, limit: float = 366 * 86400.0) -> Decisions:
        out = Decisions()
        if self.until is None:
            return out
        while (due := self.next_due()) is not None and due <= self.until:
            out.extend(self.tick(max(due, self.clock)))
        out.extend(self.tick(max(self.until, self.clock)))
        return out


def _up_to(lines: Iterable[bytes | str], until: float) -> Iterator[bytes | str]:
    for raw in lines:
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            yield raw  # the replayer reports it
            continue
        t = event_time(line) if isinstance(line, dict) else None
        if t is None or t <= until:
            yield raw
