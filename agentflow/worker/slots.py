"""The worker's task slots: assigned attempts wait here, most urgent first, and run
through the executor at most as many at once as the adaptive concurrency allows.
Their started reports, progress, logs and results go to the `Outbound` queue; the
connection side (`agent.py`) carries that queue to the leader."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from agentflow._proto import state_pb2
from agentflow._proto import worker_pb2 as wpb
from agentflow.worker.limits import AdaptiveConcurrency, memory_limit_under_pressure
from agentflow.worker.outbound import Key, Outbound
from agentflow.worker.runs import Outcome, Reporter, TaskRun

log = structlog.get_logger(__name__)

STARTED_GRACE_S = 0.05
RECENT_KEYS = 4096  # finished attempts remembered, to ignore a repeated assignment


class TaskExecutor(Protocol):
    """What the slots need of `agentflow.worker.executor.Executor`."""

    async def start(self) -> None: ...
    async def run(self, run: TaskRun, reporter: Reporter) -> Outcome: ...
    async def cancel(
        self, task_id: str, attempt: int, reason: str = ..., kill_now: bool = ...
    ) -> bool: ...
    async def close(self) -> None: ...


class _Reporter:
    """The executor's reporter: queue, never block, drop what a cancel made moot."""

    def __init__(self, slots: TaskSlots) -> None:
        self._slots = slots

    def progress(self, task_id: str, attempt: int, fraction: float, message: str) -> None:
        if (task_id, attempt) not in self._slots.cancelled:
            self._slots.outbound.progress(task_id, attempt, fraction, message)

    def log(self, task_id: str, attempt: int, stream: str, text: str) -> None:
        if (task_id, attempt) not in self._slots.cancelled:
            self._slots.outbound.log(task_id, attempt, stream, text)


class TaskSlots:
    def __init__(
        self,
        executor: TaskExecutor,
        concurrency: AdaptiveConcurrency,
        outbound: Outbound,
        on_settled: Callable[[], None],
        memory_limit_mb: int | None = None,
        cpu_time_limit_s: int | None = None,
    ) -> None:
        """`on_settled()` is called whenever an attempt ended or was dropped (the
        agent checks whether a drain is complete)."""
        self.executor = executor
        self.concurrency = concurrency
        self.outbound = outbound
        self.cancelled: set[Key] = set()
        self.memory_percent = 0.0  # the host's, from the last heartbeat sample
        self._on_settled = on_settled
        self._memory_limit_mb = memory_limit_mb
        self._cpu_time_limit_s = cpu_time_limit_s
        self._reporter = _Reporter(self)
        self._pending: list[tuple[int, int, state_pb2.Task]] = []  # (priority, order, task)
        self._pending_keys: set[Key] = set()
        self._order = itertools.count()
        self._running: dict[Key, asyncio.Task[None]] = {}
        # Finished attempt -> created_index of its task: a task id used again (the
        # old task deleted) starts over at attempt 1, which is not a repeat.
        self._recent: OrderedDict[Key, int] = OrderedDict()
        self._wake = asyncio.Event()

    # -- what the agent asks -----------------------------------------------------------

    def running(self) -> list[Key]:
        return list(self._running)

    def holding(self) -> list[Key]:
        """Attempts this worker has: running, or assigned and waiting for a slot."""
        return [*self._running, *((t.id, t.attempt) for _, _, t in self._pending)]

    @property
    def waiting(self) -> int:
        """Assigned attempts waiting for a slot."""
        return len(self._pending)

    @property
    def idle(self) -> bool:
        return not self._running and not self._pending

    def capacity_changed(self) -> None:
        """The concurrency may have grown: start what now fits."""
        self._wake.set()

    # -- assignments and cancels ---------------------------------------------------------

    def accept(self, tasks: Sequence[state_pb2.Task]) -> None:
        for task in tasks:
            key = (task.id, task.attempt)
            if (
                key in self._running
                or self._recent.get(key) == task.created_index
                or key in self._pending_keys
                or key in self.outbound.results
            ):
                continue  # delivered twice (a resend after reconnecting): run it once
            heapq.heappush(self._pending, (task.priority, next(self._order), task))
            self._pending_keys.add(key)
        self._start_waiting()  # here, not a loop turn later in `run`

    async def cancel(self, cancel: wpb.CancelTask) -> None:
        key = (cancel.task_id, cancel.attempt)
        was_waiting = key in self._pending_keys
        if was_waiting:
            self._pending_keys.discard(key)
            self._pending = [p for p in self._pending if (p[2].id, p[2].attempt) != key]
            heapq.heapify(self._pending)
        if key in self._running:
            self.cancelled.add(key)
            self.outbound.forget_queued([key])
            await self.executor.cancel(*key)
        log.info(
            "worker.cancel",
            task=cancel.task_id,
            attempt=cancel.attempt,
            reason=cancel.reason,
            was_running=key in self._running,
            was_waiting=was_waiting,
        )
        self._on_settled()

    async def abandon(self, reason: str) -> list[Key]:
        """Drops every attempt held (the leader declared this worker lost and gave them
        to others): waiting ones are forgotten, running ones killed without grace; no
        result is reported for any. Returns what was dropped."""
        dropped = self.holding()
        self._pending.clear()
        self._pending_keys.clear()
        running = list(self._running)
        self.cancelled.update(running)
        self.outbound.forget_queued(running)
        for key in running:
            await self.executor.cancel(*key, reason=reason, kill_now=True)
        if dropped:
            log.warning("worker.abandoned", attempts=len(dropped), reason=reason)
        self._on_settled()
        return dropped

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Starts waiting attempts as slots free up; until cancelled, which also
        cancels the running attempts and waits for them."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._start_waiting()
        finally:
            running = list(self._running.values())
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _start_waiting(self) -> None:
        """Start the most urgent waiting attempts while there are free slots."""
        while self._pending and len(self._running) < self.concurrency.current:
            _, _, task = heapq.heappop(self._pending)
            key = (task.id, task.attempt)
            self._pending_keys.discard(key)
            self._running[key] = asyncio.create_task(self._run_one(task))

    def _task_run(self, task: state_pb2.Task) -> TaskRun:
        spec = task.spec
        memory = spec.memory_mb or self._memory_limit_mb
        if memory and not spec.memory_mb:
            memory = memory_limit_under_pressure(memory, self.memory_percent)
        return TaskRun(
            task_id=task.id,
            attempt=task.attempt,
            command=spec.command,
            args_json=spec.args_json,
            env=dict(spec.env),
            cwd=spec.cwd,
            timeout_s=spec.timeout_ms / 1000 if spec.timeout_ms > 0 else None,
            gpu_indices=tuple(task.gpu_indices),
            memory_limit_mb=memory or None,
            cpu_time_limit_s=self._cpu_time_limit_s,
        )

    async def _run_one(self, task: state_pb2.Task) -> None:
        key = (task.id, task.attempt)
        # A task done within the grace never reports "started": its result says it
        # all, and each report is a replicated command (half the commits of short tasks).
        started = asyncio.get_running_loop().call_later(
            STARTED_GRACE_S, self.outbound.started, *key
        )
        try:
            outcome = await self.executor.run(self._task_run(task), self._reporter)
        finally:
            started.cancel()
            del self._running[key]
            self._recent[key] = task.created_index
            self._recent.move_to_end(key)
            while len(self._recent) > RECENT_KEYS:
                self._recent.popitem(last=False)
            self._wake.set()
        if key in self.cancelled:
            # The leader cancelled this attempt: it has settled the task already.
            self.cancelled.discard(key)
        else:
            self.outbound.result(
                wpb.ResultReport(
                    task_id=task.id,
                    attempt=task.attempt,
                    success=outcome.success,
                    result=state_pb2.TaskResult(
                        exit_code=outcome.exit_code,
                        stdout_tail=outcome.stdout_tail,
                        stderr_tail=outcome.stderr_tail,
                        value_json=outcome.value_json,
                        error=outcome.error,
                    ),
                )
            )
        self._on_settled()
