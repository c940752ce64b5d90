"""A small key/value state machine, used to test and benchmark Raft on its own."""

from __future__ import annotations

from agentflow._proto import kv_pb2


class KeyValueFSM:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.applied_index = 0

    @staticmethod
    def put_command(key: str, value: bytes) -> bytes:
        return kv_pb2.KvCommand(op=kv_pb2.KvCommand.PUT, key=key, value=value).SerializeToString()

    @staticmethod
    def delete_command(key: str) -> bytes:
        return kv_pb2.KvCommand(op=kv_pb2.KvCommand.DELETE, key=key).SerializeToString()

    def apply(self, index: int, command: bytes) -> object:
        cmd = kv_pb2.KvCommand.FromString(command)
        self.applied_index = index
        if cmd.op == kv_pb2.KvCommand.PUT:
            self.data[cmd.key] = cmd.value
        else:
            self.data.pop(cmd.key, None)
        return index

    def snapshot(self) -> bytes:
        snap = kv_pb2.KvSnapshot(applied_index=self.applied_index)
        snap.items.update(self.data)
        return snap.SerializeToString()

    def restore(self, data: bytes) -> None:
        snap = kv_pb2.KvSnapshot.FromString(data)
        self.data = dict(snap.items)
        self.applied_index = snap.applied_index
