"""`agentflow-worker` processes against real `agentflow-master` processes on 127.0.0.1:
tasks run over the gRPC stream and over the HTTP shim, fallback, cancel, GPU
placement, progress and logs, duplicate ids, drain, results kept across a master crash.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import psutil
import pytest

from agentflow import AsyncClient, TaskState
from agentflow._proto import worker_pb2 as wpb
from agentflow._proto import worker_pb2_grpc
from agentflow.client import RetryPolicy
from agentflow.common.processes import ProcessGroup, free_ports
from agentflow.master.testing import MasterCluster

POLICY = RetryPolicy(deadline=20.0, attempt_timeout=5.0)
TRANSPORTS = ["grpc", "http"]


@dataclass
class Env:
    """Masters, and workers in a process group of their own (MasterCluster looks for
    the leader among every process of its group)."""

    cluster: MasterCluster
    workers: ProcessGroup = field(init=False)

    def __post_init__(self) -> None:
        self.workers = ProcessGroup(self.cluster.root / "workers")

    @property
    def address(self) -> str:
        return self.cluster.address("m1")

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.cluster.http_ports['m1']}"

    def spawn_worker(
        self,
        name: str,
        *args: str,
        transport: str = "grpc",
        master_url: str | None = None,
        http_url: str | None = None,
        group: str = "",
    ) -> str:
        """Start a worker named `name` (also its id unless args give one)."""
        cmd = [
            sys.executable,
            "-m",
            "agentflow.worker.main",
            "--master-url",
            master_url or self.address,
            "--http-url",
            http_url or self.http_url,
            "--transport",
            transport,
            "--reconnect-base",
            "0.1",
            "--reconnect-max",
            "0.5",
            "--connect-timeout",
            "1",
            "--cpu-cores",
            "4",
            "--memory-mb",
            "8192",
            "--python-pool-size",
            "1",
            "--group",
            group or name,
            *args,
        ]
        if "--worker-id" not in args:
            cmd += ["--worker-id", name]
        self.workers.spawn(name, cmd, {"AGENTFLOW_LOG_FORMAT": "json"})
        return name

    def log(self, name: str) -> str:
        return self.workers.log(name)

    def stop_all(self) -> None:
        self.workers.stop_all()
        self.cluster.stop_all()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    env = Env(MasterCluster(tmp_path_factory.mktemp("workers"), size=1))
    env.cluster.start("m1")
    try:
        asyncio.run(env.cluster.leader(30.0))
        yield env
    finally:
        env.stop_all()


@pytest.fixture
async def client(env: Env) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(env.address, retry=POLICY) as c:
        yield c


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def eventually(check: object, timeout: float = 15.0, what: str = "condition") -> None:
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def connected(client: AsyncClient, worker_id: str) -> bool:
    return any(w.id == worker_id and w.connected for w in await client.workers())


def stop(env: Env, name: str) -> None:
    if name in env.workers.running():
        env.workers.kill(name)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tasks_run_progress_and_logs(env: Env, client: AsyncClient, transport: str) -> None:
    group = unique(f"run-{transport}")
    worker = env.spawn_worker(group, transport=transport)
    try:
        shell = await client.submit(
            "shell:echo hello $AGENTFLOW_ATTEMPT; echo oops >&2", group=group
        )
        chatty = await client.submit("python:agentflow.worker.testing_tasks:chatty", group=group)
        failing = await client.submit("shell:exit 3", group=group)
        seen_progress: list[float] = []

        def on_event(event: object) -> None:
            task = getattr(event, "task", None)
            if task is not None and task.progress:
                seen_progress.append(task.progress)

        done = await client.wait(chatty, timeout=30, on_event=on_event)
        shell_task = await client.wait(shell, timeout=30)
        failed = await client.wait(failing, timeout=30)
    finally:
        log = env.log(worker)
        stop(env, worker)
    assert f'"transport": "{transport}"' in log
    assert shell_task.state is TaskState.SUCCEEDED, shell_task
    assert shell_task.worker_id == worker
    assert shell_task.result is not None
    assert shell_task.result.stdout_tail == "hello 1\n"
    assert shell_task.result.stderr_tail == "oops\n"
    assert failed.state is TaskState.FAILED
    assert failed.result is not None and failed.result.exit_code == 3
    assert done.state is TaskState.SUCCEEDED
    assert done.progress == 1.0 and done.progress_message == "step 3"
    assert seen_progress, "watch saw no progress"
    # Live logs on the leader: gRPC and HTTP.
    async with grpc.aio.insecure_channel(env.address) as channel:
        logs = await worker_pb2_grpc.TaskLogServiceStub(channel).GetTaskLogs(
            wpb.GetTaskLogsRequest(task_id=chatty)
        )
    lines = [(line.stream, line.text) for line in logs.lines]
    assert any("out 0" in text for stream, text in lines if stream == "stdout"), lines
    assert any("err 2" in text for stream, text in lines if stream == "stderr"), lines
    assert any("context log line" in text for _, text in lines), lines
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{env.http_url}/api/v1/tasks/{chatty}/logs") as response,
    ):
        body = await response.json()
    assert any("out 1" in line["text"] for line in body["lines"])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cancel_kills_the_running_command(
    env: Env, client: AsyncClient, transport: str
) -> None:
    group = unique(f"cancel-{transport}")
    worker = env.spawn_worker(group, transport=transport)
    try:
        task_id = await client.submit("shell:sleep 600; echo never", group=group)

        async def running() -> bool:
            return (await client.get(task_id)).state is TaskState.RUNNING

        await eventually(running, what="the task to run")
        worker_proc = psutil.Process(env.workers.procs[worker].pid)

        def sleepers() -> list[psutil.Process]:
            return [p for p in worker_proc.children(recursive=True) if _cmd(p) == ["sleep", "600"]]

        await eventually(lambda: sleepers(), what="sleep 600 to start")
        await client.cancel(task_id, reason="test")
        await eventually(lambda: not sleepers(), timeout=10, what="sleep 600 to be killed")
        task = await client.get(task_id)
        assert task.state is TaskState.CANCELLED
        assert worker in env.workers.running()  # the worker itself lives on
    finally:
        stop(env, worker)


def _cmd(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


async def test_grpc_unreachable_falls_back_to_http(env: Env, client: AsyncClient) -> None:
    group = unique("fallback")
    (dead_port,) = free_ports(1)
    worker = env.spawn_worker(group, transport="auto", master_url=f"127.0.0.1:{dead_port}")
    try:
        task_id = await client.submit("shell:echo via shim", group=group)
        task = await client.wait(task_id, timeout=30)
        assert task.state is TaskState.SUCCEEDED
        assert task.worker_id == worker
    finally:
        log = env.log(worker)
        stop(env, worker)
    assert '"transport": "http"' in log
    assert "worker.connect_failed" in log  # it did try gRPC first


async def test_gpu_task_goes_only_to_the_gpu_worker(env: Env, client: AsyncClient) -> None:
    group = unique("gpu")
    cpu_worker = env.spawn_worker(f"{group}-cpu", group=group)
    gpu_worker = env.spawn_worker(f"{group}-gpu", "--gpu-count", "1", group=group)
    try:
        await eventually(lambda: connected(client, cpu_worker), what="cpu worker")
        await eventually(lambda: connected(client, gpu_worker), what="gpu worker")
        gpu_tasks = [
            await client.submit("shell:echo gpu=$CUDA_VISIBLE_DEVICES", group=group, gpus=1)
            for _ in range(3)
        ]
        for task_id in gpu_tasks:
            task = await client.wait(task_id, timeout=30)
            assert task.state is TaskState.SUCCEEDED
            assert task.worker_id == gpu_worker
            assert task.gpu_indices == (0,)
            assert task.result is not None and task.result.stdout_tail == "gpu=0\n"
    finally:
        stop(env, cpu_worker)
        stop(env, gpu_worker)


async def test_second_worker_with_the_same_id_is_refused(env: Env, client: AsyncClient) -> None:
    wid = unique("dup")
    first = env.spawn_worker(f"{wid}-a", "--worker-id", wid, group=wid)
    second = ""
    try:
        await eventually(lambda: connected(client, wid), what="the first worker")
        second = env.spawn_worker(f"{wid}-b", "--worker-id", wid, group=wid, transport="http")
        await eventually(
            lambda: "already connected" in env.log(second), what="the refusal in the log"
        )
        refusal = next(
            json.loads(line) for line in env.log(second).splitlines() if '"worker.refused"' in line
        )
        assert refusal["code"] == "DUPLICATE_WORKER"
        assert f"worker id '{wid}' is already connected" in refusal["reason"]
        assert "--worker-id" in refusal["reason"]
        # The first one still serves.
        task = await client.wait(await client.submit("shell:true", group=wid), timeout=30)
        assert task.worker_id == wid
        assert "worker.connected" not in env.log(second)
    finally:
        stop(env, first)
        if second:
            stop(env, second)


async def test_sigterm_drains_then_exits(env: Env, client: AsyncClient) -> None:
    group = unique("drain")
    worker = env.spawn_worker(group)
    task_id = await client.submit("shell:sleep 1; echo finished", group=group)

    async def running() -> bool:
        return (await client.get(task_id)).state is TaskState.RUNNING

    await eventually(running, what="the task to run")
    proc = env.workers.procs[worker]
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 20) == 0
    env.workers.procs.pop(worker)
    task = await client.get(task_id)
    assert task.state is TaskState.SUCCEEDED  # finished and reported before exiting
    (status,) = [w for w in await client.workers() if w.id == worker]
    assert status.state.name == "OFFLINE"


async def test_result_resent_after_master_crash_is_committed_once(tmp_path: Path) -> None:
    """The master commits a result and dies before acknowledging it; the worker keeps
    the result, says hello to the restarted master with it, and it is refused as
    stale (already committed): the task has one result, from attempt 1."""
    cluster = MasterCluster(tmp_path, size=1)
    env = Env(cluster)
    cluster.start("m1", env={"AGENTFLOW_FAILPOINTS": "master.worker_result.after_commit=crash@1"})
    try:
        await cluster.leader(30.0)
        worker = env.spawn_worker("w-crash")
        async with AsyncClient(env.address, retry=POLICY) as client:
            task_id = await client.submit("shell:echo once", group="w-crash")
            await eventually(lambda: "m1" in cluster.group.exited(), what="the master to crash")
            cluster.group.reap("m1")
            cluster.start("m1")
            task = await client.wait(task_id, timeout=30)
            assert task.state is TaskState.SUCCEEDED
            assert task.attempt == 1
            assert task.result is not None and task.result.stdout_tail == "once\n"
            await eventually(lambda: "worker.result_stale" in env.log(worker), what="stale ack")
            assert "worker_session.stale_result" in cluster.group.log("m1")
    finally:
        env.stop_all()


async def test_follower_redirects_grpc_and_relays_the_shim(tmp_path: Path) -> None:
    cluster = MasterCluster(tmp_path, size=3)
    env = Env(cluster)
    await cluster.start_all()
    try:
        leader = await cluster.leader()
        follower = next(n for n in cluster.ids if n != leader)
        follower_http = f"http://127.0.0.1:{cluster.http_ports[follower]}"
        grpc_worker = env.spawn_worker(
            "w-redirect", master_url=cluster.address(follower), group="three"
        )
        http_worker = env.spawn_worker(
            "w-relay", transport="http", http_url=follower_http, group="three"
        )
        async with AsyncClient(cluster.url(), retry=POLICY) as client:
            await eventually(lambda: connected(client, grpc_worker), what="gRPC worker")
            await eventually(lambda: connected(client, http_worker), what="shim worker")
            ids = [await client.submit("shell:echo ok", group="three") for _ in range(6)]
            tasks = [await client.wait(i, timeout=30) for i in ids]
            assert all(t.state is TaskState.SUCCEEDED for t in tasks)
            assert {t.worker_id for t in tasks} == {grpc_worker, http_worker}
            # The leader dies with work in flight: both workers find the new one
            # (through the follower they know) and everything still finishes.
            slow = [await client.submit("shell:sleep 0.5", group="three") for _ in range(4)]
            cluster.kill(leader)
            await cluster.leader(30.0)
            more = [await client.submit("shell:echo after", group="three") for _ in range(4)]
            after = [await client.wait(i, timeout=45) for i in [*slow, *more]]
        assert all(t.state is TaskState.SUCCEEDED for t in after), after
        assert "worker.redirected" in env.log(grpc_worker)
        assert f'"master": "{follower_http}"' in env.log(http_worker)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{follower_http}/api/v1/workers", params={"group": "three"}) as response,
        ):
            listed = await response.json()
        assert sorted(w["worker"]["info"]["id"] for w in listed["workers"]) == [
            "w-redirect",
            "w-relay",
        ]
    finally:
        env.stop_all()


def test_worker_cli_rejects_bad_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentflow.worker.main", "--cpu-cores", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=dict(os.environ, MASTER_URL="127.0.0.1:1"),
    )
    assert result.returncode == 2
    assert "--cpu-cores must be > 0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


async def test_task_over_its_memory_limit_fails_clearly(env: Env, client: AsyncClient) -> None:
    group = unique("memory")
    worker = env.spawn_worker(group)
    try:
        task_id = await client.submit(
            "python:agentflow.worker.testing_tasks:allocate",
            args=[1024],
            memory_mb=256,
            group=group,
        )
        task = await client.wait(task_id, timeout=30)
    finally:
        stop(env, worker)
    assert task.state is TaskState.FAILED
    assert task.result is not None
    assert "memory" in task.result.error.lower(), task.result.error
    assert "256" in task.result.error, task.result.error
