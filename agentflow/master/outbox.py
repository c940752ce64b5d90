"""Messages waiting for one worker, in order, until its transport takes them.

Both transports drain the same outbox: the gRPC stream writes each message as soon
as it is there; the HTTP shim hands out whatever piled up on the next long poll.
Putting never blocks (the scheduler calls in from its dispatch loop), so the outbox
is unbounded; a worker that stops reading is closed by its transport instead.
"""

from __future__ import annotations

import asyncio
from collections import deque

from agentflow._proto import worker_pb2 as wpb


class Outbox:
    def __init__(self) -> None:
        self._items: deque[wpb.MasterMessage] = deque()
        self._ready = asyncio.Event()
        self.closed: str | None = None  # the reason, once closed

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: wpb.MasterMessage) -> None:
        if self.closed is not None:
            return  # the worker reconnects and reconciles; nothing is lost by dropping
        # Acks pile up fastest (one per handled batch): fold one into an ack that is
        # still waiting, so a slow poller gets one message, not hundreds.
        if message.HasField("ack") and self._items and self._items[-1].HasField("ack"):
            tail = self._items[-1].ack
            tail.seqs.extend(message.ack.seqs)
            tail.results.extend(message.ack.results)
        else:
            self._items.append(message)
        self._ready.set()

    def close(self, reason: str) -> None:
        """Messages already queued are still handed out; then `take` reports closed."""
        if self.closed is None:
            self.closed = reason
            self._ready.set()

    async def take(
        self, limit: int = 1000, timeout: float | None = None
    ) -> list[wpb.MasterMessage]:
        """Up to `limit` messages, waiting up to `timeout` s for the first one. An empty
        list means the wait timed out, or the outbox is closed and drained."""
        if not self._items and self.closed is None:
            self._ready.clear()
            try:
                # asyncio.timeout, not wait_for: no extra task per wait on a hot path.
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return []
        taken: list[wpb.MasterMessage] = []
        while self._items and len(taken) < limit:
            taken.append(self._items.popleft())
        return taken

    @property
    def drained(self) -> bool:
        """Closed and nothing left to hand out: the transport may end the session."""
        return self.closed is not None and not self._items
