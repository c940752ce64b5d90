"""How a client's write becomes one committed command, for every servicer: the
request id checked, the request's digest carried, errors mapped to their status."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message

from agentflow._proto import state_pb2
from agentflow.master.runtime import Runtime
from agentflow.master.status import Ctx, abort_command_error, abort_for
from agentflow.raft.types import RaftError
from agentflow.rules.validate import check_request_id
from agentflow.state import StateError


def request_digest(request: Message) -> bytes:
    """SHA-256 of what the client asked, in canonical form: the SDK resends the same
    message on every retry, so a retry matches on any master, and a request id reused
    for another request does not. Computed here, at the edge, and carried in the
    command, so every replica stores the same digest whatever its protobuf version."""
    digest = hashlib.sha256(request.DESCRIPTOR.full_name.encode())
    digest.update(b"\0")
    digest.update(request.SerializeToString(deterministic=True))
    return digest.digest()


async def write(
    rt: Runtime,
    context: Ctx,
    command: state_pb2.Command,
    request: Message,
    request_id: str,
    refused: Callable[[state_pb2.CommandError], Awaitable[None]] | None = None,
) -> state_pb2.CommandResult:
    """Propose `command`; abort the call with the state machine's refusal or the
    cluster's failure, else the result. `refused` sees a refusal first (to add to
    what the caller is told)."""
    if request_id:
        try:
            check_request_id(request_id)
        except StateError as exc:
            await abort_for(context, exc)
        command.request_digest = request_digest(request)
    try:
        result = await rt.proposer.propose(command, request_id)
    except (RaftError, TimeoutError) as exc:
        await abort_for(context, exc, rt.node.leader_address())
    if result.error.code:
        if refused is not None:
            await refused(result.error)
        await abort_command_error(context, result.error)
    return result


async def barrier(rt: Runtime, context: Ctx, timeout: float = 5.0) -> None:
    """ReadIndex: what this master answers next is at least as new as any committed write."""
    try:
        await rt.node.read_barrier(timeout=timeout)
    except (RaftError, TimeoutError) as exc:
        await abort_for(context, exc, rt.node.leader_address())
