"""The replicated scheduler state: committed commands in, tasks/workflows/workers out.

Deterministic by construction: no clock (time is `Command.now_ms`, stamped by the
leader), no randomness, no I/O, and every loop that changes state walks entities in an
order that survives a snapshot (creation order or persisted fields, never the order a
set happened to be filled in). Two replicas that apply the same log, whether from the
start or from a snapshot, hold byte-identical state.

Every command is validated completely before anything is mutated, so a command that
fails leaves the state exactly as it was. Worker reports and assignments are checked
one by one instead: a stale report is routine (at-least-once delivery), not an error.

Indexes (by state, by worker, dependents, unfinished-dependency counts, retry waiters,
unfinished tasks per workflow) are kept incrementally and rebuilt on restore; none of
them is part of the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import structlog
from google.protobuf.message import DecodeError

from agentflow._proto import state_pb2
from agentflow.rules.validate import (
    check_request_digest,
    check_request_id,
    validate_delete,
    validate_priority,
    validate_submit_tasks,
    validate_worker_info,
    validate_workflow_spec,
)
from agentflow.state.errors import (
    ALREADY_EXISTS,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    StateError,
)

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "ChangeSet",
    "Listener",
    "SchedulerState",
    "encode",
    "state_name",
]

_log = structlog.get_logger(__name__)

Task = state_pb2.Task
Workflow = state_pb2.Workflow
Worker = state_pb2.Worker
Command = state_pb2.Command
CommandResult = state_pb2.CommandResult
TaskStateValue: TypeAlias = state_pb2.TaskState.ValueType

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
_WORKER_STATES = frozenset(
    {
        state_pb2.WORKER_STATE_ONLINE,
        state_pb2.WORKER_STATE_DRAINING,
        state_pb2.WORKER_STATE_LOST,
        state_pb2.WORKER_STATE_OFFLINE,
    }
)
_WORKER_GONE = frozenset({state_pb2.WORKER_STATE_LOST, state_pb2.WORKER_STATE_OFFLINE})
_INT64_MAX = 2**63 - 1


def state_name(state: int) -> str:
    """ "SUCCEEDED" for TASK_STATE_SUCCEEDED: the form used in messages."""
    try:
        return state_pb2.TaskState.Name(state).removeprefix("TASK_STATE_")  # type: ignore[arg-type]
    except ValueError:
        return str(state)


def _worker_state_name(state: int) -> str:
    try:
        return state_pb2.WorkerState.Name(state).removeprefix("WORKER_STATE_")  # type: ignore[arg-type]
    except ValueError:
        return str(state)


def encode(cmd: state_pb2.Command) -> bytes:
    """The bytes to propose; deterministic so equal commands give equal log entries."""
    return cmd.SerializeToString(deterministic=True)


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Ids of the entities one applied command changed (created, modified or removed:
    a removed id is no longer found in the state)."""

    index: int
    tasks: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()


Listener = Callable[[ChangeSet], None]


class _Changes:
    """What one command touched; dicts as insertion-ordered sets."""

    __slots__ = ("cancelled_workflows", "index", "now", "tasks", "touched", "workers", "workflows")

    def __init__(self, index: int, now: int) -> None:
        self.index = index
        self.now = now
        self.tasks: dict[str, None] = {}
        self.workflows: dict[str, None] = {}
        self.workers: dict[str, None] = {}
        # Workflows with a task that became final: checked for completion at the end.
        self.touched: dict[str, None] = {}
        self.cancelled_workflows: set[str] = set()


class SchedulerState:
    """The state machine the Raft driver applies committed commands to.

    The entity dicts hold the live protobuf objects, in creation order; callers must
    treat them as read-only (copy before handing them to anything that may mutate).
    """

    applied_index: int
    tasks: dict[str, state_pb2.Task]
    workflows: dict[str, state_pb2.Workflow]
    workers: dict[str, state_pb2.Worker]

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._reset()

    def _reset(self) -> None:
        self.applied_index = 0
        self.tasks = {}
        self.workflows = {}
        self.workers = {}
        self._requests: dict[str, state_pb2.RequestRecord] = {}
        self._next_number = 1
        self._ready_seq = 0
        self._last_now_ms = 0
        # Creation position: the tie-break of every query and every state-changing walk.
        # Only the relative order matters, which a restore reproduces exactly.
        self._pos: dict[str, int] = {}
        self._next_pos = 0
        self._by_state: dict[TaskStateValue, dict[str, None]] = {s: {} for s in _TASK_STATES}
        self._by_worker: dict[str, dict[str, None]] = {}
        self._dependents: dict[str, dict[str, None]] = {}
        # Non-final tasks only: dependencies that do not count as done yet.
        self._remaining: dict[str, int] = {}
        # PENDING tasks with every dependency done: they wait only on not_before_ms.
        self._retry: dict[str, None] = {}
        self._wf_unfinished: dict[str, int] = {}

    # ---- queries ------------------------------------------------------------------

    @property
    def last_now_ms(self) -> int:
        """`now_ms` of the last applied command: the state's notion of the time."""
        return self._last_now_ms

    def task(self, task_id: str) -> state_pb2.Task | None:
        return self.tasks.get(task_id)

    def workflow(self, workflow_id: str) -> state_pb2.Workflow | None:
        return self.workflows.get(workflow_id)

    def worker(self, worker_id: str) -> state_pb2.Worker | None:
        return self.workers.get(worker_id)

    def request(self, request_id: str) -> state_pb2.RequestRecord | None:
        """The recorded outcome of a request id, if it is still remembered."""
        return self._requests.get(request_id)

    def _in_creation_order(self, ids: Iterable[str]) -> list[state_pb2.Task]:
        return [self.tasks[i] for i in sorted(ids, key=self._pos.__getitem__)]

    def tasks_in_state(self, state: TaskStateValue) -> list[state_pb2.Task]:
        """Tasks in `state`, in creation order."""
        return self._in_creation_order(self._by_state.get(state, ()))

    def ready_tasks(self) -> list[state_pb2.Task]:
        """READY tasks in the order they became ready: (ready_ms, ready_seq)."""
        ready = [self.tasks[i] for i in self._by_state[READY]]
        ready.sort(key=lambda t: (t.ready_ms, t.ready_seq))
        return ready

    def retry_waiting(self) -> list[state_pb2.Task]:
        """PENDING tasks waiting only on their retry time, by (not_before_ms, creation)."""
        waiting = self._in_creation_order(self._retry)
        waiting.sort(key=lambda t: t.not_before_ms)
        return waiting

    def tasks_of_worker(self, worker_id: str) -> list[state_pb2.Task]:
        """ASSIGNED or RUNNING tasks of a worker, in creation order."""
        return self._in_creation_order(self._by_worker.get(worker_id, ()))

    def held_count(self, worker_id: str) -> int:
        """How many tasks a worker holds (ASSIGNED or RUNNING), in O(1)."""
        return len(self._by_worker.get(worker_id, ()))

    def tasks_of_workflow(self, workflow_id: str) -> list[state_pb2.Task]:
        """The workflow's tasks in submission order; [] for an unknown workflow."""
        wf = self.workflows.get(workflow_id)
        return [] if wf is None else [self.tasks[i] for i in wf.task_ids]

    def blocking(self, task_id: str) -> list[str]:
        """Unfinished dependencies of an unfinished task, in dependency order.

        [] for an unknown or final task: nothing blocks what already ended.
        """
        task = self.tasks.get(task_id)
        if task is None or task.state in FINAL_STATES:
            return []
        return [d for d in task.dependencies if not self._is_done(self.tasks.get(d))]

    def dependents(self, task_id: str) -> list[str]:
        """Tasks that directly depend on `task_id` (final ones included), creation order."""
        return list(self._dependents.get(task_id, ()))

    def counts(self) -> dict[TaskStateValue, int]:
        """Number of tasks per TaskState, every state present (zero included)."""
        return {s: len(ids) for s, ids in self._by_state.items()}

    # ---- listeners ----------------------------------------------------------------

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call `fn` after every apply that changed something, and after restore.

        Returns a function that unsubscribes (calling it twice is harmless).
        """
        self._listeners.append(fn)

        def unsubscribe() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)

        return unsubscribe

    def _notify(self, change: ChangeSet) -> None:
        for fn in list(self._listeners):
            try:
                fn(change)
            except Exception:
                # A listener is a leader-side view; its bug must not stall the log.
                _log.exception("state listener failed", index=change.index, listener=repr(fn))

    # ---- apply --------------------------------------------------------------------

    def apply(self, index: int, command: bytes) -> state_pb2.CommandResult:
        try:
            cmd = state_pb2.Command.FromString(command)
        except (DecodeError, ValueError, RuntimeError) as exc:
            # A corrupt entry must give the same answer on every replica, not a crash.
            self.applied_index = index
            error = StateError(INVALID_ARGUMENT, "command", f"undecodable command: {exc}")
            return state_pb2.CommandResult(index=index, error=error.to_proto())
        return self.apply_command(index, cmd)

    def apply_command(self, index: int, cmd: state_pb2.Command) -> state_pb2.CommandResult:
        self.applied_index = index
        self._last_now_ms = cmd.now_ms
        if cmd.request_id or cmd.request_digest:
            try:
                check_request_id(cmd.request_id)
                check_request_digest(cmd.request_digest)
            except StateError as exc:
                return state_pb2.CommandResult(index=index, error=exc.to_proto())
            record = self._requests.get(cmd.request_id)
            if record is not None:
                return self._repeated(index, cmd, record)
        changes = _Changes(index, cmd.now_ms)
        result = state_pb2.CommandResult(index=index)
        kind = cmd.WhichOneof("kind")
        try:
            if kind is None:
                raise StateError(INVALID_ARGUMENT, "kind", "empty or unknown command")
            self._handlers[kind](self, cmd, changes, result)
        except StateError as exc:
            # Handlers raise only before their first mutation: nothing to undo.
            result = state_pb2.CommandResult(index=index, error=exc.to_proto())
        self._finish_workflows(changes)
        if cmd.request_id:
            self._requests[cmd.request_id] = state_pb2.RequestRecord(
                request_id=cmd.request_id,
                recorded_ms=cmd.now_ms,
                result=result,
                digest=cmd.request_digest,
            )
        if changes.tasks or changes.workflows or changes.workers:
            self._notify(
                ChangeSet(
                    index, tuple(changes.tasks), tuple(changes.workflows), tuple(changes.workers)
                )
            )
        return result

    @staticmethod
    def _repeated(
        index: int, cmd: state_pb2.Command, record: state_pb2.RequestRecord
    ) -> state_pb2.CommandResult:
        """A request id seen before: the first result if this is the same request (a
        retry), an error if it is another one, which would otherwise be dropped."""
        if record.digest and cmd.request_digest and record.digest != cmd.request_digest:
            # Like a payment API's idempotency key: reuse for a different request is the
            # caller's bug, and answering with the first result would hide its loss.
            error = StateError(
                FAILED_PRECONDITION,
                "request_id",
                f"request id {cmd.request_id!r} was already used for a different request "
                f"(applied at index {record.result.index}); use a new id for a new request",
            )
            return state_pb2.CommandResult(index=index, error=error.to_proto())
        # The first result, index included: it says where the change happened.
        duplicate = state_pb2.CommandResult()
        duplicate.CopyFrom(record.result)
        duplicate.duplicate = True
        return duplicate

    # ---- task bookkeeping ---------------------------------------------------------

    def _touch(self, task: state_pb2.Task, ch: _Changes) -> None:
        task.updated_index = ch.index
        ch.tasks[task.id] = None

    def _set_state(self, task: state_pb2.Task, new: TaskStateValue, ch: _Changes) -> None:
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
                self._wf_unfinished[task.workflow_id] -= 1
                ch.touched[task.workflow_id] = None
        self._touch(task, ch)

    def _is_done(self, task: state_pb2.Task | None) -> bool:
        """Whether a dependency lets its dependents run. A missing dependency was
        pruned, which only happens once nothing unfinished waits on it."""
        if task is None or task.state == SUCCEEDED:
            return True
        if task.state == FAILED and task.workflow_id:
            wf = self.workflows.get(task.workflow_id)
            return wf is not None and wf.on_failure == state_pb2.ON_FAILURE_CONTINUE
        return False

    @staticmethod
    def _ended_how(task: state_pb2.Task) -> str:
        if task.state == FAILED:
            return "failed"
        return f"was {state_name(task.state).lower()}"

    def _settle(self, task: state_pb2.Task, ch: _Changes) -> None:
        """`task` just became final: release or skip its dependents, transitively.

        Iterative so a 10,000-deep chain cannot hit the recursion limit; each task is
        skipped once, so the walk is linear in the edges it crosses.
        """
        stack = [task]
        while stack:
            parent = stack.pop()
            children = self._dependents.get(parent.id, ())
            if self._is_done(parent):
                for child_id in children:
                    child = self.tasks[child_id]
                    if child.state in FINAL_STATES:
                        continue
                    left = self._remaining[child_id] - 1
                    self._remaining[child_id] = left
                    if left == 0 and child.state == PENDING:
                        self._set_state(child, READY, ch)
                continue
            reason = f"dependency {parent.id} {self._ended_how(parent)}"
            for child_id in children:
                child = self.tasks[child_id]
                if child.state in FINAL_STATES:
                    continue
                self._set_state(child, SKIPPED, ch)
                child.result.CopyFrom(state_pb2.TaskResult(error=reason))
                stack.append(child)

    def _fail_attempt(
        self,
        task: state_pb2.Task,
        error: str,
        retry_delay_ms: int,
        ch: _Changes,
        result: state_pb2.TaskResult | None = None,
    ) -> None:
        """The current attempt failed (reported, worker lost, requeued): retry while
        attempts are left, else FAILED."""
        task.errors.append(f"attempt {task.attempt} on {task.worker_id or '?'}: {error}")
        task.result.CopyFrom(result if result is not None else state_pb2.TaskResult())
        if not task.result.error:
            task.result.error = error
        if task.attempt <= task.spec.max_retries:
            self._set_state(task, PENDING, ch)
            task.worker_id = ""
            del task.gpu_indices[:]
            task.not_before_ms = min(ch.now + max(retry_delay_ms, 0), _INT64_MAX)
            self._retry[task.id] = None
            self._touch(task, ch)
            return
        self._set_state(task, FAILED, ch)
        self._settle(task, ch)

    def _new_task(
        self, task_id: str, spec: state_pb2.TaskSpec, workflow_id: str, ch: _Changes
    ) -> state_pb2.Task:
        task = state_pb2.Task(
            id=task_id, workflow_id=workflow_id, created_ms=ch.now, created_index=ch.index
        )
        task.spec.CopyFrom(spec)
        task.priority = spec.priority if spec.HasField("priority") else state_pb2.PRIORITY_NORMAL
        self.tasks[task_id] = task
        self._pos[task_id] = self._next_pos
        self._next_pos += 1
        self._dependents[task_id] = {}
        return task

    def _generate_number(self) -> int:
        number = self._next_number
        self._next_number += 1
        return number

    # ---- commands -----------------------------------------------------------------

    def _submit_tasks(
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
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
                self._generate_number()
            task = self._new_task(task_id, spec, "", ch)
            # Repeated dependencies collapse into one edge, as in a workflow's Dag.
            deps = list(dict.fromkeys(spec.dependencies))
            task.dependencies.extend(deps)
            for dep in deps:
                self._dependents[dep][task_id] = None
            dead = next((d for d in deps if self._is_dead(self.tasks[d])), None)
            if dead is not None:
                self._set_state(task, SKIPPED, ch)
                how = self._ended_how(self.tasks[dead])
                task.result.error = f"dependency {dead} {how}"
                continue
            remaining = sum(1 for d in deps if not self._is_done(self.tasks[d]))
            if remaining:
                self._remaining[task_id] = remaining
                self._set_state(task, PENDING, ch)
            else:
                self._remaining[task_id] = 0
                self._set_state(task, READY, ch)
        result.task_ids.extend(ids)
        self._place(cmd.submit_tasks.placements, ids, ch, result)

    def _place(
        self,
        placements: Iterable[state_pb2.Placement],
        ids: Sequence[str],
        ch: _Changes,
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
        return task.state in FINAL_STATES and not self._is_done(task)

    def _submit_workflow(
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
    ) -> None:
        spec = cmd.submit_workflow.workflow
        validate_workflow_spec(spec)
        if spec.id:
            if spec.id in self.workflows:
                raise StateError(
                    ALREADY_EXISTS, "workflow.id", f"workflow {spec.id!r} already exists"
                )
            wf_id = spec.id
        else:
            wf_id = f"wf-{self._generate_number()}"
            # A client may have picked a name of this form itself.
            while wf_id in self.workflows:
                wf_id = f"wf-{self._generate_number()}"
        wf = state_pb2.Workflow(
            id=wf_id,
            name=spec.name,
            on_failure=spec.on_failure,
            state=state_pb2.WORKFLOW_STATE_RUNNING,
            created_ms=ch.now,
            updated_index=ch.index,
        )
        prefix = f"{wf_id}/"
        tasks = [self._new_task(prefix + s.id, s, wf_id, ch) for s in spec.tasks]
        wf.task_ids.extend(t.id for t in tasks)
        self.workflows[wf_id] = wf
        self._wf_unfinished[wf_id] = len(tasks)
        ch.workflows[wf_id] = None
        # Wired only once every task exists: a dependency may come later in the list.
        for task, task_spec in zip(tasks, spec.tasks, strict=True):
            deps = [prefix + d for d in dict.fromkeys(task_spec.dependencies)]
            task.dependencies.extend(deps)
            for dep in deps:
                self._dependents[dep][task.id] = None
            self._remaining[task.id] = len(deps)
            self._set_state(task, PENDING if deps else READY, ch)
        result.workflow_id = wf_id
        result.task_ids.extend(wf.task_ids)
        self._place(cmd.submit_workflow.placements, wf.task_ids, ch, result)

    def _assign_tasks(
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
    ) -> None:
        for a in cmd.assign_tasks.assignments:
            why = self._assign_one(a, ch)
            if why:
                result.rejected.append(f"{a.task_id}: {why}")
            else:
                result.task_ids.append(a.task_id)

    def _assign_one(self, a: state_pb2.Assignment, ch: _Changes) -> str:
        """Assign, or say why not (and change nothing)."""
        why = self._cannot_assign(a, ch.now)
        if not why:
            task = self.tasks[a.task_id]
            task.worker_id = a.worker_id
            self._set_state(task, ASSIGNED, ch)
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
        worker = self.workers.get(a.worker_id)
        if worker is None:
            return f"unknown worker {a.worker_id!r}"
        if worker.state != state_pb2.WORKER_STATE_ONLINE:
            return f"worker {a.worker_id} is {_worker_state_name(worker.state)}"
        return ""

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
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
    ) -> None:
        report = cmd.task_started
        task, why = self._fenced(report.task_id, report.attempt, report.worker_id)
        if task is None:
            result.rejected.append(f"{report.task_id}: {why}")
            return
        self._start(task, ch)
        result.task_ids.append(task.id)

    def _start(self, task: state_pb2.Task, ch: _Changes) -> None:
        if task.state == ASSIGNED:
            self._set_state(task, RUNNING, ch)
            task.started_ms = ch.now

    def _task_progress(
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
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
        self._touch(task, ch)
        result.task_ids.append(task.id)

    def _task_finished(
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
    ) -> None:
        self._finish_one(cmd.task_finished, ch, result)

    def _finish_tasks(
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
    ) -> None:
        for report in cmd.finish_tasks.items:
            self._finish_one(report, ch, result)

    def _finish_one(
        self, report: state_pb2.TaskFinished, ch: _Changes, result: state_pb2.CommandResult
    ) -> None:
        task, why = self._fenced(report.task_id, report.attempt, report.worker_id)
        if task is None:
            result.rejected.append(f"{report.task_id}: {why}")
            return
        result.task_ids.append(task.id)
        if report.success:
            self._set_state(task, SUCCEEDED, ch)
            task.result.CopyFrom(report.result)
            self._settle(task, ch)
            return
        error = report.result.error or f"exit code {report.result.exit_code}"
        self._fail_attempt(task, error, report.retry_delay_ms, ch, report.result)

    def _cancel_tasks(
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
    ) -> None:
        cancel = cmd.cancel_tasks
        if not cancel.task_ids and not cancel.workflow_id:
            raise StateError(INVALID_ARGUMENT, "task_ids", "name tasks or a workflow to cancel")
        for i, task_id in enumerate(cancel.task_ids):
            if task_id not in self.tasks:
                raise StateError(NOT_FOUND, f"task_ids[{i}]", f"unknown task {task_id!r}")
        targets = dict.fromkeys(cancel.task_ids)
        if cancel.workflow_id:
            wf = self.workflows.get(cancel.workflow_id)
            if wf is None:
                raise StateError(
                    NOT_FOUND, "workflow_id", f"unknown workflow {cancel.workflow_id!r}"
                )
            targets.update(dict.fromkeys(wf.task_ids))
            ch.cancelled_workflows.add(cancel.workflow_id)
        reason = cancel.reason or "cancelled"
        cancelled = [self.tasks[t] for t in targets if self.tasks[t].state not in FINAL_STATES]
        # All named tasks first, then the consequences: a task both named and downstream
        # of another named one is reported as cancelled, whatever the order given.
        by = cancel.requested_by
        named = set(cancel.task_ids)
        for task in cancelled:
            # worker_id stays: the leader tells that worker to stop the attempt.
            self._set_state(task, CANCELLED, ch)
            who = by if task.id in named or not by else f"{by}, cancelling its workflow"
            task.result.CopyFrom(state_pb2.TaskResult(error=reason, cancelled_by=who))
        for task in cancelled:
            self._settle(task, ch)
        result.task_ids.extend(t.id for t in cancelled)

    def _reprioritize(
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
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
        self._touch(task, ch)
        result.task_ids.append(task.id)

    def _register_worker(
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
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
        ch.workers[info.id] = None

    def _set_worker_state(
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
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
            ch.workers[req.worker_id] = None
        if req.state in _WORKER_GONE:
            error = f"worker {req.worker_id} lost"
            if req.reason:
                error += f": {req.reason}"
            for task in self.tasks_of_worker(req.worker_id):
                self._fail_attempt(task, error, req.retry_delay_ms, ch)
                result.task_ids.append(task.id)

    def _requeue_tasks(
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
    ) -> None:
        for item in cmd.requeue_tasks.items:
            task, why = self._fenced(item.task_id, item.attempt, None)
            if task is None:
                result.rejected.append(f"{item.task_id}: {why}")
                continue
            self._fail_attempt(task, item.reason or "requeued", item.retry_delay_ms, ch)
            result.task_ids.append(task.id)

    def _prune(self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult) -> None:
        prune = cmd.prune
        cutoff = prune.finished_before_ms
        finished = self._in_creation_order(
            i for s in FINAL_STATES for i in self._by_state[s] if not self.tasks[i].workflow_id
        )
        doomed = [t for t in finished if t.finished_ms < cutoff]
        kept = [t for t in finished if t.finished_ms >= cutoff]
        if prune.keep_finished and len(kept) > prune.keep_finished:
            # Stable sort: equal finish times go oldest-created first.
            kept.sort(key=lambda t: t.finished_ms)
            doomed.extend(kept[: len(kept) - prune.keep_finished])
        removed = {t.id: t for t in doomed if not self._has_unfinished_dependent(t.id)}
        dropped_workflows: list[str] = []
        for wf in self.workflows.values():
            if wf.state == state_pb2.WORKFLOW_STATE_RUNNING or wf.finished_ms >= cutoff:
                continue
            if any(self._has_unfinished_dependent(t) for t in wf.task_ids):
                continue
            dropped_workflows.append(wf.id)
            removed.update((t, self.tasks[t]) for t in wf.task_ids)
        for task_id in sorted(removed, key=self._pos.__getitem__):
            self._remove_task(removed[task_id])
            ch.tasks[task_id] = None
            result.task_ids.append(task_id)
        for wf_id in dropped_workflows:
            del self.workflows[wf_id]
            del self._wf_unfinished[wf_id]
            ch.workflows[wf_id] = None
        if prune.requests_before_ms:
            self._requests = {
                k: r for k, r in self._requests.items() if r.recorded_ms >= prune.requests_before_ms
            }
        if prune.workers_gone_before_ms:
            self._prune_workers(prune.workers_gone_before_ms, ch)

    def _prune_workers(self, gone_before_ms: int, ch: _Changes) -> None:
        """Forget workers LOST or OFFLINE since before the cut-off (the leader's time,
        from its retention settings). One that still holds a task stays: its record
        says where that attempt went. A forgotten worker that comes back registers
        as new."""
        for wid in [
            w
            for w, worker in self.workers.items()
            if worker.state in _WORKER_GONE
            and worker.state_changed_ms < gone_before_ms
            and not self._by_worker.get(w)
        ]:
            del self.workers[wid]
            ch.workers[wid] = None

    def _delete_records(
        self, cmd: state_pb2.Command, ch: _Changes, result: state_pb2.CommandResult
    ) -> None:
        """An operator's purge (DeleteRecords). Every named record is checked before
        the first goes, so a refusal changes nothing; the age sweep skips instead."""
        req = cmd.delete_records
        by_age = req.HasField("finished_before_age_ms")
        validate_delete(req.task_ids, req.workflow_ids, by_age, req.finished_before_age_ms)
        workflows: dict[str, None] = {}
        for i, wf_id in enumerate(req.workflow_ids):
            wf = self.workflows.get(wf_id)
            if wf is None:
                raise StateError(NOT_FOUND, f"workflow_ids[{i}]", f"unknown workflow {wf_id!r}")
            why = self._cannot_delete_workflow(wf)
            if why:
                raise StateError(FAILED_PRECONDITION, f"workflow_ids[{i}]", why)
            workflows[wf_id] = None
        tasks: dict[str, None] = {}
        for i, task_id in enumerate(req.task_ids):
            task = self.tasks.get(task_id)
            if task is None:
                raise StateError(NOT_FOUND, f"task_ids[{i}]", f"unknown task {task_id!r}")
            if task.workflow_id in workflows:
                continue  # goes with its workflow
            why = self._cannot_delete_task(task)
            if why:
                raise StateError(FAILED_PRECONDITION, f"task_ids[{i}]", why)
            tasks[task_id] = None
        if by_age:
            cutoff = ch.now - req.finished_before_age_ms
            for task in self._in_creation_order(
                i for s in FINAL_STATES for i in self._by_state[s] if not self.tasks[i].workflow_id
            ):
                if task.finished_ms <= cutoff and not self._cannot_delete_task(task):
                    tasks[task.id] = None
            for wf in self.workflows.values():
                if (
                    wf.state != state_pb2.WORKFLOW_STATE_RUNNING
                    and wf.finished_ms <= cutoff
                    and not self._cannot_delete_workflow(wf)
                ):
                    workflows[wf.id] = None
        removed = dict(tasks)
        for wf_id in workflows:
            removed.update(dict.fromkeys(self.workflows[wf_id].task_ids))
        for task_id in sorted(removed, key=self._pos.__getitem__):
            self._remove_task(self.tasks[task_id])
            ch.tasks[task_id] = None
            result.task_ids.append(task_id)
        # In creation order, like the tasks, whatever order they were named in.
        for wf_id in [w for w in self.workflows if w in workflows]:
            del self.workflows[wf_id]
            del self._wf_unfinished[wf_id]
            ch.workflows[wf_id] = None
            result.workflow_ids.append(wf_id)

    def _cannot_delete_task(self, task: state_pb2.Task) -> str:
        """Why a task on its own may not be deleted yet ("" = it may)."""
        if task.workflow_id:
            return (
                f"task {task.id} belongs to workflow {task.workflow_id}: delete the workflow, "
                "which takes its tasks with it"
            )
        if task.state not in FINAL_STATES:
            return f"task {task.id} is {state_name(task.state)}: cancel it first, then delete it"
        return self._needed_by(task.id)

    def _cannot_delete_workflow(self, wf: state_pb2.Workflow) -> str:
        """Why a workflow may not be deleted yet ("" = it may)."""
        if self._wf_unfinished[wf.id]:
            busy = next(t for t in self.tasks_of_workflow(wf.id) if t.state not in FINAL_STATES)
            return (
                f"workflow {wf.id} is still running (task {busy.id} is "
                f"{state_name(busy.state)}): cancel it first, then delete it"
            )
        for task_id in wf.task_ids:
            why = self._needed_by(task_id)
            if why:
                return f"workflow {wf.id}: {why}"
        return ""

    def _needed_by(self, task_id: str) -> str:
        # Its dependents would otherwise run as if it had succeeded (see _is_done).
        for child_id in self._dependents.get(task_id, ()):
            child = self.tasks[child_id]
            if child.state not in FINAL_STATES:
                return (
                    f"task {task_id} is a dependency of unfinished task {child_id} "
                    f"({state_name(child.state)})"
                )
        return ""

    def _has_unfinished_dependent(self, task_id: str) -> bool:
        return any(
            self.tasks[c].state not in FINAL_STATES for c in self._dependents.get(task_id, ())
        )

    def _remove_task(self, task: state_pb2.Task) -> None:
        del self.tasks[task.id]
        del self._pos[task.id]
        self._by_state[task.state].pop(task.id, None)
        for dep in task.dependencies:
            siblings = self._dependents.get(dep)
            if siblings is not None:
                siblings.pop(task.id, None)
        del self._dependents[task.id]

    _handlers: dict[
        str,
        Callable[[SchedulerState, state_pb2.Command, _Changes, state_pb2.CommandResult], None],
    ] = {
        "submit_tasks": _submit_tasks,
        "submit_workflow": _submit_workflow,
        "assign_tasks": _assign_tasks,
        "task_started": _task_started,
        "task_progress": _task_progress,
        "task_finished": _task_finished,
        "finish_tasks": _finish_tasks,
        "cancel_tasks": _cancel_tasks,
        "reprioritize": _reprioritize,
        "register_worker": _register_worker,
        "set_worker_state": _set_worker_state,
        "requeue_tasks": _requeue_tasks,
        "prune": _prune,
        "delete_records": _delete_records,
    }

    def _finish_workflows(self, ch: _Changes) -> None:
        for wf_id in ch.touched:
            wf = self.workflows.get(wf_id)
            if wf is None or wf.state != state_pb2.WORKFLOW_STATE_RUNNING:
                continue
            if self._wf_unfinished[wf_id]:
                continue
            if wf_id in ch.cancelled_workflows:
                wf.state = state_pb2.WORKFLOW_STATE_CANCELLED
            elif all(self.tasks[t].state == SUCCEEDED for t in wf.task_ids):
                wf.state = state_pb2.WORKFLOW_STATE_SUCCEEDED
            else:
                wf.state = state_pb2.WORKFLOW_STATE_FAILED
            wf.finished_ms = ch.now
            wf.updated_index = ch.index
            ch.workflows[wf_id] = None

    # ---- snapshot -----------------------------------------------------------------

    def snapshot(self) -> bytes:
        snap = state_pb2.StateSnapshot(
            applied_index=self.applied_index,
            next_number=self._next_number,
            ready_seq=self._ready_seq,
            last_now_ms=self._last_now_ms,
        )
        snap.tasks.extend(self.tasks.values())
        snap.workflows.extend(self.workflows.values())
        snap.workers.extend(self.workers.values())
        snap.requests.extend(self._requests.values())
        # Deterministic: map fields (env, labels) in key order, so replicas compare equal.
        return snap.SerializeToString(deterministic=True)

    def restore(self, data: bytes) -> None:
        """Replace the whole state. Raises DecodeError on bytes that are not a snapshot,
        before anything is changed."""
        snap = state_pb2.StateSnapshot.FromString(data)
        before = list(self.tasks), list(self.workflows), list(self.workers)
        self._reset()
        self.applied_index = snap.applied_index
        self._next_number = snap.next_number
        self._ready_seq = snap.ready_seq
        self._last_now_ms = snap.last_now_ms
        # Copies, so that no entity keeps the whole parsed snapshot alive after a prune.
        for t in snap.tasks:
            task = state_pb2.Task()
            task.CopyFrom(t)
            self.tasks[task.id] = task
            self._pos[task.id] = self._next_pos
            self._next_pos += 1
        for w in snap.workflows:
            wf = state_pb2.Workflow()
            wf.CopyFrom(w)
            self.workflows[wf.id] = wf
        for k in snap.workers:
            worker = state_pb2.Worker()
            worker.CopyFrom(k)
            self.workers[worker.info.id] = worker
        for r in snap.requests:
            record = state_pb2.RequestRecord()
            record.CopyFrom(r)
            self._requests[record.request_id] = record
        self._rebuild_indexes()
        tasks, workflows, workers = before
        self._notify(
            ChangeSet(
                self.applied_index,
                _union(self.tasks, tasks),
                _union(self.workflows, workflows),
                _union(self.workers, workers),
            )
        )

    def _rebuild_indexes(self) -> None:
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
                remaining = sum(
                    1 for d in task.dependencies if not self._is_done(self.tasks.get(d))
                )
                self._remaining[task.id] = remaining
                if task.state == PENDING and remaining == 0:
                    self._retry[task.id] = None
        for wf in self.workflows.values():
            self._wf_unfinished[wf.id] = sum(
                1 for t in wf.task_ids if self.tasks[t].state not in FINAL_STATES
            )

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
        return self._pos[dep_id] < self._pos[task.id]


def _union(current: Iterable[str], before: Iterable[str]) -> tuple[str, ...]:
    # Ids gone with the restore are listed too, so listeners drop them.
    return tuple(dict.fromkeys([*current, *before]))
