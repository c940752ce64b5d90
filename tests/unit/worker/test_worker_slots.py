"""The worker's task slots on their own: order, duplicates, cancels."""

from __future__ import annotations

import asyncio

from agentflow._proto import state_pb2
from agentflow._proto import worker_pb2 as wpb
from agentflow.worker.limits import AdaptiveConcurrency
from agentflow.worker.outbound import Outbound
from agentflow.worker.runs import Outcome, Reporter, TaskRun
from agentflow.worker.slots import TaskSlots


class Gate:
    """An executor whose runs end when released, in the order they started."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = asyncio.Event()

    async def start(self) -> None:
        pass

    async def run(self, run: TaskRun, reporter: Reporter) -> Outcome:
        self.started.append(run.task_id)
        await self.release.wait()
        return Outcome(success=True, exit_code=0, stdout_tail="", stderr_tail="")

    async def cancel(self, task_id: str, attempt: int) -> bool:
        return True

    async def close(self) -> None:
        pass


def task(task_id: str, priority: int = state_pb2.PRIORITY_NORMAL) -> state_pb2.Task:
    return state_pb2.Task(
        id=task_id, attempt=1, priority=priority, spec=state_pb2.TaskSpec(command="shell:true")
    )


async def test_a_repeated_assignment_waits_once_and_a_cancel_drops_a_waiting_one() -> None:
    gate, outbound, settled = Gate(), Outbound(), []
    slots = TaskSlots(gate, AdaptiveConcurrency(maximum=1), outbound, lambda: settled.append(1))
    runner = asyncio.create_task(slots.run())
    try:
        slots.accept([task("a"), task("b"), task("c")])
        assert slots.running() == [("a", 1)] and slots.waiting == 2
        slots.accept([task("b"), task("a")])  # a resend after reconnecting
        assert slots.holding() == [("a", 1), ("b", 1), ("c", 1)]
        await slots.cancel(wpb.CancelTask(task_id="b", attempt=1))
        assert slots.holding() == [("a", 1), ("c", 1)] and settled == [1]
        gate.release.set()
        for _ in range(200):
            if slots.idle:
                break
            await asyncio.sleep(0.01)
        assert gate.started == ["a", "c"] and slots.idle
        reported = [r.task_id for m in outbound.take() for r in m.results.reports]
        assert sorted(reported) == ["a", "c"]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_a_task_id_used_again_runs_again_but_a_resend_of_a_finished_attempt_does_not() -> (
    None
):
    gate, outbound = Gate(), Outbound()
    slots = TaskSlots(gate, AdaptiveConcurrency(maximum=1), outbound, lambda: None)
    runner = asyncio.create_task(slots.run())
    gate.release.set()

    async def settle() -> None:
        for _ in range(200):
            if slots.idle:
                return
            await asyncio.sleep(0.01)

    try:
        old = task("release/build")
        old.created_index = 7
        slots.accept([old])
        await settle()
        slots.accept([old])  # a resend of the finished attempt: not run again
        await settle()
        assert gate.started == ["release/build"]
        assert outbound.results.ack("release/build", 1)  # its result was committed
        # The old task deleted, its workflow run again: the same id, attempt 1 again.
        new = task("release/build")
        new.created_index = 42
        slots.accept([new])
        await settle()
        assert gate.started == ["release/build", "release/build"]
        slots.accept([new])
        await settle()
        assert len(gate.started) == 2
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
