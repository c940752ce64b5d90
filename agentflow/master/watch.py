"""The WatchTasks stream: the current picture, then every change, coalesced.

A slow client never slows down apply: the state listener only adds task ids to a
set, and the stream sends each changed task's latest version when it gets to it, so
a burst of changes to one task costs one message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeGuard

from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import state_pb2
from agentflow.state import FINAL_STATES, ChangeSet, SchedulerState


def _wanted(state: SchedulerState, request: api.WatchTasksRequest) -> set[str] | None:
    """Task ids to watch, or None for "every task (of the workflow, if given)"."""
    if request.task_ids:
        return set(request.task_ids)
    if request.workflow_id:
        wf = state.workflows.get(request.workflow_id)
        return set(wf.task_ids) if wf is not None else set()
    return None


def missing_task(state: SchedulerState, request: api.WatchTasksRequest) -> str | None:
    """With `must_exist`, the error naming the first listed task that does not exist."""
    if not request.must_exist:
        return None
    for i, task_id in enumerate(request.task_ids):
        if task_id not in state.tasks:
            return f"task_ids[{i}]: no task {task_id!r}"
    return None


def _final(task: state_pb2.Task | None) -> bool:
    return task is not None and task.state in FINAL_STATES


def _without_progress(task: state_pb2.Task) -> bytes:
    copy = state_pb2.Task()
    copy.CopyFrom(task)
    copy.ClearField("progress")
    copy.ClearField("progress_message")
    copy.ClearField("updated_index")
    return copy.SerializeToString(deterministic=True)


class WatchCutOff(Exception):
    """The master serving a watch has been without a leader too long: its state may
    have stopped moving while the cluster goes on. The watcher should go elsewhere."""


# A quiet watch checks this often that its master still follows a leader; one without
# a leader at two checks in a row (an election takes 0.75-1.5 s) is cut off.
LEADER_CHECK_S = 1.0


async def watch_tasks(
    state: SchedulerState,
    request: api.WatchTasksRequest,
    has_leader: Callable[[], bool] | None = None,
    check_every: float = LEADER_CHECK_S,
) -> AsyncIterator[api.TaskEvent]:
    """The stream's events. With `has_leader`, raises WatchCutOff when the master has
    had no leader at two checks in a row (see LEADER_CHECK_S)."""
    wanted = _wanted(state, request)
    pending: dict[str, None] = {}
    wake = asyncio.Event()

    def shown(task: state_pb2.Task | None) -> TypeGuard[state_pb2.Task]:
        return task is not None and (not request.final_only or _final(task))

    def on_change(change: ChangeSet) -> None:
        for task_id in change.tasks:
            if wanted is None or task_id in wanted:
                pending[task_id] = None
        if pending:
            wake.set()

    # What was last sent per task, progress aside: without include_progress, a
    # change that only moves the progress bar is not sent; any other change is.
    sent: dict[str, bytes] = {}
    unsubscribe = state.add_listener(on_change)
    try:
        ids = list(wanted) if wanted is not None else list(state.tasks)
        # end_when_final: the watched tasks not final yet (one not created yet counts).
        ending = request.end_when_final
        unfinished = {i for i in ids if not _final(state.task(i))} if ending else set()
        for task_id in ids:
            task = state.task(task_id)
            if shown(task):
                sent[task_id] = _without_progress(task)
                yield api.TaskEvent(task=task, index=state.applied_index, initial=True)
        leaderless = 0
        while not (ending and not unfinished):
            try:
                async with asyncio.timeout(check_every if has_leader is not None else None):
                    await wake.wait()
            except TimeoutError:
                assert has_leader is not None
                leaderless = 0 if has_leader() else leaderless + 1
                if leaderless >= 2:
                    raise WatchCutOff("this master has had no leader for a while") from None
                continue
            wake.clear()
            batch = list(pending)
            pending.clear()
            for task_id in batch:
                task = state.task(task_id)
                if ending and _final(task):
                    unfinished.discard(task_id)
                if not shown(task):
                    continue
                key = _without_progress(task)
                if not request.include_progress and sent.get(task_id) == key:
                    continue
                sent[task_id] = key
                copy = state_pb2.Task()
                copy.CopyFrom(task)
                yield api.TaskEvent(task=copy, index=task.updated_index)
    finally:
        unsubscribe()
