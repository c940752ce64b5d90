"""What the executor is given, whom it reports to, and what it returns.

Re-exported by agentflow.worker.executor, which is where callers import them from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

SHELL_PREFIX = "shell:"
PYTHON_PREFIX = "python:"

# Exit codes of outcomes that did not come from a process's own exit status.
EXIT_OK = 0
EXIT_EXCEPTION = 1  # a python task raised
EXIT_BAD_REQUEST = 2  # malformed command or args: never started
EXIT_NOT_STARTED = 127  # the process could not be started (missing cwd, exec failure)


@dataclass(frozen=True, slots=True)
class TaskRun:
    """One attempt of one task, as the connection hands it to the executor."""

    task_id: str
    attempt: int
    command: str  # "shell:<cmd>" or "python:<module>:<function>"
    args_json: str = ""  # JSON array (positional) or object (keywords); "" = no args
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = ""  # "" = the worker's working directory
    timeout_s: float | None = None
    gpu_indices: tuple[int, ...] = ()
    memory_limit_mb: int | None = None
    cpu_time_limit_s: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.attempt)


class Reporter(Protocol):
    """Implemented by the connection. Called on the event loop; must not block."""

    def progress(self, task_id: str, attempt: int, fraction: float, message: str) -> None: ...

    def log(self, task_id: str, attempt: int, stream: str, text: str) -> None:
        """`stream` is "stdout" or "stderr"; `text` is a batch of lines (the batches of
        one stream, concatenated, are the stream)."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended. exit_code: the process's status (negative = killed by
    that signal), or 0 / 1 (python task returned / raised), 2 (bad command or args,
    never started), 127 (could not start)."""

    success: bool
    exit_code: int
    stdout_tail: str  # last ~4 KB
    stderr_tail: str
    value_json: str = ""  # a python task's JSON-encoded return value
    error: str = ""  # why it failed, one line


def failed(exit_code: int, error: str) -> Outcome:
    return Outcome(success=False, exit_code=exit_code, stdout_tail="", stderr_tail="", error=error)


def task_env(run: TaskRun, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a task: the worker's, the task's own, then ours on top.

    CUDA_VISIBLE_DEVICES is set only when GPUs are assigned; otherwise whatever the
    worker was started with passes through unchanged.
    """
    env = dict(os.environ if base is None else base)
    env.update(run.env)
    env["AGENTFLOW_TASK_ID"] = run.task_id
    env["AGENTFLOW_ATTEMPT"] = str(run.attempt)
    if run.gpu_indices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in run.gpu_indices)
    return env


def format_seconds(seconds: float) -> str:
    return f"{seconds:g} s"
