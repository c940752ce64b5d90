"""The leader's record of when it last heard from each follower, in its own ticks:
what `cluster status` shows as last contact and reachability."""

from __future__ import annotations

from agentflow.raft.config import RaftConfig
from agentflow.raft.testing.harness import FixedJitter, drain, msg, new_core
from agentflow.raft.types import MessageType, Role

CONFIG = RaftConfig(heartbeat_ticks=1, election_ticks=10)


def test_idle_ticks_count_from_the_last_reply_or_the_election() -> None:
    core = new_core("1", ("1", "2", "3"), config=CONFIG, rng=FixedJitter(0))
    core.campaign(pre_vote=False)
    drain(core)
    core.step(msg(MessageType.VOTE_RESP, "2", "1", core.term))
    assert core.role is Role.LEADER
    drain(core)
    two, three = core.progress["2"], core.progress["3"]
    assert (two.heard, two.idle_ticks, three.heard, three.idle_ticks) == (False, 0, False, 0)

    core.step(msg(MessageType.APPEND_RESP, "2", "1", core.term, index=core.log.last_index()))
    for _ in range(4):
        core.tick()
        drain(core)
    assert (two.heard, two.idle_ticks) == (True, 4)
    assert (three.heard, three.idle_ticks) == (False, 4)  # silent since the election

    core.step(msg(MessageType.HEARTBEAT_RESP, "2", "1", core.term))
    core.tick()
    drain(core)
    assert (two.idle_ticks, three.idle_ticks) == (1, 5)
    assert core.progress["1"].idle_ticks == 0  # the leader does not time itself
