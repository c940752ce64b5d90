"""The SDK surface end to end against a FakeMaster (no real cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import state_pb2 as pb
from agentflow.client import (
    AgentFlowError,
    AlreadyExistsError,
    AsyncClient,
    Client,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    Priority,
    RetryPolicy,
    Task,
    TaskEvent,
    TaskSpec,
    TaskState,
    Workflow,
    WorkflowState,
    WorkflowStatus,
)
from agentflow.client.testing import FakeMaster

FAST = RetryPolicy(deadline=5.0, attempt_timeout=2.0, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
def fake() -> Iterator[FakeMaster]:
    worker = api.WorkerStatus(
        worker=pb.Worker(
            info=pb.WorkerInfo(id="w1", groups=["linux"], cpu_cores=4, capacity=2),
            state=pb.WORKER_STATE_ONLINE,
        ),
        connected=True,
    )
    with FakeMaster(workers=[worker]) as master:
        yield master


@pytest.fixture
def client(fake: FakeMaster) -> Iterator[Client]:
    with Client(fake.address, retry=FAST) as c:
        yield c


def later(seconds: float, fn: object, *args: object) -> threading.Timer:
    timer = threading.Timer(seconds, fn, args)  # type: ignore[arg-type]
    timer.start()
    return timer


def test_submit_sends_every_field(client: Client, fake: FakeMaster) -> None:
    task_id = client.submit(
        "python:jobs.train:main",
        name="Train",
        group="gpu",
        priority="high",
        cpu=4,
        memory_mb=8192,
        gpus=2,
        labels={"cuda": "12"},
        env={"SEED": "1"},
        cwd="/work",
        args={"epochs": 3},
        max_retries=2,
        retry_backoff=2.5,
        timeout=3600,
        id="train-1",
    )
    assert task_id == "train-1"
    spec = fake.task("train-1").spec
    assert (spec.name, spec.group, spec.priority, spec.gpus) == (
        "Train",
        "gpu",
        pb.PRIORITY_HIGH,
        2,
    )
    assert (spec.args_json, spec.retry_backoff_ms, spec.timeout_ms) == (
        '{"epochs":3}',
        2500,
        3_600_000,
    )
    task = client.get("train-1")
    assert task.spec.args == {"epochs": 3}
    assert task.priority is Priority.HIGH
    assert task.state is TaskState.READY


def test_dependencies_and_batches(client: Client) -> None:
    first = client.submit("shell:a")
    ids = client.submit_many(
        [TaskSpec("shell:b", dependencies=[first]), TaskSpec("shell:c", priority=Priority.LOW)]
    )
    assert ids == ["2", "3"]
    assert client.get("2").state is TaskState.PENDING
    assert client.get("2").dependencies == (first,)


def test_list_walks_every_page(client: Client) -> None:
    client.submit_many([TaskSpec(f"shell:{i}", group="a" if i % 2 else "b") for i in range(7)])
    assert [t.id for t in client.list(page_size=2)] == [str(i) for i in range(1, 8)]
    assert len(list(client.list(group="a", page_size=1))) == 3
    page = client.list_page(page_size=3)
    assert (len(page.tasks), page.total, page.next_page_token) == (3, 7, "3")
    client.cancel("1", "2")
    assert [t.id for t in client.list(states=["cancelled"])] == ["1", "2"]
    assert [t.id for t in client.list(states="cancelled")] == ["1", "2"]
    with pytest.raises(InvalidArgumentError, match=r"states\[0\]: unknown value 'done'"):
        client.list(states=["done"])
    with pytest.raises(InvalidArgumentError, match="page_size"):
        client.list(page_size=0)


def test_cancel_reprioritize_explain(client: Client, fake: FakeMaster) -> None:
    a = client.submit("shell:a")
    client.reprioritize(a, Priority.CRITICAL)
    assert client.get(a).priority is Priority.CRITICAL
    assert client.explain(a) == ["no live worker in group 'default'"]
    assert client.cancel(a, reason="no longer needed") == [a]
    assert fake.calls("Cancel")[0].request.reason == "no longer needed"
    assert client.cancel(a) == []
    with pytest.raises(FailedPreconditionError):
        client.reprioritize(a, "low")
    with pytest.raises(InvalidArgumentError, match="give task ids or a workflow id"):
        client.cancel()


def test_workers_and_cluster(client: Client, fake: FakeMaster) -> None:
    workers = client.workers()
    assert [w.id for w in workers] == ["w1"]
    assert client.workers(group="gpu") == []
    status = client.cluster_status()
    assert (status.node_id, status.leader_address, status.role) == ("fake", fake.address, "leader")


def test_workflow_from_dataclass_and_file(client: Client, tmp_path: Path) -> None:
    wf = Workflow(
        [TaskSpec("shell:a", id="a"), TaskSpec("shell:b", id="b", dependencies=["a"])],
        id="w1",
        name="Two",
    )
    submitted = client.submit_workflow(wf)
    assert submitted.workflow_id == "w1"
    assert submitted.local_ids == {"a": "w1/a", "b": "w1/b"}
    status = client.get_workflow("w1")
    assert status.state is WorkflowState.RUNNING
    assert [t.id for t in status.tasks] == ["w1/a", "w1/b"]
    path = tmp_path / "wf.yaml"
    path.write_text("workflow:\n  id: w2\n  tasks:\n    - task_id: x\n      desc: shell:x\n")
    first = client.submit_workflow(path, request_id="r")
    assert (first.task_ids, first.duplicate) == (("w2/x",), False)
    again = client.submit_workflow(str(path), request_id="r")  # a retry: deduplicated
    assert (again.workflow_id, again.duplicate) == ("w2", True)
    with pytest.raises(AlreadyExistsError):
        client.submit_workflow(path)


def test_wait_task_follows_events(client: Client, fake: FakeMaster) -> None:
    task_id = client.submit("shell:a")
    seen: list[TaskEvent] = []
    later(0.1, fake.set_running, task_id, 0.5)
    later(0.3, fake.finish, task_id)
    task = client.wait_task(task_id, timeout=5, on_event=seen.append)
    assert task.state is TaskState.SUCCEEDED
    assert [e.task.state for e in seen] == [TaskState.READY, TaskState.RUNNING, TaskState.SUCCEEDED]
    assert client.wait(task_id).state is TaskState.SUCCEEDED  # already final: no watch


def test_wait_task_is_one_watch_call(client: Client, fake: FakeMaster) -> None:
    task_id = client.submit("shell:a")
    later(0.1, fake.finish, task_id)
    assert client.wait_task(task_id, timeout=5).state is TaskState.SUCCEEDED
    assert not fake.calls("GetTask") and len(fake.calls("WatchTasks")) == 1
    [watch] = fake.calls("WatchTasks")
    # Nobody to show progress to: only the end is asked for, and the master ends the
    # stream after it (read to its end: not cancelled, not reconnected).
    assert watch.request.final_only and not watch.request.include_progress
    assert watch.request.end_when_final
    assert client.wait_task(task_id, timeout=5).state is TaskState.SUCCEEDED  # already final
    assert len(fake.calls("WatchTasks")) == 2
    with pytest.raises(NotFoundError, match=r"task_ids\[0\]: no task 'nope'"):
        client.wait_task("nope", timeout=5)


def test_wait_task_gives_a_master_that_never_ends_the_watch_a_second(
    client: Client, fake: FakeMaster
) -> None:
    fake.ends_watches = False  # a master older than end_when_final
    task_id = client.submit("shell:a")
    later(0.1, fake.finish, task_id)
    start = time.monotonic()
    assert client.wait_task(task_id, timeout=10).state is TaskState.SUCCEEDED
    assert time.monotonic() - start < 3  # the final event, then at most END_GRACE_S


async def test_async_wait_task_gives_a_master_that_never_ends_the_watch_a_second(
    fake: FakeMaster,
) -> None:
    fake.ends_watches = False
    async with AsyncClient(fake.address, retry=FAST) as client:
        task_id = await client.submit("shell:a")
        asyncio.get_running_loop().call_later(0.1, fake.finish, task_id)
        start = time.monotonic()
        assert (await client.wait_task(task_id, timeout=10)).succeeded
        assert time.monotonic() - start < 3


def test_a_watch_carries_the_highest_index_this_client_wrote_at(
    client: Client, fake: FakeMaster
) -> None:
    first = client.submit("shell:a")
    fake.finish(first)
    client.wait_task(first, timeout=5)
    written = fake.index
    second = client.submit("shell:b")
    assert fake.index > written
    client.cancel(second)
    client.wait_task(second, timeout=5)
    indexes = [c.request.min_index for c in fake.calls("WatchTasks")]
    # The second watch knows of the cancel (the finish was not this client's write).
    assert indexes == [written - 1, fake.index]
    with contextlib.closing(client.watch([first])) as events:
        next(events)
    assert fake.calls("WatchTasks")[-1].request.min_index == fake.index


def test_wait_timeout(client: Client, fake: FakeMaster) -> None:
    task_id = client.submit("shell:a")
    with pytest.raises(
        DeadlineExceededError, match=f"wait for task {task_id}: not finished after 200ms"
    ):
        client.wait(task_id, timeout=0.2)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        client.wait(task_id, timeout=-1)


def test_wait_workflow(client: Client, fake: FakeMaster) -> None:
    client.submit_workflow(
        Workflow(
            [TaskSpec("shell:a", id="a"), TaskSpec("shell:b", id="b", dependencies=["a"])],
            id="w",
        )
    )
    later(0.1, fake.finish, "w/a", False)  # b is skipped
    result = client.wait("w", timeout=5)
    assert isinstance(result, WorkflowStatus)
    assert result.state is WorkflowState.FAILED
    assert {t.id: t.state for t in result.tasks} == {
        "w/a": TaskState.FAILED,
        "w/b": TaskState.SKIPPED,
    }
    with pytest.raises(NotFoundError, match="no task or workflow 'zzz'"):
        client.wait("zzz")


def test_wait_workflow_asks_only_for_endings(client: Client, fake: FakeMaster) -> None:
    specs = [TaskSpec("shell:a", id="a"), TaskSpec("shell:b", id="b", dependencies=["a"])]
    client.submit_workflow(Workflow(specs, id="q"))
    later(0.1, fake.finish, "q/a")
    later(0.2, fake.finish, "q/b")
    status = client.wait_workflow("q", timeout=5)
    assert status.state is WorkflowState.SUCCEEDED and len(status.tasks) == 2
    [watch] = fake.calls("WatchTasks")
    assert watch.request.final_only and not watch.request.include_progress
    # Neither read carries the tasks: their final versions came with the watch.
    assert [c.request.include_tasks for c in fake.calls("GetWorkflow")] == [False, False]
    assert [t.id for t in status.tasks] == ["q/a", "q/b"]
    assert all(t.state is TaskState.SUCCEEDED for t in status.tasks)
    seen: list[TaskEvent] = []
    client.submit_workflow(Workflow(specs, id="r"))
    later(0.1, fake.finish, "r/a")
    later(0.2, fake.finish, "r/b")
    client.wait_workflow("r", timeout=5, on_event=seen.append)  # shown: every change
    assert not fake.calls("WatchTasks")[-1].request.final_only
    assert [e.task.state for e in seen if e.task.id == "r/b"][-1] is TaskState.SUCCEEDED


def test_closed_client(fake: FakeMaster) -> None:
    client = Client(fake.address)
    client.close()
    with pytest.raises(AgentFlowError, match="closed"):
        client.get("1")


async def test_async_api(fake: FakeMaster) -> None:
    async with AsyncClient(fake.address, retry=FAST) as client:
        ids = await client.submit_many([TaskSpec("shell:a"), TaskSpec("shell:b")])
        assert [t.id async for t in client.list(page_size=1)] == ids
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, fake.finish, ids[0])
        result = await client.wait(ids[0], timeout=5)
        assert isinstance(result, Task) and result.succeeded
        watch = fake.calls("WatchTasks")[-1].request
        assert watch.final_only and watch.min_index == fake.index - 1
        async with aclosing(client.watch(ids)) as events:
            picture = [await anext(events), await anext(events)]
        assert {e.task.id for e in picture} == set(ids)
        assert all(e.initial for e in picture)
        await client.reprioritize(ids[1], "idle")
        assert (await client.get(ids[1])).priority is Priority.IDLE
        assert await client.explain(ids[1])
        assert await client.cancel(*ids) == [ids[1]]
        submitted = await client.submit_workflow(Workflow([TaskSpec("shell:x", id="x")], id="aw"))
        loop.call_later(0.2, fake.finish, "aw/x")
        status = await client.wait_workflow(submitted.workflow_id, timeout=5)
        assert status.succeeded
        assert [w.id for w in await client.workers()] == ["w1"]
        assert (await client.cluster_status()).node_id == "fake"
        slow = await client.submit("shell:slow")
        with pytest.raises(DeadlineExceededError, match="not finished after 200ms"):
            await client.wait(slow, timeout=0.2)
