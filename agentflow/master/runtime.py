"""What the gRPC and HTTP handlers of one master share."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from agentflow.master.forwarding import Forwarder
from agentflow.raft.node import RaftNode
from agentflow.scheduler.proposer import Proposer
from agentflow.scheduler.service import Scheduler
from agentflow.state import SchedulerState


@dataclass
class Runtime:
    node: RaftNode
    state: SchedulerState
    proposer: Proposer
    forwarder: Forwarder
    scheduler: Scheduler | None = None
    _scheduler_changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def set_scheduler(self, scheduler: Scheduler | None) -> None:
        async with self._scheduler_changed:
            self.scheduler = scheduler
            self._scheduler_changed.notify_all()

    async def running_scheduler(self, timeout: float = 5.0) -> Scheduler:
        """The scheduler of this leader's term once it has rebuilt its indexes.
        TimeoutError if this master does not get one in time."""

        async def wait() -> Scheduler:
            async with self._scheduler_changed:
                await self._scheduler_changed.wait_for(lambda: self.scheduler is not None)
            scheduler = self.scheduler
            assert scheduler is not None
            await scheduler.started()
            return scheduler

        return await asyncio.wait_for(wait(), timeout)
