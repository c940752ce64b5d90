"""Placement: which worker runs a task, and why none can.

Pure functions over snapshots (`WorkerView`) the leader builds from replicated state
and heartbeats; nothing here mutates a worker. The caller commits the choice and then
updates its views (free resources, running count) before placing the next task.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

DEFAULT_GROUP = "default"


@dataclass(frozen=True, slots=True)
class TaskRequirements:
    """What a task needs. Zero means "does not care"; labels must match exactly."""

    group: str = DEFAULT_GROUP
    cpu: float = 0.0
    memory_mb: int = 0
    gpus: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("cpu", "memory_mb", "gpus"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class WorkerView:
    """A worker as the scheduler sees it at one moment."""

    worker_id: str
    groups: frozenset[str]
    labels: Mapping[str, str]
    cpu_total: float
    cpu_free: float
    memory_free_mb: int
    memory_total_mb: int
    gpus_total: int
    gpus_free_indices: tuple[int, ...]
    running: int
    capacity: int
    alive: bool = True
    draining: bool = False


@dataclass(frozen=True, slots=True)
class Placement:
    """Chosen worker and the concrete GPUs to expose (CUDA_VISIBLE_DEVICES), ascending."""

    worker_id: str
    gpu_indices: tuple[int, ...] = ()


def _usable(w: WorkerView) -> bool:
    return w.alive and not w.draining


def _fits_resources(task: TaskRequirements, w: WorkerView) -> bool:
    """Resources and labels, but not the capacity slot (explain reports that apart)."""
    return (
        w.cpu_free >= task.cpu
        and w.memory_free_mb >= task.memory_mb
        and len(w.gpus_free_indices) >= task.gpus
        and all(w.labels.get(k) == v for k, v in task.labels.items())
    )


def _has_slot(w: WorkerView) -> bool:
    return w.running < w.capacity


def _load_key(w: WorkerView) -> tuple[Fraction, float, int, str]:
    # Fraction, not float: 1/3 vs 2/6 must tie exactly so the tie-break is by data, not
    # rounding. _has_slot guarantees capacity >= 1 here. Then most free CPU, most free
    # memory, and the worker id so equal workers always resolve the same way.
    return (Fraction(w.running, w.capacity), -w.cpu_free, -w.memory_free_mb, w.worker_id)


def fitting_workers(task: TaskRequirements, workers: Iterable[WorkerView]) -> list[WorkerView]:
    """Workers that could start the task now, least loaded first."""
    fits = [
        w
        for w in workers
        if _usable(w) and task.group in w.groups and _fits_resources(task, w) and _has_slot(w)
    ]
    return sorted(fits, key=_load_key)


def place(task: TaskRequirements, workers: Iterable[WorkerView]) -> Placement | None:
    """The least-loaded fitting worker and its lowest free GPU indices, or None."""
    fits = fitting_workers(task, workers)
    if not fits:
        return None
    chosen = fits[0]
    # Lowest indices first: deterministic, and keeps low-numbered devices packed.
    gpus = tuple(sorted(chosen.gpus_free_indices)[: task.gpus])
    return Placement(chosen.worker_id, gpus)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _shortfall(
    what: str, need: str, best_free: str, best_total: str, total_short: bool, scope: str
) -> str:
    # Say "largest" when no worker could ever fit (the task must change, or the pool
    # must grow), and "most free" when it is only busy right now (it will wait).
    if total_short:
        return f"needs {need}{what}; the largest worker{scope} has {best_total}"
    return f"needs {need}{what}; the most free on any worker{scope} is {best_free}"


def explain(task: TaskRequirements, workers: Iterable[WorkerView]) -> list[str]:
    """Human reasons why `task` cannot be placed now; empty if `place` would succeed.

    Reasons narrow like a funnel: liveness, then group, then each resource on its own
    (so the message names the real constraint), then the combination, then capacity.
    """
    all_workers = list(workers)
    if not all_workers:
        return [f"no live worker in group '{task.group}' (no workers are connected)"]
    usable = [w for w in all_workers if _usable(w)]
    if not usable:
        draining = sum(1 for w in all_workers if w.alive and w.draining)
        dead = len(all_workers) - draining
        return [f"no live worker in group '{task.group}' ({dead} lost, {draining} draining)"]
    in_group = [w for w in usable if task.group in w.groups]
    if not in_group:
        served = sorted({g for w in usable for g in w.groups})
        return [f"no live worker in group '{task.group}' (live groups: {', '.join(served)})"]

    scope = f" in group '{task.group}'"
    reasons: list[str] = []
    if task.cpu > 0:
        best_free = max(w.cpu_free for w in in_group)
        best_total = max(w.cpu_total for w in in_group)
        if best_free < task.cpu:
            reasons.append(
                _shortfall(
                    " CPU cores",
                    f"{task.cpu:g}",
                    f"{best_free:g}",
                    f"{best_total:g}",
                    best_total < task.cpu,
                    scope,
                )
            )
    if task.memory_mb > 0:
        best_free_mb = max(w.memory_free_mb for w in in_group)
        best_total_mb = max(w.memory_total_mb for w in in_group)
        if best_free_mb < task.memory_mb:
            reasons.append(
                _shortfall(
                    " MB memory",
                    str(task.memory_mb),
                    f"{best_free_mb} MB",
                    f"{best_total_mb} MB",
                    best_total_mb < task.memory_mb,
                    scope,
                )
            )
    if task.gpus > 0:
        best_free_gpus = max(len(w.gpus_free_indices) for w in in_group)
        best_total_gpus = max(w.gpus_total for w in in_group)
        if best_free_gpus < task.gpus:
            reasons.append(
                _shortfall(
                    "",
                    _plural(task.gpus, "GPU"),
                    str(best_free_gpus),
                    str(best_total_gpus),
                    best_total_gpus < task.gpus,
                    scope,
                )
            )
    for key, value in sorted(task.labels.items()):
        if not any(w.labels.get(key) == value for w in in_group):
            reasons.append(f"no worker{scope} has label {key}={value}")
    if reasons:
        return reasons

    fitting = [w for w in in_group if _fits_resources(task, w)]
    if not fitting:
        return [f"no single worker{scope} meets all requirements at once ({_describe(task)})"]
    if not any(_has_slot(w) for w in fitting):
        if len(fitting) == 1:
            return [f"the only fitting worker ({fitting[0].worker_id}) is at capacity"]
        return [f"all {len(fitting)} fitting workers are at capacity"]
    return []


def _describe(task: TaskRequirements) -> str:
    parts: list[str] = []
    if task.cpu > 0:
        parts.append(f"{task.cpu:g} CPU cores")
    if task.memory_mb > 0:
        parts.append(f"{task.memory_mb} MB memory")
    if task.gpus > 0:
        parts.append(_plural(task.gpus, "GPU"))
    parts.extend(f"label {k}={v}" for k, v in sorted(task.labels.items()))
    return ", ".join(parts)
