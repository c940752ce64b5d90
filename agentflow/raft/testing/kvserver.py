"""A Raft-replicated key/value server process, for real-process tests and benchmarks.

    python -m agentflow.raft.testing.kvserver --id n1 --port 7001 \\
        --peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 --data-dir /tmp/n1

Without --peers the node starts empty and waits to be added with AddMember.
Errors map to gRPC codes so a client knows what is safe to retry:
FAILED_PRECONDITION (not the leader; trailing metadata `leader-address`) and
ABORTED (dropped) were never applied; UNKNOWN may or may not have been.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import grpc

from agentflow._proto import kv_pb2, kv_pb2_grpc
from agentflow.common.logging import configure as configure_logging
from agentflow.raft.config import RaftConfig
from agentflow.raft.kv import KeyValueFSM
from agentflow.raft.node import NodeConfig, RaftNode
from agentflow.raft.storage import RaftStorage
from agentflow.raft.transport import CHANNEL_OPTIONS, GrpcTransport
from agentflow.raft.types import (
    CommitUnknownError,
    ConfChangeError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
)

Ctx = grpc.aio.ServicerContext[Any, Any]


class KvServicer(kv_pb2_grpc.KvServiceServicer):
    def __init__(self, node: RaftNode, fsm: KeyValueFSM) -> None:
        self.node = node
        self.fsm = fsm

    async def _fail(self, context: Ctx, exc: Exception) -> None:
        if isinstance(exc, NotLeaderError):
            context.set_trailing_metadata((("leader-address", self.node.leader_address()),))
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        if isinstance(exc, ProposalDroppedError):
            await context.abort(grpc.StatusCode.ABORTED, str(exc))
        if isinstance(exc, ConfChangeError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if isinstance(exc, TimeoutError):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "timed out")
        if isinstance(exc, CommitUnknownError):
            await context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    async def Put(self, request: kv_pb2.KvPutRequest, context: Ctx) -> kv_pb2.KvPutResponse:
        if not request.key:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "key: must not be empty")
        if not self.node.is_leader():
            await self._fail(context, NotLeaderError(self.node.leader()))
        try:
            index = await self.node.propose(KeyValueFSM.put_command(request.key, request.value))
        except (RaftError, TimeoutError) as exc:
            await self._fail(context, exc)
        assert isinstance(index, int)
        return kv_pb2.KvPutResponse(index=index)

    async def Get(self, request: kv_pb2.KvGetRequest, context: Ctx) -> kv_pb2.KvGetResponse:
        if request.linearizable:
            try:
                await self.node.read_barrier(timeout=5.0)
            except (RaftError, TimeoutError) as exc:
                await self._fail(context, exc)
        value = self.fsm.data.get(request.key)
        return kv_pb2.KvGetResponse(
            found=value is not None,
            value=value or b"",
            applied_index=self.node.status().applied_index,
        )

    async def Status(
        self, request: kv_pb2.KvStatusRequest, context: Ctx
    ) -> kv_pb2.KvStatusResponse:
        st = self.node.status()
        return kv_pb2.KvStatusResponse(
            node_id=st.node_id,
            leader_id=st.leader,
            leader_address=st.addresses.get(st.leader, ""),
            role=st.role.value,
            term=st.term,
            commit_index=st.commit_index,
            applied_index=st.applied_index,
            snapshot_index=st.snapshot_index,
            voters=st.voters,
            learners=st.learners,
            snapshots_installed=st.snapshots_installed,
            last_index=st.last_index,
        )

    async def AddMember(
        self, request: kv_pb2.KvMemberRequest, context: Ctx
    ) -> kv_pb2.KvMemberResponse:
        try:
            await self.node.add_member(request.node_id, request.address)
        except (RaftError, TimeoutError) as exc:
            await self._fail(context, exc)
        return kv_pb2.KvMemberResponse()

    async def RemoveMember(
        self, request: kv_pb2.KvMemberRequest, context: Ctx
    ) -> kv_pb2.KvMemberResponse:
        try:
            await self.node.remove_member(request.node_id)
        except (RaftError, TimeoutError) as exc:
            await self._fail(context, exc)
        return kv_pb2.KvMemberResponse()

    async def TransferLeader(
        self, request: kv_pb2.KvMemberRequest, context: Ctx
    ) -> kv_pb2.KvMemberResponse:
        try:
            await self.node.transfer_leadership(request.node_id)
        except (RaftError, TimeoutError) as exc:
            await self._fail(context, exc)
        return kv_pb2.KvMemberResponse()

    async def Load(self, request: kv_pb2.KvLoadRequest, context: Ctx) -> kv_pb2.KvLoadResponse:
        if not 1 <= request.proposers <= 4096:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "proposers: must be 1..4096")
        if not 0 < request.seconds <= 600:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "seconds: must be in (0, 600]")
        if not self.node.is_leader():
            await self._fail(context, NotLeaderError(self.node.leader()))
        loop = asyncio.get_running_loop()
        value = b"x" * request.value_size
        latencies: list[float] = []
        end = loop.time() + request.seconds

        async def proposer(n: int) -> None:
            i = 0
            while loop.time() < end:
                command = KeyValueFSM.put_command(f"load-{n}-{i}", value)
                started = loop.time()
                await self.node.propose(command)
                latencies.append(loop.time() - started)
                i += 1

        started = loop.time()
        try:
            async with asyncio.TaskGroup() as tg:
                for n in range(request.proposers):
                    tg.create_task(proposer(n))
        except* (RaftError, TimeoutError) as group:
            await self._fail(context, group.exceptions[0])
        elapsed = loop.time() - started
        latencies.sort()

        def pct(q: float) -> float:
            return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]

        return kv_pb2.KvLoadResponse(
            committed=len(latencies),
            seconds=elapsed,
            p50_ms=pct(0.50) if latencies else 0.0,
            p99_ms=pct(0.99) if latencies else 0.0,
            max_ms=1000 * latencies[-1] if latencies else 0.0,
        )


def parse_peers(text: str) -> dict[str, str]:
    peers: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        node, sep, address = item.partition("=")
        if not sep or not node or ":" not in address:
            raise argparse.ArgumentTypeError(f"--peers: expected id=host:port, got {item!r}")
        peers[node] = address
    return peers


async def serve(args: argparse.Namespace) -> None:
    storage = await RaftStorage.open(Path(args.data_dir))
    fsm = KeyValueFSM()
    config = NodeConfig(
        raft=RaftConfig(),
        tick_interval=args.tick_ms / 1000,
        snapshot_every=args.snapshot_every,
        snapshot_keep_entries=args.snapshot_keep,
    )
    holder: list[RaftNode] = []
    transport = GrpcTransport(
        args.id,
        deliver=lambda m: holder[0].receive(m),
        unreachable=lambda p: holder[0].report_unreachable(p),
        advertise=f"127.0.0.1:{args.port}",
    )
    node = RaftNode(args.id, storage, transport, fsm, config)
    holder.append(node)
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    transport.add_to_server(server)
    kv_pb2_grpc.add_KvServiceServicer_to_server(KvServicer(node, fsm), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    runner = asyncio.create_task(node.run(bootstrap=args.peers or None))
    stopping: list[asyncio.Task[None]] = []

    async def graceful_stop() -> None:
        await node.step_down(timeout=3.0)
        runner.cancel()

    def on_signal() -> None:
        if not stopping:
            stopping.append(asyncio.create_task(graceful_stop()))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    finally:
        await server.stop(0.5)
        await transport.close()
        await storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peers", type=parse_peers, default={})
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--tick-ms", type=float, default=50.0)
    parser.add_argument("--snapshot-every", type=int, default=10_000)
    parser.add_argument("--snapshot-keep", type=int, default=1_000)
    args = parser.parse_args()
    configure_logging()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
