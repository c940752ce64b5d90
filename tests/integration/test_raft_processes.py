"""Three real key/value server processes over gRPC on 127.0.0.1 with SQLite files.

The leader is killed with SIGKILL five times while clients write; afterwards every
acknowledged write must be readable from every node. A follower kept down while
the log is compacted must catch up through InstallSnapshot.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentflow.raft.testing.cluster import KvCluster
from agentflow.raft.testing.kvclient import KvClient

pytestmark = pytest.mark.timeout(240)


async def _assert_all_readable(
    cluster: KvCluster, client: KvClient, acked: dict[str, bytes]
) -> None:
    for node in cluster.ids:
        missing = await client.lost_writes(cluster.address(node), acked)
        assert not missing, f"{node} lost {len(missing)} acknowledged writes, e.g. {missing[:5]}"


async def _wait_caught_up(cluster: KvCluster, client: KvClient, node: str) -> None:
    leader = await cluster.leader(client)
    target = (await client.status(cluster.address(leader))).commit_index
    for _ in range(400):
        if (await client.status(cluster.address(node))).applied_index >= target:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{node} did not catch up to {target}")


async def test_leader_killed_five_times_loses_no_acknowledged_write(tmp_path: Path) -> None:
    cluster = KvCluster(tmp_path, size=3, snapshot_every=400, snapshot_keep=50)
    cluster.start_all()
    client = KvClient(cluster.addresses(), call_timeout=2.0)
    acked: dict[str, bytes] = {}
    stop = asyncio.Event()
    try:
        await cluster.leader(client, timeout=20.0)
        async with asyncio.TaskGroup() as tg:
            for w in range(8):
                tg.create_task(client.write_until(f"w{w}", stop, acked))
            terms = set()
            for _ in range(5):
                await asyncio.sleep(1.0)
                leader = await cluster.leader(client, timeout=20.0)
                terms.add((await client.status(cluster.address(leader))).term)
                cluster.kill(leader)
                await asyncio.sleep(0.3)
                cluster.start(leader)
            await cluster.leader(client, timeout=20.0)
            await asyncio.sleep(1.0)
            stop.set()
        assert len(terms) == 5, f"expected five different leaderships, saw terms {terms}"
        assert len(acked) > 200, f"too few writes acknowledged to mean anything: {len(acked)}"
        await _assert_all_readable(cluster, client, acked)
    finally:
        await client.close()
        cluster.stop_all()


async def test_restarted_follower_catches_up_through_snapshot(tmp_path: Path) -> None:
    cluster = KvCluster(tmp_path, size=3, snapshot_every=200, snapshot_keep=20)
    cluster.start_all()
    client = KvClient(cluster.addresses(), call_timeout=2.0)
    acked: dict[str, bytes] = {}
    try:
        leader = await cluster.leader(client, timeout=20.0)
        follower = next(n for n in cluster.ids if n != leader)
        cluster.kill(follower)
        for i in range(600):  # several snapshots' worth: the follower's position is compacted
            key, value = f"k{i}", f"v{i}".encode()
            await client.put(key, value)
            acked[key] = value
        status = await client.status(cluster.address(await cluster.leader(client)))
        assert status.snapshot_index >= 400, status
        cluster.start(follower)
        await _wait_caught_up(cluster, client, follower)
        st = await client.status(cluster.address(follower))
        assert st.snapshots_installed >= 1, f"{follower} caught up without a snapshot: {st}"
        await _assert_all_readable(cluster, client, acked)
    finally:
        await client.close()
        cluster.stop_all()
