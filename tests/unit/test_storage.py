"""RaftStorage against real SQLite files and snapshot files in tmp_path."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentflow.raft import snapshots
from agentflow.raft.config import RaftConfig
from agentflow.raft.core import RaftCore, bootstrap_entries
from agentflow.raft.storage import (
    DB_NAME,
    SNAPSHOT_DIR,
    PersistedState,
    RaftStorage,
    StorageCorruptError,
)
from agentflow.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Ready,
    Snapshot,
    SnapshotMeta,
)

CONF = ConfState(voters=("a", "b", "c"), addresses=(("a", "h:1"), ("b", "h:2"), ("c", "h:3")))


def ents(lo: int, hi: int, term: int = 1) -> list[Entry]:
    """Entries lo..hi inclusive, each with data naming its index and term."""
    return [
        Entry(term, i, EntryType.NORMAL, f"cmd {i} t{term}".encode()) for i in range(lo, hi + 1)
    ]


def snap(index: int, term: int = 1, data: bytes | None = None) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, CONF), data if data is not None else b"img%d" % index)


def db_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path / DB_NAME) as conn:
        return list(conn.execute(sql))


def db_exec(path: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(path / DB_NAME)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def snap_files(path: Path) -> list[str]:
    return sorted(p.name for p in (path / SNAPSHOT_DIR).iterdir())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RaftStorage]:
    s = await RaftStorage.open(tmp_path)
    yield s
    await s.close()


async def reopen(s: RaftStorage) -> RaftStorage:
    await s.close()
    return await RaftStorage.open(s.data_dir)


async def test_open_creates_layout_and_wal(tmp_path: Path) -> None:
    data_dir = tmp_path / "node" / "data"
    s = await RaftStorage.open(data_dir)
    try:
        assert (data_dir / DB_NAME).is_file()
        assert (data_dir / SNAPSHOT_DIR).is_dir()
        assert db_rows(data_dir, "PRAGMA journal_mode") == [("wal",)]
        assert await s.is_empty()
        assert await s.load() == PersistedState(HardState(), None, [])
    finally:
        await s.close()


async def test_roundtrip_entries_hard_state_snapshot(store: RaftStorage) -> None:
    entries = [*ents(1, 5), Entry(2, 6, EntryType.CONF_CHANGE, b"\x00\x01cc"), Entry(2, 7)]
    await store.save(Ready(hard_state=HardState(2, "b", 6), entries=entries))
    assert not await store.is_empty()
    got = await store.load()
    assert got == PersistedState(HardState(2, "b", 6), None, entries)
    assert got.entries[5].type is EntryType.CONF_CHANGE

    await store.save_snapshot(snap(4, data=b"\x00" * 1000), compact_to=4)
    got = await store.load()
    assert got.snapshot == snap(4, data=b"\x00" * 1000)
    assert got.entries == entries[4:]
    assert got.hard_state == HardState(2, "b", 6)


async def test_hard_state_alone_and_no_sync_ready(store: RaftStorage) -> None:
    await store.save(Ready(hard_state=HardState(3, "a", 0)))
    # Nothing to persist: must not touch the database (no empty transaction either).
    await store.save(Ready(committed_entries=ents(1, 1)))
    assert await store.load() == PersistedState(HardState(3, "a", 0), None, [])
    store = await reopen(store)
    try:
        assert await store.load() == PersistedState(HardState(3, "a", 0), None, [])
    finally:
        await store.close()


async def test_overwrite_conflicting_suffix(store: RaftStorage) -> None:
    await store.save(Ready(entries=ents(1, 6, term=1)))
    # A new leader's entries at 4..5 replace 4..6; 6 must not survive.
    await store.save(Ready(entries=ents(4, 5, term=2), hard_state=HardState(2, "", 3)))
    got = await store.load()
    assert got.entries == ents(1, 3, term=1) + ents(4, 5, term=2)
    # And appending past the end still works after the truncation.
    await store.save(Ready(entries=ents(6, 8, term=2)))
    assert (await store.load()).entries == ents(1, 3, term=1) + ents(4, 8, term=2)


async def test_overwrite_survives_reopen_bookkeeping(store: RaftStorage) -> None:
    await store.save(Ready(entries=ents(1, 5)))
    store = await reopen(store)
    try:
        # After reopen the storage must still know that 3..5 exist.
        await store.save(Ready(entries=ents(3, 3, term=2)))
        assert (await store.load()).entries == ents(1, 2) + ents(3, 3, term=2)
    finally:
        await store.close()


async def test_snapshot_from_leader_replaces_whole_log(store: RaftStorage) -> None:
    await store.save(Ready(entries=ents(1, 10), hard_state=HardState(1, "", 5)))
    # A leader snapshot below our last index still replaces everything: our
    # uncommitted 8..10 may conflict with the leader's log.
    leader_snap = snap(7, term=3)
    await store.save(
        Ready(snapshot=leader_snap, entries=ents(8, 9, term=3), hard_state=HardState(3, "", 7))
    )
    got = await store.load()
    assert got == PersistedState(HardState(3, "", 7), leader_snap, ents(8, 9, term=3))
    assert db_rows(store.data_dir, "SELECT idx FROM entries ORDER BY idx") == [(8,), (9,)]

    await store.save(Ready(snapshot=snap(20, term=4), hard_state=HardState(4, "", 20)))
    got = await store.load()
    assert got.snapshot == snap(20, term=4)
    assert got.entries == []
    assert db_rows(store.data_dir, "SELECT count(*) FROM entries") == [(0,)]
    await store.save(Ready(entries=ents(21, 22, term=4)))
    assert (await store.load()).entries == ents(21, 22, term=4)


async def test_save_snapshot_compacts_and_keeps_two_files(store: RaftStorage) -> None:
    await store.save(Ready(entries=ents(1, 30), hard_state=HardState(1, "", 30)))
    await store.save_snapshot(snap(10), compact_to=7)
    # Entries 8..10 stay stored (for a fallback) but are not handed to the core.
    assert db_rows(store.data_dir, "SELECT min(idx), max(idx) FROM entries") == [(8, 30)]
    assert (await store.load()).entries == ents(11, 30)

    await store.save_snapshot(snap(20), compact_to=20)
    await store.save_snapshot(snap(25), compact_to=22)
    assert snap_files(store.data_dir) == [
        snapshots.file_name(1, 20),
        snapshots.file_name(1, 25),
    ]
    assert db_rows(store.data_dir, "SELECT idx FROM snapshots ORDER BY idx") == [(20,), (25,)]
    got = await store.load()
    assert got.snapshot == snap(25)
    assert got.entries == ents(26, 30)

    with pytest.raises(ValueError):
        await store.save_snapshot(snap(26), compact_to=27)


async def test_restart_returns_same_state(store: RaftStorage) -> None:
    await store.save(Ready(entries=ents(1, 40), hard_state=HardState(1, "a", 35)))
    await store.save_snapshot(snap(30, data=bytes(range(256)) * 10), compact_to=25)
    await store.save(Ready(entries=ents(38, 45, term=2), hard_state=HardState(2, "c", 37)))
    before = await store.load()
    store = await reopen(store)
    try:
        assert await store.load() == before
        assert not await store.is_empty()
    finally:
        await store.close()


async def test_bit_flip_in_entry_data_is_detected(store: RaftStorage) -> None:
    await store.save(Ready(entries=ents(1, 5), hard_state=HardState(1, "", 5)))
    await store.close()
    (data,) = db_rows(store.data_dir, "SELECT data FROM entries WHERE idx = 4")[0]
    assert isinstance(data, bytes)
    flipped = bytes([data[0] ^ 0x01]) + data[1:]
    db_exec(store.data_dir, "UPDATE entries SET data = ? WHERE idx = 4", flipped)

    s = await RaftStorage.open(store.data_dir)
    try:
        with pytest.raises(StorageCorruptError, match=r"entries at index 4\b") as exc:
            await s.load()
        assert exc.value.index == 4
    finally:
        await s.close()


async def test_changed_term_and_missing_entry_are_detected(store: RaftStorage) -> None:
    await store.save(Ready(entries=ents(1, 5), hard_state=HardState(1, "", 3)))
    db_exec(store.data_dir, "UPDATE entries SET term = 7 WHERE idx = 2")
    with pytest.raises(StorageCorruptError, match=r"entries at index 2\b"):
        await store.load()
    db_exec(store.data_dir, "UPDATE entries SET term = 1 WHERE idx = 2")
    db_exec(store.data_dir, "DELETE FROM entries WHERE idx = 3")
    with pytest.raises(StorageCorruptError, match=r"entries at index 3\b.*missing"):
        await store.load()


async def test_lost_log_tail_below_commit_is_detected(store: RaftStorage) -> None:
    await store.save(Ready(entries=ents(1, 5), hard_state=HardState(1, "", 5)))
    db_exec(store.data_dir, "DELETE FROM entries WHERE idx = 5")
    with pytest.raises(StorageCorruptError, match=r"hard_state.*commit index 5"):
        await store.load()


async def test_corrupt_hard_state_is_detected(store: RaftStorage) -> None:
    await store.save(Ready(hard_state=HardState(5, "a", 0)))
    db_exec(store.data_dir, "UPDATE hard_state SET crc = crc + 1")
    with pytest.raises(StorageCorruptError, match="hard_state"):
        await store.load()


async def test_truncated_snapshot_file_is_detected(store: RaftStorage) -> None:
    await store.save(Ready(entries=ents(1, 10), hard_state=HardState(1, "", 10)))
    await store.save_snapshot(snap(10, data=b"x" * 5000), compact_to=10)
    path = store.snapshot_dir / snapshots.file_name(1, 10)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(StorageCorruptError, match=f"{path.name}.*truncated") as exc:
        await store.load()
    assert exc.value.index == 10


async def test_missing_snapshot_file_is_detected(store: RaftStorage) -> None:
    await store.save(Ready(snapshot=snap(10), hard_state=HardState(1, "", 10)))
    (store.snapshot_dir / snapshots.file_name(1, 10)).unlink()
    with pytest.raises(StorageCorruptError, match=snapshots.file_name(1, 10)):
        await store.load()


async def test_flipped_snapshot_byte_falls_back_when_log_covers_gap(store: RaftStorage) -> None:
    await store.save(Ready(entries=ents(1, 30), hard_state=HardState(1, "", 30)))
    await store.save_snapshot(snap(10), compact_to=5)
    await store.save_snapshot(snap(20), compact_to=8)
    path = store.snapshot_dir / snapshots.file_name(1, 20)
    raw = bytearray(path.read_bytes())
    raw[-6] ^= 0x40  # inside the data
    path.write_bytes(bytes(raw))

    got = await store.load()
    assert got.snapshot == snap(10)
    assert got.entries == ents(11, 30)

    # The damaged one is pruned first, so the next snapshot leaves two good ones.
    await store.save_snapshot(snap(25), compact_to=25)
    assert snap_files(store.data_dir) == [
        snapshots.file_name(1, 10),
        snapshots.file_name(1, 25),
    ]
    assert (await store.load()).snapshot == snap(25)


async def test_no_fallback_when_log_does_not_cover_gap(store: RaftStorage) -> None:
    await store.save(Ready(entries=ents(1, 30), hard_state=HardState(1, "", 30)))
    await store.save_snapshot(snap(10), compact_to=10)
    await store.save_snapshot(snap(20), compact_to=15)  # 11..15 gone: 10 is useless
    path = store.snapshot_dir / snapshots.file_name(1, 20)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(StorageCorruptError, match=r"entries 11\.\.20"):
        await store.load()


async def test_leftover_temp_and_unrecorded_files_removed_on_open(tmp_path: Path) -> None:
    s = await RaftStorage.open(tmp_path)
    await s.save(Ready(entries=ents(1, 5), hard_state=HardState(1, "", 5)))
    await s.save_snapshot(snap(3), compact_to=3)
    await s.close()
    snap_dir = tmp_path / SNAPSHOT_DIR
    # A crash mid-write leaves a temp file; a crash after the rename but before
    # the recording commit leaves a complete but unrecorded file.
    (snap_dir / (snapshots.file_name(1, 6) + snapshots.TMP_SUFFIX)).write_bytes(b"partial")
    snapshots.write_file(snap_dir, snap(5))
    (snap_dir / "README").write_text("not ours")
    assert len(snap_files(tmp_path)) == 4

    s = await RaftStorage.open(tmp_path)
    try:
        assert snap_files(tmp_path) == [snapshots.file_name(1, 3), "README"]
        got = await s.load()
        assert got.snapshot == snap(3)
        assert got.entries == ents(4, 5)
    finally:
        await s.close()


async def test_bootstrap_only_once(store: RaftStorage) -> None:
    members = {"b": "h:2", "a": "h:1", "c": "h:3"}
    assert await store.is_empty()
    assert await store.bootstrap(members) is True
    got = await store.load()
    assert got == PersistedState(HardState(1, "", 3), None, bootstrap_entries(members))

    assert await store.bootstrap({"z": "h:9"}) is False
    assert await store.load() == got

    store = await reopen(store)
    try:
        assert not await store.is_empty()
        assert await store.bootstrap(members) is False
        assert await store.load() == got
    finally:
        await store.close()


async def test_bootstrap_refused_after_any_write(tmp_path: Path) -> None:
    s = await RaftStorage.open(tmp_path)
    try:
        await s.save(Ready(hard_state=HardState(4, "x", 0)))
        assert await s.bootstrap({"a": "h:1"}) is False
        assert await s.load() == PersistedState(HardState(4, "x", 0), None, [])
    finally:
        await s.close()


def test_snapshot_file_roundtrip_and_checks(tmp_path: Path) -> None:
    s = snap(9, term=2, data=b"abc" * 100)
    path = snapshots.write_file(tmp_path, s)
    assert path.name == snapshots.file_name(2, 9)
    assert snapshots.parse_file_name(path.name) == (2, 9)
    assert snapshots.read_file(path) == s
    assert list(tmp_path.iterdir()) == [path]

    raw = path.read_bytes()
    for bad, why in [
        (b"XXXXXXXX" + raw[8:], "magic"),
        (raw[:-1], "truncated"),
        (raw + b"\x00", "trailing"),
        (raw[:40] + bytes([raw[40] ^ 1]) + raw[41:], "CRC"),
    ]:
        path.write_bytes(bad)
        with pytest.raises(snapshots.SnapshotFileError, match=why):
            snapshots.read_file(path)


async def test_closed_storage_refuses_calls(tmp_path: Path) -> None:
    s = await RaftStorage.open(tmp_path)
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        await s.load()


async def test_concurrent_save_and_save_snapshot(store: RaftStorage) -> None:
    await store.save(Ready(entries=ents(1, 10), hard_state=HardState(1, "", 10)))
    # The host snapshots from its own task while the driver keeps saving: the
    # two transactions must not interleave on the shared connection.
    await asyncio.gather(
        store.save_snapshot(snap(8), compact_to=6),
        *(store.save(Ready(entries=ents(i, i))) for i in range(11, 31)),
    )
    got = await store.load()
    assert got.snapshot == snap(8)
    assert got.entries == ents(9, 30)


async def test_loaded_state_starts_a_core(store: RaftStorage) -> None:
    members = {"a": "h:1", "b": "h:2", "c": "h:3"}
    await store.bootstrap(members)
    await store.save(Ready(entries=ents(4, 12, term=2), hard_state=HardState(2, "a", 12)))
    await store.save_snapshot(snap(9, term=2), compact_to=5)
    st = await store.load()
    core = RaftCore(
        "a",
        RaftConfig(),
        random.Random(1),
        hard_state=st.hard_state,
        snapshot=st.snapshot,
        entries=st.entries,
    )
    assert core.log.first_index() == 10
    assert core.log.last_index() == 12
    assert core.log.committed == 12
    assert core.term == 2
