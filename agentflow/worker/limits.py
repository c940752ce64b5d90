"""Adaptive task limits (the rule is also in docs/workers.md, "Limits").

Computed once at start from the machine's resources:
  max concurrent tasks = min(cpu cores, available memory GB / 2, 10), at least 1
  per-task memory      = 70 % of total memory / max concurrent, within 512-4096 MB
  per-task CPU time    = min(1800, max(300, cpu cores * 60)) seconds
each overridable by WORKER_MAX_CONCURRENT_TASKS, WORKER_TASK_MEMORY_LIMIT_MB and
WORKER_TASK_CPU_TIME_LIMIT_SEC ("0" or empty = computed: 0 means "auto").

Then adjusted while running: concurrency shrinks when CPU stays above 85 % and grows
back when it stays below 50 %, never above the computed (or overridden) maximum and
never below 1; the memory limit for new tasks drops when machine memory is above 80 %.
Everything here is pure: numbers in, numbers out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

ENV_MAX_CONCURRENT = "WORKER_MAX_CONCURRENT_TASKS"
ENV_MEMORY_LIMIT = "WORKER_TASK_MEMORY_LIMIT_MB"
ENV_CPU_TIME_LIMIT = "WORKER_TASK_CPU_TIME_LIMIT_SEC"

MAX_CONCURRENT_CAP = 10
MEMORY_SHARE = 0.7
MEMORY_MIN_MB = 512
MEMORY_MAX_MB = 4096
CPU_TIME_MIN_S = 300
CPU_TIME_MAX_S = 1800
CPU_TIME_PER_CORE_S = 60


@dataclass(frozen=True, slots=True)
class Limits:
    max_concurrent_tasks: int
    task_memory_limit_mb: int
    task_cpu_time_limit_s: int


def max_concurrent(cpu_cores: float, available_memory_mb: int) -> int:
    by_memory = math.floor(available_memory_mb / 1024 / 2)
    return max(1, min(math.floor(cpu_cores), by_memory, MAX_CONCURRENT_CAP))


def task_memory_limit_mb(total_memory_mb: int, concurrency: int) -> int:
    share = int(total_memory_mb * MEMORY_SHARE / max(1, concurrency))
    return min(MEMORY_MAX_MB, max(MEMORY_MIN_MB, share))


def task_cpu_time_limit_s(cpu_cores: float) -> int:
    return min(CPU_TIME_MAX_S, max(CPU_TIME_MIN_S, int(cpu_cores * CPU_TIME_PER_CORE_S)))


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    """A positive integer from `name`; None when unset, empty or "0" (= computed)."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be a positive integer (or 0 for automatic), got {raw}")
    return value or None


def compute_limits(
    cpu_cores: float,
    total_memory_mb: int,
    available_memory_mb: int,
    env: Mapping[str, str] | None = None,
) -> Limits:
    """The start-up limits, env overrides applied.

    An overridden concurrency feeds the memory formula, so WORKER_MAX_CONCURRENT_TASKS=2
    alone gives each task 70 % / 2 of memory. The caller passes the overridden
    resources (`--cpu-cores`, `--memory-mb`); with `--memory-mb` it should also cap
    available memory at that value.
    """
    environ = os.environ if env is None else env
    concurrency = _env_int(environ, ENV_MAX_CONCURRENT) or max_concurrent(
        cpu_cores, available_memory_mb
    )
    memory = _env_int(environ, ENV_MEMORY_LIMIT) or task_memory_limit_mb(
        total_memory_mb, concurrency
    )
    cpu_time = _env_int(environ, ENV_CPU_TIME_LIMIT) or task_cpu_time_limit_s(cpu_cores)
    return Limits(
        max_concurrent_tasks=concurrency,
        task_memory_limit_mb=memory,
        task_cpu_time_limit_s=cpu_time,
    )


def memory_limit_under_pressure(
    base_mb: int, memory_percent: float, threshold: float = 80.0
) -> int:
    """Per-task memory limit for new tasks given machine memory use.

    Above `threshold` % a new task gets three quarters of the base limit, but not less
    than 512 MB unless the base itself was set lower: the point is to leave headroom,
    not to make every task fail.
    """
    if memory_percent <= threshold:
        return base_mb
    return min(base_mb, max(MEMORY_MIN_MB, base_mb * 3 // 4))


@dataclass
class AdaptiveConcurrency:
    """Concurrency that follows CPU load, one step at a time.

    observe() takes one CPU sample (percent, e.g. from each heartbeat) and returns the
    concurrency to use now. A change needs `window` consecutive samples on the same
    side of a threshold (their mean decides), and the window restarts after each
    change, so a single spike never moves it and it cannot flap between two values
    faster than once per window.
    """

    maximum: int
    shrink_above: float = 85.0
    grow_below: float = 50.0
    window: int = 3
    current: int = field(init=False)
    _samples: list[float] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.maximum < 1:
            raise ValueError(f"maximum concurrency must be >= 1, got {self.maximum}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not self.grow_below < self.shrink_above:
            raise ValueError("grow_below must be lower than shrink_above")
        self.current = self.maximum

    def observe(self, cpu_percent: float) -> int:
        if math.isnan(cpu_percent):
            return self.current
        self._samples.append(cpu_percent)
        if len(self._samples) > self.window:
            del self._samples[0]
        if len(self._samples) < self.window:
            return self.current
        mean = sum(self._samples) / len(self._samples)
        if mean > self.shrink_above and self.current > 1:
            self.current -= 1
            self._samples.clear()
        elif mean < self.grow_below and self.current < self.maximum:
            self.current += 1
            self._samples.clear()
        return self.current

    def set_maximum(self, maximum: int) -> int:
        """A new ceiling (the master's set-concurrency); current follows it down."""
        if maximum < 1:
            raise ValueError(f"maximum concurrency must be >= 1, got {maximum}")
        self.maximum = maximum
        self.current = min(self.current, maximum)
        self._samples.clear()
        return self.current
