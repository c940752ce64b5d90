"""One simulated server: durable storage, a state machine, and the core between them.

`DurableStore` is what survives a crash: hard state, entries, latest snapshot,
updated only the way the `Ready` contract says. `AppliedState` is the state
machine: an append-only list of every applied entry, kept as its length and a
chained digest, so two nodes' states are equal exactly when their applied
sequences are.
"""

from __future__ import annotations

import enum
import hashlib
import random
from dataclasses import dataclass, field

from agentflow.raft.config import RaftConfig
from agentflow.raft.core import RaftCore
from agentflow.raft.testing.invariants import (
    DURABLE_STATE,
    PERSIST_BEFORE_SEND,
    InvariantViolation,
)
from agentflow.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    HardState,
    NodeId,
    Snapshot,
)


@dataclass(slots=True)
class AppliedState:
    """The state machine: (index, term) of the last applied entry and a digest of
    the whole applied sequence. Snapshot data is its encoding."""

    index: int = 0
    term: int = 0
    digest: bytes = b""

    def apply(self, e: Entry) -> None:
        h = hashlib.blake2b(self.digest, digest_size=12)
        h.update(b"%d/%d/%d/" % (e.index, e.term, e.type))
        h.update(e.data)
        self.digest = h.digest()
        self.index, self.term = e.index, e.term

    def encode(self) -> bytes:
        return b"%d:%d:%s" % (self.index, self.term, self.digest.hex().encode())

    @classmethod
    def decode(cls, data: bytes) -> AppliedState:
        if not data:
            return cls()
        index, term, digest = data.split(b":")
        return cls(int(index), int(term), bytes.fromhex(digest.decode()))


@dataclass(slots=True)
class DurableStore:
    """Simulated disk. `entries` are contiguous; they may start at or before the
    snapshot index (entries kept by compaction) but never leave a gap after it."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def snapshot_index(self) -> int:
        return self.snapshot.meta.index if self.snapshot else 0

    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snapshot_index()

    def term(self, index: int) -> int | None:
        if self.entries and self.entries[0].index <= index <= self.entries[-1].index:
            return self.entries[index - self.entries[0].index].term
        if self.snapshot is not None and index == self.snapshot.meta.index:
            return self.snapshot.meta.term
        return None

    def save_snapshot(self, snap: Snapshot) -> None:
        """A snapshot from the leader replaces the whole log."""
        self.snapshot = snap
        self.entries = []

    def append(self, node: NodeId, entries: list[Entry]) -> None:
        """Append, replacing any stored entries at the same or later indexes."""
        first = entries[0].index
        if first > self.last_index() + 1:
            raise InvariantViolation(
                PERSIST_BEFORE_SEND,
                f"{node} persists entries from {first} but storage ends at {self.last_index()}",
            )
        if first <= self.snapshot_index():
            raise InvariantViolation(
                PERSIST_BEFORE_SEND,
                f"{node} rewrites entry {first}, covered by its snapshot at "
                f"{self.snapshot_index()}",
            )
        if self.entries and first <= self.entries[-1].index:
            del self.entries[max(0, first - self.entries[0].index) :]
        self.entries.extend(Entry(e.term, e.index, e.type, e.data) for e in entries)

    def compact(self, node: NodeId, snap: Snapshot, point: int) -> None:
        """The host took `snap` and the core compacted to `point`: store the
        snapshot and drop the entries the core says to drop."""
        before = self.last_index()
        if self.snapshot is None or snap.meta.index > self.snapshot.meta.index:
            self.snapshot = snap
        if self.entries and point >= self.entries[0].index:
            del self.entries[: point - self.entries[0].index + 1]
        if self.last_index() < before or (
            self.entries and self.entries[0].index > self.snapshot_index() + 1
        ):
            raise InvariantViolation(
                DURABLE_STATE,
                f"{node}: compacting to {point} with a snapshot at {snap.meta.index} "
                f"lost stored entries (storage ended at {before})",
            )

    def restart_entries(self) -> list[Entry]:
        """What a restarting core is given: the entries after the snapshot."""
        after = self.snapshot_index()
        return [Entry(e.term, e.index, e.type, e.data) for e in self.entries if e.index > after]


class Status(enum.Enum):
    UP = "up"
    DOWN = "down"  # crashed, will restart
    REMOVED = "removed"  # taken out of the cluster and shut down for good


class CrashPoint(enum.Enum):
    """Where inside the handling of a Ready a scheduled crash happens."""

    BEFORE_PERSIST = "before-persist"  # the Ready is lost whole: unsynced writes
    AFTER_PERSIST = "after-persist"  # durable, but nothing sent or applied
    AFTER_SEND = "after-send"  # sent, but not applied


def apply_conf_change(conf: ConfState, cc: ConfChange) -> ConfState:
    """The host's own model of membership, kept to cross-check the core's."""
    voters = [n for n in conf.voters if n != cc.node_id]
    learners = [n for n in conf.learners if n != cc.node_id]
    addresses = dict(conf.addresses)
    if cc.type is ConfChangeType.ADD_LEARNER:
        learners.append(cc.node_id)
    elif cc.type is ConfChangeType.PROMOTE:
        voters.append(cc.node_id)
    else:
        addresses.pop(cc.node_id, None)
    if cc.address:
        addresses[cc.node_id] = cc.address
    return ConfState(
        tuple(sorted(voters)), tuple(sorted(learners)), tuple(sorted(addresses.items()))
    )


@dataclass(slots=True)
class PendingRead:
    node: NodeId
    min_index: int  # highest index any leader had committed when the read was requested


@dataclass(slots=True)
class Proposal:
    term: int
    data: bytes
    marker: bool = False


class SimNode:
    """A server's process: dies with a crash, except for `store`."""

    def __init__(self, node_id: NodeId, config: RaftConfig, tick_period: int) -> None:
        self.id = node_id
        self.cfg = config
        self.tick_period = tick_period
        self.store = DurableStore()
        self.core: RaftCore | None = None
        self.sm = AppliedState()
        self.conf = ConfState()  # membership as of `sm`, tracked by the host
        self.status = Status.DOWN
        self.incarnation = 0
        self.paused_until = 0
        self.crash_point: CrashPoint | None = None
        self.ready_scheduled = False
        # Proposals this incarnation made, by index, until applied or given up.
        self.pending: dict[int, Proposal] = {}
        self.max_term_seen = 0
        self.retired = False  # its removal is committed: it never rejoins

    def start(self, rng: random.Random) -> RaftCore:
        """Boot a fresh core from durable storage (a first start or a restart)."""
        st = self.store
        self.core = RaftCore(
            self.id,
            self.cfg,
            random.Random(rng.getrandbits(64)),
            hard_state=st.hard_state,
            snapshot=st.snapshot,
            entries=st.restart_entries(),
        )
        self.sm = AppliedState.decode(st.snapshot.data) if st.snapshot else AppliedState()
        self.conf = st.snapshot.meta.conf_state if st.snapshot else ConfState()
        self.status = Status.UP
        self.incarnation += 1
        self.crash_point = None
        self.ready_scheduled = False
        self.pending = {}
        self.max_term_seen = self.core.term
        return self.core

    def stop(self, status: Status) -> None:
        self.core = None
        self.status = status
        self.crash_point = None
        self.ready_scheduled = False
        self.pending = {}

    def live_core(self) -> RaftCore | None:
        return self.core if self.status is Status.UP else None

    def paused(self, now: int) -> bool:
        return now < self.paused_until
