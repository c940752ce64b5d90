"""task_context(): what a running python task knows about itself and how it reports.

    from agentflow.worker.context import task_context

    def train(epochs: int) -> float:
        ctx = task_context()
        for epoch in range(epochs):
            ...
            ctx.progress((epoch + 1) / epochs, f"epoch {epoch + 1}")
            ctx.log(f"loss {loss:.3f}")
        return loss

Logs are written to the task's stdout (after flushing sys.stdout), so they keep their
place among the task's prints; progress goes to the worker over the pool's socket.

Only `python:` tasks run by a worker's pool have a context; elsewhere (a shell task,
a unit test calling the function directly) task_context() raises RuntimeError. Shell
tasks read AGENTFLOW_TASK_ID and AGENTFLOW_ATTEMPT from the environment instead.

The context is per process: a pool process runs one job at a time and sets it for the
job's duration, so threads started by the task see it too. Calls are thread-safe,
never block on the network (they write to the pool's socket; the worker forwards),
and are ignored once the job is over (a thread the task left running).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentflow.client.lock_requests import DurationLike
    from agentflow.client.sync import AutoRenewLock, Client, LockLease

# Set by the worker for its tasks: the masters it uses, for ctx.client().
MASTER_URL_ENV = "AGENTFLOW_MASTER_URL"

Send = Callable[[dict[str, Any]], None]
WriteLog = Callable[[str], None]


class TaskContext:
    def __init__(self, task_id: str, attempt: int, send: Send, write_log: WriteLog) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self._send = send
        self._write_log = write_log
        self._lock = threading.Lock()
        self._active = True

    def progress(self, fraction: float, message: str = "") -> None:
        """Reports progress in 0..1 (clamped) with an optional message."""
        value = float(fraction)
        if math.isnan(value):
            raise ValueError("progress fraction is NaN")
        self._emit(
            {"type": "progress", "fraction": min(1.0, max(0.0, value)), "message": str(message)}
        )

    def log(self, text: str) -> None:
        """A log line (or lines), streamed with the task's stdout."""
        line = str(text)
        with self._lock:
            if self._active:
                self._write_log(line if line.endswith("\n") else line + "\n")

    def client(self) -> Client:
        """A blocking client to the masters this task's worker uses (one per process,
        kept open; the SDK is imported only by tasks that ask for it)."""
        global _client
        import os

        from agentflow.client.sync import Client

        with self._lock:
            if _client is None:
                _client = Client(os.environ.get(MASTER_URL_ENV) or None)
            return _client

    def lock(self, name: str, ttl: DurationLike, *, wait: DurationLike | None = None) -> LockLease:
        """`with ctx.lock("db", ttl="30s") as lease:` (see `Client.lock`)."""
        return self.client().lock(name, ttl, wait=wait)

    def auto_renew_lock(
        self, name: str, ttl: DurationLike, *, wait: DurationLike | None = None
    ) -> AutoRenewLock:
        """As `lock`, renewed in the background (see `Client.auto_renew_lock`)."""
        return self.client().auto_renew_lock(name, ttl, wait=wait)

    def _emit(self, message: dict[str, Any]) -> None:
        with self._lock:
            if self._active:
                self._send(message)

    def _end(self) -> None:
        with self._lock:
            self._active = False

    def __repr__(self) -> str:
        return f"TaskContext(task_id={self.task_id!r}, attempt={self.attempt})"


# Set by the pool process around each job (agentflow.worker.pool_child); a process
# runs at most one job at a time, so one slot is the whole state.
_current: TaskContext | None = None
_client: Client | None = None


def task_context() -> TaskContext:
    if _current is None:
        raise RuntimeError(
            "task_context() is only available inside a python: task run by an AgentFlow"
            " worker (shell tasks: read AGENTFLOW_TASK_ID and AGENTFLOW_ATTEMPT)"
        )
    return _current


def _enter(context: TaskContext) -> None:
    global _current
    _current = context


def _exit() -> None:
    global _current
    if _current is not None:
        _current._end()
    _current = None
