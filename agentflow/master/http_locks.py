"""REST reads of the locks: `GET /api/v1/locks[?prefix=P]` and `GET /api/v1/locks/{name}`.

Served by whichever master is asked, after a ReadIndex barrier (as the gRPC reads
are), so a lock just granted anywhere is seen. A lock nobody holds, waits for or
delays answers 200 with `"owner": ""`, as LockService.Get does.
"""

from __future__ import annotations

from aiohttp import web

from agentflow._proto import coord_pb2
from agentflow.master.lock_api import lock_info
from agentflow.master.runtime import Runtime
from agentflow.raft.types import RaftError
from agentflow.rules.locks import check_lock_name
from agentflow.state import StateError

READ_TIMEOUT = 5.0


def lock_json(info: coord_pb2.LockInfo) -> dict[str, object]:
    return {
        "name": info.name,
        "owner": info.owner,
        "token": info.token,
        "granted_at_ms": info.granted_at_ms,
        "expires_at_ms": info.expires_at_ms,
        "waiters": list(info.waiters),
        "lock_delay_until_ms": info.lock_delay_until_ms,
    }


def add_lock_routes(app: web.Application, rt: Runtime) -> None:
    async def barrier() -> web.Response | None:
        try:
            await rt.node.read_barrier(timeout=READ_TIMEOUT)
        except (RaftError, TimeoutError) as exc:
            return web.json_response(
                {"error": f"cannot read the committed state now: {exc}"},
                status=503,
                headers={"Retry-After": "1"},
            )
        return None

    async def list_locks(request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        if (refused := await barrier()) is not None:
            return refused
        now = rt.state.last_now_ms
        locks = sorted(
            (k for k in rt.state.locks() if k.name.startswith(prefix)), key=lambda k: k.name
        )
        return web.json_response({"locks": [lock_json(lock_info(k, k.name, now)) for k in locks]})

    async def get_lock(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            check_lock_name(name)
        except StateError as exc:
            return web.json_response({"error": exc.message, "field": "name"}, status=400)
        if (refused := await barrier()) is not None:
            return refused
        return web.json_response(
            lock_json(lock_info(rt.state.lock(name), name, rt.state.last_now_ms))
        )

    app.router.add_get("/api/v1/locks", list_locks)
    app.router.add_get("/api/v1/locks/{name:.+}", get_lock)
