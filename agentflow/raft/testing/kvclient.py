"""Client for the test key/value service: finds the leader and retries safely."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc

from agentflow._proto import kv_pb2, kv_pb2_grpc
from agentflow.raft.transport import CHANNEL_OPTIONS

if TYPE_CHECKING:
    from agentflow._proto.kv_pb2_grpc import KvServiceAsyncStub

# Codes after which the write was certainly not applied, or whose outcome is unknown;
# a put of the same key and value is idempotent, so retrying either is safe here.
RETRYABLE = {
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}


class KvClient:
    def __init__(self, addresses: Sequence[str], call_timeout: float = 3.0) -> None:
        if not addresses:
            raise ValueError("addresses: at least one is required")
        self.addresses = list(addresses)
        self.call_timeout = call_timeout
        self._channels = {
            a: grpc.aio.insecure_channel(a, options=CHANNEL_OPTIONS) for a in self.addresses
        }
        self._stubs: dict[str, KvServiceAsyncStub] = {
            a: kv_pb2_grpc.KvServiceStub(c) for a, c in self._channels.items()
        }
        self._leader = self.addresses[0]

    def stub(self, address: str) -> KvServiceAsyncStub:
        if address not in self._stubs:
            self._channels[address] = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._stubs[address] = kv_pb2_grpc.KvServiceStub(self._channels[address])
        return self._stubs[address]

    async def put(self, key: str, value: bytes, deadline: float = 30.0) -> int:
        """Retries until the leader acknowledges; returns the commit index."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline
        attempt = 0
        while True:
            address = self._leader
            try:
                resp = await self.stub(address).Put(
                    kv_pb2.KvPutRequest(key=key, value=value), timeout=self.call_timeout
                )
                return int(resp.index)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE or loop.time() > give_up:
                    raise
                self._next_leader(exc, address, attempt)
            attempt += 1
            await asyncio.sleep(min(0.2, 0.01 * attempt))

    def _next_leader(self, exc: grpc.aio.AioRpcError, tried: str, attempt: int) -> None:
        hint = dict(exc.trailing_metadata() or ()).get("leader-address", "")
        if isinstance(hint, str) and hint and hint != tried:
            self._leader = hint
        else:
            self._leader = (
                self.addresses[(self.addresses.index(tried) + 1) % len(self.addresses)]
                if tried in self.addresses
                else self.addresses[attempt % len(self.addresses)]
            )

    async def get(self, address: str, key: str, linearizable: bool = True) -> bytes | None:
        resp = await self.stub(address).Get(
            kv_pb2.KvGetRequest(key=key, linearizable=linearizable), timeout=self.call_timeout
        )
        return resp.value if resp.found else None

    async def write_until(self, prefix: str, stop: asyncio.Event, acked: dict[str, bytes]) -> None:
        """Write `prefix-0`, `prefix-1`, ... until `stop`, recording in `acked` only the
        writes the leader acknowledged (a failed one may or may not have applied)."""
        i = 0
        while not stop.is_set():
            key, value = f"{prefix}-{i}", f"value-{prefix}-{i}".encode()
            try:
                await self.put(key, value, deadline=20.0)
                acked[key] = value
            except grpc.aio.AioRpcError:
                pass
            i += 1

    async def lost_writes(self, address: str, acked: dict[str, bytes]) -> list[str]:
        """Keys of `acked` that the node at `address` does not hold with their value.
        One linearizable read first brings the node past every acknowledged write,
        so the rest may read its local state."""
        await self.get(address, "barrier", linearizable=True)
        return [k for k, v in acked.items() if await self.get(address, k, False) != v]

    async def status(self, address: str) -> kv_pb2.KvStatusResponse:
        return await self.stub(address).Status(kv_pb2.KvStatusRequest(), timeout=self.call_timeout)

    async def wait_applied(
        self, address: str, target: int, timeout: float
    ) -> kv_pb2.KvStatusResponse | None:
        """Poll `address` until it has applied `target`; its last status (None if it
        never answered), so a caller can say where it got stuck."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        st = None
        while True:
            try:
                st = await self.status(address)
            except grpc.aio.AioRpcError:
                st = None
            if (st is not None and st.applied_index >= target) or loop.time() >= deadline:
                return st
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels.values()))
