"""The seam between the leader's scheduler and connected workers.

A `WorkerSession` is one live connection to a worker (the gRPC stream or the HTTP
shim, issue 4). The scheduler only ever calls it with facts that are already
committed: an assignment is pushed after its AssignTasks command applied, a cancel
after the CancelTasks command applied. Calls must not block: a session queues the
message and its transport sends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from agentflow._proto import state_pb2


class WorkerSession(Protocol):
    @property
    def worker_id(self) -> str: ...

    def assign(self, tasks: Sequence[state_pb2.Task]) -> None:
        """Committed assignments for this worker (copies; the session may keep them)."""
        ...

    def cancel(self, task_id: str, attempt: int, reason: str) -> None:
        """Kill this attempt if it is still running."""
        ...

    def close(self, reason: str) -> None:
        """The scheduler is done with this session (leadership lost, or replaced)."""
        ...


@dataclass(frozen=True, slots=True)
class Usage:
    """What a heartbeat says about a worker right now (never replicated)."""

    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    running: int = 0


class WorkerConflictError(Exception):
    """A second live connection claims a worker id that is already connected."""
