"""Adaptive limits: seed 004's formulas, env overrides, dynamic concurrency."""

from __future__ import annotations

import pytest

from agentflow.worker.limits import (
    ENV_CPU_TIME_LIMIT,
    ENV_MAX_CONCURRENT,
    ENV_MEMORY_LIMIT,
    AdaptiveConcurrency,
    Limits,
    compute_limits,
    max_concurrent,
    memory_limit_under_pressure,
    task_cpu_time_limit_s,
    task_memory_limit_mb,
)

GB = 1024


@pytest.mark.parametrize(
    ("cores", "available_mb", "expected"),
    [
        (8, 64 * GB, 8),  # cores bound
        (16, 64 * GB, 10),  # capped at 10
        (32, 8 * GB, 4),  # memory bound: 8 GB / 2
        (8, 5 * GB, 2),  # 2.5 rounds down
        (4, 1 * GB, 1),  # 0.5 -> at least 1
        (0.5, 64 * GB, 1),  # fractional core -> at least 1
        (2.9, 64 * GB, 2),
    ],
)
def test_max_concurrent(cores: float, available_mb: int, expected: int) -> None:
    assert max_concurrent(cores, available_mb) == expected


@pytest.mark.parametrize(
    ("total_mb", "concurrency", "expected"),
    [
        (16 * GB, 4, int(16 * GB * 0.7 / 4)),  # 2867, within range
        (64 * GB, 2, 4096),  # capped
        (2 * GB, 4, 512),  # floor
        (24 * GB, 2, 4096),
        (8 * GB, 8, 716),
    ],
)
def test_task_memory_limit(total_mb: int, concurrency: int, expected: int) -> None:
    assert task_memory_limit_mb(total_mb, concurrency) == expected


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(1, 300), (2, 300), (5, 300), (6, 360), (16, 960), (30, 1800), (64, 1800)],
)
def test_cpu_time_limit(cores: float, expected: int) -> None:
    assert task_cpu_time_limit_s(cores) == expected


def test_compute_limits_without_overrides() -> None:
    assert compute_limits(4, 16 * GB, 12 * GB, env={}) == Limits(4, 2867, 300)


def test_overridden_concurrency_feeds_the_memory_formula() -> None:
    limits = compute_limits(8, 16 * GB, 16 * GB, env={ENV_MAX_CONCURRENT: "2"})
    assert limits == Limits(2, 4096, 480)
    limits = compute_limits(8, 8 * GB, 16 * GB, env={ENV_MAX_CONCURRENT: "7"})
    assert limits.task_memory_limit_mb == int(8 * GB * 0.7 / 7)


def test_every_override() -> None:
    env = {ENV_MAX_CONCURRENT: "5", ENV_MEMORY_LIMIT: "1024", ENV_CPU_TIME_LIMIT: "600"}
    assert compute_limits(2, 4 * GB, 1 * GB, env=env) == Limits(5, 1024, 600)


def test_overrides_are_not_clamped() -> None:
    # The formula's bounds are for the automatic values; an operator may go outside.
    env = {ENV_MAX_CONCURRENT: "20", ENV_MEMORY_LIMIT: "256", ENV_CPU_TIME_LIMIT: "60"}
    assert compute_limits(2, 4 * GB, 1 * GB, env=env) == Limits(20, 256, 60)


@pytest.mark.parametrize("value", ["", "0", "  "])
def test_empty_or_zero_means_automatic(value: str) -> None:
    env = {ENV_MAX_CONCURRENT: value, ENV_MEMORY_LIMIT: value, ENV_CPU_TIME_LIMIT: value}
    assert compute_limits(4, 16 * GB, 12 * GB, env=env) == Limits(4, 2867, 300)


@pytest.mark.parametrize("name", [ENV_MAX_CONCURRENT, ENV_MEMORY_LIMIT, ENV_CPU_TIME_LIMIT])
@pytest.mark.parametrize("value", ["abc", "1.5", "-3", "10MB"])
def test_bad_env_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be a positive integer"):
        compute_limits(4, 16 * GB, 12 * GB, env={name: value})


def test_compute_limits_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_CPU_TIME_LIMIT, "42")
    assert compute_limits(4, 16 * GB, 12 * GB).task_cpu_time_limit_s == 42


def test_memory_pressure_lowers_the_limit_for_new_tasks() -> None:
    assert memory_limit_under_pressure(2048, 50.0) == 2048
    assert memory_limit_under_pressure(2048, 80.0) == 2048
    assert memory_limit_under_pressure(2048, 90.0) == 1536
    assert memory_limit_under_pressure(600, 90.0) == 512  # not below the formula's floor
    assert memory_limit_under_pressure(256, 90.0) == 256  # an operator's lower limit stays


def feed(adaptive: AdaptiveConcurrency, samples: list[float]) -> list[int]:
    return [adaptive.observe(s) for s in samples]


def test_adaptive_starts_at_the_maximum_and_shrinks_above_85() -> None:
    adaptive = AdaptiveConcurrency(maximum=4)
    assert adaptive.current == 4
    assert feed(adaptive, [90, 95, 99]) == [4, 4, 3]
    assert feed(adaptive, [90, 95, 99]) == [3, 3, 2]


def test_adaptive_never_below_one() -> None:
    adaptive = AdaptiveConcurrency(maximum=2, window=1)
    assert feed(adaptive, [100, 100, 100, 100]) == [1, 1, 1, 1]


def test_adaptive_grows_below_50_up_to_the_maximum() -> None:
    adaptive = AdaptiveConcurrency(maximum=3, window=1)
    feed(adaptive, [100, 100])
    assert adaptive.current == 1
    assert feed(adaptive, [10, 10, 10, 10]) == [2, 3, 3, 3]


def test_adaptive_holds_between_thresholds() -> None:
    adaptive = AdaptiveConcurrency(maximum=3, window=1)
    feed(adaptive, [100])
    assert feed(adaptive, [50, 70, 85]) == [2, 2, 2]


def test_adaptive_ignores_a_single_spike() -> None:
    adaptive = AdaptiveConcurrency(maximum=4)
    assert feed(adaptive, [20, 100, 20, 30, 100]) == [4, 4, 4, 4, 4]


def test_adaptive_uses_the_window_mean() -> None:
    adaptive = AdaptiveConcurrency(maximum=4)
    # mean of (100, 100, 60) = 86.7 > 85: one step down.
    assert feed(adaptive, [100, 100, 60]) == [4, 4, 3]


def test_adaptive_ignores_nan() -> None:
    adaptive = AdaptiveConcurrency(maximum=4, window=1)
    assert adaptive.observe(float("nan")) == 4


def test_set_maximum_pulls_current_down_and_caps_growth() -> None:
    adaptive = AdaptiveConcurrency(maximum=6, window=1)
    assert adaptive.set_maximum(3) == 3
    assert feed(adaptive, [10, 10]) == [3, 3]
    adaptive.set_maximum(5)
    assert feed(adaptive, [10, 10, 10]) == [4, 5, 5]


@pytest.mark.parametrize(
    "kwargs",
    [{"maximum": 0}, {"maximum": 2, "window": 0}, {"maximum": 2, "grow_below": 90.0}],
)
def test_adaptive_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveConcurrency(**kwargs)  # type: ignore[arg-type]


def test_set_maximum_rejects_zero() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        AdaptiveConcurrency(maximum=2).set_maximum(0)
