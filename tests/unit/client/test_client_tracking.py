from __future__ import annotations

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
from agentflow.client.tracking import EventFilter, WorkflowTracker


def _task(task_id: str, state: TaskState, index: int = 0, workflow_id: str = "w") -> Task:
    return Task(
        id=task_id,
        spec=TaskSpec("shell:x"),
        state=state,
        priority=Priority.NORMAL,
        workflow_id=workflow_id,
        updated_index=index,
    )


def test_event_filter_drops_what_was_delivered() -> None:
    events = EventFilter()
    first = TaskEvent(_task("1", TaskState.READY, 5), 5, True)
    assert events.fresh(first)
    assert not events.fresh(first)  # the same picture again after a reconnect
    assert events.fresh(TaskEvent(_task("1", TaskState.RUNNING, 6), 6, False))
    assert not events.fresh(TaskEvent(_task("1", TaskState.READY, 5), 5, True))  # older
    assert events.fresh(TaskEvent(_task("2", TaskState.READY, 3), 3, True))
    no_index = TaskEvent(_task("3", TaskState.READY, 0), 0, True)
    assert events.fresh(no_index) and events.fresh(no_index)


def test_workflow_tracker() -> None:
    status = WorkflowStatus(
        id="w",
        name="",
        on_failure=OnFailure.SKIP,
        state=WorkflowState.RUNNING,
        task_ids=("w/a", "w/b"),
        tasks=(_task("w/a", TaskState.SUCCEEDED),),
    )
    tracker = WorkflowTracker(status)
    assert (tracker.finished, tracker.total, tracker.done) == (1, 2, False)
    tracker.update(_task("w/b", TaskState.RUNNING))
    tracker.update(_task("x", TaskState.FAILED, workflow_id="other"))
    assert tracker.counts() == {TaskState.SUCCEEDED: 1, TaskState.RUNNING: 1}
    tracker.update(_task("w/b", TaskState.FAILED))
    assert tracker.done
