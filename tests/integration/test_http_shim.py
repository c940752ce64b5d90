"""The master's HTTP API and worker shim against real `agentflow-master` processes,
over real HTTP on 127.0.0.1: whole bodies up to the cap (413 above it), a JSON 400
naming the field for every malformed input, the session id handed out by connect
only, and a 404 for the logs of a task that does not exist. On the leader and on a
follower (which relays to the leader)."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import json_format

from agentflow import AsyncClient
from agentflow._proto import state_pb2 as pb
from agentflow._proto import worker_pb2 as wpb
from agentflow._proto import worker_pb2_grpc
from agentflow.client import RetryPolicy
from agentflow.master.http_input import MAX_BODY, MAX_OFFSET
from agentflow.master.testing import MasterCluster

ROLES = ["leader", "follower"]


class Masters:
    def __init__(self, cluster: MasterCluster, leader: str) -> None:
        self.cluster = cluster
        self.leader = leader
        self.follower = next(n for n in cluster.ids if n != leader)

    def http(self, role: str) -> str:
        node = self.leader if role == "leader" else self.follower
        return f"http://127.0.0.1:{self.cluster.http_ports[node]}"


@pytest.fixture(scope="module")
def masters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Masters]:
    cluster = MasterCluster(Path(tmp_path_factory.mktemp("http_shim")), size=3)
    try:
        asyncio.run(cluster.start_all())
        yield Masters(cluster, asyncio.run(cluster.leader()))
    finally:
        cluster.stop_all()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


@pytest.fixture(scope="module")
def task_id(masters: Masters) -> str:
    """A task that exists (in a group nobody serves, so it stays READY)."""

    async def submit() -> str:
        policy = RetryPolicy(deadline=20.0, attempt_timeout=5.0)
        async with AsyncClient(masters.cluster.url(), retry=policy) as client:
            return await client.submit("shell:true", group="nobody-serves-this")

    return asyncio.run(submit())


def hello(worker_id: str, results: int = 0, tail: int = 0) -> dict[str, Any]:
    message = wpb.WorkerMessage(seq=1)
    message.hello.info.CopyFrom(
        pb.WorkerInfo(id=worker_id, groups=["shim-test"], cpu_cores=1, memory_mb=512, capacity=1)
    )
    message.hello.instance = uuid.uuid4().hex
    message.hello.unacked_results.extend(report(i, tail) for i in range(results))
    return json_format.MessageToDict(message)


def report(i: int, tail: int) -> wpb.ResultReport:
    return wpb.ResultReport(
        task_id=f"no-such-task-{i}",
        attempt=1,
        success=True,
        result=pb.TaskResult(stdout_tail="o" * tail, stderr_tail="e" * tail),
    )


async def answer(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.content_type == "application/json", await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def connect(http: aiohttp.ClientSession, base: str, body: Any) -> tuple[str, dict[str, Any]]:
    async with http.post(f"{base}/api/v1/workers/connect", json=body) as response:
        got = await answer(response)
        assert response.status == 200, got
    assert got.get("sessionId"), got
    assert "welcome" in got["messages"][0], got
    return got["sessionId"], got


@pytest.fixture
async def session(
    masters: Masters, http: aiohttp.ClientSession, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[str, str, str]]:
    """(base URL, worker id, session id) of a fresh shim session on the role the test
    is parametrized with (the leader when it is not)."""
    role = getattr(request, "param", "leader")
    base = masters.http(role)
    worker_id = f"shim-{uuid.uuid4().hex[:8]}"
    session_id, _ = await connect(http, base, hello(worker_id))
    yield base, worker_id, session_id
    async with http.delete(f"{base}/api/v1/workers/{session_id}"):
        pass


async def refused(response: aiohttp.ClientResponse, status: int, field: str) -> dict[str, Any]:
    body = await answer(response)
    assert response.status == status, body
    assert body.get("field") == field, body
    assert isinstance(body.get("error"), str) and body["error"], body
    return body


# --- 1. whole bodies, up to the cap -------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_a_hello_and_a_report_over_64_kb_are_read_whole(
    masters: Masters, http: aiohttp.ClientSession, role: str
) -> None:
    base = masters.http(role)
    body = hello(f"big-{role}-{uuid.uuid4().hex[:6]}", results=40, tail=3000)
    assert len(json.dumps(body)) > 200_000
    session_id, _ = await connect(http, base, body)
    batch = wpb.ShimBatch(
        messages=[
            wpb.WorkerMessage(seq=2, results=wpb.ResultBatch(reports=[report(i, 3000)]))
            for i in range(40)
        ]
    )
    data = json_format.MessageToJson(batch, indent=None)
    assert len(data) > 200_000
    url = f"{base}/api/v1/workers/{session_id}/messages"
    async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
        assert r.status == 200, await r.text()
        assert await r.json() == {}
    async with http.delete(f"{base}/api/v1/workers/{session_id}") as r:
        assert r.status == 200


async def _chunks(total: int) -> AsyncIterator[bytes]:
    yield b'{"seq": "1", "hello": {"info": {"id": "'
    sent = 40
    piece = b"x" * (1 << 20)
    while sent < total:
        yield piece
        sent += len(piece)
    yield b'"}}}'


@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_cap_is_refused_with_413(
    masters: Masters, http: aiohttp.ClientSession, sized: bool
) -> None:
    base = masters.http("leader")
    url = f"{base}/api/v1/workers/connect"
    data: Any = io.BytesIO(b" " * (MAX_BODY + 1)) if sized else _chunks(MAX_BODY + 1)
    async with http.post(url, data=data) as response:
        body = await refused(response, 413, "body")
    assert body["limit_bytes"] == MAX_BODY == 32 * 1024 * 1024
    assert str(MAX_BODY) in body["error"] and "32 MiB" in body["error"]
    async with http.get(f"{base}/health") as response:
        assert response.status == 200


# --- 2. malformed bodies: 400 naming the field ---------------------------------------------

BAD_BODIES = [
    pytest.param(b'{"hello": {"info": {"id": "w\xff"}}}', "body", id="invalid-utf8"),
    pytest.param(b'{"hello": ', "body", id="invalid-json"),
    pytest.param(b"[1, 2]", "body", id="not-an-object"),
    pytest.param(b'{"seq": NaN}', "body", id="nan-token"),
    pytest.param(b"[" * 100_000, "body", id="deep-nesting"),
]


@pytest.mark.parametrize(("data", "field"), BAD_BODIES)
@pytest.mark.parametrize("role", ROLES)
async def test_a_malformed_hello_is_refused_with_400(
    masters: Masters, http: aiohttp.ClientSession, role: str, data: bytes, field: str
) -> None:
    url = f"{masters.http(role)}/api/v1/workers/connect"
    async with http.post(url, data=data) as response:
        await refused(response, 400, field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hello": {"info": {"id": 5}}}, "hello.info.id"),
        ({"hello": {"info": {"id": "w", "cpuCores": "many"}}}, "hello.info.cpuCores"),
        ({"hello": "w"}, "hello"),
        ({"hello": {"info": {"id": "w", "groups": "a,b"}}}, "hello.info.groups"),
        ({"hello": {"info": {"id": "w", "labels": ["zone"]}}}, "hello.info.labels"),
        ({"hello": {"info": {"id": "w"}, "running": ["t1"]}}, "hello.running[0]"),
        ({"seq": -1, "hello": {"info": {"id": "w"}}}, "seq"),
        (
            {"hello": {"info": {"id": "w"}, "unackedResults": [{}, {"attempt": "first"}]}},
            "hello.unackedResults[1].attempt",
        ),
    ],
)
async def test_a_hello_of_wrong_types_is_refused_naming_the_field(
    masters: Masters, http: aiohttp.ClientSession, body: Any, field: str
) -> None:
    url = f"{masters.http('leader')}/api/v1/workers/connect"
    async with http.post(url, json=body) as response:
        got = await refused(response, 400, field)
    assert got["error"].startswith(f"{field}: ")
    # Nothing happened: no worker "w" was registered.
    async with http.get(f"{masters.http('leader')}/api/v1/workers") as response:
        listed = await answer(response)
    assert "w" not in [w["worker"]["info"]["id"] for w in listed.get("workers", [])]


@pytest.mark.parametrize("session", ROLES, indirect=True)
@pytest.mark.parametrize(
    ("data", "field"),
    [
        *BAD_BODIES,
        pytest.param(b'{"messages": {"seq": 1}}', "messages", id="messages-not-a-list"),
        pytest.param(
            b'{"messages": [{"seq": 3}, {"heartbeat": {"cpuPercent": "hot"}}]}',
            "messages[1].heartbeat.cpuPercent",
            id="wrong-type-inside",
        ),
    ],
)
async def test_a_malformed_batch_is_refused_with_400(
    http: aiohttp.ClientSession, session: tuple[str, str, str], data: bytes, field: str
) -> None:
    base, _, session_id = session
    async with http.post(f"{base}/api/v1/workers/{session_id}/messages", data=data) as r:
        await refused(r, 400, field)
    # The session is untouched and still usable.
    async with http.post(
        f"{base}/api/v1/workers/{session_id}/messages", json={"messages": []}
    ) as r:
        assert r.status == 200, await r.text()


@pytest.mark.parametrize(("data", "field"), BAD_BODIES)
async def test_a_malformed_heartbeat_is_refused_with_400(
    masters: Masters, http: aiohttp.ClientSession, data: bytes, field: str
) -> None:
    url = f"{masters.http('leader')}/api/v1/workers/heartbeat"
    async with http.post(url, data=data) as response:
        await refused(response, 400, field)


# --- 3. query parameters: after and timeout ----------------------------------------------

BAD_AFTER = ["-1", str(10**30), str(MAX_OFFSET + 1), "abc", "1.5", "", " 1", "+1", "1_0"]


@pytest.mark.parametrize("after", BAD_AFTER)
@pytest.mark.parametrize("role", ROLES)
async def test_a_bad_logs_after_is_refused_naming_after(
    masters: Masters, http: aiohttp.ClientSession, task_id: str, role: str, after: str
) -> None:
    url = f"{masters.http(role)}/api/v1/tasks/{task_id}/logs"
    async with http.get(url, params={"after": after}) as response:
        await refused(response, 400, "after")


@pytest.mark.parametrize("role", ROLES)
async def test_logs_after_at_the_bound_is_accepted(
    masters: Masters, http: aiohttp.ClientSession, task_id: str, role: str
) -> None:
    url = f"{masters.http(role)}/api/v1/tasks/{task_id}/logs"
    for after in ("0", str(MAX_OFFSET)):
        async with http.get(url, params={"after": after}) as response:
            body = await answer(response)
            assert response.status == 200, body
            assert body.get("lines", []) == []


@pytest.mark.parametrize("session", ROLES, indirect=True)
@pytest.mark.parametrize("timeout", ["nan", "NaN", "inf", "-inf", "Infinity", "-1", "abc", ""])
async def test_a_bad_poll_timeout_is_refused_naming_timeout(
    http: aiohttp.ClientSession, session: tuple[str, str, str], timeout: str
) -> None:
    base, _, session_id = session
    url = f"{base}/api/v1/workers/{session_id}/poll"
    async with http.get(url, params={"timeout": timeout}) as response:
        await refused(response, 400, "timeout")
    async with http.get(url, params={"timeout": "0"}) as response:
        assert response.status == 200, await response.text()


# --- 4. the session id goes to its creator only ---------------------------------------------


@pytest.mark.parametrize("session", ROLES, indirect=True)
async def test_the_session_id_is_never_handed_out_after_connect(
    http: aiohttp.ClientSession, session: tuple[str, str, str]
) -> None:
    base, worker_id, session_id = session
    heartbeat = f"{base}/api/v1/workers/heartbeat"
    # Naming the worker is not enough, and the answer does not say the id.
    for body in ({"workerId": worker_id}, {"nodeId": worker_id, "cpuPercent": 3}):
        async with http.post(heartbeat, json=body) as response:
            assert session_id not in await response.text()
            await refused(response, 400, "sessionId")
    async with http.post(heartbeat, json={"sessionId": "0" * 32, "workerId": worker_id}) as r:
        await refused(r, 404, "session")
    async with http.post(heartbeat, json={"sessionId": session_id, "workerId": "other"}) as r:
        assert session_id not in await r.text()
        await refused(r, 400, "workerId")
    async with http.post(heartbeat, json={"sessionId": 5}) as r:
        await refused(r, 400, "sessionId")
    # With the id: accepted, and still not echoed.
    beat = {"sessionId": session_id, "workerId": worker_id, "cpuPercent": 12.5}
    async with http.post(heartbeat, json=beat) as response:
        assert response.status == 200, await response.text()
        assert await response.json() == {"ok": True}
    calls: list[tuple[str, str, Any]] = [
        ("POST", "messages", {"messages": []}),
        ("GET", "poll?timeout=0", None),
    ]
    for method, path, payload in calls:
        async with http.request(
            method, f"{base}/api/v1/workers/{session_id}/{path}", json=payload
        ) as response:
            assert response.status == 200, await response.text()
            assert session_id not in await response.text()
    async with http.get(f"{base}/api/v1/workers") as response:
        assert response.status == 200
        assert session_id not in await response.text()
    async with http.get(f"{base}/api/v1/workers/{'f' * 32}/poll") as response:
        await refused(response, 404, "session")


# --- 5. logs of a task that does not exist ------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_logs_of_an_unknown_task_answer_404_naming_it(
    masters: Masters, http: aiohttp.ClientSession, task_id: str, role: str
) -> None:
    base = masters.http(role)
    missing = f"no-such-task-{uuid.uuid4().hex[:8]}"
    async with http.get(f"{base}/api/v1/tasks/{missing}/logs") as response:
        body = await refused(response, 404, "task_id")
    assert body["task_id"] == missing and missing in body["error"]
    async with http.get(f"{base}/api/v1/tasks/{task_id}/logs") as response:
        assert response.status == 200, await response.text()


@pytest.mark.parametrize("role", ROLES)
async def test_grpc_logs_of_an_unknown_task_answer_not_found(
    masters: Masters, task_id: str, role: str
) -> None:
    node = masters.leader if role == "leader" else masters.follower
    async with grpc.aio.insecure_channel(masters.cluster.address(node)) as channel:
        stub = worker_pb2_grpc.TaskLogServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused_call:
            await stub.GetTaskLogs(wpb.GetTaskLogsRequest(task_id="no-such-task"), timeout=10)
        assert refused_call.value.code() == grpc.StatusCode.NOT_FOUND
        assert "task_id: no task 'no-such-task'" in (refused_call.value.details() or "")
        await stub.GetTaskLogs(wpb.GetTaskLogsRequest(task_id=task_id), timeout=10)


# --- every error is JSON ---------------------------------------------------------------------


async def test_unknown_routes_and_methods_answer_json(
    masters: Masters, http: aiohttp.ClientSession
) -> None:
    base = masters.http("leader")
    async with http.get(f"{base}/api/v1/nothing-here") as response:
        body = await answer(response)
        assert response.status == 404 and "/api/v1/nothing-here" in body["error"]
    async with http.get(f"{base}/api/v1/workers/connect") as response:
        body = await answer(response)
        assert response.status == 405 and "POST" in body["error"], body
