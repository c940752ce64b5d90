"""The SDK against real `agentflow-master` processes on 127.0.0.1 (no workers: tasks
stay queued unless cancelled)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import aclosing, closing
from pathlib import Path

import grpc
import pytest

from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import scheduler_pb2_grpc as api_grpc
from agentflow._proto import state_pb2 as pb
from agentflow.client import (
    AlreadyExistsError,
    AsyncClient,
    Client,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    Priority,
    RetryPolicy,
    TaskSpec,
    TaskState,
    Workflow,
    WorkflowState,
)
from agentflow.client.errors import error_from_status, rpc_status
from agentflow.master.testing import MasterCluster

POLICY = RetryPolicy(deadline=20.0, attempt_timeout=5.0)


@pytest.fixture
def client(master: str) -> Iterator[Client]:
    with Client(master, retry=POLICY) as c:
        yield c


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_submit_get_list(client: Client) -> None:
    group = unique("grp")
    task_id = client.submit(
        "python:jobs.train:main",
        name="Train",
        group=group,
        priority="high",
        cpu=2,
        memory_mb=512,
        labels={"cuda": "12"},
        env={"SEED": "1"},
        args={"epochs": 2},
        max_retries=2,
        retry_backoff=1.5,
        timeout=600,
    )
    task = client.get(task_id)
    assert task.state is TaskState.READY
    assert task.priority is Priority.HIGH
    assert (task.name, task.group, task.spec.args) == ("Train", group, {"epochs": 2})
    assert (task.spec.retry_backoff, task.spec.timeout) == (1.5, 600.0)
    assert task.created is not None
    others = client.submit_many([TaskSpec("shell:true", group=group) for _ in range(4)])
    listed = [t.id for t in client.list(group=group, page_size=2)]
    assert listed == [task_id, *others]
    page = client.list_page(group=group, page_size=2)
    assert (len(page.tasks), page.total) == (2, 5)
    assert [t.id for t in client.list(group=group, states=["cancelled"])] == []


def test_a_request_id_is_applied_once(client: Client) -> None:
    request_id = uuid.uuid4().hex
    first = client.submit_many([TaskSpec("shell:a"), TaskSpec("shell:b")], request_id=request_id)
    again = client.submit_many([TaskSpec("shell:a"), TaskSpec("shell:b")], request_id=request_id)
    assert first == again


def test_server_errors_map_to_sdk_errors(client: Client) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        client.submit("shell:true", dependencies=["no-such-task"])
    assert info.value.field == "tasks[0].dependencies[0]"
    assert "unknown dependency 'no-such-task'" in info.value.reason
    task_id = unique("fixed")
    client.submit("shell:true", id=task_id)
    with pytest.raises(AlreadyExistsError):
        client.submit("shell:true", id=task_id)
    with pytest.raises(NotFoundError):
        client.get(unique("missing"))
    with pytest.raises(NotFoundError):
        client.get_workflow(unique("missing"))
    with pytest.raises(NotFoundError):
        client.cancel(unique("missing"))
    missing = unique("missing")
    with pytest.raises(NotFoundError, match=f"task_ids\\[0\\]: no task '{missing}'"):
        client.wait_task(missing, timeout=5)  # one watch call, refused at once


def test_the_server_names_a_cycle_too(master: str) -> None:
    """Bypassing the SDK's own check: the master rejects the cycle, the SDK maps it."""
    spec = pb.WorkflowSpec(
        tasks=[
            pb.TaskSpec(id="a", command="shell:a", dependencies=["b"]),
            pb.TaskSpec(id="b", command="shell:b", dependencies=["a"]),
        ]
    )
    with grpc.insecure_channel(master) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitWorkflow(api.SubmitWorkflowRequest(workflow=spec), timeout=10)
    error = error_from_status(rpc_status(info.value))
    assert isinstance(error, InvalidArgumentError)
    assert error.field == "tasks[0].dependencies[0]"
    assert error.reason == "dependency cycle: a -> b -> a"


def test_workflow_lifecycle(client: Client, tmp_path: Path) -> None:
    workflow_id = unique("wf")
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"workflow:\n  id: {workflow_id}\n  name: Release\n  tasks:\n"
        "    - task_id: build\n      desc: shell:make\n      priority: high\n"
        "    - task_id: test\n      desc: shell:make test\n      dependencies: [build]\n"
    )
    submitted = client.submit_workflow(path)
    assert submitted.workflow_id == workflow_id
    build, test = submitted.local_ids["build"], submitted.local_ids["test"]
    status = client.get_workflow(workflow_id)
    assert status.state is WorkflowState.RUNNING
    assert status.name == "Release"
    assert {t.id: t.state for t in status.tasks} == {
        build: TaskState.READY,
        test: TaskState.PENDING,
    }
    assert status.execution_order == (build, test)
    assert client.get(test).dependencies == (build,)
    with pytest.raises(AlreadyExistsError):
        client.submit_workflow(Workflow([TaskSpec("shell:x", id="x")], id=workflow_id))
    threading.Timer(0.3, client.cancel, kwargs={"workflow_id": workflow_id}).start()
    final = client.wait_workflow(workflow_id, timeout=20)
    assert final.state is WorkflowState.CANCELLED
    assert {t.state for t in final.tasks} == {TaskState.CANCELLED}


def test_wait_and_watch(client: Client) -> None:
    task_id = client.submit("shell:sleep 1")
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError, match="not finished after 300ms"):
        client.wait(task_id, timeout=0.3)
    assert time.monotonic() - start < 5
    with closing(client.watch([task_id])) as events:
        first = next(events)
        assert first.initial and first.task.state is TaskState.READY
        client.cancel(task_id)
        changed = next(events)
        assert not changed.initial and changed.task.state is TaskState.CANCELLED
    assert client.wait(task_id).state is TaskState.CANCELLED
    assert client.wait_task(task_id, timeout=5).state is TaskState.CANCELLED  # already final


async def test_watch_sees_a_reprioritize(master: str) -> None:
    async with AsyncClient(master, retry=POLICY) as client:
        task_id = await client.submit("shell:true")
        async with aclosing(client.watch([task_id])) as events:
            assert (await anext(events)).initial
            await client.reprioritize(task_id, "critical")
            changed = await asyncio.wait_for(anext(events), timeout=5)
        assert changed.task.priority is Priority.CRITICAL


def test_reprioritize_explain_workers_cluster(client: Client) -> None:
    task_id = client.submit("shell:true", group=unique("nobody"))
    client.reprioritize(task_id, Priority.LOW)
    assert client.get(task_id).priority is Priority.LOW
    reasons = client.explain(task_id)
    assert reasons and all(isinstance(r, str) and r for r in reasons)
    client.cancel(task_id)
    with pytest.raises(FailedPreconditionError):
        client.reprioritize(task_id, "high")
    assert client.workers() == []
    status = client.cluster_status()
    assert status.leader_id == status.node_id == "m1"
    assert [m.id for m in status.members] == ["m1"]


async def test_async_client(master: str) -> None:
    async with AsyncClient(f"http://{master}", retry=POLICY) as client:
        ids = await client.submit_many([TaskSpec("shell:a"), TaskSpec("shell:b")])
        waiting = asyncio.create_task(client.wait(ids[0], timeout=20))
        await asyncio.sleep(0.3)
        assert await client.cancel(ids[0]) == [ids[0]]
        assert (await waiting).state is TaskState.CANCELLED
        with pytest.raises(DeadlineExceededError):
            await client.wait(ids[1], timeout=0.2)
        assert ids[1] in [t.id async for t in client.list(states=["ready"], page_size=1)]
        waiting = asyncio.create_task(client.wait_task(ids[1], timeout=20))
        await asyncio.sleep(0.3)
        await client.cancel(ids[1])
        assert (await waiting).state is TaskState.CANCELLED
        with pytest.raises(NotFoundError):
            await client.wait_task("no-such-task-here", timeout=5)


async def test_leader_failover(tmp_path: Path) -> None:
    """Three masters; the SDK keeps working when the leader dies, and a write whose
    outcome it did not see is applied once."""
    cluster = MasterCluster(tmp_path, size=3)
    try:
        await cluster.start_all()
        leader = await cluster.leader()
        follower = next(n for n in cluster.ids if n != leader)
        async with AsyncClient([cluster.address(follower)], retry=POLICY) as client:
            first = await client.submit("shell:a", id="before")
            cluster.kill(leader)
            # The follower cannot commit until a new leader is elected: UNAVAILABLE or
            # DEADLINE_EXCEEDED meanwhile, retried with one request id.
            second = await client.submit("shell:b", id="after")
        async with AsyncClient(cluster.url(), retry=POLICY) as everyone:  # the dead one first
            assert {t.id async for t in everyone.list()} == {first, second}
            third = await everyone.submit("shell:c")
            assert (await everyone.get(third)).state is TaskState.READY
    finally:
        cluster.stop_all()
