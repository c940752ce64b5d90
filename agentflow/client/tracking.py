"""Bookkeeping for watch and wait, shared by both clients (no I/O)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from agentflow._proto import scheduler_pb2 as api
from agentflow.client.models import Task, TaskEvent, TaskState, WorkflowStatus

__all__ = ["EventFilter", "WatchEnd", "WorkflowTracker"]


class EventFilter:
    """Drops events already delivered: after a watch reconnects, the new stream starts
    with a fresh picture of every matching task, most of which the caller has seen.
    Remembers the last raft index delivered per task id."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def fresh(self, event: TaskEvent) -> bool:
        task = event.task
        index = task.updated_index or event.index
        if index and self._seen.get(task.id, -1) >= index:
            return False
        self._seen[task.id] = index
        return True


class WatchEnd:
    """When a watch with `end_when_final` is over. The server ends such a stream (OK)
    right after every watched task is final; a normal end is then the end of the
    watch, not a reason to reconnect. For listed tasks the client also knows when
    that end is due: it reads it instead of cancelling the call, which costs both
    sides more."""

    def __init__(self, request: api.WatchTasksRequest) -> None:
        self.ends = request.end_when_final
        self._left = set(request.task_ids) if self.ends and request.task_ids else None

    def saw(self, event: TaskEvent) -> None:
        if self._left is not None and event.task.is_finished:
            self._left.discard(event.task.id)

    @property
    def due(self) -> bool:
        return self._left is not None and not self._left


class WorkflowTracker:
    """The state of every task of one workflow, fed by watch events."""

    def __init__(self, status: WorkflowStatus) -> None:
        self.workflow_id = status.id
        # The latest version seen of each task; None: not seen yet (state UNKNOWN).
        self._tasks: dict[str, Task | None] = dict.fromkeys(status.task_ids)
        self._finished = 0  # kept with every update: `done` is asked after each event
        for task in status.tasks:
            self.update(task)

    def update(self, task: Task) -> None:
        if task.id in self._tasks or task.workflow_id == self.workflow_id:
            before = self._tasks.get(task.id)
            self._finished += task.state.is_finished - bool(before and before.is_finished)
            self._tasks[task.id] = task

    def tasks_of(self, task_ids: Sequence[str]) -> tuple[Task, ...] | None:
        """The latest version seen of each of these tasks, in that order; None if
        one was never seen."""
        seen = tuple(t for i in task_ids if (t := self._tasks.get(i)) is not None)
        return seen if len(seen) == len(task_ids) else None

    @property
    def total(self) -> int:
        return len(self._tasks)

    @property
    def finished(self) -> int:
        return self._finished

    @property
    def done(self) -> bool:
        return self.finished == self.total

    def counts(self) -> Counter[TaskState]:
        return Counter(TaskState.UNKNOWN if t is None else t.state for t in self._tasks.values())
