"""LockService: distributed locks, each change one committed command.

Writes run on the leader (a follower forwards them). A waiting Acquire is queued in
the replicated state (FIFO, with a deadline) and the call waits here until an applied
entry grants the lock to its owner. A caller that gives up (its wait ran out, or it
left) proposes LeaveLockQueue, so no grant goes to a waiter nobody listens to; a
grant that reached it first is kept when the caller is still there and given back
when it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import grpc
import structlog

from agentflow._proto import coord_pb2 as api
from agentflow._proto import coord_pb2_grpc, state_pb2
from agentflow.master.leader_only import leader_only
from agentflow.master.runtime import Runtime
from agentflow.master.status import Ctx, abort_command_error, abort_for, abort_invalid
from agentflow.master.writes import barrier, write
from agentflow.raft.types import RaftError
from agentflow.rules.limits import MAX_LOCK_WAIT_MS
from agentflow.rules.locks import check_lock_name, check_lock_owner, check_lock_ttl
from agentflow.state import ChangeSet, StateError
from agentflow.state.errors import FAILED_PRECONDITION

log = structlog.get_logger(__name__)

SERVICE = "LockService"
LOCK_HOLDER = "lock-holder"
# The queued waiter's deadline in the state is a little later than the caller's:
# the caller leaves on its own deadline; the state's only matters when it cannot.
_STATE_GRACE_MS = 200


def lock_info(lock: state_pb2.Lock | None, name: str, now_ms: int) -> api.LockInfo:
    if lock is None:
        return api.LockInfo(name=name)
    return api.LockInfo(
        name=lock.name,
        owner=lock.owner,
        token=lock.token,
        granted_at_ms=lock.granted_ms,
        expires_at_ms=lock.expires_ms,
        waiters=[w.owner for w in lock.waiters if w.deadline_ms == 0 or w.deadline_ms > now_ms],
        lock_delay_until_ms=lock.lock_delay_until_ms,
    )


class LockApi(coord_pb2_grpc.LockServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def _check(self, context: Ctx, name: str, owner: str, ttl_ms: int | None) -> None:
        try:
            check_lock_name(name)
            check_lock_owner(owner)
            if ttl_ms is not None:
                check_lock_ttl(ttl_ms)
        except StateError as exc:
            await abort_for(context, exc)

    def _info(self, name: str) -> api.LockInfo:
        return lock_info(self.rt.state.lock(name), name, self.rt.state.last_now_ms)

    @leader_only(SERVICE, api.AcquireLockResponse)
    async def Acquire(
        self, request: api.AcquireLockRequest, context: Ctx
    ) -> api.AcquireLockResponse:
        await self._check(context, request.name, request.owner, request.ttl_ms)
        if not 0 <= request.wait_ms <= MAX_LOCK_WAIT_MS:
            await abort_invalid(
                context, "wait_ms", f"{request.wait_ms} ms (from 0 to {MAX_LOCK_WAIT_MS} ms)"
            )
        cmd = state_pb2.Command(
            acquire_lock=state_pb2.AcquireLock(
                name=request.name, owner=request.owner, ttl_ms=request.ttl_ms
            )
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.wait_ms / 1000
        if request.wait_ms:
            cmd.acquire_lock.wait = True
            cmd.acquire_lock.wait_deadline_ms = (
                self.rt.proposer.now_ms() + request.wait_ms + _STATE_GRACE_MS
            )
        # Listen before proposing: the grant may be applied before the answer returns.
        changed = asyncio.Event()

        def on_change(cs: ChangeSet) -> None:
            if request.name in cs.locks:
                changed.set()

        unsubscribe = self.rt.state.add_listener(on_change)
        try:
            result = await write(
                self.rt, context, cmd, request, request.request_id, self._held(request, context)
            )
            if result.lock_token:
                return await self._granted(request, context, result)
            return await self._wait(request, context, changed, deadline)
        finally:
            unsubscribe()

    def _held(
        self, request: api.AcquireLockRequest, context: Ctx
    ) -> Callable[[state_pb2.CommandError], Awaitable[None]]:
        async def refused(error: state_pb2.CommandError) -> None:
            lock = self.rt.state.lock(request.name)
            if error.field == "name" and lock is not None and lock.owner:
                # A try-once refusal names the holder as a wait that ran out does.
                await abort_command_error(context, error, (LOCK_HOLDER, lock.owner))

        return refused

    async def _granted(
        self, request: api.AcquireLockRequest, context: Ctx, result: state_pb2.CommandResult
    ) -> api.AcquireLockResponse:
        lock = self.rt.state.lock(request.name)
        if result.duplicate and (
            lock is None or (lock.owner, lock.token) != (request.owner, result.lock_token)
        ):
            # A retry of a request granted earlier, whose lease has ended since: the
            # caller must not believe it holds the lock.
            await abort_for(
                context,
                StateError(
                    FAILED_PRECONDITION,
                    "request_id",
                    f"this request was granted lock {request.name!r} (token "
                    f"{result.lock_token}) and that lease has ended since",
                ),
            )
        info = self._info(request.name)
        info.owner, info.token = request.owner, result.lock_token
        info.expires_at_ms = result.lock_expires_ms
        return api.AcquireLockResponse(lock=info, index=result.index)

    async def _wait(
        self, request: api.AcquireLockRequest, context: Ctx, changed: asyncio.Event, deadline: float
    ) -> api.AcquireLockResponse:
        loop = asyncio.get_running_loop()
        try:
            while True:
                lock = self.rt.state.lock(request.name)
                if lock is not None and lock.owner == request.owner:
                    return api.AcquireLockResponse(
                        lock=self._info(request.name), index=self.rt.state.applied_index
                    )
                if lock is None or not any(w.owner == request.owner for w in lock.waiters):
                    break  # dropped from the queue (its deadline in the state passed)
                left = deadline - loop.time()
                if left <= 0:
                    break
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), left)
        except asyncio.CancelledError:
            # The caller left: nobody would use a grant; give it back.
            token = await self._leave(request.name, request.owner)
            if token:
                await self._give_back(request.name, request.owner, token)
            raise
        token = await self._leave(request.name, request.owner)
        if token:
            return api.AcquireLockResponse(
                lock=self._info(request.name), index=self.rt.state.applied_index
            )
        holder = self._info(request.name).owner
        context.set_trailing_metadata((("error-field", "wait_ms"), (LOCK_HOLDER, holder)))
        why = f"held by {holder!r}" if holder else "handed to an earlier waiter"
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"wait_ms: lock {request.name!r} is still {why} after {request.wait_ms} ms",
        )
        raise AssertionError("unreachable")

    async def _leave(self, name: str, owner: str) -> int:
        """Leave the queue; the token of a grant that came first, else 0. Best effort:
        when it cannot commit, the waiter's deadline in the state drops it."""
        cmd = state_pb2.Command(leave_lock_queue=state_pb2.LeaveLockQueue(name=name, owner=owner))
        try:
            result = await self.rt.proposer.propose(cmd)
        except (RaftError, TimeoutError) as exc:
            log.info("lock.leave_failed", name=name, owner=owner, error=str(exc))
            return 0
        return result.lock_token

    async def _give_back(self, name: str, owner: str, token: int) -> None:
        cmd = state_pb2.Command(
            release_lock=state_pb2.ReleaseLock(name=name, owner=owner, token=token)
        )
        try:
            await self.rt.proposer.propose(cmd)
        except (RaftError, TimeoutError) as exc:
            log.info("lock.give_back_failed", name=name, owner=owner, error=str(exc))

    @leader_only(SERVICE, api.ReleaseLockResponse)
    async def Release(
        self, request: api.ReleaseLockRequest, context: Ctx
    ) -> api.ReleaseLockResponse:
        await self._check(context, request.name, request.owner, None)
        cmd = state_pb2.Command(
            release_lock=state_pb2.ReleaseLock(
                name=request.name, owner=request.owner, token=request.token
            )
        )
        result = await write(self.rt, context, cmd, request, request.request_id)
        granted = [g.owner for g in result.lock_grants if g.name == request.name]
        return api.ReleaseLockResponse(granted_to=granted[0] if granted else "", index=result.index)

    @leader_only(SERVICE, api.RenewLockResponse)
    async def Renew(self, request: api.RenewLockRequest, context: Ctx) -> api.RenewLockResponse:
        await self._check(context, request.name, request.owner, request.ttl_ms)
        cmd = state_pb2.Command(
            renew_lock=state_pb2.RenewLock(
                name=request.name, owner=request.owner, token=request.token, ttl_ms=request.ttl_ms
            )
        )
        result = await write(self.rt, context, cmd, request, request.request_id)
        info = self._info(request.name)
        info.token, info.expires_at_ms = result.lock_token, result.lock_expires_ms
        return api.RenewLockResponse(lock=info, index=result.index)

    async def Get(self, request: api.GetLockRequest, context: Ctx) -> api.LockInfo:
        try:
            check_lock_name(request.name)
        except StateError as exc:
            await abort_for(context, exc)
        await barrier(self.rt, context)
        return self._info(request.name)

    async def List(self, request: api.ListLocksRequest, context: Ctx) -> api.ListLocksResponse:
        await barrier(self.rt, context)
        now = self.rt.state.last_now_ms
        locks = sorted(
            (k for k in self.rt.state.locks() if k.name.startswith(request.prefix)),
            key=lambda k: k.name,
        )
        return api.ListLocksResponse(locks=[lock_info(k, k.name, now) for k in locks])
