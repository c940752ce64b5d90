"""Durable Raft state: SQLite (WAL, synchronous=FULL) for the log and hard state,
one file per snapshot beside it.

Layout of `data_dir`:

    raft.db        tables entries, hard_state, snapshots (every row carries a CRC)
    snapshots/     <term>-<index>.snap files, see `agentflow.raft.snapshots`

The database is the single source of truth for which snapshots exist: a snapshot
file is written and fsynced first, and only the transaction that records it (and
drops the entries it replaces) makes it live. A crash in between leaves an
unrecorded file that the next `open` removes, so the log and the snapshot can
never disagree.

One `RaftStorage` owns its directory; all its transactions go through one
aiosqlite connection and are serialized by a lock, so the host may call
`save_snapshot` from another task while the driver calls `save`.

A write that fails because the disk is full is not an error to the caller: it is
rolled back and retried every second until it fits (`agentflow.raft.disk_full`),
and `disk_full` says so meanwhile. Nothing is acknowledged that is not durable,
and nothing half written is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import struct
import sys
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
from google.protobuf.message import DecodeError

from agentflow._proto import raft_pb2 as pb
from agentflow.raft import snapshots
from agentflow.raft.codec import hard_state_from_pb, hard_state_to_pb
from agentflow.raft.core import bootstrap_entries
from agentflow.raft.disk_full import DiskFullWatch
from agentflow.raft.guard import LIMIT
from agentflow.raft.types import (
    NONE,
    Entry,
    EntryType,
    HardState,
    NodeId,
    RaftError,
    Ready,
    Snapshot,
    SnapshotMeta,
)

DB_NAME = "raft.db"
SNAPSHOT_DIR = "snapshots"
SCHEMA_VERSION = 1
# Two, so that a latest snapshot file found damaged on load can fall back to the
# previous one (when the log still reaches back to it).
KEEP_SNAPSHOTS = 2

_SCHEMA = f"""
BEGIN;
CREATE TABLE IF NOT EXISTS entries (
    idx  INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    type INTEGER NOT NULL,
    data BLOB    NOT NULL,
    crc  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hard_state (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    data BLOB    NOT NULL,
    crc  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    idx  INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    crc  INTEGER NOT NULL
);
-- One INSERT into this view appends entries and sets the hard state in a single
-- statement, which SQLite runs as one implicit, fsynced transaction: a single
-- round trip to aiosqlite's thread instead of four (BEGIN, INSERT, UPSERT, COMMIT).
CREATE VIEW IF NOT EXISTS log_writes AS
    SELECT 0 AS kind, idx, term, type, data, crc FROM entries WHERE 0;
CREATE TRIGGER IF NOT EXISTS log_writes_insert INSTEAD OF INSERT ON log_writes BEGIN
    INSERT INTO entries (idx, term, type, data, crc)
        SELECT NEW.idx, NEW.term, NEW.type, NEW.data, NEW.crc WHERE NEW.kind = 0;
    INSERT OR REPLACE INTO hard_state (id, data, crc)
        SELECT 1, NEW.data, NEW.crc WHERE NEW.kind = 1;
END;
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""
# Rows per single-statement write: 6 bound values each, under SQLite's default
# limit of 32,766 variables per statement.
_MAX_ONE_STATEMENT_ROWS = 4096
_LOG_WRITE_ROW = "(?, ?, ?, ?, ?, ?)"

_INSERT_ENTRIES = "INSERT INTO entries (idx, term, type, data, crc) VALUES (?, ?, ?, ?, ?)"
_UPSERT_HARD_STATE = "INSERT OR REPLACE INTO hard_state (id, data, crc) VALUES (1, ?, ?)"
_UPSERT_SNAPSHOT = "INSERT OR REPLACE INTO snapshots (idx, term, crc) VALUES (?, ?, ?)"

_ENTRY_HEADER = struct.Struct("<QQB")  # term, index, type
_SNAPSHOT_ROW = struct.Struct("<QQ")  # index, term

_EntryRow = tuple[int, int, int, bytes, int]


class StorageCorruptError(RaftError):
    """Stored state failed a check; nothing from it was returned.

    `where` names the table or file at fault, `index` the log index when known."""

    def __init__(self, where: str, detail: str, index: int | None = None) -> None:
        self.where = where
        self.index = index
        at = f" at index {index}" if index is not None else ""
        super().__init__(f"{where}{at}: {detail}")


@dataclass(frozen=True)
class PersistedState:
    hard_state: HardState
    snapshot: Snapshot | None
    """The latest valid snapshot (meta and data), or None."""
    entries: list[Entry]
    """Every stored entry after `snapshot.meta.index` (from index 1 without a
    snapshot), in order and contiguous."""


def entry_crc(term: int, index: int, type_: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(_ENTRY_HEADER.pack(term, index, type_)))


def _snapshot_row_crc(index: int, term: int) -> int:
    return zlib.crc32(_SNAPSHOT_ROW.pack(index, term))


def _check_range(what: str, value: int) -> None:
    """The last defence behind `guard`: never store a term or index that a later
    `+ 1` (or SQLite's signed 64-bit INTEGER) cannot hold."""
    if not 0 <= value < LIMIT:
        raise RaftError(f"{what}: {value} is outside [0, 2**62); refusing to store it")


def _entry_rows(entries: Sequence[Entry]) -> list[_EntryRow]:
    _check_range("entry term", entries[-1].term)
    _check_range("entry index", entries[-1].index)
    first = entries[0].index
    if entries[-1].index != first + len(entries) - 1:
        raise ValueError(f"entries are not contiguous: {first}..{entries[-1].index}")
    return [
        (e.index, e.term, int(e.type), e.data, entry_crc(e.term, e.index, int(e.type), e.data))
        for e in entries
    ]


def _hard_state_params(hs: HardState) -> tuple[bytes, int]:
    _check_range("hard state term", hs.term)
    _check_range("hard state commit", hs.commit)
    data = hard_state_to_pb(hs).SerializeToString()
    return data, zlib.crc32(data)


def _one_statement_append(
    rows: list[_EntryRow], hs: tuple[bytes, int] | None
) -> tuple[str, list[object]]:
    params: list[object] = []
    for row in rows:
        params.append(0)
        params.extend(row)
    count = len(rows)
    if hs is not None:
        params.extend((1, 0, 0, 0, hs[0], hs[1]))
        count += 1
    return "INSERT INTO log_writes VALUES " + ", ".join([_LOG_WRITE_ROW] * count), params


class RaftStorage:
    def __init__(
        self,
        data_dir: Path,
        db: aiosqlite.Connection,
        snaps: dict[int, int],
        disk: DiskFullWatch | None = None,
    ) -> None:
        """Use `RaftStorage.open`."""
        self.data_dir = data_dir
        self.disk = disk or DiskFullWatch(data_dir)
        self.snapshot_dir = data_dir / SNAPSHOT_DIR
        self._db_label = str(data_dir / DB_NAME)
        self._db: aiosqlite.Connection | None = db
        self._lock = asyncio.Lock()
        # Recorded snapshots, index -> term: mirrors the snapshots table after
        # every commit so pruning needs no query inside the hot transaction.
        self._snaps = snaps
        # Snapshots whose file failed verification in `load`; pruned first.
        self._bad_snaps: set[int] = set()
        # Upper bound of the highest stored entry index. Appends past it (the
        # common case) skip the DELETE of a conflicting suffix; it may only ever
        # be too high, which costs a no-op DELETE, never too low.
        self._last_index = sys.maxsize

    # -- lifecycle -------------------------------------------------------------

    @classmethod
    async def open(cls, data_dir: Path, disk: DiskFullWatch | None = None) -> RaftStorage:
        """Open (creating if need be) the storage in `data_dir`. On a full disk this
        waits, retrying, until the database can be created or opened."""
        data_dir = Path(data_dir)
        watch = disk or DiskFullWatch(data_dir)
        return await watch.run(lambda: cls._open(data_dir, watch), "open")

    @classmethod
    async def _open(cls, data_dir: Path, disk: DiskFullWatch) -> RaftStorage:
        snap_dir = data_dir / SNAPSHOT_DIR
        await asyncio.to_thread(_make_dirs, data_dir, snap_dir)
        db = await aiosqlite.connect(data_dir / DB_NAME, isolation_level=None)
        try:
            rows = list(await db.execute_fetchall("PRAGMA journal_mode=WAL"))
            if str(rows[0][0]).lower() != "wal":
                raise RaftError(f"{data_dir / DB_NAME}: cannot enable WAL (got {rows[0][0]})")
            await db.execute("PRAGMA synchronous=FULL")
            rows = list(await db.execute_fetchall("PRAGMA user_version"))
            version = int(rows[0][0])
            if version > SCHEMA_VERSION:
                raise RaftError(
                    f"{data_dir / DB_NAME}: schema version {version} is newer than "
                    f"supported {SCHEMA_VERSION}"
                )
            if version < SCHEMA_VERSION:
                await db.executescript(_SCHEMA)
            snaps, rows_ok = await _read_snapshot_rows(db)
            rows = list(await db.execute_fetchall("SELECT max(idx) FROM entries"))
            last = rows[0][0]
            # Orphan files can only be told apart from recorded ones when every
            # row is intact; otherwise keep them all and let `load` report.
            keep = {snapshots.file_name(t, i) for i, t in snaps.items()} if rows_ok else None
            await asyncio.to_thread(_clean_dirs, data_dir, snap_dir, keep)
        except BaseException:
            await db.close()
            raise
        storage = cls(data_dir, db, snaps, disk)
        if isinstance(last, int):
            storage._last_index = last
        elif last is None:
            storage._last_index = 0
        return storage

    async def close(self) -> None:
        async with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                await db.close()

    @property
    def disk_full(self) -> bool:
        """The last write failed for lack of space and is being retried."""
        return self.disk.full

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RaftError(f"{self._db_label}: storage is closed")
        return self._db

    # -- reading ---------------------------------------------------------------

    async def is_empty(self) -> bool:
        """Nothing was ever written: no hard state, no entries, no snapshot."""
        async with self._lock:
            return await self._is_empty(self._conn())

    @staticmethod
    async def _is_empty(db: aiosqlite.Connection) -> bool:
        rows = list(
            await db.execute_fetchall(
                "SELECT EXISTS (SELECT 1 FROM hard_state) OR EXISTS (SELECT 1 FROM entries)"
                " OR EXISTS (SELECT 1 FROM snapshots)"
            )
        )
        return not rows[0][0]

    async def load(self) -> PersistedState:
        """Everything stored, every record verified.

        Raises StorageCorruptError rather than return anything that failed a check.
        A damaged latest snapshot file is replaced by the newest valid earlier one
        only when the stored log still holds every entry between the two."""
        async with self._lock:
            db = self._conn()
            hs_rows = list(await db.execute_fetchall("SELECT data, crc FROM hard_state"))
            snaps, _ = await _read_snapshot_rows(db, strict=self._db_label)
            entry_rows = await db.execute_fetchall(
                "SELECT idx, term, type, data, crc FROM entries ORDER BY idx"
            )
            hard_state = self._verify_hard_state(hs_rows)
            entries = self._verify_entries(entry_rows)
            snapshot = await self._pick_snapshot(snaps, entries)

        base = snapshot.meta.index if snapshot else 0
        if entries and entries[0].index <= base:
            entries = entries[base - entries[0].index + 1 :]
        if entries and entries[0].index != base + 1:
            raise StorageCorruptError(
                f"{self._db_label} table entries",
                f"missing; the stored log resumes at {entries[0].index}",
                index=base + 1,
            )
        last = entries[-1].index if entries else base
        if hard_state.commit > last:
            raise StorageCorruptError(
                f"{self._db_label} table hard_state",
                f"commit index {hard_state.commit} is beyond the last stored index {last}",
            )
        return PersistedState(hard_state, snapshot, entries)

    def _verify_hard_state(self, rows: list[sqlite3.Row]) -> HardState:
        if not rows:
            return HardState()
        where = f"{self._db_label} table hard_state"
        data, crc = rows[0]
        if not isinstance(data, bytes) or zlib.crc32(data) != crc:
            raise StorageCorruptError(where, "CRC mismatch")
        try:
            return hard_state_from_pb(pb.HardState.FromString(data))
        except DecodeError as e:
            raise StorageCorruptError(where, f"undecodable: {e}") from e

    def _verify_entries(self, rows: Iterable[sqlite3.Row]) -> list[Entry]:
        where = f"{self._db_label} table entries"
        out: list[Entry] = []
        prev = 0
        for idx, term, type_, data, crc in rows:
            try:
                ok = entry_crc(term, idx, type_, data) == crc
                etype = EntryType(type_)
            except (TypeError, ValueError, struct.error):
                ok = False
            if not ok:
                raise StorageCorruptError(where, "CRC mismatch", index=idx)
            if out and idx != prev + 1:
                raise StorageCorruptError(where, f"missing (next stored is {idx})", index=prev + 1)
            out.append(Entry(term, idx, etype, data))
            prev = idx
        return out

    async def _pick_snapshot(self, snaps: dict[int, int], entries: list[Entry]) -> Snapshot | None:
        if not snaps:
            return None
        newest = max(snaps)
        newest_path = self.snapshot_dir / snapshots.file_name(snaps[newest], newest)
        problem = ""
        for index in sorted(snaps, reverse=True):
            term = snaps[index]
            path = self.snapshot_dir / snapshots.file_name(term, index)
            try:
                snap = await asyncio.to_thread(snapshots.read_file, path)
                if (snap.meta.index, snap.meta.term) != (index, term):
                    raise snapshots.SnapshotFileError(
                        f"holds index {snap.meta.index} term {snap.meta.term}"
                    )
            except snapshots.SnapshotFileError as e:
                self._bad_snaps.add(index)
                problem = problem or str(e)
                continue
            if index == newest:
                return snap
            if entries and entries[0].index <= index + 1 and entries[-1].index >= newest:
                return snap
            raise StorageCorruptError(
                f"snapshot file {newest_path}",
                f"{problem}; cannot fall back to {path.name}: the log does not hold "
                f"entries {index + 1}..{newest}",
                index=newest,
            )
        raise StorageCorruptError(
            f"snapshot file {newest_path}", f"{problem}; no earlier valid snapshot", index=newest
        )

    # -- writing ---------------------------------------------------------------

    async def bootstrap(self, members: dict[NodeId, str]) -> bool:
        """Write the founding configuration of a new cluster: `bootstrap_entries`
        and HardState(term=1, commit=len(members)). Only into an empty storage;
        returns False (and writes nothing) if anything was stored before, so a
        founding member may call it on every start."""
        if not members:
            raise ValueError("bootstrap needs at least one member")
        rows = _entry_rows(bootstrap_entries(members))
        hs = _hard_state_params(HardState(term=1, vote=NONE, commit=len(members)))
        return await self.disk.run(lambda: self._bootstrap(rows, hs), "bootstrap")

    async def _bootstrap(self, rows: list[_EntryRow], hs: tuple[bytes, int]) -> bool:
        async with self._lock:
            db = self._conn()
            try:
                await db.execute("BEGIN IMMEDIATE")
                if not await self._is_empty(db):
                    await db.execute("ROLLBACK")
                    return False
                await db.executemany(_INSERT_ENTRIES, rows)
                await db.execute(_UPSERT_HARD_STATE, hs)
                await db.execute("COMMIT")
            except BaseException:
                await self._abort(db)
                raise
            self._last_index = rows[-1][0]
        return True

    async def save(self, ready: Ready) -> None:
        """Persist what `ready` asks for in one transaction, durable on return:
        its snapshot (which replaces the whole stored log), then its entries
        (replacing any stored at the same or later indexes), then its hard state.
        Does nothing if `ready.must_sync()` is false. On a full disk, returns
        only once the write has fitted."""
        if not ready.must_sync():
            return
        await self.disk.run(lambda: self._save(ready), "raft log")

    async def _save(self, ready: Ready) -> None:
        snap = ready.snapshot
        rows = _entry_rows(ready.entries) if ready.entries else []
        hs = _hard_state_params(ready.hard_state) if ready.hard_state is not None else None
        snaps: dict[int, int] | None = None
        dropped: list[str] = []
        if snap is not None:
            _check_range("snapshot term", snap.meta.term)
            _check_range("snapshot index", snap.meta.index)
            await asyncio.to_thread(snapshots.write_file, self.snapshot_dir, snap)
        async with self._lock:
            db = self._conn()
            # Each await is a round trip to the connection's thread (~0.1 ms), so
            # a save does as few as it can: a lone hard state is one statement,
            # which SQLite already commits atomically and durably on its own; the
            # common append is BEGIN, INSERT, hard state, COMMIT.
            if hs is not None and snap is None and not rows:
                await db.execute(_UPSERT_HARD_STATE, hs)
                return
            if (
                snap is None
                and rows[0][0] > self._last_index
                and len(rows) < _MAX_ONE_STATEMENT_ROWS
            ):
                await db.execute(*_one_statement_append(rows, hs))
                self._last_index = rows[-1][0]
                return
            try:
                await db.execute("BEGIN")
                if snap is not None:
                    await db.execute("DELETE FROM entries")
                    snaps, dropped = await self._record_snapshot(db, snap.meta)
                elif rows and rows[0][0] <= self._last_index:
                    await db.execute("DELETE FROM entries WHERE idx >= ?", (rows[0][0],))
                if rows:
                    await db.executemany(_INSERT_ENTRIES, rows)
                if hs is not None:
                    await db.execute(_UPSERT_HARD_STATE, hs)
                await db.execute("COMMIT")
            except BaseException:
                await self._abort(db)
                raise
            if rows:
                self._last_index = rows[-1][0]
            elif snap is not None:
                self._last_index = 0
            if snaps is not None:
                self._snaps = snaps
        if dropped:
            await asyncio.to_thread(snapshots.remove_files, self.snapshot_dir, dropped)

    async def save_snapshot(self, snapshot: Snapshot, compact_to: int) -> None:
        """Record a snapshot the host took of its own state machine and drop the
        stored entries up to `compact_to` (at most the snapshot's index; lower
        keeps some entries for slow followers). Keeps the newest
        `KEEP_SNAPSHOTS` snapshot files."""
        meta = snapshot.meta
        if not 0 <= compact_to <= meta.index:
            raise ValueError(f"compact_to {compact_to} is outside 0..{meta.index}")
        await self.disk.run(lambda: self._save_snapshot(snapshot, compact_to), "snapshot")

    async def _save_snapshot(self, snapshot: Snapshot, compact_to: int) -> None:
        meta = snapshot.meta
        await asyncio.to_thread(snapshots.write_file, self.snapshot_dir, snapshot)
        async with self._lock:
            db = self._conn()
            try:
                await db.execute("BEGIN")
                snaps, dropped = await self._record_snapshot(db, meta)
                if compact_to > 0:
                    await db.execute("DELETE FROM entries WHERE idx <= ?", (compact_to,))
                await db.execute("COMMIT")
            except BaseException:
                await self._abort(db)
                raise
            self._snaps = snaps
        if dropped:
            await asyncio.to_thread(snapshots.remove_files, self.snapshot_dir, dropped)

    async def _record_snapshot(
        self, db: aiosqlite.Connection, meta: SnapshotMeta
    ) -> tuple[dict[int, int], list[str]]:
        """Inside a transaction: record `meta` and unrecord snapshots beyond the
        retention. Returns the new index -> term map and the file names to delete
        once the transaction has committed."""
        snaps = dict(self._snaps)
        dropped: list[str] = []
        old_term = snaps.get(meta.index)
        if old_term is not None and old_term != meta.term:
            dropped.append(snapshots.file_name(old_term, meta.index))
        snaps[meta.index] = meta.term
        await db.execute(
            _UPSERT_SNAPSHOT, (meta.index, meta.term, _snapshot_row_crc(meta.index, meta.term))
        )
        # The file under this name was just rewritten, so it is good again.
        self._bad_snaps.discard(meta.index)
        good = sorted((i for i in snaps if i not in self._bad_snaps), reverse=True)
        keep = set(good[:KEEP_SNAPSHOTS])
        drop = [i for i in snaps if i not in keep]
        if drop:
            await db.executemany("DELETE FROM snapshots WHERE idx = ?", [(i,) for i in drop])
            dropped += [snapshots.file_name(snaps.pop(i), i) for i in drop]
        return snaps, dropped

    async def _abort(self, db: aiosqlite.Connection) -> None:
        # After a failure mid-transaction the stored suffix is unknown; the
        # maximum forces a DELETE before the next insert.
        self._last_index = sys.maxsize
        with contextlib.suppress(sqlite3.Error, ValueError):
            await db.execute("ROLLBACK")


async def _read_snapshot_rows(
    db: aiosqlite.Connection, strict: str | None = None
) -> tuple[dict[int, int], bool]:
    """index -> term of recorded snapshots, and whether every row passed its CRC.
    With `strict` (the database's name) a bad row raises instead."""
    snaps: dict[int, int] = {}
    ok = True
    for idx, term, crc in await db.execute_fetchall("SELECT idx, term, crc FROM snapshots"):
        try:
            valid = _snapshot_row_crc(idx, term) == crc
        except (TypeError, struct.error):
            valid = False
        if not valid:
            if strict is not None:
                raise StorageCorruptError(f"{strict} table snapshots", "CRC mismatch", index=idx)
            ok = False
            continue
        snaps[idx] = term
    return snaps, ok


def _make_dirs(data_dir: Path, snap_dir: Path) -> None:
    created = not data_dir.exists()
    snap_dir.mkdir(parents=True, exist_ok=True)
    snapshots.fsync_dir(data_dir)
    if created:
        snapshots.fsync_dir(data_dir.parent)


def _clean_dirs(data_dir: Path, snap_dir: Path, keep: set[str] | None) -> None:
    if keep is None:
        for p in snap_dir.glob("*" + snapshots.TMP_SUFFIX):
            p.unlink()
    else:
        snapshots.remove_leftovers(snap_dir, keep)
    # raft.db and its WAL may have just been created: make their names durable.
    snapshots.fsync_dir(data_dir)
