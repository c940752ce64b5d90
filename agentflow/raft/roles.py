"""Follower and candidate behaviour, plus voting (Raft paper §5.2, §5.4.1; thesis §9.6)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from agentflow.raft.types import NONE, Message, MessageType, NodeId, ReadState, Role

if TYPE_CHECKING:
    from agentflow.raft.core import RaftCore


def tick_election(core: RaftCore) -> None:
    core.election_elapsed += 1
    if core.is_voter() and core.election_elapsed >= core.randomized_timeout:
        core.election_elapsed = 0
        if not core.lost_entries():
            core.campaign(pre_vote=core.cfg.pre_vote)


def handle_vote_request(core: RaftCore, m: Message) -> None:
    """Grant at most one vote per term, only to a log at least as up to date as ours.
    A pre-vote is granted on the same log rule, but only by a node that would itself
    consider the leader gone (the lease check in `RaftCore.step`)."""
    pre = m.type is MessageType.PRE_VOTE
    resp_type = MessageType.PRE_VOTE_RESP if pre else MessageType.VOTE_RESP
    can_vote = (
        core.vote == m.frm
        or (core.vote == NONE and core.lead == NONE)
        or (pre and m.term > core.term)
    )
    # A node that lost acknowledged entries may think a candidate missing them is
    # up to date: it must not vote until it has them again.
    if can_vote and core.log.is_up_to_date(m.index, m.log_term) and not core.lost_entries():
        # The reply carries the request's term so the candidate counts it.
        core.send(Message(resp_type, m.frm, core.id, term=m.term))
        if not pre:
            core.election_elapsed = 0
            core.vote = m.frm
    else:
        core.send(Message(resp_type, m.frm, core.id, term=core.term, reject=True))


def record_vote(core: RaftCore, node: NodeId, granted: bool) -> Literal["won", "lost", "pending"]:
    if node in core.conf.voters:
        core.votes.setdefault(node, granted)
    yes = sum(1 for v in core.votes.values() if v)
    no = len(core.votes) - yes
    if yes >= core.quorum():
        return "won"
    if no >= core.quorum():
        return "lost"
    return "pending"


def step_candidate(core: RaftCore, m: Message) -> None:
    if m.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT):
        # Someone already won this term (§5.2).
        core.become_follower(m.term, m.frm)
        step_follower(core, m)
        return
    wanted = MessageType.PRE_VOTE_RESP if core.role is Role.PRE_CANDIDATE else MessageType.VOTE_RESP
    if m.type is not wanted:
        return
    outcome = record_vote(core, m.frm, not m.reject)
    if outcome == "won":
        if core.role is Role.PRE_CANDIDATE:
            core.campaign(pre_vote=False)
        else:
            core.become_leader()
    elif outcome == "lost":
        core.become_follower(core.term, NONE)


def step_follower(core: RaftCore, m: Message) -> None:
    t = m.type
    if t is MessageType.APPEND:
        _heard_from_leader(core, m)
        handle_append(core, m)
    elif t is MessageType.HEARTBEAT:
        _heard_from_leader(core, m)
        core.log.commit_to(min(m.commit, core.log.last_index()))
        core.send(
            Message(MessageType.HEARTBEAT_RESP, m.frm, core.id, term=core.term, context=m.context)
        )
    elif t is MessageType.SNAPSHOT:
        _heard_from_leader(core, m)
        handle_snapshot(core, m)
    elif t is MessageType.TIMEOUT_NOW:
        if core.is_voter():
            core.campaign(pre_vote=False, transfer=True)
    elif t is MessageType.READ_INDEX_RESP:
        core.read_states.append(ReadState(m.index, m.context))
    elif t is MessageType.READ_INDEX and core.lead not in (NONE, core.id):
        # A stale forward (we were leader when it was sent): pass it on.
        m.to, m.term = core.lead, core.term
        core.send(m)


def _heard_from_leader(core: RaftCore, m: Message) -> None:
    core.election_elapsed = 0
    core.lead = m.frm


def handle_append(core: RaftCore, m: Message) -> None:
    log = core.log
    if m.index < log.committed:
        core.send(
            Message(MessageType.APPEND_RESP, m.frm, core.id, term=core.term, index=log.committed)
        )
        return
    last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
    if last_new is not None:
        core.send(Message(MessageType.APPEND_RESP, m.frm, core.id, term=core.term, index=last_new))
        return
    # Tell the leader where our log could match so it skips whole terms (etcd's hint).
    hint = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
    core.send(
        Message(
            MessageType.APPEND_RESP,
            m.frm,
            core.id,
            term=core.term,
            index=m.index,
            reject=True,
            reject_hint=hint,
            log_term=log.term(hint) or 0,
        )
    )


def handle_snapshot(core: RaftCore, m: Message) -> None:
    snap = m.snapshot
    assert snap is not None
    log = core.log
    meta = snap.meta
    if meta.index <= log.committed:
        index = log.committed
    elif log.match_term(meta.index, meta.term):
        # We already hold the entry the snapshot ends at: just fast-forward commit.
        # Entries after it may be a deposed leader's: acknowledge only what we know
        # matches the leader, or it would count us as holding entries we lack.
        log.commit_to(meta.index)
        index = meta.index
    else:
        log.restore(snap)
        core.snapshot = snap
        core.conf = meta.conf_state
        index = log.last_index()
    core.send(Message(MessageType.APPEND_RESP, m.frm, core.id, term=core.term, index=index))
