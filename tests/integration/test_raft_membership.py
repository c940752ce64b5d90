"""Membership changes and graceful leadership transfer between real processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agentflow._proto import kv_pb2
from agentflow.raft.testing.cluster import KvCluster
from agentflow.raft.testing.kvclient import KvClient

pytestmark = pytest.mark.timeout(180)


async def test_node_joins_as_learner_is_promoted_and_later_removed(tmp_path: Path) -> None:
    cluster = KvCluster(tmp_path, size=4, founders=3)
    cluster.start_all()
    client = KvClient(cluster.addresses()[:3])
    try:
        leader = await cluster.leader(client, timeout=20.0)
        for i in range(50):
            await client.put(f"before-{i}", b"x")
        cluster.start("n4", bootstrap=False)
        stub = client.stub(cluster.address(leader))
        await stub.AddMember(
            kv_pb2.KvMemberRequest(node_id="n4", address=cluster.address("n4")), timeout=30.0
        )
        status = await client.status(cluster.address(leader))
        assert list(status.voters) == ["n1", "n2", "n3", "n4"]
        assert list(status.learners) == []
        await client.put("after", b"y")
        # The new member reads what was written before it existed, linearizably.
        assert await client.get(cluster.address("n4"), "before-0") == b"x"
        assert await client.get(cluster.address("n4"), "after") == b"y"

        await stub.RemoveMember(kv_pb2.KvMemberRequest(node_id="n4"), timeout=30.0)
        status = await client.status(cluster.address(leader))
        assert list(status.voters) == ["n1", "n2", "n3"]
        # Adding an existing member again is a no-op (a retried join); under another
        # address it is refused with the field named.
        await stub.AddMember(
            kv_pb2.KvMemberRequest(node_id="n1", address=cluster.address("n1")), timeout=5
        )
        with pytest.raises(Exception, match="node_id: 'n1' is already a member at"):
            await stub.AddMember(
                kv_pb2.KvMemberRequest(node_id="n1", address="127.0.0.1:1"), timeout=5
            )
    finally:
        await client.close()
        cluster.stop_all()


async def test_sigterm_on_leader_transfers_leadership_without_election_timeout(
    tmp_path: Path,
) -> None:
    cluster = KvCluster(tmp_path, size=3)
    cluster.start_all()
    client = KvClient(cluster.addresses())
    try:
        leader = await cluster.leader(client, timeout=20.0)
        await client.put("k", b"v")
        term = (await client.status(cluster.address(leader))).term
        started = time.monotonic()
        cluster.terminate(leader)
        new_leader = await cluster.leader(client, timeout=10.0)
        elapsed = time.monotonic() - started
        assert new_leader != leader
        log = (tmp_path / f"{leader}.log").read_text()
        # A transfer, not an election after the old leader went silent.
        assert "raft.stepped_down" in log, log[-2000:]
        assert elapsed < 5.0, f"leadership moved only after {elapsed:.2f} s"
        status = await client.status(cluster.address(new_leader))
        assert status.term == term + 1, "one transfer, no extra elections"
        assert await client.get(cluster.address(new_leader), "k") == b"v"
        await asyncio.wait_for(client.put("k2", b"v2"), 10.0)
    finally:
        await client.close()
        cluster.stop_all()
