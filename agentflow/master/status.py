"""How failures reach a client: one gRPC status per kind, in one place.

The SDK retries by code, so the codes carry the one fact it needs: was the request
applied? UNAVAILABLE and ABORTED: never (retry anywhere). UNKNOWN and
DEADLINE_EXCEEDED: maybe (retry with the same request id; the state machine dedupes).
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from agentflow._proto import state_pb2
from agentflow.raft.types import (
    CommitUnknownError,
    ConfChangeError,
    NotLeaderError,
    ProposalDroppedError,
)
from agentflow.state import StateError

Ctx = grpc.aio.ServicerContext[Any, Any]
LEADER_ADDRESS = "leader-address"
ERROR_FIELD = "error-field"

_CODES = {
    state_pb2.CommandError.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    state_pb2.CommandError.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    state_pb2.CommandError.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    state_pb2.CommandError.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
}


async def abort_command_error(
    context: Ctx, error: state_pb2.CommandError, *extra: tuple[str, str]
) -> NoReturn:
    """`extra`: more trailing metadata (the refusal's facts a client acts on)."""
    text = f"{error.field}: {error.message}" if error.field else error.message
    context.set_trailing_metadata(((ERROR_FIELD, error.field), *extra))
    await context.abort(_CODES.get(error.code, grpc.StatusCode.INTERNAL), text)
    raise AssertionError("unreachable")  # abort raises


async def abort_invalid(context: Ctx, field: str, message: str) -> NoReturn:
    await abort_command_error(
        context,
        state_pb2.CommandError(
            code=state_pb2.CommandError.INVALID_ARGUMENT, field=field, message=message
        ),
    )


async def abort_for(context: Ctx, exc: BaseException, leader_address: str = "") -> NoReturn:
    """Map an exception raised while serving a request to its status."""
    if leader_address:
        context.set_trailing_metadata(((LEADER_ADDRESS, leader_address),))
    if isinstance(exc, StateError):
        await abort_command_error(context, exc.to_proto())
    if isinstance(exc, NotLeaderError | ProposalDroppedError):
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"not applied, retry: {exc}")
    if isinstance(exc, CommitUnknownError):
        await context.abort(grpc.StatusCode.UNKNOWN, f"commit unknown: {exc}")
    if isinstance(exc, ConfChangeError):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, TimeoutError):
        await context.abort(grpc.StatusCode.UNAVAILABLE, "timed out waiting for the cluster")
    await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
    raise AssertionError("unreachable")
