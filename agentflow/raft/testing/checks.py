"""How the simulator applies the invariant checkers to its nodes after each step,
and the host-side checks of the Ready contract (nothing leaves before it is
durable; nothing is applied that is not durable and committed)."""

from __future__ import annotations

from collections.abc import Iterable

from agentflow.raft.testing import invariants as inv
from agentflow.raft.testing.invariants import InvariantViolation
from agentflow.raft.testing.simnode import SimNode
from agentflow.raft.types import Entry, Message, MessageType, NodeId, Role


class SafetyChecks:
    """Every checker with whole-run history, fed from the live cores."""

    def __init__(self) -> None:
        self.elections = inv.ElectionRecord()
        self.append_only = inv.LeaderAppendOnly()
        self.log_watch = inv.LogWatcher(inv.LogMatchingIndex())
        self.history = inv.AppliedHistory()
        self.commits = inv.CommitRecord()
        self.durable = inv.DurableStateMonitor()

    def forget(self, node: NodeId) -> None:
        """`node` restarted: its in-memory log and leadership start afresh."""
        self.log_watch.forget(node)
        self.append_only.forget(node)

    def after_step(self, nodes: Iterable[SimNode]) -> list[tuple[NodeId, int]]:
        """Check every live core; returns the (node, term) leaderships first seen."""
        live = [n for n in nodes if n.live_core() is not None]
        new_leaders: list[tuple[NodeId, int]] = []
        for node in live:
            core = node.core
            assert core is not None
            if core.term < node.max_term_seen:
                raise InvariantViolation(
                    inv.DURABLE_STATE,
                    f"{node.id}: term went {node.max_term_seen} -> {core.term} while running",
                )
            node.max_term_seen = core.term
            if core.role is Role.LEADER:
                if self.elections.observe(core.term, node.id):
                    new_leaders.append((node.id, core.term))
                    self.commits.check_leader(node.id, core.term, core.log)
                self.append_only.observe(node.id, core.term, node.incarnation, core.log)
                if core.log.committed > self.commits.max_index:
                    self._new_commits(node, live)
            elif core.log.committed > self.commits.max_index:
                raise InvariantViolation(
                    inv.LEADER_COMPLETENESS,
                    f"{node.id} has commit index {core.log.committed}; no leader committed "
                    f"beyond {self.commits.max_index}",
                )
            self.log_watch.observe(node.id, core.log)
        return new_leaders

    def _new_commits(self, leader: SimNode, live: list[SimNode]) -> None:
        core = leader.core
        assert core is not None
        new = self.commits.add(leader.id, core.term, core.log)
        for other in live:
            oc = other.core
            if oc is not None and oc.role is Role.LEADER and oc.term > core.term:
                self.commits.check_leader(other.id, oc.term, oc.log, new.start, new.stop - 1)

    def full(self, nodes: Iterable[SimNode]) -> None:
        """The pairwise Log Matching check over every live in-memory log."""
        inv.check_log_matching({n.id: n.core.log for n in nodes if n.core is not None})

    def applying(self, node: SimNode, e: Entry) -> None:
        """Before `node` applies `e`: it is the next entry, durable, and committed."""
        if e.index != node.sm.index + 1:
            raise InvariantViolation(
                inv.STATE_MACHINE_SAFETY, f"{node.id} applies {e.index} after {node.sm.index}"
            )
        if node.store.term(e.index) != e.term:
            raise InvariantViolation(
                inv.PERSIST_BEFORE_SEND,
                f"{node.id} applies entry {e.index} (term {e.term}) not in its storage",
            )
        if e.index > self.commits.max_index or self.commits.entry_term[e.index] != e.term:
            raise InvariantViolation(
                inv.STATE_MACHINE_SAFETY,
                f"{node.id} applies entry {e.index} (term {e.term}), which no leader committed",
            )


def check_ack_matches_leader(node: SimNode, m: Message, leader: SimNode | None) -> None:
    """An append acknowledgement for index i in term T says the sender's log equals
    the term-T leader's up to i. Checked while both are still in term T (the
    leader's log only grows then, and the follower's only changes to match it)."""
    core = node.core
    if (
        m.type is not MessageType.APPEND_RESP
        or m.reject
        or m.index == 0
        or leader is None
        or leader.core is None
        or core is None
        or core.term != m.term
        or leader.core.term != m.term
        or leader.core.role is not Role.LEADER
    ):
        return
    mine, theirs = core.log.term(m.index), leader.core.log.term(m.index)
    if mine is not None and theirs is not None and mine != theirs:
        raise InvariantViolation(
            inv.LOG_MATCHING,
            f"{node.id} acknowledged entries up to {m.index} to {leader.id} (term {m.term}) "
            f"but holds term {mine} there, the leader term {theirs}",
        )


def check_sent(node: SimNode, m: Message) -> None:
    """What `m` promises is already on `node`'s disk."""
    hs = node.store.hard_state
    t = m.type
    if t in (MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP):
        return  # carry a future term on purpose
    if hs.term < m.term:
        raise InvariantViolation(
            inv.PERSIST_BEFORE_SEND,
            f"{node.id} sent {t.name} at term {m.term} with durable term {hs.term}",
        )
    # A vote (or a candidacy) in term T must be durable before it is announced,
    # unless the node has durably moved past T: then it can never vote in T again.
    if (t is MessageType.VOTE or (t is MessageType.VOTE_RESP and not m.reject)) and (
        hs.term == m.term and hs.vote != (node.id if t is MessageType.VOTE else m.to)
    ):
        raise InvariantViolation(
            inv.PERSIST_BEFORE_SEND,
            f"{node.id} sent {t.name} to {m.to} in term {m.term}; durable {hs}",
        )
    # Likewise an acknowledgement from a term the node has durably left: the entries
    # it covers may since have been overwritten by a newer leader (before they were
    # ever persisted), which is safe, as the node can no longer help anyone elect a
    # leader of the old term or commit in it.
    if (
        t is MessageType.APPEND_RESP
        and not m.reject
        and hs.term == m.term
        and m.index > node.store.last_index()
    ):
        raise InvariantViolation(
            inv.PERSIST_BEFORE_SEND,
            f"{node.id} acknowledged entries up to {m.index} but stored only up to "
            f"{node.store.last_index()}",
        )
