"""Who is gone and what is overdue: pure decisions the leader's scheduler commits.

Nothing here proposes or reads a clock; the scheduler passes `now` and turns the
answers into SetWorkerState(LOST) and RequeueTasks commands. A worker is judged only
from what this leader heard itself: after a leader change every worker starts with a
full timeout to reconnect (`heard` begins at the term's start).

Nor is a worker judged by time the leader did not run. A SIGSTOP, a VM pause or a long
GC freezes the leader while workers keep talking; on resume its clock has jumped and
what they sent is still unread in its sockets. `Stalls` notices the jump (monotonic
time between its own ticks against the interval it slept), and the scheduler then
gives every worker a full timeout again, as after a leader change.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from agentflow._proto import state_pb2

_ALIVE = (state_pb2.WORKER_STATE_ONLINE, state_pb2.WORKER_STATE_DRAINING)


class Stalls:
    """Notices that the process (or its event loop) did not run for a while.

    `tick(now)` is called every `interval` seconds of monotonic time; it returns how
    long the gap since the previous tick overran the interval by, when that is more
    than `tolerance` (else 0.0). The first tick only starts the count."""

    def __init__(self, interval: float, tolerance: float) -> None:
        self.interval = interval
        self.tolerance = tolerance
        self._last: float | None = None
        self.count = 0  # stalls seen, for tests and logs

    def tick(self, now: float) -> float:
        last, self._last = self._last, now
        if last is None:
            return 0.0
        overrun = now - last - self.interval
        if overrun > self.tolerance:
            self.count += 1
            return overrun
        return 0.0


def stall_tolerance(worker_timeout: float) -> float:
    """A stall shorter than this cannot by itself push a worker that heartbeats
    normally past its timeout (heartbeats come several times per timeout)."""
    return worker_timeout / 3


def silent_workers(
    state_workers: Mapping[str, state_pb2.Worker],
    heard: Mapping[str, float],
    term_started: float,
    now: float,
    timeout: float,
) -> list[str]:
    """Workers the state thinks are alive that nobody heard from for `timeout`."""
    return sorted(
        wid
        for wid, worker in state_workers.items()
        if worker.state in _ALIVE and now - heard.get(wid, term_started) > timeout
    )


def overdue(tasks: Collection[state_pb2.Task], now_ms: int, grace_ms: int) -> list[state_pb2.Task]:
    """Tasks on a worker past their own timeout plus `grace_ms`: the worker should
    have killed them; the leader's backstop takes them back."""
    late = []
    for task in tasks:
        limit = task.spec.timeout_ms
        if limit <= 0:
            continue
        since = task.started_ms or task.assigned_ms
        if since and now_ms - since > limit + grace_ms:
            late.append(task)
    return late
