"""The executor: runs task attempts in child processes and says how they ended.

The connection calls run() once per assigned attempt (concurrently, as many as the
worker's concurrency allows: the executor itself does not queue or limit), cancel()
when the master cancels, and close() on shutdown. Task failures of every kind come
back as an Outcome; run() raises only for caller errors (an attempt already running,
a closed executor) and for its own cancellation, after killing the process.

Kinds of command:
  shell:<command>               /bin/sh -c <command> (agentflow.worker.shell_runner)
  python:<module>:<function>    <function>(*args) or (**kwargs) from args_json, on a
                                warm pool process (agentflow.worker.python_pool)
"""

from __future__ import annotations

import asyncio
import sys

import structlog

from agentflow.worker.attempt import Stop, cancel_quietly
from agentflow.worker.process_groups import Unguarded
from agentflow.worker.python_pool import PythonPool, run_python
from agentflow.worker.runs import (
    EXIT_BAD_REQUEST,
    PYTHON_PREFIX,
    SHELL_PREFIX,
    Outcome,
    Reporter,
    TaskRun,
    failed,
)
from agentflow.worker.shell_runner import run_shell

__all__ = ["Executor", "Outcome", "Reporter", "TaskRun"]

log = structlog.get_logger(__name__)

CANCELLED = "cancelled"
SHUTTING_DOWN = "cancelled: worker shutting down"


class Executor:
    """Runs attempts; owns every process it starts until the attempt's run() returns.

    Args:
        python_pool_size: idle warm python processes kept ready.
        log_batch_bytes / log_batch_seconds: a log batch goes to the reporter when it
            reaches this size, or after this long.
        kill_grace_s: between SIGTERM and SIGKILL when a task is cancelled or times out.
        python: the interpreter of the pool processes.
        groups: told of every process group started and ended (the worker's guardian
            kills what is left of them if the worker dies).
        pythonpath: directories put first on the pool processes' sys.path.
    """

    def __init__(
        self,
        python_pool_size: int = 2,
        log_batch_bytes: int = 16384,
        log_batch_seconds: float = 0.2,
        *,
        kill_grace_s: float = 2.0,
        python: str = sys.executable,
        groups: Unguarded | None = None,
        pythonpath: tuple[str, ...] = (),
    ) -> None:
        if log_batch_bytes <= 0 or log_batch_seconds <= 0:
            raise ValueError("log batch size and period must be positive")
        self._batch_bytes = log_batch_bytes
        self._batch_s = log_batch_seconds
        self._grace_s = kill_grace_s
        self.groups = groups if groups is not None else Unguarded()
        self._pool = PythonPool(python_pool_size, kill_grace_s, python, self.groups, pythonpath)
        self._active: dict[tuple[str, int], Stop] = {}
        self._finished: dict[tuple[str, int], asyncio.Event] = {}
        self._closed = False

    @property
    def pool(self) -> PythonPool:
        return self._pool

    async def start(self) -> None:
        """Warms the python pool (returns once its processes are ready)."""
        await self._pool.start()

    async def run(self, run: TaskRun, reporter: Reporter) -> Outcome:
        if self._closed:
            raise RuntimeError("executor is closed")
        if run.key in self._active:
            raise ValueError(f"task {run.task_id} attempt {run.attempt} is already running")
        stop = Stop()
        self._active[run.key] = stop
        self._finished[run.key] = finished = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = None if run.timeout_s is None else loop.time() + run.timeout_s
        try:
            if run.command.startswith(SHELL_PREFIX):
                return await run_shell(
                    run,
                    reporter,
                    stop,
                    deadline,
                    self._batch_bytes,
                    self._batch_s,
                    self._grace_s,
                    self.groups,
                )
            if run.command.startswith(PYTHON_PREFIX):
                return await run_python(
                    self._pool, run, reporter, stop, deadline, self._batch_bytes, self._batch_s
                )
            return failed(
                EXIT_BAD_REQUEST,
                f"unknown command {run.command[:40]!r}: expected shell:<command> or"
                " python:<module>:<function>",
            )
        except Exception as exc:
            # A bug of ours, not the task's: still an outcome, so the attempt ends.
            log.exception("executor failed", task_id=run.task_id, attempt=run.attempt)
            return failed(EXIT_BAD_REQUEST, f"worker error: {type(exc).__name__}: {exc}")
        finally:
            del self._active[run.key]
            del self._finished[run.key]
            finished.set()

    async def cancel(
        self, task_id: str, attempt: int, reason: str = CANCELLED, kill_now: bool = False
    ) -> bool:
        """Asks the attempt to end; False if it is not running here.

        Returns at once: the process group gets SIGTERM, then SIGKILL after the grace
        period (at once with `kill_now`), and run() returns Outcome(error=reason) once
        it is dead.
        """
        stop = self._active.get((task_id, attempt))
        if stop is None:
            return False
        stop.request(reason, kill_now=kill_now)
        return True

    def running(self) -> list[tuple[str, int]]:
        return list(self._active)

    async def close(self) -> None:
        """Kills everything: running attempts end with "cancelled: worker shutting down"."""
        self._closed = True
        for stop in self._active.values():
            stop.request(SHUTTING_DOWN)
        # Each run() kills its own processes; wait (bounded) until they have.
        waits = [asyncio.ensure_future(event.wait()) for event in self._finished.values()]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=self._grace_s + 5.0)
            for waiter in pending:
                await cancel_quietly(waiter)
        await self._pool.close()
