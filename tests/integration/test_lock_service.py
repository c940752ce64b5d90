"""LockService on a real master process: grants fenced by the Raft index, FIFO
waiters woken by a release, waits that run out naming the holder, leases ended by
the leader, renewals, bad input refused naming the field."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agentflow._proto import coord_pb2 as api
from agentflow._proto import coord_pb2_grpc
from agentflow.master.testing import MasterCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterCluster]:
    c = MasterCluster(Path(tmp_path_factory.mktemp("locks")), size=1)
    c.start("m1")
    try:
        asyncio.run(c.leader(30.0))
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope="module")
def master(cluster: MasterCluster) -> str:
    return cluster.address("m1")


def get_json(cluster: MasterCluster, path: str) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{cluster.http_ports['m1']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5.0) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def call(
    stub: coord_pb2_grpc.LockServiceStub, req: api.AcquireLockRequest
) -> api.AcquireLockResponse:
    return await stub.Acquire(req)


async def stub_for(master: str) -> tuple[grpc.aio.Channel, coord_pb2_grpc.LockServiceStub]:
    channel = grpc.aio.insecure_channel(master)
    return channel, coord_pb2_grpc.LockServiceStub(channel)


def test_acquire_wait_release_hands_over_in_fifo_order_with_growing_tokens(master: str) -> None:
    async def main() -> None:
        channel, stub = await stub_for(master)
        async with channel:
            first = await stub.Acquire(
                api.AcquireLockRequest(name="fifo", owner="a", ttl_ms=30_000)
            )
            assert first.lock.owner == "a" and first.lock.token == first.index > 0
            with pytest.raises(grpc.aio.AioRpcError) as held:
                await stub.Acquire(api.AcquireLockRequest(name="fifo", owner="x", ttl_ms=1_000))
            assert held.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "held by 'a'" in (held.value.details() or "")
            assert dict(held.value.trailing_metadata() or ())["lock-holder"] == "a"
            b = asyncio.create_task(
                call(
                    stub,
                    api.AcquireLockRequest(name="fifo", owner="b", ttl_ms=30_000, wait_ms=20_000),
                )
            )
            await asyncio.sleep(0.3)
            c = asyncio.create_task(
                call(
                    stub,
                    api.AcquireLockRequest(name="fifo", owner="c", ttl_ms=30_000, wait_ms=20_000),
                )
            )
            await asyncio.sleep(0.3)
            info = await stub.Get(api.GetLockRequest(name="fifo"))
            assert (info.owner, list(info.waiters)) == ("a", ["b", "c"])
            released = await stub.Release(
                api.ReleaseLockRequest(name="fifo", owner="a", token=first.lock.token)
            )
            assert released.granted_to == "b"
            got_b = await asyncio.wait_for(b, 10)
            assert got_b.lock.owner == "b" and got_b.lock.token > first.lock.token
            assert not c.done()
            await stub.Release(
                api.ReleaseLockRequest(name="fifo", owner="b", token=got_b.lock.token)
            )
            got_c = await asyncio.wait_for(c, 10)
            assert got_c.lock.token > got_b.lock.token
            await stub.Release(
                api.ReleaseLockRequest(name="fifo", owner="c", token=got_c.lock.token)
            )
            assert (await stub.Get(api.GetLockRequest(name="fifo"))).owner == ""

    run(main())


def test_a_wait_that_runs_out_names_the_holder_and_leaves_the_queue(master: str) -> None:
    async def main() -> None:
        channel, stub = await stub_for(master)
        async with channel:
            await stub.Acquire(api.AcquireLockRequest(name="busy", owner="holder", ttl_ms=30_000))
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as out:
                await stub.Acquire(
                    api.AcquireLockRequest(name="busy", owner="w", ttl_ms=1_000, wait_ms=500)
                )
            assert 0.4 < time.monotonic() - started < 5
            assert out.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert (out.value.details() or "").startswith("wait_ms: ")
            meta = dict(out.value.trailing_metadata() or ())
            assert meta["lock-holder"] == "holder"
            info = await stub.Get(api.GetLockRequest(name="busy"))
            assert list(info.waiters) == []

    run(main())


def test_a_lease_not_renewed_is_ended_by_the_leader_and_renewal_keeps_it(master: str) -> None:
    async def main() -> None:
        channel, stub = await stub_for(master)
        async with channel:
            kept = await stub.Acquire(api.AcquireLockRequest(name="kept", owner="k", ttl_ms=600))
            lost = await stub.Acquire(api.AcquireLockRequest(name="lost", owner="l", ttl_ms=600))
            for _ in range(4):
                await asyncio.sleep(0.3)
                renewed = await stub.Renew(
                    api.RenewLockRequest(name="kept", owner="k", token=kept.lock.token, ttl_ms=600)
                )
                assert renewed.lock.token == kept.lock.token
            assert (await stub.Get(api.GetLockRequest(name="kept"))).owner == "k"
            assert (await stub.Get(api.GetLockRequest(name="lost"))).owner == ""
            with pytest.raises(grpc.aio.AioRpcError) as stale:
                await stub.Renew(
                    api.RenewLockRequest(name="lost", owner="l", token=lost.lock.token, ttl_ms=600)
                )
            assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            again = await stub.Acquire(api.AcquireLockRequest(name="lost", owner="m", ttl_ms=600))
            assert again.lock.token > lost.lock.token
            listed = await stub.List(api.ListLocksRequest(prefix="k"))
            assert [k.name for k in listed.locks] == ["kept"]

    run(main())


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (api.AcquireLockRequest(name="", owner="o", ttl_ms=1_000), "name"),
        (api.AcquireLockRequest(name="n", owner="", ttl_ms=1_000), "owner"),
        (api.AcquireLockRequest(name="n", owner="o", ttl_ms=5), "ttl_ms"),
        (api.AcquireLockRequest(name="n", owner="o", ttl_ms=1_000, wait_ms=-1), "wait_ms"),
        (
            api.AcquireLockRequest(name="n", owner="o", ttl_ms=1_000, request_id="bad id\n"),
            "request_id",
        ),
    ],
)
def test_bad_acquires_are_refused_naming_the_field_and_change_nothing(
    master: str, request_: api.AcquireLockRequest, field: str
) -> None:
    async def main() -> None:
        channel, stub = await stub_for(master)
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.Acquire(request_)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (bad.value.details() or "").startswith(f"{field}: ")
            assert (await stub.Get(api.GetLockRequest(name="n"))).owner == ""

    run(main())


def test_rest_lists_and_inspects_locks(cluster: MasterCluster, master: str) -> None:
    async def main() -> api.AcquireLockResponse:
        channel, stub = await stub_for(master)
        async with channel:
            return await stub.Acquire(
                api.AcquireLockRequest(name="rest/a b", owner="r", ttl_ms=30_000)
            )

    got = run(main())
    status, body = get_json(cluster, "/api/v1/locks/rest%2Fa%20b")
    assert status == 200
    assert (body["name"], body["owner"], body["token"]) == ("rest/a b", "r", got.lock.token)
    assert body["expires_at_ms"] == got.lock.expires_at_ms
    status, body = get_json(cluster, "/api/v1/locks?prefix=rest/")
    assert status == 200 and [k["name"] for k in body["locks"]] == ["rest/a b"]  # type: ignore[index, union-attr]
    status, body = get_json(cluster, "/api/v1/locks/free-one")
    assert (status, body["owner"]) == (200, "")
    status, body = get_json(cluster, "/api/v1/locks/" + "x" * 300)
    assert (status, body["field"]) == (400, "name")
