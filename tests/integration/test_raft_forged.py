"""Forged and out-of-range Raft messages sent over real gRPC to a real 3-process
cluster are refused at the edge: the cluster keeps its leader, keeps committing,
and restarts cleanly (nothing out of range was persisted)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from agentflow._proto import raft_pb2 as pb
from agentflow._proto import raft_pb2_grpc
from agentflow.raft.testing.cluster import KvCluster
from agentflow.raft.testing.kvclient import KvClient
from agentflow.raft.transport import META_ADDRESS, META_FROM

pytestmark = pytest.mark.timeout(180)

HUGE = (1 << 64) - 1


def _msg(mtype: int, to: str, frm: str, **fields: object) -> pb.Message:
    m = pb.Message(type=mtype, to=to, **fields)  # type: ignore[arg-type]
    setattr(m, "from", frm)
    return m


async def _forge(address: str, to: str, term: int, last: int) -> None:
    """A heartbeat with term 2**64-1 on the Vote call (as first reported), a vote
    request with that term, and an append from a node that is no member: each
    from the non-member 'intruder', and once claiming to be a member on a
    connection that declares the intruder."""
    async with grpc.aio.insecure_channel(address) as ch:
        stub = raft_pb2_grpc.RaftServiceStub(ch)
        md = ((META_FROM, "intruder"), (META_ADDRESS, "127.0.0.1:1"))
        await stub.Vote(_msg(pb.MSG_HEARTBEAT, to, "intruder", term=HUGE), metadata=md)
        await stub.Vote(_msg(pb.MSG_PRE_VOTE, to, "intruder", term=HUGE, index=HUGE), metadata=md)
        await stub.Vote(_msg(pb.MSG_VOTE, to, "n1", term=term + 5, index=HUGE), metadata=md)
        entries = [pb.Entry(term=term + 1, index=last + 1, data=b"forged")]
        append = _msg(
            pb.MSG_APPEND,
            to,
            "intruder",
            term=term + 1,
            index=last,
            log_term=term,
            entries=entries,
            commit=last + 1,
        )
        impostor = _msg(
            pb.MSG_APPEND,
            to,
            "n1",
            term=term + 1,
            index=last,
            log_term=term,
            entries=entries,
            commit=last + 1,
        )
        call = stub.Append(metadata=md)
        await call.write(pb.MessageBatch(messages=[append, impostor]))
        await call.done_writing()
        await call


async def test_forged_messages_leave_the_cluster_leading_and_committing(tmp_path: Path) -> None:
    cluster = KvCluster(tmp_path, size=3)
    cluster.start_all()
    client = KvClient(cluster.addresses(), call_timeout=2.0)
    try:
        leader = await cluster.leader(client, timeout=20.0)
        for i in range(20):
            await client.put(f"a{i}", b"x")
        before = await client.status(cluster.address(leader))
        for node in cluster.ids:
            st = await client.status(cluster.address(node))
            await _forge(cluster.address(node), node, st.term, st.commit_index)
        await asyncio.sleep(1.0)  # several heartbeats and an election timeout
        for i in range(20):
            await client.put(f"b{i}", b"y")
        after = await client.status(cluster.address(leader))
        assert after.term == before.term, (before, after)
        assert await cluster.leader(client) == leader
        assert after.commit_index >= before.commit_index + 20
        for node in cluster.ids:
            st = await client.status(cluster.address(node))
            assert st.term == before.term, f"{node} moved to term {st.term}"
            assert await client.get(cluster.address(node), "b19") == b"y"
        logs = "".join((tmp_path / f"{n}.log").read_text(errors="replace") for n in cluster.ids)
        for reason in ("out_of_range", "sender_mismatch", "non_member"):
            assert f'"reason": "{reason}"' in logs, f"no refusal logged as {reason}"
        cluster.stop_all()
        cluster.start_all()
        await cluster.leader(client, timeout=20.0)
        await client.put("c", b"z")
        for node in cluster.ids:
            assert await client.get(cluster.address(node), "a0") == b"x"
            st = await client.status(cluster.address(node))
            assert st.term < 1 << 62, f"{node} persisted term {st.term}"
    finally:
        await client.close()
        cluster.stop_all()
