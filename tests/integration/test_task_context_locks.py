"""A python task takes a lock through its context, on the master its worker uses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from agentflow.client import Client
from agentflow.common.processes import ProcessGroup
from agentflow.master.testing import MasterCluster

TASK = """
from agentflow.worker.context import task_context

def locked():
    ctx = task_context()
    with ctx.lock("task-lock", ttl="5s") as lease:
        seen = ctx.client().get_lock("task-lock")
        return {"token": lease.token, "holder": seen.owner, "owner": lease.owner}
"""


def test_python_task_locks_through_its_context(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "locking.py").write_text(TASK)
    cluster = MasterCluster(tmp_path / "m", size=1)
    workers = ProcessGroup(tmp_path / "w")
    cluster.start("m1")
    try:
        asyncio.run(cluster.leader(30.0))
        cluster.start_worker(workers, "w1", "default", "--pythonpath", str(tmp_path / "tasks"))
        with Client(cluster.url()) as client:
            task_id = client.submit("python:locking:locked")
            task = client.wait_task(task_id, timeout=60)
            assert task.state.value == "succeeded", task
            value = task.result.value if task.result else None
            value = value if isinstance(value, dict) else json.loads(str(value))
            assert value["token"] > 0 and value["holder"] == value["owner"]
            assert client.get_lock("task-lock").owner == ""
    finally:
        workers.stop_all()
        cluster.stop_all()
