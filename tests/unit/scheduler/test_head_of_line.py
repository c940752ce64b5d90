"""Tasks nobody can place never hide tasks somebody can (one lane per placement
shape), and a dispatch round costs what it places, not what waits. Work is counted
(placement attempts, lane heads examined), never timed."""

from __future__ import annotations

from agentflow._proto import state_pb2
from agentflow.testing.scheduler import Rig, running, shell

TS = state_pb2.TaskState


async def test_1100_unplaceable_tasks_ahead_do_not_delay_a_placeable_one() -> None:
    rig = Rig()
    await rig.submit(*(shell(f"stuck{i}", group="nobody", priority=0) for i in range(1100)))
    [mine] = await rig.submit(shell("mine", priority=4))  # IDLE, behind 1,100 CRITICAL
    async with running(rig) as scheduler:
        session = await rig.worker("w1")
        got = await session.wait_for(1)
        assert [t.id for t in got] == [mine]
        assert scheduler.place_attempts == 1
    assert rig.state.tasks[mine].state == TS.TASK_STATE_ASSIGNED


async def test_a_critical_task_among_many_queued_is_dispatched_in_the_next_round() -> None:
    rig = Rig()
    session_capacity = 2
    queued = []
    for n in range(0, 100_000, 10_000):  # a batch holds at most 10,000
        group = "nobody" if n < 50_000 else "default"
        queued += await rig.submit(*(shell(f"n{n + i}", group=group) for i in range(10_000)))
    async with running(rig) as scheduler:
        session = await rig.worker("w1", capacity=session_capacity)
        await session.wait_for(session_capacity)
        attempts = scheduler.place_attempts
        [urgent] = await rig.submit(shell("urgent", priority=0))
        # One result frees one slot: the next round takes the CRITICAL task.
        done = session.assigned[0]
        await scheduler.report_finished(
            "w1", done.id, done.attempt, True, state_pb2.TaskResult(exit_code=0)
        )
        got = await session.wait_for(session_capacity + 1)
        assert got[-1].id == urgent
        assert scheduler.place_attempts - attempts <= 2
    assert len(queued) == 100_000


async def test_a_rounds_cost_does_not_grow_with_unplaceable_waiting_tasks() -> None:
    costs = []
    for stuck in (10, 5_000):
        rig = Rig()
        # Unplaceable three ways: a group nobody serves, a label nobody has, more
        # CPU than any worker has; all ahead of the placeable ones.
        await rig.submit(*(shell(f"g{i}", group="nobody", priority=0) for i in range(stuck)))
        await rig.submit(
            *(shell(f"l{i}", labels={"zone": "moon"}, priority=0) for i in range(stuck))
        )
        await rig.submit(*(shell(f"c{i}", cpu=64.0, priority=0) for i in range(stuck)))
        await rig.submit(*(shell(f"ok{i}") for i in range(8)))
        async with running(rig) as scheduler:
            session = await rig.worker("w1", capacity=8)
            await session.wait_for(8)
            before = (scheduler.place_attempts, scheduler.queue.examined)
            # More rounds: each result frees a slot and the next round fills it.
            await rig.submit(*(shell(f"more{i}") for i in range(4)))
            for task in session.assigned[:4]:
                await scheduler.report_finished(
                    "w1", task.id, task.attempt, True, state_pb2.TaskResult()
                )
                await rig.settle()
            await session.wait_for(12)
            costs.append(
                (scheduler.place_attempts - before[0], scheduler.queue.examined - before[1])
            )
            assert scheduler.queue.parked() == 2  # the label and the CPU lanes
    assert costs[0] == costs[1], costs


async def test_a_parked_lane_is_placed_once_a_worker_that_fits_connects() -> None:
    rig = Rig()
    [big] = await rig.submit(shell("big", cpu=32.0))
    async with running(rig) as scheduler:
        small = await rig.worker("small", cpu=4.0)
        await rig.settle()
        assert scheduler.queue.parked() == 1 and not small.assigned
        large = await rig.worker("large", cpu=64.0)
        got = await large.wait_for(1)
        assert got[0].id == big


async def test_fifo_and_priority_still_hold_inside_and_across_lanes() -> None:
    rig = Rig()
    ids = await rig.submit(
        shell("a-normal"),
        shell("b-gpu-high", gpus=1, priority=1),
        shell("c-high", priority=1),
        shell("d-normal"),
    )
    async with running(rig):
        session = await rig.worker("w1", capacity=4, gpu_count=1)
        got = await session.wait_for(4)
    order = [t.id for t in got]
    assert order == [ids[1], ids[2], ids[0], ids[3]]
