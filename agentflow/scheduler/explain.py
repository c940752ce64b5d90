"""Why a task is where it is, in words, for `agentflow explain`."""

from __future__ import annotations

import datetime as dt

from agentflow._proto import state_pb2
from agentflow.scheduler.placement import explain as placement_reasons
from agentflow.scheduler.ready_queue import Priority
from agentflow.scheduler.service import Scheduler
from agentflow.scheduler.views import requirements

TS = state_pb2.TaskState


def _short(task_id: str, workflow_id: str) -> str:
    prefix = f"{workflow_id}/"
    return task_id[len(prefix) :] if workflow_id and task_id.startswith(prefix) else task_id


def _clock(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%H:%M:%S UTC")


def _seconds(ms: int) -> str:
    s = max(0, ms) / 1000
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"


def explain(scheduler: Scheduler, task: state_pb2.Task) -> list[str]:
    """Reasons, most important first. Needs the leader's scheduler (queue, sessions)."""
    state = scheduler.state
    now_ms = scheduler.proposer.now_ms()
    name = TS.Name(task.state).removeprefix("TASK_STATE_").lower()
    attempts = task.spec.max_retries + 1
    if task.state == TS.TASK_STATE_SUCCEEDED:
        return [f"succeeded on {task.worker_id or 'a worker'} (attempt {task.attempt})"]
    if task.state in (TS.TASK_STATE_FAILED, TS.TASK_STATE_CANCELLED, TS.TASK_STATE_SKIPPED):
        why = task.result.error or (task.errors[-1] if task.errors else "")
        return [f"{name}: {why}" if why else name]
    if task.state == TS.TASK_STATE_RUNNING:
        line = f"running on {task.worker_id} (attempt {task.attempt} of {attempts})"
        if task.started_ms:
            line += f" for {_seconds(now_ms - task.started_ms)}"
        if task.progress:
            line += f", {task.progress:.0%} done"
            if task.progress_message:
                line += f": {task.progress_message}"
        return [line]
    if task.state == TS.TASK_STATE_ASSIGNED:
        connected = scheduler.usage(task.worker_id) is not None
        line = f"assigned to {task.worker_id} (attempt {task.attempt}), waiting for it to start"
        return [line] if connected else [line, f"worker {task.worker_id} is not connected"]
    blocking = state.blocking(task.id)
    if blocking:
        shown = ", ".join(_short(t, task.workflow_id) for t in blocking[:5])
        more = f" and {len(blocking) - 5} more" if len(blocking) > 5 else ""
        return [f"waiting on {shown}{more}"]
    reasons: list[str] = []
    if task.state == TS.TASK_STATE_PENDING and task.not_before_ms > now_ms:
        reasons.append(
            f"retry: attempt {task.attempt + 1} of {attempts} not before "
            f"{_clock(task.not_before_ms)} (in {_seconds(task.not_before_ms - now_ms)})"
        )
        if task.errors:
            reasons.append(f"last failure: {task.errors[-1]}")
    reasons.extend(placement_reasons(requirements(task), scheduler.views().values()))
    if task.id in scheduler.queue:
        ahead, level = scheduler.queue.position(task.id, now_ms / 1000)
        queued = f"queued: {ahead} task{'s' if ahead != 1 else ''} ahead at {level.name}"
        if level != Priority(task.priority):
            queued += f" (aged up from {Priority(task.priority).name})"
        reasons.append(queued)
    elif not reasons:
        reasons.append(f"{name}; the scheduler will place it in its next round")
    return reasons
