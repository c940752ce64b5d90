"""A follower that missed more entry bytes than one gRPC message may carry must still
catch up: the leader sends what it is missing in messages bounded in bytes, not only in
entries (1,024 entries of a few MiB each would exceed the transport's 64 MiB cap, the
receiver would refuse every batch, and the follower would never catch up)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentflow.raft.testing.cluster import KvCluster
from agentflow.raft.testing.kvclient import KvClient

pytestmark = pytest.mark.timeout(240)

VALUE = b"v" * (3 << 20)  # 3 MiB: 30 of them are 90 MiB, over the 64 MiB message cap
COUNT = 30


async def test_follower_catches_up_over_entries_bigger_than_one_message(tmp_path: Path) -> None:
    cluster = KvCluster(tmp_path, size=3)
    cluster.start_all()
    client = KvClient(cluster.addresses(), call_timeout=30.0)
    try:
        leader = await cluster.leader(client, timeout=20.0)
        follower = next(n for n in cluster.ids if n != leader)
        cluster.kill(follower)
        for i in range(COUNT):
            await client.put(f"big{i}", VALUE, deadline=60.0)
        target = (await client.status(cluster.address(leader))).commit_index
        cluster.start(follower)
        st = await client.wait_applied(cluster.address(follower), target, timeout=90)
        assert st is not None and st.applied_index >= target, (
            f"{follower} stuck at {st and st.applied_index}, leader committed {target}"
        )
        got = await client.get(cluster.address(follower), f"big{COUNT - 1}", linearizable=False)
        assert got == VALUE
    finally:
        await client.close()
        cluster.stop_all()
