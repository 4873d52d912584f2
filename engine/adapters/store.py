"""The daemon's one SQLite file: the input journal, the core snapshot, incident records and the outbox.

Theory of operation
-------------------
The core task journals every input (``append``) before acting on it; MQTT messages are acknowledged
only from ``on_durable``, which runs right after the commit that holds them. Incident records go to
``incidents`` (latest version per incident, for the API), to ``incident_versions`` (a summary of
every version, for the dashboard's timeline) and to ``outbox`` (one row per receiver,
``UNIQUE(receiver, incident_id, version)``: re-enqueueing a transition after a crash and replay is a
no-op). Delivery workers read the outbox with ``due`` and mark rows ``delivered``/``retry``/``dead``.
Only the head of an incident's queue (its lowest pending version) has a ``next_attempt``; the
versions behind it wait with NULL until it is delivered or dead. So each incident reaches a receiver
in version order, and ``due``/``next_due_time`` are index range scans however long the backlog.

One connection, used only from the event-loop thread: sqlite3 inline is fast enough (tens of
thousands of commits per second) and keeps every write in one place. Every write is applied to the
connection at once (reads see it) but committed only by ``commit()``, which the periodic task calls
every ``commit_interval`` while something is buffered: one transaction per batch. A ``kill -9``
loses only the uncommitted batch; its journal entries were never acknowledged, so MQTT redelivers
them and the replay regenerates the same records (ids and versions are deterministic). A journaled
payload of ``PACK_FROM`` bytes or more (a batch of KPI samples) is kept compressed (raw deflate,
the ``packed`` column) and read back as it came.

WAL with ``synchronous=NORMAL``: a commit survives a crash of the process (``kill -9``, OOM); a
power cut or kernel crash may roll back the last commits before the WAL reached the disk, and with
them inputs the broker already considers delivered. That is the documented price of NORMAL.

Checkpoints (copying the WAL back into the database file, two fsyncs each) run on a thread of
their own (``_Checkpointer``: its own connection, ``PRAGMA wal_checkpoint(PASSIVE)`` every
``CHECKPOINT_EVERY`` seconds; sqlite3 releases the GIL while it works), not inside the commit that
crossed SQLite's 1,000-page mark: such a commit blocked the core task 10–70 ms, a latency spike for
every message behind it. A passive checkpoint never waits for the writer, so the writer never waits
for it; should it fall behind (a disk slower than the feed), the connection's own automatic
checkpoint at ``FALLBACK_CHECKPOINT_PAGES`` bounds the WAL as before, on the core task.

The TMF642 API keeps its own state here too (``tmf642_*`` tables: acknowledgements and comments by
alarm id, task resources, hub subscriptions), written from its HTTP handlers on the same loop and
committed before they answer.

Schema versions live in ``meta``; a file written by a newer engine is refused with ``StoreError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import orjson
import structlog

from engine.errors import EngineError
from engine.model.messages import DeadLetter
from engine.model.timeutil import parse_time


class StoredRecord(Protocol):
    """What ``Store.record`` needs of an incident record: the core's ``IncidentRecord``, or a
    ``WireRecord`` (a record already in its JSON form: read back, or received from another engine)."""

    @property
    def incident_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def event(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def time(self) -> float: ...
    def to_wire(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class WireRecord:
    """An incident record in its JSON form, with the fields the store indexes read from it."""

    wire: Mapping[str, Any]

    @property
    def incident_id(self) -> str:
        return str(self.wire["incident_id"])

    @property
    def version(self) -> int:
        return int(self.wire["version"])

    @property
    def event(self) -> str:
        return str(self.wire["event"])

    @property
    def priority(self) -> int:
        return int(self.wire["priority"])

    @property
    def state(self) -> str:
        return str(self.wire["state"])

    @property
    def time(self) -> float:
        return parse_time(self.wire["time"])

    def to_wire(self) -> dict[str, Any]:
        return dict(self.wire)


CHECKPOINT_EVERY = 0.25  # seconds between the checkpointer thread's passive checkpoints
FALLBACK_CHECKPOINT_PAGES = 8000  # the writer's own checkpoint (SQLite's default: 1,000), 32 MB of WAL
JOIN_TIMEOUT = 10.0  # the store's exit waits this long at most for a checkpoint under way
WAL_SIZE_LIMIT = 64 << 20  # the WAL file is truncated to this once checkpointed (it never shrinks else)

SCHEMA_VERSION = 2  # 2: the journal's ``packed`` column (a version-1 file gains it when opened)

# A journaled payload of at least this many bytes (a batch of KPI samples, typically 10 KB of JSON)
# is kept compressed (``_pack``: about 1/14 of a sample batch's size). Its WAL frames, the
# checkpoints that copy them and their fsyncs shrink with it: the commits of a sample feed blocked
# the core task for about a fifth of its wall time. An alarm (about 150 bytes) stays as it is.
PACK_FROM = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    seq     INTEGER PRIMARY KEY,
    kind    TEXT NOT NULL,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    time    REAL NOT NULL,
    packed  INTEGER NOT NULL DEFAULT 0  -- 1: payload is zlib-compressed (journal_payload)
);
CREATE TABLE IF NOT EXISTS snapshot (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    state    BLOB NOT NULL,
    upto_seq INTEGER NOT NULL,
    time     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    incident_id TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    event       TEXT NOT NULL,
    state       TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    record      TEXT NOT NULL,
    time        REAL NOT NULL,  -- the record's own time (epoch seconds)
    updated     REAL NOT NULL   -- when it was stored
);
CREATE INDEX IF NOT EXISTS incidents_time ON incidents (time);
CREATE TABLE IF NOT EXISTS incident_versions (
    incident_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    summary     TEXT NOT NULL,  -- what a timeline compares from one version to the next (JSON)
    PRIMARY KEY (incident_id, version)
);
CREATE TABLE IF NOT EXISTS outbox (
    id           INTEGER PRIMARY KEY,
    receiver     TEXT NOT NULL,
    incident_id  TEXT NOT NULL,
    version      INTEGER NOT NULL,
    event        TEXT NOT NULL,
    priority     INTEGER NOT NULL,
    record       TEXT NOT NULL,
    created      REAL NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | dead
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL,  -- NULL while a lower version of the incident is pending (blocked)
    last_error   TEXT,
    done         REAL,  -- when it became delivered or dead
    UNIQUE (receiver, incident_id, version)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (receiver, state, incident_id, version);
CREATE INDEX IF NOT EXISTS outbox_next ON outbox (receiver, state, next_attempt);
CREATE TABLE IF NOT EXISTS dead_letters (
    id        INTEGER PRIMARY KEY,
    time      REAL NOT NULL,     -- when it was rejected (the core's clock)
    source    TEXT NOT NULL,     -- mqtt | http | core (a timer tick)
    topic     TEXT NOT NULL,
    reasons   TEXT NOT NULL,     -- every error as "field: reason", one per line (for the filter)
    record    TEXT NOT NULL,     -- the dead-letter record (JSON), as published
    published INTEGER NOT NULL   -- 0: still to be published on the dead-letter topic
);
CREATE INDEX IF NOT EXISTS dead_letters_time ON dead_letters (time);
CREATE INDEX IF NOT EXISTS dead_letters_unpublished ON dead_letters (published, id);
CREATE TABLE IF NOT EXISTS explanations (
    incident_id TEXT PRIMARY KEY,
    time        REAL NOT NULL,  -- when the incident resolved (the core's clock)
    explanation BLOB NOT NULL   -- JSON: the explanation as it resolved (GET /explain/incidents/{id})
);
CREATE INDEX IF NOT EXISTS explanations_time ON explanations (time);
CREATE TABLE IF NOT EXISTS tmf642_alarm_state (
    alarm_id TEXT PRIMARY KEY,  -- the engine's alarm key (the TMF642 alarm id)
    state    BLOB NOT NULL,     -- JSON: TMF-only attributes (ackState, ackUserId, ackSystemId, comment …)
    time     REAL NOT NULL      -- when they last changed
);
CREATE TABLE IF NOT EXISTS tmf642_subscriptions (
    id       TEXT PRIMARY KEY,
    resource BLOB NOT NULL,     -- JSON: the EventSubscription as returned (id, callback, query)
    time     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tmf642_tasks (
    id       TEXT PRIMARY KEY,
    task     TEXT NOT NULL,     -- ackAlarms | clearAlarms
    resource BLOB NOT NULL,     -- JSON: the task resource as returned
    time     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tmf642_tasks_time ON tmf642_tasks (task, time);
"""

_ROW = "id, receiver, incident_id, version, event, priority, record, created, attempts, next_attempt"

log = structlog.get_logger("engine.store")


class StoreError(EngineError):
    """The store file cannot be used (written by a newer engine, corrupt…). ``path`` names it."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    seq: int
    kind: str
    topic: str
    payload: bytes
    time: float


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    receiver: str
    incident_id: str
    version: int
    event: str
    priority: int
    record: dict[str, Any]
    created: float
    attempts: int
    next_attempt: float


class Store:
    def __init__(
        self,
        path: Path,
        *,
        commit_interval: float = 0.02,
        keep_delivered: float = 7 * 86400,
        keep_dead_letters: float = 7 * 86400,
        max_dead_letters: int = 100000,
        keep_explanations: float = 7 * 86400,
        max_explanations: int = 2000,
        clock: Callable[[], float] = time.time,
        checkpoint_thread: bool = True,
    ) -> None:
        if commit_interval <= 0:
            raise ValueError(f"commit_interval must be positive, got {commit_interval}")
        if keep_delivered < 0:
            raise ValueError(f"keep_delivered must not be negative, got {keep_delivered}")
        self.path = Path(path)
        self.commit_interval = commit_interval
        self.keep_delivered = keep_delivered
        if keep_dead_letters < 0 or max_dead_letters < 1:
            raise ValueError(
                "keep_dead_letters must not be negative and max_dead_letters must be at least 1, "
                f"got {keep_dead_letters} and {max_dead_letters}"
            )
        self.keep_dead_letters = keep_dead_letters
        self.max_dead_letters = max_dead_letters
        self.keep_explanations = keep_explanations
        self.max_explanations = max(1, max_explanations)
        self.dead_letters_dropped = 0  # purged before they were published (see purge_dead_letters)
        self._dead_letter_count: int | None = None  # rows in the table, kept as they are added
        self._clock = clock
        self.checkpoint_thread = checkpoint_thread  # False: SQLite's checkpoints, in the commits
        self._checkpointer: _Checkpointer | None = None
        self.changed = asyncio.Event()  # set after a commit that enqueued outbox rows (or dead letters)
        # set after a commit that kept dead letters to publish: what the MQTT publisher waits for
        # when it publishes no records (``changed`` also follows every webhook's outbox rows)
        self.dead_lettered = asyncio.Event()
        self._db: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._seq = 0  # the last journal seq handed out (buffered ones included)
        self.unreadable = (
            0  # journal entries ``journal_after`` skipped: a compressed payload that did not inflate
        )
        self._journal: list[tuple[int, str, str, bytes, float, int]] = []  # appended, not yet written
        self._callbacks: list[Callable[[], None]] = []
        self._dirty = False  # something written to the connection since the last commit
        self._enqueued = False  # outbox rows inserted since the last commit
        self._dead_lettered = False  # dead letters to publish kept since the last commit
        self.commits = 0

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Store:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            wal = db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"  # not for :memory:
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._migrate(db)
            row = db.execute(
                "SELECT max(coalesce((SELECT max(seq) FROM journal), 0),"
                " coalesce((SELECT upto_seq FROM snapshot WHERE id = 1), 0))"
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(self.path, f"cannot open the store: {exc}") from None
        except BaseException:
            db.close()
            raise
        self._seq = int(row[0])
        self._db = db
        if self.checkpoint_thread and wal:
            try:  # opened here: a store the thread cannot open keeps SQLite's own checkpoints
                other = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                log.warning("no checkpointer thread; SQLite checkpoints in the commits", error=str(exc))
            else:
                db.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_CHECKPOINT_PAGES}")
                self._checkpointer = _Checkpointer(other, self.path.name, CHECKPOINT_EVERY)
                self._checkpointer.start()
        self._task = asyncio.create_task(self._committer(), name="store:commit")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            # Joined here, not awaited: nothing may stand between this exit and the commit below.
            # At most one checkpoint's time. Before the close: two connections closing at once can
            # each see the other and neither remove the WAL (the last one's close checkpoints it
            # and removes it).
            checkpointer.join(JOIN_TIMEOUT)
        if self._db is not None:
            try:
                self.commit()
            finally:
                self._db.close()
                self._db = None

    def _migrate(self, db: sqlite3.Connection) -> None:
        check_schema(db, self.path, hint="Upgrade the engine or point store.path at another file.")
        # A new file (or one without a version) gets the whole schema, in one transaction
        # (executescript runs the BEGIN … COMMIT it is given). Every statement is IF NOT EXISTS, so
        # running it on a current file is a no-op. From version 1: the journal gains ``packed``
        # (its entries stay as they are: 0, not compressed).
        columns = {row[1] for row in db.execute("PRAGMA table_info(journal)")}
        upgrade = "ALTER TABLE journal ADD COLUMN packed INTEGER NOT NULL DEFAULT 0;"
        db.executescript(
            "BEGIN IMMEDIATE;"
            + _SCHEMA
            + (upgrade if columns and "packed" not in columns else "")
            + f"INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');"
            + "COMMIT;"
        )

    @property
    def checkpoints(self) -> int:
        """Passive checkpoints the checkpointer thread has run (0 without it)."""
        return self._checkpointer.checkpoints if self._checkpointer is not None else 0

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open: use `async with Store(path) as store`")
        return self._db

    async def _committer(self) -> None:
        while True:
            await asyncio.sleep(self.commit_interval)
            if self._journal or self._dirty or self._callbacks:
                try:
                    self.commit()
                except sqlite3.Error:
                    log.exception("commit failed", path=str(self.path))

    def _begin(self) -> sqlite3.Connection:
        db = self.db
        if not db.in_transaction:
            db.execute("BEGIN")
        self._dirty = True
        return db

    def commit(self) -> None:
        """Commit every buffered write in one transaction, then run the ``on_durable`` callbacks in
        append order, then set ``changed`` if outbox rows (or dead letters to publish) were enqueued,
        and ``dead_lettered`` if dead letters to publish were kept."""
        db = self.db
        if self._checkpointer is not None and not self._checkpointer.alive:
            self._checkpointer = None  # it stopped on an error: SQLite's own checkpoints, as small as before
            db.execute("PRAGMA wal_autocheckpoint=1000")
        self._write_journal()
        if db.in_transaction:
            db.execute("COMMIT")
            self.commits += 1
        self._dirty = False
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb()
            except Exception:
                log.exception("on_durable callback failed")
        if self._enqueued:
            self._enqueued = False
            self.changed.set()
        if self._dead_lettered:
            self._dead_lettered = False
            self.dead_lettered.set()

    # -- journal -------------------------------------------------------------------------------
    def append(
        self,
        kind: str,
        topic: str,
        payload: bytes,
        now: float,
        *,
        on_durable: Callable[[], None] | None = None,
    ) -> int:
        """Buffer one input; return its seq. ``on_durable`` runs right after the commit holding it.
        A payload of ``PACK_FROM`` bytes or more is kept compressed (``journal_after`` gives it back
        as it came)."""
        self._seq += 1
        if len(payload) >= PACK_FROM:
            self._journal.append((self._seq, kind, topic, _pack(payload), now, 1))
        else:
            self._journal.append((self._seq, kind, topic, bytes(payload), now, 0))
        if on_durable is not None:
            self._callbacks.append(on_durable)
        return self._seq

    def on_durable(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` right after the next commit, after those of the entries appended so far."""
        self._callbacks.append(callback)

    def last_seq(self) -> int:
        """The last seq handed out, buffered entries included."""
        return self._seq

    def _write_journal(self) -> None:
        if self._journal:
            self._begin().executemany(
                "INSERT INTO journal (seq, kind, topic, payload, time, packed) VALUES (?, ?, ?, ?, ?, ?)",
                self._journal,
            )
            self._journal = []

    def journal_after(self, seq: int, *, chunk: int = 1000) -> Iterator[JournalEntry]:
        """Entries with a seq above ``seq``, in order (buffered ones included). Read ``chunk`` rows
        at a time, so the caller may write (record, commit) while iterating."""
        self._write_journal()
        while True:
            rows = self.db.execute(
                "SELECT seq, kind, topic, payload, time, packed FROM journal WHERE seq > ?"
                " ORDER BY seq LIMIT ?",
                (seq, chunk),
            ).fetchall()
            for s, kind, topic, payload, t, packed in rows:
                try:
                    data = journal_payload(payload, packed, path=self.path, seq=s)
                except StoreError as exc:  # one damaged entry is skipped, named and counted
                    self.unreadable += 1
                    log.error("journal entry skipped", seq=s, topic=topic, error=str(exc))
                    continue
                yield JournalEntry(s, kind, topic, data, t)
            if len(rows) < chunk:
                return
            seq = rows[-1][0]

    def save_snapshot(self, state: bytes, upto_seq: int, now: float, *, keep: float = 0.0) -> None:
        """Replace the snapshot and drop the journal up to ``upto_seq``, in one transaction (buffered
        writes are committed first). With ``keep`` > 0, entries up to ``upto_seq`` younger than
        ``keep`` seconds stay (history for ``engine rules mine --store``); recovery reads only the
        entries after the snapshot's seq, so they change nothing else."""
        self.commit()
        db = self._begin()
        db.execute(
            "INSERT OR REPLACE INTO snapshot (id, state, upto_seq, time) VALUES (1, ?, ?, ?)",
            (bytes(state), upto_seq, now),
        )
        if keep > 0:
            db.execute("DELETE FROM journal WHERE seq <= ? AND time < ?", (upto_seq, now - keep))
        else:
            db.execute("DELETE FROM journal WHERE seq <= ?", (upto_seq,))
        self.commit()

    def load_snapshot(self) -> tuple[bytes, int] | None:
        row = self.db.execute("SELECT state, upto_seq FROM snapshot WHERE id = 1").fetchone()
        return (bytes(row[0]), int(row[1])) if row else None

    # -- incident records ----------------------------------------------------------------------
    def record(self, incident: StoredRecord, receivers: Sequence[str], now: float) -> None:
        """Keep the latest record of the incident and enqueue it once per receiver (idempotent).
        The record is kept in its JSON form (``to_wire``), its time as epoch seconds."""
        record = incident.to_wire()
        iid = incident.incident_id
        version = incident.version
        event = incident.event
        priority = incident.priority
        text = orjson.dumps(record).decode()
        rec_time = incident.time
        db = self._begin()
        db.execute(
            """INSERT INTO incidents (incident_id, version, event, state, priority, record, time, updated)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (incident_id) DO UPDATE SET
                 version = excluded.version, event = excluded.event, state = excluded.state,
                 priority = excluded.priority, record = excluded.record, time = excluded.time,
                 updated = excluded.updated
               WHERE excluded.version > incidents.version""",
            (iid, version, event, incident.state, priority, text, rec_time, now),
        )
        db.execute(
            "INSERT OR IGNORE INTO incident_versions (incident_id, version, summary) VALUES (?, ?, ?)",
            (iid, version, orjson.dumps(version_summary(record)).decode()),
        )
        for receiver in receivers:
            # The head of an incident's queue (its lowest pending version) has a next_attempt; the
            # versions behind it wait with NULL until it is delivered or dead (see _promote).
            cur = db.execute(
                """INSERT OR IGNORE INTO outbox
                   (receiver, incident_id, version, event, priority, record, created, next_attempt)
                   SELECT ?, ?, ?, ?, ?, ?, ?, CASE WHEN EXISTS (
                       SELECT 1 FROM outbox WHERE receiver = ? AND state = 'pending'
                       AND incident_id = ? AND version < ?) THEN NULL ELSE ? END""",
                (receiver, iid, version, event, priority, text, now, receiver, iid, version, now),
            )
            if cur.rowcount:
                self._enqueued = True
                db.execute(  # a lower version arriving late (never from the core) takes the lead
                    "UPDATE outbox SET next_attempt = NULL WHERE receiver = ? AND state = 'pending'"
                    " AND incident_id = ? AND version > ?",
                    (receiver, iid, version),
                )

    def has_incident(self, receiver: str, incident_id: str) -> bool:
        """The receiver already has (or had) an outbox row for this incident."""
        row = self.db.execute(
            "SELECT 1 FROM outbox WHERE receiver = ? AND incident_id = ? LIMIT 1", (receiver, incident_id)
        ).fetchone()
        return row is not None

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT record FROM incidents WHERE incident_id = ?", (incident_id,)).fetchone()
        return _loads(row[0]) if row else None

    def incident_history(self, incident_id: str) -> list[dict[str, Any]]:
        """A summary of every version of the incident (``version_summary``), oldest first."""
        cur = self.db.execute(
            "SELECT summary FROM incident_versions WHERE incident_id = ? ORDER BY version", (incident_id,)
        )
        return [_loads(r[0]) for r in cur]

    def incidents(
        self,
        *,
        state: str | None = None,
        priority: int | None = None,
        since: float | None = None,
        open_only: bool = False,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The latest record of each incident, newest record time first."""
        where: list[str] = []
        args: list[Any] = []
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if priority is not None:
            where.append("priority = ?")
            args.append(priority)
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if open_only:
            where.append("event != 'resolved'")
        sql = "SELECT record FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time DESC, incident_id LIMIT ?"
        args.append(max(0, limit))
        return [_loads(r[0]) for r in self.db.execute(sql, args)]

    # -- outbox --------------------------------------------------------------------------------
    def due(
        self, receiver: str, now: float, limit: int = 100, *, exclude: Collection[str] = ()
    ) -> list[OutboxRow]:
        """Pending rows due by ``now``: only each incident's lowest pending version (so an incident's
        records go out in version order), earliest due first (never tried: oldest first).

        ``exclude`` leaves out incidents (a worker passes those it has in flight)."""
        sql = (
            f"SELECT {_ROW} FROM outbox INDEXED BY outbox_next"
            " WHERE receiver = ? AND state = 'pending' AND next_attempt <= ?"
        )
        args: list[Any] = [receiver, now]
        if exclude:
            sql += f" AND incident_id NOT IN ({','.join('?' * len(exclude))})"
            args += list(exclude)
        sql += " ORDER BY next_attempt, id LIMIT ?"
        args.append(max(0, limit))
        return [
            OutboxRow(
                id=r[0],
                receiver=r[1],
                incident_id=r[2],
                version=r[3],
                event=r[4],
                priority=r[5],
                record=_loads(r[6]),
                created=r[7],
                attempts=r[8],
                next_attempt=r[9],
            )
            for r in self.db.execute(sql, args)
        ]

    def next_due_time(self, receiver: str, *, exclude: Collection[str] = ()) -> float | None:
        """When the next row ``due`` would return becomes due; None when nothing is pending."""
        sql = (
            "SELECT next_attempt FROM outbox INDEXED BY outbox_next"
            " WHERE receiver = ? AND state = 'pending' AND next_attempt IS NOT NULL"
        )
        args: list[Any] = [receiver]
        if exclude:
            sql += f" AND incident_id NOT IN ({','.join('?' * len(exclude))})"
            args += list(exclude)
        sql += " ORDER BY next_attempt LIMIT 1"
        row = self.db.execute(sql, args).fetchone()
        return None if row is None else float(row[0])

    def delivered(self, row_id: int, now: float) -> None:
        self._begin().execute(
            "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, done = ?, last_error = NULL"
            " WHERE id = ?",
            (now, row_id),
        )
        self._promote(row_id)

    def retry(self, row_id: int, next_attempt: float, error: str) -> None:
        """Another attempt later; ``attempts`` counts the ones made."""
        self._begin().execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, last_error = ? WHERE id = ?",
            (next_attempt, error, row_id),
        )

    def dead(self, row_id: int, error: str, now: float) -> None:
        """Never retried; the incident's next version becomes its head and may proceed."""
        self._begin().execute(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?, done = ?"
            " WHERE id = ?",
            (error, now, row_id),
        )
        self._promote(row_id)

    def _promote(self, row_id: int) -> None:
        """The row left the queue: the incident's next pending version (if any) becomes the head,
        due from its creation time, so a backlog drains oldest first."""
        db = self.db
        row = db.execute("SELECT receiver, incident_id FROM outbox WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            return
        db.execute(
            """UPDATE outbox SET next_attempt = created WHERE id = (
                   SELECT id FROM outbox INDEXED BY outbox_pending
                   WHERE receiver = ? AND state = 'pending' AND incident_id = ?
                   ORDER BY version LIMIT 1)
               AND next_attempt IS NULL""",
            row,
        )

    def outbox_row(self, row_id: int) -> dict[str, Any] | None:
        """One row with its bookkeeping (state, attempts, last_error, done), for the API and tests."""
        cur = self.db.execute(
            "SELECT id, receiver, incident_id, version, event, priority, created, state, attempts,"
            " next_attempt, last_error, done FROM outbox WHERE id = ?",
            (row_id,),
        )
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def outbox_rows(self, receiver: str, incident_id: str) -> list[dict[str, Any]]:
        """Every row of one incident for one receiver, by version (see ``outbox_row``)."""
        ids = self.db.execute(
            "SELECT id FROM outbox WHERE receiver = ? AND incident_id = ? ORDER BY version",
            (receiver, incident_id),
        ).fetchall()
        return [r for (i,) in ids if (r := self.outbox_row(i)) is not None]

    def outbox_depth(self) -> dict[str, int]:
        """Pending rows per receiver (receivers without pending rows are absent)."""
        cur = self.db.execute(
            "SELECT receiver, count(*) FROM outbox WHERE state = 'pending' GROUP BY receiver"
        )
        return {str(r): int(n) for r, n in cur.fetchall()}

    def outbox_stats(self) -> dict[str, dict[str, int]]:
        """Per receiver: rows pending, delivered and dead."""
        stats: dict[str, dict[str, int]] = {}
        for receiver, state, n in self.db.execute(
            "SELECT receiver, state, count(*) FROM outbox GROUP BY receiver, state"
        ):
            stats.setdefault(receiver, {"pending": 0, "delivered": 0, "dead": 0})[state] = n
        return stats

    def outbox_trouble(self) -> dict[str, dict[str, Any]]:
        """Per receiver with trouble: rows being retried (``retrying``, the most attempts made on
        one, the next attempt due) and the last error: a retried row's (the one tried most), else
        that of the row that died last. Receivers without either are left out."""
        out: dict[str, dict[str, Any]] = {}
        for receiver, n, attempts, due, error in self.db.execute(
            "SELECT receiver, count(*), max(attempts), min(next_attempt),"
            " (SELECT o2.last_error FROM outbox o2 WHERE o2.receiver = outbox.receiver"
            "  AND o2.state = 'pending' AND o2.attempts > 0 ORDER BY o2.attempts DESC, o2.id LIMIT 1)"
            " FROM outbox WHERE state = 'pending' AND attempts > 0 GROUP BY receiver"
        ):
            out[receiver] = {"retrying": n, "attempts": attempts, "next_attempt": due, "last_error": error}
        for receiver, error, done in self.db.execute(
            "SELECT receiver, last_error, max(done) FROM outbox WHERE state = 'dead' GROUP BY receiver"
        ):
            entry = out.setdefault(
                receiver, {"retrying": 0, "attempts": 0, "next_attempt": None, "last_error": None}
            )
            if entry["last_error"] is None:
                entry["last_error"] = error
                entry["last_error_at"] = done
        return out

    def purge(self, now: float) -> int:
        """Delete delivered rows older than ``keep_delivered``; return how many.

        The newest row of each (receiver, incident) stays while the incident is not resolved, so
        ``has_incident`` still routes its later records (a resolved is never dropped)."""
        cur = self._begin().execute(
            """DELETE FROM outbox WHERE state = 'delivered' AND done < ? AND (
                 version < (SELECT max(o2.version) FROM outbox o2
                            WHERE o2.receiver = outbox.receiver AND o2.incident_id = outbox.incident_id)
                 OR EXISTS (SELECT 1 FROM incidents i
                            WHERE i.incident_id = outbox.incident_id AND i.event = 'resolved'))""",
            (now - self.keep_delivered,),
        )
        return cur.rowcount

    # -- dead letters --------------------------------------------------------------------------
    def dead_letter(self, dead: DeadLetter, source: str, now: float, *, publish: bool) -> int:
        """Keep one dead letter, received from ``source`` (in the current batch: durable with the
        journal entry that caused it); ``publish``: still to be published. Its JSON form (with its
        source) is made here, at the edge. Returns its id. Beyond ``max_dead_letters`` the oldest
        rows go at once (``purge_dead_letters``), so a burst cannot grow the file."""
        record = replace(dead, source=source).to_wire()
        reasons = "\n".join(f"{where}: {reason}" for where, reason in dead.errors)
        db = self._begin()
        cur = db.execute(
            "INSERT INTO dead_letters (time, source, topic, reasons, record, published)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                now,
                source,
                dead.topic,
                reasons,
                orjson.dumps(record).decode(),
                0 if publish else 1,
            ),
        )
        if publish:
            # wakes the publisher after the commit: ``changed`` (with records on MQTT), ``dead_lettered``
            self._enqueued = self._dead_lettered = True
        if self._dead_letter_count is None:
            self._dead_letter_count = int(db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
        else:
            self._dead_letter_count += 1
        if self._dead_letter_count > self.max_dead_letters + max(100, self.max_dead_letters // 100):
            self.purge_dead_letters(now)  # in slices of 1 %: one DELETE per hundred rows added
        return int(cur.lastrowid or 0)

    def dead_letters(
        self,
        *,
        reason: str | None = None,
        source: str | None = None,
        topic: str | None = None,
        since: float | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Kept dead letters, newest first, each its record plus ``id`` and ``source``.

        ``reason``: a case-insensitive substring of any error (``field: reason``); ``topic``: the
        exact topic, or a prefix when it ends with ``#`` (``soc/alarms/#``); ``since``: rejected at or
        after (epoch seconds); ``before``: ids below this one (the next page)."""
        where: list[str] = []
        args: list[Any] = []
        if reason:
            where.append("instr(lower(reasons), ?) > 0")
            args.append(reason.lower())
        if source:
            where.append("source = ?")
            args.append(source)
        if topic:
            if topic.endswith("#"):
                where.append("substr(topic, 1, ?) = ?")
                args += [len(topic) - 1, topic[:-1]]
            else:
                where.append("topic = ?")
                args.append(topic)
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if before is not None:
            where.append("id < ?")
            args.append(before)
        sql = "SELECT id, source, record FROM dead_letters"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(0, limit))
        return [{"id": i, "source": src, **_loads(rec)} for i, src, rec in self.db.execute(sql, args)]

    def unpublished_dead_letters(self, limit: int = 200) -> list[tuple[int, bytes]]:
        """(id, record JSON) of dead letters still to be published, oldest first."""
        rows = self.db.execute(
            "SELECT id, record FROM dead_letters INDEXED BY dead_letters_unpublished"
            " WHERE published = 0 ORDER BY id LIMIT ?",
            (max(0, limit),),
        ).fetchall()
        return [(int(i), rec.encode()) for i, rec in rows]

    def dead_letter_published(self, dead_letter_id: int) -> None:
        self._begin().execute("UPDATE dead_letters SET published = 1 WHERE id = ?", (dead_letter_id,))

    def dead_letter_counts(self) -> tuple[int, int]:
        """(kept, still to be published)."""
        kept, unpublished = self.db.execute(
            "SELECT count(*), coalesce(sum(published = 0), 0) FROM dead_letters"
        ).fetchone()
        return int(kept), int(unpublished)

    def purge_dead_letters(self, now: float) -> int:
        """Delete dead letters older than ``keep_dead_letters`` and the oldest beyond
        ``max_dead_letters``; return how many. Those never published are counted in
        ``dead_letters_dropped`` (the caller turns the count into a metric)."""
        db = self._begin()
        cutoff = db.execute(
            "SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET ?", (self.max_dead_letters,)
        ).fetchone()
        bound = int(cutoff[0]) if cutoff else 0
        where = "time < ? OR id <= ?"
        args = (now - self.keep_dead_letters, bound)
        lost = int(
            db.execute(
                f"SELECT count(*) FROM dead_letters WHERE published = 0 AND ({where})", args
            ).fetchone()[0]
        )
        cur = db.execute(f"DELETE FROM dead_letters WHERE {where}", args)
        self.dead_letters_dropped += lost
        self._dead_letter_count = None
        return cur.rowcount

    # -- explanations of resolved incidents --------------------------------------------------
    def keep_explanation(self, incident_id: str, now: float, explanation: Mapping[str, Any]) -> None:
        """Keep the explanation of an incident as it resolved (replaces an earlier one: a journal
        replay explains it again, identically)."""
        self._begin().execute(
            "INSERT OR REPLACE INTO explanations (incident_id, time, explanation) VALUES (?, ?, ?)",
            (incident_id, now, orjson.dumps(explanation)),
        )

    def explanation(self, incident_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT explanation FROM explanations WHERE incident_id = ?", (incident_id,)
        ).fetchone()
        return _loads(row[0]) if row else None

    def purge_explanations(self, now: float) -> int:
        """Delete explanations older than ``keep_explanations`` and all but the newest
        ``max_explanations``; return how many."""
        cur = self._begin().execute(
            """DELETE FROM explanations WHERE time < ? OR incident_id NOT IN (
                   SELECT incident_id FROM explanations ORDER BY time DESC LIMIT ?)""",
            (now - self.keep_explanations, self.max_explanations),
        )
        return cur.rowcount

    # -- TMF642: acknowledgements, task resources, hub subscriptions -------------------------
    def tmf642_note(self, alarm_id: str, state: Mapping[str, Any], now: float) -> None:
        """Keep the TMF-only attributes of an alarm (replaces the earlier ones)."""
        self._begin().execute(
            "INSERT OR REPLACE INTO tmf642_alarm_state (alarm_id, state, time) VALUES (?, ?, ?)",
            (alarm_id, orjson.dumps(state), now),
        )

    def tmf642_forget(self, alarm_ids: Collection[str]) -> None:
        if alarm_ids:
            self._begin().executemany(
                "DELETE FROM tmf642_alarm_state WHERE alarm_id = ?", [(a,) for a in alarm_ids]
            )

    def tmf642_alarm_states(self) -> list[tuple[str, dict[str, Any], float]]:
        """Every kept alarm state, oldest change first."""
        rows = self.db.execute("SELECT alarm_id, state, time FROM tmf642_alarm_state ORDER BY time, rowid")
        return [(a, _loads(s), float(t)) for a, s, t in rows]

    def tmf642_subscribe(self, resource: Mapping[str, Any], now: float) -> None:
        self._begin().execute(
            "INSERT OR REPLACE INTO tmf642_subscriptions (id, resource, time) VALUES (?, ?, ?)",
            (resource["id"], orjson.dumps(resource), now),
        )

    def tmf642_unsubscribe(self, subscription_id: str) -> None:
        self._begin().execute("DELETE FROM tmf642_subscriptions WHERE id = ?", (subscription_id,))

    def tmf642_subscriptions(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT resource FROM tmf642_subscriptions ORDER BY time, rowid")
        return [_loads(r) for (r,) in rows]

    def tmf642_task(self, task: str, resource: Mapping[str, Any], now: float, *, keep: int) -> None:
        """Keep a task resource; only the newest ``keep`` of its kind stay."""
        db = self._begin()
        db.execute(
            "INSERT OR REPLACE INTO tmf642_tasks (id, task, resource, time) VALUES (?, ?, ?, ?)",
            (resource["id"], task, orjson.dumps(resource), now),
        )
        db.execute(
            """DELETE FROM tmf642_tasks WHERE task = ? AND id NOT IN (
                   SELECT id FROM tmf642_tasks WHERE task = ? ORDER BY time DESC, rowid DESC LIMIT ?)""",
            (task, task, keep),
        )

    def tmf642_tasks(self) -> list[tuple[str, dict[str, Any]]]:
        """Every kept task resource as (task, resource), oldest first."""
        rows = self.db.execute("SELECT task, resource FROM tmf642_tasks ORDER BY time, rowid")
        return [(t, _loads(r)) for t, r in rows]


# The lists of a record that grow with the incident; a light record (``StoreReader.light_records``)
# leaves them out and keeps only the length of ``suppressed``.
HEAVY_FIELDS = ("alarms", "suppressed", "flapping", "explanation", "priority_breakdown")


class StoreReader:
    """Read-only queries on a store file from another thread than the ``Store``'s (the dashboard's
    incident index loads in a worker thread, so the event loop keeps serving meanwhile).

    Its own connection, opened read-only in the thread that uses it: with WAL it reads what is
    committed and never blocks the writer (nor waits for it). The ``Store``'s buffered, uncommitted
    writes are not visible here; a caller that needs them reads them after, on the loop.
    ``with StoreReader(path) as reader: ...``: inside, every query reads the same snapshot (one read
    transaction); the connection closes at the end.
    """

    def __init__(self, path: Path) -> None:
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        try:
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(Path(path), f"cannot open the store to read: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StoreReader:
        self.db.execute("BEGIN")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")  # nothing was written: the end of the snapshot
        finally:
            self.close()

    def incident_heads(self) -> dict[str, tuple[int, str, float]]:
        """Every stored incident: (latest version, its event, its record time). Reads no record."""
        rows = self.db.execute("SELECT incident_id, version, event, time FROM incidents")
        return {str(i): (int(v), str(e), float(t)) for i, v, e, t in rows}

    def light_records(self, ids: Collection[str] | None = None) -> Iterator[dict[str, Any]]:
        """The latest record of each open incident (of ``ids`` only, when given), without the lists
        that grow with the incident (``HEAVY_FIELDS``): ``suppressed_count`` holds the length of
        ``suppressed``. SQLite cuts them (``json_remove``), so Python parses a few hundred bytes per
        incident instead of the whole record."""
        cut = ", ".join(f"'$.{f}'" for f in HEAVY_FIELDS)
        sql = (
            f"SELECT json_set(json_remove(record, {cut}), '$.suppressed_count',"
            " coalesce(json_array_length(record, '$.suppressed'), 0))"
            " FROM incidents WHERE event != 'resolved'"
        )
        if ids is None:
            for (text,) in self.db.execute(sql):
                yield _loads(text)
            return
        wanted = list(ids)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self.db.execute(sql + f" AND incident_id IN ({','.join('?' * len(chunk))})", chunk)
            for (text,) in rows:
                yield _loads(text)


def version_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of one incident record that a timeline compares version to version."""
    impact = record.get("impact") or {}
    customers = impact.get("customers") or {}
    sla = record.get("sla") or {}
    ack = record.get("acknowledged") or {}
    return {
        "version": record.get("version"),
        "event": record.get("event"),
        "time": record.get("time"),
        "priority": record.get("priority"),
        "score": record.get("score"),
        "state": record.get("state"),
        "severity": record.get("severity"),
        "root": (record.get("root_cause") or {}).get("alarm_id"),
        "elements": impact.get("elements"),
        "customers": customers.get("total"),
        "services": impact.get("services") or {},
        "alarms": len(record.get("alarms") or ()),
        "suppressed": len(record.get("suppressed") or ()),
        "acknowledged": {"by": ack.get("by"), "note": ack.get("note")} if ack else None,
        "breached": sla.get("customers_breached") if sla else None,
        "seconds_to_breach": sla.get("seconds_to_breach") if sla else None,
        # what a timeline needs to say why a version came (absent from summaries kept before)
        "root_active": (record.get("root_cause") or {}).get("active"),
        "symptoms_active": sum(
            1 for s in record.get("suppressed") or () if isinstance(s, Mapping) and s.get("state") == "active"
        ),
        "flapping": len(record.get("flapping") or ()),
        "resolution": record.get("resolution"),
        "merged_into": record.get("merged_into"),
    }


def known_history(
    history: Sequence[Mapping[str, Any]], record: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """An incident's version summaries (``Store.incident_history``) completed with what its latest
    record tells, for versions stored without one: a store written before the summaries were kept,
    or records that came otherwise (a snapshot, a copied file).

    When version 1 has no summary, one is made from the record's ``opened_at``: ``version`` 1,
    ``event`` opened, ``time``, and ``null`` for the facts nobody kept. When the latest version has
    none, it is made from the record (``version_summary``). Both carry ``"recorded": false``; the
    kept summaries are returned as they are. Versions between them without a summary stay absent."""
    out = [dict(h) for h in history]
    if record is None:
        return out
    latest = record.get("version")
    if isinstance(latest, int) and not any(h.get("version") == latest for h in out):
        out.append({**version_summary(record), "recorded": False})
    if not any(h.get("version") == 1 for h in out) and record.get("opened_at") is not None:
        opened = dict.fromkeys(version_summary({}), None)
        opened.update(version=1, event="opened", time=record.get("opened_at"), recorded=False)
        out.insert(0, opened)
    out.sort(key=lambda h: h.get("version") or 0)
    return out


def _pack(payload: bytes) -> bytes:
    """``payload`` compressed: raw deflate (no zlib header or checksum, as the payload had none), level
    1, with a 32 KiB window and ``memLevel`` 5: the hash tables each call clears are an eighth of the
    default's, for the same size on sample batches (callgrind: 2,200 instructions per sample against
    3,200 for ``zlib.compress(payload, 1)``)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, -15, 5)
    return packer.compress(payload) + packer.flush()


def journal_payload(payload: bytes, packed: int, *, path: Path, seq: int) -> bytes:
    """A journal entry's payload as it was appended (``packed``: the row's column, or 0 for a
    version-1 file's). ``StoreError`` names the store (``path``) and the entry (``seq``) when a
    compressed payload does not inflate (the file was damaged: raw deflate carries no checksum, so
    a damaged payload may also inflate to other bytes, which the decoder refuses as any bad
    message)."""
    if not packed:
        return bytes(payload)
    try:
        return zlib.decompress(payload, -15)
    except zlib.error as exc:
        raise StoreError(
            path, f"journal entry {seq}: its compressed payload does not inflate ({exc})"
        ) from exc


def check_schema(db: sqlite3.Connection, path: Path, *, hint: str = "Upgrade the engine to read it.") -> None:
    """Refuse a store a newer engine wrote (``StoreError`` naming the file and both versions): the
    daemon as it opens its store, and the tools that read one (``--store``) before they read it,
    since a newer schema may keep the same tables with another meaning."""
    has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return  # a new file (the daemon creates the schema), or one the tools find no table in
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        found = int(row[0]) if row else 0
    except (TypeError, ValueError):
        raise StoreError(
            path, f"its schema version is not a number ({row[0]!r}): not an engine store"
        ) from None
    if found > SCHEMA_VERSION:
        raise StoreError(
            path,
            f"schema version {found} was written by a newer engine; this one reads up to "
            f"{SCHEMA_VERSION}. {hint}",
        )


def journal_packed(db: sqlite3.Connection) -> str:
    """What to select for an entry's ``packed``: the column, or 0 on a file the engine has not
    opened since version 1 (the tools that read the journal open the file read-only)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(journal)")}
    return "packed" if "packed" in columns else "0"


def _loads(text: str | bytes) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(text)
    return value


class _Checkpointer:
    """A thread that checkpoints the store's WAL with a connection of its own (module docstring).
    The connection is opened by the store and used only by this thread from then on."""

    def __init__(self, db: sqlite3.Connection, name: str, every: float) -> None:
        self._db = db
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"store:checkpoint:{name}", daemon=True)
        self.checkpoints = 0  # complete ones: every frame of the WAL copied back
        self.partial = 0  # busy, or frames left (a writer appended meanwhile): the next one goes on
        self.failures = 0
        self.alive = True

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        db = self._db
        try:
            while not self._stop.wait(self._every):
                try:
                    busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    self.failures += 1
                    if self.failures == 1 or self.failures % 1000 == 0:
                        log.warning("checkpoint failed; retried", error=str(exc), n=self.failures)
                    continue
                if busy == 0 and frames == copied:
                    self.checkpoints += 1
                else:
                    self.partial += 1
        except BaseException:
            log.exception("the checkpointer thread stopped; SQLite checkpoints in the commits again")
        finally:
            self.alive = False
            db.close()
