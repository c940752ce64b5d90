"""What a (re)connecting worker runs vs what the replicated state says it should.

Computed once per hello, after the results the worker carried are committed:
- ASSIGNED to it but unknown to it: the assignment was committed but never reached
  it (the old connection or the old leader died first). Send it again; delivery is
  at least once and the worker ignores an attempt it already has.
- RUNNING on it by the state but not by the worker: the worker restarted and the
  attempt died with it. Give the task back to the queue (a failed attempt).
- Run by the worker but no longer its current attempt (cancelled, requeued, moved
  while it was away): tell it to stop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from agentflow._proto import state_pb2
from agentflow.state import SchedulerState

TS = state_pb2.TaskState
_ON_WORKER = (TS.TASK_STATE_ASSIGNED, TS.TASK_STATE_RUNNING)

Attempt = tuple[str, int]


@dataclass(slots=True)
class Reconciliation:
    resend: list[state_pb2.Task] = field(default_factory=list)
    requeue: list[Attempt] = field(default_factory=list)
    cancel: list[tuple[str, int, str]] = field(default_factory=list)


def reconcile(
    state: SchedulerState,
    worker_id: str,
    running: Iterable[Attempt],
    finished: Iterable[Attempt] = (),
) -> Reconciliation:
    out = Reconciliation()
    has = set(running)
    known = has | set(finished)
    for task in state.tasks_of_worker(worker_id):
        if task.state not in _ON_WORKER or (task.id, task.attempt) in known:
            continue
        if task.state == TS.TASK_STATE_ASSIGNED:
            copy = state_pb2.Task()
            copy.CopyFrom(task)
            out.resend.append(copy)
        else:
            out.requeue.append((task.id, task.attempt))
    for task_id, attempt in sorted(has):
        current = state.task(task_id)
        if current is None:
            out.cancel.append((task_id, attempt, "the task no longer exists"))
        elif current.worker_id != worker_id or current.attempt != attempt:
            out.cancel.append((task_id, attempt, f"attempt {attempt} is no longer current"))
        elif current.state not in _ON_WORKER:
            name = TS.Name(current.state).removeprefix("TASK_STATE_").lower()
            out.cancel.append((task_id, attempt, f"the task is {name}"))
    return out
