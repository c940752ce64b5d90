"""gRPC transport between masters (RaftService in proto/agentflow/v1/raft.proto).

Outbound, each peer has one long-lived `Append` stream fed in batches: whatever
the driver handed over since the last write goes out as one MessageBatch. Votes
and TimeoutNow use unary calls so an election never waits behind a large batch;
snapshots go in chunks on their own call. Delivery is best effort: when a peer
is down, messages are dropped and the core is told the peer is unreachable.

Inbound, every call declares its sender (metadata `raft-from`, see
`peer_identity`) and every message on it is checked by `guard.wire_refusal`
(bounds, shape, `from` equal to the declared sender) and must be of a type that
call carries; a refused message is counted and logged (rate-limited), never
delivered. The driver then checks membership (`guard.membership_refusal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import structlog

from agentflow._proto import raft_pb2 as pb
from agentflow._proto import raft_pb2_grpc
from agentflow.raft.codec import CodecError, message_from_pb, message_to_pb
from agentflow.raft.guard import Refusal, RefusalLog, wire_refusal
from agentflow.raft.types import Message, MessageType, NodeId

if TYPE_CHECKING:
    from agentflow._proto.raft_pb2_grpc import RaftServiceAsyncStub

log = structlog.get_logger(__name__)

SNAPSHOT_CHUNK = 1 << 20
META_FROM = "raft-from"
META_ADDRESS = "raft-address"
MAX_QUEUED = 10_000  # messages buffered per peer before we start dropping
WRITE_TIMEOUT = 2.0
MAX_MESSAGE_BYTES = 64 << 20
# One MessageBatch stays well under the cap: appends are bounded by
# RaftConfig.max_bytes_per_msg, so several of them go as several writes.
MAX_BATCH_BYTES = 16 << 20
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # A restarted peer must be reachable again within a heartbeat or two, not
    # after gRPC's default reconnect backoff (1 s growing to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_VOTES = frozenset(
    {MessageType.VOTE, MessageType.VOTE_RESP, MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP}
)
_UNARY = _VOTES | {MessageType.TIMEOUT_NOW}
# Which message types each call carries (as `_Peer.send` routes them).
_CALL_TYPES: dict[str, frozenset[MessageType]] = {
    "Append": frozenset(MessageType) - _UNARY - {MessageType.SNAPSHOT},
    "Vote": _VOTES,
    "TimeoutNow": frozenset({MessageType.TIMEOUT_NOW}),
    "InstallSnapshot": frozenset({MessageType.SNAPSHOT}),
}
MAX_LEARNED = 8  # peers a node without configuration learns from call metadata

Deliver = Callable[[Message], None]
ReportUnreachable = Callable[[NodeId], None]


Ctx = grpc.aio.ServicerContext[Any, Any]


class _Peer:
    """Outbound side towards one peer. Owns its channel and sender task."""

    def __init__(
        self,
        node_id: NodeId,
        peer_id: NodeId,
        address: str,
        unreachable: ReportUnreachable,
        retry_delay: float,
        advertise: str,
    ) -> None:
        # Every call declares who sends it: the receiver checks each message's
        # `from` against this (see `peer_identity`).
        self._metadata: tuple[tuple[str, str], ...] = ((META_FROM, node_id),)
        if advertise:
            self._metadata += ((META_ADDRESS, advertise),)
        self.peer_id = peer_id
        self.address = address
        self._unreachable = unreachable
        self._retry_delay = retry_delay
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub: RaftServiceAsyncStub = raft_pb2_grpc.RaftServiceStub(self._channel)
        self._queue: list[pb.Message] = []
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._snapshot_busy = False
        self._tasks.add(asyncio.get_running_loop().create_task(self._stream_sender()))

    def send(self, m: Message) -> None:
        if m.type is MessageType.SNAPSHOT:
            if not self._snapshot_busy:
                self._spawn(self._send_snapshot(m))
        elif m.type in _UNARY:
            self._spawn(self._send_unary(m))
        else:
            if len(self._queue) >= MAX_QUEUED:
                # The peer cannot keep up or is gone: dropping is safe for Raft.
                self._queue.clear()
                self._unreachable(self.peer_id)
            self._queue.append(message_to_pb(m))
            self._wake.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stream_sender(self) -> None:
        """Owns the Append call and is the only reader of the queue. (A request
        generator handed to gRPC would outlive a failed call, and such zombies
        would go on taking batches from the queue.)"""
        while True:
            call = self._stub.Append(metadata=self._metadata)
            try:
                while True:
                    await self._wake.wait()
                    self._wake.clear()
                    if not self._queue:
                        continue
                    queued, self._queue = self._queue, []
                    for batch in _batches(queued):
                        # A stopped peer stops reading: give up on the call rather than
                        # wait forever on HTTP/2 flow control.
                        async with asyncio.timeout(WRITE_TIMEOUT):  # wait_for costs a task
                            await call.write(pb.MessageBatch(messages=batch))
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError) as exc:
                log.debug("raft.transport.stream_down", peer=self.peer_id, error=repr(exc))
            finally:
                call.cancel()
            self._queue.clear()
            self._unreachable(self.peer_id)
            await asyncio.sleep(self._retry_delay)

    async def _send_unary(self, m: Message) -> None:
        call = self._stub.TimeoutNow if m.type is MessageType.TIMEOUT_NOW else self._stub.Vote
        try:
            await call(message_to_pb(m), timeout=5.0, metadata=self._metadata)
        except grpc.aio.AioRpcError:
            self._unreachable(self.peer_id)

    async def _send_snapshot(self, m: Message) -> None:
        assert m.snapshot is not None
        self._snapshot_busy = True
        data = m.snapshot.data
        header = message_to_pb(m)
        crc = zlib.crc32(data)

        def chunks() -> list[pb.SnapshotChunk]:
            out = []
            for offset in range(0, max(len(data), 1), SNAPSHOT_CHUNK):
                out.append(
                    pb.SnapshotChunk(offset=offset, data=data[offset : offset + SNAPSHOT_CHUNK])
                )
            out[0].header.CopyFrom(header)
            out[-1].done = True
            out[-1].crc32 = crc
            return out

        try:
            await self._stub.InstallSnapshot(iter(chunks()), timeout=60.0, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            log.warning("raft.transport.snapshot_failed", peer=self.peer_id, code=str(exc.code()))
            self._unreachable(self.peer_id)
        finally:
            self._snapshot_busy = False

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._channel.close()


def peer_identity(context: Ctx) -> NodeId | None:
    """The node id the caller declares, or None. This is the seam for mTLS: with
    it, the identity comes from the peer certificate (`context.auth_context()`),
    and the declared metadata must match it or the call is refused."""
    for key, value in context.invocation_metadata() or ():
        if key == META_FROM and isinstance(value, str) and value:
            return value
    return None


class RaftServicer(raft_pb2_grpc.RaftServiceServicer):
    """Inbound side: decodes, checks at the edge, and hands every message that
    passes to the local node."""

    def __init__(
        self, node_id: NodeId, deliver: Deliver, learn: Callable[[NodeId, str], None]
    ) -> None:
        self.node_id = node_id
        self._deliver = deliver
        self._learn = learn
        self.refusals = RefusalLog()

    def _learn_sender(self, context: Ctx) -> None:
        """A node that is joining knows no member until it applies the log; the
        caller's advertised address lets it answer the leader meanwhile."""
        md = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        sender, address = md.get(META_FROM, ""), md.get(META_ADDRESS, "")
        if sender and address:
            self._learn(sender, address)

    def _accept(
        self, call: str, peer: NodeId | None, msg: pb.Message, snapshot_data: bytes | None = None
    ) -> bool:
        try:
            m = message_from_pb(msg, snapshot_data)
        except (CodecError, ValueError) as exc:
            self._refuse(Refusal.MALFORMED, str(exc), peer)
            return False
        if m.type not in _CALL_TYPES[call]:
            self._refuse(Refusal.MALFORMED, f"type: {m.type.name} on a {call} call", peer)
            return False
        bad = wire_refusal(m, self.node_id, peer)
        if bad is not None:
            self._refuse(bad[0], bad[1], peer)
            return False
        self._deliver(m)
        return True

    def _refuse(self, kind: Refusal, detail: str, peer: NodeId | None) -> None:
        n = self.refusals.record(kind, time.monotonic())
        if n:
            log.warning(
                "raft.transport.refused",
                node=self.node_id,
                peer=peer,
                reason=kind.value,
                detail=detail,
                refused_since_last_line=n,
            )

    async def Append(
        self, request_iterator: AsyncIterator[pb.MessageBatch], context: Ctx
    ) -> pb.RaftAck:
        peer = peer_identity(context)
        learned = False
        async for batch in request_iterator:
            for msg in batch.messages:
                # Learn the caller's address only once it sent something acceptable.
                if self._accept("Append", peer, msg) and not learned:
                    learned = True
                    self._learn_sender(context)
        return pb.RaftAck()

    async def Vote(self, request: pb.Message, context: Ctx) -> pb.RaftAck:
        if self._accept("Vote", peer_identity(context), request):
            self._learn_sender(context)
        return pb.RaftAck()

    async def TimeoutNow(self, request: pb.Message, context: Ctx) -> pb.RaftAck:
        self._accept("TimeoutNow", peer_identity(context), request)
        return pb.RaftAck()

    async def InstallSnapshot(
        self, request_iterator: AsyncIterator[pb.SnapshotChunk], context: Ctx
    ) -> pb.RaftAck:
        header: pb.Message | None = None
        parts: list[bytes] = []
        size = 0
        async for chunk in request_iterator:
            if header is None:
                if not chunk.HasField("header"):
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "header: first chunk must carry it"
                    )
                header = chunk.header
            if chunk.offset != size:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"offset: expected {size}, got {chunk.offset}",
                )
            parts.append(chunk.data)
            size += len(chunk.data)
            if chunk.done:
                data = b"".join(parts)
                if zlib.crc32(data) != chunk.crc32:
                    await context.abort(grpc.StatusCode.DATA_LOSS, "crc32: snapshot data corrupted")
                self._accept("InstallSnapshot", peer_identity(context), header, data)
                return pb.RaftAck()
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, "done: stream ended before the last chunk"
        )
        raise AssertionError("unreachable")


class GrpcTransport:
    """The driver's Transport over gRPC. Register `servicer` on the process's server."""

    def __init__(
        self,
        node_id: NodeId,
        deliver: Deliver,
        unreachable: ReportUnreachable,
        retry_delay: float = 0.1,
        advertise: str = "",
    ) -> None:
        """`advertise` is this node's own RaftService address, sent with every call
        so that a peer which does not know us yet (it is joining) can reply."""
        self.node_id = node_id
        self.advertise = advertise
        self.servicer = RaftServicer(node_id, deliver, self._learn)
        self._unreachable = unreachable
        self._retry_delay = retry_delay
        self._peers: dict[NodeId, _Peer] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # Set once the driver names any peer: from then on the configuration says
        # who the peers are, and call metadata teaches nothing.
        self._configured = False

    def add_to_server(self, server: grpc.aio.Server) -> None:
        raft_pb2_grpc.add_RaftServiceServicer_to_server(self.servicer, server)

    def send(self, messages: Sequence[Message]) -> None:
        for m in messages:
            peer = self._peers.get(m.to)
            if peer is not None:
                peer.send(m)

    def update_peers(self, addresses: Mapping[NodeId, str]) -> None:
        self._configured = self._configured or bool(addresses)
        for node, address in addresses.items():
            current = self._peers.get(node)
            if current is not None and current.address == address:
                continue
            if current is not None:
                self._close_later(current)
            self._peers[node] = self._new_peer(node, address)
        for node in [n for n in self._peers if n not in addresses]:
            self._close_later(self._peers.pop(node))

    def _new_peer(self, node: NodeId, address: str) -> _Peer:
        return _Peer(
            self.node_id, node, address, self._unreachable, self._retry_delay, self.advertise
        )

    def _learn(self, node: NodeId, address: str) -> None:
        """Only a node that knows no peer yet (it is joining) learns addresses from
        callers, and only a few: the driver's `update_peers` replaces them once
        the node applies its configuration."""
        if self._configured or len(self._peers) >= MAX_LEARNED:
            return
        if node != self.node_id and node not in self._peers:
            log.info("raft.transport.learned_peer", peer=node, address=address)
            self._peers[node] = self._new_peer(node, address)

    def _close_later(self, peer: _Peer) -> None:
        task = asyncio.get_running_loop().create_task(peer.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        peers, self._peers = list(self._peers.values()), {}
        await asyncio.gather(*(p.close() for p in peers), *self._closing)


def _batches(messages: list[pb.Message]) -> list[list[pb.Message]]:
    """Split queued messages into batches of at most MAX_BATCH_BYTES (a message bigger
    than that goes alone; it is still under MAX_MESSAGE_BYTES)."""
    out: list[list[pb.Message]] = []
    batch: list[pb.Message] = []
    size = 0
    for m in messages:
        n = m.ByteSize()
        if batch and size + n > MAX_BATCH_BYTES:
            out.append(batch)
            batch, size = [], 0
        batch.append(m)
        size += n
    if batch:
        out.append(batch)
    return out
