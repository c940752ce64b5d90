"""Placement: fitting, least-loaded choice, GPU indices, and explain's reasons."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow.scheduler.placement import (
    Placement,
    TaskRequirements,
    WorkerView,
    explain,
    fitting_workers,
    place,
)


def worker(
    worker_id: str = "w1",
    *,
    groups: tuple[str, ...] = ("default",),
    labels: dict[str, str] | None = None,
    cpu: float = 8.0,
    cpu_free: float | None = None,
    memory_mb: int = 16384,
    memory_free_mb: int | None = None,
    gpus: tuple[int, ...] = (),
    gpus_total: int | None = None,
    running: int = 0,
    capacity: int = 4,
    alive: bool = True,
    draining: bool = False,
) -> WorkerView:
    return WorkerView(
        worker_id=worker_id,
        groups=frozenset(groups),
        labels=labels or {},
        cpu_total=cpu,
        cpu_free=cpu if cpu_free is None else cpu_free,
        memory_free_mb=memory_mb if memory_free_mb is None else memory_free_mb,
        memory_total_mb=memory_mb,
        gpus_total=len(gpus) if gpus_total is None else gpus_total,
        gpus_free_indices=gpus,
        running=running,
        capacity=capacity,
        alive=alive,
        draining=draining,
    )


# ----- place -----


def test_default_task_on_default_worker() -> None:
    assert place(TaskRequirements(), [worker()]) == Placement("w1", ())
    assert explain(TaskRequirements(), [worker()]) == []


def test_least_loaded_by_ratio_then_cpu_then_id() -> None:
    workers = [
        worker("a", running=2, capacity=4),  # 0.5
        worker("b", running=1, capacity=4),  # 0.25
        worker("c", running=2, capacity=8, cpu_free=4.0),  # 0.25, less cpu free than b
    ]
    assert place(TaskRequirements(), workers) == Placement("b", ())
    tie = [worker("z", running=1, capacity=2), worker("y", running=2, capacity=4)]
    assert place(TaskRequirements(), tie) == Placement("y", ())  # exact tie -> id
    assert [w.worker_id for w in fitting_workers(TaskRequirements(), workers)] == ["b", "c", "a"]


def test_skips_dead_draining_full_and_wrong_group() -> None:
    workers = [
        worker("dead", alive=False),
        worker("drain", draining=True),
        worker("full", running=4, capacity=4),
        worker("other", groups=("batch",)),
        worker("ok", running=3, capacity=4),
    ]
    assert place(TaskRequirements(), workers) == Placement("ok", ())


def test_multi_group_worker_serves_each_group() -> None:
    both = worker("both", groups=("gpu", "default"), gpus=(0,))
    assert place(TaskRequirements(group="gpu", gpus=1), [both]) == Placement("both", (0,))
    assert place(TaskRequirements(), [both]) == Placement("both", ())
    assert place(TaskRequirements(group="cpu"), [both]) is None


def test_gpu_indices_are_lowest_free() -> None:
    w = worker("g", groups=("gpu",), gpus=(5, 1, 3, 2), gpus_total=8)
    assert place(TaskRequirements(group="gpu", gpus=2), [w]) == Placement("g", (1, 2))
    assert place(TaskRequirements(group="gpu", gpus=4), [w]) == Placement("g", (1, 2, 3, 5))
    assert place(TaskRequirements(group="gpu", gpus=5), [w]) is None


def test_resources_and_labels_must_fit() -> None:
    small = worker("small", cpu=2.0, memory_mb=2048, labels={"zone": "us"})
    big = worker("big", cpu=16.0, memory_mb=65536, labels={"zone": "eu"}, running=3)
    assert place(TaskRequirements(cpu=4.0), [small, big]) == Placement("big", ())
    assert place(TaskRequirements(memory_mb=4096), [small, big]) == Placement("big", ())
    assert place(TaskRequirements(labels={"zone": "us"}), [small, big]) == Placement("small", ())
    assert place(TaskRequirements(labels={"zone": "ap"}), [small, big]) is None
    # Exactly full resources still fit.
    assert place(TaskRequirements(cpu=2.0, memory_mb=2048), [small]) == Placement("small", ())


def test_negative_requirements_rejected() -> None:
    with pytest.raises(ValueError, match="memory_mb"):
        TaskRequirements(memory_mb=-1)


# ----- explain -----


def test_explain_no_workers_and_none_live() -> None:
    assert explain(TaskRequirements(), []) == [
        "no live worker in group 'default' (no workers are connected)"
    ]
    reasons = explain(TaskRequirements(), [worker("a", alive=False), worker("b", draining=True)])
    assert reasons == ["no live worker in group 'default' (1 lost, 1 draining)"]


def test_explain_no_live_worker_in_group() -> None:
    workers = [worker("a", groups=("default", "cpu")), worker("g", groups=("gpu",), alive=False)]
    reasons = explain(TaskRequirements(group="gpu"), workers)
    assert reasons == ["no live worker in group 'gpu' (live groups: cpu, default)"]


def test_explain_gpu_shortfall_largest_vs_busy() -> None:
    one = worker("g1", groups=("gpu",), gpus=(0,))
    task = TaskRequirements(group="gpu", gpus=2)
    assert explain(task, [one]) == ["needs 2 GPUs; the largest worker in group 'gpu' has 1"]
    busy = worker("g4", groups=("gpu",), gpus=(3,), gpus_total=4)
    assert explain(task, [one, busy]) == [
        "needs 2 GPUs; the most free on any worker in group 'gpu' is 1"
    ]


def test_explain_memory_and_cpu_shortfall() -> None:
    w = worker("a", cpu=4.0, cpu_free=1.5, memory_mb=16384, memory_free_mb=4096)
    reasons = explain(TaskRequirements(cpu=2.0, memory_mb=8192), [w])
    assert reasons == [
        "needs 2 CPU cores; the most free on any worker in group 'default' is 1.5",
        "needs 8192 MB memory; the most free on any worker in group 'default' is 4096 MB",
    ]
    reasons = explain(TaskRequirements(memory_mb=32768), [w])
    assert reasons == ["needs 32768 MB memory; the largest worker in group 'default' has 16384 MB"]


def test_explain_missing_label() -> None:
    w = worker("a", labels={"zone": "us", "disk": "ssd"})
    reasons = explain(TaskRequirements(labels={"zone": "eu", "disk": "ssd"}), [w])
    assert reasons == ["no worker in group 'default' has label zone=eu"]


def test_explain_requirements_not_met_together() -> None:
    # One worker has the label, another the memory: each alone is satisfiable.
    workers = [
        worker("a", labels={"zone": "eu"}, memory_mb=1024),
        worker("b", labels={"zone": "us"}, memory_mb=8192),
    ]
    task = TaskRequirements(memory_mb=4096, labels={"zone": "eu"})
    assert place(task, workers) is None
    assert explain(task, workers) == [
        "no single worker in group 'default' meets all requirements at once "
        "(4096 MB memory, label zone=eu)"
    ]


def test_explain_all_fitting_at_capacity() -> None:
    workers = [worker(f"w{i}", running=2, capacity=2) for i in range(3)]
    workers.append(worker("tiny", memory_mb=10))  # free slot, but does not fit
    task = TaskRequirements(memory_mb=1024)
    assert explain(task, workers) == ["all 3 fitting workers are at capacity"]
    assert explain(task, workers[:1]) == ["the only fitting worker (w0) is at capacity"]


# ----- property: place and explain agree -----

_WORKERS = st.lists(
    st.builds(
        worker,
        st.sampled_from(["a", "b", "c", "d"]),
        groups=st.sampled_from([("default",), ("gpu",), ("default", "gpu")]),
        labels=st.sampled_from([{}, {"zone": "eu"}, {"zone": "us"}]),
        cpu=st.sampled_from([2.0, 8.0]),
        cpu_free=st.sampled_from([0.0, 1.0, 2.0]),
        memory_free_mb=st.sampled_from([0, 1024, 4096]),
        gpus=st.sampled_from([(), (0,), (1, 0)]),
        running=st.integers(0, 3),
        capacity=st.integers(0, 3),
        alive=st.booleans(),
        draining=st.booleans(),
    ),
    max_size=5,
    unique_by=lambda w: w.worker_id,
)
_TASKS = st.builds(
    TaskRequirements,
    group=st.sampled_from(["default", "gpu"]),
    cpu=st.sampled_from([0.0, 1.0, 2.0]),
    memory_mb=st.sampled_from([0, 1024, 2048]),
    gpus=st.integers(0, 2),
    labels=st.sampled_from([{}, {"zone": "eu"}]),
)


@settings(max_examples=300, deadline=None)
@given(_TASKS, _WORKERS)
def test_place_succeeds_iff_explain_is_empty(
    task: TaskRequirements, workers: list[WorkerView]
) -> None:
    placement = place(task, workers)
    assert (placement is None) == bool(explain(task, workers))
    if placement is not None:
        chosen = next(w for w in workers if w.worker_id == placement.worker_id)
        assert len(placement.gpu_indices) == task.gpus
        assert set(placement.gpu_indices) <= set(chosen.gpus_free_indices)
        # Order of the worker list never changes the choice.
        assert place(task, list(reversed(workers))) == placement


def test_views_are_immutable_snapshots() -> None:
    w = worker()
    with pytest.raises(AttributeError):
        w.running = 3  # type: ignore[misc]
    assert replace(w, running=3).running == 3
