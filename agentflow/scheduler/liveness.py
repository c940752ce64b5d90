"""Who is gone and what is overdue: pure decisions the leader's scheduler commits.

Nothing here proposes or reads a clock; the scheduler passes `now` and turns the
answers into SetWorkerState(LOST) and RequeueTasks commands. A worker is judged only
from what this leader heard itself: after a leader change every worker starts with a
full timeout to reconnect (`heard` begins at the term's start).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from agentflow._proto import state_pb2

_ALIVE = (state_pb2.WORKER_STATE_ONLINE, state_pb2.WORKER_STATE_DRAINING)


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
