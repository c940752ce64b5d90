"""Unit tests for what the Raft paper leaves to the thesis: PreVote (§9.6),
CheckQuorum (§6.2), leadership transfer (§3.10), ReadIndex (§6.4), single-server
membership changes (§4) and InstallSnapshot (§5 of the thesis, §7 of the paper)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from agentflow.raft.config import RaftConfig
from agentflow.raft.core import TRANSFER_CONTEXT, RaftCore
from agentflow.raft.progress import ProgressState
from agentflow.raft.readindex import ReadIndexQueue
from agentflow.raft.testing.harness import Cluster, FixedJitter, HarnessError, drain, msg, new_core
from agentflow.raft.types import (
    NONE,
    ConfChange,
    ConfChangeError,
    ConfChangeType,
    ConfState,
    Entry,
    Message,
    MessageType,
    NodeId,
    NotLeaderError,
    ProposalDroppedError,
    ReadState,
    Role,
    Snapshot,
    SnapshotMeta,
)

ET = 10
PRE_VOTE = RaftConfig(heartbeat_ticks=1, election_ticks=ET, pre_vote=True, check_quorum=False)
CHECK_QUORUM = RaftConfig(heartbeat_ticks=1, election_ticks=ET, pre_vote=False, check_quorum=True)
BOTH = RaftConfig(heartbeat_ticks=1, election_ticks=ET)
PLAIN = RaftConfig(heartbeat_ticks=1, election_ticks=ET, pre_vote=False, check_quorum=False)
PEERS3 = ("1", "2", "3")


def make(
    node: NodeId = "1",
    voters: Iterable[NodeId] = PEERS3,
    *,
    learners: Iterable[NodeId] = (),
    term: int = 0,
    vote: NodeId = NONE,
    commit: int = 0,
    log_terms: Iterable[int] = (),
    config: RaftConfig = BOTH,
    jitter: int = 0,
) -> RaftCore:
    return new_core(
        node,
        tuple(voters),
        learners=tuple(learners),
        term=term,
        vote=vote,
        commit=commit,
        log_terms=tuple(log_terms),
        config=config,
        rng=FixedJitter(jitter),
    )


def kinds(msgs: list[Message]) -> list[tuple[MessageType, NodeId]]:
    return sorted((m.type, m.to) for m in msgs)


def elect(core: RaftCore) -> None:
    core.campaign(pre_vote=False)
    drain(core)
    for peer in core.conf.voters:
        if peer != core.id and core.role is not Role.LEADER:
            core.step(msg(MessageType.VOTE_RESP, peer, core.id, core.term))
    assert core.role is Role.LEADER
    drain(core)


def ack_all(core: RaftCore) -> None:
    """Every follower acknowledges the leader's whole log."""
    for peer in list(core.progress):
        if peer != core.id:
            core.step(
                msg(MessageType.APPEND_RESP, peer, core.id, core.term, index=core.log.last_index())
            )
    drain(core)


def ticks(core: RaftCore, n: int) -> None:
    for _ in range(n):
        core.tick()


def cluster(n: int = 3, config: RaftConfig = BOTH) -> Cluster:
    """A bootstrapped cluster of `n` with node 1 elected and everything stable."""
    c = Cluster(config, rng_factory=lambda node: FixedJitter(int(node) - 1))
    c.add_nodes(n)
    c.campaign("1")
    c.stabilize()
    assert c.leader() == "1"
    return c


# -- PreVote -------------------------------------------------------------------------


def test_pre_vote_does_not_change_terms() -> None:
    """A pre-candidate asks for votes for term+1 without adopting it; voters grant
    the pre-vote without changing their term or recording a vote."""
    core = make(term=1, config=PRE_VOTE)
    ticks(core, ET)
    assert (core.role, core.term, core.vote) == (Role.PRE_CANDIDATE, 1, NONE)
    out = drain(core)
    assert {(m.type, m.term) for m in out} == {(MessageType.PRE_VOTE, 2)}

    voter = make("2", term=1, config=PRE_VOTE)
    voter.step(out[0])
    reply = drain(voter)
    assert [(m.type, m.term, m.reject) for m in reply] == [(MessageType.PRE_VOTE_RESP, 2, False)]
    assert (voter.term, voter.vote) == (1, NONE)


def test_pre_vote_then_vote() -> None:
    """A quorum of granted pre-votes starts the real election at term+1."""
    core = make(term=1, config=PRE_VOTE)
    ticks(core, ET)
    drain(core)
    core.step(msg(MessageType.PRE_VOTE_RESP, "2", "1", 2))
    assert (core.role, core.term, core.vote) == (Role.CANDIDATE, 2, "1")
    assert {(m.type, m.term) for m in drain(core)} == {(MessageType.VOTE, 2)}


def test_pre_vote_refused_to_stale_log() -> None:
    """A pre-vote follows the same up-to-date rule as a vote (§5.4.1)."""
    voter = make("2", term=2, log_terms=[1, 2], config=PRE_VOTE)
    voter.step(msg(MessageType.PRE_VOTE, "1", "2", 3, index=5, log_term=1))
    assert [(m.type, m.reject, m.term) for m in drain(voter)] == [
        (MessageType.PRE_VOTE_RESP, True, 2)
    ]


def test_pre_candidate_loses_on_quorum_of_rejections() -> None:
    core = make(term=1, config=PRE_VOTE)
    ticks(core, ET)
    drain(core)
    core.step(msg(MessageType.PRE_VOTE_RESP, "2", "1", 1, reject=True))
    assert core.role is Role.PRE_CANDIDATE
    core.step(msg(MessageType.PRE_VOTE_RESP, "3", "1", 1, reject=True))
    assert (core.role, core.term) == (Role.FOLLOWER, 1)


def test_pre_candidate_rejection_with_higher_term_updates_term() -> None:
    core = make(term=1, config=PRE_VOTE)
    ticks(core, ET)
    drain(core)
    core.step(msg(MessageType.PRE_VOTE_RESP, "2", "1", 5, reject=True))
    assert (core.role, core.term) == (Role.FOLLOWER, 5)


def test_pre_candidate_follows_leader_of_current_term() -> None:
    """A pre-candidate that hears from a leader of its own term goes back to follower."""
    core = make(term=1, config=PRE_VOTE)
    ticks(core, ET)
    core.step(msg(MessageType.HEARTBEAT, "2", "1", 1))
    assert (core.role, core.term, core.lead) == (Role.FOLLOWER, 1, "2")


def test_single_voter_with_pre_vote_becomes_leader_at_once() -> None:
    core = make(voters=("1",), config=PRE_VOTE)
    ticks(core, ET)
    assert (core.role, core.term) == (Role.LEADER, 1)


def test_pre_vote_partitioned_node_does_not_disrupt_leader() -> None:
    """Thesis §9.6: a node isolated for many election timeouts keeps its term, and
    on rejoining the leader keeps leading (compare without PreVote below)."""
    for pre_vote, disrupted in ((True, False), (False, True)):
        cfg = RaftConfig(heartbeat_ticks=1, election_ticks=ET, pre_vote=pre_vote)
        c = cluster(3, cfg)
        c.isolate("3")
        c.propose("1", b"x")
        c.stabilize()
        for _ in range(5):
            c.tick_election("3")
            c.stabilize()
        assert (c.core("3").term > 2) is disrupted
        c.heal()
        c.tick_heartbeat("1")
        c.stabilize()
        assert (c.core("1").role is Role.LEADER) is not disrupted
        assert (c.core("1").term == 2) is not disrupted


# -- CheckQuorum -----------------------------------------------------------------------


def test_check_quorum_leader_steps_down_without_quorum() -> None:
    core = make(config=CHECK_QUORUM)
    elect(core)
    ticks(core, ET)  # the first round finds nobody active since the election
    assert (core.role, core.lead) == (Role.FOLLOWER, NONE)
    assert core.term == 1
    with pytest.raises(NotLeaderError):
        core.propose([b"x"])


def test_check_quorum_leader_stays_with_active_quorum() -> None:
    core = make(voters=("1", "2", "3", "4", "5"), config=CHECK_QUORUM)
    elect(core)
    for _ in range(3):
        ticks(core, ET - 1)
        for peer in ("2", "3"):  # with the leader: three of five
            core.step(msg(MessageType.HEARTBEAT_RESP, peer, "1", core.term))
        ticks(core, 1)
        assert core.role is Role.LEADER
    drain(core)
    ticks(core, ET)
    assert core.role is Role.FOLLOWER


def test_check_quorum_learners_do_not_count() -> None:
    core = make(voters=("1", "2", "3"), learners=("4", "5"), config=CHECK_QUORUM)
    elect(core)
    ticks(core, ET - 1)
    for peer in ("4", "5"):
        core.step(msg(MessageType.HEARTBEAT_RESP, peer, "1", core.term))
    ticks(core, 1)
    assert core.role is Role.FOLLOWER


@pytest.mark.parametrize("mtype", [MessageType.VOTE, MessageType.PRE_VOTE])
def test_check_quorum_lease_ignores_vote_requests(mtype: MessageType) -> None:
    """A follower that heard from its leader within an election timeout ignores a
    (pre-)vote request of a higher term: no reply, no term change."""
    core = make(term=2, config=BOTH, jitter=5)  # times out after 15 ticks, not 10
    core.step(msg(MessageType.HEARTBEAT, "2", "1", 2))
    drain(core)
    core.step(msg(mtype, "3", "1", 3, index=10, log_term=2))
    assert drain(core) == []
    assert (core.term, core.vote, core.lead) == (2, NONE, "2")
    # Once the lease has expired the request is considered.
    ticks(core, ET)
    core.step(msg(mtype, "3", "1", 3, index=10, log_term=2))
    assert [m.reject for m in drain(core) if m.to == "3"] == [False]


def test_check_quorum_transfer_context_overrides_lease() -> None:
    core = make(term=2, config=BOTH)
    core.step(msg(MessageType.HEARTBEAT, "2", "1", 2))
    drain(core)
    core.step(msg(MessageType.VOTE, "3", "1", 3, index=10, log_term=2, context=TRANSFER_CONTEXT))
    assert [(m.type, m.reject) for m in drain(core)] == [(MessageType.VOTE_RESP, False)]
    assert (core.term, core.vote) == (3, "3")


def test_check_quorum_partitioned_leader_steps_down_cluster() -> None:
    c = cluster(3, BOTH)
    c.isolate("1")
    c.tick_election("1")  # replies from before the partition still count
    assert c.core("1").role is Role.LEADER
    c.tick_election("1")
    assert c.core("1").role is Role.FOLLOWER


# -- leadership transfer -----------------------------------------------------------------


def test_transfer_to_up_to_date_follower() -> None:
    c = cluster()
    c.transfer_leadership("1", "2")
    c.stabilize()
    assert c.leader() == "2"
    assert {c.core(n).term for n in c.ids()} == {3}


def test_transfer_to_lagging_follower_catches_it_up_first() -> None:
    c = cluster()
    c.propose("1", b"a")
    c.process_ready("1")
    c.drop([("1", "3")])
    c.transfer_leadership("1", "3")
    out = drain_messages(c, "1")
    assert MessageType.TIMEOUT_NOW not in {m.type for m in out}
    c.stabilize()
    assert c.leader() == "3"
    assert c.nodes["3"].sm.commands[-1][1] == b"a"


def drain_messages(c: Cluster, node: NodeId) -> list[Message]:
    c.process_all_ready(node)
    return [m for _, m in c.nodes[node].outbox]


def test_transfer_refuses_proposals_and_aborts_after_election_timeout() -> None:
    core = make(config=PLAIN)
    elect(core)
    ack_all(core)
    core.step(msg(MessageType.HEARTBEAT_RESP, "3", "1", 1))
    core.transfer_leadership("2")
    assert kinds(drain(core)) == [(MessageType.TIMEOUT_NOW, "2")]
    with pytest.raises(ProposalDroppedError):
        core.propose([b"x"])
    with pytest.raises(ProposalDroppedError):
        core.propose_conf_change(ConfChange(ConfChangeType.REMOVE, "3"))
    ticks(core, ET)
    assert core.role is Role.LEADER
    assert core.transferee == NONE
    core.propose([b"x"])


def test_transfer_target_validation() -> None:
    core = make(learners=("4",), config=PLAIN)
    elect(core)
    core.transfer_leadership("1")  # to itself: nothing to do
    assert core.transferee == NONE
    with pytest.raises(ConfChangeError):
        core.transfer_leadership("4")  # a learner
    with pytest.raises(ConfChangeError):
        core.transfer_leadership("9")
    follower = make("2", config=PLAIN)
    with pytest.raises(NotLeaderError):
        follower.transfer_leadership("3")


def test_timeout_now_starts_election_without_pre_vote() -> None:
    core = make("2", term=1, config=BOTH)
    core.step(msg(MessageType.HEARTBEAT, "1", "2", 1))
    drain(core)
    core.step(msg(MessageType.TIMEOUT_NOW, "1", "2", 1))
    assert (core.role, core.term) == (Role.CANDIDATE, 2)
    votes = drain(core)
    assert {(m.type, m.context) for m in votes} == {(MessageType.VOTE, TRANSFER_CONTEXT)}


def test_learner_ignores_timeout_now() -> None:
    core = make("4", learners=("4",), term=1, config=BOTH)
    core.step(msg(MessageType.TIMEOUT_NOW, "1", "4", 1))
    assert (core.role, core.term) == (Role.FOLLOWER, 1)


def test_transferee_removed_cancels_transfer() -> None:
    c = cluster()
    c.crash("3")
    c.remove("1", "3")
    c.transfer_leadership("1", "3")  # 3 is still a voter until the removal applies
    with pytest.raises(ProposalDroppedError):
        c.propose("1", b"x")
    c.stabilize()
    assert c.core("1").conf.voters == ("1", "2")
    assert c.core("1").transferee == NONE
    c.propose("1", b"x")


# -- lazy commit announcement ------------------------------------------------------------

LAZY = RaftConfig(heartbeat_ticks=3, election_ticks=ET, lazy_commit_announce=True)


def applied(c: Cluster, node: NodeId) -> list[bytes]:
    return [data for _, data in c.nodes[node].sm.commands]


def test_eager_announcement_tells_followers_at_once() -> None:
    c = cluster(config=RaftConfig(heartbeat_ticks=3, election_ticks=ET))
    c.propose("1", b"a")
    c.stabilize()
    assert applied(c, "2")[-1:] == applied(c, "3")[-1:] == [b"a"]


def test_lazy_announcement_waits_for_the_next_tick() -> None:
    c = cluster(config=LAZY)
    c.propose("1", b"a")
    c.stabilize()
    assert applied(c, "1")[-1] == b"a"
    # Followers hold the entry but have not heard that it is committed.
    assert c.core("2").log.last_index() == c.core("1").log.last_index()
    assert b"a" not in applied(c, "2") + applied(c, "3")
    c.tick("1")  # one tick, not a heartbeat's worth
    c.stabilize()
    assert applied(c, "2")[-1:] == applied(c, "3")[-1:] == [b"a"]
    assert c.core("1").unannounced == set()


def test_lazy_announcement_rides_on_the_next_append() -> None:
    c = cluster(config=LAZY)
    c.propose("1", b"a")
    c.stabilize()
    c.propose("1", b"b")  # its appends carry the commit index that covers "a"
    c.stabilize()
    assert b"a" in applied(c, "2") and b"a" in applied(c, "3")
    assert b"b" not in applied(c, "2")
    c.tick("1")
    c.stabilize()
    assert applied(c, "2") == applied(c, "3") == applied(c, "1")


def test_lazy_announcement_is_forgotten_with_leadership() -> None:
    c = cluster(config=LAZY)
    c.propose("1", b"a")
    c.stabilize()
    assert c.core("1").unannounced == {"2", "3"}
    c.transfer_leadership("1", "2")
    c.stabilize()
    assert c.leader() == "2"
    assert c.core("1").unannounced == set()
    c.tick("2")
    c.stabilize()
    assert applied(c, "1") == applied(c, "2") == applied(c, "3")


# -- ReadIndex -----------------------------------------------------------------------------


def test_read_index_single_voter_answers_at_once() -> None:
    core = make(voters=("1",))
    ticks(core, ET)
    drain(core)
    assert core.role is Role.LEADER
    core.request_read(b"r")
    rd = core.ready()
    core.advance(rd)
    assert rd.read_states == [ReadState(core.log.committed, b"r")]


def test_read_index_needs_quorum_of_voters() -> None:
    core = make(voters=("1", "2", "3"), learners=("4",), config=PLAIN)
    elect(core)
    ack_all(core)
    commit = core.log.committed
    core.request_read(b"r")
    beats = drain(core)
    assert {(m.type, m.context) for m in beats} == {(MessageType.HEARTBEAT, b"r")}
    core.step(msg(MessageType.HEARTBEAT_RESP, "4", "1", 1, context=b"r"))  # a learner
    rd = core.ready()
    core.advance(rd)
    assert rd.read_states == []
    core.step(msg(MessageType.HEARTBEAT_RESP, "2", "1", 1, context=b"r"))
    rd = core.ready()
    core.advance(rd)
    assert rd.read_states == [ReadState(commit, b"r")]


def test_read_index_forwarded_by_follower() -> None:
    follower = make("2", term=1, config=PLAIN)
    follower.step(msg(MessageType.HEARTBEAT, "1", "2", 1))
    drain(follower)
    follower.request_read(b"r")
    out = drain(follower)
    assert [(m.type, m.to, m.context) for m in out] == [(MessageType.READ_INDEX, "1", b"r")]
    follower.step(msg(MessageType.READ_INDEX_RESP, "1", "2", 1, index=7, context=b"r"))
    rd = follower.ready()
    follower.advance(rd)
    assert rd.read_states == [ReadState(7, b"r")]


def test_read_index_without_leader_raises() -> None:
    core = make(term=1)
    with pytest.raises(NotLeaderError):
        core.request_read(b"r")


def test_read_index_deferred_until_leader_commits_in_its_term() -> None:
    core = make(term=1, log_terms=[1, 1], commit=1, config=PLAIN)
    elect(core)  # term 2, entry 3 not yet committed
    core.step(msg(MessageType.READ_INDEX, "2", "1", 2, context=b"r"))
    assert [m for m in drain(core) if m.type is MessageType.HEARTBEAT] == []
    core.step(msg(MessageType.APPEND_RESP, "2", "1", 2, index=3))
    out = drain(core)
    beats = [m for m in out if m.type is MessageType.HEARTBEAT]
    assert {m.context for m in beats} == {b"r"}
    core.step(msg(MessageType.HEARTBEAT_RESP, "3", "1", 2, context=b"r"))
    resp = [m for m in drain(core) if m.type is MessageType.READ_INDEX_RESP]
    assert [(m.to, m.index, m.context) for m in resp] == [("2", 3, b"r")]


def test_read_index_dropped_when_leadership_lost() -> None:
    core = make(config=PLAIN)
    elect(core)
    ack_all(core)
    core.request_read(b"r")
    drain(core)
    core.step(msg(MessageType.APPEND, "2", "1", 5))
    core.step(msg(MessageType.HEARTBEAT_RESP, "3", "1", 5, context=b"r"))
    rd = core.ready()
    core.advance(rd)
    assert rd.read_states == []
    assert len(core.read_index) == 0


def test_read_index_queue_releases_earlier_requests() -> None:
    """A quorum confirming a later round confirms every earlier one too."""
    q = ReadIndexQueue()
    q.add(b"a", 5, "1", "1")
    q.add(b"b", 6, "2", "1")
    q.add(b"c", 7, "1", "1")
    q.add(b"a", 99, "3", "1")  # a retransmission keeps the first request
    assert q.last_context() == b"c"
    assert q.ack(b"b", "2") == {"1", "2"}
    assert q.ack(b"zz", "2") is None
    released = q.release_through(b"b")
    assert [(ctx, r.index, r.requester) for ctx, r in released] == [(b"a", 5, "1"), (b"b", 6, "2")]
    assert len(q) == 1
    assert q.release_through(b"missing") == []
    q.clear()
    assert q.last_context() == b""


# -- membership ------------------------------------------------------------------------------


def test_learner_does_not_count_for_commit() -> None:
    core = make(voters=("1", "2", "3"), learners=("4",), config=PLAIN)
    elect(core)
    ack_all(core)
    index, _ = core.propose([b"x"])
    drain(core)
    core.step(msg(MessageType.APPEND_RESP, "4", "1", 1, index=index))
    assert core.log.committed < index
    core.step(msg(MessageType.APPEND_RESP, "2", "1", 1, index=index))
    assert core.log.committed == index


def test_learner_never_campaigns_nor_is_asked_to_vote() -> None:
    learner = make("4", learners=("4",), config=PLAIN)
    ticks(learner, 5 * ET)
    assert learner.role is Role.FOLLOWER
    assert drain(learner) == []
    voter = make("1", learners=("4",), config=PLAIN)
    ticks(voter, 2 * ET)
    assert "4" not in {m.to for m in drain(voter)}


def test_conf_change_takes_effect_when_applied() -> None:
    c = cluster()
    c.add_learner("1", "4")
    assert c.core("1").conf.learners == ()
    c.process_ready("1")  # persisted and sent, not yet committed
    assert c.core("1").conf.learners == ()
    c.stabilize()
    assert c.core("1").conf.learners == ("4",)
    assert c.core("2").conf.learners == ("4",)


def test_learner_catch_up_and_promotion() -> None:
    c = cluster()
    c.propose("1", b"a")
    c.stabilize()
    c.add_learner("1", "4")
    c.stabilize()
    c.tick_heartbeat("1")
    c.stabilize()
    assert c.core("4").log.last_index() == c.core("1").log.last_index()
    assert c.nodes["4"].sm.commands == c.nodes["1"].sm.commands
    c.promote("1", "4")
    c.stabilize()
    assert {c.core(n).conf.voters for n in c.ids()} == {("1", "2", "3", "4")}
    assert c.core("1").quorum() == 3
    assert c.core("1").progress["4"].is_learner is False


def test_remove_voter_lowers_quorum_and_commits() -> None:
    """An entry waiting for the removed voter's acknowledgement commits as soon as
    the removal applies and the quorum shrinks."""
    core = make(voters=("1", "2"), config=PLAIN)
    elect(core)
    ack_all(core)
    core.log.applied_to(core.log.committed)
    cc_index, _ = core.propose_conf_change(ConfChange(ConfChangeType.REMOVE, "2"))
    data_index, _ = core.propose([b"x"])
    drain(core)
    core.step(msg(MessageType.APPEND_RESP, "2", "1", 1, index=cc_index))
    assert core.log.committed == cc_index
    rd = core.ready()
    core.advance(rd)  # applies the removal: quorum of {1} is 1
    assert core.conf.voters == ("1",)
    assert core.log.committed == data_index


def test_removed_leader_steps_down() -> None:
    c = cluster()
    c.remove("1", "1")
    c.stabilize()
    assert c.core("1").role is Role.FOLLOWER
    assert c.core("2").conf.voters == ("2", "3")
    c.tick(node="1", n=5 * ET)
    assert c.core("1").role is Role.FOLLOWER  # no longer a voter: never campaigns


def test_one_conf_change_at_a_time() -> None:
    c = cluster()
    c.add_learner("1", "4")
    with pytest.raises(ConfChangeError, match="in progress"):
        c.promote("1", "4")
    c.stabilize()
    c.promote("1", "4")


@pytest.mark.parametrize(
    ("cc", "error"),
    [
        (ConfChange(ConfChangeType.ADD_LEARNER, "", "addr"), "must not be empty"),
        (ConfChange(ConfChangeType.ADD_LEARNER, "2", "addr"), "already a member"),
        (ConfChange(ConfChangeType.ADD_LEARNER, "4"), "address"),
        (ConfChange(ConfChangeType.PROMOTE, "2"), "not a learner"),
        (ConfChange(ConfChangeType.PROMOTE, "9"), "not a learner"),
        (ConfChange(ConfChangeType.REMOVE, "9"), "not a member"),
    ],
)
def test_conf_change_validation(cc: ConfChange, error: str) -> None:
    core = make(config=PLAIN)
    elect(core)
    ack_all(core)
    drain(core)
    core.log.applied_to(core.log.committed)
    with pytest.raises(ConfChangeError, match=error):
        core.propose_conf_change(cc)


def test_cannot_remove_last_voter() -> None:
    core = make(voters=("1",), config=PLAIN)
    ticks(core, ET)
    drain(core)
    with pytest.raises(ConfChangeError, match="last voter"):
        core.propose_conf_change(ConfChange(ConfChangeType.REMOVE, "1"))


def test_conf_change_on_follower_raises_not_leader() -> None:
    core = make("2", term=1)
    core.step(msg(MessageType.HEARTBEAT, "1", "2", 1))
    with pytest.raises(NotLeaderError) as info:
        core.propose_conf_change(ConfChange(ConfChangeType.REMOVE, "3"))
    assert info.value.leader == "1"


# -- snapshots ---------------------------------------------------------------------------------


def snap(index: int, term: int, voters: tuple[NodeId, ...] = PEERS3) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, ConfState(voters)), b"state")


def test_install_snapshot_replaces_log() -> None:
    core = make("2", term=2, log_terms=[1, 1], commit=1)
    s = snap(10, 2, ("1", "2", "3", "4"))
    core.step(msg(MessageType.SNAPSHOT, "1", "2", 2, snapshot=s))
    assert (core.log.base_index, core.log.base_term, core.log.last_index()) == (10, 2, 10)
    assert core.log.committed == 10
    assert core.conf.voters == ("1", "2", "3", "4")
    rd = core.ready()
    core.advance(rd)
    assert rd.snapshot == s
    assert rd.hard_state is not None and rd.hard_state.commit == 10
    assert [(m.type, m.index, m.reject) for m in rd.messages] == [
        (MessageType.APPEND_RESP, 10, False)
    ]
    assert core.log.applied == 10


def test_stale_snapshot_is_acknowledged_with_commit_index() -> None:
    core = make("2", term=2, log_terms=[1, 1, 2], commit=3)
    core.step(msg(MessageType.SNAPSHOT, "1", "2", 2, snapshot=snap(2, 1)))
    assert core.log.last_index() == 3
    assert [(m.type, m.index) for m in drain(core)] == [(MessageType.APPEND_RESP, 3)]


def test_snapshot_matching_log_acknowledges_only_snapshot_index() -> None:
    """A follower that already holds the snapshot's last entry keeps its log and
    commits up to the snapshot; it must acknowledge only the snapshot's index: its
    later entries (here a deposed leader's term-2 entries) are not known to match
    the leader's, and acknowledging them would let the leader count this follower
    toward committing entries it lacks. (Was: acknowledged its last index.)"""
    core = make("2", term=3, log_terms=[1, 1, 2, 2], commit=1)
    core.step(msg(MessageType.SNAPSHOT, "1", "2", 3, snapshot=snap(2, 1)))
    assert core.log.committed == 2
    assert core.log.last_index() == 4  # entries kept
    assert [(m.type, m.index, m.reject) for m in drain(core)] == [
        (MessageType.APPEND_RESP, 2, False)
    ]


def test_leader_sends_snapshot_when_follower_needs_compacted_entries() -> None:
    c = cluster()
    c.crash("3")
    for i in range(3):
        c.propose("1", f"k{i}=v".encode())
    c.stabilize()
    point = c.compact("1")
    assert point == c.core("1").log.applied
    c.restart("3")
    c.tick_heartbeat("1")
    c.stabilize()
    assert c.core("3").log.base_index == point
    assert c.nodes["3"].sm.kv == c.nodes["1"].sm.kv == {"k0": "v", "k1": "v", "k2": "v"}
    assert c.core("1").progress["3"].state is ProgressState.REPLICATE


def test_lost_snapshot_is_retried() -> None:
    c = cluster()
    c.crash("3")
    c.propose("1", b"x")
    c.stabilize()
    c.compact("1")
    c.restart("3")
    c.tick_heartbeat("1")
    for _ in range(6):
        for node in c.ids():
            c.process_all_ready(node)
        c.drop([("1", "3")], types=[MessageType.SNAPSHOT])
        c.deliver()
    assert c.core("1").progress["3"].state is ProgressState.SNAPSHOT
    assert c.core("3").log.committed < c.core("1").log.committed
    for _ in range(ET + 2):  # the leader gives up waiting and probes again
        c.tick("1")
        c.stabilize()
    assert c.core("3").log.committed == c.core("1").log.committed
    assert c.core("1").progress["3"].state is ProgressState.REPLICATE


def test_compact_validation() -> None:
    core = make(term=1, log_terms=[1, 1, 1], commit=2)
    with pytest.raises(ValueError, match="beyond applied"):
        core.compact(snap(3, 1))
    assert core.compact(snap(2, 1)) == 2
    assert core.log.first_index() == 3
    # an older snapshot changes nothing
    core.compact(snap(1, 1))
    assert core.log.first_index() == 3
    assert core.snapshot is not None and core.snapshot.meta.index == 2


def test_harness_rejects_contract_violation() -> None:
    """The harness itself catches a core that breaks the Ready contract."""
    c = cluster()
    core = c.core("2")
    # Make the core claim a commit index beyond anything it asked to persist.
    last = core.log.last_index()
    core.log.entries.append(Entry(core.term, last + 1))
    core.log.unstable_from = last + 2
    core.log.committed = last + 1
    with pytest.raises(HarnessError, match="beyond the durable log"):
        c.process_ready("2")


def test_membership_survives_restart_from_snapshot_and_log() -> None:
    """A restarted node takes the membership from its snapshot, then re-applies the
    committed changes after it."""
    c = cluster()
    c.add_learner("1", "4")
    c.stabilize()
    c.compact("2")  # snapshot knows learner 4
    c.promote("1", "4")
    c.stabilize()
    c.crash("2")
    c.restart("2")
    assert c.core("2").conf.voters == ("1", "2", "3", "4")
    assert c.core("2").conf.learners == ()
    assert c.nodes["2"].sm.applied_index == c.core("2").log.committed
