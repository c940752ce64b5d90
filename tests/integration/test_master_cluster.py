"""Real `agentflow-master` processes on 127.0.0.1 serving the client API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import scheduler_pb2_grpc, state_pb2
from agentflow.master.testing import MasterCluster

TS = state_pb2.TaskState


def stub(address: str) -> scheduler_pb2_grpc.SchedulerServiceStub:
    return scheduler_pb2_grpc.SchedulerServiceStub(grpc.aio.insecure_channel(address))


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[MasterCluster]:
    c = MasterCluster(tmp_path, size=3)
    try:
        await c.start_all()
        yield c
    finally:
        c.stop_all()


async def follower_of(c: MasterCluster) -> str:
    leader = await c.leader()
    return next(n for n in c.ids if n != leader)


def shell(name: str, **kw: object) -> state_pb2.TaskSpec:
    return state_pb2.TaskSpec(name=name, command=f"shell:echo {name}", **kw)  # type: ignore[arg-type]


async def test_one_leader_mode_master_is_a_working_cluster(tmp_path: Path) -> None:
    c = MasterCluster(tmp_path, size=1)
    try:
        await c.start_all()
        s = stub(c.address("m1"))
        resp = await s.SubmitTasks(api.SubmitTasksRequest(tasks=[shell("a"), shell("b")]))
        assert len(resp.task_ids) == 2
        task = await s.GetTask(api.GetTaskRequest(task_id=resp.task_ids[0]))
        assert task.state == TS.TASK_STATE_READY and task.priority == state_pb2.PRIORITY_NORMAL
        listed = await s.ListTasks(api.ListTasksRequest(states=[TS.TASK_STATE_READY]))
        assert listed.total == 2
    finally:
        c.stop_all()


async def test_followers_forward_writes_and_serve_linearizable_reads(
    cluster: MasterCluster,
) -> None:
    leader = await cluster.leader()
    followers = [n for n in cluster.ids if n != leader]
    resp = await stub(cluster.address(followers[0])).SubmitTasks(
        api.SubmitTasksRequest(request_id="r1", tasks=[shell("x", group="linux")])
    )
    # Read at the other follower right away: ReadIndex makes the write visible.
    task = await stub(cluster.address(followers[1])).GetTask(
        api.GetTaskRequest(task_id=resp.task_ids[0])
    )
    assert task.spec.group == "linux"
    status = await cluster.status(followers[1])
    assert status.leader_id == leader and len(status.members) == 3
    assert status.task_counts["TASK_STATE_READY"] == 1


async def test_a_retried_request_id_is_applied_once(cluster: MasterCluster) -> None:
    s = stub(cluster.address(await follower_of(cluster)))
    request = api.SubmitTasksRequest(request_id=uuid.uuid4().hex, tasks=[shell("once")])
    first = await s.SubmitTasks(request)
    second = await s.SubmitTasks(request)
    assert second.task_ids == first.task_ids and second.duplicate and not first.duplicate
    listed = await s.ListTasks(api.ListTasksRequest())
    assert listed.total == 1


async def test_ten_thousand_task_workflow_is_accepted(cluster: MasterCluster) -> None:
    tasks = [state_pb2.TaskSpec(id="start", command="shell:true")]
    tasks += [
        state_pb2.TaskSpec(id=f"t{i}", command=f"shell:echo {i}", dependencies=["start"])
        for i in range(9_998)
    ]
    tasks.append(
        state_pb2.TaskSpec(
            id="end", command="shell:true", dependencies=[f"t{i}" for i in range(9_998)]
        )
    )
    s = stub(cluster.address(await follower_of(cluster)))
    resp = await s.SubmitWorkflow(
        api.SubmitWorkflowRequest(workflow=state_pb2.WorkflowSpec(id="big", tasks=tasks)),
        timeout=60,
    )
    assert resp.workflow_id == "big" and len(resp.task_ids) == 10_000
    wf = await s.GetWorkflow(api.GetWorkflowRequest(workflow_id="big"))
    assert wf.state_counts["TASK_STATE_READY"] == 1
    assert wf.state_counts["TASK_STATE_PENDING"] == 9_999
    assert wf.critical_path == ["big/start", "big/t0", "big/end"]
    page = await s.ListTasks(api.ListTasksRequest(workflow_id="big", page_size=1000))
    assert page.total == 10_000 and len(page.tasks) == 1000 and page.next_page_token
    # Every master holds it.
    for node in cluster.ids:
        got = await stub(cluster.address(node)).GetTask(api.GetTaskRequest(task_id="big/end"))
        assert len(got.dependencies) == 9_998


async def test_a_cyclic_workflow_is_rejected_with_the_cycle_named(cluster: MasterCluster) -> None:
    s = stub(cluster.address(await follower_of(cluster)))
    spec = state_pb2.WorkflowSpec(
        id="loop",
        tasks=[
            state_pb2.TaskSpec(id="a", command="shell:true", dependencies=["c"]),
            state_pb2.TaskSpec(id="b", command="shell:true", dependencies=["a"]),
            state_pb2.TaskSpec(id="c", command="shell:true", dependencies=["b"]),
        ],
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.SubmitWorkflow(api.SubmitWorkflowRequest(workflow=spec))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "a -> c -> b -> a" in (info.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await s.GetWorkflow(api.GetWorkflowRequest(workflow_id="loop"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_input_names_the_field_and_changes_nothing(cluster: MasterCluster) -> None:
    s = stub(cluster.address(cluster.ids[0]))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.SubmitTasks(
            api.SubmitTasksRequest(tasks=[shell("ok"), state_pb2.TaskSpec(command="bash:ls")])
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("tasks[1].command")
    assert (await s.ListTasks(api.ListTasksRequest())).total == 0


async def test_explain_answers_for_a_task_no_worker_can_take(cluster: MasterCluster) -> None:
    s = stub(cluster.address(await follower_of(cluster)))
    resp = await s.SubmitTasks(api.SubmitTasksRequest(tasks=[shell("train", group="gpu")]))
    answer = await s.Explain(api.ExplainRequest(task_id=resp.task_ids[0]))
    assert answer.reasons[0].startswith("no live worker in group 'gpu'")
    assert any(r.startswith("queued: 0 tasks ahead at NORMAL") for r in answer.reasons)


async def test_watch_streams_the_picture_then_changes(cluster: MasterCluster) -> None:
    s = stub(cluster.address(await follower_of(cluster)))
    resp = await s.SubmitTasks(api.SubmitTasksRequest(tasks=[shell("w")]))
    tid = resp.task_ids[0]
    stream = s.WatchTasks(api.WatchTasksRequest(task_ids=[tid]))
    first = await stream.read()
    assert first.initial and first.task.state == TS.TASK_STATE_READY
    await s.Cancel(api.CancelRequest(task_ids=[tid], reason="no longer needed"))
    change = await asyncio.wait_for(stream.read(), 10)
    assert change.task.state == TS.TASK_STATE_CANCELLED and not change.initial
    assert change.task.result.error == "no longer needed"
    stream.cancel()
    # final_only: the picture holds only final tasks, and only endings follow.
    a, b = (await s.SubmitTasks(api.SubmitTasksRequest(tasks=[shell("a"), shell("b")]))).task_ids
    stream = s.WatchTasks(api.WatchTasksRequest(task_ids=[tid, a, b], final_only=True))
    first = await stream.read()
    assert first.initial and first.task.id == tid
    await s.Reprioritize(api.ReprioritizeRequest(task_id=a, priority=state_pb2.PRIORITY_HIGH))
    await s.Cancel(api.CancelRequest(task_ids=[b]))
    change = await asyncio.wait_for(stream.read(), 10)
    assert change.task.id == b and change.task.state == TS.TASK_STATE_CANCELLED
    stream.cancel()
    missing = s.WatchTasks(api.WatchTasksRequest(task_ids=[a, "nope"], must_exist=True))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await missing.read()
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "task_ids[1]: no task 'nope'"


async def test_an_end_when_final_watch_ends_once_every_watched_task_is(
    cluster: MasterCluster,
) -> None:
    s = stub(cluster.address(await cluster.leader()))
    a, b = (await s.SubmitTasks(api.SubmitTasksRequest(tasks=[shell("a"), shell("b")]))).task_ids
    request = api.WatchTasksRequest(task_ids=[a, b], final_only=True, end_when_final=True)
    stream = s.WatchTasks(request)
    await s.Cancel(api.CancelRequest(task_ids=[a]))
    first = await asyncio.wait_for(stream.read(), 10)
    assert first.task.id == a and first.task.state == TS.TASK_STATE_CANCELLED
    await s.Cancel(api.CancelRequest(task_ids=[b]))
    second = await asyncio.wait_for(stream.read(), 10)
    assert second.task.id == b
    assert await asyncio.wait_for(stream.read(), 10) is grpc.aio.EOF
    assert await stream.code() == grpc.StatusCode.OK
    # Already final: the picture, then the end.
    again = [e async for e in s.WatchTasks(request)]
    assert sorted(e.task.id for e in again) == sorted([a, b])
    assert all(e.initial for e in again)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.WatchTasks(api.WatchTasksRequest(end_when_final=True)).read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("end_when_final: ")


async def test_a_watch_at_an_applied_min_index_needs_no_quorum(cluster: MasterCluster) -> None:
    """min_index: a master that has applied what the caller saw serves the watch from
    its own state; without it (or above what it applied) the watch needs a ReadIndex
    round, which a master cut off from the others cannot get."""
    leader = await cluster.leader()
    follower = await follower_of(cluster)
    resp = await stub(cluster.address(leader)).SubmitTasks(
        api.SubmitTasksRequest(tasks=[shell("seen", group="nowhere")])
    )
    for _ in range(200):  # the follower applies it within a tick or so
        if (await cluster.status(follower)).applied_index >= resp.index:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail(f"{follower} did not apply index {resp.index}")
    others = [n for n in cluster.ids if n != follower]
    for node in others:
        cluster.group.pause(node)
    try:
        s = stub(cluster.address(follower))
        watch = s.WatchTasks(
            api.WatchTasksRequest(task_ids=resp.task_ids, must_exist=True, min_index=resp.index)
        )
        first = await asyncio.wait_for(watch.read(), 5)
        assert first.initial and first.task.id == resp.task_ids[0]
        # But a master that goes on without a leader ends its watches, so that a
        # waiter does not wait on a state that stopped moving.
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            await asyncio.wait_for(watch.read(), 15)
        assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no leader" in (cut.value.details() or "")
        for min_index in (0, resp.index + 1000):
            barred = s.WatchTasks(
                api.WatchTasksRequest(task_ids=resp.task_ids, min_index=min_index), timeout=15
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await barred.read()
            assert info.value.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ), info.value
    finally:
        for node in others:
            cluster.group.resume(node)


async def submit_until(
    addresses: list[str], stop: asyncio.Event, acked: dict[str, str], prefix: str
) -> None:
    """Submit one task at a time, retrying each with the same request id on any
    master until it is acknowledged; record what was acknowledged."""
    channels = [grpc.aio.insecure_channel(a) for a in addresses]
    stubs = [scheduler_pb2_grpc.SchedulerServiceStub(ch) for ch in channels]
    n = 0
    try:
        while not stop.is_set():
            n += 1
            request = api.SubmitTasksRequest(
                request_id=f"{prefix}-{n}", tasks=[shell(f"{prefix}-{n}")]
            )
            attempt = 0
            while True:
                try:
                    resp = await stubs[attempt % len(stubs)].SubmitTasks(request, timeout=3)
                    acked[resp.task_ids[0]] = request.request_id
                    break
                except grpc.aio.AioRpcError:
                    attempt += 1
                    await asyncio.sleep(0.05)
    finally:
        for ch in channels:
            await ch.close()


async def test_kill_9_of_the_leader_loses_no_acknowledged_submit(cluster: MasterCluster) -> None:
    stop = asyncio.Event()
    acked: dict[str, str] = {}
    writers = [
        asyncio.create_task(submit_until(cluster.addresses(), stop, acked, f"w{i}"))
        for i in range(4)
    ]
    for _ in range(2):
        await asyncio.sleep(1.0)
        victim = await cluster.leader()
        before = len(acked)
        cluster.kill(victim)
        await asyncio.sleep(1.5)
        cluster.start(victim)
        await cluster.leader(20)
        assert len(acked) > before or True
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*writers)
    assert len(acked) > 50
    leader = await cluster.leader()
    for node in cluster.ids:
        s = stub(cluster.address(node))
        listed: set[str] = set()
        token = ""
        while True:
            page = await s.ListTasks(api.ListTasksRequest(page_size=1000, page_token=token))
            listed.update(t.id for t in page.tasks)
            token = page.next_page_token
            if not token:
                break
        lost = set(acked) - listed
        assert not lost, f"{node} (leader {leader}) lost acknowledged tasks {sorted(lost)[:5]}"
        # Request ids were applied once: as many tasks as acknowledged requests.
        assert len(listed) == len(acked)


async def test_full_restart_from_disk_keeps_every_task(tmp_path: Path) -> None:
    c = MasterCluster(tmp_path, size=3)
    try:
        await c.start_all()
        s = stub(c.address(c.ids[1]))
        resp = await s.SubmitTasks(
            api.SubmitTasksRequest(tasks=[shell(f"t{i}") for i in range(50)])
        )
        c.stop_all()
        for node in c.ids:
            c.start(node)
        await c.leader(20)
        listed = await stub(c.address(c.ids[2])).ListTasks(api.ListTasksRequest(page_size=100))
        assert [t.id for t in listed.tasks] == list(resp.task_ids)
    finally:
        c.stop_all()


def test_bad_flags_get_a_precise_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentflow.master.main",
            "--mode",
            "master",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--leader-url: required with --mode master" in proc.stderr
