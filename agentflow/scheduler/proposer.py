"""Stamp a command with the leader's time, replicate it, and return its result.

The state machine never reads a clock: `now_ms` is decided here, on the leader, once
per command. It never goes backwards across leaders (a new leader's clock may be
behind the old one's), so retry times and retention cut-offs stay ordered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from agentflow._proto import state_pb2
from agentflow.state import SchedulerState, encode


class Replicator(Protocol):
    """What the proposer needs of the Raft node (RaftNode fits)."""

    async def propose(self, command: bytes) -> object: ...


class Proposer:
    def __init__(
        self,
        node: Replicator,
        state: SchedulerState,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._node = node
        self._state = state
        self._clock = clock
        self._last_ms = 0

    def now_ms(self) -> int:
        now = max(int(self._clock() * 1000), self._state.last_now_ms, self._last_ms)
        self._last_ms = now
        return now

    async def propose(
        self, command: state_pb2.Command, request_id: str = ""
    ) -> state_pb2.CommandResult:
        """Raises the Raft node's errors (NotLeaderError, ProposalDroppedError: never
        applied; CommitUnknownError: maybe applied). A command the state machine
        refuses comes back as a result with `error` set, not as an exception."""
        command.request_id = request_id
        command.now_ms = self.now_ms()
        result = await self._node.propose(encode(command))
        if not isinstance(result, state_pb2.CommandResult):
            raise TypeError(f"state machine returned {type(result).__name__}, not CommandResult")
        return result
