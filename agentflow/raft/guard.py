"""The edge check for inbound Raft messages: what a peer may send us at all.

Pure (no I/O, no clock): the gRPC transport, the driver and the simulator all call
`refusal()` before a message reaches a core, and a refused message is counted and
dropped, never stepped and never stored. Raft tolerates lost messages, so refusing
one costs at most a retry; stepping a malformed one can cost the cluster.

What is refused, and why:

- Bounds. Every term and index must be below `LIMIT` (2**62). SQLite stores
  integers as signed 64-bit and the core computes `term + 1` (a campaign, a
  pre-vote) and `index + 1`: a term of 2**64-1 once left every node of a cluster
  unable to campaign, for good, because the term had been persisted. Context bytes
  are capped at `MAX_CONTEXT`.
- Shape. `to` is this node; `from` is set and is not this node; only an append
  carries entries, and they follow `index` contiguously with terms that never
  decrease, start at or above `log_term` and never exceed the message's term; only
  a snapshot message carries a snapshot, whose term is at most the message's.
- Connection identity. The stream or call carries the sender's node id (gRPC
  metadata `raft-from`; with mTLS this becomes the certificate's identity, see
  `transport.peer_identity`), and every message on it must say the same `from`.
- Membership. The sender must be a member of the receiver's configuration, or be
  named by a membership change in the receiver's log that it has not applied yet
  (the receiver is about to learn of it). A node that is not itself a member of
  the configuration it knows (a node that is joining and has not applied the
  entry that adds it, or has no configuration at all) accepts any sender, since it
  cannot yet tell who the members are: that window closes as soon as it applies
  its own addition. Caveat: a member that missed every entry which added the
  current leader (it was down for all of it) refuses that leader until leadership
  passes to a node it knows; `refusal` names the sender so the log says who.
- One leader per term. A leader's message (append, heartbeat, snapshot,
  TimeoutNow) at the receiver's own term from any node but the leader it already
  follows in that term is refused: Election Safety says there is no such leader.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from agentflow.raft.types import NONE, Message, MessageType, NodeId

LIMIT = 1 << 62  # every term and index must be < LIMIT (`+ 1` then stays < 2**63)
MAX_CONTEXT = 1024  # bytes; read-index request ids and the transfer marker are short
_LEADER_TYPES = frozenset(
    {MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT, MessageType.TIMEOUT_NOW}
)


class Refusal(enum.Enum):
    """Why a message was refused; the value is the counter's name."""

    OUT_OF_RANGE = "out_of_range"
    MALFORMED = "malformed"
    MISADDRESSED = "misaddressed"
    SENDER_MISMATCH = "sender_mismatch"
    NON_MEMBER = "non_member"
    SECOND_LEADER = "second_leader"


@dataclass(frozen=True, slots=True)
class Membership:
    """What the receiver knows when a message arrives (see `view` in core.py).

    `members`: voters and learners of its configuration, plus every node a
    membership change in its not yet applied log adds. `is_member`: the receiver
    itself is in that configuration. `term`, `leader`: its current term and the
    leader it follows in it (NONE if none)."""

    members: tuple[NodeId, ...]
    is_member: bool
    term: int
    leader: NodeId


def out_of_range(value: int) -> bool:
    return not 0 <= value < LIMIT


def refusal(
    m: Message, me: NodeId, peer: NodeId | None, view: Membership
) -> tuple[Refusal, str] | None:
    """None if node `me` may step `m`, which arrived on a connection from `peer`;
    else why not (the kind, and a detail naming the field). The real path splits
    this in two, each where its inputs are known: the transport calls
    `wire_refusal` and the driver `membership_refusal`."""
    return wire_refusal(m, me, peer) or membership_refusal(m, view)


def wire_refusal(m: Message, me: NodeId, peer: NodeId | None) -> tuple[Refusal, str] | None:
    """The checks that need only the message and its connection: bounds, shape,
    and that `from` is the connection's declared sender `peer` (None: the
    connection declared none, which is refused too)."""
    bad = _bounds(m) or _shape(m, me)
    if bad is not None:
        return bad
    if m.frm != peer:
        return Refusal.SENDER_MISMATCH, f"from: {m.frm!r} on a connection from {peer!r}"
    return None


def membership_refusal(m: Message, view: Membership) -> tuple[Refusal, str] | None:
    """The checks that need the receiver's state (see `Membership`)."""
    if view.is_member and m.frm not in view.members:
        return Refusal.NON_MEMBER, f"from: {m.frm!r} is not a member"
    if m.type in _LEADER_TYPES and m.term == view.term and view.leader not in (NONE, m.frm):
        return (
            Refusal.SECOND_LEADER,
            f"from: {m.frm!r} acts as leader of term {m.term}, led by {view.leader!r}",
        )
    return None


def _bounds(m: Message) -> tuple[Refusal, str] | None:
    for name in ("term", "log_term", "index", "commit", "reject_hint"):
        if out_of_range(getattr(m, name)):
            return Refusal.OUT_OF_RANGE, f"{name}: {getattr(m, name)} is outside [0, 2**62)"
    for e in m.entries:
        if out_of_range(e.term) or out_of_range(e.index):
            detail = f"entries: term {e.term} index {e.index} outside [0, 2**62)"
            return Refusal.OUT_OF_RANGE, detail
    if m.snapshot is not None:
        meta = m.snapshot.meta
        if out_of_range(meta.index) or out_of_range(meta.term):
            return (
                Refusal.OUT_OF_RANGE,
                f"snapshot: index {meta.index} term {meta.term} outside [0, 2**62)",
            )
    if len(m.context) > MAX_CONTEXT:
        return Refusal.OUT_OF_RANGE, f"context: {len(m.context)} bytes, at most {MAX_CONTEXT}"
    return None


def _shape(m: Message, me: NodeId) -> tuple[Refusal, str] | None:
    if m.to != me:
        return Refusal.MISADDRESSED, f"to: {m.to!r}, this node is {me!r}"
    if not m.frm or m.frm == me:
        return Refusal.MALFORMED, f"from: {m.frm!r} cannot send to {me!r}"
    if m.log_term > m.term:
        return Refusal.MALFORMED, f"log_term: {m.log_term} is beyond term {m.term}"
    if m.entries:
        if m.type is not MessageType.APPEND:
            return Refusal.MALFORMED, f"entries: a {m.type.name} carries none"
        prev_term = m.log_term
        for i, e in enumerate(m.entries):
            if e.index != m.index + 1 + i:
                return Refusal.MALFORMED, f"entries: index {e.index} does not follow {m.index + i}"
            if not prev_term <= e.term <= m.term:
                return (
                    Refusal.MALFORMED,
                    f"entries: term {e.term} at {e.index} outside [{prev_term}, {m.term}]",
                )
            prev_term = e.term
    if (m.snapshot is not None) != (m.type is MessageType.SNAPSHOT):
        return Refusal.MALFORMED, f"snapshot: {m.type.name} must carry one exactly when a snapshot"
    if m.snapshot is not None:
        meta = m.snapshot.meta
        if meta.term > m.term or meta.index == 0:
            return (
                Refusal.MALFORMED,
                f"snapshot: index {meta.index} term {meta.term} with message term {m.term}",
            )
    return None


@dataclass(slots=True)
class RefusalLog:
    """Counts refusals by kind and decides which to log: at most one line per kind
    per `interval` seconds, saying how many were refused since. The caller passes
    the time, so this stays pure."""

    interval: float = 10.0
    counts: dict[Refusal, int] = field(default_factory=dict)
    _last: dict[Refusal, float] = field(default_factory=dict)
    _since: dict[Refusal, int] = field(default_factory=dict)

    def record(self, kind: Refusal, now: float) -> int:
        """Count one refusal; returns how many to report now (0: stay quiet)."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self._since[kind] = self._since.get(kind, 0) + 1
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            return 0
        self._last[kind] = now
        n, self._since[kind] = self._since[kind], 0
        return n
