"""Parameter types, JSON output, the progress line."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import click
import pytest

from agentflow.cli import params
from agentflow.cli.output import jsonable
from agentflow.cli.progress import ProgressDisplay, bar, task_line, workflow_line
from agentflow.cli.render import Style
from agentflow.client.models import (
    OnFailure,
    Priority,
    Task,
    TaskEvent,
    TaskSpec,
    TaskState,
    WorkflowState,
    WorkflowStatus,
)
from agentflow.client.tracking import WorkflowTracker


def _convert(param_type: click.ParamType, value: Any) -> Any:  # type: ignore[type-arg]
    return param_type.convert(value, None, None)


def test_param_types() -> None:
    assert _convert(params.PRIORITY, "high") is Priority.HIGH
    assert _convert(params.PRIORITY, "0") is Priority.CRITICAL
    assert _convert(params.STATES, "pending, running") == (TaskState.PENDING, TaskState.RUNNING)
    assert _convert(params.KEY_VALUE, "a=b=c") == ("a", "b=c")
    assert _convert(params.KEY_VALUE, "empty=") == ("empty", "")
    assert _convert(params.DURATION, "10m") == 600.0
    assert _convert(params.JSON, '{"a": [1]}') == {"a": [1]}
    groups = ((TaskState.PENDING,), (TaskState.RUNNING, TaskState.PENDING))
    assert params.flatten_states(groups) == [TaskState.PENDING, TaskState.RUNNING]


@pytest.mark.parametrize(
    ("param_type", "value", "message"),
    [
        (params.PRIORITY, "urgent", "unknown level 'urgent'"),
        (params.STATES, "done", "unknown value 'done'"),
        (params.KEY_VALUE, "novalue", "expected KEY=VALUE"),
        (params.KEY_VALUE, "=v", "expected KEY=VALUE"),
        (params.DURATION, "soon", "invalid duration 'soon'"),
        (params.JSON, "{", "invalid JSON"),
    ],
)
def test_param_errors(param_type: click.ParamType, value: str, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(click.BadParameter, match=message):
        _convert(param_type, value)


def test_jsonable() -> None:
    task = Task(
        id="1",
        spec=TaskSpec("shell:x", priority=Priority.HIGH, labels={"a": "b"}),
        state=TaskState.RUNNING,
        priority=Priority.HIGH,
        created=datetime(2024, 1, 1, tzinfo=UTC),
        gpu_indices=(0,),
    )
    data = jsonable({"tasks": [task], "counts": {TaskState.READY: 2}})
    json.dumps(data)
    row = data["tasks"][0]
    assert row["state"] == "running"
    assert row["priority"] == "high"
    assert row["spec"]["priority"] == "high"
    assert row["spec"]["labels"] == {"a": "b"}
    assert row["created"] == "2024-01-01T00:00:00+00:00"
    assert row["gpu_indices"] == [0]
    assert row["result"] is None
    assert data["counts"] == {"ready": 2}


def _task(state: TaskState, progress: float = 0.0, message: str = "") -> Task:
    return Task(
        id="7",
        spec=TaskSpec("shell:x"),
        state=state,
        priority=Priority.NORMAL,
        progress=progress,
        progress_message=message,
    )


def test_progress_lines() -> None:
    style = Style(unicode=False)
    assert bar(0.5, unicode=False, width=10) == "[#####-----]"
    assert bar(2, unicode=True, width=4) == "[████]"
    assert task_line(_task(TaskState.RUNNING, 0.25, "step 1"), style) == (
        "> [7] running [######------------------]  25% step 1"
    )
    assert task_line(_task(TaskState.SUCCEEDED), style).endswith("[########################] 100%")
    status = WorkflowStatus(
        id="w",
        name="",
        on_failure=OnFailure.SKIP,
        state=WorkflowState.RUNNING,
        task_ids=("a", "b", "c", "d"),
    )
    tracker = WorkflowTracker(status)
    tracker.update(_replace_id(_task(TaskState.SUCCEEDED), "a"))
    tracker.update(_replace_id(_task(TaskState.RUNNING), "b"))
    assert workflow_line(tracker, style) == (
        "[######------------------] 1/4 tasks finished (1 running, 1 succeeded)"
    )


def _replace_id(task: Task, task_id: str) -> Task:
    return replace(task, id=task_id)


def test_progress_display_redraws_in_place() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(stream, Style(unicode=False))
    display.start_task(_task(TaskState.READY))
    display.on_event(TaskEvent(_task(TaskState.SUCCEEDED), 3, False))
    display.finish()
    out = stream.getvalue()
    assert out.count("\r") == 2 and out.endswith("\n")
    silent = ProgressDisplay(None, Style())
    silent.start_task(_task(TaskState.READY))
    silent.finish()
