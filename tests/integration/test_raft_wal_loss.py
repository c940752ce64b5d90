"""A follower whose SQLite WAL is cut in half after kill -9 comes back with a
shorter log than it had acknowledged: it must say so, and catch up from the
leader (the leader must not take its rejections for stale ones)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest

from agentflow.raft.testing.cluster import KvCluster
from agentflow.raft.testing.kvclient import KvClient

pytestmark = pytest.mark.timeout(240)


async def test_follower_with_truncated_wal_says_so_and_catches_up(tmp_path: Path) -> None:
    cluster = KvCluster(tmp_path, size=3)
    cluster.start_all()
    client = KvClient(cluster.addresses(), call_timeout=2.0)
    try:
        leader = await cluster.leader(client, timeout=20.0)
        follower = next(n for n in cluster.ids if n != leader)
        stop = asyncio.Event()
        acked: dict[str, bytes] = {}
        async with asyncio.TaskGroup() as tg:
            for w in range(6):
                tg.create_task(client.write_until(f"w{w}", stop, acked))
            await asyncio.sleep(4.0)
            stop.set()
        await asyncio.sleep(1.5)  # the watermark is written at most once a second
        had = (await client.status(cluster.address(follower))).applied_index
        cluster.kill(follower)
        left = _cut_wal(tmp_path / follower, tmp_path / "probe")
        assert left < had, (
            f"cutting the WAL lost nothing ({left} >= {had}): the test proves nothing"
        )
        for i in range(50):
            await client.put(f"after{i}", b"x")
        target = (await client.status(cluster.address(leader))).commit_index
        cluster.start(follower)
        st = await client.wait_applied(cluster.address(follower), target, timeout=30)
        assert st is not None and st.applied_index >= target, (
            f"{follower} stuck at {st and st.applied_index}, leader committed {target}"
        )
        text = (tmp_path / f"{follower}.log").read_text(errors="replace")
        assert "raft.log_lost" in text, f"{follower} did not report its lost entries"
        assert f"had_committed_through={had}" in text or "had_committed_through" in text
        leader_log = (tmp_path / f"{leader}.log").read_text(errors="replace")
        assert "raft.follower_lost_entries" in leader_log
        assert await client.get(cluster.address(follower), "after49") == b"x"
    finally:
        await client.close()
        cluster.stop_all()


def _cut_wal(data_dir: Path, scratch: Path) -> int:
    """Cut the WAL in half, or (when the frames written since the last checkpoint
    all sit in its first half) to a quarter, an eighth, ... down to its header:
    the first cut that loses entries, as found on a copy. Returns the last index
    SQLite then recovers."""
    wal = data_dir / "raft.db-wal"
    size = wal.stat().st_size
    cut = size // 2
    while True:
        last = _last_index_after_cut(data_dir, scratch, cut)
        if cut <= 32 or last < _last_index_after_cut(data_dir, scratch, size):
            break
        cut = max(32, cut // 2)
    with wal.open("r+b") as f:
        f.truncate(cut)
    return last


def _last_index_after_cut(data_dir: Path, scratch: Path, cut: int) -> int:
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    shutil.copy(data_dir / "raft.db", scratch / "raft.db")
    with (data_dir / "raft.db-wal").open("rb") as src:
        (scratch / "raft.db-wal").write_bytes(src.read(cut))
    db = sqlite3.connect(scratch / "raft.db")
    try:
        return int(db.execute("SELECT max(idx) FROM entries").fetchone()[0])
    finally:
        db.close()
