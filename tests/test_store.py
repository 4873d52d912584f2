"""The SQLite store on a real file: journal and durability (a real kill -9), snapshots, incident records
and the outbox that delivery workers read."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from bench.scenarios import fiber_cut
from engine.adapters.store import (
    HEAVY_FIELDS,
    PACK_FROM,
    SCHEMA_VERSION,
    Store,
    StoredRecord,
    StoreError,
    StoreReader,
    WireRecord,
    journal_packed,
    journal_payload,
)
from engine.cli import main as cli_main
from engine.core.incident_records import RecordEvent
from engine.core.incidents import IncidentRecord
from engine.core.pipeline import Pipeline
from engine.model.messages import DeadLetter
from engine.model.timeutil import format_time
from engine.model.topology import load_topology
from engine.rules.schema import load_rulesets
from engine.tools.mining import Journal, journal_lines
from engine.tools.offline import from_store
from tests.harness import run

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
WAIT = 10.0  # upper bound when waiting for a condition, never a measurement


def _template() -> IncidentRecord:
    """A real `opened` record from the core (the fiber cut)."""
    return next(r for r in run(fiber_cut()).typed if r.event == "opened")


TYPED = _template()
TEMPLATE = TYPED.to_wire()  # as the store keeps it


def rec(
    iid: str = "inc-a",
    version: int = 1,
    event: str = "opened",
    *,
    priority: int = 1,
    state: str = "outage",
    t: float = T0,
) -> IncidentRecord:
    """The real record with its identity, version, event, priority, state and time replaced."""
    return replace(
        TYPED,
        incident_id=iid,
        version=version,
        event=cast(RecordEvent, event),
        priority=priority,
        state=state,
        time=t,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(tmp_path / "db" / "engine.sqlite", commit_interval=3600) as s:
        yield s


async def _wait_for(cond: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not cond():
            await asyncio.sleep(0.005)


# -- journal ---------------------------------------------------------------------------------------
async def test_append_returns_increasing_seqs_and_on_durable_runs_after_commit_in_order(store: Store) -> None:
    """Seqs increase by one; on_durable callbacks run only at commit, in append order, after it."""
    calls: list[int] = []

    def ack(i: int) -> Callable[[], None]:
        return lambda: calls.append(i)

    seqs = [store.append("msg", f"t/{i}", b"x", T0, on_durable=ack(i)) for i in range(3)]
    assert seqs == [1, 2, 3]
    assert store.last_seq() == 3
    assert calls == []
    store.commit()
    assert calls == [0, 1, 2]
    store.commit()  # nothing buffered: no callback runs twice
    assert calls == [0, 1, 2]


async def test_on_durable_sees_the_entry_committed(tmp_path: Path) -> None:
    """When on_durable runs, its entry is readable from a second, independent connection (committed)."""
    path = tmp_path / "engine.sqlite"
    seen: list[int] = []

    def check() -> None:
        with sqlite3.connect(path) as other:
            seen.append(other.execute("SELECT count(*) FROM journal").fetchone()[0])

    async with Store(path, commit_interval=3600) as s:
        s.append("msg", "t", b"1", T0, on_durable=check)
        s.commit()
    assert seen == [1]


async def test_the_periodic_task_commits_buffered_entries(tmp_path: Path) -> None:
    """Without an explicit commit, the periodic task commits within commit_interval and runs on_durable."""
    acked: list[str] = []
    async with Store(tmp_path / "engine.sqlite", commit_interval=0.01) as s:
        s.append("msg", "t", b"1", T0, on_durable=lambda: acked.append("1"))
        await _wait_for(lambda: acked == ["1"])


async def test_journal_after_returns_entries_in_order_with_their_fields(store: Store) -> None:
    """journal_after(seq) gives the entries above seq, in order, kind/topic/payload/time intact."""
    for i, kind in enumerate(["msg", "tick", "ack", "reload"]):
        store.append(kind, f"soc/alarms/{i}", bytes([i]) * 3, T0 + i)
    store.commit()
    entries = list(store.journal_after(2))
    assert [(e.seq, e.kind, e.topic, e.payload, e.time) for e in entries] == [
        (3, "ack", "soc/alarms/2", b"\x02\x02\x02", T0 + 2),
        (4, "reload", "soc/alarms/3", b"\x03\x03\x03", T0 + 3),
    ]


BATCH = orjson.dumps(
    {
        "samples": [
            {
                "probe_id": f"p-{k}",
                "target": "olt-001",
                "time": T0 + k,
                "metrics": {"mos": 4.2, "loss_pct": 0.1},
            }
            for k in range(100)
        ]
    }
)


async def test_a_large_payload_is_journaled_compressed_and_read_back_as_it_came(store: Store) -> None:
    """A payload of ``PACK_FROM`` bytes or more (a batch of samples) is kept compressed, a smaller
    one as it is; ``journal_after`` gives each back byte for byte, and so do the tools that read
    the journal themselves (``journal_packed``, ``journal_payload``)."""
    small = b'{"ne_id": "olt-001"}'
    edge = b"x" * PACK_FROM
    for payload in (BATCH, small, edge, b""):
        store.append("msg", "soc/probes/p", payload, T0)
    store.commit()
    assert [e.payload for e in store.journal_after(0)] == [BATCH, small, edge, b""]
    rows = store.db.execute(
        f"SELECT payload, {journal_packed(store.db)} FROM journal ORDER BY seq"
    ).fetchall()
    assert [packed for _, packed in rows] == [1, 0, 1, 0]
    assert len(rows[0][0]) < len(BATCH) / 5
    assert [journal_payload(s, packed, path=store.path, seq=0) for s, packed in rows] == [
        BATCH,
        small,
        edge,
        b"",
    ]


async def test_a_compressed_payload_that_does_not_inflate_is_skipped_named_and_counted(store: Store) -> None:
    """A damaged file: one compressed payload no longer inflates. Recovery reads past it (the
    entries around it come back), logs it by seq and counts it; the tools that read the journal
    themselves get a ``StoreError`` naming the entry (the CLI prints it as one line)."""
    for payload in (b'{"a": 1}', BATCH, b'{"b": 2}'):
        store.append("msg", "soc/probes/p", payload, T0)
    store.commit()
    store.db.execute("UPDATE journal SET payload = ? WHERE seq = 2", (b"\xff" * 40,))
    store.db.commit()
    assert [(e.seq, e.payload) for e in store.journal_after(0)] == [(1, b'{"a": 1}'), (3, b'{"b": 2}')]
    assert store.unreadable == 1
    with pytest.raises(StoreError, match=r"journal entry 2: its compressed payload does not inflate"):
        journal_payload(b"\xff" * 40, 1, path=store.path, seq=2)


async def test_a_version_1_file_gains_the_packed_column_and_keeps_its_entries(tmp_path: Path) -> None:
    """A store written before the journal could be compressed (schema version 1, no ``packed``
    column): the tools read it as it is, and once the engine opens it its entries read back as
    they were, new ones are compressed, and the file says version 2."""
    path = tmp_path / "engine.sqlite"
    async with Store(path):
        pass
    with sqlite3.connect(path) as db:  # the journal as version 1 made it, with an entry
        db.execute("DROP TABLE journal")
        db.execute(
            "CREATE TABLE journal (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, topic TEXT NOT NULL,"
            " payload BLOB NOT NULL, time REAL NOT NULL)"
        )
        db.execute("INSERT INTO journal VALUES (1, 'msg', 'soc/probes/p', ?, ?)", (BATCH, T0))
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        assert journal_packed(db) == "0"
        (stored, packed) = db.execute(f"SELECT payload, {journal_packed(db)} FROM journal").fetchone()
        assert journal_payload(stored, packed, path=path, seq=1) == BATCH
    async with Store(path) as s:
        s.append("msg", "soc/probes/p", BATCH, T0 + 1)
        s.commit()
        assert [(e.seq, e.payload) for e in s.journal_after(0)] == [(1, BATCH), (2, BATCH)]
        assert s.db.execute("SELECT packed FROM journal ORDER BY seq").fetchall() == [(0,), (1,)]
        assert s.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)


async def test_journal_after_reads_in_chunks_while_the_caller_writes(store: Store) -> None:
    """Replay reads the journal in chunks: every entry comes once, in order, even when the caller
    records and commits between entries (as recovery does)."""
    for i in range(25):
        store.append("msg", "t", b"%d" % i, T0)
    store.commit()
    seen = []
    for entry in store.journal_after(3, chunk=4):
        seen.append(entry.seq)
        store.record(rec(f"inc-{entry.seq}"), ["pager"], T0)
        store.commit()
    assert seen == list(range(4, 26))
    assert store.outbox_depth() == {"pager": 22}


# The child makes the record itself: a frozen dataclass of the core compiled by mypyc is not unpickled
# (its ``__setstate__`` would go through the frozen ``__setattr__``; engine.compiled), and only this
# test ever pickled one.
_CHILD = """
import asyncio, sys
from dataclasses import replace
from pathlib import Path
from engine.adapters.store import Store
from tests.test_store import rec

async def main() -> None:
    record = rec()
    async with Store(Path(sys.argv[1]), commit_interval=3600) as s:
        for i in range(3):
            s.append("msg", "soc/alarms/x", b"committed-%d" % i, 1.0)
        s.record(replace(record, incident_id="inc-kept"), ["pager"], 1.0)
        s.commit()
        for i in range(2):
            s.append("msg", "soc/alarms/x", b"lost-%d" % i, 2.0)
        s.record(replace(record, incident_id="inc-lost"), ["pager"], 2.0)
        print("ready", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_kill_9_loses_only_the_uncommitted_batch(tmp_path: Path) -> None:
    """A process killed with SIGKILL after a commit keeps that batch (journal, incident, outbox) and
    loses the batch it had not committed: those inputs were never acked, so MQTT redelivers them."""
    path = tmp_path / "engine.sqlite"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        str(path),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        assert await proc.stdout.readline() == b"ready\n"
    proc.kill()  # SIGKILL: no __aexit__, no final commit
    assert await proc.wait() == -9

    async with Store(path, commit_interval=3600) as s:
        assert [e.payload for e in s.journal_after(0)] == [b"committed-0", b"committed-1", b"committed-2"]
        assert s.incident("inc-kept") is not None
        assert s.incident("inc-lost") is None
        assert s.outbox_stats() == {"pager": {"pending": 1, "delivered": 0, "dead": 0}}
        assert s.append("msg", "t", b"next", 3.0) == 4  # the lost seqs are handed out again


async def test_closing_commits_what_is_buffered(tmp_path: Path) -> None:
    """Leaving the context commits the last batch (and acks it)."""
    path = tmp_path / "engine.sqlite"
    acked: list[int] = []
    async with Store(path, commit_interval=3600) as s:
        s.append("msg", "t", b"last", T0, on_durable=lambda: acked.append(1))
    assert acked == [1]
    async with Store(path) as s:
        assert [e.payload for e in s.journal_after(0)] == [b"last"]


# -- snapshots -------------------------------------------------------------------------------------
async def test_snapshot_replaces_the_previous_one_and_truncates_the_journal(store: Store) -> None:
    """save_snapshot keeps one snapshot and deletes journal entries up to its seq, not after."""
    assert store.load_snapshot() is None
    for i in range(5):
        store.append("msg", "t", b"%d" % i, T0)
    store.save_snapshot(b"state-1", 3, T0)
    assert store.load_snapshot() == (b"state-1", 3)
    assert [e.seq for e in store.journal_after(0)] == [4, 5]
    store.save_snapshot(b"state-2", 5, T0 + 1)
    assert store.load_snapshot() == (b"state-2", 5)
    assert list(store.journal_after(0)) == []


async def test_snapshot_with_keep_leaves_the_covered_entries_younger_than_keep(store: Store) -> None:
    """``keep`` (``store.keep_journal``): entries the snapshot covers stay while younger than it, the
    older ones go; what follows the snapshot (recovery's input) is the same as without it."""
    for i in range(5):
        store.append("msg", "t", b"%d" % i, T0 + 10 * i)
    store.save_snapshot(b"state-1", 4, T0 + 45, keep=30)
    assert [e.seq for e in store.journal_after(0)] == [3, 4, 5]
    assert [e.seq for e in store.journal_after(4)] == [5]
    store.save_snapshot(b"state-2", 5, T0 + 100, keep=20)
    assert list(store.journal_after(0)) == []


async def test_snapshot_commits_buffered_entries_first(store: Store) -> None:
    """Entries appended but not committed are committed (and acked) by save_snapshot."""
    acked: list[int] = []
    store.append("msg", "t", b"a", T0, on_durable=lambda: acked.append(1))
    store.append("msg", "t", b"b", T0, on_durable=lambda: acked.append(2))
    store.save_snapshot(b"s", 1, T0)
    assert acked == [1, 2]
    assert [e.payload for e in store.journal_after(0)] == [b"b"]


async def test_seqs_keep_increasing_after_the_journal_is_emptied_and_reopened(tmp_path: Path) -> None:
    """A snapshot that truncates the whole journal does not let seqs restart from 1 after a restart."""
    path = tmp_path / "engine.sqlite"
    async with Store(path) as s:
        s.append("msg", "t", b"a", T0)
        s.append("msg", "t", b"b", T0)
        s.save_snapshot(b"s", s.last_seq(), T0)
    async with Store(path) as s:
        assert s.last_seq() == 2
        assert s.append("msg", "t", b"c", T0) == 3
        assert s.load_snapshot() == (b"s", 2)
        assert [e.seq for e in s.journal_after(2)] == [3]


# -- schema ----------------------------------------------------------------------------------------
async def test_a_store_written_by_a_newer_engine_is_refused(tmp_path: Path) -> None:
    """A file whose schema_version is above ours is refused with StoreError naming file and version."""
    path = tmp_path / "engine.sqlite"
    async with Store(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}") as err:
        async with Store(path):
            pass
    assert err.value.path == path


async def test_the_tools_reading_a_store_refuse_one_a_newer_engine_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The read-only tools (``engine report --store``, ``impact what-if --store``, ``rules mine
    --store``) check the schema version before reading, as the daemon does: a newer schema may
    keep the same tables with another meaning. The error names the file and both versions."""
    path = tmp_path / "engine.sqlite"
    async with Store(path) as s:
        s.append("msg", "soc/alarms/olt-001", orjson.dumps({"ne_id": "olt-001"}), T0)
        s.commit()
    examples = Path(__file__).resolve().parent.parent / "examples"
    pipeline = Pipeline(load_topology(examples / "topology.yaml"), load_rulesets(None))
    assert from_store(pipeline, path) == 1  # the premise: this store is read
    assert [orjson.loads(x)["topic"] for x in journal_lines(Journal(path))] == ["soc/alarms/olt-001"]
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    newer = (
        rf"engine\.sqlite: schema version {SCHEMA_VERSION + 1} was written by a newer engine; this one "
        rf"reads up to {SCHEMA_VERSION}\. Upgrade the engine to read it\."
    )
    with pytest.raises(StoreError, match=newer):
        from_store(Pipeline(load_topology(examples / "topology.yaml"), load_rulesets(None)), path)
    with pytest.raises(StoreError, match=newer):
        list(journal_lines(Journal(path)))
    argv = ["rules", "mine", "--store", str(path), "--topology", str(examples / "topology.yaml")]
    assert cli_main([*argv, "--out", str(tmp_path / "mined.yaml")]) == 2
    assert f"schema version {SCHEMA_VERSION + 1} was written by a newer engine" in capsys.readouterr().err
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
    with pytest.raises(
        StoreError, match=r"its schema version is not a number \('two'\): not an engine store"
    ):
        list(journal_lines(Journal(path)))


async def test_the_file_is_created_with_wal_and_the_current_schema_version(tmp_path: Path) -> None:
    """A new file (its folder created) is in WAL mode and records the schema version."""
    path = tmp_path / "a" / "b" / "engine.sqlite"
    async with Store(path):
        pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
            SCHEMA_VERSION
        )


async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    """Garbage where the store should be: StoreError, not a bare sqlite3 exception."""
    path = tmp_path / "engine.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the store"):
        async with Store(path):
            pass


# -- incident records ------------------------------------------------------------------------------
async def test_recording_the_same_transition_twice_enqueues_it_once(store: Store) -> None:
    """Re-enqueueing a transition (crash and replay) is a no-op: one outbox row per receiver."""
    store.record(rec("inc-a", 1), ["pager", "tmf"], T0)
    store.record(rec("inc-a", 1), ["pager", "tmf"], T0 + 5)
    store.commit()
    assert store.outbox_stats() == {
        "pager": {"pending": 1, "delivered": 0, "dead": 0},
        "tmf": {"pending": 1, "delivered": 0, "dead": 0},
    }
    assert [r.created for r in store.due("pager", T0 + 10)] == [T0]


async def test_the_latest_version_wins_whatever_the_order(store: Store) -> None:
    """incident() keeps the highest version, even when an older one is recorded again later."""
    store.record(rec("inc-a", 1), [], T0)
    store.record(rec("inc-a", 2, "updated"), [], T0)
    store.record(rec("inc-a", 1), [], T0)
    latest = store.incident("inc-a")
    assert latest is not None
    assert (latest["version"], latest["event"]) == (2, "updated")
    assert latest["root_cause"] == TEMPLATE["root_cause"]
    assert store.incident("inc-missing") is None


async def test_incident_history_keeps_a_summary_of_every_version_once(store: Store) -> None:
    store.record(rec("inc-a", 1), [], T0)
    store.record(rec("inc-a", 2, "updated", priority=2, t=T0 + 60), [], T0 + 60)
    store.record(rec("inc-a", 1), [], T0 + 61)  # a replayed version: no second row
    store.record(rec("inc-a", 3, "resolved", t=T0 + 120), [], T0 + 120)
    history = store.incident_history("inc-a")
    assert [(h["version"], h["event"], h["priority"]) for h in history] == [
        (1, "opened", 1),
        (2, "updated", 2),
        (3, "resolved", 1),
    ]
    assert history[0]["suppressed"] == len(TEMPLATE["suppressed"])
    assert history[0]["customers"] == TEMPLATE["impact"]["customers"]["total"]
    assert history[1]["time"] == format_time(T0 + 60)
    assert store.incident_history("inc-missing") == []


async def test_a_reader_in_another_thread_sees_committed_incidents_light(store: Store) -> None:
    """StoreReader (its own read-only connection, in a worker thread) sees what is committed, not the
    Store's buffered writes; its light records lack the long lists but count the suppressed; its
    heads list every incident, resolved ones included; it cannot write."""
    store.record(rec("inc-a", 1, t=T0), [], T0)
    store.record(rec("inc-b", 1, t=T0 + 10), [], T0)
    store.record(rec("inc-b", 2, "resolved", t=T0 + 20), [], T0)
    store.commit()
    store.record(rec("inc-c", 1, t=T0 + 30), [], T0)  # not committed

    def read(ids: list[str] | None) -> tuple[dict[str, tuple[int, str, float]], list[dict[str, Any]]]:
        with StoreReader(store.path) as reader:
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader.db.execute("DELETE FROM incidents")
            return reader.incident_heads(), list(reader.light_records(ids))

    heads, light = await asyncio.to_thread(read, None)
    assert heads == {"inc-a": (1, "opened", T0), "inc-b": (2, "resolved", T0 + 20)}
    assert [r["incident_id"] for r in light] == ["inc-a"]
    assert light[0]["suppressed_count"] == len(TEMPLATE["suppressed"]) > 0
    assert not set(HEAVY_FIELDS) & set(light[0])
    assert light[0]["root_cause"] == TEMPLATE["root_cause"]
    store.commit()
    heads, light = await asyncio.to_thread(read, ["inc-c", "inc-b", "inc-x"])
    assert set(heads) == {"inc-a", "inc-b", "inc-c"}
    assert [r["incident_id"] for r in light] == ["inc-c"]


async def test_changed_is_set_by_a_commit_that_enqueued_rows_only(store: Store) -> None:
    """`changed` wakes the notifier after a commit with new outbox rows, not after journal-only commits."""
    store.append("msg", "t", b"x", T0)
    store.commit()
    assert not store.changed.is_set()
    store.record(rec(), ["pager"], T0)
    assert not store.changed.is_set()  # not before the commit
    store.commit()
    assert store.changed.is_set()


async def test_dead_lettered_is_set_by_a_commit_that_kept_a_dead_letter_to_publish_only(store: Store) -> None:
    """`dead_lettered` wakes the MQTT publisher when it publishes no records: after a commit that kept
    a dead letter to publish, not after one with outbox rows only, nor one whose dead letter is not
    to be published (MQTT off); such a commit sets `changed` as well (the publisher with records)."""
    store.record(rec(), ["pager"], T0)
    store.commit()
    assert store.changed.is_set()
    assert not store.dead_lettered.is_set()
    store.dead_letter(_dead("soc/alarms/olt-1", "field required", T0), "mqtt", T0, publish=False)
    store.commit()
    assert not store.dead_lettered.is_set()
    store.changed.clear()
    store.dead_letter(_dead("soc/alarms/olt-1", "field required", T0), "mqtt", T0, publish=True)
    assert not store.dead_lettered.is_set()  # not before the commit
    store.commit()
    assert store.dead_lettered.is_set()
    assert store.changed.is_set()
    store.dead_lettered.clear()
    store.append("msg", "t", b"x", T0)
    store.commit()
    assert not store.dead_lettered.is_set()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["inc-d", "inc-c", "inc-b", "inc-a"]),
        ({"state": "degraded"}, ["inc-c", "inc-b"]),
        ({"priority": 1}, ["inc-d", "inc-a"]),
        ({"since": T0 + 20}, ["inc-d", "inc-c"]),
        ({"open_only": True}, ["inc-d", "inc-b", "inc-a"]),
        ({"limit": 2}, ["inc-d", "inc-c"]),
        ({"state": "degraded", "open_only": True}, ["inc-b"]),
    ],
)
async def test_incidents_filters(store: Store, query: dict[str, Any], expected: list[str]) -> None:
    """incidents() gives the latest record of each incident, newest record time first, filtered."""
    store.record(rec("inc-a", 1, priority=1, t=T0), [], T0)
    store.record(rec("inc-b", 1, priority=3, state="degraded", t=T0 + 10), [], T0)
    store.record(rec("inc-c", 1, priority=3, state="degraded", t=T0 + 20), [], T0)
    store.record(rec("inc-c", 2, "resolved", priority=3, state="degraded", t=T0 + 25), [], T0)
    store.record(rec("inc-d", 1, priority=1, t=T0 + 30), [], T0)
    assert [r["incident_id"] for r in store.incidents(**query)] == expected


async def test_has_incident_is_per_receiver(store: Store) -> None:
    """has_incident says whether that receiver got (or gets) a row for the incident."""
    store.record(rec("inc-a"), ["pager"], T0)
    assert store.has_incident("pager", "inc-a")
    assert not store.has_incident("tmf", "inc-a")
    assert not store.has_incident("pager", "inc-b")


# -- outbox ----------------------------------------------------------------------------------------
def _due(store: Store, now: float = T0 + 100) -> list[tuple[str, int]]:
    return [(r.incident_id, r.version) for r in store.due("pager", now)]


async def test_due_gives_only_the_lowest_pending_version_of_each_incident(store: Store) -> None:
    """Versions of one incident go one at a time, in order; other incidents are not held back."""
    for iid, version, event in [
        ("inc-a", 1, "opened"),
        ("inc-b", 1, "opened"),
        ("inc-a", 2, "updated"),
        ("inc-a", 3, "resolved"),
    ]:
        store.record(rec(iid, version, event), ["pager"], T0)
    rows = store.due("pager", T0)
    assert [(r.incident_id, r.version, r.event) for r in rows] == [
        ("inc-a", 1, "opened"),
        ("inc-b", 1, "opened"),
    ]
    assert rows[0].record["incident_id"] == "inc-a"
    assert (rows[0].attempts, rows[0].next_attempt, rows[0].receiver) == (0, T0, "pager")
    store.delivered(rows[0].id, T0)
    assert _due(store) == [("inc-b", 1), ("inc-a", 2)]


async def test_a_row_in_backoff_holds_back_its_incident_only(store: Store) -> None:
    """A head row waiting for its retry time blocks its later versions; next_due_time is its retry time."""
    store.record(rec("inc-a", 1), ["pager"], T0)
    store.record(rec("inc-a", 2, "updated"), ["pager"], T0)
    store.record(rec("inc-b", 1), ["pager"], T0)
    head = store.due("pager", T0)[0]
    store.retry(head.id, T0 + 60, "HTTP 503")
    assert _due(store, T0 + 1) == [("inc-b", 1)]
    assert store.next_due_time("pager") == T0  # inc-b is due now
    assert store.next_due_time("pager", exclude=["inc-b"]) == T0 + 60
    assert _due(store, T0 + 60) == [("inc-b", 1), ("inc-a", 1)]  # earliest due first
    assert store.due("pager", T0 + 60)[1].attempts == 1
    assert store.next_due_time("nobody") is None


async def test_a_version_recorded_late_still_goes_first(store: Store) -> None:
    """Should a lower version arrive after a higher one (the core never does this), it becomes the
    incident's head and the higher one waits behind it."""
    store.record(rec("inc-a", 2, "updated"), ["pager"], T0)
    store.record(rec("inc-a", 1), ["pager"], T0 + 1)
    (head,) = store.due("pager", T0 + 10)
    assert head.version == 1
    store.delivered(head.id, T0 + 10)
    assert _due(store) == [("inc-a", 2)]


async def test_due_is_oldest_first_across_incidents(store: Store) -> None:
    """Rows never tried come out in creation order, whichever incident they belong to."""
    for i, t in enumerate([T0 + 3, T0 + 1, T0 + 2]):
        store.record(rec(f"inc-{i}"), ["pager"], t)
    assert _due(store) == [("inc-1", 1), ("inc-2", 1), ("inc-0", 1)]


async def test_a_record_in_its_json_form_is_stored_as_the_typed_one(tmp_path: Path) -> None:
    """``WireRecord`` (a record read back or received from another engine) is kept exactly as the
    core's typed record it came from: the same row, summary and outbox entry."""
    typed = rec("inc-w", 2, "updated", priority=2)
    kept = []
    items: list[StoredRecord] = [typed, WireRecord(typed.to_wire())]
    for i, item in enumerate(items):
        async with Store(tmp_path / f"s{i}.sqlite") as s:
            s.record(item, ["pager"], T0)
            s.commit()
            kept.append((s.incident("inc-w"), s.incident_history("inc-w"), s.outbox_stats()))
    assert kept[0] == kept[1]
    assert kept[0][0] == typed.to_wire()


async def test_outbox_trouble_names_retried_rows_and_the_last_error(store: Store) -> None:
    """Per receiver: the rows being retried, the most attempts on one, the next attempt and the
    error of the row tried most; with none retried, the error of the row that died last; a
    receiver with neither is left out."""
    for iid in ("inc-a", "inc-b", "inc-c"):
        store.record(rec(iid), ["pager", "ok"], T0)
    assert store.outbox_trouble() == {}
    a, b, _c = store.due("pager", T0)
    store.retry(a.id, T0 + 5, "HTTP 503: busy")
    store.retry(a.id, T0 + 20, "HTTP 503: still busy")
    store.retry(b.id, T0 + 10, "connection refused")
    (ok,) = store.due("ok", T0)[:1]
    store.dead(ok.id, "HTTP 400: bad payload", T0 + 1)
    assert store.outbox_trouble() == {
        "pager": {
            "retrying": 2,
            "attempts": 2,
            "next_attempt": T0 + 10,
            "last_error": "HTTP 503: still busy",
        },
        "ok": {
            "retrying": 0,
            "attempts": 0,
            "next_attempt": None,
            "last_error": "HTTP 400: bad payload",
            "last_error_at": T0 + 1,
        },
    }
    store.delivered(a.id, T0 + 30)
    store.delivered(b.id, T0 + 30)
    assert "pager" not in store.outbox_trouble()


async def test_dead_lets_the_next_version_go(store: Store) -> None:
    """A dead row is never due again, and the incident's next version becomes due."""
    store.record(rec("inc-a", 1), ["pager"], T0)
    store.record(rec("inc-a", 2, "resolved"), ["pager"], T0)
    (head,) = store.due("pager", T0)
    store.dead(head.id, "HTTP 400: bad payload", T0)
    assert _due(store) == [("inc-a", 2)]
    assert store.outbox_stats()["pager"] == {"pending": 1, "delivered": 0, "dead": 1}
    row = store.outbox_row(head.id)
    assert row is not None
    assert (row["state"], row["last_error"], row["attempts"]) == ("dead", "HTTP 400: bad payload", 1)


async def test_due_respects_exclude_and_limit(store: Store) -> None:
    """exclude leaves incidents out (those in flight); limit caps the rows, oldest first."""
    for i in range(5):
        store.record(rec(f"inc-{i}"), ["pager"], T0 + i)
    assert [r.incident_id for r in store.due("pager", T0 + 10, limit=2)] == ["inc-0", "inc-1"]
    assert [r.incident_id for r in store.due("pager", T0 + 10, limit=2, exclude={"inc-0", "inc-2"})] == [
        "inc-1",
        "inc-3",
    ]


async def test_outbox_depth_counts_pending_rows_per_receiver(store: Store) -> None:
    """outbox_depth counts pending rows (in backoff included) per receiver; delivered ones are gone."""
    store.record(rec("inc-a", 1), ["pager", "tmf"], T0)
    store.record(rec("inc-a", 2, "updated"), ["pager"], T0)
    store.delivered(store.due("tmf", T0)[0].id, T0)
    assert store.outbox_depth() == {"pager": 2}


async def test_purge_deletes_old_delivered_rows_but_keeps_what_routing_needs(tmp_path: Path) -> None:
    """Delivered rows older than keep_delivered go; pending and dead rows stay; the newest row of an
    incident that is not resolved stays, so its resolution still reaches the receiver."""
    async with Store(tmp_path / "engine.sqlite", keep_delivered=100) as s:
        for iid, version, event in [
            ("inc-open", 1, "opened"),
            ("inc-open", 2, "updated"),
            ("inc-done", 1, "opened"),
            ("inc-done", 2, "resolved"),
        ]:
            s.record(rec(iid, version, event), ["pager"], T0)
            (row,) = s.due("pager", T0)
            s.delivered(row.id, T0)
        s.record(rec("inc-pending"), ["pager"], T0)
        s.record(rec("inc-dead"), ["pager"], T0)
        dead = next(r for r in s.due("pager", T0) if r.incident_id == "inc-dead")
        s.dead(dead.id, "HTTP 400", T0)
        assert s.purge(T0 + 50) == 0  # nothing old enough yet
        assert s.purge(T0 + 101) == 3  # inc-open v1, inc-done v1 and v2
        assert [r["version"] for r in s.outbox_rows("pager", "inc-open")] == [2]
        assert s.has_incident("pager", "inc-open")
        assert not s.has_incident("pager", "inc-done")
        assert s.outbox_stats()["pager"] == {"pending": 1, "delivered": 1, "dead": 1}


async def test_writes_are_visible_at_once_but_durable_only_after_commit(tmp_path: Path) -> None:
    """Reads on the store's connection see its uncommitted writes; another connection does not."""
    path = tmp_path / "engine.sqlite"
    async with Store(path, commit_interval=3600) as s:
        s.record(rec(), ["pager"], T0)
        assert s.incident("inc-a") is not None
        with sqlite3.connect(path) as other:
            assert other.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
        s.commit()
        with sqlite3.connect(path) as other:
            assert other.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1


def _dead(topic: str, reason: str, t: float) -> DeadLetter:
    return DeadLetter(t, topic, (("severity", reason),), "{}", truncated=False)


async def test_dead_letters_are_kept_filtered_paged_and_published_once(store: Store) -> None:
    """Dead letters are kept with their source; filtered by reason (substring, any case), source,
    topic (exact or a `#` prefix) and time; paged newest first with `before`; marked published."""
    store.dead_letter(_dead("soc/alarms/olt-1", "field required", 100.0), "mqtt", 100.0, publish=True)
    store.dead_letter(_dead("soc/probes/p-1", "not a number", 101.0), "http", 101.0, publish=True)
    third = store.dead_letter(_dead("soc/alarms/olt-2", "Field required", 102.0), "mqtt", 102.0, publish=True)
    store.commit()
    assert [d["topic"] for d in store.dead_letters()] == [
        "soc/alarms/olt-2",
        "soc/probes/p-1",
        "soc/alarms/olt-1",
    ]
    assert [d["id"] for d in store.dead_letters(reason="FIELD REQ")] == [third, third - 2]
    assert [d["source"] for d in store.dead_letters(source="http")] == ["http"]
    assert len(store.dead_letters(topic="soc/alarms/#")) == 2
    assert len(store.dead_letters(topic="soc/alarms")) == 0
    assert len(store.dead_letters(since=101.0)) == 2
    page = store.dead_letters(limit=2)
    assert [d["id"] for d in store.dead_letters(before=page[-1]["id"])] == [third - 2]
    assert [i for i, _ in store.unpublished_dead_letters()] == [third - 2, third - 1, third]
    store.dead_letter_published(third - 2)
    assert store.dead_letter_counts() == (3, 2)


async def test_dead_letters_are_bounded_and_unpublished_purges_are_counted(tmp_path: Path) -> None:
    """Beyond `max_dead_letters` the oldest go (a burst cannot grow the file), and so do rows older
    than `keep_dead_letters`; each one purged before it was published is counted."""
    async with Store(tmp_path / "s.sqlite", max_dead_letters=100, keep_dead_letters=3600) as store:
        for i in range(250):
            store.dead_letter(_dead("t", "bad", float(i)), "mqtt", float(i), publish=i % 2 == 0)
        store.commit()
        kept, _ = store.dead_letter_counts()
        assert 100 <= kept <= 200
        assert store.purge_dead_letters(200.0) == kept - 100
        assert store.dead_letter_counts()[0] == 100
        assert store.dead_letters_dropped == 75  # the even ones among the 150 oldest
        store.purge_dead_letters(250.0 + 3600)
        assert store.dead_letter_counts() == (0, 0)
        assert store.dead_letters_dropped == 125


async def test_explanations_of_resolved_incidents_are_kept_within_bounds(tmp_path: Path) -> None:
    """Explanations are kept by incident (a replay replaces one), and purged by age and beyond
    `max_explanations`, newest kept."""
    async with Store(tmp_path / "s.sqlite", keep_explanations=100.0, max_explanations=3) as store:
        for i in range(5):
            store.keep_explanation(f"inc-{i}", float(i), {"n": i})
        store.keep_explanation("inc-4", 4.0, {"n": 44})
        store.commit()
        assert store.explanation("inc-4") == {"n": 44}
        assert store.purge_explanations(50.0) == 2
        assert [store.explanation(f"inc-{i}") is not None for i in range(5)] == [
            False,
            False,
            True,
            True,
            True,
        ]
        assert store.purge_explanations(103.5) == 2  # older than 100 s: inc-2 and inc-3
        assert store.explanation("inc-4") == {"n": 44}


async def test_the_offline_tools_stop_on_a_damaged_entry_only_when_they_read_it(tmp_path: Path) -> None:
    """``engine report --store`` / ``impact what-if --store --at``: a damaged compressed entry after
    the time asked for is never read (the state before it comes back); one the replay needs stops
    the tool with the store and the entry named."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    path = tmp_path / "engine.sqlite"
    alarm = {"ne_id": "olt-001", "severity": "major", "probable_cause": "linkDown"}
    async with Store(path) as s:
        s.append("msg", "soc/alarms/olt-001", orjson.dumps({**alarm, "event_time": T0}), T0)
        s.append(
            "msg", "soc/alarms/olt-002", orjson.dumps({**alarm, "ne_id": "olt-002", "event_time": T0}), T0 + 1
        )
        s.append("msg", "soc/probes/p", BATCH, T0 + 2)
        s.commit()
        s.db.execute("UPDATE journal SET payload = ? WHERE seq = 3", (b"\xff" * 40,))
        s.db.commit()

    def pipeline() -> Pipeline:
        return Pipeline(load_topology(examples / "topology.yaml"), load_rulesets(None))

    before = pipeline()
    assert from_store(before, path, until=T0 + 1) == 2
    assert before.query.active_alarm_count() == 2
    with pytest.raises(
        StoreError, match=r"engine\.sqlite: journal entry 3: its compressed payload does not inflate"
    ):
        from_store(pipeline(), path)


async def test_a_thread_of_its_own_checkpoints_the_wal_so_commits_do_not(tmp_path: Path) -> None:
    """The checkpointer thread copies the WAL back while the writer goes on: 10 MB journaled in
    rounds of 1 MB leave a WAL of a few MB at most (none of SQLite's own checkpoints: the fallback
    is at 32 MB), and every entry reads back."""
    path = tmp_path / "engine.sqlite"
    payload = bytes(range(256)) * 3  # 768 bytes: below PACK_FROM, journaled as it is
    async with Store(path, commit_interval=3600) as s:
        for round_no in range(10):
            before = s.checkpoints
            for i in range(1365):  # about 1 MB
                s.append("msg", f"t/{round_no}/{i}", payload, T0)
                if i % 100 == 99:
                    s.commit()
            s.commit()
            deadline = time.monotonic() + 10
            while s.checkpoints <= before + 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert s.checkpoints > before + 1, "the checkpointer thread ran no checkpoint"
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size < 4_000_000
        assert sum(1 for _ in s.journal_after(0)) == 13650
    assert not wal.exists()  # the last connection's close checkpoints and removes it


async def test_without_the_thread_sqlite_checkpoints_in_the_commits(tmp_path: Path) -> None:
    async with Store(tmp_path / "engine.sqlite", commit_interval=3600, checkpoint_thread=False) as s:
        s.append("msg", "t", b"x", T0)
        s.commit()
        assert s.checkpoints == 0
        assert s.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000


async def test_a_store_in_memory_has_no_checkpointer_thread() -> None:
    async with Store(Path(":memory:"), commit_interval=3600) as s:
        assert s._checkpointer is None
        assert not any(t.name.startswith("store:checkpoint:") for t in threading.enumerate())


async def test_when_the_checkpointer_thread_dies_the_commits_checkpoint_as_before(tmp_path: Path) -> None:
    async with Store(tmp_path / "engine.sqlite", commit_interval=3600) as s:
        checkpointer = s._checkpointer
        assert checkpointer is not None
        assert s.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 8000
        checkpointer.join()  # as if it had stopped on an error: ``alive`` is False
        assert not checkpointer.alive
        s.append("msg", "t", b"x", T0)
        s.commit()
        assert s._checkpointer is None
        assert s.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        assert sum(1 for _ in s.journal_after(0)) == 1
