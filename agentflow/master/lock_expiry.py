"""The leader ends leases: it proposes ExpireLocks for the locks it finds due.

Due is measured on this leader's clock, with one rule for leases it inherited from
an earlier leader: such a lease keeps at least the time it had left at the last
entry applied before this term, counted from when this term began here. Another
master's clock may run ahead, so trusting `expires_ms` alone could end a lease
early; counting the remainder on our own clock never does. The apply checks again
(a renewal committed first wins).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from agentflow._proto import state_pb2
from agentflow.rules.limits import MAX_LOCK_EXPIRE_NAMES
from agentflow.scheduler.proposer import Proposer
from agentflow.state import ChangeSet, SchedulerState

log = structlog.get_logger(__name__)

_IDLE_CHECK = 1.0  # seconds: also look when nothing woke us


def _end(lock: state_pb2.Lock) -> int:
    return lock.expires_ms if lock.owner else lock.lock_delay_until_ms


class LockExpiry:
    def __init__(self, state: SchedulerState, proposer: Proposer, lock_delay_ms: int = 0) -> None:
        self.state = state
        self.proposer = proposer
        self.lock_delay_ms = lock_delay_ms
        # (name, token, end) of every lease at the start of the term -> earliest end.
        self._inherited: dict[tuple[str, int, int], int] = {}

    def start_term(self) -> None:
        """Call once this leader has applied everything earlier terms committed."""
        started = self.proposer.now_ms()
        applied_at = self.state.last_now_ms
        self._inherited = {
            (k.name, k.token, _end(k)): started + max(0, _end(k) - applied_at)
            for k in self.state.locks()
        }

    def due(self, now_ms: int) -> tuple[list[str], int | None]:
        """Names to expire at `now_ms`, and when the next one falls due (None: none)."""
        names: list[str] = []
        upcoming: int | None = None
        for lock in self.state.locks():
            end = _end(lock)
            at = max(end, self._inherited.get((lock.name, lock.token, end), end))
            if at <= now_ms:
                names.append(lock.name)
            elif upcoming is None or at < upcoming:
                upcoming = at
        return names[:MAX_LOCK_EXPIRE_NAMES], upcoming

    async def run(self) -> None:
        self.start_term()
        wake = asyncio.Event()

        def on_change(cs: ChangeSet) -> None:
            if cs.locks:
                wake.set()

        unsubscribe = self.state.add_listener(on_change)
        try:
            while True:
                wake.clear()
                now = self.proposer.now_ms()
                names, upcoming = self.due(now)
                if names:
                    cmd = state_pb2.Command(
                        expire_locks=state_pb2.ExpireLocks(
                            names=names, lock_delay_ms=self.lock_delay_ms
                        )
                    )
                    result = await self.proposer.propose(cmd)
                    if result.expired_locks:
                        log.info("lock.expired", names=list(result.expired_locks))
                    continue
                wait = (
                    _IDLE_CHECK if upcoming is None else min(_IDLE_CHECK, (upcoming - now) / 1000)
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), max(wait, 0.001))
        finally:
            unsubscribe()
