"""Human output, pinned to the seed's listing style."""

from __future__ import annotations

from datetime import UTC, datetime

from agentflow.cli import render
from agentflow.cli.render import Style
from agentflow.client.models import (
    OnFailure,
    Priority,
    Task,
    TaskResult,
    TaskSpec,
    TaskState,
    WorkerState,
    WorkerStatus,
    WorkflowState,
    WorkflowStatus,
)

UTC_STYLE = Style(unicode=True, tz=UTC)
T0 = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)


def _task(task_id: str, name: str, state: TaskState, **kw: object) -> Task:
    spec_fields = {k: kw.pop(k) for k in ("group", "timeout", "max_retries", "labels") if k in kw}
    return Task(
        id=task_id,
        spec=TaskSpec("shell:make", name=name, **spec_fields),  # type: ignore[arg-type]
        state=state,
        priority=kw.pop("priority", Priority.NORMAL),  # type: ignore[arg-type]
        created=T0,
        **kw,  # type: ignore[arg-type]
    )


def test_task_list_like_the_seed() -> None:
    tasks = [
        _task("5", "Build docker image", TaskState.PENDING, group="docker"),
        _task(
            "6", "Run container tests", TaskState.RUNNING, group="docker", worker_id="worker-002"
        ),
    ]
    assert render.task_list(tasks, UTC_STYLE) == (
        "2 tasks\n"
        "\n"
        "⏳ [5] Build docker image\n"
        "   group: docker\n"
        "   state: pending\n"
        "   created: 2024-01-01 10:00:00\n"
        "\n"
        "▶ [6] Run container tests\n"
        "   group: docker\n"
        "   state: running\n"
        "   worker: worker-002\n"
        "   created: 2024-01-01 10:00:00"
    )


def test_listing_details() -> None:
    assert render.task_list([], UTC_STYLE) == "no tasks"
    one = _task("1", "", TaskState.READY, priority=Priority.HIGH, attempt=2, workflow_id="wf")
    text = render.task_list([one], UTC_STYLE, total=40)
    assert text.splitlines()[:2] == ["1 of 40 tasks", ""]
    assert "⏸ [1] shell:make" in text  # no name: the command
    assert "   state: ready (attempt 2)\n   priority: high\n   workflow: wf" in text
    assert "group: default" in text


def test_task_detail() -> None:
    task = _task(
        "9",
        "Train",
        TaskState.FAILED,
        group="gpu",
        timeout=600.0,
        max_retries=3,
        labels={"cuda": "12"},
        attempt=2,
        worker_id="w1",
        gpu_indices=(0, 1),
        dependencies=("7", "8"),
        finished=T0,
        result=TaskResult(exit_code=2, stderr_tail="bad\nworse\n", error="exit status 2"),
        errors=("attempt 1: exit status 2",),
    )
    assert render.task_detail(task, UTC_STYLE) == (
        "❌ [9] Train\n"
        "   command: shell:make\n"
        "   group: gpu\n"
        "   state: failed\n"
        "   priority: normal\n"
        "   attempt: 2 (max retries 3)\n"
        "   worker: w1 (GPUs 0, 1)\n"
        "   dependencies: 7, 8\n"
        "   labels: cuda=12\n"
        "   timeout: 10m\n"
        "   created: 2024-01-01 10:00:00\n"
        "   finished: 2024-01-01 10:00:00\n"
        "   exit code: 2\n"
        "   error: exit status 2\n"
        "   stderr:\n"
        "     | bad\n"
        "     | worse\n"
        "   errors:\n"
        "     - attempt 1: exit status 2"
    )


def test_workflow_detail() -> None:
    status = WorkflowStatus(
        id="wf1",
        name="Release",
        on_failure=OnFailure.SKIP,
        state=WorkflowState.RUNNING,
        task_ids=("wf1/a", "wf1/b"),
        created=T0,
        tasks=(_task("wf1/a", "a", TaskState.SUCCEEDED), _task("wf1/b", "b", TaskState.RUNNING)),
        execution_order=("wf1/a", "wf1/b"),
        critical_path=("wf1/a", "wf1/b"),
        state_counts={TaskState.RUNNING: 1, TaskState.SUCCEEDED: 1},
    )
    text = render.workflow_detail(status, UTC_STYLE)
    assert text.startswith(
        "🔄 [wf1] Release\n"
        "   state: running\n"
        "   on failure: skip\n"
        "   tasks: 2 (1 running, 1 succeeded)\n"
        "   execution order: wf1/a, wf1/b\n"
        "   critical path: wf1/a -> wf1/b\n"
        "   created: 2024-01-01 10:00:00\n"
        "\n"
        "✅ wf1/a  succeeded"
    )
    assert len(text.splitlines()) == 10  # one line per task


def test_workers() -> None:
    worker = WorkerStatus(
        id="worker-001",
        state=WorkerState.ONLINE,
        groups=("linux",),
        cpu_cores=8,
        memory_mb=16384,
        gpu_count=1,
        capacity=8,
        hostname="node-a",
        connected=True,
        running=2,
        cpu_percent=35.2,
        memory_percent=60,
        last_heartbeat=T0,
    )
    assert render.worker_list([worker], UTC_STYLE) == (
        "1 worker\n"
        "\n"
        "🟢 [worker-001] node-a\n"
        "   groups: linux\n"
        "   state: online\n"
        "   running: 2 / 8\n"
        "   resources: 8 cpu, 16384 MB memory, 1 gpu\n"
        "   usage: cpu 35%, memory 60%\n"
        "   last heartbeat: 2024-01-01 10:00:00"
    )
    assert render.worker_list([], UTC_STYLE) == "no workers"


def test_ascii_fallback() -> None:
    ascii_style = Style(unicode=False, tz=UTC)
    text = render.task_list([_task("1", "x", TaskState.SUCCEEDED)], ascii_style)
    assert "+ [1] x" in text
    text.encode("ascii")
