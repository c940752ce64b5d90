"""Leader bookkeeping for linearizable reads (Raft thesis §6.4, ReadIndex).

A read request records the commit index at arrival and is released once a
heartbeat round started after it was acknowledged by a quorum: then no newer
leader can have committed anything we do not know about.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from agentflow.raft.types import NodeId


@dataclass(slots=True)
class PendingRead:
    index: int
    requester: NodeId  # who asked: the leader itself or a follower that forwarded
    acks: set[NodeId] = field(default_factory=set)


class ReadIndexQueue:
    def __init__(self) -> None:
        self._pending: OrderedDict[bytes, PendingRead] = OrderedDict()

    def add(self, context: bytes, index: int, requester: NodeId, leader: NodeId) -> None:
        if context in self._pending:
            return  # a retransmitted request; the first one will answer
        self._pending[context] = PendingRead(index, requester, {leader})

    def ack(self, context: bytes, voter: NodeId) -> set[NodeId] | None:
        read = self._pending.get(context)
        if read is None:
            return None
        read.acks.add(voter)
        return read.acks

    def release_through(self, context: bytes) -> list[tuple[bytes, PendingRead]]:
        """Pop every request up to and including `context`: a quorum confirming a
        later round confirms every earlier one too."""
        out: list[tuple[bytes, PendingRead]] = []
        if context not in self._pending:
            return out
        while self._pending:
            ctx, read = self._pending.popitem(last=False)
            out.append((ctx, read))
            if ctx == context:
                break
        return out

    def last_context(self) -> bytes:
        return next(reversed(self._pending)) if self._pending else b""

    def clear(self) -> None:
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)
