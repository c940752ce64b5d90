"""Lock requests built from SDK arguments (checked here with the cluster's own rules),
and the owner a process takes locks as when it names none."""

from __future__ import annotations

import os
import secrets
import socket
import threading

from agentflow._proto import coord_pb2 as coord
from agentflow.client.durations import parse_duration
from agentflow.client.errors import InvalidArgumentError, sdk_field
from agentflow.client.requests import new_request_id
from agentflow.client.validation import checked_request_id
from agentflow.rules.errors import RuleError
from agentflow.rules.limits import MAX_LOCK_WAIT_MS
from agentflow.rules.locks import check_lock_name, check_lock_owner, check_lock_ttl

__all__ = [
    "DurationLike",
    "acquire",
    "checked_name",
    "default_owner",
    "get",
    "list_locks",
    "release",
    "renew",
    "seconds",
]

DurationLike = float | int | str
"""Seconds, or a duration with a unit: "500ms", "10s", "2m"."""

_owner_lock = threading.Lock()
_owner: tuple[int, str] | None = None  # (pid, owner): a forked child takes its own


def default_owner() -> str:
    """This process's owner, "host:pid:random": the same for every lock and client of
    the process, a new one in a forked child (which must not pass for its parent)."""
    global _owner
    pid = os.getpid()
    with _owner_lock:
        if _owner is None or _owner[0] != pid:
            _owner = (pid, f"{socket.gethostname()}:{pid}:{secrets.token_hex(4)}")
        return _owner[1]


def _checked(check: object, value: str, field: str) -> str:
    try:
        check(value, field)  # type: ignore[operator]
    except RuleError as exc:
        raise InvalidArgumentError(sdk_field(exc.field), exc.message) from None
    return value


def checked_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str):
        raise InvalidArgumentError(field, f"must be a string, got {type(name).__name__}")
    return _checked(check_lock_name, name, field)


def _owner_or_default(owner: str | None) -> str:
    if owner is None:
        return default_owner()
    if not isinstance(owner, str):
        raise InvalidArgumentError("owner", f"must be a string, got {type(owner).__name__}")
    return _checked(check_lock_owner, owner, "owner")


def seconds(value: DurationLike, field: str) -> float:
    """A duration argument in seconds; InvalidArgumentError naming `field` otherwise."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidArgumentError(field, str(exc)) from None


def _ttl_ms(ttl: DurationLike) -> int:
    ms = round(seconds(ttl, "ttl") * 1000)
    try:
        check_lock_ttl(ms, "ttl")
    except RuleError as exc:
        raise InvalidArgumentError("ttl", exc.message) from None
    return ms


def _wait_ms(wait: DurationLike | None) -> int:
    if wait is None:
        return 0
    ms = round(seconds(wait, "wait") * 1000)
    if ms > MAX_LOCK_WAIT_MS:
        raise InvalidArgumentError("wait", f"{ms} ms (at most {MAX_LOCK_WAIT_MS} ms)")
    return ms


def _token(token: int) -> int:
    if isinstance(token, bool) or not isinstance(token, int):
        raise InvalidArgumentError("token", f"must be an integer, got {token!r}")
    if not 0 < token < 2**64:
        # Tokens are Raft indexes, which start at 1.
        raise InvalidArgumentError("token", f"{token} is not a fencing token (1 or more)")
    return token


def _request_id(request_id: str | None) -> str:
    return new_request_id() if request_id is None else checked_request_id(request_id)


def acquire(
    name: str,
    ttl: DurationLike,
    owner: str | None,
    wait: DurationLike | None,
    request_id: str | None,
) -> coord.AcquireLockRequest:
    return coord.AcquireLockRequest(
        name=checked_name(name),
        owner=_owner_or_default(owner),
        ttl_ms=_ttl_ms(ttl),
        wait_ms=_wait_ms(wait),
        request_id=_request_id(request_id),
    )


def release(
    name: str, token: int, owner: str | None, request_id: str | None
) -> coord.ReleaseLockRequest:
    return coord.ReleaseLockRequest(
        name=checked_name(name),
        owner=_owner_or_default(owner),
        token=_token(token),
        request_id=_request_id(request_id),
    )


def renew(
    name: str, token: int, ttl: DurationLike, owner: str | None, request_id: str | None
) -> coord.RenewLockRequest:
    return coord.RenewLockRequest(
        name=checked_name(name),
        owner=_owner_or_default(owner),
        token=_token(token),
        ttl_ms=_ttl_ms(ttl),
        request_id=_request_id(request_id),
    )


def get(name: str) -> coord.GetLockRequest:
    return coord.GetLockRequest(name=checked_name(name))


def list_locks(prefix: str) -> coord.ListLocksRequest:
    if not isinstance(prefix, str):
        raise InvalidArgumentError("prefix", f"must be a string, got {type(prefix).__name__}")
    if prefix:
        checked_name(prefix, "prefix")
    return coord.ListLocksRequest(prefix=prefix)
