"""RaftStorage on a full disk: a write refused for lack of space waits and retries
until it fits, says so once, and leaves nothing half written.

Two real sources of "no space": a tmpfs of a few megabytes filled up by a file
(needs root to mount; skipped otherwise), and SQLite's own page limit
(`PRAGMA max_page_count`), which raises the same SQLITE_FULL through the same
code path anywhere.
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agentflow.raft import snapshots
from agentflow.raft.disk_full import DiskFullWatch, is_disk_full
from agentflow.raft.storage import SNAPSHOT_DIR, RaftStorage
from agentflow.raft.testing.small_fs import SmallFsUnavailable, fill, small_filesystem
from agentflow.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    RaftError,
    Ready,
    Snapshot,
    SnapshotMeta,
)

CONF = ConfState(voters=("a",), addresses=(("a", "h:1"),))


def ents(lo: int, hi: int, size: int = 200, term: int = 1) -> list[Entry]:
    return [Entry(term, i, EntryType.NORMAL, b"%d:" % i + b"x" * size) for i in range(lo, hi + 1)]


def append(lo: int, hi: int, size: int = 200, commit: int = 0) -> Ready:
    return Ready(entries=ents(lo, hi, size), hard_state=HardState(term=1, vote="a", commit=commit))


def events(logs: list[dict[str, object]], name: str) -> list[dict[str, object]]:
    return [e for e in logs if e.get("event") == name]


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    try:
        with small_filesystem(tmp_path / "fs", 4 * 1024 * 1024) as root:
            yield root
    except SmallFsUnavailable as exc:
        pytest.skip(f"no small filesystem here: {exc}")


async def wait_until_full(storage: RaftStorage, task: asyncio.Task[object]) -> None:
    for _ in range(500):
        if storage.disk_full or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()  # an error instead of the wait: show it
    assert storage.disk_full, "the write neither failed for space nor waited"


# -- classification ----------------------------------------------------------------


def test_sqlite_full_and_enospc_are_disk_full_other_errors_are_not(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")
    try:
        conn.execute("CREATE TABLE t (b BLOB)")
        conn.execute("PRAGMA max_page_count = 3")
        with pytest.raises(sqlite3.OperationalError) as full:
            conn.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
        with pytest.raises(sqlite3.OperationalError) as other:
            conn.execute("SELECT * FROM nowhere")
    finally:
        conn.close()
    assert is_disk_full(full.value)
    assert not is_disk_full(other.value)
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EIO, "Input/output error"))
    assert not is_disk_full(ValueError("database or disk is full"))


def test_watch_says_it_once_then_reminds_then_recovers(tmp_path: Path) -> None:
    now = [0.0]
    watch = DiskFullWatch(tmp_path, remind_every=30.0, clock=lambda: now[0])
    exc = OSError(errno.ENOSPC, "No space left on device")
    with capture_logs() as logs:
        for _ in range(29):  # one a second for 29 s
            watch.report_full(exc, "raft log")
            now[0] += 1.0
        assert len(logs) == 1
        now[0] = 31.0
        watch.report_full(exc, "raft log")
        watch.report_full(exc, "raft log")
        watch.report_ok()
        watch.report_ok()
    assert [e["event"] for e in logs] == [
        "storage.disk_full",
        "storage.disk_still_full",
        "storage.disk_recovered",
    ]
    assert logs[0]["data_dir"] == str(tmp_path)
    assert isinstance(logs[0]["free_bytes"], int)
    assert logs[1]["refused_attempts"] == 30
    assert not watch.full


# -- SQLITE_FULL from SQLite's page limit (no mount needed) ------------------------


async def test_append_waits_at_the_page_limit_and_lands_once_it_is_lifted(tmp_path: Path) -> None:
    storage = await RaftStorage.open(tmp_path, DiskFullWatch(tmp_path, retry_every=0.02))
    try:
        await storage.save(append(1, 10, commit=10))
        db = storage._conn()
        pages = int(next(iter(await db.execute_fetchall("PRAGMA page_count")))[0])
        await db.execute(f"PRAGMA max_page_count = {pages}")
        with capture_logs() as logs:
            task = asyncio.create_task(storage.save(append(11, 200, size=2000, commit=10)))
            await wait_until_full(storage, task)
            await asyncio.sleep(0.2)  # several refused retries
            assert not task.done(), "save returned before its entries were durable"
            assert [e["event"] for e in logs] == ["storage.disk_full"]
            await db.execute("PRAGMA max_page_count = 1073741823")
            await asyncio.wait_for(task, 10.0)
        assert not storage.disk_full
        assert [e["event"] for e in logs] == ["storage.disk_full", "storage.disk_recovered"]
    finally:
        await storage.close()
    reopened = await RaftStorage.open(tmp_path)
    try:
        state = await reopened.load()
    finally:
        await reopened.close()
    assert [e.index for e in state.entries] == list(range(1, 201))
    assert state.entries == ents(1, 10) + ents(11, 200, size=2000)


async def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    storage = await RaftStorage.open(tmp_path)
    await storage.close()
    with pytest.raises(RaftError, match="closed"):
        await asyncio.wait_for(storage.save(append(1, 1)), 5.0)
    assert not storage.disk_full


# -- ENOSPC from a real, full filesystem -------------------------------------------


async def test_append_on_a_full_filesystem_waits_then_lands_with_nothing_lost(
    tiny_fs: Path,
) -> None:
    data = tiny_fs / "m1"
    storage = await RaftStorage.open(data, DiskFullWatch(data, retry_every=0.05))
    try:
        await storage.save(append(1, 50, commit=50))
        filler = fill(tiny_fs)
        with capture_logs() as logs:
            # More than SQLite's spare pages can hold: the WAL must grow.
            task = asyncio.create_task(storage.save(append(51, 400, size=4000, commit=50)))
            await wait_until_full(storage, task)
            await asyncio.sleep(0.3)
            assert not task.done()
            # A vote must wait behind it too: nothing is acknowledged meanwhile.
            vote = asyncio.create_task(storage.save(Ready(hard_state=HardState(2, "b", 50))))
            await asyncio.sleep(0.2)
            assert not vote.done()
            full_lines = events(logs, "storage.disk_full")
            assert len(full_lines) == 1, logs
            assert full_lines[0]["data_dir"] == str(data)
            assert isinstance(full_lines[0]["free_bytes"], int)
            filler.release()
            await asyncio.wait_for(task, 10.0)
            await asyncio.wait_for(vote, 10.0)
        assert not storage.disk_full
        assert len(events(logs, "storage.disk_recovered")) == 1
        await storage.save(append(401, 410, commit=400))
    finally:
        await storage.close()
    reopened = await RaftStorage.open(data)
    try:
        state = await reopened.load()
    finally:
        await reopened.close()
    assert state.entries == ents(1, 50) + ents(51, 400, size=4000) + ents(401, 410)
    assert state.hard_state == HardState(term=1, vote="a", commit=400)


async def test_snapshot_on_a_full_filesystem_leaves_no_partial_file(tiny_fs: Path) -> None:
    data = tiny_fs / "m1"
    storage = await RaftStorage.open(data, DiskFullWatch(data, retry_every=0.05))
    try:
        await storage.save(append(1, 100, commit=100))
        filler = fill(tiny_fs, leave=64 * 1024)
        image = b"s" * (1024 * 1024)
        snap = Snapshot(SnapshotMeta(100, 1, CONF), image)
        task = asyncio.create_task(storage.save_snapshot(snap, 90))
        await wait_until_full(storage, task)
        await asyncio.sleep(0.2)
        assert not task.done()
        assert list((data / SNAPSHOT_DIR).iterdir()) == []  # no partial file or temp file
        filler.release()
        await asyncio.wait_for(task, 10.0)
    finally:
        await storage.close()
    reopened = await RaftStorage.open(data)
    try:
        state = await reopened.load()
    finally:
        await reopened.close()
    assert state.snapshot == snap
    assert state.entries == []  # 91..100 are kept in the log, but the snapshot covers them
    assert sorted(p.name for p in (data / SNAPSHOT_DIR).iterdir()) == [snapshots.file_name(1, 100)]
