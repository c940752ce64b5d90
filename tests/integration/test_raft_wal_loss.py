"""A follower whose SQLite WAL is cut in half after kill -9 comes back with a
shorter log than it had acknowledged: it must say so, and catch up from the
leader (the leader must not take its rejections for stale ones)."""

from __future__ import annotations

import asyncio
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
        wal = tmp_path / follower / "raft.db-wal"
        size = wal.stat().st_size
        with wal.open("r+b") as f:
            f.truncate(size // 2)
        for i in range(50):
            await client.put(f"after{i}", b"x")
        target = (await client.status(cluster.address(leader))).commit_index
        cluster.start(follower)
        st = None
        for _ in range(600):
            try:
                st = await client.status(cluster.address(follower))
            except Exception:
                st = None
            if st is not None and st.applied_index >= target:
                break
            await asyncio.sleep(0.05)
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
