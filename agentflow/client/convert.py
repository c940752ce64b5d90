"""Protobuf messages <-> SDK dataclasses: the only module that knows both.

To the wire: specs must have been through `validation` (the functions here do not
check). From the wire: lenient; an enum value newer than this SDK becomes UNKNOWN.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agentflow._proto import coord_pb2 as coord
from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import state_pb2 as pb
from agentflow.client.models import (
    ClusterStatus,
    Deleted,
    Lock,
    Member,
    OnFailure,
    Priority,
    SubmittedWorkflow,
    Task,
    TaskEvent,
    TaskPage,
    TaskResult,
    TaskSpec,
    TaskState,
    WorkerState,
    WorkerStatus,
    Workflow,
    WorkflowState,
    WorkflowStatus,
)

_TASK_STATES: dict[pb.TaskState.ValueType, TaskState] = {
    pb.TASK_STATE_PENDING: TaskState.PENDING,
    pb.TASK_STATE_READY: TaskState.READY,
    pb.TASK_STATE_ASSIGNED: TaskState.ASSIGNED,
    pb.TASK_STATE_RUNNING: TaskState.RUNNING,
    pb.TASK_STATE_SUCCEEDED: TaskState.SUCCEEDED,
    pb.TASK_STATE_FAILED: TaskState.FAILED,
    pb.TASK_STATE_CANCELLED: TaskState.CANCELLED,
    pb.TASK_STATE_SKIPPED: TaskState.SKIPPED,
}
_TASK_STATES_TO_PB = {state: number for number, state in _TASK_STATES.items()}
_WORKFLOW_STATES: dict[pb.WorkflowState.ValueType, WorkflowState] = {
    pb.WORKFLOW_STATE_RUNNING: WorkflowState.RUNNING,
    pb.WORKFLOW_STATE_SUCCEEDED: WorkflowState.SUCCEEDED,
    pb.WORKFLOW_STATE_FAILED: WorkflowState.FAILED,
    pb.WORKFLOW_STATE_CANCELLED: WorkflowState.CANCELLED,
}
_WORKER_STATES: dict[pb.WorkerState.ValueType, WorkerState] = {
    pb.WORKER_STATE_ONLINE: WorkerState.ONLINE,
    pb.WORKER_STATE_DRAINING: WorkerState.DRAINING,
    pb.WORKER_STATE_LOST: WorkerState.LOST,
    pb.WORKER_STATE_OFFLINE: WorkerState.OFFLINE,
}
_ON_FAILURE: dict[pb.OnFailure.ValueType, OnFailure] = {
    pb.ON_FAILURE_SKIP: OnFailure.SKIP,
    pb.ON_FAILURE_CONTINUE: OnFailure.CONTINUE,
}
_ON_FAILURE_TO_PB = {value: number for number, value in _ON_FAILURE.items()}


# ----- enums and scalars -----


def task_state_to_proto(state: TaskState) -> pb.TaskState.ValueType:
    return _TASK_STATES_TO_PB.get(state, pb.TASK_STATE_UNSPECIFIED)


def task_state_from_proto(value: pb.TaskState.ValueType) -> TaskState:
    return _TASK_STATES.get(value, TaskState.UNKNOWN)


def priority_to_proto(priority: Priority) -> pb.Priority.ValueType:
    return pb.Priority.ValueType(int(priority))


def priority_from_proto(value: int) -> Priority:
    return Priority(value) if value in Priority._value2member_map_ else Priority.NORMAL


def _time(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms > 0 else None


def _ms(seconds: float | None) -> int:
    return round(seconds * 1000) if seconds else 0


def _seconds(ms: int) -> float | None:
    return ms / 1000 if ms > 0 else None


def _json_or_none(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _state_counts(counts: Mapping[str, int]) -> dict[TaskState, int]:
    out: dict[TaskState, int] = {}
    for name, count in counts.items():
        try:
            state = TaskState.parse(name)
        except ValueError:
            continue
        out[state] = out.get(state, 0) + int(count)
    return out


# ----- to the wire -----


def spec_to_proto(spec: TaskSpec) -> pb.TaskSpec:
    message = pb.TaskSpec(
        id=spec.id,
        name=spec.name,
        command=spec.command,
        args_json="" if spec.args is None else json.dumps(spec.args, separators=(",", ":")),
        env=dict(spec.env),
        cwd=spec.cwd,
        group=spec.group,
        cpu=spec.cpu,
        memory_mb=spec.memory_mb,
        gpus=spec.gpus,
        labels=dict(spec.labels),
        max_retries=spec.max_retries,
        retry_backoff_ms=_ms(spec.retry_backoff),
        timeout_ms=_ms(spec.timeout),
        dependencies=list(spec.dependencies),
    )
    if spec.priority is not None:
        message.priority = priority_to_proto(spec.priority)
    return message


def workflow_to_proto(workflow: Workflow) -> pb.WorkflowSpec:
    return pb.WorkflowSpec(
        id=workflow.id,
        name=workflow.name,
        on_failure=_ON_FAILURE_TO_PB[workflow.on_failure],
        tasks=[spec_to_proto(spec) for spec in workflow.tasks],
    )


# ----- from the wire -----


def spec_from_proto(message: pb.TaskSpec) -> TaskSpec:
    return TaskSpec(
        message.command,
        id=message.id,
        name=message.name,
        group=message.group,
        priority=priority_from_proto(message.priority) if message.HasField("priority") else None,
        cpu=message.cpu,
        memory_mb=message.memory_mb,
        gpus=message.gpus,
        labels=dict(message.labels),
        env=dict(message.env),
        cwd=message.cwd,
        args=_json_or_none(message.args_json),
        max_retries=message.max_retries,
        retry_backoff=_seconds(message.retry_backoff_ms),
        timeout=_seconds(message.timeout_ms),
        dependencies=tuple(message.dependencies),
    )


def task_from_proto(message: pb.Task) -> Task:
    result = None
    if message.HasField("result"):
        r = message.result
        result = TaskResult(
            exit_code=r.exit_code,
            stdout_tail=r.stdout_tail,
            stderr_tail=r.stderr_tail,
            value=_json_or_none(r.value_json),
            error=r.error,
            cancelled_by=r.cancelled_by,
        )
    return Task(
        id=message.id,
        spec=spec_from_proto(message.spec),
        state=task_state_from_proto(message.state),
        priority=priority_from_proto(message.priority),
        workflow_id=message.workflow_id,
        attempt=message.attempt,
        worker_id=message.worker_id,
        gpu_indices=tuple(message.gpu_indices),
        dependencies=tuple(message.dependencies),
        created=_time(message.created_ms),
        ready=_time(message.ready_ms),
        assigned=_time(message.assigned_ms),
        started=_time(message.started_ms),
        finished=_time(message.finished_ms),
        not_before=_time(message.not_before_ms),
        progress=message.progress,
        progress_message=message.progress_message,
        result=result,
        errors=tuple(message.errors),
        updated_index=message.updated_index,
    )


def event_from_proto(message: api.TaskEvent) -> TaskEvent:
    return TaskEvent(
        task=task_from_proto(message.task), index=message.index, initial=message.initial
    )


def page_from_proto(message: api.ListTasksResponse) -> TaskPage:
    return TaskPage(
        tasks=tuple(task_from_proto(t) for t in message.tasks),
        next_page_token=message.next_page_token,
        total=message.total,
    )


def deleted_from_proto(message: api.DeleteResponse) -> Deleted:
    return Deleted(
        task_ids=tuple(message.task_ids),
        workflow_ids=tuple(message.workflow_ids),
        index=message.index,
        duplicate=message.duplicate,
    )


def submitted_workflow_from_proto(
    message: api.SubmitWorkflowResponse, spec: Workflow | None = None
) -> SubmittedWorkflow:
    task_ids = tuple(message.task_ids)
    local: dict[str, str] = {}
    if spec is not None and len(spec.tasks) == len(task_ids):
        local = {s.id: gid for s, gid in zip(spec.tasks, task_ids, strict=True) if s.id}
    return SubmittedWorkflow(
        workflow_id=message.workflow_id,
        task_ids=task_ids,
        local_ids=local,
        index=message.index,
        duplicate=message.duplicate,
    )


def workflow_status_from_proto(message: api.GetWorkflowResponse) -> WorkflowStatus:
    w = message.workflow
    return WorkflowStatus(
        id=w.id,
        name=w.name,
        on_failure=_ON_FAILURE.get(w.on_failure, OnFailure.SKIP),
        state=_WORKFLOW_STATES.get(w.state, WorkflowState.UNKNOWN),
        task_ids=tuple(w.task_ids),
        created=_time(w.created_ms),
        finished=_time(w.finished_ms),
        updated_index=w.updated_index,
        tasks=tuple(task_from_proto(t) for t in message.tasks),
        execution_order=tuple(message.execution_order),
        critical_path=tuple(message.critical_path),
        state_counts=_state_counts(message.state_counts),
    )


def worker_from_proto(message: api.WorkerStatus) -> WorkerStatus:
    info = message.worker.info
    return WorkerStatus(
        id=info.id,
        state=_WORKER_STATES.get(message.worker.state, WorkerState.UNKNOWN),
        groups=tuple(info.groups),
        labels=dict(info.labels),
        cpu_cores=info.cpu_cores,
        memory_mb=info.memory_mb,
        gpu_count=info.gpu_count,
        capacity=info.capacity,
        hostname=info.hostname,
        address=info.address,
        registered=_time(message.worker.registered_ms),
        state_changed=_time(message.worker.state_changed_ms),
        connected=message.connected,
        last_heartbeat=_time(message.last_heartbeat_ms),
        running=message.running,
        cpu_percent=message.cpu_percent,
        memory_percent=message.memory_percent,
    )


def workers_from_proto(messages: Sequence[api.WorkerStatus]) -> list[WorkerStatus]:
    return [worker_from_proto(m) for m in messages]


def cluster_status_from_proto(message: api.ClusterStatusResponse) -> ClusterStatus:
    return ClusterStatus(
        node_id=message.node_id,
        role=message.role,
        leader_id=message.leader_id,
        leader_address=message.leader_address,
        term=message.term,
        commit_index=message.commit_index,
        applied_index=message.applied_index,
        members=tuple(member_from_proto(m) for m in message.members),
        task_counts=_state_counts(message.task_counts),
        last_index=message.last_index,
        members_view=message.members_view,
        members_view_note=message.members_view_note,
    )


def member_from_proto(m: api.Member) -> Member:
    return Member(
        id=m.id,
        address=m.address,
        voter=m.voter,
        match_index=m.match_index,
        progress_known=m.progress_known,
        reachable=m.reachable,
        contacted=m.contacted,
        last_contact_seconds=m.last_contact_seconds,
        lag=m.lag,
        replication=m.replication,
    )


def lock_from_proto(message: coord.LockInfo) -> Lock:
    return Lock(
        name=message.name,
        owner=message.owner,
        token=message.token,
        granted_at=_time(message.granted_at_ms),
        expires_at=_time(message.expires_at_ms),
        waiters=tuple(message.waiters),
        lock_delay_until=_time(message.lock_delay_until_ms),
    )
