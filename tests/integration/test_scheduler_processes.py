"""Scheduling and liveness with real `agentflow-master` and `agentflow-worker`
processes on 127.0.0.1: tasks nobody can place never hide one somebody can, and every
master SIGSTOPped past the worker timeout loses no worker and no finished result."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentflow import AsyncClient, TaskSpec, TaskState
from agentflow.client import RetryPolicy
from agentflow.common.processes import ProcessGroup
from agentflow.master.testing import MasterCluster

POLICY = RetryPolicy(deadline=60.0, attempt_timeout=5.0)
WORKER_TIMEOUT = 4.0  # short, so that a pause well past it costs the test seconds
JOURNAL = "python:agentflow.worker.testing_tasks:journal"


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[ProcessGroup]:
    group = ProcessGroup(tmp_path / "workers")
    try:
        yield group
    finally:
        group.stop_all()


async def test_unplaceable_tasks_queued_ahead_do_not_delay_a_placeable_one(
    tmp_path: Path, workers: ProcessGroup
) -> None:
    cluster = MasterCluster(tmp_path / "masters", size=1)
    try:
        await cluster.start_all()
        cluster.start_worker(workers, "w1", env={"WORKER_MAX_CONCURRENT_TASKS": "2"})
        async with AsyncClient(cluster.url(), retry=POLICY) as client:
            for n in range(0, 1100, 550):  # CRITICAL, in a group no worker serves
                specs = [
                    TaskSpec("shell:true", name=f"stuck{n + i}", group="nobody", priority=0)
                    for i in range(550)
                ]
                await client.submit_many(specs)
            mine = await client.submit("shell:echo placeable", priority="idle")
            task = await client.wait_task(mine, timeout=30.0)
            assert task.state == TaskState.SUCCEEDED, task
            stuck = await client.list_page(states=[TaskState.READY], page_size=1)
            assert stuck.total == 1100
    finally:
        cluster.stop_all()


async def test_all_masters_paused_past_the_worker_timeout_lose_no_worker_and_no_result(
    tmp_path: Path, workers: ProcessGroup
) -> None:
    cluster = MasterCluster(
        tmp_path / "masters", size=3, extra_args=["--worker-timeout", str(WORKER_TIMEOUT)]
    )
    journal = tmp_path / "journal.jsonl"
    try:
        await cluster.start_all()
        for wid in ("w1", "w2", "w3"):
            cluster.start_worker(workers, wid, env={"WORKER_MAX_CONCURRENT_TASKS": "4"})
        async with AsyncClient(cluster.url(), retry=POLICY) as client:
            deadline = time.monotonic() + 30
            while len([w for w in await client.workers() if w.connected]) < 3:
                assert time.monotonic() < deadline, "workers did not connect"
                await asyncio.sleep(0.2)
            # No retries: a worker declared LOST would make its tasks FAILED.
            args = {"path": str(journal), "sleep": 1.0}
            ids = await client.submit_many(
                [TaskSpec(JOURNAL, name=f"t{i}", args=args) for i in range(40)]
            )
            deadline = time.monotonic() + 30
            while not journal.exists():  # a task ran to its end: the others are running
                assert time.monotonic() < deadline, "no task finished"
                await asyncio.sleep(0.05)
            paused_at = time.time()
            for node in cluster.ids:
                cluster.group.pause(node)
            await asyncio.sleep(2 * WORKER_TIMEOUT)  # workers keep running and finishing
            for node in cluster.ids:
                cluster.group.resume(node)
            finals = [await client.wait_task(t, timeout=60.0) for t in ids]
            statuses = await client.workers()
        ran = [json.loads(line) for line in journal.read_text().splitlines()]
        during = [e for e in ran if paused_at < e["end"] < paused_at + 2 * WORKER_TIMEOUT]
        assert during, "no task finished while the masters were paused"
        assert [t.state for t in finals] == [TaskState.SUCCEEDED] * 40, [
            (t.id, t.state.name, t.errors) for t in finals if t.state != TaskState.SUCCEEDED
        ]
        assert all(t.attempt == 1 for t in finals)  # each ran once: no result discarded
        assert sorted(w.id for w in statuses if w.state.name == "ONLINE") == ["w1", "w2", "w3"]
    finally:
        cluster.stop_all()
