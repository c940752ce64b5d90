"""kill -9 of a real `agentflow-worker` while a task that forks runs: none of the
task's processes survive it for more than a moment (its guardian kills the groups),
and a record left by a worker whose guardian died too is swept by the next worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from agentflow import AsyncClient, TaskState
from agentflow.client import RetryPolicy
from agentflow.common.processes import ProcessGroup, all_gone
from agentflow.master.testing import MasterCluster
from agentflow.worker.group_record import record_path, start_ticks, sweep, write_record

POLICY = RetryPolicy(deadline=20.0, attempt_timeout=5.0)


def _task_processes(marker: str) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            env = proc.info["environ"] or {}
        except psutil.Error:
            continue
        if env.get("AGENTFLOW_TEST_MARKER") == marker:
            out.append(proc)
    return out


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize("kind", ["shell", "python"])
async def test_kill_9_of_the_worker_kills_the_forking_task(tmp_path: Path, kind: str) -> None:
    cluster = MasterCluster(tmp_path / "m", size=1)
    workers = ProcessGroup(tmp_path / "w")
    cluster.start("m1")
    marker = f"guard-{kind}-{os.getpid()}"
    try:
        await cluster.leader(30.0)
        cluster.start_worker(workers, "wg", "g", "--state-dir", str(tmp_path / "state"))
        async with AsyncClient(cluster.address("m1"), retry=POLICY) as client:
            if kind == "shell":
                task_id = await client.submit(
                    "shell:sleep 30 & sleep 30", group="g", env={"AGENTFLOW_TEST_MARKER": marker}
                )
            else:
                task_id = await client.submit(
                    "python:subprocess:call",
                    args=[["sh", "-c", "sleep 30 & sleep 30"]],
                    group="g",
                    env={"AGENTFLOW_TEST_MARKER": marker},
                )
            deadline = time.monotonic() + 30
            while len(_task_processes(marker)) < 2:
                assert time.monotonic() < deadline, "the task's processes never showed up"
                await asyncio.sleep(0.1)
            state = (await client.get(task_id)).state
            assert state in (TaskState.ASSIGNED, TaskState.RUNNING)
        procs = _task_processes(marker)
        pgids = {os.getpgid(p.pid) for p in procs}
        assert all(pg != os.getpgid(0) for pg in pgids)
        workers.kill("wg")  # SIGKILL, by pid
        await all_gone([p.pid for p in procs], 2.0)
        left = _alive(procs)
        assert not left, f"survived the worker: {[(p.pid, p.cmdline()) for p in left]}"
    finally:
        workers.stop_all()
        cluster.stop_all()
        for p in _alive(_task_processes(marker)):
            p.kill()


def test_sweep_kills_groups_recorded_by_a_dead_worker(tmp_path: Path) -> None:
    """Worker and guardian both gone: the record they left is swept at the next start."""
    orphan = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30"], start_new_session=True)
    try:
        time.sleep(0.2)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()  # a worker pid that is gone
        write_record(
            record_path(tmp_path, dead.pid), dead.pid, 12345, {orphan.pid: start_ticks(orphan.pid)}
        )
        members = [c.pid for c in psutil.Process(orphan.pid).children()]
        assert sweep(tmp_path) == [orphan.pid]
        orphan.wait(5)
        time.sleep(0.1)
        assert not [
            m
            for m in members
            if psutil.pid_exists(m) and psutil.Process(m).status() != psutil.STATUS_ZOMBIE
        ]
        assert not list(tmp_path.glob("process-groups-*"))
    finally:
        if orphan.poll() is None:
            os.killpg(orphan.pid, signal.SIGKILL)
            orphan.wait()


def test_sweep_leaves_a_recycled_pgid_alone(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        write_record(
            record_path(tmp_path, 999999), 999999, 1, {other.pid: start_ticks(other.pid) - 1}
        )
        assert sweep(tmp_path) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
