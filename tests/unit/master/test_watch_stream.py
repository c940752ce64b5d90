"""The WatchTasks stream against a real SchedulerState: how it ends."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import state_pb2 as pb
from agentflow.master.watch import WatchCutOff, watch_tasks
from agentflow.state import SchedulerState, encode

FAST = 0.01  # seconds between leader checks in these tests


def submitted(sm: SchedulerState, *ids: str) -> None:
    cmd = pb.Command(
        now_ms=1_000,
        submit_tasks=pb.SubmitTasks(tasks=[pb.TaskSpec(id=i, command="shell:true") for i in ids]),
    )
    sm.apply(sm.applied_index + 1, encode(cmd))


def cancelled(sm: SchedulerState, task_id: str) -> None:
    cmd = pb.Command(now_ms=2_000, cancel_tasks=pb.CancelTasks(task_ids=[task_id]))
    sm.apply(sm.applied_index + 1, encode(cmd))


async def test_a_master_without_a_leader_cuts_its_watches_off() -> None:
    sm = SchedulerState()
    submitted(sm, "a")
    answers = iter([True, False, True, False, False])  # a blip, then gone
    asked = itertools.count(1)

    def has_leader() -> bool:
        next(asked)
        return next(answers)

    events = watch_tasks(sm, api.WatchTasksRequest(task_ids=["a"]), has_leader, FAST)
    assert (await anext(events)).task.id == "a"
    with pytest.raises(WatchCutOff):
        await asyncio.wait_for(anext(events), 5)
    assert next(asked) == 6  # cut off at the second check in a row without a leader


async def test_a_watch_with_a_leader_waits_for_changes() -> None:
    sm = SchedulerState()
    submitted(sm, "a")
    events = watch_tasks(sm, api.WatchTasksRequest(task_ids=["a"]), lambda: True, FAST)
    await anext(events)
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(10 * FAST)
    assert not pending.done()
    cancelled(sm, "a")
    event = await asyncio.wait_for(pending, 5)
    assert event.task.state == pb.TASK_STATE_CANCELLED


async def test_end_when_final_ends_after_the_last_watched_task_ends() -> None:
    sm = SchedulerState()
    submitted(sm, "a", "b")
    request = api.WatchTasksRequest(task_ids=["a", "b"], final_only=True, end_when_final=True)
    events = watch_tasks(sm, request)
    cancelled(sm, "a")
    assert (await asyncio.wait_for(anext(events), 5)).task.id == "a"
    cancelled(sm, "b")
    assert (await asyncio.wait_for(anext(events), 5)).task.id == "b"
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(events), 5)
    # Not created yet counts as not final: the watch waits for it.
    waiting = watch_tasks(sm, api.WatchTasksRequest(task_ids=["c"], end_when_final=True))
    pending = asyncio.ensure_future(anext(waiting))
    await asyncio.sleep(0.05)
    assert not pending.done()
    pending.cancel()
