"""The workers domain: the machines that run tasks, their sessions and states.

A worker that goes LOST or OFFLINE fails the attempts it held (through the tasks
domain, which retries or fails them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from agentflow._proto import state_pb2
from agentflow.rules.validate import validate_worker_info
from agentflow.state.domain import Changes, Domain, Handler
from agentflow.state.errors import INVALID_ARGUMENT, NOT_FOUND, StateError

if TYPE_CHECKING:
    from agentflow.state.tasks import TaskDomain

__all__ = ["WORKERS", "WorkerDomain"]

WORKERS = "workers"

_WORKER_STATES = frozenset(
    {
        state_pb2.WORKER_STATE_ONLINE,
        state_pb2.WORKER_STATE_DRAINING,
        state_pb2.WORKER_STATE_LOST,
        state_pb2.WORKER_STATE_OFFLINE,
    }
)
_WORKER_GONE = frozenset({state_pb2.WORKER_STATE_LOST, state_pb2.WORKER_STATE_OFFLINE})


def _worker_state_name(state: int) -> str:
    try:
        return state_pb2.WorkerState.Name(state).removeprefix("WORKER_STATE_")  # type: ignore[arg-type]
    except ValueError:
        return str(state)


class WorkerDomain(Domain):
    """Workers by id, in registration order (live protobuf objects: read-only to callers)."""

    name = WORKERS
    workers: dict[str, state_pb2.Worker]

    def __init__(self, tasks: TaskDomain) -> None:
        self.tasks = tasks
        self.reset()

    def reset(self) -> None:
        self.workers = {}

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "register_worker": self._register_worker,
            "set_worker_state": self._set_worker_state,
        }

    def cannot_take(self, worker_id: str) -> str:
        """Why a worker may not be given a task ("" = it may)."""
        worker = self.workers.get(worker_id)
        if worker is None:
            return f"unknown worker {worker_id!r}"
        if worker.state != state_pb2.WORKER_STATE_ONLINE:
            return f"worker {worker_id} is {_worker_state_name(worker.state)}"
        return ""

    def prune_gone(self, gone_before_ms: int, ch: Changes) -> None:
        """Forget workers LOST or OFFLINE since before the cut-off (the leader's time,
        from its retention settings). One that still holds a task stays: its record
        says where that attempt went. A forgotten worker that comes back registers
        as new."""
        for wid in [
            w
            for w, worker in self.workers.items()
            if worker.state in _WORKER_GONE
            and worker.state_changed_ms < gone_before_ms
            and not self.tasks.held_count(w)
        ]:
            del self.workers[wid]
            ch.mark(WORKERS, wid)

    # ---- commands -----------------------------------------------------------------

    def _register_worker(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        info = cmd.register_worker.info
        validate_worker_info(info)
        worker = self.workers.get(info.id)
        if worker is None:
            worker = state_pb2.Worker(registered_ms=ch.now)
            self.workers[info.id] = worker
        # Tasks still held from an older session stay: the worker reconciles them.
        worker.info.CopyFrom(info)
        worker.state = state_pb2.WORKER_STATE_ONLINE
        worker.state_changed_ms = ch.now
        worker.session = ch.index
        ch.mark(WORKERS, info.id)

    def _set_worker_state(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        req = cmd.set_worker_state
        if req.state not in _WORKER_STATES:
            raise StateError(
                INVALID_ARGUMENT,
                "state",
                f"unknown worker state {req.state} (expected ONLINE, DRAINING, LOST, OFFLINE)",
            )
        worker = self.workers.get(req.worker_id)
        if worker is None:
            raise StateError(NOT_FOUND, "worker_id", f"unknown worker {req.worker_id!r}")
        if worker.state != req.state:
            worker.state = req.state
            worker.state_changed_ms = ch.now
            ch.mark(WORKERS, req.worker_id)
        if req.state in _WORKER_GONE:
            error = f"worker {req.worker_id} lost"
            if req.reason:
                error += f": {req.reason}"
            for task in self.tasks.tasks_of_worker(req.worker_id):
                self.tasks.fail_attempt(task, error, req.retry_delay_ms, ch)
                result.task_ids.append(task.id)

    # ---- snapshot section: workers ----------------------------------------------------

    def ids(self) -> Iterable[str]:
        return self.workers

    def write(self, snap: state_pb2.StateSnapshot) -> None:
        snap.workers.extend(self.workers.values())

    def read(self, snap: state_pb2.StateSnapshot) -> None:
        for k in snap.workers:
            worker = state_pb2.Worker()
            worker.CopyFrom(k)
            self.workers[worker.info.id] = worker
