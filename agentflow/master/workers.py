"""Everything a master serves to workers, as one piece for `server.py` to mount:
the `WorkerService`/`TaskLogService` gRPC services, the HTTP shim routes, and their
background duties."""

from __future__ import annotations

import asyncio

import grpc
from aiohttp import web

from agentflow._proto import worker_pb2, worker_pb2_grpc
from agentflow.master.runtime import Runtime
from agentflow.master.worker_grpc import TaskLogApi, WorkerServiceApi
from agentflow.master.worker_http import ShimServer
from agentflow.master.worker_sessions import SessionConfig, Sessions

SERVICE_NAMES = tuple(
    worker_pb2.DESCRIPTOR.services_by_name[name].full_name
    for name in ("WorkerService", "TaskLogService")
)


class WorkerGateway:
    def __init__(self, runtime: Runtime, config: SessionConfig | None = None) -> None:
        self.sessions = Sessions(runtime, config)
        self.shim = ShimServer(self.sessions)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerServiceApi(self.sessions), server)
        worker_pb2_grpc.add_TaskLogServiceServicer_to_server(TaskLogApi(self.sessions), server)

    def add_routes(self, app: web.Application) -> None:
        self.shim.add_routes(app)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.sessions.run())
            tg.create_task(self.shim.run())
