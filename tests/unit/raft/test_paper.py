"""One test per rule of the Raft paper (Ongaro & Ousterhout, "In Search of an
Understandable Consensus Algorithm", Figure 2 and section 5), named for the section
it checks (TESTING.md layer 1).

The tests drive a lone `RaftCore` with hand-made messages, or a small in-memory
`Cluster` where the rule involves several nodes. PreVote and CheckQuorum are off
unless a test says otherwise: the paper has neither (test_features.py covers them).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from agentflow.raft.config import RaftConfig
from agentflow.raft.core import RaftCore
from agentflow.raft.progress import ProgressState
from agentflow.raft.testing.harness import Cluster, MemoryStorage, drain, msg, new_core
from agentflow.raft.types import (
    NONE,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    NodeId,
    Role,
    Snapshot,
    SnapshotMeta,
)

ET = 10  # election ticks
CFG = RaftConfig(heartbeat_ticks=1, election_ticks=ET, pre_vote=False, check_quorum=False)
PEERS3 = ("1", "2", "3")


def ids(n: int) -> tuple[NodeId, ...]:
    return tuple(str(i) for i in range(1, n + 1))


def make(
    node: NodeId = "1",
    voters: Iterable[NodeId] = PEERS3,
    *,
    term: int = 0,
    vote: NodeId = NONE,
    commit: int = 0,
    log_terms: Iterable[int] = (),
    config: RaftConfig = CFG,
) -> RaftCore:
    return new_core(
        node,
        tuple(voters),
        term=term,
        vote=vote,
        commit=commit,
        log_terms=tuple(log_terms),
        config=config,
    )


def ents(*pairs: tuple[int, int]) -> list[Entry]:
    """Entries from (term, index) pairs."""
    return [Entry(t, i) for t, i in pairs]


def log_of(core: RaftCore) -> list[tuple[int, int]]:
    return [(e.term, e.index) for e in core.log.entries]


def elect(core: RaftCore) -> list[Message]:
    """Make a lone core leader of the next term by granting it every vote.
    Returns the messages it sent as leader."""
    core.campaign(pre_vote=False)
    drain(core)
    for peer in core.conf.voters:
        if peer != core.id and core.role is not Role.LEADER:
            core.step(msg(MessageType.VOTE_RESP, peer, core.id, core.term))
    assert core.role is Role.LEADER
    return drain(core)


def elect_and_replicate(core: RaftCore) -> None:
    """Leader whose followers all acknowledged its first entry (all in StateReplicate)."""
    elect(core)
    for peer in core.progress:
        if peer != core.id:
            core.step(
                msg(MessageType.APPEND_RESP, peer, core.id, core.term, index=core.log.last_index())
            )
    drain(core)


def time_out(core: RaftCore) -> None:
    """Tick until the core's election timer fires (at most 2 * election_ticks)."""
    term = core.term
    for _ in range(2 * ET):
        core.tick()
        if core.term != term:
            return
    raise AssertionError("no election within 2 * election_ticks")


def of_type(msgs: list[Message], mtype: MessageType) -> list[Message]:
    return [m for m in msgs if m.type is mtype]


# -- §5.1 Raft basics -------------------------------------------------------------


def _in_role(role: Role) -> RaftCore:
    """A core at term 1 in `role`."""
    if role is Role.FOLLOWER:
        core = make(term=1)
    elif role is Role.CANDIDATE:
        core = make(term=0)
        core.campaign(pre_vote=False)
    else:
        core = make(term=0)
        elect(core)
    drain(core)
    assert (core.role, core.term) == (role, 1)
    return core


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE, Role.LEADER])
def test_follower_update_term_from_message_5_1(role: Role) -> None:
    """§5.1: if a server sees a larger term it updates its term, and a candidate or
    leader reverts to follower. (The sender of an append is the leader of its term.)"""
    core = _in_role(role)
    core.step(msg(MessageType.APPEND, "2", "1", 2))
    assert core.term == 2
    assert core.role is Role.FOLLOWER
    assert core.lead == "2"
    assert core.vote == NONE  # a new term starts without a vote


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE, Role.LEADER])
def test_update_term_from_vote_request_5_1(role: Role) -> None:
    """§5.1: a vote request of a larger term also updates the term; the leader of
    the new term is not known yet."""
    core = _in_role(role)
    core.step(msg(MessageType.VOTE, "2", "1", 2, index=10, log_term=1))
    assert (core.role, core.term, core.lead) == (Role.FOLLOWER, 2, NONE)
    assert core.vote == "2"


@pytest.mark.parametrize(
    "mtype",
    [MessageType.APPEND, MessageType.HEARTBEAT, MessageType.VOTE, MessageType.APPEND_RESP],
)
def test_reject_stale_term_message_5_1(mtype: MessageType) -> None:
    """§5.1: a request with a stale term is rejected; it changes nothing."""
    core = make(term=2, log_terms=[1, 2], commit=1)
    before = (core.term, core.vote, core.lead, log_of(core), core.log.committed)
    core.step(msg(mtype, "2", "1", 1, index=2, log_term=2, commit=2, entries=ents((1, 3))))
    assert (core.term, core.vote, core.lead, log_of(core), core.log.committed) == before
    assert drain(core) == []


def test_stale_leader_is_told_the_current_term_5_1() -> None:
    """§5.1 ("the responder includes its current term"): with CheckQuorum or PreVote
    on, a stale append is answered with the current term so the sender steps down."""
    core = make(term=2, config=RaftConfig(heartbeat_ticks=1, election_ticks=ET))
    core.step(msg(MessageType.APPEND, "2", "1", 1))
    out = drain(core)
    assert [(m.type, m.to, m.term) for m in out] == [(MessageType.APPEND_RESP, "2", 2)]
    assert core.term == 2


# -- §5.2 Leader election -------------------------------------------------------------


def test_start_as_follower_5_2() -> None:
    """§5.2: when servers start up, they begin as followers."""
    core = make(term=3, vote="2")
    assert core.role is Role.FOLLOWER
    assert (core.term, core.vote, core.lead) == (3, "2", NONE)


def test_leader_bcast_beat_5_2() -> None:
    """§5.2: a leader sends periodic heartbeats (empty AppendEntries) to all
    followers to maintain its authority."""
    core = make()
    elect_and_replicate(core)
    core.propose([b"a", b"b"])
    drain(core)
    for _ in range(CFG.heartbeat_ticks):
        core.tick()
    beats = drain(core)
    assert sorted((m.type, m.to, m.term, m.entries == []) for m in beats) == [
        (MessageType.HEARTBEAT, "2", 1, True),
        (MessageType.HEARTBEAT, "3", 1, True),
    ]
    # A heartbeat never lets a follower commit beyond what it is known to hold.
    assert all(m.commit <= core.progress[m.to].match for m in beats)


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE])
def test_start_election_on_timeout_5_2(role: Role) -> None:
    """§5.2: a follower (or a candidate whose election timed out) that hears nothing
    for an election timeout starts an election: it increments its term, votes for
    itself and sends RequestVote to every other server."""
    core = _in_role(role)
    time_out(core)
    out = drain(core)
    assert (core.role, core.term, core.vote) == (Role.CANDIDATE, 2, "1")
    assert sorted((m.type, m.to, m.term) for m in out) == [
        (MessageType.VOTE, "2", 2),
        (MessageType.VOTE, "3", 2),
    ]


@pytest.mark.parametrize(
    ("size", "votes", "want"),
    [
        (1, {}, Role.LEADER),
        (3, {"2": True, "3": True}, Role.LEADER),
        (3, {"2": True}, Role.LEADER),
        (5, {"2": True, "3": True, "4": True, "5": True}, Role.LEADER),
        (5, {"2": True, "3": True, "4": True}, Role.LEADER),
        (5, {"2": True, "3": True}, Role.LEADER),
        # a majority of rejections makes the candidate give up (back to follower)
        (3, {"2": False, "3": False}, Role.FOLLOWER),
        (5, {"2": False, "3": False, "4": False, "5": False}, Role.FOLLOWER),
        (5, {"2": True, "3": False, "4": False, "5": False}, Role.FOLLOWER),
        # no majority either way: still waiting
        (3, {}, Role.CANDIDATE),
        (3, {"2": False}, Role.CANDIDATE),
        (5, {"2": True}, Role.CANDIDATE),
        (5, {"2": False, "3": False}, Role.CANDIDATE),
        (5, {}, Role.CANDIDATE),
    ],
)
def test_leader_election_in_one_round_rpc_5_2(
    size: int, votes: dict[NodeId, bool], want: Role
) -> None:
    """§5.2: a candidate wins if it receives votes from a majority of the full
    cluster in the same term."""
    core = make(voters=ids(size))
    core.campaign(pre_vote=False)
    drain(core)
    for peer, granted in votes.items():
        core.step(msg(MessageType.VOTE_RESP, peer, "1", core.term, reject=not granted))
    assert core.role is want
    assert core.term == 1


@pytest.mark.parametrize(
    ("vote", "candidate", "reject"),
    [
        (NONE, "2", False),
        (NONE, "3", False),
        ("2", "2", False),
        ("3", "3", False),
        ("2", "3", True),
        ("3", "2", True),
    ],
)
def test_follower_vote_5_2(vote: NodeId, candidate: NodeId, reject: bool) -> None:
    """§5.2: each server votes for at most one candidate in a given term, on a
    first-come-first-served basis (a repeated request from the same candidate is
    granted again)."""
    core = make(term=1, vote=vote)
    core.step(msg(MessageType.VOTE, candidate, "1", 1))
    out = drain(core)
    assert [(m.type, m.to, m.term, m.reject) for m in out] == [
        (MessageType.VOTE_RESP, candidate, 1, reject)
    ]
    assert core.vote == (vote or candidate)


def test_vote_is_durable_before_the_reply_5_2() -> None:
    """Figure 2 ("updated on stable storage before responding to RPCs"): the Ready
    that carries a granted vote also carries the hard state recording it."""
    core = make(term=1)
    core.step(msg(MessageType.VOTE, "2", "1", 2))
    rd = core.ready()
    core.advance(rd)
    assert rd.hard_state == HardState(2, "2", 0)
    assert [m.type for m in rd.messages] == [MessageType.VOTE_RESP]


@pytest.mark.parametrize("leader_term", [1, 2])
def test_candidate_fallback_5_2(leader_term: int) -> None:
    """§5.2: a candidate that receives AppendEntries from a leader whose term is at
    least its own recognizes the leader and returns to follower."""
    core = make(term=0)
    core.campaign(pre_vote=False)
    drain(core)
    assert (core.role, core.term) == (Role.CANDIDATE, 1)
    core.step(msg(MessageType.APPEND, "2", "1", leader_term))
    assert (core.role, core.term, core.lead) == (Role.FOLLOWER, leader_term, "2")


def test_candidate_ignores_stale_leader_5_2() -> None:
    """§5.2: an AppendEntries from a smaller term is rejected; the candidate stays."""
    core = make(term=1)
    core.campaign(pre_vote=False)
    drain(core)
    core.step(msg(MessageType.APPEND, "2", "1", 1))
    assert (core.role, core.term) == (Role.CANDIDATE, 2)


def test_election_timeout_randomized_5_2() -> None:
    """§5.2: election timeouts are chosen randomly from a fixed interval (here
    [election_ticks, 2 * election_ticks)), and a follower campaigns exactly when
    its timeout has passed."""
    seen: set[int] = set()
    for seed in range(200):
        core = new_core("1", PEERS3, config=CFG, rng=random.Random(seed))
        ticks = 0
        while core.role is Role.FOLLOWER:
            core.tick()
            ticks += 1
            assert ticks < 2 * ET
        assert ticks >= ET
        seen.add(ticks)
    assert seen == set(range(ET, 2 * ET))


def test_election_timeouts_rarely_conflict_5_2() -> None:
    """§5.2: randomized timeouts spread servers out so that in most cases only one
    times out first (split votes are rare)."""
    conflicts = 0
    rounds = 1000
    rng = random.Random(7)
    for _ in range(rounds):
        timeouts = [ET + rng.randrange(ET) for _ in range(5)]
        first = min(timeouts)
        conflicts += timeouts.count(first) > 1
    assert conflicts / rounds < 0.3
    # the core draws its timeouts from the generator it is given, anew per term
    core = new_core("1", PEERS3, config=CFG, rng=random.Random(3))
    drawn = set()
    for _ in range(50):
        core.become_follower(core.term + 1, NONE)
        drawn.add(core.randomized_timeout)
    assert len(drawn) > 1


def test_leader_election_cluster_5_2() -> None:
    """§5.2 end to end: after an election timeout a three-node cluster elects exactly
    one leader, which every node then follows."""
    c = Cluster(CFG, seed=1)
    c.add_nodes(3)
    for _ in range(2 * ET):
        for node in c.ids():
            c.tick(node)
        c.stabilize()
    leaders = [n for n in c.ids() if c.core(n).role is Role.LEADER]
    assert len(leaders) == 1
    term = c.core(leaders[0]).term
    assert {(c.core(n).term, c.core(n).lead) for n in c.ids()} == {(term, leaders[0])}


# -- §5.3 Log replication ---------------------------------------------------------------


def test_leader_start_replication_5_3() -> None:
    """§5.3: the leader appends a command to its log as a new entry, then issues
    AppendEntries in parallel to the other servers, with the index and term of the
    entry preceding the new ones and its commit index."""
    core = make()
    elect_and_replicate(core)
    last, commit = core.log.last_index(), core.log.committed
    index, term = core.propose([b"some data"])
    assert (index, term) == (last + 1, 1)
    rd = core.ready()
    core.advance(rd)
    want = [Entry(1, last + 1, data=b"some data")]
    assert rd.entries == want
    assert log_of(core)[-1] == (1, last + 1)
    appends = sorted(rd.messages, key=lambda m: m.to)
    assert [(m.type, m.to, m.term, m.index, m.log_term, m.commit, m.entries) for m in appends] == [
        (MessageType.APPEND, "2", 1, last, 1, commit, want),
        (MessageType.APPEND, "3", 1, last, 1, commit, want),
    ]


def test_leader_commit_entry_5_3() -> None:
    """§5.3: once an entry is replicated on a majority, the leader commits it,
    applies it, and includes the new commit index in later AppendEntries so the
    followers learn it."""
    core = make()
    elect_and_replicate(core)
    index, _ = core.propose([b"some data"])
    drain(core)
    for peer in ("2", "3"):
        core.step(msg(MessageType.APPEND_RESP, peer, "1", 1, index=index))
    assert core.log.committed == index
    rd = core.ready()
    core.advance(rd)
    assert [e.data for e in rd.committed_entries] == [b"some data"]
    assert {(m.to, m.commit) for m in of_type(rd.messages, MessageType.APPEND)} == {
        ("2", index),
        ("3", index),
    }


@pytest.mark.parametrize(
    ("size", "acceptors", "committed"),
    [
        (1, set(), True),
        (3, set(), False),
        (3, {"2"}, True),
        (3, {"2", "3"}, True),
        (5, set(), False),
        (5, {"2"}, False),
        (5, {"2", "3"}, True),
        (5, {"2", "3", "4"}, True),
        (5, {"2", "3", "4", "5"}, True),
    ],
)
def test_leader_acknowledge_commit_5_3(size: int, acceptors: set[NodeId], committed: bool) -> None:
    """§5.3: an entry is committed once the leader that created it has replicated
    it on a majority of the servers (the leader counts itself)."""
    core = make(voters=ids(size))
    elect_and_replicate(core)
    index, _ = core.propose([b"some data"])
    drain(core)
    for peer in acceptors:
        core.step(msg(MessageType.APPEND_RESP, peer, "1", core.term, index=index))
    assert (core.log.committed >= index) is committed


def test_leader_commit_preceding_entries_5_3() -> None:
    """§5.3: committing an entry also commits all preceding entries in the leader's
    log, including entries created by previous leaders."""
    for old in ([], [2], [1, 2], [1]):
        core = make(term=2, log_terms=old)
        elect(core)  # term 3; appends an empty entry
        index, _ = core.propose([b"some data"])
        drain(core)
        for peer in ("2", "3"):
            core.step(msg(MessageType.APPEND_RESP, peer, "1", 3, index=index))
        rd = core.ready()
        core.advance(rd)
        assert [(e.term, e.index) for e in rd.committed_entries] == [
            *((t, i) for i, t in enumerate(old, start=1)),
            (3, len(old) + 1),
            (3, len(old) + 2),
        ]


def test_follower_commit_entry_5_3() -> None:
    """§5.3: once a follower learns that an entry is committed (the leader's commit
    index in AppendEntries), it applies it, in log order."""
    for n_entries, commit in [(1, 1), (2, 2), (2, 1), (3, 2)]:
        core = make(term=1)
        entries = [Entry(1, i, data=f"e{i}".encode()) for i in range(1, n_entries + 1)]
        core.step(msg(MessageType.APPEND, "2", "1", 1, commit=commit, entries=entries))
        assert core.log.committed == commit
        rd = core.ready()
        core.advance(rd)
        assert rd.committed_entries == entries[:commit]


@pytest.mark.parametrize(
    ("log_term", "index", "reply_index", "reject", "hint"),
    [
        (0, 0, 1, False, 0),  # matches a committed entry: reply with the commit index
        (1, 1, 1, False, 0),
        (2, 2, 2, False, 0),  # matches an uncommitted entry
        (1, 2, 2, True, 1),  # entry 2 has another term: hint back to 1 (term 1)
        (3, 3, 3, True, 2),  # no entry 3: hint at our last index
    ],
)
def test_follower_check_msg_app_5_3(
    log_term: int, index: int, reply_index: int, reject: bool, hint: int
) -> None:
    """§5.3: if the follower does not find an entry in its log with the same index
    and term as the one preceding the new entries, it refuses them."""
    core = make(term=1, log_terms=[1, 2], commit=1)
    core.step(msg(MessageType.APPEND, "2", "1", 2, index=index, log_term=log_term, commit=1))
    out = drain(core)
    assert [(m.type, m.term, m.index, m.reject, m.reject_hint) for m in out] == [
        (MessageType.APPEND_RESP, 2, reply_index, reject, hint)
    ]
    if reject:
        assert out[0].log_term == core.log.term(hint)


@pytest.mark.parametrize(
    ("index", "log_term", "entries", "want_log", "want_unstable"),
    [
        (2, 2, [(3, 3)], [(1, 1), (2, 2), (3, 3)], [(3, 3)]),
        (1, 1, [(3, 2), (4, 3)], [(1, 1), (3, 2), (4, 3)], [(3, 2), (4, 3)]),
        (0, 0, [(1, 1)], [(1, 1), (2, 2)], []),
        (0, 0, [(3, 1)], [(3, 1)], [(3, 1)]),
    ],
)
def test_follower_append_entries_5_3(
    index: int,
    log_term: int,
    entries: list[tuple[int, int]],
    want_log: list[tuple[int, int]],
    want_unstable: list[tuple[int, int]],
) -> None:
    """§5.3: if an existing entry conflicts with a new one (same index, different
    term), the follower deletes it and all that follow; then it appends the new
    entries not already in its log. Only what changed is handed out to persist."""
    core = make(term=1, log_terms=[1, 2])
    core.step(
        msg(MessageType.APPEND, "2", "1", 4, index=index, log_term=log_term, entries=ents(*entries))
    )
    assert log_of(core) == want_log
    rd = core.ready()
    core.advance(rd)
    assert [(e.term, e.index) for e in rd.entries] == want_unstable


FIGURE_7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE_7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


def _storage(terms: list[int], term: int) -> MemoryStorage:
    conf = ConfState(PEERS3, (), tuple((n, f"node{n}") for n in PEERS3))
    return MemoryStorage(
        HardState(term, NONE, 0),
        Snapshot(SnapshotMeta(0, 0, conf)),
        [Entry(t, i) for i, t in enumerate(terms, start=1)],
    )


@pytest.mark.parametrize("case", sorted(FIGURE_7_FOLLOWERS))
def test_leader_sync_follower_log_5_3(case: str) -> None:
    """§5.3, Figure 7: whatever a follower's log looks like (missing entries, extra
    uncommitted entries, or both), the leader's consistency check finds the point
    where they agree, and the follower's log ends up identical to the leader's."""
    c = Cluster(CFG)
    c.add_node("1", _storage(FIGURE_7_LEADER, 7))
    c.add_node("2", _storage(FIGURE_7_FOLLOWERS[case], 7))
    c.add_node("3", _storage(FIGURE_7_LEADER, 7))
    c.crash("3")
    leader = c.core("1")
    # Term 8; the vote of 3 (down now) makes 1 leader even where 2 would refuse.
    leader.campaign(pre_vote=False)
    leader.step(msg(MessageType.VOTE_RESP, "3", "1", 8))
    assert leader.role is Role.LEADER
    c.stabilize()
    assert log_of(c.core("2")) == log_of(leader)
    assert [(e.term, e.index) for e in c.nodes["2"].storage.entries] == log_of(leader)
    # Commits once a majority (1 and 2) holds the leader's own entry 8/11.
    assert c.core("2").log.committed == leader.log.committed == 11


# -- §5.4 Safety -----------------------------------------------------------------------


def test_vote_request_5_2_5_4_1() -> None:
    """§5.2/§5.4.1: RequestVote carries the candidate's term and the index and term
    of its last log entry."""
    for log_terms in ([1], [1, 1, 2], [1, 2, 2, 3]):
        core = make(term=log_terms[-1], log_terms=log_terms)
        time_out(core)
        votes = of_type(drain(core), MessageType.VOTE)
        assert sorted((m.to, m.term, m.index, m.log_term) for m in votes) == [
            ("2", log_terms[-1] + 1, len(log_terms), log_terms[-1]),
            ("3", log_terms[-1] + 1, len(log_terms), log_terms[-1]),
        ]


@pytest.mark.parametrize(
    ("log_terms", "cand_log_term", "cand_index", "reject"),
    [
        # same last term: the longer log is more up to date
        ([1], 1, 1, False),
        ([1], 1, 2, False),
        ([1, 1], 1, 1, True),
        # candidate's last term is higher: granted whatever the lengths
        ([1], 2, 1, False),
        ([1], 2, 2, False),
        ([1, 1], 2, 1, False),
        # voter's last term is higher: refused whatever the lengths
        ([2], 1, 1, True),
        ([2], 1, 2, True),
        ([1, 2], 1, 3, True),
    ],
)
def test_voter_5_4_1(
    log_terms: list[int], cand_log_term: int, cand_index: int, reject: bool
) -> None:
    """§5.4.1: a voter denies its vote if its own log is more up to date than the
    candidate's: the later last term wins; with equal last terms, the longer log."""
    core = make(term=2, log_terms=log_terms)
    core.step(msg(MessageType.VOTE, "2", "1", 3, index=cand_index, log_term=cand_log_term))
    out = drain(core)
    assert [(m.type, m.reject) for m in out] == [(MessageType.VOTE_RESP, reject)]
    assert core.vote == (NONE if reject else "2")


@pytest.mark.parametrize(("acked", "want_commit"), [(1, 0), (2, 0), (3, 3)])
def test_leader_only_commits_log_from_current_term_5_4_2(acked: int, want_commit: int) -> None:
    """§5.4.2: a leader never commits an entry from a previous term by counting
    replicas; it commits its own entry, which commits the earlier ones with it."""
    core = make(term=2, log_terms=[1, 2])
    elect(core)  # term 3, empty entry at 3
    core.step(msg(MessageType.APPEND_RESP, "2", "1", 3, index=acked))
    assert core.log.committed == want_commit


def test_leader_append_only_5_4() -> None:
    """Figure 3 (Leader Append-Only): a leader never overwrites or deletes entries in
    its log, even when handed conflicting entries by a stale message."""
    core = make(term=1, log_terms=[1])
    elect(core)
    core.propose([b"x"])
    before = log_of(core)
    # An append from a deposed leader of term 1 is ignored.
    core.step(msg(MessageType.APPEND, "2", "1", 1, index=1, log_term=1, entries=ents((1, 2))))
    # Rejections and acknowledgements never shrink the log either.
    core.step(msg(MessageType.APPEND_RESP, "2", "1", 2, index=3, reject=True, reject_hint=0))
    assert log_of(core)[: len(before)] == before
    assert core.role is Role.LEADER


def test_commit_index_never_decreases_5_3() -> None:
    """Figure 2: commitIndex only grows; a leader's older message with a smaller
    commit index does not move a follower's back."""
    core = make(term=1, log_terms=[1, 1, 1])
    core.step(msg(MessageType.APPEND, "2", "1", 1, index=3, log_term=1, commit=3))
    core.step(msg(MessageType.APPEND, "2", "1", 1, index=2, log_term=1, commit=1))
    core.step(msg(MessageType.HEARTBEAT, "2", "1", 1, commit=1))
    assert core.log.committed == 3


def test_progress_tracks_follower_after_reject_5_3() -> None:
    """§5.3: after a rejection the leader decrements nextIndex and retries until the
    logs match; then it replicates the rest (here in one round thanks to the hint)."""
    core = make(term=1, log_terms=[1, 1, 1, 1])
    elect(core)
    pr = core.progress["2"]
    assert (pr.state, pr.next) == (ProgressState.PROBE, 5)
    core.step(
        msg(MessageType.APPEND_RESP, "2", "1", 2, index=4, reject=True, reject_hint=1, log_term=1)
    )
    retry = of_type(drain(core), MessageType.APPEND)
    assert [(m.to, m.index, m.log_term, [e.index for e in m.entries]) for m in retry] == [
        ("2", 1, 1, [2, 3, 4, 5])
    ]


def test_term_and_vote_survive_restart_5_2() -> None:
    """Figure 2 (persistent state: currentTerm, votedFor): a server that voted in a
    term and restarts still refuses a second candidate in that term."""
    c = Cluster(CFG)
    c.add_nodes(3)
    voter = c.core("1")
    voter.step(msg(MessageType.VOTE, "2", "1", 2, index=3, log_term=1))
    c.process_ready("1")
    c.crash("1")
    c.restart("1")
    restarted = c.core("1")
    assert (restarted.term, restarted.vote) == (2, "2")
    restarted.step(msg(MessageType.VOTE, "3", "1", 2, index=3, log_term=1))
    c.process_ready("1")
    replies = [m for _, m in c.nodes["1"].outbox if m.to == "3"]
    assert [(m.type, m.reject) for m in replies] == [(MessageType.VOTE_RESP, True)]
