"""The leader's scheduler: one instance per leadership term.

It rebuilds its indexes (ready queue, retry timers, where each task runs) from the
replicated state when it starts, follows every applied command through a state
listener, and dispatches: pick ready tasks in priority order, place them, commit one
AssignTasks command for the whole batch, and only then push the assignments down the
worker sessions. When leadership is lost the master cancels `run()`; nothing here is
replicated, so the next leader's instance starts from the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import structlog

from agentflow._proto import state_pb2
from agentflow.scheduler.lanes import (
    could_ever_fit,
    group_and_shape,
    groups_with_room,
    shape_requirements,
)
from agentflow.scheduler.liveness import Stalls, overdue, silent_workers, stall_tolerance
from agentflow.scheduler.placement import Placement, TaskRequirements, WorkerView, place
from agentflow.scheduler.proposer import Proposer
from agentflow.scheduler.ready_queue import LaneKey, Priority, ReadyQueue
from agentflow.scheduler.sessions import Usage, WorkerConflictError, WorkerSession
from agentflow.scheduler.views import spec_requirements, take, worker_views
from agentflow.state import ChangeSet, SchedulerState

log = structlog.get_logger(__name__)

TS = state_pb2.TaskState
# Plain ints: TS.X goes through the enum wrapper's __getattr__, on every task.
_READY = TS.TASK_STATE_READY
_PENDING = TS.TASK_STATE_PENDING
_ASSIGNED = TS.TASK_STATE_ASSIGNED
_CANCELLED = TS.TASK_STATE_CANCELLED
_ON_WORKER = (_ASSIGNED, TS.TASK_STATE_RUNNING)
_PRIORITIES = tuple(Priority)  # by value: Priority(value) is an enum call per task


# What one placement takes on a worker: (worker id, requirements, GPU indices).
_Hold = tuple[str, TaskRequirements, tuple[int, ...]]


def _claim(
    req: TaskRequirements, usable: dict[str, WorkerView], held: list[_Hold]
) -> Placement | None:
    """Place one task among `usable` and take its room there (recorded in `held`)."""
    spot = place(req, usable.values())
    if spot is not None:
        usable[spot.worker_id] = take(usable[spot.worker_id], req, spot.gpu_indices)
        held.append((spot.worker_id, req, spot.gpu_indices))
    return spot


def _priority(value: int) -> Priority:
    return _PRIORITIES[value] if 0 <= value < len(_PRIORITIES) else Priority(value)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    aging_seconds: float | None = 30.0  # one priority level gained per this wait
    dispatch_batch: int = 1024  # assignments per AssignTasks command
    prefetch: float = 3.0  # assignments held beyond a worker's concurrency, as a share
    # ... and more when its tasks are short: enough to keep it busy this long, up to
    # prefetch_max, so that a commit round trip between a result and the next
    # assignment never leaves it idle (see Scheduler._prefetch).
    prefetch_window: float = 0.2
    prefetch_max: int = 256
    retry_backoff_cap_ms: int = 300_000
    # Finished tasks are kept this long, and at most `retention_keep` of those outside
    # workflows (a finished workflow goes whole, by time only). Every master holds
    # every retained task, ~10-17 KB each at peak for typical specs and output
    # (bench/memory_bench.py), so these bound its memory: 20,000 keep it near 350 MB;
    # a day bounds workflow tasks and matches the request-id window.
    # docs/operations.md has the budget and how to size them.
    retention_seconds: float = 24 * 3600
    retention_keep: int = 20_000
    request_id_seconds: float = 24 * 3600  # a client may retry a request this long
    worker_retention_seconds: float = 24 * 3600  # LOST/OFFLINE workers listed this long
    prune_interval: float = 60.0
    worker_timeout: float = 15.0  # silent this long (heartbeats, reports) = lost
    liveness_interval: float = 1.0
    timeout_grace: float = 10.0  # leader backstop: task timeout plus this

    def __post_init__(self) -> None:
        for name in ("prefetch", "prefetch_window", "prefetch_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("dispatch_batch", "retention_keep"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in (
            "retention_seconds",
            "request_id_seconds",
            "worker_retention_seconds",
            "prune_interval",
            "worker_timeout",
            "liveness_interval",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


@dataclass(slots=True)
class _Live:
    session: WorkerSession
    usage: Usage = field(default_factory=Usage)
    last_heartbeat: float = 0.0
    last_result: float = 0.0
    result_gap: float = 0.0  # smoothed seconds between results while it had no idle slot

    def note_results(self, now: float, busy: bool, count: int = 1) -> None:
        if busy and self.last_result and count > 0:
            gap = (now - self.last_result) / count
            self.result_gap = gap if not self.result_gap else 0.8 * self.result_gap + 0.2 * gap
        self.last_result = now


class Scheduler:
    def __init__(
        self,
        state: SchedulerState,
        proposer: Proposer,
        config: SchedulerConfig | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` is wall time (shown to users, prefetch pacing); liveness measures
        silence on `monotonic`, which no clock step moves."""
        self.state = state
        self.proposer = proposer
        self.config = config or SchedulerConfig()
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self.queue = ReadyQueue(self.config.aging_seconds)
        self._retry_heap: list[tuple[int, str]] = []  # (not_before_ms, task id)
        self._where: dict[str, tuple[str, int]] = {}  # task -> (worker, attempt) told
        self._in_flight: set[str] = set()  # popped, AssignTasks not yet applied
        # Room taken by commands not yet applied (a placed submit, see place_new, or
        # an AssignTasks in flight), by token: kept out of the views until applied.
        self._reserved: dict[int, list[_Hold]] = {}
        self._tokens = itertools.count(1)
        self._changed: set[str] = set()
        self._workers_changed = False
        self._live: dict[str, _Live] = {}
        self._heard: dict[str, float] = {}  # worker -> last time this leader heard it
        self._term_started = 0.0  # (monotonic) silence is counted from here at most
        self._stalls = Stalls(
            self.config.liveness_interval, stall_tolerance(self.config.worker_timeout)
        )
        self._backstop_from = 0.0  # (monotonic) no timeout backstop before this
        # Workers whose LOST is being committed: a reconnect waits for it (see connect).
        self._losing: dict[str, asyncio.Future[None]] = {}
        self._touched_workers: set[str] = set()
        self._wake = asyncio.Event()
        self._started = asyncio.Event()
        self.dispatched = 0
        self.rounds = 0
        self.place_attempts = 0  # placements tried by dispatch rounds: their cost

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Rebuild from state, then dispatch until cancelled. The caller must have
        made sure the state is caught up with this term (a read barrier)."""
        unsubscribe = self.state.add_listener(self._on_change)
        try:
            self._rebuild()
            self._term_started = self._monotonic()
            self._started.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._dispatch_loop())
                tg.create_task(self._prune_loop())
                tg.create_task(self._liveness_loop())
        finally:
            unsubscribe()
            for live in self._live.values():
                live.session.close("this master is no longer the leader")
            self._live.clear()

    async def started(self) -> None:
        await self._started.wait()

    def _rebuild(self) -> None:
        for task in self.state.ready_tasks():
            self._enqueue(task)
        for task in self.state.retry_waiting():
            heapq.heappush(self._retry_heap, (task.not_before_ms, task.id))
        for wid in self.state.workers:
            for task in self.state.tasks_of_worker(wid):
                self._where[task.id] = (wid, task.attempt)
        log.info(
            "scheduler.rebuilt",
            ready=len(self.queue),
            retry_waiting=len(self._retry_heap),
            on_workers=len(self._where),
        )

    # -- following the state -------------------------------------------------------

    def _on_change(self, change: ChangeSet) -> None:
        # Called inside apply: only note the ids; the dispatch loop does the work.
        if change.tasks:
            self._changed.update(change.tasks)
            self._wake.set()
        if change.workers:
            self._workers_changed = True
            self._touched_workers.update(change.workers)
            self._wake.set()

    def _absorb(self) -> None:
        if self._workers_changed:
            # A lane parked as fitting no worker may fit the workers as they are now.
            self._workers_changed = False
            self.queue.unpark_all()
        touched, self._touched_workers = self._touched_workers, set()
        for wid in sorted(touched):
            self._end_lost_session(wid)
        changed, self._changed = self._changed, set()
        for task_id in sorted(changed):
            if task_id in self._in_flight:
                continue  # settled when its AssignTasks result comes back
            self._sync_task(task_id)

    def _sync_task(self, task_id: str) -> None:
        task = self.state.task(task_id)
        told = self._where.get(task_id)
        if told is None and task is not None and task.state == _ASSIGNED:
            self._tell_placed(task)
            return
        if told is not None and (
            task is None or task.state not in _ON_WORKER or task.attempt != told[1]
        ):
            del self._where[task_id]
            if task is not None and task.state == _CANCELLED:
                self._send_cancel(told[0], task_id, told[1], task.result.error or "cancelled")
        if task is None or task.state != _READY:
            if task_id in self.queue:
                self.queue.remove(task_id)
            if task is not None and self._waits_for_retry(task):
                heapq.heappush(self._retry_heap, (task.not_before_ms, task.id))
            return
        if task_id in self.queue:
            if self.queue.priority_of(task_id) != _priority(task.priority):
                self.queue.reprioritize(task_id, _priority(task.priority))
        else:
            self._enqueue(task)

    def _end_lost_session(self, worker_id: str) -> None:
        """A worker connected here but LOST in the state (a LOST committed after it
        connected: an older leader's, or one racing its reconnect) would stay
        connected and never get work. End the session: the worker connects again,
        registers, and reconciles what it runs."""
        live = self._live.get(worker_id)
        worker = self.state.workers.get(worker_id)
        if live is None or worker is None or worker.state != state_pb2.WORKER_STATE_LOST:
            return
        del self._live[worker_id]
        live.session.close("this worker was declared lost; connect again to register")
        log.warning("scheduler.lost_worker_session_ended", worker=worker_id)

    def _tell_placed(self, task: state_pb2.Task) -> None:
        """A task assigned in its own SubmitTasks entry (place_new): push it now that
        it is committed. (A worker not connected gets it when it reconnects: the
        session reconciles what state gives it.)"""
        self._where[task.id] = (task.worker_id, task.attempt)
        live = self._live.get(task.worker_id)
        if live is not None:
            copy = state_pb2.Task()
            copy.CopyFrom(task)
            live.session.assign([copy])
            self.dispatched += 1

    def _waits_for_retry(self, task: state_pb2.Task) -> bool:
        return (
            task.state == _PENDING and task.not_before_ms > 0 and not self.state.blocking(task.id)
        )

    def _enqueue(self, task: state_pb2.Task, at_ms: int | None = None) -> None:
        when = task.ready_ms if at_ms is None else at_ms
        group, shape = group_and_shape(task.spec)
        self.queue.push(task.id, _priority(task.priority), when / 1000, group, shape)

    def _release_due_retries(self, now_ms: int) -> float | None:
        """Queue retries whose time has come; seconds until the next one, if any."""
        while self._retry_heap and self._retry_heap[0][0] <= now_ms:
            due, task_id = heapq.heappop(self._retry_heap)
            task = self.state.task(task_id)
            if (
                task is not None
                and task.not_before_ms == due
                and self._waits_for_retry(task)
                and task_id not in self.queue
                and task_id not in self._in_flight
            ):
                self._enqueue(task, at_ms=due)
        if not self._retry_heap:
            return None
        return max(0.0, (self._retry_heap[0][0] - now_ms) / 1000)

    # -- dispatch --------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        self._wake.set()
        while True:
            self._wake.clear()
            self._absorb()
            now_ms = self.proposer.now_ms()
            next_retry = self._release_due_retries(now_ms)
            batch, held = self._plan(now_ms)
            if batch:
                await self._commit(batch, held)
                if len(batch) == self.config.dispatch_batch:
                    self._wake.set()  # probably more to do right away
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(next_retry):  # no task per wait, unlike wait_for
                    await self._wake.wait()

    def _usable(self) -> dict[str, WorkerView]:
        """Workers that may take work now, net of what pending placements reserve."""
        views = worker_views(self.state, self._live, self._prefetch)
        for held in self._reserved.values():
            for wid, req, gpus in held:
                if wid in views:
                    views[wid] = take(views[wid], req, gpus)
        return {wid: v for wid, v in views.items() if v.alive and not v.draining}

    def place_new(
        self, specs: Sequence[state_pb2.TaskSpec]
    ) -> tuple[int, list[state_pb2.Placement]]:
        """Placements for tasks about to be submitted, made only when a dispatch round
        would place them right away anyway: nothing is queued (so none jumps ahead of
        a waiting task), no dependencies, a worker with room. They travel inside the
        SubmitTasks entry, which saves a commit round trip per submit-and-run; the
        room stays reserved until `release(token)`, called once that entry is applied
        (or refused)."""
        if self.queue or not self._live or not self._started.is_set():
            return 0, []
        usable = self._usable()
        placed: list[state_pb2.Placement] = []
        held: list[_Hold] = []
        for i, spec in enumerate(specs):
            if spec.dependencies:
                continue
            spot = _claim(spec_requirements(spec), usable, held)
            if spot is None:
                continue
            placed.append(
                state_pb2.Placement(
                    task_index=i, worker_id=spot.worker_id, gpu_indices=spot.gpu_indices
                )
            )
        if not placed:
            return 0, []
        token = next(self._tokens)
        self._reserved[token] = held
        return token, placed

    def release(self, token: int) -> None:
        if self._reserved.pop(token, None) is not None:
            self._wake.set()  # room the placements did not take is free again

    def _plan(self, now_ms: int) -> tuple[list[state_pb2.Assignment], list[_Hold]]:
        """This round's assignments, and the room each takes."""
        if not self.queue or not self._live:
            return [], []
        usable = self._usable()
        # Scanning the queue costs O(scanned); with every slot taken nothing can be
        # placed, and a round per applied command would rescan a long queue for naught.
        free = sum(max(0, v.capacity - v.running) for v in usable.values())
        if not free:
            return [], []
        chosen: list[state_pb2.Assignment] = []
        held: list[_Hold] = []
        hopeless: list[LaneKey] = []
        reqs: dict[LaneKey, TaskRequirements] = {}

        def fits(lane: LaneKey, task_id: str) -> bool:
            task = self.state.task(task_id)
            if task is None:
                return False
            req = reqs.get(lane)
            if req is None:
                group, shape = lane
                req = reqs[lane] = shape_requirements(group, shape)  # type: ignore[arg-type]
            self.place_attempts += 1
            spot = _claim(req, usable, held)
            if spot is None:
                if not could_ever_fit(req, usable.values()):
                    hopeless.append(lane)
                return False
            chosen.append(
                state_pb2.Assignment(
                    task_id=task_id,
                    attempt=task.attempt + 1,
                    worker_id=spot.worker_id,
                    gpu_indices=spot.gpu_indices,
                )
            )
            return True

        # Lanes of groups where no worker has a free slot are not even looked at, and
        # a lane no worker could ever fit is parked until the workers change: a round
        # costs what it places plus one look per lane that might place something.
        limit = min(free, self.config.dispatch_batch)
        self.queue.pop_placeable(now_ms / 1000, groups_with_room(usable.values()), fits, limit)
        for lane in hopeless:
            self.queue.park(lane)
        return chosen, held

    async def _commit(self, batch: list[state_pb2.Assignment], held: list[_Hold]) -> None:
        ids = [a.task_id for a in batch]
        self._in_flight.update(ids)
        # Held in the views until applied, so a submit placed meanwhile (place_new)
        # neither takes the same room nor the same GPU.
        token = next(self._tokens)
        self._reserved[token] = held
        try:
            result = await self.proposer.propose(
                state_pb2.Command(assign_tasks=state_pb2.AssignTasks(assignments=batch))
            )
        finally:
            del self._reserved[token]
            self._in_flight.difference_update(ids)
            # Whatever happened (rejected, dropped, applied), re-read these tasks from
            # state: applied ones are on a worker now, the rest go back to the queue.
            self._changed.update(ids)
        if result.error.code:
            log.error("scheduler.assign_refused", error=str(result.error))
            return
        by_worker: dict[str, list[state_pb2.Task]] = {}
        for assignment in batch:
            task = self.state.task(assignment.task_id)
            if (
                task is None
                or task.state != _ASSIGNED
                or task.attempt != assignment.attempt
                or task.worker_id != assignment.worker_id
            ):
                continue
            self._where[task.id] = (task.worker_id, task.attempt)
            copy = state_pb2.Task()
            copy.CopyFrom(task)
            by_worker.setdefault(task.worker_id, []).append(copy)
        for wid, tasks in by_worker.items():
            live = self._live.get(wid)
            if live is not None:
                live.session.assign(tasks)
            self.dispatched += len(tasks)
        self.rounds += 1
        if result.rejected:
            log.info("scheduler.assign_rejected", rejected=list(result.rejected)[:10])

    def _send_cancel(self, worker_id: str, task_id: str, attempt: int, reason: str) -> None:
        live = self._live.get(worker_id)
        if live is not None:
            live.session.cancel(task_id, attempt, reason)

    # -- liveness ------------------------------------------------------------------

    async def _liveness_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.liveness_interval)
            await self.check_liveness()

    async def check_liveness(self) -> None:
        """Declare silent workers lost and take back tasks past their timeout. After a
        stall (this leader did not run for a while), every worker first gets a full
        timeout again: what it sent meanwhile is still unread."""
        now = self._monotonic()
        stalled = self._stalls.tick(now)
        if stalled:
            self._forgive(now, stalled)
        timeout = self.config.worker_timeout
        for wid in silent_workers(
            self.state.workers, self._heard, self._term_started, now, timeout
        ):
            # Judged again right before proposing: a message may have come in while
            # an earlier worker's LOST was being committed (or it was pruned).
            worker = self.state.workers.get(wid)
            if worker is None or not silent_workers(
                {wid: worker}, self._heard, self._term_started, self._monotonic(), timeout
            ):
                continue
            live = self._live.pop(wid, None)
            if live is not None:
                live.session.close(f"no heartbeat for {timeout:g} s")
            landed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._losing[wid] = landed
            try:
                await self.proposer.propose(
                    state_pb2.Command(
                        set_worker_state=state_pb2.SetWorkerState(
                            worker_id=wid,
                            state=state_pb2.WORKER_STATE_LOST,
                            retry_delay_ms=1000,  # its tasks: soon, elsewhere
                            reason=f"no heartbeat for {timeout:g} s",
                        )
                    )
                )
            finally:
                del self._losing[wid]
                landed.set_result(None)
            log.warning("scheduler.worker_lost", worker=wid)
        if self._monotonic() < self._backstop_from:
            return
        on_workers = [t for wid in self.state.workers for t in self.state.tasks_of_worker(wid)]
        late = overdue(on_workers, self.proposer.now_ms(), int(self.config.timeout_grace * 1000))
        if late:
            for task in late:
                self._send_cancel(task.worker_id, task.id, task.attempt, "timed out")
            await self.requeue(late, "timed out (leader backstop)")

    def _forgive(self, now: float, stalled: float) -> None:
        """Silence measured across a stall is this leader's, not the workers': count
        every worker's silence from now, as a new leader does. The timeout backstop
        waits as long, so results that finished during the stall arrive first."""
        self._term_started = now
        self._heard.clear()
        self._backstop_from = now + self.config.worker_timeout
        log.warning(
            "scheduler.stalled",
            seconds=round(stalled + self.config.liveness_interval, 1),
            workers=len(self.state.workers),
            note="every worker gets a full timeout again",
        )

    async def requeue(self, tasks: Collection[state_pb2.Task], reason: str) -> None:
        """Give these attempts back to the queue as failed attempts (fenced by attempt)."""
        items = [
            state_pb2.RequeueTasks.Item(
                task_id=t.id,
                attempt=t.attempt,
                reason=reason,
                retry_delay_ms=self.retry_delay_ms(t, t.attempt),
            )
            for t in tasks
        ]
        await self.proposer.propose(
            state_pb2.Command(requeue_tasks=state_pb2.RequeueTasks(items=items))
        )

    # -- retention -------------------------------------------------------------------

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.prune_interval)
            await self.prune()

    async def prune(self) -> state_pb2.CommandResult:
        now_ms = self.proposer.now_ms()
        cmd = state_pb2.Command(
            prune=state_pb2.Prune(
                finished_before_ms=now_ms - int(self.config.retention_seconds * 1000),
                keep_finished=self.config.retention_keep,
                requests_before_ms=now_ms - int(self.config.request_id_seconds * 1000),
                workers_gone_before_ms=now_ms - int(self.config.worker_retention_seconds * 1000),
            )
        )
        workers = len(self.state.workers)
        result = await self.proposer.propose(cmd)
        if len(self.state.workers) < workers:
            log.info("scheduler.pruned_workers", workers=workers - len(self.state.workers))
        if result.task_ids:
            log.info("scheduler.pruned", tasks=len(result.task_ids))
        return result

    # -- worker sessions (the interface the worker connection uses) ---------------

    async def connect(self, info: state_pb2.WorkerInfo, session: WorkerSession) -> None:
        """A worker connected: register it (committed) and start placing work on it.
        (What it holds is reconciled by the session, agentflow/master/reconcile.py.)

        Raises WorkerConflictError if another live session holds the same id, and
        ValueError (naming the field) if the registration is refused."""
        losing = self._losing.get(info.id)
        if losing is not None:
            # Its LOST is being committed: let it land, then register again below.
            # Registering first would leave it connected, LOST in the state, and idle.
            await asyncio.shield(losing)
        current = self._live.get(info.id)
        if current is not None and current.session is not session:
            raise WorkerConflictError(
                f"worker id {info.id!r} is already connected; "
                "stop the other worker or start this one with a different --worker-id"
            )
        # Heard now: silence must not be judged while its registration commits.
        self._heard[info.id] = self._monotonic()
        known = self.state.workers.get(info.id)
        if known is None or known.state != state_pb2.WORKER_STATE_ONLINE or known.info != info:
            result = await self.proposer.propose(
                state_pb2.Command(register_worker=state_pb2.RegisterWorker(info=info))
            )
            if result.error.code:
                raise ValueError(f"{result.error.field}: {result.error.message}")
        if info.id in self._live and self._live[info.id].session is not session:
            raise WorkerConflictError(f"worker id {info.id!r} connected twice at once")
        self._live[info.id] = _Live(session, last_heartbeat=self._clock())
        self._heard[info.id] = self._monotonic()
        self._workers_changed = True  # connected without a commit: views changed too
        self._wake.set()

    def disconnect(self, session: WorkerSession) -> None:
        live = self._live.get(session.worker_id)
        if live is not None and live.session is session:
            del self._live[session.worker_id]

    def heartbeat(self, worker_id: str, usage: Usage | None = None) -> None:
        """The worker is alive (a heartbeat, or any other message from it)."""
        live = self._live.get(worker_id)
        if live is not None:
            now = self._clock()
            if usage is not None:
                live.usage = usage
            live.last_heartbeat = now
            self._heard[worker_id] = self._monotonic()

    def connected(self) -> list[str]:
        return sorted(self._live)

    def usage(self, worker_id: str) -> tuple[Usage, float] | None:
        live = self._live.get(worker_id)
        return None if live is None else (live.usage, live.last_heartbeat)

    async def report_started(self, worker_id: str, task_id: str, attempt: int) -> bool:
        self.heartbeat(worker_id)
        cmd = state_pb2.Command(
            task_started=state_pb2.TaskStarted(
                task_id=task_id, attempt=attempt, worker_id=worker_id
            )
        )
        return not (await self.proposer.propose(cmd)).rejected

    async def report_progress(
        self, worker_id: str, task_id: str, attempt: int, progress: float, message: str
    ) -> bool:
        self.heartbeat(worker_id)
        cmd = state_pb2.Command(
            task_progress=state_pb2.TaskProgress(
                task_id=task_id,
                attempt=attempt,
                worker_id=worker_id,
                progress=progress,
                message=message,
            )
        )
        return not (await self.proposer.propose(cmd)).rejected

    async def report_finished(
        self,
        worker_id: str,
        task_id: str,
        attempt: int,
        success: bool,
        result: state_pb2.TaskResult,
    ) -> bool:
        """Commit a result. False: refused as stale (another attempt is current, or
        the task is already final); the worker should drop it."""
        self._heard_results(worker_id, 1)
        report = state_pb2.TaskFinished(
            task_id=task_id, attempt=attempt, success=success, result=result
        )
        cmd = state_pb2.Command(task_finished=self._finished_item(worker_id, report))
        return not (await self.proposer.propose(cmd)).rejected

    async def report_results(
        self, worker_id: str, reports: Sequence[state_pb2.TaskFinished]
    ) -> list[bool]:
        """Commit several results of one worker in as few commands as possible (one
        FinishTasks per run of distinct task ids, so that its `rejected`, keyed by
        task id, is unambiguous). Per report: False = refused as stale."""
        self._heard_results(worker_id, len(reports))
        chunks: list[list[state_pb2.TaskFinished]] = []
        seen: set[str] = set()
        for report in reports:
            if not chunks or report.task_id in seen:
                chunks.append([])
                seen = set()
            seen.add(report.task_id)
            chunks[-1].append(self._finished_item(worker_id, report))
        proposals = [
            self.proposer.propose(state_pb2.Command(finish_tasks=state_pb2.FinishTasks(items=c)))
            for c in chunks
        ]
        # Nearly always one chunk: awaited as is, without gather's task around it.
        results = [await proposals[0]] if len(proposals) == 1 else await asyncio.gather(*proposals)
        accepted: list[bool] = []
        for chunk, result in zip(chunks, results, strict=True):
            if result.error.code:
                raise ValueError(f"{result.error.field}: {result.error.message}")
            refused = {r.split(":", 1)[0] for r in result.rejected}
            accepted += [item.task_id not in refused for item in chunk]
        return accepted

    def _finished_item(
        self, worker_id: str, report: state_pb2.TaskFinished
    ) -> state_pb2.TaskFinished:
        """A report as committed: fenced to this worker, with the retry delay the
        leader decides for the case it failed with retries left."""
        item = state_pb2.TaskFinished()
        item.CopyFrom(report)
        item.worker_id = worker_id
        task = self.state.task(report.task_id)
        item.retry_delay_ms = self.retry_delay_ms(task, report.attempt) if task is not None else 0
        return item

    def _heard_results(self, worker_id: str, count: int) -> None:
        """Any message is a sign of life; results also feed the adaptive prefetch."""
        self.heartbeat(worker_id)
        live = self._live.get(worker_id)
        if live is not None:
            known = self.state.workers.get(worker_id)
            busy = known is not None and self.state.held_count(worker_id) > known.info.capacity
            live.note_results(self._clock(), busy, count)

    def retry_delay_ms(self, task: state_pb2.Task, attempt: int) -> int:
        """Exponential backoff with equal jitter: half fixed, half random."""
        base = int(task.spec.retry_backoff_ms or 1000)
        ceiling: int = min(self.config.retry_backoff_cap_ms, base * 2 ** max(0, attempt - 1))
        return ceiling // 2 + self._rng.randint(0, ceiling - ceiling // 2)

    # -- queries -----------------------------------------------------------------------

    def views(self) -> dict[str, WorkerView]:
        return worker_views(self.state, self._live, self._prefetch)

    def _prefetch(self, worker: state_pb2.Worker) -> int:
        """Assignments a worker may hold beyond its concurrency: the configured share
        of it, or, when its results come faster than one per `prefetch_window`, as
        many as it finishes in that window (a result's commit and the assignment
        that refills the slot are two commit round trips: without this, a worker of
        short tasks runs dry while they are under way)."""
        concurrency = max(0, worker.info.capacity)
        floor = int(concurrency * self.config.prefetch)
        live = self._live.get(worker.info.id)
        if live is None or not live.result_gap or floor >= self.config.prefetch_max:
            return floor
        wanted = math.ceil(self.config.prefetch_window / live.result_gap)
        return max(floor, min(self.config.prefetch_max, wanted))
