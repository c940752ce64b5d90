"""Placement shapes: which queued tasks placement cannot tell apart.

The ready queue keeps one lane per (group, shape) (see ready_queue.py); a dispatch
round gives up on a lane at its first task that does not fit, so a shape must hold
everything `place` looks at, and nothing else (priority and age order the lane).
"""

from __future__ import annotations

from collections.abc import Iterable

from agentflow._proto import state_pb2
from agentflow.scheduler.placement import DEFAULT_GROUP, TaskRequirements, WorkerView

# (cpu, memory_mb, gpus, sorted labels)
Shape = tuple[float, int, int, tuple[tuple[str, str], ...]]


def group_and_shape(spec: state_pb2.TaskSpec) -> tuple[str, Shape]:
    labels = tuple(sorted(spec.labels.items())) if spec.labels else ()
    return spec.group or DEFAULT_GROUP, (spec.cpu, spec.memory_mb, spec.gpus, labels)


def shape_requirements(group: str, shape: Shape) -> TaskRequirements:
    cpu, memory_mb, gpus, labels = shape
    return TaskRequirements(
        group=group, cpu=cpu, memory_mb=memory_mb, gpus=gpus, labels=dict(labels)
    )


def could_ever_fit(req: TaskRequirements, workers: Iterable[WorkerView]) -> bool:
    """Whether some usable worker of the task's group could take it once idle: its
    totals and labels suffice. If none can, waiting for room is pointless until the
    workers change (one registers, leaves, or is drained)."""
    return any(
        req.group in w.groups
        and w.capacity > 0
        and w.cpu_total >= req.cpu
        and w.memory_total_mb >= req.memory_mb
        and w.gpus_total >= req.gpus
        and all(w.labels.get(k) == v for k, v in req.labels.items())
        for w in workers
    )


def groups_with_room(workers: Iterable[WorkerView]) -> set[str]:
    return {g for w in workers if w.running < w.capacity for g in w.groups}
