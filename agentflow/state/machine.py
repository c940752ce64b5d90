"""The scheduler's replicated state: the core with its domains (tasks, workflows,
workers, locks, request ids, retention), and the queries the scheduler and master ask it.

Two replicas that apply the same log, whether from the start or from a snapshot,
hold byte-identical state. A new kind of record is a new domain module, wired here.
"""

from __future__ import annotations

from agentflow._proto import state_pb2
from agentflow.state.core import StateMachine, encode
from agentflow.state.domain import ChangeSet, Listener
from agentflow.state.locks import LockDomain
from agentflow.state.requests import RequestLog
from agentflow.state.retention import Retention
from agentflow.state.tasks import (
    ACTIVE_STATES,
    FINAL_STATES,
    TaskDomain,
    TaskStateValue,
    state_name,
)
from agentflow.state.workers import WorkerDomain
from agentflow.state.workflows import WorkflowDomain

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "ChangeSet",
    "Listener",
    "SchedulerState",
    "encode",
    "state_name",
]


class SchedulerState(StateMachine):
    """The state machine the Raft driver applies committed commands to.

    The entity dicts hold the live protobuf objects, in creation order; callers must
    treat them as read-only (copy before handing them to anything that may mutate).
    """

    def __init__(self) -> None:
        requests = RequestLog()
        self._tasks = TaskDomain()
        self._workflows = WorkflowDomain(self._tasks)
        self._workers = WorkerDomain(self._tasks)
        self._tasks.bind(self._workflows, self._workers)
        self._locks = LockDomain()
        retention = Retention(self._tasks, self._workflows, self._workers, requests)
        domains = [self._tasks, self._workflows, self._workers, self._locks, retention]
        super().__init__(requests, domains)

    # ---- entities -----------------------------------------------------------------

    @property
    def tasks(self) -> dict[str, state_pb2.Task]:
        return self._tasks.tasks

    @property
    def workflows(self) -> dict[str, state_pb2.Workflow]:
        return self._workflows.workflows

    @property
    def workers(self) -> dict[str, state_pb2.Worker]:
        return self._workers.workers

    def task(self, task_id: str) -> state_pb2.Task | None:
        return self._tasks.tasks.get(task_id)

    def workflow(self, workflow_id: str) -> state_pb2.Workflow | None:
        return self._workflows.workflows.get(workflow_id)

    def worker(self, worker_id: str) -> state_pb2.Worker | None:
        return self._workers.workers.get(worker_id)

    def lock(self, name: str) -> state_pb2.Lock | None:
        return self._locks.lock(name)

    def locks(self) -> list[state_pb2.Lock]:
        """Locks held, waited on or in their lock delay, in creation order."""
        return self._locks.locks()

    # ---- queries ------------------------------------------------------------------

    def expired_locks(self, now_ms: int) -> list[str]:
        """Lock names the leader should propose an ExpireLocks for at `now_ms`."""
        return self._locks.expired(now_ms)

    def tasks_in_state(self, state: TaskStateValue) -> list[state_pb2.Task]:
        """Tasks in `state`, in creation order."""
        return self._tasks.tasks_in_state(state)

    def ready_tasks(self) -> list[state_pb2.Task]:
        """READY tasks in the order they became ready: (ready_ms, ready_seq)."""
        return self._tasks.ready_tasks()

    def retry_waiting(self) -> list[state_pb2.Task]:
        """PENDING tasks waiting only on their retry time, by (not_before_ms, creation)."""
        return self._tasks.retry_waiting()

    def tasks_of_worker(self, worker_id: str) -> list[state_pb2.Task]:
        """ASSIGNED or RUNNING tasks of a worker, in creation order."""
        return self._tasks.tasks_of_worker(worker_id)

    def held_count(self, worker_id: str) -> int:
        """How many tasks a worker holds (ASSIGNED or RUNNING), in O(1)."""
        return self._tasks.held_count(worker_id)

    def tasks_of_workflow(self, workflow_id: str) -> list[state_pb2.Task]:
        """The workflow's tasks in submission order; [] for an unknown workflow."""
        wf = self._workflows.workflows.get(workflow_id)
        return [] if wf is None else [self._tasks.tasks[i] for i in wf.task_ids]

    def blocking(self, task_id: str) -> list[str]:
        """Unfinished dependencies of an unfinished task, in dependency order.

        [] for an unknown or final task: nothing blocks what already ended.
        """
        return self._tasks.blocking(task_id)

    def dependents(self, task_id: str) -> list[str]:
        """Tasks that directly depend on `task_id` (final ones included), creation order."""
        return self._tasks.dependents(task_id)

    def counts(self) -> dict[TaskStateValue, int]:
        """Number of tasks per TaskState, every state present (zero included)."""
        return self._tasks.counts()
