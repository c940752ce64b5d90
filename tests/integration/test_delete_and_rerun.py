"""Running one workflow file again: `agentflow run --id/--unique`, `agentflow delete`,
and the SDK's delete(), against a real `agentflow-master` and `agentflow-worker`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentflow.client import (
    AsyncClient,
    Client,
    FailedPreconditionError,
    NotFoundError,
    RetryPolicy,
    TaskSpec,
    Workflow,
    WorkflowState,
)
from agentflow.common.processes import ProcessGroup
from agentflow.master.testing import MasterCluster

AGENTFLOW = Path(sys.executable).parent / "agentflow"
POLICY = RetryPolicy(deadline=30.0, attempt_timeout=5.0)
WORKFLOW = """\
workflow:
  id: {id}
  name: Release
  tasks:
    - task_id: build
      desc: "shell:echo building"
    - task_id: test
      desc: "shell:echo testing"
      dependencies: [build]
"""


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One master and one worker (group `default`) for the module; the master's address."""
    root = tmp_path_factory.mktemp("delete")
    cluster = MasterCluster(root / "masters", size=1)
    workers = ProcessGroup(root / "workers")
    try:
        asyncio.run(cluster.start_all())
        cluster.start_worker(workers, "w1")
        yield cluster.address("m1")
    finally:
        workers.stop_all()
        cluster.stop_all()


def agentflow(master: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(AGENTFLOW)] if AGENTFLOW.exists() else [sys.executable, "-m", "agentflow.cli"]
    env = dict(os.environ, MASTER_URL=master)
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=90, check=False
    )


def ok(master: str, *args: str) -> str:
    result = agentflow(master, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def as_json(master: str, *args: str) -> Any:
    return json.loads(ok(master, "--output", "json", *args))


def workflow_file(tmp_path: Path, workflow_id: str) -> str:
    path = tmp_path / f"{workflow_id}.yaml"
    path.write_text(WORKFLOW.format(id=workflow_id))
    return str(path)


def test_run_twice_names_the_remedy_then_delete_and_unique_let_it_run_again(
    master: str, tmp_path: Path
) -> None:
    path = workflow_file(tmp_path, "release")
    first = agentflow(master, "run", path, "--wait", "--timeout", "60s")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("submitted workflow release\n")

    again = agentflow(master, "run", path)
    assert again.returncode == 1
    assert again.stderr == (
        "error: workflow 'release' already exists (finished succeeded); give this run its "
        f"own id with --id ID or --unique (agentflow run {path} --unique), or delete the "
        "old one first: agentflow delete workflow release\n"
    )

    deleted = ok(master, "delete", "workflow", "release")
    assert deleted == "deleted 1 workflow (release) with 2 tasks in all\n"
    gone = agentflow(master, "show", "release")
    assert (gone.returncode, gone.stderr) == (1, "error: no task or workflow 'release'\n")
    rerun = agentflow(master, "run", path, "--wait", "--timeout", "60s")
    assert rerun.returncode == 0, rerun.stderr

    ids = [as_json(master, "run", path, "--unique")["workflow_id"] for _ in range(2)]
    assert ids[0] != ids[1]
    for workflow_id in ids:
        assert re.fullmatch(r"release-\d{8}-\d{4}-[0-9a-f]{4}", workflow_id), workflow_id
        assert as_json(master, "show", workflow_id)["id"] == workflow_id
    human = ok(master, "run", path, "--unique")
    assert re.match(r"submitted workflow release-\d{8}-\d{4}-[0-9a-f]{4} \(2 tasks\)\n", human)

    named = ok(master, "run", path, "--id", "release-b", "--wait", "--timeout", "60s")
    assert named.startswith("submitted workflow release-b\n")
    assert as_json(master, "show", "release-b/build")["state"] == "succeeded"
    bad = agentflow(master, "run", path, "--id", "no spaces")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --id: invalid workflow id")


def test_unfinished_records_are_refused_naming_id_and_state(master: str, tmp_path: Path) -> None:
    path = tmp_path / "stuck.yaml"
    path.write_text(
        "workflow:\n  id: stuck\n  tasks:\n    - {task_id: a, desc: 'shell:true', group: nobody}\n"
    )
    ok(master, "run", str(path))
    again = agentflow(master, "run", str(path))
    assert again.returncode == 1
    assert "workflow 'stuck' already exists and is still running" in again.stderr
    assert "agentflow cancel --workflow stuck" in again.stderr
    refused = agentflow(master, "delete", "workflow", "stuck")
    assert refused.returncode == 1
    assert refused.stderr == (
        "error: workflow_ids[0]: workflow stuck is still running (task stuck/a is READY): "
        "cancel it first, then delete it\n"
    )
    task_id = as_json(master, "add", "queued", "--desc", "shell:true", "-g", "nobody")["task_id"]
    refused = agentflow(master, "delete", "task", task_id)
    assert refused.stderr == (
        f"error: task_ids[0]: task {task_id} is READY: cancel it first, then delete it\n"
    )
    of_workflow = agentflow(master, "delete", "task", "stuck/a")
    assert "belongs to workflow stuck: delete the workflow" in of_workflow.stderr
    ok(master, "cancel", "--workflow", "stuck")
    ok(master, "cancel", task_id)
    assert ok(master, "delete", "task", task_id) == f"deleted 1 task: {task_id}\n"
    assert as_json(master, "delete", "workflow", "stuck")["workflow_ids"] == ["stuck"]
    usage = agentflow(master, "delete")
    assert usage.returncode == 2 and "say what to delete" in usage.stderr
    mixed = agentflow(master, "delete", "--finished-before", "1h", "task", "x")
    assert mixed.returncode == 2 and "--finished-before deletes by age" in mixed.stderr


def test_delete_finished_before_sweeps_by_age(master: str) -> None:
    ids = [
        as_json(master, "add", f"old {i}", "--desc", "shell:true", "-g", "nobody")["task_id"]
        for i in range(2)
    ]
    ok(master, "cancel", *ids)
    assert ok(master, "delete", "--finished-before", "1h") == (
        "nothing to delete that finished 1h ago or more\n"
    )
    swept = as_json(master, "delete", "--finished-before", "0")
    assert set(ids) <= set(swept["task_ids"])
    for task_id in ids:
        assert agentflow(master, "show", task_id).returncode == 1


def test_sdk_delete_frees_the_id_and_refuses_a_running_workflow(
    master: str, tmp_path: Path
) -> None:
    path = workflow_file(tmp_path, "sdk-sync")
    with Client(master, retry=POLICY) as client:
        run = client.submit_workflow(path, id="sdk-run")
        assert run.workflow_id == "sdk-run"
        assert client.wait_workflow("sdk-run", timeout=60).state == WorkflowState.SUCCEEDED
        deleted = client.delete_workflow("sdk-run", request_id="del-sdk-run")
        assert deleted.workflow_ids == ("sdk-run",)
        assert deleted.task_ids == ("sdk-run/build", "sdk-run/test")
        # A retry of the same request is answered with the first result.
        retried = client.delete_workflow("sdk-run", request_id="del-sdk-run")
        assert retried.duplicate and retried.index == deleted.index
        with pytest.raises(NotFoundError):
            client.get_workflow("sdk-run")
        assert client.submit_workflow(path, id="sdk-run").workflow_id == "sdk-run"
        client.wait_workflow("sdk-run", timeout=60)

        task_id = client.submit("shell:true", group="nobody")
        with pytest.raises(FailedPreconditionError, match=f"task {task_id} is READY"):
            client.delete(task_id)
        client.cancel(task_id)
        assert client.delete(task_id).task_ids == (task_id,)


async def test_async_sdk_delete(master: str, tmp_path: Path) -> None:
    path = workflow_file(tmp_path, "sdk-async")
    async with AsyncClient(master, retry=POLICY) as client:
        await client.submit_workflow(path)
        done = await client.wait_workflow("sdk-async", timeout=60)
        assert done.state == WorkflowState.SUCCEEDED
        deleted = await client.delete(workflow_ids="sdk-async")
        assert deleted.workflow_ids == ("sdk-async",) and len(deleted.task_ids) == 2
        assert (await client.submit_workflow(path)).workflow_id == "sdk-async"
        await client.wait_workflow("sdk-async", timeout=60)
        stuck = Workflow([TaskSpec("shell:true", id="a", group="nobody")], id="sdk-stuck")
        await client.submit_workflow(stuck)
        with pytest.raises(FailedPreconditionError, match="task sdk-stuck/a is READY"):
            await client.delete_workflow("sdk-stuck")
        await client.cancel(workflow_id="sdk-stuck")
        swept = await client.delete(finished_before=0)
        assert {"sdk-async", "sdk-stuck"} <= set(swept.workflow_ids)
