"""Test seams for the scheduler: a replicator without Raft, and a recording session.

`DirectReplicator` applies each proposal straight to the state machine at the next
index, which is exactly what a one-node Raft does minus the disk; use it to test
scheduling logic in-process. The real path is covered by the master's process tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentflow._proto import state_pb2
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
