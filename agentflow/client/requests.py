"""Request messages built from SDK arguments (checked here), shared by both clients."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from typing import Any

from agentflow._proto import scheduler_pb2 as api
from agentflow.client import convert
from agentflow.client.errors import InvalidArgumentError
from agentflow.client.models import PriorityLike, TaskSpec, TaskState, Workflow
from agentflow.client.validation import (
    check_id,
    check_list_filter,
    check_text,
    checked_batch,
    checked_request_id,
    checked_workflow,
    parse_priority,
)

MAX_PAGE_SIZE = 1000
_INT64_MAX = 2**63 - 1


def new_request_id() -> str:
    """One id per logical write, kept across its retries."""
    return uuid.uuid4().hex


def _request_id(request_id: str | None) -> str:
    if request_id is None:
        return new_request_id()
    return checked_request_id(request_id)


def task_spec(command: str, **fields: Any) -> TaskSpec:
    """The TaskSpec for `submit(command, **fields)`; None values mean "default".

    Only copies and shapes collections; `validation` checks the values on submit.
    """
    kwargs = {k: v for k, v in fields.items() if v is not None}
    for name in ("labels", "env"):
        if name in kwargs:
            kwargs[name] = dict(kwargs[name])
    if "dependencies" in kwargs:
        deps = kwargs["dependencies"]
        kwargs["dependencies"] = (deps,) if isinstance(deps, str) else tuple(deps)
    return TaskSpec(command, **kwargs)


def submit_tasks(specs: Iterable[TaskSpec], request_id: str | None) -> api.SubmitTasksRequest:
    _, wire = checked_batch(specs)
    return api.SubmitTasksRequest(request_id=_request_id(request_id), tasks=wire)


def submit_workflow(
    workflow: Workflow, request_id: str | None
) -> tuple[api.SubmitWorkflowRequest, Workflow]:
    checked, wire = checked_workflow(workflow)
    return api.SubmitWorkflowRequest(request_id=_request_id(request_id), workflow=wire), checked


def get_task(task_id: str) -> api.GetTaskRequest:
    return api.GetTaskRequest(task_id=check_id(task_id, "task_id"))


def get_workflow(workflow_id: str, include_tasks: bool) -> api.GetWorkflowRequest:
    return api.GetWorkflowRequest(
        workflow_id=check_id(workflow_id, "workflow_id"), include_tasks=include_tasks
    )


def list_tasks(
    states: Iterable[TaskState | str],
    group: str,
    workflow_id: str,
    page_size: int,
    page_token: str = "",
) -> api.ListTasksRequest:
    if isinstance(states, str):
        states = [states]
    parsed = []
    for i, state in enumerate(states):
        try:
            parsed.append(convert.task_state_to_proto(TaskState.parse(state)))
        except ValueError as exc:
            raise InvalidArgumentError(f"states[{i}]", str(exc)) from None
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise InvalidArgumentError("page_size", f"must be a whole number, got {page_size!r}")
    if not 0 < page_size <= MAX_PAGE_SIZE:
        raise InvalidArgumentError("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
    group, workflow_id = check_list_filter(group, workflow_id)
    return api.ListTasksRequest(
        states=parsed,
        group=group,
        workflow_id=workflow_id,
        page_size=page_size,
        page_token=page_token,
    )


def watch_tasks(
    task_ids: Iterable[str] | str,
    workflow_id: str,
    include_progress: bool,
    must_exist: bool = False,
    final_only: bool = False,
    end_when_final: bool = False,
) -> api.WatchTasksRequest:
    ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
    for i, task_id in enumerate(ids):
        check_id(task_id, f"task_ids[{i}]")
    return api.WatchTasksRequest(
        task_ids=ids,
        workflow_id=check_text(workflow_id, "workflow_id"),
        include_progress=include_progress,
        must_exist=must_exist,
        final_only=final_only,
        end_when_final=end_when_final,
    )


def wait_for_task(task_id: str, show_progress: bool) -> api.WatchTasksRequest:
    """The one watch a waiter makes: NOT_FOUND if there is no such task, every change
    or (with nobody to show progress to) only the end, and the master ends the stream
    once the task is final."""
    return watch_tasks(
        [task_id],
        "",
        include_progress=show_progress,
        must_exist=True,
        final_only=not show_progress,
        end_when_final=True,
    )


def cancel(
    task_ids: Iterable[str], workflow_id: str, reason: str, request_id: str | None
) -> api.CancelRequest:
    ids = list(task_ids)
    for i, task_id in enumerate(ids):
        check_id(task_id, f"task_ids[{i}]")
    if not ids and not workflow_id:
        raise InvalidArgumentError("task_ids", "give task ids or a workflow id")
    return api.CancelRequest(
        request_id=_request_id(request_id),
        task_ids=ids,
        workflow_id=check_text(workflow_id, "workflow_id"),
        reason=check_text(reason, "reason"),
    )


def _ids(values: Iterable[str] | str, field: str) -> list[str]:
    ids = [values] if isinstance(values, str) else list(values)
    for i, value in enumerate(ids):
        check_id(value, f"{field}[{i}]")
    return ids


def delete(
    task_ids: Iterable[str] | str,
    workflow_ids: Iterable[str] | str,
    finished_before: float | None,
    request_id: str | None,
) -> api.DeleteRequest:
    request = api.DeleteRequest(
        task_ids=_ids(task_ids, "task_ids"), workflow_ids=_ids(workflow_ids, "workflow_ids")
    )
    if finished_before is not None:
        if (
            isinstance(finished_before, bool)
            or not isinstance(finished_before, int | float)
            or math.isnan(finished_before)
            or finished_before < 0
        ):
            raise InvalidArgumentError(
                "finished_before", f"must be a number of seconds >= 0, got {finished_before!r}"
            )
        age_ms = finished_before * 1000
        if age_ms > _INT64_MAX:
            raise InvalidArgumentError("finished_before", f"too large: {finished_before!r} s")
        request.finished_before_age_ms = round(age_ms)
    elif not request.task_ids and not request.workflow_ids:
        raise InvalidArgumentError("task_ids", "give task ids, workflow ids or finished_before")
    request.request_id = _request_id(request_id)
    return request


def reprioritize(
    task_id: str, priority: PriorityLike, request_id: str | None
) -> api.ReprioritizeRequest:
    level = parse_priority(priority)
    return api.ReprioritizeRequest(
        request_id=_request_id(request_id),
        task_id=check_id(task_id, "task_id"),
        priority=convert.priority_to_proto(level),
    )


def explain(task_id: str) -> api.ExplainRequest:
    return api.ExplainRequest(task_id=check_id(task_id, "task_id"))


def list_workers(group: str) -> api.ListWorkersRequest:
    return api.ListWorkersRequest(group=check_text(group, "group"))


def cluster_status() -> api.ClusterStatusRequest:
    return api.ClusterStatusRequest()
