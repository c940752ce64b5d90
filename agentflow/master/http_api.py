"""The master's HTTP side: probes and a JSON status page (the worker shim joins it).

Every error answer, on every route, is JSON: `{"error": "...", "field": "..."}`
(`field` when one input is at fault); aiohttp's own refusals (no such route, wrong
method) and anything unforeseen are turned into the same form here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from agentflow._proto import state_pb2
from agentflow.master.http_locks import add_lock_routes
from agentflow.master.runtime import Runtime
from agentflow.raft.types import NONE

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        if exc.status == 404:
            error = f"no such endpoint: {request.method} {request.path}"
        elif exc.status == 405:
            error = f"method {request.method} not allowed on {request.path}"
            error += f"; allowed: {exc.headers.get('Allow', 'none')}"
        else:
            error = exc.text or exc.reason
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return web.json_response({"error": error}, status=exc.status, headers=headers)
    except Exception as exc:
        # A bug: say so in JSON rather than aiohttp's HTML page, and keep the trace.
        log.exception("http.unhandled", method=request.method, path=request.path)
        return web.json_response(
            {"error": f"internal error: {type(exc).__name__}; see the master's log"}, status=500
        )


def make_app(runtime: Runtime) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node_id": runtime.node.id})

    async def ready(request: web.Request) -> web.Response:
        # Ready = part of a cluster that has a leader, and able to persist; a master
        # that cannot see one, or whose data dir is full, would only answer
        # UNAVAILABLE, so a load balancer should skip it. (/health stays 200 then:
        # restarting it would not free the disk.)
        st = runtime.node.status()
        disk_full = runtime.node.storage.disk_full
        ok = st.leader != NONE and not disk_full
        body = {"ready": ok, "leader": st.leader, "role": st.role.value, "disk_full": disk_full}
        return web.json_response(body, status=200 if ok else 503)

    async def stats(request: web.Request) -> web.Response:
        st = runtime.node.status()
        scheduler = runtime.scheduler
        body: dict[str, object] = {
            "node_id": st.node_id,
            "role": st.role.value,
            "leader": st.leader,
            "term": st.term,
            "commit_index": st.commit_index,
            "applied_index": st.applied_index,
            "voters": list(st.voters),
            "learners": list(st.learners),
            "tasks": {
                state_pb2.TaskState.Name(k).removeprefix("TASK_STATE_").lower(): v
                for k, v in runtime.state.counts().items()
                if v
            },
            "workers": len(runtime.state.workers),
        }
        if scheduler is not None:
            body["queue"] = {p.name.lower(): n for p, n in scheduler.queue.depth_by_level().items()}
            body["connected_workers"] = scheduler.connected()
            body["dispatched"] = scheduler.dispatched
        return web.json_response(body)

    app = web.Application(middlewares=[json_errors])
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/stats", stats)
    add_lock_routes(app, runtime)
    return app
