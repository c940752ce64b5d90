"""A real worker SIGSTOPped past the leader's worker timeout while its task runs: the
task's processes are stopped with it (by its guardian), the retry runs on another
worker, and on SIGCONT the worker kills the lost attempt, so the side effect happens
once, on the retry."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil

from agentflow import AsyncClient, TaskState
from agentflow.client import RetryPolicy
from agentflow.common.processes import ProcessGroup, all_gone
from agentflow.master.testing import MasterCluster

POLICY = RetryPolicy(deadline=30.0, attempt_timeout=5.0)


async def _connected(client: AsyncClient, worker_id: str) -> bool:
    return any(w.id == worker_id and w.connected for w in await client.workers())


async def test_stopped_worker_past_its_timeout_runs_the_task_once(tmp_path: Path) -> None:
    cluster = MasterCluster(tmp_path / "m", size=1)
    workers = ProcessGroup(tmp_path / "w")
    out = tmp_path / "side-effects"
    cluster.start("m1")
    try:
        await cluster.leader(30.0)
        cluster.start_worker(workers, "wa", "g", "--state-dir", str(tmp_path / "sa"))
        async with AsyncClient(cluster.address("m1"), retry=POLICY) as client:
            deadline = time.monotonic() + 30
            while not await _connected(client, "wa"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            task_id = await client.submit(
                f'shell:sleep 6; echo "$AGENTFLOW_ATTEMPT" >> {out}', group="g", max_retries=2
            )
            wa = psutil.Process(workers.procs["wa"].pid)
            while not [c for c in wa.children(recursive=True) if "sleep" in c.name()]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            lost_attempt = [c.pid for c in wa.children(recursive=True) if c.name() != "python"]
            cluster.start_worker(workers, "wb", "g", "--state-dir", str(tmp_path / "sb"))
            workers.pause("wa")  # SIGSTOP, by pid
            await asyncio.sleep(1.5)
            # Stopped with their worker (state T), not running on toward the side effect.
            assert all(psutil.Process(p).status() == psutil.STATUS_STOPPED for p in lost_attempt)
            task = await client.wait(task_id, timeout=45)  # lost at 15 s, retried on wb
            assert task.state is TaskState.SUCCEEDED and task.worker_id == "wb", task
            workers.resume("wa")
            assert await all_gone(lost_attempt, 10.0), "the lost attempt outlived the verdict"
            deadline = time.monotonic() + 20
            while not await _connected(client, "wa"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            await asyncio.sleep(7)  # longer than the task: a surviving attempt would write
        assert out.read_text().split() == [str(task.attempt)], out.read_text()
    finally:
        workers.stop_all()
        cluster.stop_all()
