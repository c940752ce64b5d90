"""`AsyncClient`: the asyncio SDK (grpc.aio). One channel per master, opened lazily
inside the running loop; use it from that one loop.

This module is the only source of the client code: `sync.py` (`Client`, the blocking
SDK) is generated from it by scripts/gen_sync_client.py and never edited by hand.
The generator rewrites tokens: `async def` -> `def`, `await x` -> `x`, `async for` and
`async with` -> `for` and `with`, and names through its explicit table
(`AsyncIterator` -> `Iterator`, `aclosing` -> `closing`, `asyncio.sleep` ->
`time.sleep`, `grpc.aio.AioRpcError` -> `grpc.RpcError`, ...); it refuses to write a
file in which anything asynchronous is left. `make test` runs it with `--check`.

Why one generated twin rather than a shared core with thin sync and async adapters:
a method here is request building, one retried RPC and a conversion, and the waiting
is interleaved with that logic (the retry loop sleeps, the watch reconnects, `wait`
reads then watches then polls). A shared core would either be a sans-I/O state
machine per method, turning twenty straight lines into callbacks, or would run this
client on a background event loop for the blocking one, adding a thread per
`Client`, loop-affinity rules and a second failure mode (the blocking API stuck
behind a loop it does not own) while changing how blocking calls are cancelled
and how they trace. Generated, both clients stay plain straight-line code with their
own tracebacks, and a new API is written once, here.

What the blocking client does that is not a rename lives in the hand-written pair
`calls_aio` (imported here) and `calls_sync` (imported by the generated file), the same
names in each: closing channels, and waiting for a stream to end. A new difference of
that kind (say a background lease renewal: a task here, a thread there) goes into
that pair, not into an `if` here.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from os import PathLike
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import grpc

from agentflow._proto import coord_pb2 as coord
from agentflow._proto import coord_pb2_grpc as coord_grpc
from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import scheduler_pb2_grpc as api_grpc
from agentflow.client import convert, lock_requests, requests
from agentflow.client.base import (
    END_GRACE_S,
    ClientBase,
    Deadline,
    Settle,
    as_workflow,
    remaining,
)
from agentflow.client.calls_aio import Background, StopSignal, close_channels, wait_for_end
from agentflow.client.channels import TlsConfig
from agentflow.client.errors import (
    AgentFlowError,
    FailedPreconditionError,
    LockHeldError,
    LockLostError,
    NotFoundError,
    RpcStatus,
    rpc_status,
)
from agentflow.client.lease_clock import LeaseClock
from agentflow.client.lock_requests import DurationLike
from agentflow.client.models import (
    ClusterStatus,
    Deleted,
    Lock,
    PriorityLike,
    SubmittedWorkflow,
    Task,
    TaskEvent,
    TaskPage,
    TaskSpec,
    TaskState,
    WorkerStatus,
    Workflow,
    WorkflowStatus,
)
from agentflow.client.retry import RetryPolicy
from agentflow.client.tracking import EventFilter, WatchEnd, WorkflowTracker

if TYPE_CHECKING:
    from agentflow._proto.coord_pb2_grpc import LockServiceAsyncStub
    from agentflow._proto.scheduler_pb2_grpc import (
        ClusterServiceAsyncStub,
        SchedulerServiceAsyncStub,
    )

__all__ = ["AsyncAutoRenewLock", "AsyncClient", "AsyncLockLease"]

_log = logging.getLogger("agentflow.client")

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


@dataclass(frozen=True, slots=True)
class _Stubs:
    channel: grpc.aio.Channel
    scheduler: SchedulerServiceAsyncStub
    cluster: ClusterServiceAsyncStub
    locks: LockServiceAsyncStub


class AsyncClient(ClientBase):
    """asyncio client for an AgentFlow cluster; the same API as `Client`, awaited.

    `masters`: "host:port", "http://host:port", a comma-separated string or a list;
    default $MASTER_URL, else 127.0.0.1:6767. Any master will do: the client follows
    the leader itself and retries within `retry.deadline` (writes keep one request id
    across retries, so they are applied once). Use as an async context manager or `await close()`.
    """

    def __init__(
        self,
        masters: str | Sequence[str] | None = None,
        *,
        retry: RetryPolicy | None = None,
        tls: TlsConfig | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(masters, retry=retry, tls=tls, token=token)
        self._stubs: dict[str, _Stubs] = {}
        # Guards `_stubs` and `_closed`: the blocking client is shared between threads
        # (within one event loop the lock is never contended).
        self._lock = threading.Lock()

    # ----- lifecycle -----

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            stubs, self._stubs = self._stubs, {}
        await close_channels(s.channel for s in stubs.values())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ----- plumbing -----

    def _stub(self, address: str) -> _Stubs:
        with self._lock:
            if self._closed:
                raise AgentFlowError("the client is closed")
            stubs = self._stubs.get(address)
            if stubs is None:
                channel = self._factory.aio_channel(address)
                stubs = _Stubs(
                    channel,
                    api_grpc.SchedulerServiceStub(channel),
                    api_grpc.ClusterServiceStub(channel),
                    coord_grpc.LockServiceStub(channel),
                )
                self._stubs[address] = stubs
            return stubs

    async def _unary(
        self,
        operation: str,
        method: Callable[[_Stubs], grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp]],
        request: _Req,
        *,
        write: bool = False,
        patience: float = 0.0,
        policy: RetryPolicy | None = None,
    ) -> _Resp:
        attempts = self._attempts(operation, write=write, patience=patience, policy=policy)
        while True:
            address = self._router.current
            try:
                response = await method(self._stub(address))(
                    request, timeout=attempts.timeout(), metadata=self._factory.metadata
                )
            except grpc.aio.AioRpcError as exc:
                await asyncio.sleep(attempts.failed(address, rpc_status(exc)))
                continue
            self._router.succeeded(address)
            if write:
                self._saw(response)
            return response

    async def _events(
        self, request: api.WatchTasksRequest, *, limit: Deadline | None, what: str
    ) -> AsyncGenerator[TaskEvent, None]:
        """Watch events across reconnects, each change once; ends by raising, or when
        an `end_when_final` watch is over."""
        delivered = EventFilter()
        end = WatchEnd(request)
        attempts = self._attempts(what)
        while True:
            address = self._router.current
            call = self._stub(address).scheduler.WatchTasks(
                self._watch_request(request),
                timeout=remaining(limit),
                metadata=self._factory.metadata,
            )
            received = False
            try:
                async for message in call:
                    received = True
                    event = convert.event_from_proto(message)
                    end.saw(event)
                    if delivered.fresh(event):
                        yield event
                if end.ends:
                    return
                status = RpcStatus(grpc.StatusCode.UNAVAILABLE, "the watch stream ended")
            except grpc.aio.AioRpcError as exc:
                status = rpc_status(exc)
            finally:
                if end.due:
                    await wait_for_end(call, END_GRACE_S)
                call.cancel()
            if limit is not None and limit.expired():
                raise limit.error(what)
            if received:
                self._router.succeeded(address)
                attempts = self._attempts(what)
            delay = attempts.failed(address, status)
            left = remaining(limit)
            await asyncio.sleep(delay if left is None else min(delay, left))

    # ----- writes -----

    async def submit(
        self,
        command: str,
        *,
        name: str = "",
        group: str = "",
        priority: PriorityLike | None = None,
        cpu: float = 0.0,
        memory_mb: int = 0,
        gpus: int = 0,
        labels: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str = "",
        args: Any = None,
        max_retries: int = 0,
        retry_backoff: float | None = None,
        timeout: float | None = None,
        dependencies: Iterable[str] = (),
        id: str = "",
        request_id: str | None = None,
    ) -> str:
        """Submit one task; returns its id. See `TaskSpec` for the fields."""
        spec = requests.task_spec(
            command, name=name, group=group, priority=priority, cpu=cpu,
            memory_mb=memory_mb, gpus=gpus, labels=labels, env=env, cwd=cwd, args=args,
            max_retries=max_retries, retry_backoff=retry_backoff, timeout=timeout,
            dependencies=dependencies, id=id,
        )  # fmt: skip
        ids = await self.submit_many([spec], request_id=request_id)
        return ids[0]

    async def submit_many(
        self, specs: Iterable[TaskSpec], *, request_id: str | None = None
    ) -> builtins.list[str]:
        """Submit tasks in one atomic call; returns their ids in order."""
        request = requests.submit_tasks(specs, request_id)
        response = await self._unary(
            "submit", lambda s: s.scheduler.SubmitTasks, request, write=True
        )
        return builtins.list(response.task_ids)

    async def submit_workflow(
        self,
        workflow: Workflow | str | PathLike[str],
        *,
        id: str | None = None,
        request_id: str | None = None,
    ) -> SubmittedWorkflow:
        """Submit a `Workflow`, or the workflow YAML file at a path; `id` replaces the
        workflow's own id (one workflow file, several runs side by side)."""
        request, checked = requests.submit_workflow(as_workflow(workflow, id), request_id)
        response = await self._unary(
            "submit workflow", lambda s: s.scheduler.SubmitWorkflow, request, write=True
        )
        return convert.submitted_workflow_from_proto(response, checked)

    async def cancel(
        self,
        *task_ids: str,
        workflow_id: str = "",
        reason: str = "",
        request_id: str | None = None,
    ) -> builtins.list[str]:
        """Cancel tasks and/or every unfinished task of a workflow; returns those cancelled."""
        request = requests.cancel(task_ids, workflow_id, reason, request_id)
        response = await self._unary("cancel", lambda s: s.scheduler.Cancel, request, write=True)
        return builtins.list(response.cancelled)

    async def reprioritize(
        self, task_id: str, priority: PriorityLike, *, request_id: str | None = None
    ) -> None:
        """Move a task that is not running yet to another priority level."""
        request = requests.reprioritize(task_id, priority, request_id)
        await self._unary("reprioritize", lambda s: s.scheduler.Reprioritize, request, write=True)

    async def delete(
        self,
        *task_ids: str,
        workflow_ids: Iterable[str] | str = (),
        finished_before: float | None = None,
        request_id: str | None = None,
    ) -> Deleted:
        """Purge finished records so their ids can be used again: tasks submitted on
        their own, workflows (each with all its tasks), and with `finished_before`
        (seconds) every finished task and workflow that ended at least that long ago.

        All or nothing for the named ones: FailedPreconditionError, naming the record
        and its state, for one that has not finished (cancel it first), a task of a
        workflow (delete the workflow), or one an unfinished task depends on.
        """
        request = requests.delete(task_ids, workflow_ids, finished_before, request_id)
        response = await self._unary("delete", lambda s: s.scheduler.Delete, request, write=True)
        return convert.deleted_from_proto(response)

    async def delete_workflow(self, workflow_id: str, *, request_id: str | None = None) -> Deleted:
        """Purge a finished workflow with its tasks (see `delete`)."""
        return await self.delete(workflow_ids=[workflow_id], request_id=request_id)

    # ----- reads -----

    async def get(self, task_id: str) -> Task:
        request = requests.get_task(task_id)
        return convert.task_from_proto(
            await self._unary("get", lambda s: s.scheduler.GetTask, request)
        )

    async def get_workflow(self, workflow_id: str, include_tasks: bool = True) -> WorkflowStatus:
        request = requests.get_workflow(workflow_id, include_tasks)
        response = await self._unary("get workflow", lambda s: s.scheduler.GetWorkflow, request)
        return convert.workflow_status_from_proto(response)

    async def list_page(
        self,
        *,
        states: Iterable[TaskState | str] = (),
        group: str = "",
        workflow_id: str = "",
        page_size: int = 100,
        page_token: str = "",
    ) -> TaskPage:
        """One page of matching tasks (see `list` for all of them)."""
        request = requests.list_tasks(states, group, workflow_id, page_size, page_token)
        response = await self._unary("list", lambda s: s.scheduler.ListTasks, request)
        return convert.page_from_proto(response)

    def list(
        self,
        *,
        states: Iterable[TaskState | str] = (),
        group: str = "",
        workflow_id: str = "",
        page_size: int = 100,
    ) -> AsyncIterator[Task]:
        """Every matching task, fetching pages as the iteration goes."""
        first = requests.list_tasks(states, group, workflow_id, page_size)

        async def pages() -> AsyncIterator[Task]:
            request = first
            while True:
                response = await self._unary("list", lambda s: s.scheduler.ListTasks, request)
                for message in response.tasks:
                    yield convert.task_from_proto(message)
                if not response.next_page_token:
                    return
                request = api.ListTasksRequest()
                request.CopyFrom(first)
                request.page_token = response.next_page_token

        return pages()

    async def explain(self, task_id: str) -> builtins.list[str]:
        """Why a task is where it is (mostly: why it is not running), in words."""
        request = requests.explain(task_id)
        response = await self._unary("explain", lambda s: s.scheduler.Explain, request)
        return builtins.list(response.reasons)

    async def workers(self, group: str = "") -> builtins.list[WorkerStatus]:
        request = requests.list_workers(group)
        response = await self._unary("workers", lambda s: s.scheduler.ListWorkers, request)
        return convert.workers_from_proto(response.workers)

    async def cluster_status(self) -> ClusterStatus:
        request = requests.cluster_status()
        response = await self._unary("cluster status", lambda s: s.cluster.Status, request)
        return convert.cluster_status_from_proto(response)

    # ----- locks -----

    async def acquire_lock(
        self,
        name: str,
        ttl: DurationLike,
        *,
        owner: str | None = None,
        wait: DurationLike | None = None,
        request_id: str | None = None,
    ) -> Lock:
        """Take the lock `name` for a lease of `ttl` (seconds, or "10s", "2m").

        Free: granted at once. Held by another: LockHeldError (its `holder` names who),
        or with `wait`, queued first-come first-served for up to that long. `owner`
        defaults to this process's owner (the same for every client of the process);
        an owner that already holds the lock gets FailedPreconditionError (renew it).
        The returned `token` is the fencing token to pass to what the lock protects.
        """
        request = lock_requests.acquire(name, ttl, owner, wait, request_id)
        try:
            response = await self._unary(
                "acquire lock",
                lambda s: s.locks.Acquire,
                request,
                write=True,
                patience=request.wait_ms / 1000,
            )
        except FailedPreconditionError as exc:
            raise _held_or_not(exc) from None
        return convert.lock_from_proto(response.lock)

    async def release_lock(
        self, name: str, token: int, *, owner: str | None = None, request_id: str | None = None
    ) -> str:
        """Give the lock up; returns the waiter it went to ("" = none waited).

        LockLostError when `owner` (default: this process's) with `token` no longer
        holds it: the lease expired, and whatever it protected may have moved on.
        """
        request = lock_requests.release(name, token, owner, request_id)
        try:
            response = await self._unary(
                "release lock", lambda s: s.locks.Release, request, write=True
            )
        except FailedPreconditionError as exc:
            raise _lost(exc) from None
        return response.granted_to

    async def renew_lock(
        self,
        name: str,
        token: int,
        ttl: DurationLike,
        *,
        owner: str | None = None,
        request_id: str | None = None,
    ) -> Lock:
        """Extend the lease to `ttl` from now (the token stays); LockLostError as in
        `release_lock`."""
        request = lock_requests.renew(name, token, ttl, owner, request_id)
        return await self._renew(request, None)

    async def _renew(self, request: coord.RenewLockRequest, policy: RetryPolicy | None) -> Lock:
        try:
            response = await self._unary(
                "renew lock", lambda s: s.locks.Renew, request, write=True, policy=policy
            )
        except FailedPreconditionError as exc:
            raise _lost(exc) from None
        return convert.lock_from_proto(response.lock)

    async def get_lock(self, name: str) -> Lock:
        """The lock as it is: holder, token, lease, waiters. A lock nobody holds,
        waits for or delays has an empty `owner`."""
        request = lock_requests.get(name)
        return convert.lock_from_proto(
            await self._unary("get lock", lambda s: s.locks.Get, request)
        )

    async def list_locks(self, prefix: str = "") -> builtins.list[Lock]:
        """Every lock held, waited for or in its lock delay, by name; with `prefix`,
        only the names that start with it."""
        request = lock_requests.list_locks(prefix)
        response = await self._unary("list locks", lambda s: s.locks.List, request)
        return [convert.lock_from_proto(m) for m in response.locks]

    def lock(
        self,
        name: str,
        ttl: DurationLike,
        *,
        owner: str | None = None,
        wait: DurationLike | None = None,
    ) -> AsyncLockLease:
        """The lock held for a block: `async with client.lock("db", ttl="30s") as lease:`.

        Acquired on entry (see `acquire_lock`), released on exit. Not renewed: a block
        that may outlast `ttl` wants `auto_renew_lock`. Pass `lease.token` downstream.
        """
        return AsyncLockLease(self, name, ttl, owner=owner, wait=wait)

    def auto_renew_lock(
        self,
        name: str,
        ttl: DurationLike,
        *,
        owner: str | None = None,
        wait: DurationLike | None = None,
        on_lost: Callable[[LockLostError], None] | None = None,
    ) -> AsyncAutoRenewLock:
        """As `lock`, renewed every third of `ttl` while the block runs.

        When the lease is lost (refused renewal, or no master answered before it ran
        out by this process's clock), renewal stops, `lost` turns true, `lost_event` is
        set and `on_lost` is called with the reason: stop using what it protected.
        """
        return AsyncAutoRenewLock(self, name, ttl, owner=owner, wait=wait, on_lost=on_lost)

    # ----- watching and waiting -----

    def watch(
        self,
        task_ids: Iterable[str] | str = (),
        *,
        workflow_id: str = "",
        include_progress: bool = False,
    ) -> AsyncGenerator[TaskEvent, None]:
        """The matching tasks as they are now (`initial=True`), then every change.

        No ids and no workflow = all tasks. Reconnects by itself (a change is delivered
        once); raises UnavailableError when no master serves it within the deadline.
        Stop with `aclose()` (or `contextlib.aclosing` around the loop).
        """
        request = requests.watch_tasks(task_ids, workflow_id, include_progress)
        return self._events(request, limit=None, what="watch")

    async def wait(
        self,
        id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[TaskEvent], None] | None = None,
    ) -> Task | WorkflowStatus:
        """Wait for a task or a workflow (whichever `id` names) to finish."""
        limit = Deadline.after(timeout)
        try:
            task = await self.get(id)
        except NotFoundError:
            try:
                workflow = await self.get_workflow(id, include_tasks=True)
            except NotFoundError:
                raise NotFoundError(f"no task or workflow {id!r}") from None
            return await self._wait_workflow(workflow, limit, on_event)
        return await self._wait_task(task, limit, on_event)

    async def wait_task(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[TaskEvent], None] | None = None,
    ) -> Task:
        """The task once final (succeeded, failed, cancelled or skipped).

        DeadlineExceededError after `timeout` seconds; the task keeps going.
        """
        limit = Deadline.after(timeout)
        return await self._watch_task(task_id, limit, on_event)

    async def wait_workflow(
        self,
        workflow_id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[TaskEvent], None] | None = None,
    ) -> WorkflowStatus:
        """The workflow (with its tasks) once final."""
        limit = Deadline.after(timeout)
        # The watch gives every task's state: no need to read (and convert) them here.
        status = await self.get_workflow(workflow_id, include_tasks=False)
        if status.is_finished:
            return await self.get_workflow(workflow_id)
        return await self._wait_workflow(status, limit, on_event)

    async def _wait_task(
        self, task: Task, limit: Deadline | None, on_event: Callable[[TaskEvent], None] | None
    ) -> Task:
        if task.is_finished:
            return task
        return await self._watch_task(task.id, limit, on_event)

    async def _watch_task(
        self, task_id: str, limit: Deadline | None, on_event: Callable[[TaskEvent], None] | None
    ) -> Task:
        """One watch call: its first event is the task as it is now (NotFoundError if
        there is none), so waiting costs no separate read."""
        request = requests.wait_for_task(task_id, show_progress=on_event is not None)
        what = f"wait for task {task_id}"
        async with aclosing(self._events(request, limit=limit, what=what)) as events:
            async for event in events:
                if on_event is not None:
                    on_event(event)
                if event.task.id == task_id and event.task.is_finished:
                    # Closing the events reads the end the server sends right after
                    # this (END_GRACE_S at most), rather than cancelling the call.
                    return event.task
        raise AgentFlowError(f"{what}: the watch ended without the task's end")

    async def _wait_workflow(
        self,
        status: WorkflowStatus,
        limit: Deadline | None,
        on_event: Callable[[TaskEvent], None] | None,
    ) -> WorkflowStatus:
        if status.is_finished:
            return status
        tracker = WorkflowTracker(status)
        what = f"wait for workflow {status.id}"
        if not tracker.done:
            # Without a caller to show progress to, only the ends matter.
            quiet = on_event is None
            request = requests.watch_tasks(
                (), status.id, include_progress=not quiet, final_only=quiet
            )
            async with aclosing(self._events(request, limit=limit, what=what)) as events:
                async for event in events:
                    if on_event is not None:
                        on_event(event)
                    tracker.update(event.task)
                    if tracker.done:
                        break
        return await self._settled_workflow(status.id, limit, what, tracker)

    async def _settled_workflow(
        self,
        workflow_id: str,
        limit: Deadline | None,
        what: str,
        tracker: WorkflowTracker | None = None,
    ) -> WorkflowStatus:
        """Every task is final; read the workflow until its own state is too. The
        tasks come from `tracker` when it saw every one (their final versions came
        with the watch: no need to read and convert them all again)."""
        settle = Settle(self._policy, limit, what)
        while True:
            status = await self.get_workflow(workflow_id, include_tasks=tracker is None)
            delay = settle.next_delay(status)
            if delay is None:
                if tracker is None:
                    return status
                tasks = tracker.tasks_of(status.task_ids)
                if tasks is None:
                    return await self.get_workflow(workflow_id)
                return dataclasses.replace(status, tasks=tasks)
            await asyncio.sleep(delay)


def _held_or_not(exc: FailedPreconditionError) -> FailedPreconditionError:
    """A refused acquire: LockHeldError when the lock is someone else's."""
    if isinstance(exc, LockHeldError) or exc.field != "name" or "held by" not in exc.message:
        return exc
    return LockHeldError(exc.message, field=exc.field, code=exc.code)


def _lost(exc: FailedPreconditionError) -> LockLostError:
    return LockLostError(exc.message, field=exc.field, code=exc.code)


class AsyncLockLease:
    """A lock held for the length of an `async with` block (see `AsyncClient.lock`).

    `lock` is the grant (None before entry), `token` its fencing token. `lost` is true
    once the lease may have ended: its ttl ran out by this process's clock, or the
    cluster refused it. Leaving the block releases the lock; a release refused because
    the lease was already lost is logged (and `lost` set), not raised.
    """

    def __init__(
        self,
        client: AsyncClient,
        name: str,
        ttl: DurationLike,
        *,
        owner: str | None = None,
        wait: DurationLike | None = None,
        on_lost: Callable[[LockLostError], None] | None = None,
    ) -> None:
        # Built now so that bad arguments fail where the lease is made.
        self._request = lock_requests.acquire(name, ttl, owner, wait, None)
        self._client = client
        self.name = self._request.name
        self.owner = self._request.owner
        self.ttl = self._request.ttl_ms / 1000
        self.lock: Lock | None = None
        self.lost_reason: LockLostError | None = None
        self.lost_event = asyncio.Event()
        self._on_lost = on_lost
        self._clock = LeaseClock(self.ttl)

    @property
    def token(self) -> int:
        """The fencing token of the lease (0 before it is granted)."""
        return self.lock.token if self.lock is not None else 0

    @property
    def lost(self) -> bool:
        return self.lost_reason is not None or self._clock.expired()

    @property
    def remaining(self) -> float:
        """Seconds the lease surely lasts by this process's clock (0: maybe over)."""
        return 0.0 if self.lost_reason is not None else self._clock.remaining()

    async def acquire(self) -> Lock:
        if self.lock is not None:
            raise AgentFlowError(f"lock {self.name!r}: this lease holds it already")
        wait = self._request.wait_ms / 1000 if self._request.wait_ms else None
        sent = self._clock.now()
        self.lock = await self._client.acquire_lock(
            self.name, self.ttl, owner=self.owner, wait=wait
        )
        self.lost_reason = None
        self.lost_event.clear()
        # Waiting in the queue took some of the time since sending: the lease began
        # at its grant, so it lasts at least ttl from the send (the conservative end).
        self._clock.granted(sent)
        return self.lock

    async def release(self) -> None:
        """Give the lock up (at most once); a lease already lost is only logged."""
        lock, self.lock = self.lock, None
        if lock is None:
            return
        self._clock.ended()
        try:
            await self._client.release_lock(self.name, lock.token, owner=self.owner)
        except LockLostError as exc:
            self._mark_lost(exc)
            _log.warning("lock %r: the lease was lost before its release: %s", self.name, exc)

    def _mark_lost(self, reason: LockLostError) -> None:
        if self.lost_reason is not None:
            return
        self.lost_reason = reason
        self.lost_event.set()
        if self._on_lost is not None:
            try:
                self._on_lost(reason)
            except Exception:
                _log.exception("lock %r: the on_lost callback failed", self.name)

    async def __aenter__(self) -> Self:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.release()
        except AgentFlowError as error:
            if exc is None:
                raise
            # The block's own failure matters more; the lease ends by its ttl anyway.
            _log.warning("lock %r: release failed (the lease will expire): %s", self.name, error)


class AsyncAutoRenewLock(AsyncLockLease):
    """A lease renewed in the background every third of its ttl while held (see
    `AsyncClient.auto_renew_lock`); renewal stops on release or once the lease is lost."""

    def __init__(
        self,
        client: AsyncClient,
        name: str,
        ttl: DurationLike,
        *,
        owner: str | None = None,
        wait: DurationLike | None = None,
        on_lost: Callable[[LockLostError], None] | None = None,
    ) -> None:
        super().__init__(client, name, ttl, owner=owner, wait=wait, on_lost=on_lost)
        self.renewals = 0
        self._stop = StopSignal()
        self._renewing: Background | None = None

    async def acquire(self) -> Lock:
        lock = await super().acquire()
        self._stop = StopSignal()
        self._renewing = Background(self._renew_loop, f"agentflow-lock-renew:{self.name}")
        return lock

    async def release(self) -> None:
        self._stop.set()
        renewing, self._renewing = self._renewing, None
        if renewing is not None:
            await renewing.join()
        await super().release()

    async def _renew_loop(self) -> None:
        while not await self._stop.wait(self._clock.until_renewal()):
            lock = self.lock
            left = self._clock.remaining()
            if lock is None:
                return
            if left <= 0:
                self._mark_lost(
                    LockLostError(f"lock {self.name!r}: the lease ran out before a renewal")
                )
                return
            request = lock_requests.renew(self.name, lock.token, self.ttl, self.owner, None)
            # Retrying past the lease's end is useless: by then it is lost.
            policy = dataclasses.replace(
                self._client.retry_policy,
                deadline=left,
                attempt_timeout=min(self._client.retry_policy.attempt_timeout, left),
            )
            sent = self._clock.now()
            try:
                renewed = await self._client._renew(request, policy)
            except LockLostError as exc:
                self._mark_lost(exc)
                return
            except AgentFlowError as exc:
                self._mark_lost(
                    LockLostError(
                        f"lock {self.name!r}: no renewal before the lease ran out ({exc})",
                        code=exc.code,
                    )
                )
                return
            except Exception as exc:
                # A bug must not leave the holder believing in a lease nobody renews.
                _log.exception("lock %r: renewal failed", self.name)
                self._mark_lost(LockLostError(f"lock {self.name!r}: renewal failed: {exc!r}"))
                return
            self.lock = renewed
            self._clock.granted(sent)
            self.renewals += 1
