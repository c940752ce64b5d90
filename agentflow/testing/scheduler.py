"""Test seams for the scheduler: a replicator without Raft, a recording session, and
`Rig`, a scheduler over both with a clock that moves only when told.

`DirectReplicator` applies each proposal straight to the state machine at the next
index, which is exactly what a one-node Raft does minus the disk; use it to test
scheduling logic in-process. The real path is covered by the master's process tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from agentflow._proto import state_pb2
from agentflow.scheduler.proposer import Proposer
from agentflow.scheduler.service import Scheduler, SchedulerConfig
from agentflow.state import SchedulerState


class DirectReplicator:
    def __init__(self, state: SchedulerState) -> None:
        self.state = state
        self.index = state.applied_index
        self.commands: list[state_pb2.Command] = []

    async def propose(self, command: bytes) -> object:
        await asyncio.sleep(0)  # a real proposal always yields to the loop
        self.index += 1
        self.commands.append(state_pb2.Command.FromString(command))
        return self.state.apply(self.index, command)

    def kinds(self) -> list[str]:
        return [c.WhichOneof("kind") or "" for c in self.commands]


@dataclass
class RecordingSession:
    """A worker session that records what the scheduler told it."""

    id: str
    state: SchedulerState | None = None  # if set, checks assignments are committed
    assigned: list[state_pb2.Task] = field(default_factory=list)
    cancelled: list[tuple[str, int, str]] = field(default_factory=list)
    closed: str = ""
    batches: int = 0
    new_work: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def worker_id(self) -> str:
        return self.id

    def assign(self, tasks: Sequence[state_pb2.Task]) -> None:
        if self.state is not None:
            for task in tasks:
                current = self.state.task(task.id)
                assert current is not None and current.attempt == task.attempt, task.id
                assert current.state == state_pb2.TASK_STATE_ASSIGNED, task.id
        self.assigned.extend(tasks)
        self.batches += 1
        self.new_work.set()

    def cancel(self, task_id: str, attempt: int, reason: str) -> None:
        self.cancelled.append((task_id, attempt, reason))

    def close(self, reason: str) -> None:
        self.closed = reason

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[state_pb2.Task]:
        async def enough() -> None:
            while len(self.assigned) < count:
                self.new_work.clear()
                await self.new_work.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.assigned


class Clock:
    """A wall clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    """A scheduler over a real state machine and a DirectReplicator, with a Clock."""

    def __init__(self, **config: object) -> None:
        self.state = SchedulerState()
        self.replicator = DirectReplicator(self.state)
        self.clock = Clock()
        self.proposer = Proposer(self.replicator, self.state, self.clock)
        # No prefetch unless a test asks: capacity then means exactly concurrency.
        self.config = SchedulerConfig(**{"prefetch": 0.0, **config})  # type: ignore[arg-type]
        self.scheduler = self.new_scheduler()

    def new_scheduler(self) -> Scheduler:
        return Scheduler(
            self.state,
            self.proposer,
            self.config,
            clock=self.clock,
            rng=random.Random(7),
            monotonic=self.clock,
        )

    async def submit(self, *specs: state_pb2.TaskSpec) -> list[str]:
        result = await self.proposer.propose(
            state_pb2.Command(submit_tasks=state_pb2.SubmitTasks(tasks=specs))
        )
        assert not result.error.code, result.error
        return list(result.task_ids)

    async def worker(
        self, wid: str, groups: tuple[str, ...] = ("default",), capacity: int = 4, **kw: object
    ) -> RecordingSession:
        info = state_pb2.WorkerInfo(
            id=wid,
            groups=groups,
            capacity=capacity,
            cpu_cores=kw.pop("cpu", 8.0),  # type: ignore[arg-type]
            memory_mb=kw.pop("memory_mb", 16384),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )
        session = RecordingSession(wid, self.state)
        await self.scheduler.connect(info, session)
        return session

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)


def shell(name: str = "t", **kw: object) -> state_pb2.TaskSpec:
    return state_pb2.TaskSpec(name=name, command=f"shell:echo {name}", **kw)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(rig: Rig, scheduler: Scheduler | None = None) -> AsyncIterator[Scheduler]:
    s = scheduler or rig.scheduler
    task = asyncio.create_task(s.run())
    await s.started()
    try:
        yield s
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
