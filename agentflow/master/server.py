"""One master process: Raft node + replicated state + leader-only scheduler, served
over gRPC (client API, cluster admin, Raft transport, health, reflection) and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Coroutine
from typing import Any

import grpc
import structlog
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agentflow._proto import coord_pb2, coord_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc
from agentflow.master.cluster_api import ClusterApi
from agentflow.master.config import MasterConfig, is_loopback, strip_scheme
from agentflow.master.decoding import DecodeErrorInterceptor
from agentflow.master.forwarding import Forwarder
from agentflow.master.http_api import make_app
from agentflow.master.leadership import lead_when_elected
from agentflow.master.lock_api import LockApi
from agentflow.master.lock_expiry import LockExpiry
from agentflow.master.runtime import Runtime
from agentflow.master.scheduler_api import SchedulerApi
from agentflow.master.startup import (
    StartupError,
    check_data_dir,
    check_listen,
    leaves,
    lock_data_dir,
    reason,
    storage_error,
)
from agentflow.master.workers import SERVICE_NAMES as WORKER_SERVICES
from agentflow.master.workers import WorkerGateway
from agentflow.raft.config import RaftConfig
from agentflow.raft.node import NodeConfig, RaftNode
from agentflow.raft.storage import RaftStorage, StorageCorruptError
from agentflow.raft.transport import CHANNEL_OPTIONS, GrpcTransport
from agentflow.raft.types import NONE, NotLeaderError, RaftError
from agentflow.scheduler.proposer import Proposer
from agentflow.scheduler.service import Scheduler
from agentflow.state import SchedulerState

log = structlog.get_logger(__name__)


class Master:
    def __init__(self, config: MasterConfig) -> None:
        self.config = config
        self.runtime: Runtime | None = None
        self._stop = asyncio.Event()
        self._listening = False

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Serve until `request_stop`. StartupError (one line naming the flag or file)
        when the master cannot start; whatever was started by then is stopped first,
        so no port stays taken."""
        cfg = self.config
        # Checked before anything opens, so that each failure is named alone.
        await asyncio.to_thread(check_data_dir, cfg.data_dir)
        lock = lock_data_dir(cfg.data_dir)
        try:
            check_listen("--port", cfg.host, cfg.port)
            await self._open_and_serve()
        finally:
            os.close(lock)

    async def _open_and_serve(self) -> None:
        cfg = self.config
        try:
            storage = await RaftStorage.open(cfg.data_dir)
        except (RaftError, sqlite3.DatabaseError) as exc:
            raise storage_error(cfg.data_dir, exc) from None
        except OSError as exc:
            raise StartupError(f"--data-dir {cfg.data_dir}", f"not usable: {reason(exc)}") from None
        try:
            async with contextlib.AsyncExitStack() as stack:
                stack.push_async_callback(storage.close)
                await self._serve(stack, storage)
        except BaseException as exc:
            # The state is loaded (and may be found damaged) inside the task group.
            for leaf in leaves(exc):
                if isinstance(leaf, StartupError):
                    raise leaf from None
                if isinstance(leaf, (StorageCorruptError, sqlite3.DatabaseError)):
                    raise storage_error(cfg.data_dir, leaf) from None
            raise
        finally:
            if self._listening:
                log.info("master.stopped", node=cfg.node_id)

    async def _serve(self, stack: contextlib.AsyncExitStack, storage: RaftStorage) -> None:
        """Start everything (each stop pushed on `stack`) and run until stopped."""
        cfg = self.config
        fresh = await storage.is_empty()
        state = SchedulerState()
        holder: list[RaftNode] = []
        transport = GrpcTransport(
            cfg.node_id,
            deliver=lambda m: holder[0].receive(m),
            unreachable=lambda p: holder[0].report_unreachable(p),
            advertise=cfg.address,
        )
        stack.push_async_callback(transport.close)
        node = RaftNode(
            cfg.node_id,
            storage,
            transport,
            state,
            NodeConfig(
                raft=RaftConfig(lazy_commit_announce=True),
                tick_interval=cfg.tick_interval,
                snapshot_every=cfg.snapshot_every,
            ),
        )
        holder.append(node)
        rt = Runtime(node, state, Proposer(node, state), Forwarder(node))
        stack.push_async_callback(rt.forwarder.close)
        self.runtime = rt

        # Undecodable requests (bad UTF-8) answer INVALID_ARGUMENT, not UNKNOWN.
        # No SO_REUSEPORT (gRPC's default): a second master on a taken port must
        # fail to bind, not share the port and answer half the connections.
        server = grpc.aio.server(
            options=[*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)],
            interceptors=[DecodeErrorInterceptor()],
        )
        transport.add_to_server(server)
        scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(SchedulerApi(rt), server)
        scheduler_pb2_grpc.add_ClusterServiceServicer_to_server(ClusterApi(rt), server)
        coord_pb2_grpc.add_LockServiceServicer_to_server(LockApi(rt), server)
        workers = WorkerGateway(rt)
        workers.add_to_server(server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = (
            scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name,
            scheduler_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
            coord_pb2.DESCRIPTOR.services_by_name["LockService"].full_name,
            *WORKER_SERVICES,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
        listen = f"{cfg.host}:{cfg.port}"
        try:
            bound = server.add_insecure_port(listen)
        except RuntimeError:  # grpcio >= 1.50 raises instead of returning 0
            bound = 0
        if bound == 0:
            raise StartupError(f"--port {cfg.port}", f"cannot listen on {listen}")
        await server.start()
        stack.push_async_callback(server.stop, 0.5)
        if cfg.http:
            app = make_app(rt)
            workers.add_routes(app)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            try:
                await web.TCPSite(runner, cfg.host, cfg.http).start()
            except OSError as exc:
                raise StartupError(
                    f"--http-port {cfg.http}",
                    f"cannot listen on {cfg.host}:{cfg.http}: {reason(exc)}",
                ) from None
        bootstrap: dict[str, str] | None = None
        if cfg.peers:
            bootstrap = dict(cfg.peers)
        elif cfg.mode == "leader":
            bootstrap = {cfg.node_id: cfg.address}

        def make_scheduler() -> Scheduler:
            return Scheduler(state, rt.proposer, cfg.scheduler)

        async with asyncio.TaskGroup() as tg:
            node_task = tg.create_task(node.run(bootstrap=bootstrap))
            # "listening" only once the stored state loaded: damaged state ends the
            # task group first, and the master never claims to have started.
            await self._loaded(node)
            self._started(listen)

            def expire_locks() -> Coroutine[Any, Any, None]:
                return LockExpiry(state, rt.proposer, cfg.lock_delay_ms).run()

            leading = tg.create_task(lead_when_elected(rt, make_scheduler, [expire_locks]))
            health_task = tg.create_task(self._report_health(rt, health_servicer))
            workers_task = tg.create_task(workers.run())
            joining = None
            if cfg.mode == "master" and not cfg.peers and fresh:
                joining = tg.create_task(self._join(rt))
            await self._stop.wait()
            log.info("master.stopping", node=cfg.node_id)
            await node.step_down(timeout=3.0)
            for task in (leading, health_task, workers_task, joining, node_task):
                if task is not None:
                    task.cancel()

    @staticmethod
    async def _loaded(node: RaftNode) -> None:
        while True:
            try:
                node.status()
                return
            except NotLeaderError:  # "has not started": still loading
                await asyncio.sleep(0.01)

    def _started(self, listen: str) -> None:
        cfg = self.config
        log.info("master.listening", node=cfg.node_id, grpc=listen, http=cfg.http, mode=cfg.mode)
        self._listening = True
        if cfg.insecure and not is_loopback(cfg.host):
            log.warning(
                "master.insecure",
                node=cfg.node_id,
                host=cfg.host,
                detail="plaintext, unauthenticated gRPC and HTTP on a non-loopback "
                "address (--insecure): anyone who can reach it can submit tasks that "
                "run commands on the workers",
            )

    async def _report_health(self, rt: Runtime, servicer: health.aio.HealthServicer) -> None:
        # SERVING once part of a cluster with a leader, and able to persist: what
        # k8s probes should see. A master whose data dir is full stays alive (it
        # carries on once space is freed) but must not get traffic meanwhile.
        serving: bool | None = None
        while True:
            now = rt.node.leader() != NONE and not rt.node.storage.disk_full
            if now != serving:
                serving = now
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if now
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                await servicer.set("", status)
                await servicer.set("agentflow.v1.SchedulerService", status)
            await asyncio.sleep(0.2)

    async def _join(self, rt: Runtime) -> None:
        """Ask the cluster at --leader-url to add this master; retry until it does."""
        cfg = self.config
        target = strip_scheme(cfg.leader_url)
        delay = 0.2
        while True:
            try:
                async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
                    stub = scheduler_pb2_grpc.ClusterServiceStub(channel)
                    await stub.AddMember(
                        scheduler_pb2.AddMemberRequest(node_id=cfg.node_id, address=cfg.address),
                        timeout=60.0,
                    )
                log.info("master.joined", node=cfg.node_id, via=target)
                return
            except grpc.aio.AioRpcError as exc:
                leader = dict(exc.trailing_metadata() or ()).get("leader-address")
                if isinstance(leader, str) and leader:
                    target = leader
                log.info("master.join_retry", via=target, code=exc.code().name, error=exc.details())
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def serve(config: MasterConfig) -> None:
    import signal

    master = Master(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, master.request_stop)
    with contextlib.suppress(asyncio.CancelledError):
        await master.run()
