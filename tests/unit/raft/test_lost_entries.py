"""A node whose log lost entries it had acknowledged (a damaged disk): the leader
repairs it, and it does not vote until it is repaired (see watermark.py)."""

from __future__ import annotations

from agentflow.raft.config import RaftConfig
from agentflow.raft.core import TRANSFER_CONTEXT
from agentflow.raft.testing.harness import Cluster, FixedJitter, drain, msg, new_core
from agentflow.raft.types import MessageType

CONFIG = RaftConfig(heartbeat_ticks=1, election_ticks=10)


def test_leader_repairs_a_follower_that_lost_acknowledged_entries() -> None:
    c = Cluster(CONFIG, rng_factory=lambda node: FixedJitter(int(node) - 1))
    c.add_nodes(3)
    c.campaign("1")
    c.stabilize()
    for i in range(20):
        c.propose("1", b"k%d=v" % i)
    c.stabilize()
    acked = c.core("1").progress["3"].match
    assert acked == c.core("1").log.last_index()
    # Node 3's disk drops its last ten entries (and the hard state's commit with them).
    c.crash("3")
    st = c.nodes["3"].storage
    del st.entries[-10:]
    cut = st.last_index()
    st.hard_state = type(st.hard_state)(st.hard_state.term, st.hard_state.vote, cut)
    c.restart("3")
    c.propose("1", b"after=v")
    for _ in range(5):
        c.tick_heartbeat("1")
        c.stabilize()
    leader = c.core("1")
    assert c.core("3").log.last_index() == leader.log.last_index()
    assert c.core("3").log.committed == leader.log.committed
    assert leader.progress["3"].match == leader.log.last_index()
    assert leader.follower_losses == [("3", acked, cut)]


def test_a_node_below_its_watermark_refuses_votes_and_does_not_campaign() -> None:
    core = new_core("2", ["1", "2", "3"], term=3, log_terms=[1, 2, 3])
    core.catch_up_to = 10  # it had held and known committed entries through 10
    core.step(msg(MessageType.VOTE, "3", "2", 4, index=3, log_term=3))
    core.step(msg(MessageType.PRE_VOTE, "1", "2", 5, index=3, log_term=3))
    assert [(m.type, m.reject) for m in drain(core)] == [
        (MessageType.VOTE_RESP, True),
        (MessageType.PRE_VOTE_RESP, True),
    ]
    for _ in range(40):
        core.tick()
    assert not [m for m in drain(core) if m.type in (MessageType.VOTE, MessageType.PRE_VOTE)]
    # Once a leader has filled its log past the watermark it votes again.
    entries = [type(core.log.entries[0])(4, i) for i in range(4, 11)]
    core.step(msg(MessageType.APPEND, "3", "2", 4, index=3, log_term=3, entries=entries))
    drain(core)
    assert not core.lost_entries()
    vote = msg(MessageType.VOTE, "1", "2", 5, index=10, log_term=4)
    vote.context = TRANSFER_CONTEXT  # past the lease of the leader it just heard
    core.step(vote)
    assert [(m.type, m.reject) for m in drain(core)] == [(MessageType.VOTE_RESP, False)]
