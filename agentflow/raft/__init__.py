"""Raft consensus: a pure core, SQLite storage, an asyncio driver and a gRPC transport.

Knows nothing about tasks; the replicated state machine plugs in through `StateMachine`.
"""

from agentflow.raft.config import RaftConfig
from agentflow.raft.core import RaftCore, bootstrap_entries
from agentflow.raft.types import (
    NONE,
    CommitUnknownError,
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
    SnapshotMeta,
    SoftState,
)

__all__ = [
    "NONE",
    "CommitUnknownError",
    "ConfChange",
    "ConfChangeBusyError",
    "ConfChangeError",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MessageType",
    "NodeId",
    "NotLeaderError",
    "ProposalDroppedError",
    "RaftConfig",
    "RaftCore",
    "RaftError",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "bootstrap_entries",
]
