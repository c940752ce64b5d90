"""Worker views for placement, derived from replicated state and live sessions.

Free resources are what the worker declared minus what its ASSIGNED and RUNNING
tasks require, so the views are exact after any leader change without asking
workers anything: the state already says which tasks each worker holds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from agentflow._proto import state_pb2
from agentflow.scheduler.placement import DEFAULT_GROUP, TaskRequirements, WorkerView
from agentflow.state import SchedulerState

_ONLINE = state_pb2.WORKER_STATE_ONLINE
_DRAINING = state_pb2.WORKER_STATE_DRAINING


def requirements(task: state_pb2.Task) -> TaskRequirements:
    return spec_requirements(task.spec)


def spec_requirements(spec: state_pb2.TaskSpec) -> TaskRequirements:
    return TaskRequirements(
        group=spec.group or DEFAULT_GROUP,
        cpu=spec.cpu,
        memory_mb=spec.memory_mb,
        gpus=spec.gpus,
        labels=dict(spec.labels),
    )


def worker_view(
    worker: state_pb2.Worker,
    held: Collection[state_pb2.Task],
    connected: bool,
    prefetch: int = 0,
) -> WorkerView:
    """`prefetch`: assignments a worker may hold beyond its concurrency. They wait in
    the worker's own queue, so the next task starts when one ends instead of a commit
    round trip later."""
    info = worker.info
    cpu = sum(t.spec.cpu for t in held)
    memory = sum(t.spec.memory_mb for t in held)
    used_gpus = {i for t in held for i in t.gpu_indices}
    return WorkerView(
        worker_id=info.id,
        groups=frozenset(info.groups),
        labels=dict(info.labels),
        cpu_total=info.cpu_cores,
        cpu_free=max(0.0, info.cpu_cores - cpu),
        memory_free_mb=max(0, info.memory_mb - memory),
        memory_total_mb=info.memory_mb,
        gpus_total=info.gpu_count,
        gpus_free_indices=tuple(i for i in range(info.gpu_count) if i not in used_gpus),
        running=len(held),
        capacity=max(0, info.capacity) + max(0, prefetch),
        alive=connected and worker.state in (_ONLINE, _DRAINING),
        draining=worker.state == _DRAINING,
    )


def worker_views(
    state: SchedulerState,
    connected: Mapping[str, object],
    prefetch: Callable[[state_pb2.Worker], int] | None = None,
) -> dict[str, WorkerView]:
    """Views of every worker that is not gone for good (LOST and OFFLINE are left out).
    `prefetch(worker)`: how many assignments it may hold beyond its concurrency."""
    return {
        wid: worker_view(
            w, state.tasks_of_worker(wid), wid in connected, prefetch(w) if prefetch else 0
        )
        for wid, w in state.workers.items()
        if w.state in (_ONLINE, _DRAINING)
    }


def take(view: WorkerView, task: TaskRequirements, gpus: tuple[int, ...]) -> WorkerView:
    """The view after placing `task` on it (for the rest of one dispatch round)."""
    return WorkerView(
        worker_id=view.worker_id,
        groups=view.groups,
        labels=view.labels,
        cpu_total=view.cpu_total,
        cpu_free=view.cpu_free - task.cpu,
        memory_free_mb=view.memory_free_mb - task.memory_mb,
        memory_total_mb=view.memory_total_mb,
        gpus_total=view.gpus_total,
        gpus_free_indices=tuple(i for i in view.gpus_free_indices if i not in gpus),
        running=view.running + 1,
        capacity=view.capacity,
        alive=view.alive,
        draining=view.draining,
    )
