"""The gRPC transport: one `WorkerService.Connect` stream per session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import grpc

from agentflow._proto import worker_pb2 as wpb
from agentflow._proto import worker_pb2_grpc
from agentflow.worker.transport import ConnectError, SessionClosed

# Same message cap as the masters' own links. Keepalive pings are a second line: the
# agent already ends a session when the master stays silent (every heartbeat is
# acknowledged); pings only while a stream is open, and rarely enough that the master's
# default ping policy never counts them as abuse.
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
)


def grpc_target(url: str) -> str:
    """`grpc://host:port`, `http://host:port` or `host:port` -> `host:port`."""
    for scheme in ("grpc://", "http://", "https://"):
        url = url.removeprefix(scheme)
    return url.rstrip("/")


class GrpcConnection:
    transport = "grpc"

    def __init__(self, target: str, connect_timeout: float = 3.0) -> None:
        self.target = grpc_target(target)
        self.connect_timeout = connect_timeout
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.StreamStreamCall[wpb.WorkerMessage, wpb.MasterMessage] | None = None

    async def open(self, hello: wpb.WorkerMessage) -> wpb.MasterMessage:
        self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        try:
            await asyncio.wait_for(self._channel.channel_ready(), self.connect_timeout)
        except TimeoutError:
            await self.close()
            raise ConnectError(
                f"gRPC {self.target}: no connection in {self.connect_timeout} s"
            ) from None
        self._call = worker_pb2_grpc.WorkerServiceStub(self._channel).Connect()
        try:
            await self._call.write(hello)
            # The master may wait for its scheduler and commit the registration.
            first = await asyncio.wait_for(self._call.read(), self.connect_timeout + 15.0)
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            await self.close()
            raise ConnectError(f"gRPC {self.target}: {_describe(exc)}") from exc
        if first is grpc.aio.EOF:
            await self.close()
            raise ConnectError(f"gRPC {self.target}: the master hung up before answering")
        assert isinstance(first, wpb.MasterMessage)
        return first

    async def send(self, messages: Sequence[wpb.WorkerMessage]) -> None:
        call = self._require_call()
        try:
            for message in messages:
                await call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            raise SessionClosed(f"gRPC send failed: {_describe(exc)}") from exc

    async def receive(self) -> Sequence[wpb.MasterMessage]:
        call = self._require_call()
        try:
            message = await call.read()
        except grpc.aio.AioRpcError as exc:
            raise SessionClosed(f"gRPC stream broke: {_describe(exc)}") from exc
        if message is grpc.aio.EOF:
            raise SessionClosed("the master ended the stream")
        assert isinstance(message, wpb.MasterMessage)
        return (message,)

    def _require_call(self) -> grpc.aio.StreamStreamCall[wpb.WorkerMessage, wpb.MasterMessage]:
        if self._call is None:
            raise SessionClosed("not connected")
        return self._call

    async def close(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(call.done_writing(), 1.0)
            call.cancel()
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()


async def grpc_reachable(target: str, timeout: float) -> bool:
    """Whether a gRPC connection to `target` comes up within `timeout` (to go back
    from the HTTP shim to gRPC once it does)."""
    async with grpc.aio.insecure_channel(grpc_target(target), options=CHANNEL_OPTIONS) as ch:
        try:
            await asyncio.wait_for(ch.channel_ready(), timeout)
            return True
        except TimeoutError:
            return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name} {exc.details() or ''}".strip()
    return str(exc) or type(exc).__name__
