"""The Raft state machine: no I/O, no clock, no asyncio.

Input is `step(message)`, `tick()`, `propose(...)` and the other request methods;
output is a `Ready` (see its docstring for the order the host must follow).
Between `ready()` and `advance()` the host must not call anything else on the
core, so each Ready is a consistent cut. Same state and same inputs always give
the same outputs; the only randomness is the election timeout, drawn from the
`random.Random` the host passes in.

Role behaviour lives in `roles.py` (follower, candidate) and `replication.py`
(leader); this module holds the state they share and the rules common to all
roles (terms, votes, membership).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from agentflow.raft import replication, roles
from agentflow.raft.codec import decode_conf_change, encode_conf_change
from agentflow.raft.config import RaftConfig
from agentflow.raft.guard import Membership, out_of_range
from agentflow.raft.log import RaftLog
from agentflow.raft.progress import Progress
from agentflow.raft.readindex import ReadIndexQueue
from agentflow.raft.types import (
    NONE,
    ConfChange,
    ConfChangeBusyError,
    ConfChangeError,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NodeId,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SoftState,
)

TRANSFER_CONTEXT = b"transfer"
StepFn = Callable[["RaftCore", Message], None]


def bootstrap_entries(members: dict[NodeId, str]) -> list[Entry]:
    """The first log entries of a new cluster: one voter per member, at term 1.

    Every founding member writes the same entries (and HardState(term=1,
    commit=len(members))) before its first start, so they agree on index 1..n and
    a node that joins later learns the founding membership from the log itself.
    """
    return [
        Entry(
            1,
            i,
            EntryType.CONF_CHANGE,
            encode_conf_change(ConfChange(ConfChangeType.PROMOTE, node, members[node])),
        )
        for i, node in enumerate(sorted(members), start=1)
    ]


class RaftCore:
    def __init__(
        self,
        node_id: NodeId,
        config: RaftConfig,
        rng: random.Random,
        *,
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: Sequence[Entry] = (),
        catch_up_to: int = 0,
    ) -> None:
        """Start from what storage holds: the latest snapshot, the entries after it
        and the hard state. Membership is the snapshot's; committed conf changes
        after it take effect again as the host re-applies the committed entries.

        `catch_up_to`: the highest index this node once held and knew committed
        (see `watermark.py`). While its log ends before that, it lost
        acknowledged entries: it neither votes, pre-votes nor campaigns until a
        leader has filled its log past that index."""
        hs = hard_state or HardState()
        self.id = node_id
        self.cfg = config
        self.rng = rng
        self.snapshot = snapshot
        self.log = RaftLog(snapshot.meta if snapshot else None)
        self.log.append(list(entries))
        self.log.stable_to(self.log.last_index())
        self.log.commit_to(min(max(hs.commit, self.log.committed), self.log.last_index()))
        self.term = hs.term
        self.vote = hs.vote
        self.conf = snapshot.meta.conf_state if snapshot else ConfState()
        self.lead: NodeId = NONE
        self.role = Role.FOLLOWER
        self.step_fn: StepFn = roles.step_follower
        self.tick_fn: Callable[[RaftCore], None] = roles.tick_election
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = 0
        self.votes: dict[NodeId, bool] = {}
        self.progress: dict[NodeId, Progress] = {}
        self.transferee: NodeId = NONE
        self.pending_conf_index = 0
        self.read_index = ReadIndexQueue()
        # Read requests that arrived before this leader committed an entry of its term.
        self.deferred_reads: list[Message] = []
        self.msgs: list[Message] = []
        # A leader's commit index moved this turn: followers hear of it in ready().
        self.announce_commit = False
        # Followers not yet told the current commit index (see replication.announce_commit).
        self.unannounced: set[NodeId] = set()
        self.read_states: list[ReadState] = []
        # (follower, match it had acknowledged, where its log now ends): the host
        # logs and clears these (see replication._handle_append_resp).
        self.follower_losses: list[tuple[NodeId, int, int]] = []
        self._prev_hard = hs
        self._prev_soft = SoftState(NONE, Role.FOLLOWER)
        self._ready_outstanding = False
        self.catch_up_to = catch_up_to if catch_up_to > self.log.last_index() else 0
        self._reset_randomized_timeout()

    # -- queries ---------------------------------------------------------------

    def is_voter(self, node: NodeId | None = None) -> bool:
        return (node or self.id) in self.conf.voters

    def lost_entries(self) -> bool:
        """This node's log ends before what it had acknowledged (see `catch_up_to`)."""
        if self.catch_up_to and self.log.last_index() >= self.catch_up_to:
            self.catch_up_to = 0
        return self.catch_up_to > 0

    def quorum(self) -> int:
        return len(self.conf.voters) // 2 + 1

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def edge_view(self, sender: NodeId) -> Membership:
        """What `guard.refusal` needs to judge a message from `sender`. Nodes added
        by membership changes not yet applied count as members (this node is about
        to learn of them); the log is only scanned for a sender outside the
        configuration, which is rare."""
        members = self.conf.members()
        if sender not in members:
            log = self.log
            for e in log.slice(max(log.applied, log.base_index) + 1, log.last_index() + 1):
                if e.type is EntryType.CONF_CHANGE:
                    cc = decode_conf_change(e.data)
                    if cc.type is not ConfChangeType.REMOVE:
                        members += (cc.node_id,)
        return Membership(members, self.id in self.conf.members(), self.term, self.lead)

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    # -- role transitions ------------------------------------------------------

    def _reset(self, term: int) -> None:
        if out_of_range(term):
            # guard.refusal keeps such terms out; reaching here is a bug, and the
            # term must not reach storage (it would outlive every restart).
            raise RaftError(
                f"term: {term} is outside [0, 2**62); a message got past the edge check"
            )
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_timeout()
        self.votes = {}
        self.transferee = NONE
        self.read_index.clear()
        self.deferred_reads = []
        self.announce_commit = False
        self.unannounced = set()

    def _reset_randomized_timeout(self) -> None:
        self.randomized_timeout = self.cfg.election_ticks + self.rng.randrange(
            self.cfg.election_ticks
        )

    def become_follower(self, term: int, lead: NodeId) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.lead = lead
        self.step_fn = roles.step_follower
        self.tick_fn = roles.tick_election

    def become_pre_candidate(self) -> None:
        # Term and vote stay as they are: a pre-vote disturbs nobody.
        self.role = Role.PRE_CANDIDATE
        self.step_fn = roles.step_candidate
        self.tick_fn = roles.tick_election
        self.votes = {}
        self.lead = NONE

    def become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self.step_fn = roles.step_candidate
        self.tick_fn = roles.tick_election

    def become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.lead = self.id
        self.step_fn = replication.step_leader
        self.tick_fn = replication.tick_heartbeat
        last = self.log.last_index()
        self.progress = {n: self._new_progress(n, last) for n in self.conf.members()}
        # A conf change may only follow once everything up to here is applied.
        self.pending_conf_index = last
        replication.append_entries(self, [Entry(self.term, last + 1)])
        replication.broadcast_append(self)

    def _new_progress(self, node: NodeId, last: int) -> Progress:
        pr = Progress(next=last + 1, is_learner=node in self.conf.learners)
        if node == self.id:
            pr.match = last
            pr.become_replicate()
            pr.next = last + 1
        return pr

    def campaign(self, pre_vote: bool, transfer: bool = False) -> None:
        if pre_vote:
            self.become_pre_candidate()
            mtype, term = MessageType.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            mtype, term = MessageType.VOTE, self.term
        if roles.record_vote(self, self.id, granted=True) == "won":
            # A single-voter cluster wins at once.
            if pre_vote:
                self.campaign(pre_vote=False)
            else:
                self.become_leader()
            return
        ctx = TRANSFER_CONTEXT if transfer else b""
        for node in self.conf.voters:
            if node != self.id:
                self.send(
                    Message(
                        mtype,
                        node,
                        self.id,
                        term=term,
                        index=self.log.last_index(),
                        log_term=self.log.last_term(),
                        context=ctx,
                    )
                )

    # -- inputs ----------------------------------------------------------------

    def _check_idle(self) -> None:
        if self._ready_outstanding:
            raise RuntimeError("call advance() before giving the core more input")

    def tick(self) -> None:
        self._check_idle()
        self.tick_fn(self)

    def step(self, m: Message) -> None:
        """Handle a message from a peer: the term rules common to every role, then
        the role's own step function."""
        self._check_idle()
        if m.term > self.term:
            if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
                in_lease = (
                    self.cfg.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.cfg.election_ticks
                )
                if in_lease and m.context != TRANSFER_CONTEXT:
                    return  # we heard from a live leader recently: ignore the disruption
            if m.type is MessageType.PRE_VOTE or (
                m.type is MessageType.PRE_VOTE_RESP and not m.reject
            ):
                pass  # pre-votes never change terms; a granted one carries the future term
            elif m.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT):
                self.become_follower(m.term, m.frm)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if m.type in (MessageType.APPEND, MessageType.HEARTBEAT) and (
                self.cfg.check_quorum or self.cfg.pre_vote
            ):
                # A deposed leader that never hears our term would keep a partitioned
                # follower's pre-votes failing forever; tell it.
                self.send(Message(MessageType.APPEND_RESP, m.frm, self.id, term=self.term))
            elif m.type is MessageType.PRE_VOTE:
                self.send(
                    Message(MessageType.PRE_VOTE_RESP, m.frm, self.id, term=self.term, reject=True)
                )
            return

        if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
            roles.handle_vote_request(self, m)
            return
        self.step_fn(self, m)

    def propose(self, commands: Sequence[bytes]) -> tuple[int, int]:
        """Append commands as entries. Returns (index of the first, term). Each is
        applied at its index only if the entry applied there has the same term."""
        self._check_idle()
        self._require_leader()
        if self.transferee != NONE:
            raise ProposalDroppedError(f"leadership is moving to {self.transferee}")
        first = self.log.last_index() + 1
        if commands:
            replication.append_entries(
                self,
                [Entry(self.term, first + i, EntryType.NORMAL, c) for i, c in enumerate(commands)],
            )
            replication.broadcast_append(self)
        return first, self.term

    def propose_conf_change(self, cc: ConfChange) -> tuple[int, int]:
        """Single-server membership change. Takes effect when applied; only one may
        be in flight. Voters are added as learners first and promoted later."""
        self._check_idle()
        self._require_leader()
        if self.transferee != NONE:
            raise ProposalDroppedError(f"leadership is moving to {self.transferee}")
        if self.pending_conf_index > self.log.applied:
            raise ConfChangeBusyError(
                "a membership change is still in progress "
                f"(index {self.pending_conf_index}, applied {self.log.applied})"
            )
        self._validate_conf_change(cc)
        index = self.log.last_index() + 1
        entry = Entry(self.term, index, EntryType.CONF_CHANGE, encode_conf_change(cc))
        replication.append_entries(self, [entry])
        self.pending_conf_index = index
        replication.broadcast_append(self)
        return index, self.term

    def _validate_conf_change(self, cc: ConfChange) -> None:
        node = cc.node_id
        if not node:
            raise ConfChangeError("node_id: must not be empty")
        if cc.type is ConfChangeType.ADD_LEARNER:
            if node in self.conf.members():
                raise ConfChangeError(f"node_id: {node!r} is already a member")
            if not cc.address:
                raise ConfChangeError(f"address: required to add {node!r}")
        elif cc.type is ConfChangeType.PROMOTE:
            if node not in self.conf.learners:
                raise ConfChangeError(f"node_id: {node!r} is not a learner; add it first")
        elif cc.type is ConfChangeType.REMOVE:
            if node not in self.conf.members():
                raise ConfChangeError(f"node_id: {node!r} is not a member")
            if self.conf.voters == (node,):
                raise ConfChangeError(f"node_id: {node!r} is the last voter")

    def transfer_leadership(self, target: NodeId) -> None:
        """Hand leadership to `target` once its log is current (thesis §3.10).
        Proposals are refused meanwhile; the attempt ends after an election timeout."""
        self._check_idle()
        self._require_leader()
        if target == self.id:
            return
        if target not in self.conf.voters:
            raise ConfChangeError(f"target: {target!r} is not a voter")
        if self.transferee == target:
            return
        self.transferee = target
        self.election_elapsed = 0
        replication.continue_transfer(self)

    def request_read(self, context: bytes) -> None:
        """Ask for a linearizable read point; it comes back as a ReadState in a Ready
        with the same context (or never, if leadership is lost: the host times out)."""
        self._check_idle()
        if self.role is Role.LEADER:
            replication.handle_read_request(self, self.id, context)
        elif self.lead != NONE:
            self.send(
                Message(MessageType.READ_INDEX, self.lead, self.id, term=self.term, context=context)
            )
        else:
            raise NotLeaderError(NONE, "no leader known to confirm a read")

    def report_unreachable(self, node: NodeId) -> None:
        """The transport could not deliver to `node`: stop streaming optimistically."""
        self._check_idle()
        replication.report_unreachable(self, node)

    def compact(self, snapshot: Snapshot, keep_entries: int = 0) -> int:
        """The host took `snapshot` of its state machine at an applied index. Keep it
        for lagging followers and drop log entries it covers, except the last
        `keep_entries` (so a slightly slow follower still gets entries, not a
        snapshot). Returns the index through which the host may drop entries from
        storage: never past `snapshot`, even when the in-memory log already starts
        later (a leader's snapshot received but not yet persisted may still be lost
        in a crash, and then the stored entries after `snapshot` are needed)."""
        self._check_idle()
        if snapshot.meta.index > self.log.applied:
            raise ValueError(
                f"snapshot index {snapshot.meta.index} is beyond applied {self.log.applied}"
            )
        if self.snapshot is None or snapshot.meta.index > self.snapshot.meta.index:
            self.snapshot = snapshot
        point = max(0, snapshot.meta.index - keep_entries)
        self.log.compact(point)
        return point

    def _require_leader(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.lead)

    # -- output ----------------------------------------------------------------

    def send(self, m: Message) -> None:
        self.msgs.append(m)

    def has_ready(self) -> bool:
        return bool(
            self.msgs
            or self.announce_commit
            or self.read_states
            or self.log.pending_snapshot is not None
            or self.log.unstable_from <= self.log.last_index()
            or self.log.committed > self.log.applied
            or self.hard_state() != self._prev_hard
            or self.soft_state() != self._prev_soft
        )

    def ready(self) -> Ready:
        self._check_idle()
        if self.announce_commit:
            self.announce_commit = False
            if self.role is Role.LEADER:
                replication.announce_commit(self)
        rd = Ready(
            entries=list(self.log.unstable_entries()),
            snapshot=self.log.pending_snapshot,
            messages=self.msgs,
            committed_entries=self.log.next_committed(),
            read_states=self.read_states,
        )
        hs = self.hard_state()
        if hs != self._prev_hard:
            rd.hard_state = hs
        ss = self.soft_state()
        if ss != self._prev_soft:
            rd.soft_state = ss
        self.msgs = []
        self.read_states = []
        self._ready_outstanding = True
        return rd

    def advance(self, rd: Ready) -> None:
        """The host has handled `rd` in the documented order."""
        self._ready_outstanding = False
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.snapshot is not None:
            self.log.pending_snapshot = None
            self.log.applied = max(self.log.applied, rd.snapshot.meta.index)
        if rd.entries:
            self.log.stable_to(rd.entries[-1].index)
        for e in rd.committed_entries:
            if e.type is EntryType.CONF_CHANGE:
                self._apply_conf_change(decode_conf_change(e.data))
        if rd.committed_entries:
            self.log.applied_to(rd.committed_entries[-1].index)

    # -- membership --------------------------------------------------------------

    def _apply_conf_change(self, cc: ConfChange) -> None:
        voters = [n for n in self.conf.voters if n != cc.node_id]
        learners = [n for n in self.conf.learners if n != cc.node_id]
        addresses = self.conf.address_map()
        if cc.type is ConfChangeType.ADD_LEARNER:
            learners.append(cc.node_id)
        elif cc.type is ConfChangeType.PROMOTE:
            voters.append(cc.node_id)
        else:
            addresses.pop(cc.node_id, None)
        if cc.address:
            addresses[cc.node_id] = cc.address
        self.set_conf(
            ConfState(
                tuple(sorted(voters)), tuple(sorted(learners)), tuple(sorted(addresses.items()))
            )
        )

    def set_conf(self, conf: ConfState) -> None:
        self.conf = conf
        if self.role is not Role.LEADER:
            return
        if self.id not in conf.voters:
            # Removed (or demoted) leaders step down; the rest elect a successor.
            self.become_follower(self.term, NONE)
            return
        last = self.log.last_index()
        for node in conf.members():
            if node not in self.progress:
                self.progress[node] = self._new_progress(node, last)
                self.progress[node].is_learner = node in conf.learners
                # Probe the newcomer now rather than at the next heartbeat.
                replication.send_append(self, node, allow_empty=True)
            self.progress[node].is_learner = node in conf.learners
        for node in list(self.progress):
            if node not in conf.members():
                del self.progress[node]
        if self.transferee not in conf.voters:
            self.transferee = NONE
        if replication.maybe_commit(self):
            replication.broadcast_append(self)
