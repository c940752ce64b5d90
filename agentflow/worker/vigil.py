"""A worker that was not running (SIGSTOP, a VM pause, a blocked loop) keeps its tasks
from going on until the leader says they are still its own.

The leader declares a worker lost after `worker_timeout` without a word from it and
gives its attempts to other workers; the attempts' processes, in their own process
groups, are not stopped with the worker. So:

- while the worker is stopped, its guardian stops the task groups too (guardian.py);
- on resume, a gap since the last tick of at least `threshold` (the leader's timeout
  less two heartbeat intervals: the leader counts from the last heartbeat it got, up
  to an interval before the stop) means the leader has probably declared this worker
  lost: the groups are stopped (if the guardian did not already), the session is
  ended and the next hello asks;
- the welcome says `declared_lost`: the attempts are killed at once (SIGKILL to
  every group, no grace, no result reported); otherwise the groups continue
  (SIGCONT). A welcome saying `declared_lost` after no stall at all (the link was
  cut, not the process stopped) kills them the same way.

A shorter gap cannot have made the worker lost: whatever the guardian stopped
continues at once. The verdict comes from the leader, not from the gap alone, because
a leader that was paused too (the whole host was) gives every worker a full timeout
again and still counts these attempts as current.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import structlog

from agentflow.worker.process_groups import Unguarded

log = structlog.get_logger(__name__)

TICK_S = 0.25
DEFAULT_WORKER_TIMEOUT_S = 15.0  # the leader's default, until a welcome says
DEFAULT_HEARTBEAT_S = 2.0


class Vigil:
    def __init__(self, groups: Unguarded, clock: Callable[[], float] = time.monotonic) -> None:
        self.groups = groups
        self._clock = clock
        self._last = clock()
        self.threshold = self._threshold(DEFAULT_WORKER_TIMEOUT_S, DEFAULT_HEARTBEAT_S)
        # Stopped long enough to have been declared lost: the task groups stay
        # stopped until a welcome says whether they are still ours.
        self.suspect = False
        self.stalls = 0  # suspicions so far (for tests and logs)

    @staticmethod
    def _threshold(worker_timeout_s: float, heartbeat_s: float) -> float:
        return max(heartbeat_s, worker_timeout_s - 2 * heartbeat_s)

    def configure(self, worker_timeout_s: float, heartbeat_s: float) -> None:
        """From a welcome (an older master does not say its timeout: 0 keeps ours)."""
        if worker_timeout_s > 0:
            self.threshold = self._threshold(worker_timeout_s, heartbeat_s)

    def check(self) -> bool:
        """Called every TICK_S and before every hello. True when this process has just
        come back from a gap of `threshold` or more: the caller ends the session."""
        now = self._clock()
        gap, self._last = now - self._last, now
        if gap < self.threshold or self.suspect:
            return False
        self.stalls += 1
        self.suspect = True
        self.groups.signal_all(signal.SIGSTOP)
        log.warning(
            "worker.stalled",
            seconds=round(gap, 1),
            threshold=self.threshold,
            groups=len(self.groups.groups),
            action="tasks stopped until the leader says whether this worker was declared lost",
        )
        return True

    def frozen(self) -> bool:
        """The guardian stopped the groups while this worker was stopped. True when
        the caller must end the session (see check)."""
        if self.check():
            return True
        if not self.suspect:
            self.groups.signal_all(signal.SIGCONT)  # too short to have been declared lost
        return False

    def verdict(self, declared_lost: bool) -> None:
        """The welcome came. Declared lost: every group gets SIGKILL now, stopped or
        not (the caller has told the slots to drop the attempts; idle pool processes
        die too and are replaced), so nothing of an attempt taken away runs another
        instruction. Otherwise what was stopped continues."""
        if self.suspect or declared_lost:
            log.info("worker.verdict", declared_lost=declared_lost, was_stalled=self.suspect)
        if declared_lost:
            self.groups.signal_all(signal.SIGKILL)
        elif self.suspect:
            self.groups.signal_all(signal.SIGCONT)
        self.suspect = False
