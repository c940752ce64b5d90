"""The HTTP shim: worker sessions as JSON over long polls, on the master's HTTP port.

The bodies are the protobuf messages of `worker.proto` in protobuf's JSON mapping
(camelCase names; 64-bit integers as strings; either name form is accepted):

    POST /api/v1/workers/connect            WorkerMessage (hello) -> ShimConnectResponse
    POST /api/v1/workers/{session}/messages ShimBatch             -> {} once handled
    GET  /api/v1/workers/{session}/poll?timeout=S                 -> ShimPollResponse
    DELETE /api/v1/workers/{session}                              -> {}
    POST /api/v1/workers/heartbeat          {"workerId": ..., <Heartbeat fields>}
    GET  /api/v1/workers[?group=G]          ListWorkersResponse (the leader's view)
    GET  /api/v1/tasks/{task_id}/logs?after=N                     -> GetTaskLogsResponse

On the leader a shim session is a `MasterSession` like a gRPC one; on a follower it is
relayed to the leader over gRPC (`worker_bridge.py`). A session id the master does not
know answers 404; a closed session answers 410 to messages and `closed: true` to a poll:
either way the worker connects again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import grpc
import structlog
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import scheduler_pb2_grpc, worker_pb2_grpc
from agentflow._proto import worker_pb2 as wpb
from agentflow.master.outbox import Outbox
from agentflow.master.worker_bridge import LeaderBridge
from agentflow.master.worker_sessions import MasterSession, Refusal, Sessions, refusal

log = structlog.get_logger(__name__)

MAX_BODY = 32 * 1024 * 1024  # results carry output tails; far above any sane batch
M = TypeVar("M", bound=Message)


class Endpoint(Protocol):
    """A shim session: a leader's MasterSession or a follower's LeaderBridge."""

    session_id: str
    outbox: Outbox
    last_seen: float

    @property
    def worker_id(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    async def deliver(self, messages: Sequence[wpb.WorkerMessage]) -> None: ...


def to_json(message: Message) -> web.Response:
    return web.json_response(json_format.MessageToDict(message))


async def parse(request: web.Request, message: M) -> M:
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(body))
    try:
        json_format.Parse(body or b"{}", message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise web.HTTPBadRequest(
            text=f"body: not a {message.DESCRIPTOR.name} in JSON: {exc}"
        ) from exc
    return message


class ShimServer:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self.rt = sessions.rt
        self._endpoints: dict[str, Endpoint] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/workers/connect", self.connect)
        app.router.add_post("/api/v1/workers/heartbeat", self.heartbeat)
        app.router.add_post("/api/v1/workers/{session}/messages", self.messages)
        app.router.add_get("/api/v1/workers/{session}/poll", self.poll)
        app.router.add_delete("/api/v1/workers/{session}", self.leave)
        app.router.add_get("/api/v1/workers", self.list_workers)
        app.router.add_get("/api/v1/workers/", self.list_workers)
        app.router.add_get("/api/v1/tasks/{task_id}/logs", self.task_logs)

    # -- the session endpoints ---------------------------------------------------

    async def connect(self, request: web.Request) -> web.Response:
        hello = await parse(request, wpb.WorkerMessage())
        opened: Endpoint | wpb.MasterMessage
        if self.rt.node.is_leader() or not hello.HasField("hello"):
            opened = await self.sessions.open(hello)
            if isinstance(opened, MasterSession):
                opened.http = True
        else:
            opened = await self._relay(hello)
        if isinstance(opened, wpb.MasterMessage):
            return to_json(wpb.ShimConnectResponse(messages=[opened]))
        self._endpoints[opened.session_id] = opened
        first = await opened.outbox.take(timeout=0)
        return to_json(wpb.ShimConnectResponse(session_id=opened.session_id, messages=first))

    async def _relay(self, hello: wpb.WorkerMessage) -> LeaderBridge | wpb.MasterMessage:
        address = self.rt.node.leader_address()
        if not address:
            return refusal(Refusal.UNAVAILABLE, "no leader known yet; try again")
        try:
            return await LeaderBridge.open(self.rt.forwarder.channel(address), hello)
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            return refusal(Refusal.UNAVAILABLE, f"cannot reach the leader at {address}: {exc}")

    def _endpoint(self, request: web.Request) -> Endpoint:
        endpoint = self._endpoints.get(request.match_info["session"])
        if endpoint is None:
            raise web.HTTPNotFound(text="session: unknown here (expired?); connect again")
        return endpoint

    async def messages(self, request: web.Request) -> web.Response:
        endpoint = self._endpoint(request)
        if endpoint.closed:
            # Say so now rather than drop the batch quietly; the worker keeps its
            # results and sends them again in its next hello.
            raise web.HTTPGone(text=f"session closed: {endpoint.outbox.closed}; connect again")
        batch = await parse(request, wpb.ShimBatch())
        await endpoint.deliver(batch.messages)
        return web.json_response({})

    async def poll(self, request: web.Request) -> web.Response:
        endpoint = self._endpoint(request)
        try:
            wait = float(request.query.get("timeout", "20"))
        except ValueError:
            raise web.HTTPBadRequest(text="timeout: not a number of seconds") from None
        wait = min(max(wait, 0.0), self.sessions.config.http_poll_max)
        endpoint.last_seen = time.monotonic()
        messages = await endpoint.outbox.take(timeout=wait)
        endpoint.last_seen = time.monotonic()
        response = wpb.ShimPollResponse(messages=messages)
        if endpoint.outbox.drained:
            response.closed = True
            response.reason = endpoint.outbox.closed or ""
            self._forget(endpoint, response.reason)
        return to_json(response)

    async def leave(self, request: web.Request) -> web.Response:
        endpoint = self._endpoint(request)
        self._forget(endpoint, "the worker left")
        return web.json_response({})

    async def heartbeat(self, request: web.Request) -> web.Response:
        """The shim's heartbeat: usage for a worker whose session is on this master
        (either transport when this master leads; a relayed shim session otherwise).
        Body: `{"workerId": "w1", "cpuPercent": 12.5, "memoryPercent": 40}`."""
        body = await parse(request, wpb.ShimHeartbeat())
        worker_id = body.worker_id or body.node_id
        if not worker_id:
            raise web.HTTPBadRequest(text="workerId: required")
        endpoint: Endpoint | None = self.sessions.by_worker(worker_id)
        if endpoint is None:
            endpoint = next((e for e in self._endpoints.values() if e.worker_id == worker_id), None)
        if endpoint is None or endpoint.closed:
            raise web.HTTPNotFound(
                text=f"workerId: {worker_id!r} has no session on this master; connect first"
            )
        beat = wpb.Heartbeat(
            cpu_percent=body.cpu_percent,
            memory_percent=body.memory_percent,
            running=body.running,
            max_concurrent=body.max_concurrent,
        )
        await endpoint.deliver([wpb.WorkerMessage(heartbeat=beat)])
        endpoint.last_seen = time.monotonic()
        return web.json_response({"ok": True, "sessionId": endpoint.session_id})

    def _forget(self, endpoint: Endpoint, reason: str) -> None:
        self._endpoints.pop(endpoint.session_id, None)
        if isinstance(endpoint, MasterSession):
            self.sessions.detach(endpoint, reason)
        elif isinstance(endpoint, LeaderBridge):
            endpoint.close(reason)

    async def run(self, sweep_every: float = 1.0) -> None:
        """End shim sessions nobody polls (the worker died or moved on)."""
        try:
            while True:
                await asyncio.sleep(sweep_every)
                self.sweep()
        finally:
            for endpoint in list(self._endpoints.values()):
                self._forget(endpoint, "this master is stopping")

    def sweep(self) -> None:
        idle = self.sessions.config.http_idle_timeout
        now = time.monotonic()
        for endpoint in list(self._endpoints.values()):
            if now - endpoint.last_seen > idle:
                self._forget(endpoint, f"no poll from the worker for {idle:.0f} s")

    # -- reads that need the leader ------------------------------------------------

    async def list_workers(self, request: web.Request) -> web.Response:
        req = api.ListWorkersRequest(group=request.query.get("group", ""))
        # The SchedulerService answers on any master (a follower forwards it).
        response = await self._call_leader(
            lambda ch: scheduler_pb2_grpc.SchedulerServiceStub(ch).ListWorkers(req, timeout=10)
        )
        return to_json(response)

    async def task_logs(self, request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="after: not an integer") from None
        task_id = request.match_info["task_id"]
        if self.rt.node.is_leader():
            return to_json(self.sessions.logs.read(task_id, after))
        req = wpb.GetTaskLogsRequest(task_id=task_id, after=after)
        response = await self._call_leader(
            lambda ch: worker_pb2_grpc.TaskLogServiceStub(ch).GetTaskLogs(req, timeout=10)
        )
        return to_json(response)

    async def _call_leader(self, call: Callable[[grpc.aio.Channel], Awaitable[M]]) -> M:
        """Ask the leader's gRPC API (this master's own, when it leads)."""
        address = self.rt.node.leader_address()
        if not address:
            raise web.HTTPServiceUnavailable(text="no leader known yet; retry")
        try:
            return await call(self.rt.forwarder.channel(address))
        except grpc.aio.AioRpcError as exc:
            text = f"{exc.code().name}: {exc.details()}"
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise web.HTTPServiceUnavailable(text=text) from exc
            raise web.HTTPBadGateway(text=text) from exc
