"""The leader's scheduler over a real state machine, without Raft (DirectReplicator)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agentflow._proto import state_pb2
from agentflow.scheduler.explain import explain
from agentflow.scheduler.service import SchedulerConfig
from agentflow.scheduler.sessions import WorkerConflictError
from agentflow.testing.scheduler import RecordingSession, Rig, running, shell

TS = state_pb2.TaskState


@pytest.fixture
def rig() -> Iterator[Rig]:
    yield Rig()


async def test_assignments_are_committed_before_the_worker_hears_of_them(rig: Rig) -> None:
    ids = await rig.submit(shell("a"), shell("b"))
    async with running(rig):
        session = await rig.worker("w1")  # RecordingSession asserts ASSIGNED in state
        got = await session.wait_for(2)
    assert [t.id for t in got] == ids
    assert all(t.attempt == 1 and t.worker_id == "w1" for t in got)


async def test_one_assign_command_per_round_not_per_task(rig: Rig) -> None:
    await rig.submit(*(shell(f"t{i}") for i in range(300)))
    async with running(rig):
        session = await rig.worker("w1", capacity=1000)
        await session.wait_for(300)
    assert rig.replicator.kinds().count("assign_tasks") == 1
    assert session.batches == 1


async def test_batch_size_caps_one_command(rig: Rig) -> None:
    rig = Rig(dispatch_batch=100)
    await rig.submit(*(shell(f"t{i}") for i in range(250)))
    async with running(rig):
        session = await rig.worker("w1", capacity=1000)
        await session.wait_for(250)
    assert rig.replicator.kinds().count("assign_tasks") == 3


async def test_priority_first_then_fifo_inside_a_level(rig: Rig) -> None:
    low = await rig.submit(shell("low1", priority=3), shell("low2", priority=3))
    normal = await rig.submit(shell("n1"), shell("n2"))
    critical = await rig.submit(shell("c1", priority=0))
    async with running(rig):
        session = await rig.worker("w1", capacity=1)
        await session.wait_for(1)
        order = [session.assigned[0].id]
        for expected in range(2, 6):
            last = session.assigned[-1]
            await rig.scheduler.report_finished(
                "w1", last.id, last.attempt, True, state_pb2.TaskResult()
            )
            await session.wait_for(expected)
            order.append(session.assigned[-1].id)
    assert order == critical + normal + low


async def test_capacity_and_resources_limit_what_a_worker_gets(rig: Rig) -> None:
    await rig.submit(*(shell(f"t{i}", cpu=2) for i in range(10)))
    async with running(rig):
        session = await rig.worker("w1", capacity=10, cpu=5.0)
        await session.wait_for(2)
        await rig.settle()
    assert len(session.assigned) == 2  # 2 cpu each, 5 cores


async def test_gpu_tasks_go_only_to_gpu_workers_with_concrete_indices(rig: Rig) -> None:
    [gpu_task] = await rig.submit(shell("train", gpus=2))
    async with running(rig):
        cpu_only = await rig.worker("cpu1")
        await rig.settle()
        assert cpu_only.assigned == []
        reasons = explain(rig.scheduler, rig.state.tasks[gpu_task])
        assert any(
            "needs 2 GPUs; the largest worker in group 'default' has 0" in r for r in reasons
        )
        gpu = await rig.worker("gpu1", gpu_count=4)
        got = await gpu.wait_for(1)
    assert got[0].id == gpu_task and list(got[0].gpu_indices) == [0, 1]


async def test_least_loaded_worker_is_chosen(rig: Rig) -> None:
    async with running(rig):
        busy = await rig.worker("busy", capacity=4)
        await rig.submit(shell("a"), shell("b"))
        await busy.wait_for(2)
        idle = await rig.worker("idle", capacity=4)
        await rig.submit(shell("c"))
        got = await idle.wait_for(1)
    assert got[0].spec.name == "c"


async def test_explain_names_the_missing_group_and_the_queue_position(rig: Rig) -> None:
    [gpu_task] = await rig.submit(shell("train", group="gpu"))
    ahead = await rig.submit(*(shell(f"h{i}", priority=1) for i in range(3)))
    [mine] = await rig.submit(shell("mine", priority=1))
    async with running(rig) as scheduler:
        reasons = explain(scheduler, rig.state.tasks[gpu_task])
        assert reasons[0].startswith("no live worker in group 'gpu'")
        mine_reasons = explain(scheduler, rig.state.tasks[mine])
    assert "queued: 3 tasks ahead at HIGH" in mine_reasons
    assert len(ahead) == 3


async def test_explain_waiting_on_dependencies(rig: Rig) -> None:
    wf = state_pb2.WorkflowSpec(
        id="wf1",
        tasks=[
            state_pb2.TaskSpec(id="build", command="shell:make"),
            state_pb2.TaskSpec(id="test", command="shell:make test"),
            state_pb2.TaskSpec(id="deploy", command="shell:deploy", dependencies=["build", "test"]),
        ],
    )
    result = await rig.proposer.propose(
        state_pb2.Command(submit_workflow=state_pb2.SubmitWorkflow(workflow=wf))
    )
    assert not result.error.code
    async with running(rig) as scheduler:
        assert explain(scheduler, rig.state.tasks["wf1/deploy"]) == ["waiting on build, test"]


async def test_workflow_runs_in_dependency_order(rig: Rig) -> None:
    wf = state_pb2.WorkflowSpec(
        id="wf1",
        tasks=[
            state_pb2.TaskSpec(id="build", command="shell:make"),
            state_pb2.TaskSpec(id="test", command="shell:make test", dependencies=["build"]),
            state_pb2.TaskSpec(id="deploy", command="shell:deploy", dependencies=["test"]),
        ],
    )
    await rig.proposer.propose(
        state_pb2.Command(submit_workflow=state_pb2.SubmitWorkflow(workflow=wf))
    )
    async with running(rig):
        session = await rig.worker("w1")
        for n in range(1, 4):
            await session.wait_for(n)
            await rig.settle()
            assert len(session.assigned) == n  # the next one waits for this one
            last = session.assigned[-1]
            await rig.scheduler.report_finished(
                "w1", last.id, last.attempt, True, state_pb2.TaskResult()
            )
    assert [t.id for t in session.assigned] == ["wf1/build", "wf1/test", "wf1/deploy"]
    assert rig.state.workflows["wf1"].state == state_pb2.WORKFLOW_STATE_SUCCEEDED


async def test_failed_attempt_is_retried_after_its_backoff(rig: Rig) -> None:
    [tid] = await rig.submit(shell("flaky", max_retries=2, retry_backoff_ms=200))
    async with running(rig):
        session = await rig.worker("w1")
        [first] = await session.wait_for(1)
        await rig.scheduler.report_finished(
            "w1", tid, 1, False, state_pb2.TaskResult(exit_code=3, error="boom")
        )
        task = rig.state.tasks[tid]
        assert task.state == TS.TASK_STATE_PENDING
        delay = task.not_before_ms - rig.proposer.now_ms()
        assert 100 <= delay <= 200  # equal jitter on a 200 ms base
        await rig.settle()
        assert len(session.assigned) == 1  # not before its time
        rig.clock.now += 0.25
        second = (await session.wait_for(2, timeout=2.0))[1]
    assert (first.attempt, second.attempt) == (1, 2)


async def test_stale_report_is_refused(rig: Rig) -> None:
    [tid] = await rig.submit(shell("x", max_retries=1, retry_backoff_ms=1))
    async with running(rig):
        session = await rig.worker("w1")
        await session.wait_for(1)
        assert await rig.scheduler.report_finished("w1", tid, 1, False, state_pb2.TaskResult())
        rig.clock.now += 1
        await session.wait_for(2)
        stale = await rig.scheduler.report_finished("w1", tid, 1, True, state_pb2.TaskResult())
    assert not stale
    assert rig.state.tasks[tid].state == TS.TASK_STATE_ASSIGNED


async def test_cancel_of_an_assigned_task_tells_its_worker(rig: Rig) -> None:
    [tid] = await rig.submit(shell("long"))
    async with running(rig):
        session = await rig.worker("w1")
        await session.wait_for(1)
        await rig.proposer.propose(
            state_pb2.Command(cancel_tasks=state_pb2.CancelTasks(task_ids=[tid], reason="stop"))
        )
        for _ in range(50):
            if session.cancelled:
                break
            await asyncio.sleep(0.01)
    assert session.cancelled == [(tid, 1, "stop")]


async def test_reprioritize_moves_a_queued_task_ahead(rig: Rig) -> None:
    first = await rig.submit(shell("a"), shell("b"))
    [late] = await rig.submit(shell("late", priority=4))
    await rig.proposer.propose(
        state_pb2.Command(reprioritize=state_pb2.Reprioritize(task_id=late, priority=0))
    )
    async with running(rig):
        session = await rig.worker("w1", capacity=1)
        got = await session.wait_for(1)
    assert got[0].id == late and first


async def test_a_new_leaders_scheduler_rebuilds_from_state(rig: Rig) -> None:
    ids = await rig.submit(*(shell(f"t{i}") for i in range(5)))
    async with running(rig):
        session = await rig.worker("w1", capacity=2)
        await session.wait_for(2)
    assert session.closed  # the old term's sessions are closed
    successor = rig.new_scheduler()
    async with running(rig, successor):
        assert len(successor.queue) == 3
        again = RecordingSession("w1", rig.state)
        await successor.connect(rig.state.workers["w1"].info, again)
        await rig.settle()
        assert again.assigned == []  # still full: two tasks held from the old term
        done = session.assigned[0]
        await successor.report_finished("w1", done.id, done.attempt, True, state_pb2.TaskResult())
        got = await again.wait_for(1)
    assert got[0].id == ids[2]


async def test_a_second_live_session_with_the_same_id_is_refused(rig: Rig) -> None:
    async with running(rig):
        await rig.worker("w1")
        with pytest.raises(WorkerConflictError, match="already connected"):
            await rig.worker("w1")


async def test_prune_drops_old_finished_tasks(rig: Rig) -> None:
    rig = Rig(retention_seconds=60.0)
    [tid] = await rig.submit(shell("x"))
    async with running(rig) as scheduler:
        session = await rig.worker("w1")
        await session.wait_for(1)
        await scheduler.report_finished("w1", tid, 1, True, state_pb2.TaskResult())
        rig.clock.now += 30
        assert not (await scheduler.prune()).task_ids
        rig.clock.now += 31
        assert list((await scheduler.prune()).task_ids) == [tid]
    assert rig.state.task(tid) is None


async def test_a_silent_worker_is_declared_lost_and_its_tasks_go_elsewhere() -> None:
    rig = Rig(worker_timeout=5.0, liveness_interval=3600.0)
    [tid] = await rig.submit(shell("x", max_retries=1, retry_backoff_ms=1))
    async with running(rig) as scheduler:
        quiet = await rig.worker("quiet")
        await quiet.wait_for(1)
        rig.clock.now += 3
        talker = await rig.worker("talker")
        rig.clock.now += 3  # quiet: 6 s silent; talker connected 3 s ago
        await scheduler.check_liveness()
        assert rig.state.workers["quiet"].state == state_pb2.WORKER_STATE_LOST
        assert rig.state.workers["talker"].state == state_pb2.WORKER_STATE_ONLINE
        assert quiet.closed.startswith("no heartbeat")
        rig.clock.now += 1
        [again] = await talker.wait_for(1)
    assert again.id == tid and again.attempt == 2


async def test_a_new_term_gives_every_worker_a_full_timeout() -> None:
    rig = Rig(worker_timeout=5.0, liveness_interval=3600.0)
    async with running(rig):
        await rig.worker("w1")
    rig.clock.now += 60  # long gone from the old leader's point of view
    successor = rig.new_scheduler()
    async with running(rig, successor):
        await successor.check_liveness()
        assert rig.state.workers["w1"].state == state_pb2.WORKER_STATE_ONLINE
        rig.clock.now += 6
        await successor.check_liveness()
    assert rig.state.workers["w1"].state == state_pb2.WORKER_STATE_LOST


async def test_heartbeats_keep_a_worker_alive() -> None:
    rig = Rig(worker_timeout=5.0, liveness_interval=3600.0)
    async with running(rig) as scheduler:
        await rig.worker("w1")
        for _ in range(4):
            rig.clock.now += 4
            scheduler.heartbeat("w1")
            await scheduler.check_liveness()
    assert rig.state.workers["w1"].state == state_pb2.WORKER_STATE_ONLINE


async def test_leader_backstop_takes_back_a_task_past_its_timeout() -> None:
    rig = Rig(timeout_grace=2.0, liveness_interval=3600.0, worker_timeout=3600.0)
    [tid] = await rig.submit(shell("slow", timeout_ms=1000, max_retries=0))
    async with running(rig) as scheduler:
        session = await rig.worker("w1")
        await session.wait_for(1)
        await scheduler.report_started("w1", tid, 1)
        rig.clock.now += 2.5
        await scheduler.check_liveness()
        assert rig.state.tasks[tid].state == TS.TASK_STATE_RUNNING  # within the grace
        rig.clock.now += 1
        await scheduler.check_liveness()
    task = rig.state.tasks[tid]
    assert task.state == TS.TASK_STATE_FAILED
    assert "timed out (leader backstop)" in task.errors[-1]
    assert session.cancelled == [(tid, 1, "timed out")]


async def test_prefetch_lets_a_worker_hold_more_than_it_runs() -> None:
    rig = Rig(prefetch=1.0)
    await rig.submit(*(shell(f"t{i}") for i in range(10)))
    async with running(rig):
        session = await rig.worker("w1", capacity=2)
        await session.wait_for(4)
        await rig.settle()
    assert len(session.assigned) == 4  # 2 running + 2 waiting in the worker's queue


async def test_a_worker_of_short_tasks_may_hold_a_window_of_them() -> None:
    """Results 5 ms apart with a 50 ms window: it may hold 10 beyond what it runs
    (capped by prefetch_max), and no more than the share while nothing is known."""
    rig = Rig(prefetch=1.0, prefetch_window=0.05, prefetch_max=8)
    await rig.submit(*(shell(f"t{i}") for i in range(40)))
    async with running(rig):
        session = await rig.worker("w1", capacity=1)
        await session.wait_for(2)
        await rig.settle()
        assert len(session.assigned) == 2  # 1 running + the share (1.0) before any result
        for task in session.assigned[:2]:
            rig.clock.now += 0.005
            await rig.scheduler.report_finished(
                "w1", task.id, task.attempt, True, state_pb2.TaskResult()
            )
            await rig.settle()  # its slot refilled: the worker stays busy
        await session.wait_for(2 + 1 + 8)
        await rig.settle()
        assert rig.state.held_count("w1") == 1 + 8  # prefetch_max, not ceil(0.05/0.005)


async def test_slow_results_keep_the_configured_share() -> None:
    rig = Rig(prefetch=1.0, prefetch_window=0.05)
    await rig.submit(*(shell(f"t{i}") for i in range(40)))
    async with running(rig):
        session = await rig.worker("w1", capacity=2)
        await session.wait_for(4)
        for task in session.assigned[:2]:
            rig.clock.now += 1.0  # one result a second: the window holds none
            await rig.scheduler.report_finished(
                "w1", task.id, task.attempt, True, state_pb2.TaskResult()
            )
        await session.wait_for(6)
        await rig.settle()
        assert rig.state.held_count("w1") == 4  # 2 running + 2 (the share)


async def test_no_prefetch_means_no_adaptive_prefetch_either() -> None:
    rig = Rig(prefetch=0.0)
    await rig.submit(*(shell(f"t{i}") for i in range(10)))
    async with running(rig):
        session = await rig.worker("w1", capacity=1)
        for n in range(1, 4):
            await session.wait_for(n)
            rig.clock.now += 0.001
            last = session.assigned[-1]
            await rig.scheduler.report_finished(
                "w1", last.id, last.attempt, True, state_pb2.TaskResult()
            )
            await rig.settle()
            assert rig.state.held_count("w1") == 1


async def test_results_of_one_worker_are_committed_together(rig: Rig) -> None:
    a, b, c = await rig.submit(shell("a"), shell("b", max_retries=1), shell("c"))
    async with running(rig):
        session = await rig.worker("w1", capacity=3)
        await session.wait_for(3)
        before = len(rig.replicator.kinds())

        def report(task_id: str, attempt: int = 1, ok: bool = True) -> state_pb2.TaskFinished:
            return state_pb2.TaskFinished(task_id=task_id, attempt=attempt, success=ok)

        accepted = await rig.scheduler.report_results(
            "w1", [report(a), report(b, ok=False), report(a), report(c, attempt=5)]
        )
        assert accepted == [True, True, False, False]  # a twice: the second is stale
        # [a, b] then [a, c]: a task is never twice in one command
        assert rig.replicator.kinds()[before:].count("finish_tasks") == 2
        assert rig.state.tasks[a].state == TS.TASK_STATE_SUCCEEDED
        retry = rig.state.tasks[b]
        assert retry.state == TS.TASK_STATE_PENDING and retry.not_before_ms > 0  # backoff
        assert rig.state.tasks[c].state == TS.TASK_STATE_ASSIGNED


async def test_a_submit_is_placed_in_its_own_entry_when_nothing_waits(rig: Rig) -> None:
    async with running(rig):
        session = await rig.worker("w1", capacity=2)
        specs = [shell("a"), shell("b"), shell("c")]
        token, placed = rig.scheduler.place_new(specs)
        assert [p.task_index for p in placed] == [0, 1] and {p.worker_id for p in placed} == {"w1"}
        assert rig.scheduler.place_new([shell("d")]) == (0, [])  # the room is reserved
        cmd = state_pb2.Command(submit_tasks=state_pb2.SubmitTasks(tasks=specs, placements=placed))
        before = len(rig.replicator.kinds())
        result = await rig.proposer.propose(cmd)
        rig.scheduler.release(token)
        a, b, c = result.task_ids
        got = await session.wait_for(2)  # pushed once committed, no AssignTasks needed
        await rig.settle()
        assert [t.id for t in got] == [a, b] and all(t.attempt == 1 for t in got)
        assert "assign_tasks" not in rig.replicator.kinds()[before:]
        assert rig.state.tasks[c].state == TS.TASK_STATE_READY  # queued, the usual way
        assert len(session.assigned) == 2


async def test_nothing_is_placed_ahead_of_queued_tasks(rig: Rig) -> None:
    await rig.submit(shell("waiting", cpu=64.0))  # fits no worker: stays queued
    async with running(rig):
        await rig.worker("w1", capacity=2)
        await rig.settle()
        assert rig.scheduler.place_new([shell("late")]) == (0, [])
        dependent = state_pb2.TaskSpec(command="shell:true", dependencies=["x"])
        assert Rig().scheduler.place_new([dependent]) == (0, [])  # not started either


async def test_a_placed_submit_never_takes_the_gpu_of_an_assignment_in_flight(rig: Rig) -> None:
    gate = asyncio.Event()
    propose = rig.replicator.propose

    async def gated(command: bytes) -> object:
        if state_pb2.Command.FromString(command).WhichOneof("kind") == "assign_tasks":
            await gate.wait()
        return await propose(command)

    rig.replicator.propose = gated  # type: ignore[method-assign]
    async with running(rig):
        session = await rig.worker("w1", capacity=4, gpu_count=2)
        await rig.submit(shell("first", gpus=1))  # dispatched: its AssignTasks waits
        await rig.settle()
        token, placed = rig.scheduler.place_new([shell("second", gpus=1), shell("third", gpus=1)])
        assert [list(p.gpu_indices) for p in placed] == [[1]]  # GPU 0 is in flight
        gate.set()
        [first] = await session.wait_for(1)
        assert list(first.gpu_indices) == [0]
        rig.scheduler.release(token)


@pytest.mark.parametrize("name", ["prefetch", "prefetch_window", "prefetch_max"])
def test_a_negative_prefetch_setting_is_refused_by_name(name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be >= 0, got -1$"):
        SchedulerConfig(**{name: -1})  # type: ignore[arg-type]
