"""Locks keep their promise while the leader dies: clients contend for one lock on 3
real masters while the leader is kill -9'd and restarted, each holder writes to a
resource that refuses stale fencing tokens, and the recorded history shows no two
leases held at once and tokens that only grew.

Each holder counts its lease from when it first sent the request that got it (a
lease starts at its grant, later than that), and stops writing a margin before that
end: what a correct client of the lock does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from pathlib import Path

import grpc

from agentflow._proto import coord_pb2 as api
from agentflow._proto import coord_pb2_grpc
from agentflow.master.testing import MasterCluster
from agentflow.testing.locks import Acquired, Event, Lost, Released, Write, check_lock_history

LOCK = "contended"
TTL_MS = 1_500
WAIT_MS = 2_000
MARGIN_MS = 200
RETRY = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}


def now_ms() -> float:
    return time.monotonic() * 1000


class Resource:
    """Accepts a write only with a token at least the highest it accepted."""

    def __init__(self, events: list[Event]) -> None:
        self.highest = 0
        self.refused = 0
        self.events = events

    def write(self, owner: str, token: int) -> bool:
        if token < self.highest:
            self.refused += 1
            return False
        self.highest = token
        self.events.append(Write(owner, token, now_ms(), LOCK))
        return True


class FailoverStubs:
    """One LockService stub per master; a call that the cluster did not answer is
    sent again (same request id) to the next master."""

    def __init__(self, addresses: list[str]) -> None:
        self.channels = [grpc.aio.insecure_channel(a) for a in addresses]
        self.stubs = [coord_pb2_grpc.LockServiceStub(c) for c in self.channels]
        self.turn = itertools.cycle(range(len(self.stubs)))
        self.current = next(self.turn)

    async def call(self, method: str, request: object, timeout: float, until: float) -> object:
        while True:
            try:
                return await getattr(self.stubs[self.current], method)(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRY or now_ms() > until:
                    raise
                self.current = next(self.turn)
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        for c in self.channels:
            await c.close()


async def contend(
    name: str, addresses: list[str], resource: Resource, events: list[Event], stop: asyncio.Event
) -> int:
    stubs = FailoverStubs(addresses)
    held = 0
    try:
        while not stop.is_set():
            sent = now_ms()
            request = api.AcquireLockRequest(
                name=LOCK, owner=name, ttl_ms=TTL_MS, wait_ms=WAIT_MS, request_id=uuid.uuid4().hex
            )
            try:
                got = await stubs.call("Acquire", request, WAIT_MS / 1000 + 3, sent + 8_000)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, *RETRY), exc
                continue
            assert isinstance(got, api.AcquireLockResponse)
            token = got.lock.token
            events.append(Acquired(name, token, now_ms(), LOCK))
            held += 1
            end = sent + TTL_MS - MARGIN_MS
            for _ in range(3):
                if now_ms() >= end:
                    break
                resource.write(name, token)
                await asyncio.sleep(0.05)
            if now_ms() >= end:
                events.append(Lost(name, token, end, LOCK))
                continue
            events.append(Released(name, token, now_ms(), LOCK))
            release = api.ReleaseLockRequest(
                name=LOCK, owner=name, token=token, request_id=uuid.uuid4().hex
            )
            # When this fails, the lease ends by itself; the holder has stopped already.
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stubs.call("Release", release, 2.0, sent + TTL_MS)
    finally:
        await stubs.close()
    return held


async def nemesis(cluster: MasterCluster, rounds: int) -> list[str]:
    killed = []
    for _ in range(rounds):
        await asyncio.sleep(2.0)
        leader = await cluster.leader(20.0)
        cluster.kill(leader)
        killed.append(leader)
        await asyncio.sleep(1.0)
        cluster.start(leader)
    await cluster.leader(20.0)
    await asyncio.sleep(2.0)
    return killed


def test_no_two_holders_overlap_and_tokens_grow_while_the_leader_is_killed(
    tmp_path: Path,
) -> None:
    cluster = MasterCluster(tmp_path, size=3)
    events: list[Event] = []
    resource = Resource(events)

    async def main() -> tuple[list[int], list[str]]:
        await cluster.start_all()
        stop = asyncio.Event()
        clients = [
            asyncio.create_task(contend(f"c{i}", cluster.addresses(), resource, events, stop))
            for i in range(4)
        ]
        killed = await nemesis(cluster, 3)
        stop.set()
        return list(await asyncio.gather(*clients)), killed

    try:
        held, killed = asyncio.run(main())
    finally:
        cluster.stop_all()
    assert len(killed) == 3
    assert check_lock_history(events) == []
    assert sum(held) >= 10, held  # the lock kept changing hands through the kills
    assert sum(1 for h in held if h) >= 3, held
    tokens = [e.token for e in events if isinstance(e, Acquired)]
    assert tokens == sorted(tokens)
