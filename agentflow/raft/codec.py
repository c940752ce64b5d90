"""Conversion between the core's dataclasses and the protobuf wire format."""

from __future__ import annotations

from agentflow._proto import raft_pb2 as pb
from agentflow.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)


class CodecError(ValueError):
    """Bytes that do not decode to a valid value; names the field at fault."""


def encode_conf_change(cc: ConfChange) -> bytes:
    return pb.ConfChange(
        type=pb.ConfChangeType.ValueType(cc.type), node_id=cc.node_id, address=cc.address
    ).SerializeToString()


def decode_conf_change(data: bytes) -> ConfChange:
    msg = pb.ConfChange.FromString(data)
    if not msg.node_id:
        raise CodecError("conf change: node_id is empty")
    return ConfChange(ConfChangeType(msg.type), msg.node_id, msg.address)


def conf_state_to_pb(cs: ConfState) -> pb.ConfState:
    return pb.ConfState(voters=cs.voters, learners=cs.learners, addresses=dict(cs.addresses))


def conf_state_from_pb(msg: pb.ConfState) -> ConfState:
    return ConfState(
        voters=tuple(msg.voters),
        learners=tuple(msg.learners),
        addresses=tuple(sorted(msg.addresses.items())),
    )


def snapshot_meta_to_pb(meta: SnapshotMeta) -> pb.SnapshotMeta:
    return pb.SnapshotMeta(
        index=meta.index, term=meta.term, conf_state=conf_state_to_pb(meta.conf_state)
    )


def snapshot_meta_from_pb(msg: pb.SnapshotMeta) -> SnapshotMeta:
    return SnapshotMeta(msg.index, msg.term, conf_state_from_pb(msg.conf_state))


def hard_state_to_pb(hs: HardState) -> pb.HardState:
    return pb.HardState(term=hs.term, vote=hs.vote, commit=hs.commit)


def hard_state_from_pb(msg: pb.HardState) -> HardState:
    return HardState(msg.term, msg.vote, msg.commit)


def entry_to_pb(e: Entry) -> pb.Entry:
    return pb.Entry(term=e.term, index=e.index, type=pb.EntryType.ValueType(e.type), data=e.data)


def entry_from_pb(msg: pb.Entry) -> Entry:
    return Entry(msg.term, msg.index, EntryType(msg.type), msg.data)


def message_to_pb(m: Message) -> pb.Message:
    """The snapshot's data is not included: it travels in InstallSnapshot chunks."""
    out = pb.Message(
        type=pb.MessageType.ValueType(m.type),
        to=m.to,
        term=m.term,
        log_term=m.log_term,
        index=m.index,
        commit=m.commit,
        reject=m.reject,
        reject_hint=m.reject_hint,
        context=m.context,
    )
    setattr(out, "from", m.frm)  # `from` is a Python keyword
    if m.entries:
        out.entries.extend([entry_to_pb(e) for e in m.entries])
    if m.snapshot is not None:
        out.snapshot.CopyFrom(snapshot_meta_to_pb(m.snapshot.meta))
    return out


def message_from_pb(msg: pb.Message, snapshot_data: bytes | None = None) -> Message:
    try:
        mtype = MessageType(msg.type)
    except ValueError:
        raise CodecError(f"message: unknown type {msg.type}") from None
    frm = getattr(msg, "from")
    if not frm or not msg.to:
        raise CodecError("message: 'from' and 'to' must be set")
    snap = None
    if mtype is MessageType.SNAPSHOT:
        snap = Snapshot(snapshot_meta_from_pb(msg.snapshot), snapshot_data or b"")
    return Message(
        type=mtype,
        to=msg.to,
        frm=frm,
        term=msg.term,
        log_term=msg.log_term,
        index=msg.index,
        entries=[Entry(e.term, e.index, EntryType(e.type), e.data) for e in msg.entries],
        commit=msg.commit,
        reject=msg.reject,
        reject_hint=msg.reject_hint,
        context=msg.context,
        snapshot=snap,
    )
