"""Followers hand client calls to the leader, so a client may talk to any master.

One hop only: a forwarded call carries `x-agentflow-forwarded`, and a master that
receives one while not leading answers UNAVAILABLE with the leader's address instead
of forwarding again (two masters that disagree about the leader cannot loop a call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from agentflow.master.caller import CALLER, caller
from agentflow.master.status import LEADER_ADDRESS, Ctx
from agentflow.raft.node import RaftNode
from agentflow.raft.transport import CHANNEL_OPTIONS
from agentflow.raft.types import NONE

FORWARDED = "x-agentflow-forwarded"
_PASSED_BACK = (LEADER_ADDRESS, "error-field")

R = TypeVar("R", bound=Message)


class Forwarder:
    def __init__(self, node: RaftNode, leader_wait: float = 3.0) -> None:
        self._node = node
        self._leader_wait = leader_wait
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def leader_here(self, context: Ctx) -> bool:
        """True if this master leads and should serve; False if the caller should
        forward. Aborts the call when no leader is known in time, or when the call
        was already forwarded once."""
        node = self._node
        if node.leader() == NONE:
            try:
                await node.wait_for_leader(timeout=self._leader_wait)
            except TimeoutError:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "no leader elected yet; retry")
        if node.is_leader():
            return True
        if any(key == FORWARDED for key, _ in context.invocation_metadata() or ()):
            context.set_trailing_metadata(((LEADER_ADDRESS, node.leader_address()),))
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"not the leader (leader is {node.leader() or 'unknown'}); retry there",
            )
        return False

    async def forward(
        self,
        service: str,
        method: str,
        request: Message,
        response_type: Callable[[bytes], R],
        context: Ctx,
    ) -> R:
        address = self._node.leader_address()
        if not address:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "leader address unknown; retry")
        call: grpc.aio.UnaryUnaryMultiCallable[Message, R] = self.channel(address).unary_unary(
            f"/agentflow.v1.{service}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type,
        )
        remaining = context.time_remaining()
        try:
            response: R = await call(
                request,
                timeout=remaining,
                metadata=((FORWARDED, self._node.id), (CALLER, caller(context))),
            )
            return response
        except grpc.aio.AioRpcError as exc:
            trailing: Any = exc.trailing_metadata() or ()
            passed = tuple((k, v) for k, v in trailing if k in _PASSED_BACK)
            if exc.code() == grpc.StatusCode.UNAVAILABLE and not passed:
                passed = ((LEADER_ADDRESS, address),)
            context.set_trailing_metadata(passed)
            await context.abort(exc.code(), exc.details() or "")
            raise AssertionError("unreachable") from exc

    def channel(self, address: str) -> grpc.aio.Channel:
        """A cached channel to another master; all are closed with the forwarder."""
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)
