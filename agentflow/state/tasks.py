"""The tasks domain: tasks, their life (submit, assign, reports, retries, cancel) and
the dependency graph between them.

Every loop that changes state walks tasks in an order that survives a snapshot
(creation order or persisted fields, never the order a set happened to be filled in).
Worker reports and assignments are checked one by one: a stale report is routine
(at-least-once delivery), not an error.

Indexes (by state, by worker, dependents, unfinished-dependency counts, retry waiters)
are kept incrementally and rebuilt on restore; none of them is in the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias

from agentflow._proto import state_pb2
from agentflow.rules.validate import validate_priority, validate_submit_tasks
from agentflow.state.domain import Changes, Domain, Handler
from agentflow.state.errors import (
    ALREADY_EXISTS,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    StateError,
)

if TYPE_CHECKING:
    from agentflow.state.workers import WorkerDomain
    from agentflow.state.workflows import WorkflowDomain

__all__ = ["ACTIVE_STATES", "FINAL_STATES", "TASKS", "TaskDomain", "TaskStateValue", "state_name"]

TaskStateValue: TypeAlias = state_pb2.TaskState.ValueType

TASKS = "tasks"

UNSPECIFIED = state_pb2.TASK_STATE_UNSPECIFIED
PENDING = state_pb2.TASK_STATE_PENDING
READY = state_pb2.TASK_STATE_READY
ASSIGNED = state_pb2.TASK_STATE_ASSIGNED
RUNNING = state_pb2.TASK_STATE_RUNNING
SUCCEEDED = state_pb2.TASK_STATE_SUCCEEDED
FAILED = state_pb2.TASK_STATE_FAILED
CANCELLED = state_pb2.TASK_STATE_CANCELLED
SKIPPED = state_pb2.TASK_STATE_SKIPPED

FINAL_STATES: frozenset[TaskStateValue] = frozenset({SUCCEEDED, FAILED, CANCELLED, SKIPPED})
ACTIVE_STATES: frozenset[TaskStateValue] = frozenset({ASSIGNED, RUNNING})
_TASK_STATES: tuple[TaskStateValue, ...] = tuple(
    s for s in state_pb2.TaskState.values() if s != UNSPECIFIED
)
_INT64_MAX = 2**63 - 1


def state_name(state: int) -> str:
    """ "SUCCEEDED" for TASK_STATE_SUCCEEDED: the form used in messages."""
    try:
        return state_pb2.TaskState.Name(state).removeprefix("TASK_STATE_")  # type: ignore[arg-type]
    except ValueError:
        return str(state)


def _ended_how(task: state_pb2.Task) -> str:
    if task.state == FAILED:
        return "failed"
    return f"was {state_name(task.state).lower()}"


class TaskDomain(Domain):
    """Tasks by id, in creation order (live protobuf objects: read-only to callers).

    Works with the workflows domain (a task's workflow decides whether a failure
    releases its dependents, and learns when its tasks end) and the workers domain
    (an assignment needs an ONLINE worker); both are wired in by `bind`.
    """

    name = TASKS
    tasks: dict[str, state_pb2.Task]

    def __init__(self) -> None:
        self.reset()

    def bind(self, workflows: WorkflowDomain, workers: WorkerDomain) -> None:
        self.workflows = workflows
        self.workers = workers

    def reset(self) -> None:
        self.tasks = {}
        self._next_number = 1
        self._ready_seq = 0
        # Creation position: the tie-break of every query and every state-changing walk.
        # Only the relative order matters, which a restore reproduces exactly.
        self.pos: dict[str, int] = {}
        self._next_pos = 0
        self._by_state: dict[TaskStateValue, dict[str, None]] = {s: {} for s in _TASK_STATES}
        self._by_worker: dict[str, dict[str, None]] = {}
        self._dependents: dict[str, dict[str, None]] = {}
        # Non-final tasks only: dependencies that do not count as done yet.
        self._remaining: dict[str, int] = {}
        # PENDING tasks with every dependency done: they wait only on not_before_ms.
        self._retry: dict[str, None] = {}

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "submit_tasks": self._submit_tasks,
            "assign_tasks": self._assign_tasks,
            "task_started": self._task_started,
            "task_progress": self._task_progress,
            "task_finished": self._task_finished,
            "finish_tasks": self._finish_tasks,
            "cancel_tasks": self._cancel_tasks,
            "reprioritize": self._reprioritize,
            "requeue_tasks": self._requeue_tasks,
        }

    # ---- queries ------------------------------------------------------------------

    def in_creation_order(self, ids: Iterable[str]) -> list[state_pb2.Task]:
        return [self.tasks[i] for i in sorted(ids, key=self.pos.__getitem__)]

    def tasks_in_state(self, state: TaskStateValue) -> list[state_pb2.Task]:
        """Tasks in `state`, in creation order."""
        return self.in_creation_order(self._by_state.get(state, ()))

    def ready_tasks(self) -> list[state_pb2.Task]:
        """READY tasks in the order they became ready: (ready_ms, ready_seq)."""
        ready = [self.tasks[i] for i in self._by_state[READY]]
        ready.sort(key=lambda t: (t.ready_ms, t.ready_seq))
        return ready

    def retry_waiting(self) -> list[state_pb2.Task]:
        """PENDING tasks waiting only on their retry time, by (not_before_ms, creation)."""
        waiting = self.in_creation_order(self._retry)
        waiting.sort(key=lambda t: t.not_before_ms)
        return waiting

    def tasks_of_worker(self, worker_id: str) -> list[state_pb2.Task]:
        """ASSIGNED or RUNNING tasks of a worker, in creation order."""
        return self.in_creation_order(self._by_worker.get(worker_id, ()))

    def held_count(self, worker_id: str) -> int:
        """How many tasks a worker holds (ASSIGNED or RUNNING), in O(1)."""
        return len(self._by_worker.get(worker_id, ()))

    def blocking(self, task_id: str) -> list[str]:
        """Unfinished dependencies of an unfinished task, in dependency order.

        [] for an unknown or final task: nothing blocks what already ended.
        """
        task = self.tasks.get(task_id)
        if task is None or task.state in FINAL_STATES:
            return []
        return [d for d in task.dependencies if not self.is_done(self.tasks.get(d))]

    def dependents(self, task_id: str) -> list[str]:
        """Tasks that directly depend on `task_id` (final ones included), creation order."""
        return list(self._dependents.get(task_id, ()))

    def counts(self) -> dict[TaskStateValue, int]:
        """Number of tasks per TaskState, every state present (zero included)."""
        return {s: len(ids) for s, ids in self._by_state.items()}

    def finished_standalone(self) -> list[state_pb2.Task]:
        """Final tasks submitted on their own (not in a workflow), in creation order."""
        return self.in_creation_order(
            i for s in FINAL_STATES for i in self._by_state[s] if not self.tasks[i].workflow_id
        )

    def is_done(self, task: state_pb2.Task | None) -> bool:
        """Whether a dependency lets its dependents run. A missing dependency was
        pruned, which only happens once nothing unfinished waits on it."""
        if task is None or task.state == SUCCEEDED:
            return True
        if task.state == FAILED and task.workflow_id:
            wf = self.workflows.workflows.get(task.workflow_id)
            return wf is not None and wf.on_failure == state_pb2.ON_FAILURE_CONTINUE
        return False

    def needed_by(self, task_id: str) -> str:
        """Which unfinished task still depends on `task_id` ("" = none)."""
        # Its dependents would otherwise run as if it had succeeded (see is_done).
        for child_id in self._dependents.get(task_id, ()):
            child = self.tasks[child_id]
            if child.state not in FINAL_STATES:
                return (
                    f"task {task_id} is a dependency of unfinished task {child_id} "
                    f"({state_name(child.state)})"
                )
        return ""

    def has_unfinished_dependent(self, task_id: str) -> bool:
        return any(
            self.tasks[c].state not in FINAL_STATES for c in self._dependents.get(task_id, ())
        )

    # ---- bookkeeping --------------------------------------------------------------

    def touch(self, task: state_pb2.Task, ch: Changes) -> None:
        task.updated_index = ch.index
        ch.mark(TASKS, task.id)

    def set_state(self, task: state_pb2.Task, new: TaskStateValue, ch: Changes) -> None:
        """Move a task and keep every index in step. Call while worker_id still names
        the worker the task leaves (or after setting the one it joins)."""
        old = task.state
        if old == new:
            return
        old_set = self._by_state.get(old)
        if old_set is not None:
            old_set.pop(task.id, None)
        self._by_state[new][task.id] = None
        task.state = new
        if old in ACTIVE_STATES and new not in ACTIVE_STATES:
            held = self._by_worker.get(task.worker_id)
            if held is not None:
                held.pop(task.id, None)
                if not held:
                    del self._by_worker[task.worker_id]
        elif new in ACTIVE_STATES and old not in ACTIVE_STATES:
            self._by_worker.setdefault(task.worker_id, {})[task.id] = None
        if old == PENDING:
            self._retry.pop(task.id, None)
        if new == READY:
            self._ready_seq += 1
            task.ready_ms = ch.now
            task.ready_seq = self._ready_seq
        elif new in FINAL_STATES:
            self._remaining.pop(task.id, None)
            task.finished_ms = ch.now
            if task.workflow_id:
                self.workflows.task_ended(task.workflow_id)
        self.touch(task, ch)

    def settle(self, task: state_pb2.Task, ch: Changes) -> None:
        """`task` just became final: release or skip its dependents, transitively.

        Iterative so a 10,000-deep chain cannot hit the recursion limit; each task is
        skipped once, so the walk is linear in the edges it crosses.
        """
        stack = [task]
        while stack:
            parent = stack.pop()
            children = self._dependents.get(parent.id, ())
            if self.is_done(parent):
                for child_id in children:
                    child = self.tasks[child_id]
                    if child.state in FINAL_STATES:
                        continue
                    left = self._remaining[child_id] - 1
                    self._remaining[child_id] = left
                    if left == 0 and child.state == PENDING:
                        self.set_state(child, READY, ch)
                continue
            reason = f"dependency {parent.id} {_ended_how(parent)}"
            for child_id in children:
                child = self.tasks[child_id]
                if child.state in FINAL_STATES:
                    continue
                self.set_state(child, SKIPPED, ch)
                child.result.CopyFrom(state_pb2.TaskResult(error=reason))
                stack.append(child)

    def fail_attempt(
        self,
        task: state_pb2.Task,
        error: str,
        retry_delay_ms: int,
        ch: Changes,
        result: state_pb2.TaskResult | None = None,
    ) -> None:
        """The current attempt failed (reported, worker lost, requeued): retry while
        attempts are left, else FAILED."""
        task.errors.append(f"attempt {task.attempt} on {task.worker_id or '?'}: {error}")
        task.result.CopyFrom(result if result is not None else state_pb2.TaskResult())
        if not task.result.error:
            task.result.error = error
        if task.attempt <= task.spec.max_retries:
            self.set_state(task, PENDING, ch)
            task.worker_id = ""
            del task.gpu_indices[:]
            task.not_before_ms = min(ch.now + max(retry_delay_ms, 0), _INT64_MAX)
            self._retry[task.id] = None
            self.touch(task, ch)
            return
        self.set_state(task, FAILED, ch)
        self.settle(task, ch)

    def new_task(
        self, task_id: str, spec: state_pb2.TaskSpec, workflow_id: str, ch: Changes
    ) -> state_pb2.Task:
        task = state_pb2.Task(
            id=task_id, workflow_id=workflow_id, created_ms=ch.now, created_index=ch.index
        )
        task.spec.CopyFrom(spec)
        task.priority = spec.priority if spec.HasField("priority") else state_pb2.PRIORITY_NORMAL
        self.tasks[task_id] = task
        self.pos[task_id] = self._next_pos
        self._next_pos += 1
        self._dependents[task_id] = {}
        return task

    def wire_workflow_task(self, task: state_pb2.Task, deps: list[str], ch: Changes) -> None:
        """Link a workflow's task to its (sibling) dependencies, all created already,
        none final yet."""
        task.dependencies.extend(deps)
        for dep in deps:
            self._dependents[dep][task.id] = None
        self._remaining[task.id] = len(deps)
        self.set_state(task, PENDING if deps else READY, ch)

    def generate_number(self) -> int:
        number = self._next_number
        self._next_number += 1
        return number

    def remove(self, task: state_pb2.Task) -> None:
        del self.tasks[task.id]
        del self.pos[task.id]
        self._by_state[task.state].pop(task.id, None)
        for dep in task.dependencies:
            siblings = self._dependents.get(dep)
            if siblings is not None:
                siblings.pop(task.id, None)
        del self._dependents[task.id]

    # ---- commands -----------------------------------------------------------------

    def _submit_tasks(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        specs = cmd.submit_tasks.tasks
        validate_submit_tasks(specs)
        ids: list[str] = []
        batch: set[str] = set()
        generated = 0
        for i, spec in enumerate(specs):
            if spec.id and spec.id in self.tasks:
                raise StateError(
                    ALREADY_EXISTS, f"tasks[{i}].id", f"task {spec.id!r} already exists"
                )
            for j, dep in enumerate(spec.dependencies):
                if dep not in self.tasks and dep not in batch:
                    raise StateError(
                        INVALID_ARGUMENT,
                        f"tasks[{i}].dependencies[{j}]",
                        f"unknown dependency {dep!r}",
                    )
            if spec.id:
                task_id = spec.id
            else:
                # Generated ids are all digits, which client ids may not be: no clash.
                task_id = str(self._next_number + generated)
                generated += 1
            batch.add(task_id)
            ids.append(task_id)
        for spec, task_id in zip(specs, ids, strict=True):
            if not spec.id:
                self.generate_number()
            task = self.new_task(task_id, spec, "", ch)
            # Repeated dependencies collapse into one edge, as in a workflow's Dag.
            deps = list(dict.fromkeys(spec.dependencies))
            task.dependencies.extend(deps)
            for dep in deps:
                self._dependents[dep][task_id] = None
            dead = next((d for d in deps if self._is_dead(self.tasks[d])), None)
            if dead is not None:
                self.set_state(task, SKIPPED, ch)
                how = _ended_how(self.tasks[dead])
                task.result.error = f"dependency {dead} {how}"
                continue
            remaining = sum(1 for d in deps if not self.is_done(self.tasks[d]))
            if remaining:
                self._remaining[task_id] = remaining
                self.set_state(task, PENDING, ch)
            else:
                self._remaining[task_id] = 0
                self.set_state(task, READY, ch)
        result.task_ids.extend(ids)
        self.place(cmd.submit_tasks.placements, ids, ch, result)

    def place(
        self,
        placements: Iterable[state_pb2.Placement],
        ids: Sequence[str],
        ch: Changes,
        result: state_pb2.CommandResult,
    ) -> None:
        """The leader's placements of tasks just created (attempt 1 each); one that
        cannot apply is listed in `rejected` and its task stays as it is."""
        for i, p in enumerate(placements):
            if p.task_index >= len(ids):
                result.rejected.append(f"placements[{i}]: no task at index {p.task_index}")
                continue
            a = state_pb2.Assignment(task_id=ids[p.task_index], attempt=1, worker_id=p.worker_id)
            a.gpu_indices.extend(p.gpu_indices)
            why = self._assign_one(a, ch)
            if why:
                result.rejected.append(f"{a.task_id}: {why}")

    def _is_dead(self, task: state_pb2.Task) -> bool:
        return task.state in FINAL_STATES and not self.is_done(task)

    def _assign_tasks(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        for a in cmd.assign_tasks.assignments:
            why = self._assign_one(a, ch)
            if why:
                result.rejected.append(f"{a.task_id}: {why}")
            else:
                result.task_ids.append(a.task_id)

    def _assign_one(self, a: state_pb2.Assignment, ch: Changes) -> str:
        """Assign, or say why not (and change nothing)."""
        why = self._cannot_assign(a, ch.now)
        if not why:
            task = self.tasks[a.task_id]
            task.worker_id = a.worker_id
            self.set_state(task, ASSIGNED, ch)
            task.attempt = a.attempt
            del task.gpu_indices[:]
            task.gpu_indices.extend(a.gpu_indices)
            task.assigned_ms = ch.now
            task.started_ms = 0
            task.not_before_ms = 0
            task.progress = 0.0
            task.progress_message = ""
        return why

    def _cannot_assign(self, a: state_pb2.Assignment, now: int) -> str:
        task = self.tasks.get(a.task_id)
        if task is None:
            return "unknown task"
        if task.state == PENDING:
            waiting = self._remaining.get(task.id, 0)
            if waiting:
                return f"waiting on {waiting} unfinished dependencies"
            if now < task.not_before_ms:
                return f"retry not before {task.not_before_ms} (now {now})"
        elif task.state != READY:
            return f"task is {state_name(task.state)}"
        if a.attempt != task.attempt + 1:
            return f"attempt {a.attempt} (expected {task.attempt + 1})"
        return self.workers.cannot_take(a.worker_id)

    def _fenced(
        self, task_id: str, attempt: int, worker_id: str | None
    ) -> tuple[state_pb2.Task | None, str]:
        """The task a report is about, or why the report is stale. `worker_id` None:
        the leader speaks (requeue), only the attempt is checked."""
        task = self.tasks.get(task_id)
        if task is None:
            return None, "unknown task"
        if attempt != task.attempt:
            return None, f"stale attempt {attempt} (current {task.attempt})"
        if task.state not in ACTIVE_STATES:
            return None, f"task is {state_name(task.state)}"
        if worker_id is not None and worker_id != task.worker_id:
            return None, f"attempt {attempt} belongs to worker {task.worker_id}, not {worker_id}"
        return task, ""

    def _task_started(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        report = cmd.task_started
        task, why = self._fenced(report.task_id, report.attempt, report.worker_id)
        if task is None:
            result.rejected.append(f"{report.task_id}: {why}")
            return
        self._start(task, ch)
        result.task_ids.append(task.id)

    def _start(self, task: state_pb2.Task, ch: Changes) -> None:
        if task.state == ASSIGNED:
            self.set_state(task, RUNNING, ch)
            task.started_ms = ch.now

    def _task_progress(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        report = cmd.task_progress
        task, why = self._fenced(report.task_id, report.attempt, report.worker_id)
        if task is None:
            result.rejected.append(f"{report.task_id}: {why}")
            return
        self._start(task, ch)
        progress = report.progress
        # NaN compares false both ways: pin it instead of storing it.
        task.progress = 0.0 if progress != progress else min(max(progress, 0.0), 1.0)
        task.progress_message = report.message
        self.touch(task, ch)
        result.task_ids.append(task.id)

    def _task_finished(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        self._finish_one(cmd.task_finished, ch, result)

    def _finish_tasks(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        for report in cmd.finish_tasks.items:
            self._finish_one(report, ch, result)

    def _finish_one(
        self, report: state_pb2.TaskFinished, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        task, why = self._fenced(report.task_id, report.attempt, report.worker_id)
        if task is None:
            result.rejected.append(f"{report.task_id}: {why}")
            return
        result.task_ids.append(task.id)
        if report.success:
            self.set_state(task, SUCCEEDED, ch)
            task.result.CopyFrom(report.result)
            self.settle(task, ch)
            return
        error = report.result.error or f"exit code {report.result.exit_code}"
        self.fail_attempt(task, error, report.retry_delay_ms, ch, report.result)

    def _cancel_tasks(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        cancel = cmd.cancel_tasks
        if not cancel.task_ids and not cancel.workflow_id:
            raise StateError(INVALID_ARGUMENT, "task_ids", "name tasks or a workflow to cancel")
        for i, task_id in enumerate(cancel.task_ids):
            if task_id not in self.tasks:
                raise StateError(NOT_FOUND, f"task_ids[{i}]", f"unknown task {task_id!r}")
        targets = dict.fromkeys(cancel.task_ids)
        if cancel.workflow_id:
            wf = self.workflows.workflows.get(cancel.workflow_id)
            if wf is None:
                raise StateError(
                    NOT_FOUND, "workflow_id", f"unknown workflow {cancel.workflow_id!r}"
                )
            targets.update(dict.fromkeys(wf.task_ids))
            self.workflows.cancelling(cancel.workflow_id)
        reason = cancel.reason or "cancelled"
        cancelled = [self.tasks[t] for t in targets if self.tasks[t].state not in FINAL_STATES]
        # All named tasks first, then the consequences: a task both named and downstream
        # of another named one is reported as cancelled, whatever the order given.
        by = cancel.requested_by
        named = set(cancel.task_ids)
        for task in cancelled:
            # worker_id stays: the leader tells that worker to stop the attempt.
            self.set_state(task, CANCELLED, ch)
            who = by if task.id in named or not by else f"{by}, cancelling its workflow"
            task.result.CopyFrom(state_pb2.TaskResult(error=reason, cancelled_by=who))
        for task in cancelled:
            self.settle(task, ch)
        result.task_ids.extend(t.id for t in cancelled)

    def _reprioritize(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        req = cmd.reprioritize
        validate_priority(req.priority, "priority")
        task = self.tasks.get(req.task_id)
        if task is None:
            raise StateError(NOT_FOUND, "task_id", f"unknown task {req.task_id!r}")
        if task.state in FINAL_STATES:
            raise StateError(
                FAILED_PRECONDITION, "task_id", f"task {task.id} is {state_name(task.state)}"
            )
        # ready_ms stays: a queued task keeps its place in time (FIFO and aging).
        task.priority = req.priority
        self.touch(task, ch)
        result.task_ids.append(task.id)

    def _requeue_tasks(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        for item in cmd.requeue_tasks.items:
            task, why = self._fenced(item.task_id, item.attempt, None)
            if task is None:
                result.rejected.append(f"{item.task_id}: {why}")
                continue
            self.fail_attempt(task, item.reason or "requeued", item.retry_delay_ms, ch)
            result.task_ids.append(task.id)

    # ---- snapshot section: tasks, next_number, ready_seq ----------------------------

    def ids(self) -> Iterable[str]:
        return self.tasks

    def write(self, snap: state_pb2.StateSnapshot) -> None:
        snap.next_number = self._next_number
        snap.ready_seq = self._ready_seq
        snap.tasks.extend(self.tasks.values())

    def read(self, snap: state_pb2.StateSnapshot) -> None:
        self._next_number = snap.next_number
        self._ready_seq = snap.ready_seq
        for t in snap.tasks:
            task = state_pb2.Task()
            task.CopyFrom(t)
            self.tasks[task.id] = task
            self.pos[task.id] = self._next_pos
            self._next_pos += 1

    def rebuild(self) -> None:
        for task in self.tasks.values():
            self._by_state.setdefault(task.state, {})[task.id] = None
            if task.state in ACTIVE_STATES:
                self._by_worker.setdefault(task.worker_id, {})[task.id] = None
            self._dependents[task.id] = {}
        for task in self.tasks.values():
            for dep in task.dependencies:
                if self._is_edge(dep, task):
                    self._dependents[dep][task.id] = None
            if task.state not in FINAL_STATES:
                remaining = sum(1 for d in task.dependencies if not self.is_done(self.tasks.get(d)))
                self._remaining[task.id] = remaining
                if task.state == PENDING and remaining == 0:
                    self._retry[task.id] = None

    def _is_edge(self, dep_id: str, task: state_pb2.Task) -> bool:
        """Whether `dep_id` still names the task `task` was created against.

        A client id can be reused once the old task is pruned, while a finished task
        that depended on the old one keeps the name. Dependencies are always created
        first, except inside one workflow (created and pruned as a whole).
        """
        dep = self.tasks.get(dep_id)
        if dep is None:
            return False
        if task.workflow_id and dep.workflow_id == task.workflow_id:
            return True
        return self.pos[dep_id] < self.pos[task.id]
