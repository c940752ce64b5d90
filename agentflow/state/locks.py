"""The locks domain: named leases with fencing tokens, and their FIFO waiters.

A lock's fencing token is the Raft index of the entry that granted it, so the tokens
of one lock strictly increase across holders, restarts and snapshots, and a resource
that refuses a token lower than one it accepted is safe from a holder that lost its
lease without knowing. Time is only the command's `now_ms`: a lease ends when the
leader proposes ExpireLocks for it (and the apply finds it still due), never by a
clock read here.

A lock record exists while it is held, waited on, or in its lock delay; a record left
with none of those is forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agentflow._proto import state_pb2
from agentflow.rules.fields import show
from agentflow.rules.limits import MAX_LOCK_WAITERS, MAX_LOCKS
from agentflow.rules.locks import (
    validate_acquire_lock,
    validate_expire_locks,
    validate_leave_lock_queue,
    validate_release_lock,
    validate_renew_lock,
)
from agentflow.state.domain import Changes, Domain, Handler
from agentflow.state.errors import FAILED_PRECONDITION, StateError

__all__ = ["LOCKS", "LockDomain"]

LOCKS = "locks"


def _live(waiter: state_pb2.LockWaiter, now: int) -> bool:
    return waiter.deadline_ms == 0 or waiter.deadline_ms > now


class LockDomain(Domain):
    """Locks by name (live protobuf objects: read-only to callers)."""

    name = LOCKS
    records: dict[str, state_pb2.Lock]

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.records = {}

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "acquire_lock": self._acquire,
            "release_lock": self._release,
            "renew_lock": self._renew,
            "expire_locks": self._expire,
            "leave_lock_queue": self._leave,
        }

    # ---- queries ------------------------------------------------------------------

    def lock(self, name: str) -> state_pb2.Lock | None:
        return self.records.get(name)

    def locks(self) -> list[state_pb2.Lock]:
        return list(self.records.values())

    def expired(self, now_ms: int) -> list[str]:
        """Names the leader should put in an ExpireLocks at `now_ms`: leases that ran
        out, and locks without holder whose lock delay is over (to hand them to the
        next waiter or forget them)."""
        return [
            name
            for name, lock in self.records.items()
            if (lock.expires_ms <= now_ms if lock.owner else lock.lock_delay_until_ms <= now_ms)
        ]

    # ---- helpers ------------------------------------------------------------------

    def _grant(
        self,
        lock: state_pb2.Lock,
        owner: str,
        ttl_ms: int,
        ch: Changes,
    ) -> None:
        lock.owner = owner
        lock.token = ch.index
        lock.granted_ms = ch.now
        lock.expires_ms = ch.now + ttl_ms
        lock.lock_delay_until_ms = 0

    def _settle(self, lock: state_pb2.Lock, ch: Changes, result: state_pb2.CommandResult) -> None:
        """Drop waiters past their deadline; a lock without holder whose delay is over
        goes to its next waiter, or is forgotten when none is left."""
        for i in reversed(range(len(lock.waiters))):
            if not _live(lock.waiters[i], ch.now):
                del lock.waiters[i]
        ch.mark(LOCKS, lock.name)
        if lock.owner or lock.lock_delay_until_ms > ch.now:
            return
        if not lock.waiters:
            del self.records[lock.name]
            return
        head = lock.waiters[0]
        self._grant(lock, head.owner, head.ttl_ms, ch)
        del lock.waiters[0]
        result.lock_grants.add(
            name=lock.name, owner=lock.owner, token=lock.token, expires_ms=lock.expires_ms
        )

    @staticmethod
    def _drop_holder(lock: state_pb2.Lock) -> None:
        lock.owner = ""
        lock.token = 0
        lock.granted_ms = 0
        lock.expires_ms = 0

    def _holder(self, name: str, owner: str, token: int) -> state_pb2.Lock:
        """The lock `owner` holds with `token`, or the refusal naming what differs."""
        lock = self.records.get(name)
        if lock is None or not lock.owner:
            raise StateError(FAILED_PRECONDITION, "name", f"lock {show(name)} is not held")
        if lock.owner != owner:
            raise StateError(
                FAILED_PRECONDITION,
                "owner",
                f"lock {show(name)} is held by {show(lock.owner)}, not {show(owner)}",
            )
        if lock.token != token:
            raise StateError(
                FAILED_PRECONDITION,
                "token",
                f"token {token} is not the lease of {show(owner)} on lock {show(name)} "
                f"(a lease lost and taken again has a new token: {lock.token})",
            )
        return lock

    # ---- commands -----------------------------------------------------------------

    def _acquire(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        req = cmd.acquire_lock
        validate_acquire_lock(req, ch.now)
        lock = self.records.get(req.name)
        if lock is None:
            if len(self.records) >= MAX_LOCKS:
                raise StateError(
                    FAILED_PRECONDITION,
                    "name",
                    f"{len(self.records)} locks exist (at most {MAX_LOCKS})",
                )
            lock = state_pb2.Lock(name=req.name)
            self.records[req.name] = lock
            self._grant(lock, req.owner, req.ttl_ms, ch)
            ch.mark(LOCKS, req.name)
            result.lock_token = lock.token
            result.lock_expires_ms = lock.expires_ms
            return
        name = show(req.name)
        if lock.owner == req.owner:
            raise StateError(
                FAILED_PRECONDITION,
                "owner",
                f"{show(req.owner)} already holds lock {name} (token {lock.token}, "
                f"until {lock.expires_ms} ms): renew it instead",
            )
        live = [w for w in lock.waiters if _live(w, ch.now)]
        for position, waiter in enumerate(live, start=1):
            if waiter.owner == req.owner:
                raise StateError(
                    FAILED_PRECONDITION,
                    "owner",
                    f"{show(req.owner)} already waits for lock {name} (position {position})",
                )
        if not lock.owner and lock.lock_delay_until_ms <= ch.now and not live:
            # Only expired waiters or a finished delay were left: as good as free.
            del lock.waiters[:]
            self._grant(lock, req.owner, req.ttl_ms, ch)
            ch.mark(LOCKS, req.name)
            result.lock_token = lock.token
            result.lock_expires_ms = lock.expires_ms
            return
        if not req.wait:
            if lock.owner:
                why = f"is held by {show(lock.owner)} until {lock.expires_ms} ms"
            elif lock.lock_delay_until_ms > ch.now:
                why = f"is in its lock delay until {lock.lock_delay_until_ms} ms (a lease expired)"
            else:
                why = f"is being handed to the first of {len(live)} waiters"
            raise StateError(FAILED_PRECONDITION, "name", f"lock {name} {why}")
        if len(live) >= MAX_LOCK_WAITERS:
            raise StateError(
                FAILED_PRECONDITION,
                "wait",
                f"{len(live)} already wait for lock {name} (at most {MAX_LOCK_WAITERS})",
            )
        self._settle(lock, ch, result)
        lock.waiters.add(
            owner=req.owner, ttl_ms=req.ttl_ms, deadline_ms=req.wait_deadline_ms, queued_ms=ch.now
        )
        result.lock_position = len(lock.waiters)
        result.lock_holder = lock.owner

    def _release(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        req = cmd.release_lock
        validate_release_lock(req)
        lock = self._holder(req.name, req.owner, req.token)
        self._drop_holder(lock)
        self._settle(lock, ch, result)

    def _renew(self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult) -> None:
        req = cmd.renew_lock
        validate_renew_lock(req)
        lock = self._holder(req.name, req.owner, req.token)
        lock.expires_ms = ch.now + req.ttl_ms
        ch.mark(LOCKS, req.name)
        result.lock_token = lock.token
        result.lock_expires_ms = lock.expires_ms

    def _expire(self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult) -> None:
        req = cmd.expire_locks
        validate_expire_locks(req)
        for name in req.names:
            lock = self.records.get(name)
            if lock is None:
                result.rejected.append(f"{name}: no such lock")
                continue
            if lock.owner:
                if lock.expires_ms > ch.now:
                    # Renewed after the leader decided: the newer lease stands.
                    result.rejected.append(f"{name}: lease runs until {lock.expires_ms} ms")
                    continue
                self._drop_holder(lock)
                if req.lock_delay_ms:
                    lock.lock_delay_until_ms = ch.now + req.lock_delay_ms
                result.expired_locks.append(name)
            elif lock.lock_delay_until_ms > ch.now:
                result.rejected.append(f"{name}: lock delay until {lock.lock_delay_until_ms} ms")
                continue
            self._settle(lock, ch, result)

    def _leave(self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult) -> None:
        req = cmd.leave_lock_queue
        validate_leave_lock_queue(req)
        lock = self.records.get(req.name)
        if lock is None:
            return  # nothing to leave: already dropped (deadline) and forgotten
        if lock.owner == req.owner:
            # Granted before the waiter gave up: the edge decides what to do with it.
            result.lock_token = lock.token
            result.lock_expires_ms = lock.expires_ms
            return
        for i, waiter in enumerate(lock.waiters):
            if waiter.owner == req.owner:
                del lock.waiters[i]
                self._settle(lock, ch, result)
                return

    # ---- snapshot section: locks ----------------------------------------------------

    def ids(self) -> Iterable[str]:
        return self.records

    def write(self, snap: state_pb2.StateSnapshot) -> None:
        snap.locks.extend(self.records.values())

    def read(self, snap: state_pb2.StateSnapshot) -> None:
        for k in snap.locks:
            lock = state_pb2.Lock()
            lock.CopyFrom(k)
            self.records[lock.name] = lock
