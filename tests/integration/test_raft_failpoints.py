"""Crashes at each point of the driver's Ready handling (persist, send, apply):
every node of a real 3-process cluster crashes itself at a different moment while
clients write, is restarted without the failpoint, and no acknowledged write is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentflow.raft.testing.cluster import KvCluster
from agentflow.raft.testing.kvclient import KvClient

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize(
    "point", ["raft.before_persist", "raft.after_persist", "raft.before_send", "raft.before_apply"]
)
async def test_crash_at_failpoint_loses_no_acknowledged_write(tmp_path: Path, point: str) -> None:
    cluster = KvCluster(tmp_path, size=3)
    for k, node in enumerate(cluster.ids):
        # Staggered so that at most one node is down at a time.
        cluster.start(node, env={"AGENTFLOW_FAILPOINTS": f"{point}=crash@{150 + 150 * k}"})
    client = KvClient(cluster.addresses(), call_timeout=2.0)
    acked: dict[str, bytes] = {}
    crashed: list[str] = []
    stop = asyncio.Event()

    async def restarter() -> None:
        while len(crashed) < len(cluster.ids) and not stop.is_set():
            for node in cluster.exited():
                cluster.reap(node)
                crashed.append(node)
                cluster.start(node)  # without the failpoint
            await asyncio.sleep(0.05)

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(client.write_until(f"w{w}", stop, acked)) for w in range(4)]
            watcher = tg.create_task(restarter())
            for _ in range(600):
                if len(crashed) == len(cluster.ids):
                    break
                await asyncio.sleep(0.05)
            await cluster.leader(client, timeout=20.0)
            await asyncio.sleep(0.5)
            stop.set()
            del tasks, watcher
        assert sorted(crashed) == cluster.ids, f"only {crashed} reached {point}"
        for node in cluster.ids:
            lost = await client.lost_writes(cluster.address(node), acked)
            assert not lost, f"{node} lost {len(lost)} acknowledged writes after {point} crashes"
    finally:
        await client.close()
        cluster.stop_all()
