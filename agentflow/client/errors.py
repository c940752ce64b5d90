"""The SDK's exceptions, and the one place where gRPC status codes become them.

```
AgentFlowError                    every error the SDK raises on purpose
├── InvalidArgumentError          bad input; `.field` names it ("tasks[2].priority")
│   └── WorkflowFileError         ... in a workflow/task file; `.path` and `.line` too
├── NotFoundError                 no such task, workflow or worker
├── AlreadyExistsError            an id that is already taken
├── FailedPreconditionError       the request does not fit the current state; `.field`
│   ├── LockHeldError             a lock someone else holds; `.holder` names them
│   └── LockLostError             a release or renew by one whose lease is gone
├── PermissionDeniedError         missing or rejected credentials
├── UnavailableError              no master answered (no leader) within the deadline
└── DeadlineExceededError         the deadline passed; a write's outcome is unknown
```

`InvalidArgumentError` is also a `ValueError` and `DeadlineExceededError` a
`TimeoutError`, so code written against the builtins keeps working.

A write that failed with `DeadlineExceededError` may or may not have been applied:
calling it again with the same `request_id=` is safe (the cluster applies a request id
once and answers a repeat with the first result).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import grpc

__all__ = [
    "AgentFlowError",
    "AlreadyExistsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "LockHeldError",
    "LockLostError",
    "NotFoundError",
    "PermissionDeniedError",
    "RpcStatus",
    "UnavailableError",
    "WorkflowFileError",
    "error_from_status",
    "rpc_status",
    "sdk_field",
]

LEADER_ADDRESS_KEY = "leader-address"
LOCK_HOLDER_KEY = "lock-holder"


class AgentFlowError(Exception):
    """Base class. `code` is the gRPC status that caused it, when one did."""

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidArgumentError(AgentFlowError, ValueError):
    """Bad input, found by the SDK or by the server. `field` is empty when unknown."""

    def __init__(self, field: str, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message, code=code)
        self.field = field
        self.reason = message


class WorkflowFileError(InvalidArgumentError):
    """Bad content in a workflow or task file: "workflow.yaml:14: tasks[2].priority: ..."."""

    def __init__(self, path: str, line: int, field: str, message: str) -> None:
        super().__init__(field, message)
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line else path
        self.message = f"{where}: {field}: {message}" if field else f"{where}: {message}"
        self.args = (self.message,)

    def __str__(self) -> str:
        return self.message


class NotFoundError(AgentFlowError):
    """The task, workflow or worker does not exist (or was pruned)."""


class AlreadyExistsError(AgentFlowError):
    """The id given for a new task or workflow is taken."""


class FailedPreconditionError(AgentFlowError):
    """The request is valid but not now (e.g. reprioritizing a finished task).
    `field` names what the state refused ("owner", "token"), empty when unknown."""

    def __init__(
        self, message: str, *, field: str = "", code: grpc.StatusCode | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.field = field


class LockHeldError(FailedPreconditionError):
    """The lock is held by another owner (`holder`; "" while it is between holders:
    in its lock delay, or being handed to the first waiter), and the acquire did not
    wait or its wait ran out."""

    def __init__(
        self,
        message: str,
        *,
        holder: str = "",
        field: str = "",
        code: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(message, field=field, code=code)
        self.holder = holder


class LockLostError(FailedPreconditionError):
    """A release or renew refused because this owner and token no longer hold the
    lock: the lease expired (and maybe went to someone else), or was never this one's.
    Whatever the lock protects must be treated as no longer protected."""


class PermissionDeniedError(AgentFlowError):
    """The credentials are missing, invalid, or lack the role for this call."""


class UnavailableError(AgentFlowError):
    """No master answered, or none knew a leader, before the deadline."""


class DeadlineExceededError(AgentFlowError, TimeoutError):
    """The deadline passed. For a write the outcome is unknown: retry with its request id."""


@dataclass(frozen=True, slots=True)
class RpcStatus:
    """What the SDK needs from a failed call, whatever gRPC API (sync or aio) raised it."""

    code: grpc.StatusCode
    details: str
    leader_address: str = ""
    lock_holder: str | None = None  # trailing `lock-holder`: None when absent

    @property
    def commit_unknown(self) -> bool:
        return self.code is grpc.StatusCode.UNKNOWN and "commit unknown" in self.details


def rpc_status(exc: grpc.RpcError) -> RpcStatus:
    """Status code, details and the `leader-address` hint of a failed gRPC call."""
    leader = ""
    holder: str | None = None
    # Sync calls give (key, value) namedtuples, grpc.aio gives a Metadata of tuples.
    pairs = cast(Iterable[tuple[str, str | bytes]], exc.trailing_metadata() or ())
    for key, value in pairs:
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        if key == LEADER_ADDRESS_KEY:
            leader = text
        elif key == LOCK_HOLDER_KEY:
            holder = text
    return RpcStatus(exc.code(), exc.details() or "", leader.strip(), holder)


# "tasks[2].command: must start with ..." -> field, message. A field is dotted names with
# optional [index] parts and no spaces.
_FIELD_DETAILS = re.compile(
    r"^([A-Za-z_][\w-]*(?:\[[^\]\s]*\])*(?:\.[\w-]+(?:\[[^\]\s]*\])*)*): (.+)$", re.S
)

_BY_CODE: dict[grpc.StatusCode, type[AgentFlowError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDeniedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.ABORTED: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


# Wire field names -> the SDK's (TaskSpec.args is sent as args_json, seconds as ms).
_RENAMED = {"args_json": "args", "retry_backoff_ms": "retry_backoff", "timeout_ms": "timeout"}
_LAST_NAME = re.compile(r"(?<=\.)(\w+)$")
# Top-level fields of the lock calls, which the SDK takes in seconds as `ttl`, `wait`.
_RENAMED_TOP = {"ttl_ms": "ttl", "wait_ms": "wait"}


def sdk_field(field: str) -> str:
    """ "workflow.tasks[2].timeout_ms" -> "tasks[2].timeout": a server field path in the
    terms of the SDK (workflow fields are relative to the workflow)."""
    field = field.removeprefix("workflow.")
    if field in _RENAMED_TOP:
        return _RENAMED_TOP[field]
    return _LAST_NAME.sub(lambda m: _RENAMED.get(m[1], m[1]), field)


def error_from_status(status: RpcStatus) -> AgentFlowError:
    """The exception for a final (not retried, or retried in vain) gRPC failure."""
    details = status.details or status.code.name.lower().replace("_", " ")
    if status.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
        match = _FIELD_DETAILS.match(details)
        if match:
            return InvalidArgumentError(sdk_field(match[1]), match[2], code=status.code)
        return InvalidArgumentError("", details, code=status.code)
    if status.commit_unknown:
        return DeadlineExceededError(details, code=status.code)
    if status.code is grpc.StatusCode.FAILED_PRECONDITION:
        match = _FIELD_DETAILS.match(details)
        field = sdk_field(match[1]) if match else ""
        if status.lock_holder is not None:
            return LockHeldError(details, holder=status.lock_holder, field=field, code=status.code)
        return FailedPreconditionError(details, field=field, code=status.code)
    cls = _BY_CODE.get(status.code, AgentFlowError)
    if cls is AgentFlowError:
        details = f"{status.code.name}: {details}"
    return cls(details, code=status.code)
