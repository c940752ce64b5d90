"""The leader's view of one follower's log (etcd's Progress).

PROBE: the follower's position is unknown; send one append per heartbeat or reply
until one is accepted. REPLICATE: the position is known; stream appends optimistically,
up to `max_inflight` unacknowledged messages. SNAPSHOT: the follower needs a snapshot
that has been sent; wait for its reply (or give up after a while and probe again).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(slots=True)
class Progress:
    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    # PROBE: one append is out and unanswered; wait for a reply or a heartbeat reply.
    probe_sent: bool = False
    pending_snapshot: int = 0
    # Ticks without an acknowledgement while a snapshot or appends are in flight:
    # past a limit they are presumed lost and the follower is probed again.
    stall_ticks: int = 0
    # Last index of each append sent in REPLICATE and not yet acknowledged.
    inflight: deque[int] = field(default_factory=deque)
    # Heard from since the last CheckQuorum round.
    recent_active: bool = False
    is_learner: bool = False
    # Leader ticks since the follower's last message, or since this leader took
    # over if `heard` is False: what an operator reads as "last contact".
    idle_ticks: int = 0
    heard: bool = False

    def heard_from(self) -> None:
        self.recent_active = True
        self.heard = True
        self.idle_ticks = 0

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            # Resume right after the snapshot we sent if it may have landed.
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self._reset(ProgressState.PROBE)

    def become_replicate(self) -> None:
        self.next = self.match + 1
        self._reset(ProgressState.REPLICATE)

    def become_snapshot(self, index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = index

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.stall_ticks = 0
        self.inflight.clear()

    def maybe_update(self, index: int) -> bool:
        """A follower acknowledged entries up to `index`; False if that is old news."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        return updated

    def maybe_decr_to(self, rejected: int, hint: int) -> bool:
        """The follower rejected an append at `rejected`; `hint` is where to retry.
        False if the rejection is stale (for an append we no longer care about)."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def sent_entries(self, last: int, count: int) -> None:
        if self.state is ProgressState.REPLICATE:
            if count:
                self.next = last + 1
                self.inflight.append(last)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def is_paused(self, max_inflight: int) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= max_inflight
        return True
