"""Python task functions for tests and benchmarks (`python:agentflow.worker.testing_tasks:noop`).

They live in the package, not under tests/, so that any pool process can import them
whatever its working directory or PYTHONPATH.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from agentflow.worker.context import task_context


def noop() -> None:
    return None


def add(a: float, b: float) -> float:
    return a + b


def describe(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


def whoami() -> dict[str, Any]:
    """What the task sees of itself: context, environment, pid, cwd."""
    ctx = task_context()
    return {
        "task_id": ctx.task_id,
        "attempt": ctx.attempt,
        "env_task_id": os.environ.get("AGENTFLOW_TASK_ID"),
        "env_attempt": os.environ.get("AGENTFLOW_ATTEMPT"),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "extra": os.environ.get("AGENTFLOW_TEST_EXTRA"),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
    }


def fail(message: str = "boom") -> None:
    raise ValueError(message)


def crash(code: int = 3) -> None:
    """Ends the pool process without a result, as a segfaulting extension would."""
    sys.stdout.flush()
    os._exit(code)


def allocate(mb: int) -> int:
    """Allocates and touches `mb` MB; returns the size it got."""
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block) // 2**20


def spin(seconds: float) -> int:
    """Burns CPU for `seconds` of wall time."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def chatty(lines: int = 3) -> int:
    """Prints to stdout and stderr and reports progress and logs through the context."""
    ctx = task_context()
    for i in range(lines):
        print(f"out {i}")
        print(f"err {i}", file=sys.stderr)
        ctx.progress((i + 1) / lines, f"step {i + 1}")
    ctx.log("context log line")
    return lines


def spawn_sleepers(pid_file: str) -> None:
    """Starts two `sleep 600` children, writes their pids, then sleeps: a cancel test."""
    import subprocess

    children = [subprocess.Popen(["sleep", "600"]) for _ in range(2)]
    with open(pid_file, "w") as f:
        f.write(" ".join(str(c.pid) for c in [*children]) + f" {os.getpid()}\n")
    time.sleep(600)


def leave_thread() -> int:
    """Returns with a thread still running: the process must not be reused."""
    import threading

    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    return os.getpid()


async def async_add(a: float, b: float) -> float:
    return a + b


def unserializable() -> object:
    return {1, 2}


class RecordingReporter:
    """A Reporter that keeps every call, for tests and benchmarks."""

    def __init__(self) -> None:
        self.progress_calls: list[tuple[str, int, float, str]] = []
        self.log_calls: list[tuple[str, int, str, str]] = []

    def progress(self, task_id: str, attempt: int, fraction: float, message: str) -> None:
        self.progress_calls.append((task_id, attempt, fraction, message))

    def log(self, task_id: str, attempt: int, stream: str, text: str) -> None:
        self.log_calls.append((task_id, attempt, stream, text))

    def text(self, stream: str) -> str:
        return "".join(call[3] for call in self.log_calls if call[2] == stream)


def journal(path: str, sleep: float = 0.0) -> dict[str, Any]:
    """Run, then append one JSON line saying so to `path` (O_APPEND: one write per
    line, so concurrent tasks never interleave). An attempt killed before the end
    writes nothing: the journal lists only executions that ran to completion."""
    import json

    ctx = task_context()
    start = time.time()
    if sleep:
        time.sleep(sleep)
    line = {
        "task_id": ctx.task_id,
        "attempt": ctx.attempt,
        "worker": os.environ.get("AGENTFLOW_WORKER_ID", ""),
        "pid": os.getpid(),
        "start": start,
        "end": time.time(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)
    return {"attempt": ctx.attempt}
