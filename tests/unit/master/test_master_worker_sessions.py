"""Worker sessions on the leader, over a real scheduler and state machine without Raft."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from agentflow._proto import state_pb2
from agentflow._proto import worker_pb2 as wpb
from agentflow.common.failpoints import Failpoints
from agentflow.master.outbox import Outbox
from agentflow.master.task_logs import TaskLogs
from agentflow.master.worker_sessions import MasterSession, SessionConfig, Sessions
from agentflow.raft.types import NotLeaderError
from agentflow.scheduler.proposer import Proposer
from agentflow.scheduler.service import Scheduler
from agentflow.state import SchedulerState
from agentflow.testing.scheduler import DirectReplicator

TS = state_pb2.TaskState


@dataclass
class FakeNode:
    id: str = "m1"
    leading: bool = True

    def is_leader(self) -> bool:
        return self.leading

    def leader(self) -> str:
        return "m1" if self.leading else "m2"

    def leader_address(self) -> str:
        return "127.0.0.1:6767" if self.leading else "127.0.0.1:6777"


class GateReplicator(DirectReplicator):
    """Holds proposals until `width` wait at once: only concurrent callers get through."""

    def __init__(self, state: SchedulerState) -> None:
        super().__init__(state)
        self.width = 1
        self.waiting = 0
        self.open = asyncio.Event()
        self.fail: Exception | None = None

    async def propose(self, command: bytes) -> object:
        if self.fail is not None:
            raise self.fail
        self.waiting += 1
        if self.waiting >= self.width:
            self.open.set()
        await asyncio.wait_for(self.open.wait(), 2.0)
        self.waiting -= 1
        if self.waiting == 0:
            self.open.clear()
        return await super().propose(command)


@dataclass
class Rig:
    state: SchedulerState = field(default_factory=SchedulerState)
    node: FakeNode = field(default_factory=FakeNode)

    def __post_init__(self) -> None:
        self.replicator = GateReplicator(self.state)
        self.proposer = Proposer(self.replicator, self.state)
        self.scheduler = Scheduler(self.state, self.proposer, rng=random.Random(3))
        self.logs = TaskLogs(bytes_per_task=64, max_tasks=2)
        self.sessions = Sessions(
            self,  # type: ignore[arg-type]  # duck-typed Runtime: node, state, running_scheduler
            SessionConfig(heartbeat_interval=0.5),
            self.logs,
            Failpoints(""),
        )

    async def running_scheduler(self, timeout: float = 5.0) -> Scheduler:
        return self.scheduler

    async def hello(
        self,
        wid: str = "w1",
        instance: str = "i1",
        running: tuple[tuple[str, int], ...] = (),
        results: tuple[wpb.ResultReport, ...] = (),
    ) -> MasterSession | wpb.MasterMessage:
        info = state_pb2.WorkerInfo(
            id=wid, groups=["default"], cpu_cores=4, memory_mb=8192, capacity=4
        )
        hello = wpb.Hello(
            info=info,
            instance=instance,
            running=[wpb.TaskAttempt(task_id=t, attempt=a) for t, a in running],
            unacked_results=results,
        )
        return await self.sessions.open(wpb.WorkerMessage(seq=1, hello=hello))

    async def session(self, wid: str = "w1", instance: str = "i1") -> MasterSession:
        opened = await self.hello(wid, instance)
        assert isinstance(opened, MasterSession), opened
        return opened

    async def submit(self, n: int = 1) -> list[str]:
        specs = [state_pb2.TaskSpec(command="shell:true") for _ in range(n)]
        result = await self.proposer.propose(
            state_pb2.Command(submit_tasks=state_pb2.SubmitTasks(tasks=specs))
        )
        return list(result.task_ids)


@contextlib.asynccontextmanager
async def scheduling(rig: Rig) -> AsyncIterator[None]:
    task = asyncio.create_task(rig.scheduler.run())
    await rig.scheduler.started()
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def take_kind(session: MasterSession, kind: str) -> wpb.MasterMessage:
    for _ in range(50):
        for message in await session.outbox.take(timeout=0.1):
            if message.WhichOneof("body") == kind:
                return message
    raise AssertionError(f"no {kind} message")


def result(task_id: str, attempt: int = 1, seq: int = 10) -> wpb.WorkerMessage:
    return wpb.WorkerMessage(
        seq=seq,
        result=wpb.ResultReport(
            task_id=task_id,
            attempt=attempt,
            success=True,
            result=state_pb2.TaskResult(stdout_tail="ok\n"),
        ),
    )


async def test_hello_registers_and_welcomes() -> None:
    rig = Rig()
    session = await rig.session()
    (welcome,) = await session.outbox.take(timeout=0)
    assert welcome.welcome.session_id == session.session_id
    assert welcome.welcome.heartbeat_interval_ms == 500
    assert welcome.welcome.leader_id == "m1"
    assert welcome.welcome.registration == rig.state.workers["w1"].session > 0
    assert rig.state.workers["w1"].state == state_pb2.WORKER_STATE_ONLINE
    assert rig.scheduler.connected() == ["w1"]
    assert rig.sessions.get(session.session_id) is session


async def test_a_follower_redirects_to_the_leader() -> None:
    rig = Rig(node=FakeNode(leading=False))
    answer = await rig.hello()
    assert isinstance(answer, wpb.MasterMessage)
    assert answer.redirect.leader_id == "m2"
    assert answer.redirect.leader_address == "127.0.0.1:6777"


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (wpb.WorkerMessage(heartbeat=wpb.Heartbeat()), "must be hello"),
        (wpb.WorkerMessage(hello=wpb.Hello()), "hello.info.id: must not be empty"),
    ],
)
async def test_a_bad_first_message_is_refused(message: wpb.WorkerMessage, why: str) -> None:
    answer = await Rig().sessions.open(message)
    assert isinstance(answer, wpb.MasterMessage)
    assert answer.refusal.code == wpb.Refusal.INVALID
    assert why in answer.refusal.reason


async def test_a_second_live_worker_with_the_same_id_is_refused() -> None:
    rig = Rig()
    first = await rig.session(instance="a")
    answer = await rig.hello(instance="b")
    assert isinstance(answer, wpb.MasterMessage)
    assert answer.refusal.code == wpb.Refusal.DUPLICATE_WORKER
    assert "'w1' is already connected" in answer.refusal.reason
    assert not first.closed
    # The same process reconnecting (its old stream died unnoticed) replaces itself.
    again = await rig.session(instance="a")
    assert first.closed and not again.closed
    assert rig.sessions.by_worker("w1") is again
    # Once the first is gone, another process may take the id.
    rig.sessions.detach(again, "gone")
    assert isinstance(await rig.hello(instance="b"), MasterSession)


async def test_results_are_acked_after_commit_and_a_repeat_is_flagged_stale() -> None:
    rig = Rig()
    (task_id,) = await rig.submit()
    async with scheduling(rig):
        session = await rig.session()
        batch = await take_kind(session, "assignments")
        assert [t.id for t in batch.assignments.tasks] == [task_id]
        started = wpb.WorkerMessage(seq=9, started=wpb.StartedReport(task_id=task_id, attempt=1))
        rig.replicator.width = 2  # started and result are proposed together
        await session.deliver([started, result(task_id)])
        ack = (await take_kind(session, "ack")).ack
        assert list(ack.seqs) == [9, 10]
        assert [(r.task_id, r.attempt, r.stale) for r in ack.results] == [(task_id, 1, False)]
        assert rig.state.tasks[task_id].state == TS.TASK_STATE_SUCCEEDED
        rig.replicator.width = 1
        await session.deliver([result(task_id, seq=11)])
        again = (await take_kind(session, "ack")).ack
        assert again.results[0].stale and "stale" in again.results[0].reason
    finished = [c for c in rig.replicator.commands if c.WhichOneof("kind") == "task_finished"]
    assert len(finished) == 2 and rig.state.tasks[task_id].result.stdout_tail == "ok\n"


async def test_a_batch_is_proposed_concurrently() -> None:
    """Three results reach the Raft node in the same turn (one append), not one by one:
    the gate only opens when three proposals wait at once."""
    rig = Rig()
    ids = await rig.submit(3)
    async with scheduling(rig):
        session = await rig.session()
        await take_kind(session, "assignments")
        rig.replicator.width = 3
        await session.deliver([result(t, seq=20 + i) for i, t in enumerate(ids)])
    assert all(rig.state.tasks[t].state == TS.TASK_STATE_SUCCEEDED for t in ids)


async def test_a_failed_commit_closes_the_session_without_ack() -> None:
    rig = Rig()
    (task_id,) = await rig.submit()
    async with scheduling(rig):
        session = await rig.session()
        await take_kind(session, "assignments")
        rig.replicator.fail = NotLeaderError("m2")
        await session.deliver([result(task_id)])
    assert session.closed and "reconnect" in (session.outbox.closed or "")
    assert not [m for m in await session.outbox.take(timeout=0) if m.HasField("ack")]


async def test_hello_commits_kept_results_and_reconciles() -> None:
    rig = Rig()
    done_id, assigned_id, running_id = await rig.submit(3)
    async with scheduling(rig):
        session = await rig.session()
        await take_kind(session, "assignments")
        started = wpb.WorkerMessage(started=wpb.StartedReport(task_id=running_id, attempt=1))
        await session.deliver([started])
        rig.sessions.detach(session, "connection lost")
        # Back with: the result of one task, nothing else, and a task it should not run.
        again = await rig.hello(
            running=(("ghost", 1),), results=(result(done_id).result,), instance="i2"
        )
        assert isinstance(again, MasterSession)
        messages = await again.outbox.take(timeout=0)
        kinds = [m.WhichOneof("body") for m in messages]
        assert kinds[:2] == ["welcome", "ack"]
        assert [(r.task_id, r.stale) for r in messages[1].ack.results] == [(done_id, False)]
        resent = [t.id for m in messages if m.HasField("assignments") for t in m.assignments.tasks]
        assert resent == [assigned_id]  # committed ASSIGNED, never received
        cancels = [m.cancel for m in messages if m.HasField("cancel")]
        assert [(c.task_id, c.reason) for c in cancels] == [("ghost", "the task no longer exists")]
    assert rig.state.tasks[done_id].state == TS.TASK_STATE_SUCCEEDED
    # It ran `running_id` before and does not any more: that attempt failed, requeued.
    requeued = rig.state.tasks[running_id]
    assert requeued.state in (TS.TASK_STATE_PENDING, TS.TASK_STATE_READY, TS.TASK_STATE_FAILED)
    assert "reconnected without this attempt" in requeued.errors[0]


async def test_drain_notices_commit_worker_states_and_a_committed_drain_is_told() -> None:
    rig = Rig()
    session = await rig.session()
    runner = asyncio.create_task(rig.sessions.run())
    try:
        await session.outbox.take(timeout=0)
        await session.deliver([wpb.WorkerMessage(draining=wpb.DrainNotice(reason="SIGTERM"))])
        assert rig.state.workers["w1"].state == state_pb2.WORKER_STATE_DRAINING
        await session.deliver([wpb.WorkerMessage(draining=wpb.DrainNotice(done=True))])
        assert rig.state.workers["w1"].state == state_pb2.WORKER_STATE_OFFLINE
        # An operator's drain (committed elsewhere) reaches the connected worker.
        other = await rig.session("w2")
        await other.outbox.take(timeout=0)
        await rig.proposer.propose(
            state_pb2.Command(
                set_worker_state=state_pb2.SetWorkerState(
                    worker_id="w2", state=state_pb2.WORKER_STATE_DRAINING
                )
            )
        )
        assert (await take_kind(other, "drain")).drain.reason == "the worker is marked draining"
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_heartbeats_and_logs_need_no_commit() -> None:
    rig = Rig()
    session = await rig.session()
    rig.replicator.fail = NotLeaderError("m2")  # would close the session if proposed
    chunk = wpb.LogChunk(task_id="t1", attempt=1, stream="stdout", text="hello\n")
    await session.deliver(
        [
            wpb.WorkerMessage(seq=1, heartbeat=wpb.Heartbeat(cpu_percent=42.0)),
            wpb.WorkerMessage(seq=2, logs=wpb.LogBatch(chunks=[chunk])),
        ]
    )
    assert not session.closed
    usage = rig.scheduler.usage("w1")
    assert usage is not None and usage[0].cpu_percent == 42.0
    assert [line.text for line in rig.logs.read("t1").lines] == ["hello\n"]


async def test_outbox_folds_acks_and_hands_out_the_rest_after_close() -> None:
    box = Outbox()
    box.put(wpb.MasterMessage(ack=wpb.Ack(seqs=[1])))
    box.put(wpb.MasterMessage(ack=wpb.Ack(seqs=[2])))
    box.put(wpb.MasterMessage(drain=wpb.Drain()))
    box.put(wpb.MasterMessage(ack=wpb.Ack(seqs=[3])))
    box.close("bye")
    box.put(wpb.MasterMessage(drain=wpb.Drain()))  # after close: dropped
    taken = await box.take()
    assert [m.WhichOneof("body") for m in taken] == ["ack", "drain", "ack"]
    assert list(taken[0].ack.seqs) == [1, 2]
    assert box.drained and await box.take() == []
    assert await Outbox().take(timeout=0.01) == []


def test_task_logs_are_bounded_per_task_and_in_tasks() -> None:
    logs = TaskLogs(bytes_per_task=10, max_tasks=2)
    for i in range(5):
        logs.append(wpb.LogChunk(task_id="a", attempt=1, stream="stdout", text=f"line{i}\n"))
    page = logs.read("a")
    assert [line.text for line in page.lines] == ["line4\n"]
    assert page.truncated and page.next == 5
    assert logs.read("a", after=5).lines == [] and not logs.read("a", after=4).truncated
    logs.append(wpb.LogChunk(task_id="b", text="x"))
    logs.append(wpb.LogChunk(task_id="c", text="y"))
    assert len(logs) == 2 and logs.read("a").lines == []
    # A chunk bigger than the budget keeps its end.
    logs.append(wpb.LogChunk(task_id="d", text="0123456789abcdef"))
    assert logs.read("d").lines[0].text == "6789abcdef"


async def test_a_silent_session_is_ended() -> None:
    rig = Rig()
    quiet, chatty = await rig.session("w1"), await rig.session("w2")
    quiet.last_seen -= 60
    rig.sessions.sweep()
    assert quiet.closed and "nothing from the worker" in (quiet.outbox.closed or "")
    assert not chatty.closed
    assert rig.scheduler.connected() == ["w2"] and rig.sessions.by_worker("w1") is None


async def test_after_a_stall_of_this_master_no_session_is_ended_for_its_silence() -> None:
    rig = Rig()
    session = await rig.session("w1")
    session.last_seen -= 60  # this master was SIGSTOPped; the worker kept sending
    rig.sessions.forgive()
    rig.sessions.sweep()
    assert not session.closed and rig.scheduler.connected() == ["w1"]


def test_session_config_is_checked() -> None:
    with pytest.raises(ValueError, match="silence_timeout"):
        SessionConfig(heartbeat_interval=5.0, silence_timeout=8.0)
    with pytest.raises(ValueError, match="http_idle_timeout"):
        SessionConfig(http_poll_max=30.0, http_idle_timeout=10.0)
