"""Human output: the exact text of listings, details and durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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


def test_task_list_is_a_table() -> None:
    tasks = [
        _task("5", "Build docker image", TaskState.PENDING, group="docker"),
        _task(
            "6",
            "Run container tests",
            TaskState.SUCCEEDED,
            group="docker",
            worker_id="worker-002",
            priority=Priority.HIGH,
            started=T0,
            finished=T0 + timedelta(milliseconds=35),
        ),
        _task("7", "x" * 40, TaskState.RUNNING, worker_id="w1", attempt=2),
    ]
    now = T0 + timedelta(minutes=3, seconds=4)
    assert render.task_list(tasks, UTC_STYLE, now=now) == (
        "3 tasks\n"
        "ID  NAME                              STATE                PRIORITY  GROUP    WORKER      AGE  TOOK\n"  # noqa: E501
        "5   Build docker image                pending              normal    docker   -           3 m\n"  # noqa: E501
        "6   Run container tests               succeeded            high      docker   worker-002  3 m  35 ms\n"  # noqa: E501
        "7   xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…  running (attempt 2)  normal    default  w1          3 m"  # noqa: E501
    )  # fmt: skip


def test_task_list_wide_is_the_long_form() -> None:
    tasks = [
        _task("5", "Build docker image", TaskState.PENDING, group="docker"),
        _task(
            "6", "Run container tests", TaskState.RUNNING, group="docker", worker_id="worker-002"
        ),
    ]
    assert render.task_list(tasks, UTC_STYLE, wide=True) == (
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
    text = render.task_list([one], UTC_STYLE, total=40, wide=True)
    assert text.splitlines()[:2] == ["1 of 40 tasks", ""]
    assert "⏸ [1] shell:make" in text  # no name: the command
    assert "   state: ready (attempt 2)\n   priority: high\n   workflow: wf" in text
    assert "group: default" in text
    assert render.task_list([one], UTC_STYLE, total=40).splitlines()[0] == "1 of 40 tasks"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0 ms"),
        (0.035, "35 ms"),
        (0.9994, "999 ms"),
        (0.9996, "1.0 s"),
        (1.2, "1.2 s"),
        (42.4, "42 s"),
        (184, "3 m 4 s"),
        (7500, "2 h 5 m"),
        (2 * 86400 + 3 * 3600, "2 d 3 h"),
        (-1.0, "0 ms"),
    ],
)
def test_took(seconds: float, text: str) -> None:
    assert render.took(seconds) == text


def test_run_time_falls_back_to_assigned() -> None:
    quick = _task(
        "1", "q", TaskState.SUCCEEDED, assigned=T0, finished=T0 + timedelta(milliseconds=4)
    )
    assert render.run_seconds(quick) == pytest.approx(0.004)
    assert "   took: 4 ms" in render.task_detail(quick, UTC_STYLE)
    assert render.run_seconds(_task("2", "p", TaskState.PENDING)) is None
    assert [render.age(s) for s in (5, 61, 7200, 90000)] == ["5 s", "1 m", "2 h", "1 d"]


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


def test_outcome_in_the_state_s_own_words() -> None:
    cancelled = _task("1", "c", TaskState.CANCELLED, result=TaskResult(0, error="stop it"))
    text = render.task_detail(cancelled, UTC_STYLE)
    assert "   cancel reason: stop it" in text and "exit code" not in text
    default = _task("1", "c", TaskState.CANCELLED, result=TaskResult(0, error="cancelled"))
    assert "   cancel reason: none given" in render.task_detail(default, UTC_STYLE)
    assert "cancelled by" not in render.task_detail(default, UTC_STYLE)
    by = _task(
        "1", "c", TaskState.CANCELLED, result=TaskResult(0, error="x", cancelled_by="ops at h")
    )
    assert "   cancelled by: ops at h\n" in render.task_detail(by, UTC_STYLE)
    skipped = _task("2", "s", TaskState.SKIPPED, result=TaskResult(0, error="dependency 1 failed"))
    text = render.task_detail(skipped, UTC_STYLE)
    assert "   skipped because: dependency 1 failed" in text and "exit code" not in text
    lost = _task("3", "l", TaskState.FAILED, result=TaskResult(0, error="worker w1 lost"))
    text = render.task_detail(lost, UTC_STYLE)
    assert "   error: worker w1 lost" in text and "exit code" not in text
    killed = _task("4", "k", TaskState.FAILED, result=TaskResult(-9, error="killed"))
    assert "   exit code: -9 (killed by SIGKILL)" in render.task_detail(killed, UTC_STYLE)
    done = _task("5", "d", TaskState.SUCCEEDED, result=TaskResult(0))
    text = render.task_detail(done, UTC_STYLE)
    assert "   exit code: 0" in text and "error" not in text


def test_python_return_value() -> None:
    def python(value: object) -> Task:
        return Task(
            id="1",
            spec=TaskSpec("python:jobs:f"),
            state=TaskState.SUCCEEDED,
            priority=Priority.NORMAL,
            result=TaskResult(0, value=value),
        )

    text = render.task_detail(python({"rows": 3, "name": "né"}), UTC_STYLE)
    assert text.endswith('   returned: {"rows": 3, "name": "né"}') and "exit code" not in text
    assert render.task_detail(python(None), UTC_STYLE).endswith("   returned: null")
    big = render.task_detail(python({"k": "v" * 100}), UTC_STYLE)
    assert big.endswith('   returned:\n     | {\n     |   "k": "' + "v" * 100 + '"\n     | }')


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
    text = render.task_list([_task("1", "x", TaskState.SUCCEEDED)], ascii_style, wide=True)
    assert "+ [1] x" in text
    text.encode("ascii")
    long_name = render.task_list([_task("1", "y" * 40, TaskState.READY)], ascii_style)
    assert "yyyyyyyyyyyyyyyyyyyyyyyyyyyyy..." in long_name
    long_name.encode("ascii")
