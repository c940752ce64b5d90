from __future__ import annotations

from pathlib import Path

import pytest

from agentflow.client.models import (
    OnFailure,
    Priority,
    TaskSpec,
    TaskState,
    WorkerState,
    Workflow,
    WorkflowState,
)
from agentflow.scheduler.ready_queue import Priority as SchedulerPriority


def test_priority_is_the_schedulers() -> None:
    assert Priority is SchedulerPriority
    assert [p.name for p in Priority] == ["CRITICAL", "HIGH", "NORMAL", "LOW", "IDLE"]


@pytest.mark.parametrize("text", ["running", "RUNNING", "task_state_running", "TASK_STATE_RUNNING"])
def test_task_state_parse(text: str) -> None:
    assert TaskState.parse(text) is TaskState.RUNNING


def test_parse_errors_list_the_choices() -> None:
    with pytest.raises(ValueError, match="expected pending, ready, assigned, running"):
        TaskState.parse("done")
    assert OnFailure.parse("ON_FAILURE_CONTINUE") is OnFailure.CONTINUE
    assert WorkerState.parse("lost") is WorkerState.LOST


def test_finished_states() -> None:
    finished = {s for s in TaskState if s.is_finished}
    assert finished == {
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.CANCELLED,
        TaskState.SKIPPED,
    }
    assert not WorkflowState.RUNNING.is_finished
    assert WorkflowState.CANCELLED.is_finished


def test_task_spec_is_frozen_with_keyword_fields() -> None:
    spec = TaskSpec("shell:true", name="x", priority=Priority.HIGH)
    with pytest.raises(AttributeError):
        spec.name = "y"  # type: ignore[misc]
    assert spec.dependencies == ()
    assert spec.labels == {}


def test_workflow_from_file(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text("workflow:\n  tasks:\n    - task_id: a\n      command: shell:true\n")
    workflow = Workflow.from_file(path)
    assert [t.id for t in workflow.tasks] == ["a"]
