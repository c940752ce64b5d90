"""Human-readable, etcd-style descriptions of Raft messages, entries and Readies,
used by the scripted interaction tests and the harness's trace."""

from __future__ import annotations

import json
import re

from agentflow.raft.codec import decode_conf_change
from agentflow.raft.types import (
    NONE,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    NodeId,
    Ready,
    Role,
    SnapshotMeta,
)

MESSAGE_NAMES = {
    MessageType.APPEND: "MsgApp",
    MessageType.APPEND_RESP: "MsgAppResp",
    MessageType.VOTE: "MsgVote",
    MessageType.VOTE_RESP: "MsgVoteResp",
    MessageType.PRE_VOTE: "MsgPreVote",
    MessageType.PRE_VOTE_RESP: "MsgPreVoteResp",
    MessageType.HEARTBEAT: "MsgHeartbeat",
    MessageType.HEARTBEAT_RESP: "MsgHeartbeatResp",
    MessageType.SNAPSHOT: "MsgSnap",
    MessageType.TIMEOUT_NOW: "MsgTimeoutNow",
    MessageType.READ_INDEX: "MsgReadIndex",
    MessageType.READ_INDEX_RESP: "MsgReadIndexResp",
}
MESSAGE_TYPES = {name: t for t, name in MESSAGE_NAMES.items()}
ROLE_NAMES = {
    Role.FOLLOWER: "StateFollower",
    Role.PRE_CANDIDATE: "StatePreCandidate",
    Role.CANDIDATE: "StateCandidate",
    Role.LEADER: "StateLeader",
}
_CONF_PREFIX = {
    ConfChangeType.ADD_LEARNER: "l",
    ConfChangeType.PROMOTE: "v",
    ConfChangeType.REMOVE: "r",
}
_PLAIN = re.compile(rb"[ -~]*")


def quote(data: bytes) -> str:
    """Bytes as a double-quoted string: plain ASCII as is, anything else JSON-escaped."""
    if _PLAIN.fullmatch(data) and b'"' not in data and b"\\" not in data:
        return f'"{data.decode()}"'
    return json.dumps(data.decode("utf-8", "backslashreplace"))


def _id(node: NodeId) -> str:
    return node if node != NONE else "-"


def describe_entry(e: Entry) -> str:
    """`term/index EntryNormal "data"`; conf changes as etcd writes them: v3 (make 3 a
    voter), l4 (add 4 as a learner), r2 (remove 2)."""
    if e.type is EntryType.CONF_CHANGE:
        try:
            cc = decode_conf_change(e.data)
        except Exception:
            return f"{e.term}/{e.index} EntryConfChange <invalid>"
        return f"{e.term}/{e.index} EntryConfChange {_CONF_PREFIX[cc.type]}{cc.node_id}"
    return f"{e.term}/{e.index} EntryNormal {quote(e.data)}"


def describe_conf_state(cs: ConfState) -> str:
    return f"Voters:[{' '.join(cs.voters)}] Learners:[{' '.join(cs.learners)}]"


def describe_snapshot(meta: SnapshotMeta) -> str:
    return f"Index:{meta.index} Term:{meta.term} {describe_conf_state(meta.conf_state)}"


def describe_message(m: Message) -> str:
    """etcd's format: `1->2 MsgApp Term:2 Log:1/3 Commit:3 Entries:[2/4 EntryNormal ""]`,
    where Log is log_term/index."""
    out = f"{_id(m.frm)}->{_id(m.to)} {MESSAGE_NAMES[m.type]}"
    out += f" Term:{m.term} Log:{m.log_term}/{m.index}"
    if m.reject:
        out += f" Rejected (Hint: {m.reject_hint})"
    if m.commit:
        out += f" Commit:{m.commit}"
    if m.context:
        out += f" Context:{quote(m.context)}"
    if m.entries:
        out += " Entries:[" + ", ".join(describe_entry(e) for e in m.entries) + "]"
    if m.snapshot is not None:
        out += " Snapshot: " + describe_snapshot(m.snapshot.meta)
    return out


def describe_ready(rd: Ready) -> list[str]:
    lines = [f"Ready MustSync={str(rd.must_sync()).lower()}:"]
    if rd.soft_state is not None:
        lines.append(f"Lead:{_id(rd.soft_state.leader)} State:{ROLE_NAMES[rd.soft_state.role]}")
    if rd.hard_state is not None:
        hs = rd.hard_state
        lines.append(f"HardState Term:{hs.term} Vote:{_id(hs.vote)} Commit:{hs.commit}")
    if rd.snapshot is not None:
        lines.append("Snapshot " + describe_snapshot(rd.snapshot.meta))
    if rd.entries:
        lines.append("Entries:")
        lines.extend(describe_entry(e) for e in rd.entries)
    if rd.committed_entries:
        lines.append("CommittedEntries:")
        lines.extend(describe_entry(e) for e in rd.committed_entries)
    if rd.messages:
        lines.append("Messages:")
        lines.extend(describe_message(m) for m in rd.messages)
    if rd.read_states:
        lines.append("ReadStates:")
        lines.extend(f"Index:{r.index} Context:{quote(r.context)}" for r in rd.read_states)
    return lines
