"""The replicated state machine interface the Raft driver applies committed commands to."""

from __future__ import annotations

from typing import Protocol


class StateMachine(Protocol):
    """Deterministic: the same commands in the same order give the same state and
    results on every node. No clock, no randomness, no I/O inside `apply`."""

    def apply(self, index: int, command: bytes) -> object:
        """Apply one committed command at log `index`. The return value is handed to
        whoever proposed the command on this node. Raising is a bug: a command that
        is invalid must be rejected deterministically by returning an error value."""
        ...

    def snapshot(self) -> bytes:
        """Serialize the whole state (as of the last applied index)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state by a snapshot's data."""
        ...
