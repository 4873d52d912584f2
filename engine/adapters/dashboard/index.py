"""The open incidents as list rows, kept current from the store without blocking the event loop.

Theory of operation
-------------------
``IncidentIndex`` keeps one ``Row`` (``views.row_of``) per open incident and the latest version of
every incident it has seen, open or not. It follows the records in two ways:

* A *full read* learns every stored incident's latest version and event, and builds a row for each
  open incident whose version it did not know. Done at the first view after a start (every row)
  and every ``full_every`` polls (in case a clock stepped back and left a record behind the
  incremental read: then only the few changed rows). With a store file (the daemon's), it runs in
  a worker thread (``asyncio.to_thread``) on a read-only connection of its own (``StoreReader``):
  the version of each incident without reading a record, then *light* records (SQLite cuts the
  lists that grow with the incident, so Python parses a few hundred bytes each, not the whole
  record). The event loop keeps serving MQTT and HTTP meanwhile. Without a store (an in-memory
  core, a test) it reads ``CoreView.incidents`` inline.
* An *incremental read*, on the loop, at every poll and page view: ``CoreView.incidents`` with
  ``since`` the newest record time seen (an index range scan on the store's ``time`` column). It
  sees the store's writes not yet committed, which the thread's connection does not.

A full read shows the committed state when it started, and the loop may have applied newer
versions while it ran (a page view, the ack form). So it changes only the incidents the loop did
not change meanwhile, removes only rows it was told about and did not find, and is followed at once
by an incremental read, which catches up on what was written while it ran. ``revision`` grows by
one on every change; ``changed`` lists the incidents of the last change (what the live stream
announces).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from engine.adapters.dashboard.views import Row, row_of
from engine.adapters.store import StoreReader

__all__ = ["FULL_READ", "FullRead", "IncidentIndex", "IncidentSource", "StoreHolder", "read_store"]

FULL_READ: Final = 10_000_000  # "every record": the store's LIMIT


class IncidentSource(Protocol):
    """The part of ``CoreView`` the index reads."""

    def incidents(
        self, *, state: str | None, priority: int | None, since: float | None, open_only: bool, limit: int
    ) -> list[dict[str, Any]]: ...


class _HasPath(Protocol):
    @property
    def path(self) -> Path: ...


@runtime_checkable
class StoreHolder(Protocol):
    """A core with a store file (the daemon's ``store``): the index's full reads run in a thread."""

    @property
    def store(self) -> _HasPath: ...


@dataclass(frozen=True, slots=True)
class FullRead:
    """What a full read found: every stored incident's (version, event, record time), and a row for
    each open incident whose version the reader was not given."""

    heads: dict[str, tuple[int, str, float]]
    rows: dict[str, Row]
    seconds: float  # how long the read took (in its thread)


def read_store(path: Path, known: Mapping[str, int]) -> FullRead:
    """A full read of the store file at ``path`` on a connection of its own (run in a worker thread).
    ``known``: the version of each incident the index has; only the others' records are read."""
    started = time.perf_counter()
    with StoreReader(path) as reader:
        heads = reader.incident_heads()
        wanted = [i for i, (v, event, _) in heads.items() if event != "resolved" and known.get(i) != v]
        # Most of them (the first read): one scan; a few: by primary key.
        records = reader.light_records(None if len(wanted) > len(heads) // 4 else wanted)
        rows = _rows(records, known)
    return FullRead(heads, rows, time.perf_counter() - started)


def read_source(source: IncidentSource, known: Mapping[str, int]) -> FullRead:
    """A full read through ``CoreView.incidents`` (inline: for a core without a store file)."""
    started = time.perf_counter()
    records = source.incidents(state=None, priority=None, since=None, open_only=False, limit=FULL_READ)
    heads: dict[str, tuple[int, str, float]] = {}
    open_records = []
    for rec in records:
        row = row_of(rec)
        heads[row.incident_id] = (row.version, row.event, row.time)
        if row.event != "resolved":
            open_records.append(rec)
    return FullRead(heads, _rows(open_records, known), time.perf_counter() - started)


def _rows(records: Iterable[Mapping[str, Any]], known: Mapping[str, int]) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for rec in records:
        row = row_of(rec)
        if known.get(row.incident_id) != row.version:
            rows[row.incident_id] = row
    return rows


class IncidentIndex:
    """The open incidents as rows, kept current from the store's records (see the module doc)."""

    def __init__(self, source: IncidentSource, *, full_every: int = 120) -> None:
        self._source = source
        self._full_every = full_every  # polls between two full reads
        self.rows: dict[str, Row] = {}
        self._versions: dict[str, int] = {}  # every incident seen, open or not: its latest version
        self._newest = 0.0
        self._polls = 0
        self.revision = 0
        self.changed: list[str] = []  # incident ids changed by the last refresh that changed anything
        self.loaded = False
        self.last_full_read: FullRead | None = None
        self._reading: asyncio.Future[bool] | None = None

    @property
    def threaded(self) -> bool:
        """Full reads run in a worker thread (the source has a store file)."""
        return isinstance(self._source, StoreHolder)

    # -- reads ---------------------------------------------------------------------------------

    async def poll(self) -> bool:
        """What the watcher does every poll: an incremental read, or now and then a full one."""
        self._polls += 1
        if not self.loaded or self._polls % self._full_every == 0:
            return await self.full_read()
        return self.refresh()

    async def full_read(self) -> bool:
        """A full read (see the module doc). A caller arriving while one runs waits for that one."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._full_read())
        return await asyncio.shield(self._reading)  # a request that goes away does not stop it

    async def _full_read(self) -> bool:
        before = dict(self._versions)
        source = self._source
        if isinstance(source, StoreHolder):
            found = await asyncio.to_thread(read_store, source.store.path, before)
        else:
            found = read_source(source, before)
        self.last_full_read = found
        changed: list[str] = []
        for iid, (version, event, t) in found.heads.items():
            self._newest = max(self._newest, t)
            if self._versions.get(iid) != before.get(iid):
                continue  # the loop read a newer version while this read ran
            if before.get(iid) == version:
                continue
            if event == "resolved":
                self._versions[iid] = version
                changed.append(iid)
                self.rows.pop(iid, None)
                continue
            row = found.rows.get(iid)
            if row is None or row.version != version:
                continue  # changed between the two queries: the incremental read below has it
            self._versions[iid] = version
            self.rows[iid] = row
            changed.append(iid)
        # An incident the store no longer holds (a new store file) is gone from the list.
        for iid in [i for i in self.rows if i in before and i not in found.heads]:
            if self._versions.get(iid) == before[iid]:
                del self.rows[iid]
                del self._versions[iid]
                changed.append(iid)
        self.loaded = True
        changed += self._incremental()
        return self._changed(changed)

    def refresh(self) -> bool:
        """An incremental read (on the loop); True (and ``revision`` + 1) when any incident changed.
        Nothing before the first full read."""
        if not self.loaded:
            return False
        return self._changed(self._incremental())

    def _incremental(self) -> list[str]:
        records = self._source.incidents(
            state=None, priority=None, since=self._newest, open_only=False, limit=FULL_READ
        )
        changed: list[str] = []
        for rec in records:
            iid = str(rec.get("incident_id", ""))
            version = int(rec.get("version", 0))
            row = row_of(rec)
            self._newest = max(self._newest, row.time)
            if self._versions.get(iid) == version:
                continue
            self._versions[iid] = version
            changed.append(iid)
            if row.event == "resolved":
                self.rows.pop(iid, None)
            else:
                self.rows[iid] = row
        return changed

    def touch(self, incident_ids: list[str]) -> bool:
        """Incidents that changed without a record (their root cleared: ``clearing``): a new
        revision naming them, so the live pages fetch them again."""
        return self._changed(incident_ids)

    def _changed(self, changed: list[str]) -> bool:
        if not changed:
            return False
        self.revision += 1
        self.changed = list(dict.fromkeys(changed))
        return True
