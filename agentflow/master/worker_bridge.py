"""An HTTP shim session on a follower, carried to the leader over gRPC.

Workers use the shim when they cannot speak gRPC to the masters; the masters always
reach each other over gRPC (Raft runs on it). So a follower does not redirect a shim
worker (it knows the other masters' gRPC addresses only, not their HTTP ones, and a
worker behind a proxy or a load balancer may reach no other master anyway): it opens
the same `WorkerService.Connect` stream to the leader on the worker's behalf and
relays both ways. When the leader changes, the stream ends, the shim session closes
and the worker connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import grpc
import structlog

from agentflow._proto import worker_pb2 as wpb
from agentflow._proto import worker_pb2_grpc
from agentflow.master.outbox import Outbox

log = structlog.get_logger(__name__)


class LeaderBridge:
    """One relayed session. Same surface as a leader's `MasterSession` for the shim."""

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall[wpb.WorkerMessage, wpb.MasterMessage],
        session_id: str,
        worker_id: str,
    ) -> None:
        self._call = call
        self.session_id = session_id
        self.worker_id = worker_id
        self.outbox = Outbox()
        self.last_seen = time.monotonic()
        self._pump = asyncio.create_task(self._relay())

    @classmethod
    async def open(
        cls, channel: grpc.aio.Channel, hello: wpb.WorkerMessage, timeout: float = 15.0
    ) -> LeaderBridge | wpb.MasterMessage:
        """Relay `hello` to the leader. The bridge once welcomed; otherwise the
        leader's answer (redirect, refusal). Raises grpc.aio.AioRpcError if the
        leader cannot be reached."""
        call = worker_pb2_grpc.WorkerServiceStub(channel).Connect()
        try:
            await call.write(hello)
            first = await asyncio.wait_for(call.read(), timeout)
        except BaseException:
            call.cancel()
            raise
        if first is grpc.aio.EOF:
            call.cancel()
            return wpb.MasterMessage(
                refusal=wpb.Refusal(code=wpb.Refusal.UNAVAILABLE, reason="the leader hung up")
            )
        assert isinstance(first, wpb.MasterMessage)
        if first.WhichOneof("body") != "welcome":
            call.cancel()
            return first
        bridge = cls(call, first.welcome.session_id, hello.hello.info.id)
        bridge.outbox.put(first)
        return bridge

    @property
    def closed(self) -> bool:
        return self.outbox.closed is not None

    async def deliver(self, messages: Sequence[wpb.WorkerMessage]) -> None:
        self.last_seen = time.monotonic()
        try:
            for message in messages:
                await self._call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            self.close(f"the relay to the leader broke: {exc}")

    async def _relay(self) -> None:
        reason = "the leader ended the session"
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:
                    break
                assert isinstance(message, wpb.MasterMessage)
                self.outbox.put(message)
        except grpc.aio.AioRpcError as exc:
            reason = f"the relay to the leader broke: {exc.code().name} {exc.details()}"
        self.outbox.close(reason)

    def close(self, reason: str) -> None:
        self.outbox.close(reason)
        self._call.cancel()
        self._pump.cancel()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
