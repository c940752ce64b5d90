"""Pure checks of the lock commands: names, owners, lease lengths, wait deadlines.

What depends on the state (who holds the lock, how many wait) is the lock domain's
business; these depend on the command alone (and its stamped time).
"""

from __future__ import annotations

from agentflow._proto import state_pb2
from agentflow.rules.fields import check_no_nul, check_size, invalid
from agentflow.rules.limits import (
    MAX_LOCK_DELAY_MS,
    MAX_LOCK_EXPIRE_NAMES,
    MAX_LOCK_NAME_BYTES,
    MAX_LOCK_OWNER_BYTES,
    MAX_LOCK_TTL_MS,
    MAX_LOCK_WAIT_MS,
    MIN_LOCK_TTL_MS,
)

__all__ = [
    "check_lock_name",
    "check_lock_owner",
    "check_lock_ttl",
    "validate_acquire_lock",
    "validate_expire_locks",
    "validate_leave_lock_queue",
    "validate_release_lock",
    "validate_renew_lock",
]


def _check_text(value: str, field: str, limit: int, what: str) -> None:
    if not value:
        raise invalid(field, f"empty {what} (1-{limit} bytes of UTF-8)")
    check_size(value, field, limit)
    check_no_nul(value, field)


def check_lock_name(name: str, field: str = "name") -> None:
    _check_text(name, field, MAX_LOCK_NAME_BYTES, "lock name")


def check_lock_owner(owner: str, field: str = "owner") -> None:
    _check_text(owner, field, MAX_LOCK_OWNER_BYTES, "lock owner")


def check_lock_ttl(ttl_ms: int, field: str = "ttl_ms") -> None:
    if not MIN_LOCK_TTL_MS <= ttl_ms <= MAX_LOCK_TTL_MS:
        raise invalid(
            field, f"lease of {ttl_ms} ms (from {MIN_LOCK_TTL_MS} to {MAX_LOCK_TTL_MS} ms)"
        )


def _check_token(token: int, field: str = "token") -> None:
    if token == 0:
        # Tokens are Raft indexes, which start at 1: 0 is a token nobody was given.
        raise invalid(field, "missing fencing token (the token the lock was granted with)")


def validate_acquire_lock(req: state_pb2.AcquireLock, now_ms: int) -> None:
    check_lock_name(req.name)
    check_lock_owner(req.owner)
    check_lock_ttl(req.ttl_ms)
    deadline = req.wait_deadline_ms
    if deadline and not req.wait:
        raise invalid("wait_deadline_ms", "set without wait (a deadline is for waiting)")
    if deadline < 0:
        raise invalid("wait_deadline_ms", f"negative deadline {deadline} (0 = none)")
    if deadline and deadline <= now_ms:
        raise invalid("wait_deadline_ms", f"deadline {deadline} ms is not after now ({now_ms} ms)")
    if deadline and deadline - now_ms > MAX_LOCK_WAIT_MS:
        raise invalid(
            "wait_deadline_ms",
            f"deadline {deadline - now_ms} ms ahead (at most {MAX_LOCK_WAIT_MS} ms)",
        )


def validate_release_lock(req: state_pb2.ReleaseLock) -> None:
    check_lock_name(req.name)
    check_lock_owner(req.owner)
    _check_token(req.token)


def validate_renew_lock(req: state_pb2.RenewLock) -> None:
    check_lock_name(req.name)
    check_lock_owner(req.owner)
    _check_token(req.token)
    check_lock_ttl(req.ttl_ms)


def validate_expire_locks(req: state_pb2.ExpireLocks) -> None:
    if len(req.names) > MAX_LOCK_EXPIRE_NAMES:
        raise invalid("names", f"{len(req.names)} names (at most {MAX_LOCK_EXPIRE_NAMES})")
    for i, name in enumerate(req.names):
        check_lock_name(name, f"names[{i}]")
    if not 0 <= req.lock_delay_ms <= MAX_LOCK_DELAY_MS:
        raise invalid("lock_delay_ms", f"{req.lock_delay_ms} ms (from 0 to {MAX_LOCK_DELAY_MS} ms)")


def validate_leave_lock_queue(req: state_pb2.LeaveLockQueue) -> None:
    check_lock_name(req.name)
    check_lock_owner(req.owner)
