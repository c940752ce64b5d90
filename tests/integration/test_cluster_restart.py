"""A whole cluster killed at once (every master and worker, SIGKILL) and started again
from its disks keeps every task and finishes the pending work."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agentflow import AsyncClient, TaskSpec, TaskState
from agentflow.common.processes import ProcessGroup
from agentflow.master.testing import MasterCluster


async def test_full_restart_from_disk_keeps_tasks_and_resumes_work(tmp_path: Path) -> None:
    cluster = MasterCluster(tmp_path / "masters", size=3)
    workers = ProcessGroup(tmp_path / "workers")
    try:
        await cluster.start_all()
        cluster.start_worker(workers, "w1", env={"WORKER_MAX_CONCURRENT_TASKS": "2"})
        async with AsyncClient(cluster.url()) as client:
            ids = await client.submit_many(
                [TaskSpec("shell:sleep 0.3", name=f"t{i}", max_retries=3) for i in range(20)]
            )
            for _ in range(100):  # let some finish, so the restart meets every state
                done = [t async for t in client.list(states=["succeeded"])]
                if len(done) >= 3:
                    break
                await asyncio.sleep(0.1)
        workers.stop_all()
        cluster.stop_all()

        for node in cluster.ids:
            cluster.start(node)
        await cluster.leader(30)
        cluster.start_worker(workers, "w1", env={"WORKER_MAX_CONCURRENT_TASKS": "2"})
        async with AsyncClient(cluster.url()) as client:
            finals = [await client.wait_task(i, timeout=60) for i in ids]
        assert [t.id for t in finals] == ids
        assert all(t.state is TaskState.SUCCEEDED for t in finals), [
            (t.id, t.state, t.errors) for t in finals if t.state is not TaskState.SUCCEEDED
        ]
    finally:
        workers.stop_all()
        cluster.stop_all()
