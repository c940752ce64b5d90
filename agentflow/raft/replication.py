"""Leader behaviour: log replication, commitment, heartbeats, CheckQuorum,
leadership transfer and ReadIndex (Raft paper §5.3, §5.4.2; thesis §3.10, §6.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentflow.raft.progress import Progress, ProgressState
from agentflow.raft.types import (
    NONE,
    Entry,
    Message,
    MessageType,
    NodeId,
    ReadState,
)

if TYPE_CHECKING:
    from agentflow.raft.core import RaftCore


def append_entries(core: RaftCore, entries: list[Entry]) -> None:
    last = core.log.append(entries)
    me = core.progress.get(core.id)
    if me is not None:
        me.maybe_update(last)
    maybe_commit(core)


def maybe_commit(core: RaftCore) -> bool:
    """Advance commit to the highest index stored on a quorum of voters, but only
    by counting replicas of an entry from the current term (§5.4.2)."""
    matches = sorted(
        (core.progress[n].match for n in core.conf.voters if n in core.progress), reverse=True
    )
    if len(matches) < core.quorum():
        return False
    candidate = matches[core.quorum() - 1]
    if candidate <= core.log.committed or core.log.term(candidate) != core.term:
        return False
    first_in_term = core.log.term(core.log.committed) != core.term
    core.log.commit_to(candidate)
    if first_in_term:
        _release_deferred_reads(core)
    return True


def broadcast_append(core: RaftCore, allow_empty: bool = False) -> None:
    for node in core.progress:
        if node != core.id:
            send_append(core, node, allow_empty)


def announce_commit(core: RaftCore) -> None:
    """Tell every follower the leader's commit index: appends already queued this turn
    carry it (their commit is raised to it, as if made now). A follower with none gets
    an empty append, or with `lazy_commit_announce` is told by the next append it gets
    anyway, or at the next tick by an empty one.

    Why lazily: nothing waits on a follower's commit index (a read through a follower
    learns it from the leader's heartbeat round), and an empty append plus its reply
    is a message each way per follower, per commit. On a lightly loaded cluster those
    messages took CPU from the work that was waiting on the leader."""
    covered: set[NodeId] = set()
    for m in core.msgs:
        if m.type is MessageType.APPEND and m.term == core.term:
            m.commit = max(m.commit, core.log.committed)
            covered.add(m.to)
    for node in core.progress:
        if node != core.id and node not in covered:
            if core.cfg.lazy_commit_announce:
                core.unannounced.add(node)
            else:
                send_append(core, node, allow_empty=True)


def announce_deferred_commit(core: RaftCore) -> None:
    """On a tick: followers that have not heard of the commit index since it last
    moved get an append (empty if they lack nothing)."""
    for node in sorted(core.unannounced):
        if node in core.progress:
            send_append(core, node, allow_empty=True)
    core.unannounced = set()


def send_append(core: RaftCore, node: NodeId, allow_empty: bool = False) -> bool:
    """Send what `node` is missing, or a snapshot if that was compacted away."""
    pr = core.progress[node]
    if pr.is_paused(core.cfg.max_inflight_msgs):
        return False
    log = core.log
    prev = pr.next - 1
    prev_term = log.term(prev)
    if prev_term is None:
        return _send_snapshot(core, node, pr)
    entries = log.slice(
        pr.next, log.last_index() + 1, core.cfg.max_entries_per_msg, core.cfg.max_bytes_per_msg
    )
    if not entries and not allow_empty and pr.state is ProgressState.REPLICATE:
        return False
    core.send(
        Message(
            MessageType.APPEND,
            node,
            core.id,
            term=core.term,
            index=prev,
            log_term=prev_term,
            entries=entries,
            commit=log.committed,
        )
    )
    pr.sent_entries(entries[-1].index if entries else prev, len(entries))
    core.unannounced.discard(node)
    return True


def _send_snapshot(core: RaftCore, node: NodeId, pr: Progress) -> bool:
    snap = core.snapshot
    if snap is None:
        return False  # cannot happen: the log is only compacted behind a snapshot
    core.send(Message(MessageType.SNAPSHOT, node, core.id, term=core.term, snapshot=snap))
    pr.become_snapshot(snap.meta.index)
    return True


def broadcast_heartbeat(core: RaftCore, context: bytes = b"") -> None:
    for node, pr in core.progress.items():
        if node == core.id:
            continue
        # Never let a follower commit past what it is known to hold.
        commit = min(pr.match, core.log.committed)
        core.send(
            Message(
                MessageType.HEARTBEAT, node, core.id, term=core.term, commit=commit, context=context
            )
        )


def tick_heartbeat(core: RaftCore) -> None:
    core.heartbeat_elapsed += 1
    core.election_elapsed += 1
    if core.election_elapsed >= core.cfg.election_ticks:
        core.election_elapsed = 0
        if core.cfg.check_quorum:
            if not _quorum_active(core):
                core.become_follower(core.term, NONE)
                return
            for node, pr in core.progress.items():
                pr.recent_active = node == core.id
        core.transferee = NONE  # a transfer that took a whole timeout has failed
    for node, pr in core.progress.items():
        if node == core.id:
            continue
        pr.idle_ticks += 1
        if pr.state is ProgressState.SNAPSHOT:
            pr.stall_ticks += 1
            if pr.stall_ticks > core.cfg.election_ticks:
                pr.become_probe()  # the snapshot was probably lost; try again
        elif pr.state is ProgressState.REPLICATE and pr.inflight:
            pr.stall_ticks += 1
            # Lost appends are normally found sooner, by the empty append a heartbeat
            # reply triggers; this covers a window too full to send even that.
            if pr.stall_ticks > core.cfg.election_ticks:
                pr.become_probe()
    if core.unannounced:
        announce_deferred_commit(core)
    if core.heartbeat_elapsed >= core.cfg.heartbeat_ticks:
        core.heartbeat_elapsed = 0
        broadcast_heartbeat(core, core.read_index.last_context())


def _quorum_active(core: RaftCore) -> bool:
    active = sum(
        1
        for n in core.conf.voters
        if n == core.id or (n in core.progress and core.progress[n].recent_active)
    )
    return active >= core.quorum()


def step_leader(core: RaftCore, m: Message) -> None:
    pr = core.progress.get(m.frm)
    if m.type is MessageType.READ_INDEX:
        handle_read_request(core, m.frm, m.context)
        return
    if pr is None:
        return
    pr.heard_from()
    if m.type is MessageType.APPEND_RESP:
        _handle_append_resp(core, m, pr)
    elif m.type is MessageType.HEARTBEAT_RESP:
        _handle_heartbeat_resp(core, m, pr)


def _handle_append_resp(core: RaftCore, m: Message, pr: Progress) -> None:
    if m.reject:
        hint = m.reject_hint
        if m.log_term > 0:
            hint = core.log.find_conflict_by_term(m.reject_hint, m.log_term)
        if pr.state is ProgressState.PROBE and m.index == pr.next - 1 and m.reject_hint < pr.match:
            # The follower once acknowledged `match`, yet answers the probe at it
            # by saying its log ends (or stops matching) before it: it lost
            # entries (a damaged disk). maybe_decr_to never probes below `match`,
            # which would leave it stuck for good; probe it from where it says it
            # is. (Only an answer to the current probe counts: a duplicate of an
            # old rejection would otherwise look the same.)
            core.follower_losses.append((m.frm, pr.match, m.reject_hint))
            pr.match = min(pr.match, m.reject_hint)
            pr.become_probe()
            pr.next = min(pr.next, hint + 1)
            send_append(core, m.frm)
            return
        if pr.maybe_decr_to(m.index, hint):
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
            send_append(core, m.frm)
        return
    # A paused follower was skipped by any commit broadcast made meanwhile.
    was_paused = pr.is_paused(core.cfg.max_inflight_msgs)
    if not pr.maybe_update(m.index):
        if not (pr.state is ProgressState.PROBE and pr.match == m.index):
            return
        pr.probe_sent = False  # the probe landed where we already were
    pr.stall_ticks = 0
    if pr.state is ProgressState.PROBE:
        pr.become_replicate()
    elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
        pr.become_probe()
        pr.become_replicate()
    if maybe_commit(core):
        # Followers learn the commit once per turn of the host's loop, riding on the
        # appends of that turn when there are any (see announce_commit, which also
        # says what happens to the others): acks of both followers arrive together
        # under load, and each announcement is a message and a reply per follower.
        core.announce_commit = True
    elif was_paused:
        send_append(core, m.frm, allow_empty=True)  # so it learns the commit index
    # Keep the pipeline full: send whatever else the follower lacks.
    while send_append(core, m.frm):
        pass
    if m.frm == core.transferee:
        continue_transfer(core)


def _handle_heartbeat_resp(core: RaftCore, m: Message, pr: Progress) -> None:
    pr.probe_sent = False
    if pr.match < core.log.last_index():
        # Even if everything is already in flight: an empty append makes a follower
        # that lost those messages reject it, and the leader probes back at once.
        send_append(core, m.frm, allow_empty=True)
    if not m.context:
        return
    acks = core.read_index.ack(m.context, m.frm)
    if acks is None or sum(1 for n in acks if n in core.conf.voters) < core.quorum():
        return
    for ctx, read in core.read_index.release_through(m.context):
        _answer_read(core, read.requester, read.index, ctx)


def _answer_read(core: RaftCore, requester: NodeId, index: int, context: bytes) -> None:
    if requester == core.id:
        core.read_states.append(ReadState(index, context))
    else:
        core.send(
            Message(
                MessageType.READ_INDEX_RESP,
                requester,
                core.id,
                term=core.term,
                index=index,
                context=context,
            )
        )


def handle_read_request(core: RaftCore, requester: NodeId, context: bytes) -> None:
    if core.log.term(core.log.committed) != core.term:
        # Until an entry of this term commits we do not know the true commit index.
        core.deferred_reads.append(
            Message(MessageType.READ_INDEX, core.id, requester, context=context)
        )
        return
    if core.quorum() == 1:
        _answer_read(core, requester, core.log.committed, context)
        return
    core.read_index.add(context, core.log.committed, requester, core.id)
    broadcast_heartbeat(core, context)


def _release_deferred_reads(core: RaftCore) -> None:
    deferred, core.deferred_reads = core.deferred_reads, []
    for m in deferred:
        handle_read_request(core, m.frm, m.context)


def continue_transfer(core: RaftCore) -> None:
    target = core.transferee
    pr = core.progress.get(target)
    if pr is None:
        core.transferee = NONE
        return
    if pr.match == core.log.last_index():
        core.send(Message(MessageType.TIMEOUT_NOW, target, core.id, term=core.term))
    else:
        send_append(core, target)


def report_unreachable(core: RaftCore, node: NodeId) -> None:
    pr = core.progress.get(node)
    if pr is not None and pr.state is ProgressState.REPLICATE:
        pr.become_probe()
