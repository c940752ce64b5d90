"""Plumbing shared by the shell and python runners: early stop, deadline, output pipes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import structlog

from agentflow.worker.output import Capture, PipeReader
from agentflow.worker.runs import Reporter, TaskRun

T = TypeVar("T")

log = structlog.get_logger(__name__)

# How long output may keep arriving after a task ended (its pipes reach EOF once every
# process holding them is gone; something that escaped the process group may not go).
DRAIN_S = 1.0


def report(method: Callable[..., None], *args: object) -> None:
    """Calls a Reporter method; its failure is logged, never the task's problem.

    A reporter raising inside the pipe reader would stop the reading, and a task
    whose pipe is full blocks forever.
    """
    try:
        method(*args)
    except Exception:
        log.exception("reporter failed", method=getattr(method, "__name__", "?"))


class Stop:
    """A request to end an attempt early; the first reason given wins."""

    def __init__(self) -> None:
        self.requested = False
        self.reason = ""
        self.kill_now = False  # no SIGTERM grace: the attempt was given to another worker
        self._wakers: list[Callable[[], None]] = []

    def request(self, reason: str, kill_now: bool = False) -> None:
        self.kill_now = self.kill_now or kill_now
        if not self.requested:
            self.requested = True
            self.reason = reason
            for wake in list(self._wakers):
                wake()

    def grace(self, grace_s: float) -> float:
        return 0.0 if self.kill_now else grace_s

    def on_request(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Calls `wake` when a stop is requested; returns what unsubscribes it."""
        self._wakers.append(wake)
        return lambda: self._wakers.remove(wake) if wake in self._wakers else None


Ending = Literal["done", "stopped", "timeout"]


async def race(work: Awaitable[T], stop: Stop, deadline: float | None) -> tuple[Ending, T | None]:
    """Awaits `work` unless the stop request or the deadline (loop time) comes first.

    `work` is cancelled when it loses. Finishing wins a tie: a task that completed as
    it was cancelled completed.
    """
    loop = asyncio.get_running_loop()
    work_task = asyncio.ensure_future(work)
    # One future woken by whichever comes first: no task and no asyncio.wait per race,
    # which ran twice for every task (a pool process, then the job).
    first: asyncio.Future[None] = loop.create_future()

    def wake(*_: object) -> None:
        if not first.done():
            first.set_result(None)

    work_task.add_done_callback(wake)
    unsubscribe = stop.on_request(wake)
    timer = None if deadline is None else loop.call_at(deadline, wake)
    if stop.requested:
        wake()
    try:
        await first
    finally:
        work_task.remove_done_callback(wake)
        unsubscribe()
        if timer is not None:
            timer.cancel()
        if not work_task.done():
            await cancel_quietly(work_task)
    if work_task.done() and not work_task.cancelled():
        return "done", work_task.result()
    if stop.requested:
        return "stopped", None
    return "timeout", None


async def cancel_quietly(task: asyncio.Future[T]) -> None:
    """Cancels `task` and waits for it, without swallowing our own cancellation."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


class OutputPipes:
    """The stdout and stderr pipes of one attempt, read into a Capture.

    Lifecycle: create (pipes exist; `write_fds` go to the child), `started()` once the
    child holds its copies (the parent's write ends are closed, so EOF means the child
    side is gone), `finish()` after the task ended.
    """

    def __init__(self, run: TaskRun, reporter: Reporter, batch_bytes: int, batch_s: float):
        self.capture = Capture(
            lambda stream, text: report(reporter.log, run.task_id, run.attempt, stream, text),
            batch_bytes,
            batch_s,
        )
        self._out_r, self._out_w = os.pipe()
        self._err_r, self._err_w = os.pipe()
        self._readers: list[PipeReader] = []

    @property
    def write_fds(self) -> tuple[int, int]:
        return (self._out_w, self._err_w)

    def started(self) -> None:
        self.close_write_ends()
        out_r, err_r, self._out_r, self._err_r = self._out_r, self._err_r, -1, -1
        self._readers = [
            PipeReader(out_r, self.capture.feed_stdout),
            PipeReader(err_r, self.capture.feed_stderr),
        ]

    def close_write_ends(self) -> None:
        for fd in (self._out_w, self._err_w):
            if fd >= 0:
                os.close(fd)
        self._out_w = self._err_w = -1

    async def finish(self, drain_s: float = DRAIN_S) -> tuple[str, str]:
        """Waits (bounded) for the rest of the output, flushes it; returns the tails."""
        self.close_write_ends()
        for fd in (self._out_r, self._err_r):
            if fd >= 0:
                os.close(fd)
        self._out_r = self._err_r = -1
        if self._readers:
            readers, self._readers = self._readers, []
            waiting = [r.done for r in readers if not r.done.done()]
            if waiting:
                await asyncio.wait(waiting, timeout=drain_s)
            for reader in readers:
                reader.cancel()  # those still open: a holder of the pipe outlived the task
            for reader in readers:
                if (error := reader.done.exception()) is not None:
                    raise error
        await self.capture.close()
        return self.capture.stdout.tail(), self.capture.stderr.tail()
