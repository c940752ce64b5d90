"""The seam between the worker agent and its two transports (gRPC stream, HTTP shim).

A `Connection` is one attempt at one master: `open` sends the hello and returns the
master's first answer (welcome, redirect or refusal); after a welcome, `send` and
`receive` carry the session until either side ends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agentflow._proto import worker_pb2 as wpb


class ConnectError(Exception):
    """The master could not be reached over this transport (try another)."""


class SessionClosed(Exception):
    """The session is over (the master ended it, or the link broke): connect again."""


class Connection(Protocol):
    transport: str  # "grpc" | "http"
    target: str  # what it connected to, for logs

    async def open(self, hello: wpb.WorkerMessage) -> wpb.MasterMessage:
        """Raises ConnectError when nothing answers."""
        ...

    async def send(self, messages: Sequence[wpb.WorkerMessage]) -> None:
        """Raises SessionClosed."""
        ...

    async def receive(self) -> Sequence[wpb.MasterMessage]:
        """The next message(s) from the master, waiting as long as needed; raises
        SessionClosed when the session is over."""
        ...

    async def close(self) -> None: ...
