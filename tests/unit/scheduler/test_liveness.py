"""Liveness across a stalled leader (SIGSTOP, VM pause, long GC) and the race of a
worker reconnecting while its LOST is being committed."""

from __future__ import annotations

import asyncio

from agentflow._proto import state_pb2
from agentflow.scheduler.liveness import Stalls
from agentflow.state import SchedulerState, encode
from agentflow.testing.scheduler import RecordingSession, Rig, running, shell

TS = state_pb2.TaskState
WS = state_pb2.WorkerState


def test_stalls_report_only_gaps_past_the_tolerance() -> None:
    stalls = Stalls(interval=1.0, tolerance=2.0)
    assert stalls.tick(100.0) == 0.0  # the first tick only starts the count
    assert stalls.tick(101.1) == 0.0
    assert stalls.tick(103.5) == 0.0  # 1.4 s late: within tolerance
    assert stalls.tick(129.5) == 25.0
    assert stalls.count == 1


async def test_a_paused_leader_loses_no_worker_and_no_finished_result() -> None:
    rig = Rig(worker_timeout=5.0, liveness_interval=1.0)
    ids = await rig.submit(*(shell(f"t{i}") for i in range(4)))
    async with running(rig) as scheduler:
        sessions = [await rig.worker(w, capacity=2) for w in ("w1", "w2")]
        for session in sessions:
            await session.wait_for(2)
        await scheduler.check_liveness()
        rig.clock.now += 25.0  # every master SIGSTOPped for 25 s, then SIGCONT
        # The worst order on resume: liveness runs before the buffered results.
        await scheduler.check_liveness()
        assert all(w.state == WS.WORKER_STATE_ONLINE for w in rig.state.workers.values())
        for session in sessions:
            accepted = await scheduler.report_results(
                session.id,
                [
                    state_pb2.TaskFinished(task_id=t.id, attempt=t.attempt, success=True)
                    for t in session.assigned
                ],
            )
            assert accepted == [True, True]
        assert sorted(scheduler.connected()) == ["w1", "w2"]
    assert [rig.state.tasks[t].state for t in ids] == [TS.TASK_STATE_SUCCEEDED] * 4


async def test_after_a_stall_a_dead_worker_is_still_declared_lost_a_timeout_later() -> None:
    rig = Rig(worker_timeout=5.0, liveness_interval=1.0)
    async with running(rig) as scheduler:
        await rig.worker("w1")
        await scheduler.check_liveness()
        rig.clock.now += 25.0
        await scheduler.check_liveness()
        for _ in range(4):  # regular ticks, no heartbeat: 4 s of real silence
            rig.clock.now += 1.0
            await scheduler.check_liveness()
        assert rig.state.workers["w1"].state == WS.WORKER_STATE_ONLINE
        for _ in range(2):
            rig.clock.now += 1.0
            await scheduler.check_liveness()
        assert rig.state.workers["w1"].state == WS.WORKER_STATE_LOST


async def test_a_leader_backstop_waits_a_worker_timeout_after_a_stall() -> None:
    rig = Rig(worker_timeout=5.0, liveness_interval=1.0, timeout_grace=1.0)
    [task_id] = await rig.submit(shell("slow", timeout_ms=2000))
    async with running(rig) as scheduler:
        session = await rig.worker("w1")
        [task] = await session.wait_for(1)
        await scheduler.check_liveness()
        rig.clock.now += 25.0  # far past the task's timeout plus grace
        await scheduler.check_liveness()
        assert rig.state.tasks[task_id].state == TS.TASK_STATE_ASSIGNED
        accepted = await scheduler.report_finished(
            "w1", task_id, task.attempt, True, state_pb2.TaskResult()
        )
    assert accepted and rig.state.tasks[task_id].state == TS.TASK_STATE_SUCCEEDED


async def test_a_worker_reconnecting_while_its_lost_commits_ends_up_online_with_work() -> None:
    rig = Rig(worker_timeout=5.0, liveness_interval=3600.0)
    async with running(rig) as scheduler:
        old = await rig.worker("w1")
        rig.clock.now += 6.0  # silent past its timeout
        info = rig.state.workers["w1"].info
        new = RecordingSession("w1", rig.state)
        # The LOST proposal is under way when the worker's new hello arrives.
        await asyncio.gather(scheduler.check_liveness(), scheduler.connect(info, new))
        assert old.closed
        assert rig.state.workers["w1"].state == WS.WORKER_STATE_ONLINE
        assert scheduler.connected() == ["w1"]
        [task_id] = await rig.submit(shell("after"))
        got = await new.wait_for(1)
    assert got[0].id == task_id


async def test_a_session_of_a_worker_lost_by_a_commit_from_elsewhere_is_ended() -> None:
    rig = Rig()
    async with running(rig) as scheduler:
        session = await rig.worker("w1")
        # An older leader's LOST, committed in this term after the worker connected.
        await rig.proposer.propose(
            state_pb2.Command(
                set_worker_state=state_pb2.SetWorkerState(
                    worker_id="w1", state=WS.WORKER_STATE_LOST, reason="old leader"
                )
            )
        )
        await rig.settle()
        assert "declared lost" in session.closed
        assert scheduler.connected() == []
        again = RecordingSession("w1", rig.state)
        await scheduler.connect(rig.state.workers["w1"].info, again)
        assert rig.state.workers["w1"].state == WS.WORKER_STATE_ONLINE


async def test_long_lost_workers_are_pruned_by_a_committed_command() -> None:
    rig = Rig(worker_retention_seconds=600.0, worker_timeout=5.0, liveness_interval=3600.0)
    async with running(rig) as scheduler:
        await rig.worker("gone")
        await rig.worker("fresh")
        rig.clock.now += 6.0
        scheduler.heartbeat("fresh")
        await scheduler.check_liveness()  # "gone" is LOST now
        assert rig.state.workers["gone"].state == WS.WORKER_STATE_LOST
        rig.clock.now += 599.0
        await scheduler.prune()
        assert "gone" in rig.state.workers  # not yet past the retention
        rig.clock.now += 2.0
        scheduler.heartbeat("fresh")
        await scheduler.prune()
        assert sorted(rig.state.workers) == ["fresh"]  # ONLINE ones always stay
        # The cut-off travels in the command: replaying the log gives the same state,
        # and a snapshot carries it.
        replayed = SchedulerState()
        for i, command in enumerate(rig.replicator.commands, 1):
            replayed.apply(i, encode(command))
        assert sorted(replayed.workers) == ["fresh"]
        restored = SchedulerState()
        restored.restore(rig.state.snapshot())
        assert sorted(restored.workers) == ["fresh"]
        # A pruned worker that comes back registers as a new one.
        again = RecordingSession("gone", rig.state)
        info = state_pb2.WorkerInfo(id="gone", groups=["default"], capacity=1)
        await scheduler.connect(info, again)
        assert rig.state.workers["gone"].state == WS.WORKER_STATE_ONLINE
