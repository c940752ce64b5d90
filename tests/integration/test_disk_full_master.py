"""A real `agentflow-master` whose data directory fills up while clients submit.

The data directory is a tmpfs of a few megabytes (needs root to mount; skipped
otherwise), filled by a file the test writes and then deletes. The master must stay
up, say so in one log line, report not serving (gRPC health, /ready) while still
answering reads, and carry on by itself once space is freed: every acknowledged
task kept, every unacknowledged one either committed or refused, none twice, and
new submits accepted.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentflow.client import AgentFlowError, AsyncClient, NotFoundError, RetryPolicy
from agentflow.master.testing import MasterCluster
from agentflow.raft.testing.small_fs import SmallFsUnavailable, fill, small_filesystem

pytestmark = pytest.mark.timeout(240)

POLICY = RetryPolicy(deadline=3.0, attempt_timeout=1.5, max_backoff=0.2)
PAYLOAD = "x" * 8000  # a realistic spec: an env value of a few kilobytes


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MasterCluster]:
    cluster = MasterCluster(tmp_path, size=1)
    try:
        with small_filesystem(tmp_path / "m1", 12 * 1024 * 1024):
            try:
                yield cluster
            finally:
                cluster.stop_all()
    except SmallFsUnavailable as exc:
        pytest.skip(f"no small filesystem here: {exc}")


def events(cluster: MasterCluster, name: str) -> list[dict[str, object]]:
    out = []
    for line in cluster.group.log("m1").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == name:
            out.append(record)
    return out


def ready(cluster: MasterCluster) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{cluster.http_ports['m1']}/ready"
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def health(cluster: MasterCluster) -> int:
    async with grpc.aio.insecure_channel(cluster.address("m1")) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
        return int(response.status)


async def submitter(
    client: AsyncClient, name: str, stop: asyncio.Event, acked: set[str], unacked: set[str]
) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        task_id = f"{name}-{n}"
        try:
            await client.submit(
                "shell:true", id=task_id, env={"PAYLOAD": PAYLOAD}, request_id=f"req-{task_id}"
            )
        except AgentFlowError:
            unacked.add(task_id)
            await asyncio.sleep(0.1)
        else:
            acked.add(task_id)


async def wait_for(check: object, what: str, timeout: float = 30.0) -> None:
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_master_survives_a_full_data_dir_and_recovers(cluster: MasterCluster) -> None:
    data_dir = cluster.root / "m1"
    cluster.start("m1")
    await cluster.leader(30.0)
    acked: set[str] = set()
    unacked: set[str] = set()
    async with AsyncClient(cluster.url(), retry=POLICY) as client:
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            for w in range(4):
                tg.create_task(submitter(client, f"w{w}", stop, acked, unacked))
            await wait_for(lambda: asyncio.sleep(0, len(acked) >= 50), "first submits")
            filler = fill(data_dir)

            async def refused() -> bool:
                return bool(events(cluster, "storage.disk_full")) and len(unacked) >= 4

            await wait_for(refused, "the master to hit the full disk", 60.0)
            await asyncio.sleep(3.0)  # several retries and refused submits
            stop.set()

        assert cluster.group.running() == ["m1"], cluster.group.log("m1")[-3000:]
        assert len(events(cluster, "storage.disk_full")) == 1
        line = events(cluster, "storage.disk_full")[0]
        assert line["data_dir"] == str(data_dir)
        assert isinstance(line["free_bytes"], int)
        assert "Traceback" not in cluster.group.log("m1")

        # Not serving, but alive and answering reads.
        status, body = await asyncio.to_thread(ready, cluster)
        assert (status, body["disk_full"]) == (503, True)
        assert await health(cluster) == health_pb2.HealthCheckResponse.NOT_SERVING
        first = sorted(acked)[0]
        assert (await client.get(first)).id == first
        assert (await cluster.status("m1")).leader_id == "m1"

        filler.release()
        await wait_for(
            lambda: asyncio.sleep(0, bool(events(cluster, "storage.disk_recovered"))),
            "storage.disk_recovered",
        )

        async def serving() -> bool:
            return await health(cluster) == health_pb2.HealthCheckResponse.SERVING

        await wait_for(serving, "gRPC health SERVING again")
        status, body = await asyncio.to_thread(ready, cluster)
        assert (status, body["disk_full"]) == (200, False)

        for task_id in sorted(acked):
            assert (await client.get(task_id)).id == task_id
        committed_unacked = 0
        for task_id in sorted(unacked):
            try:
                await client.get(task_id)
                committed_unacked += 1
            except NotFoundError:
                pass
        # Every task once: ids are the client's, and a retried request is deduped.
        listed = [t.id async for t in client.list(page_size=1000)]
        assert len(listed) == len(set(listed)) == len(acked) + committed_unacked
        new_id = await client.submit("shell:true", id="after-recovery")
        assert (await client.get(new_id)).id == "after-recovery"
    assert cluster.group.running() == ["m1"]
