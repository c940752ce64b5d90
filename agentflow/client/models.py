"""The SDK's types: what a user builds (`TaskSpec`, `Workflow`) and what the cluster
returns (`Task`, `WorkflowStatus`, ...). Immutable dataclasses with enums; times are
timezone-aware UTC datetimes (None when not reached), durations are seconds.

Protobuf conversion lives in `convert`, input checks in `validation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from enum import StrEnum
from os import PathLike
from typing import Any, Self

from agentflow.common.priority import Priority

__all__ = [
    "ClusterStatus",
    "Lock",
    "Member",
    "OnFailure",
    "Priority",
    "PriorityLike",
    "SubmittedWorkflow",
    "Task",
    "TaskEvent",
    "TaskPage",
    "TaskResult",
    "TaskSpec",
    "TaskState",
    "WorkerState",
    "WorkerStatus",
    "Workflow",
    "WorkflowState",
    "WorkflowStatus",
]

PriorityLike = Priority | int | str
"""`Priority.HIGH`, `1` or `"high"`: anything `Priority.parse` accepts."""


class _ParsableEnum(StrEnum):
    @classmethod
    def parse(cls, value: str) -> Self:
        """By value or name in any case; a proto name ("TASK_STATE_RUNNING") works too."""
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower()
        for member in cls:
            if text in (member.value, f"{cls._proto_prefix()}{member.value}"):
                return member
        allowed = ", ".join(m.value for m in cls if m.value != "unknown")
        raise ValueError(f"unknown value {value!r} (expected {allowed})")

    @classmethod
    def _proto_prefix(cls) -> str:
        return ""


class TaskState(_ParsableEnum):
    """Where a task is in its life; the last four are final."""

    UNKNOWN = "unknown"  # unset or newer than this SDK
    PENDING = "pending"  # waiting on dependencies or a retry time
    READY = "ready"  # queued for placement
    ASSIGNED = "assigned"  # committed to a worker, not yet started
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # a dependency failed

    @property
    def is_finished(self) -> bool:
        return self in _FINISHED

    @classmethod
    def _proto_prefix(cls) -> str:
        return "task_state_"


_FINISHED = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.SKIPPED}
)


class WorkflowState(_ParsableEnum):
    UNKNOWN = "unknown"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every task succeeded
    FAILED = "failed"  # all final, at least one failed or skipped
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self not in (WorkflowState.UNKNOWN, WorkflowState.RUNNING)

    @classmethod
    def _proto_prefix(cls) -> str:
        return "workflow_state_"


class WorkerState(_ParsableEnum):
    UNKNOWN = "unknown"
    ONLINE = "online"
    DRAINING = "draining"  # keeps its running tasks, gets no new ones
    LOST = "lost"  # declared lost; its tasks were requeued
    OFFLINE = "offline"  # left cleanly

    @classmethod
    def _proto_prefix(cls) -> str:
        return "worker_state_"


class OnFailure(_ParsableEnum):
    """What a workflow does with the dependents of a failed task."""

    SKIP = "skip"  # they become SKIPPED
    CONTINUE = "continue"  # they run as if it had succeeded

    @classmethod
    def _proto_prefix(cls) -> str:
        return "on_failure_"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A task to submit. `command` is `shell:<command line>` or `python:<module>:<function>`.

    Empty/None fields take the cluster's defaults (group "default", priority NORMAL,
    retry backoff 1 s, no timeout). `args` is a JSON array or object, passed to a python
    task (a shell task takes none). `dependencies` name existing tasks, earlier tasks of
    the same batch, or (inside a workflow) the workflow's own task ids.

    Checked on submit (InvalidArgumentError naming the field), with the cluster's bounds
    (`agentflow.rules.limits`, listed in docs/cli.md): every string valid UTF-8, and no
    NUL in `command`, `env` or `cwd`; `command` at most 128 KiB, `args` at most 1 MiB
    and 64 levels deep, `env` at most 1,000 variables and 128 KiB, `cwd` 4,096 bytes,
    `name` 256 characters (not blank), at most 64 `labels` of 256 bytes;
    0 <= cpu <= 4096, memory_mb <= 64 TiB in MB, gpus <= 1024, max_retries <= 100,
    timeout <= 30 days, retry_backoff <= 1 day (seconds; at least 1 ms when not 0);
    at most 10,000 dependencies per task.
    """

    command: str
    _: KW_ONLY
    id: str = ""
    name: str = ""
    group: str = ""
    priority: Priority | None = None
    cpu: float = 0.0
    memory_mb: int = 0
    gpus: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = ""
    args: Any = None
    max_retries: int = 0
    retry_backoff: float | None = None  # seconds, base of the exponential backoff
    timeout: float | None = None  # seconds per attempt
    dependencies: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Workflow:
    """A DAG of tasks submitted together; dependencies use the tasks' own `id`s.

    At most 10,000 tasks, 4 MiB of serialized specs and 50,000 dependencies in all
    (one batch of `submit_many` has the same caps): see docs/cli.md.
    """

    tasks: Sequence[TaskSpec]
    _: KW_ONLY
    id: str = ""
    name: str = ""
    on_failure: OnFailure = OnFailure.SKIP

    @classmethod
    def from_file(cls, path: str | PathLike[str]) -> Workflow:
        """Load a workflow YAML file (see `agentflow.client.workflow_file`)."""
        from agentflow.client.workflow_file import load_workflow

        return load_workflow(path)


@dataclass(frozen=True, slots=True)
class TaskResult:
    exit_code: int
    stdout_tail: str = ""
    stderr_tail: str = ""
    value: Any = None  # a python task's return value
    error: str = ""  # why it failed, in words
    cancelled_by: str = ""  # who cancelled it, as the master knew the caller


@dataclass(frozen=True, slots=True)
class Task:
    """A task as the cluster holds it. `priority` is the effective one."""

    id: str
    spec: TaskSpec
    state: TaskState
    priority: Priority
    workflow_id: str = ""
    attempt: int = 0
    worker_id: str = ""
    gpu_indices: tuple[int, ...] = ()
    dependencies: tuple[str, ...] = ()  # global task ids
    created: datetime | None = None
    ready: datetime | None = None
    assigned: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    not_before: datetime | None = None  # retry backoff: not placed before this
    progress: float = 0.0  # 0..1
    progress_message: str = ""
    result: TaskResult | None = None
    errors: tuple[str, ...] = ()  # one line per failed attempt
    updated_index: int = 0  # raft index of the last change

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def group(self) -> str:
        return self.spec.group or "default"

    @property
    def command(self) -> str:
        return self.spec.command

    @property
    def is_finished(self) -> bool:
        return self.state.is_finished

    @property
    def succeeded(self) -> bool:
        return self.state is TaskState.SUCCEEDED


@dataclass(frozen=True, slots=True)
class TaskEvent:
    task: Task
    index: int  # raft index of the change
    initial: bool  # part of the first picture of a watch, not a change


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: tuple[Task, ...]
    next_page_token: str  # empty = no more
    total: int  # matching tasks over all pages


@dataclass(frozen=True, slots=True)
class SubmittedWorkflow:
    workflow_id: str
    task_ids: tuple[str, ...]  # global ids, in the order of the spec's tasks
    local_ids: Mapping[str, str]  # the spec's task id -> global id (for tasks with an id)
    index: int  # raft index of the commit
    duplicate: bool  # the request id was seen before: this is the first result


@dataclass(frozen=True, slots=True)
class Deleted:
    """What a delete removed, in creation order; a workflow's tasks are included."""

    task_ids: tuple[str, ...]
    workflow_ids: tuple[str, ...]
    index: int  # raft index of the commit
    duplicate: bool  # the request id was seen before: this is the first result


@dataclass(frozen=True, slots=True)
class WorkflowStatus:
    """A workflow with its tasks and the DAG queries computed by the master."""

    id: str
    name: str
    on_failure: OnFailure
    state: WorkflowState
    task_ids: tuple[str, ...]
    created: datetime | None = None
    finished: datetime | None = None
    updated_index: int = 0
    tasks: tuple[Task, ...] = ()  # empty unless asked for
    execution_order: tuple[str, ...] = ()
    critical_path: tuple[str, ...] = ()
    state_counts: Mapping[TaskState, int] = field(default_factory=dict)

    @property
    def is_finished(self) -> bool:
        return self.state.is_finished

    @property
    def succeeded(self) -> bool:
        return self.state is WorkflowState.SUCCEEDED


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    id: str
    state: WorkerState
    groups: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    cpu_cores: float = 0.0
    memory_mb: int = 0
    gpu_count: int = 0
    capacity: int = 0  # max concurrent tasks
    hostname: str = ""
    address: str = ""
    registered: datetime | None = None
    state_changed: datetime | None = None
    connected: bool = False  # has a live session with the leader
    last_heartbeat: datetime | None = None
    running: int = 0
    cpu_percent: float = 0.0
    memory_percent: float = 0.0


@dataclass(frozen=True, slots=True)
class Member:
    """One master of the cluster. The fields after `voter` are the leader's
    replication progress, known only when `progress_known` (see
    `ClusterStatus.members_view`)."""

    id: str
    address: str
    voter: bool
    match_index: int = 0  # last log index the leader knows the member holds
    progress_known: bool = False
    reachable: bool = False  # replied to the leader within an election timeout
    contacted: bool = False  # replied at all since the leader took over
    last_contact_seconds: float = 0.0  # since its last reply (or the leader took over)
    lag: int = 0  # the leader's last log index minus match_index
    replication: str = ""  # probe | replicate | snapshot


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    node_id: str  # the master that answered
    role: str
    leader_id: str
    leader_address: str
    term: int
    commit_index: int
    applied_index: int
    members: tuple[Member, ...] = ()
    task_counts: Mapping[TaskState, int] = field(default_factory=dict)
    last_index: int = 0  # of the master that answered
    members_view: str = ""  # the master whose view `members` is (the leader's if it could)
    members_view_note: str = ""  # why that is not the leader, when it is not


@dataclass(frozen=True, slots=True)
class Lock:
    """A distributed lock as the cluster reports it (times: the leader's clock).

    `token` is the fencing token of the holder's lease: the Raft index of the entry
    that granted it, strictly increasing per lock. Pass it to whatever the lock
    protects, which must refuse a token lower than one it has already seen: a holder
    that lost its lease without knowing (paused, partitioned) is then refused.
    `owner` is "" (and `token` 0) when nobody holds the lock.
    """

    name: str
    owner: str
    token: int
    granted_at: datetime | None
    expires_at: datetime | None
    waiters: tuple[str, ...] = ()  # owners queued, first in line first
    lock_delay_until: datetime | None = None  # no grant before this (a lease expired)

    @property
    def held(self) -> bool:
        return bool(self.owner)

    @property
    def expires_at_ms(self) -> int:
        """`expires_at` in unix milliseconds (0 when not held)."""
        return round(self.expires_at.timestamp() * 1000) if self.expires_at else 0
