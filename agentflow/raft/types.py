"""Plain data shared by the Raft core, its storage and its transports.

The core works on these slot dataclasses rather than protobuf objects: they are
cheap to build in the hot path and the simulator can copy them freely.
`agentflow.raft.codec` converts them to and from the wire format.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NodeId = str
NONE: NodeId = ""  # "no node": no vote cast, no known leader


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class ConfChangeType(enum.IntEnum):
    ADD_LEARNER = 0
    PROMOTE = 1
    REMOVE = 2


class MessageType(enum.IntEnum):
    APPEND = 1
    APPEND_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    TIMEOUT_NOW = 10
    READ_INDEX = 11
    READ_INDEX_RESP = 12


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(slots=True, frozen=True)
class ConfChange:
    type: ConfChangeType
    node_id: NodeId
    address: str = ""


@dataclass(slots=True, frozen=True)
class ConfState:
    """Membership at some log index. Addresses travel with it so a node
    restored from a snapshot knows how to reach every member."""

    voters: tuple[NodeId, ...] = ()
    learners: tuple[NodeId, ...] = ()
    addresses: tuple[tuple[NodeId, str], ...] = ()

    def address_map(self) -> dict[NodeId, str]:
        return dict(self.addresses)

    def members(self) -> tuple[NodeId, ...]:
        return self.voters + self.learners


@dataclass(slots=True, frozen=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(slots=True, frozen=True)
class Snapshot:
    """A state-machine image taken at `meta.index`; `data` is opaque to Raft."""

    meta: SnapshotMeta
    data: bytes = b""


@dataclass(slots=True, frozen=True)
class HardState:
    """What must be durable before any message that depends on it is sent."""

    term: int = 0
    vote: NodeId = NONE
    commit: int = 0


@dataclass(slots=True)
class Message:
    type: MessageType
    to: NodeId
    frm: NodeId
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: Snapshot | None = None


@dataclass(slots=True, frozen=True)
class ReadState:
    """A linearizable read may be served once the local applied index reaches
    `index`. `context` is the caller's request id."""

    index: int
    context: bytes


@dataclass(slots=True, frozen=True)
class SoftState:
    """Volatile state the host may react to; never persisted."""

    leader: NodeId
    role: Role


@dataclass(slots=True)
class Ready:
    """One batch of work handed from the core to its host.

    The host must handle the fields in this order, then call `core.advance(ready)`:

    1. `snapshot` (if any) is saved, then `entries` are appended (replacing any
       stored entries at the same or later indexes), then `hard_state` (if any) is
       saved; all three durably (fsync) and atomically, in one transaction.
    2. Only then are `messages` sent. A vote or an append acknowledgement must
       never leave before the state it promises is on disk.
    3. Then the snapshot is installed into the state machine, followed by
       `committed_entries` in order. They are never ahead of what step 1 made
       durable locally.
    4. `read_states` are answered once the applied index reaches each one's index.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)

    def must_sync(self) -> bool:
        return bool(self.hard_state is not None or self.entries or self.snapshot is not None)


class RaftError(Exception):
    """Base class of errors raised by the Raft module."""


class NotLeaderError(RaftError):
    """The node cannot accept the request; `leader` is the node that can, if known."""

    def __init__(self, leader: NodeId, message: str = "") -> None:
        self.leader = leader
        super().__init__(message or f"not the leader (leader: {leader or 'unknown'})")


class ProposalDroppedError(RaftError):
    """The proposal was not accepted or was overwritten by another leader's entry.
    It was never applied, so retrying it is safe."""


class CommitUnknownError(RaftError):
    """The proposal was appended but this node can no longer tell whether it was
    committed (it stopped, or a snapshot replaced its log). A retry may apply the
    command twice unless the command itself is idempotent (request ids)."""


class ConfChangeError(RaftError):
    """A membership change was refused; the message says which rule it broke."""


class ConfChangeBusyError(ConfChangeError):
    """Another membership change is still being applied; retry once it is."""
