"""Ready-task priority queue: five levels, FIFO inside a level, aging so nothing starves.

Pure and deterministic: no clock is read. The caller passes `enqueued_at` on push and
`now` on every query, so the same pushes and the same `now` values give the same pops
(leader-side index, rebuilt from replicated state after a leader change).

Order. A task's *effective level* is its priority improved by one level per
`aging_seconds` it has waited, never better than CRITICAL. Tasks pop by
(effective level, enqueued_at, insertion sequence). Without aging that is plain
(priority, enqueue order).

Structure. One heap per base priority keyed by (enqueued_at, seq). Inside one base
level the head has waited longest, so it also has the best effective level and the
earliest tie-break: the global best is always one of the five heads, and pop compares
only those. Heaps rather than deques because `reprioritize` keeps the original
enqueue time, and a moved task must slot in by that time, not at the tail. Removal is
lazy: the live map is the truth and heap entries whose token it no longer holds are
skipped (and compacted away when they pile up).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from agentflow.common.priority import Priority

__all__ = ["DEFAULT_PRIORITY", "Position", "Priority", "ReadyQueue"]


DEFAULT_PRIORITY = Priority.NORMAL


class Position(NamedTuple):
    """Where a queued task stands, for `explain` ("14 tasks ahead at HIGH")."""

    ahead: int
    level: Priority  # effective level at the queried time, aging included


@dataclass(frozen=True, slots=True)
class _Item:
    priority: Priority
    enqueued_at: float
    seq: int  # insertion order; kept across reprioritize so ties stay stable
    token: int  # identifies the one heap entry that is live for this task


# (enqueued_at, seq, token, task_id): tuples compare on the first two, which are unique
# per task, so task_id never decides order and never needs to be comparable.
_HeapEntry = tuple[float, int, int, str]

# Compact when dead heap entries exceed this multiple of live tasks (plus slack), so a
# remove/reprioritize-heavy workload cannot grow memory without bound.
_COMPACT_FACTOR = 2
_COMPACT_SLACK = 64


class ReadyQueue:
    """Ready tasks waiting for a worker. Task ids are unique within the queue."""

    def __init__(self, aging_seconds: float | None = 30.0) -> None:
        """`aging_seconds=None` disables aging; otherwise it must be positive."""
        if aging_seconds is not None and not aging_seconds > 0:
            raise ValueError(f"aging_seconds must be positive or None, got {aging_seconds!r}")
        self._aging = aging_seconds
        self._heaps: list[list[_HeapEntry]] = [[] for _ in Priority]
        self._live: dict[str, _Item] = {}
        self._depth = [0 for _ in Priority]
        self._next_seq = 0
        self._next_token = 0

    # ----- queries -----

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._live

    def depth_by_level(self) -> dict[Priority, int]:
        """Queued tasks per assigned priority (not aged), every level present."""
        return {p: self._depth[p] for p in Priority}

    def priority_of(self, task_id: str) -> Priority:
        """Assigned priority of a queued task; KeyError if not queued."""
        return self._live[task_id].priority

    def effective_level(self, task_id: str, now: float) -> Priority:
        """Assigned priority improved by aging at time `now`; KeyError if not queued."""
        item = self._live[task_id]
        return self._effective(item.priority, item.enqueued_at, now)

    def peek(self, now: float) -> str | None:
        """The task `pop(now)` would return, without removing it."""
        best = self._best_level(now)
        return None if best is None else self._heaps[best][0][3]

    def position(self, task_id: str, now: float) -> Position:
        """Tasks that would pop before this one at `now`, and its effective level.

        O(n): meant for explain/status, not the dispatch path. KeyError if not queued.
        """
        item = self._live[task_id]
        key = self._key(item, now)
        ahead = sum(1 for other in self._live.values() if self._key(other, now) < key)
        return Position(ahead, Priority(key[0]))

    # ----- mutations -----

    def push(self, task_id: str, priority: Priority, enqueued_at: float) -> None:
        """Queue a task; ValueError if it is already queued."""
        if task_id in self._live:
            raise ValueError(f"task {task_id!r} is already queued")
        seq = self._next_seq
        self._next_seq += 1
        self._insert(task_id, Priority(priority), enqueued_at, seq)

    def remove(self, task_id: str) -> None:
        """Drop a queued task (cancelled, or dispatched elsewhere); KeyError if absent."""
        item = self._live.pop(task_id)
        self._depth[item.priority] -= 1
        self._maybe_compact()

    def reprioritize(self, task_id: str, priority: Priority) -> None:
        """Change a queued task's priority, keeping its enqueue time and sequence.

        Keeping them means aging credit already earned is not lost, and the task slots
        into its new level by how long it has really waited. KeyError if not queued.
        """
        item = self._live[task_id]
        priority = Priority(priority)
        if priority == item.priority:
            return
        self._depth[item.priority] -= 1
        self._insert(task_id, priority, item.enqueued_at, item.seq)
        self._maybe_compact()

    def pop(self, now: float) -> str | None:
        """Remove and return the next task at time `now`, or None if empty."""
        best = self._best_level(now)
        if best is None:
            return None
        task_id = heapq.heappop(self._heaps[best])[3]
        del self._live[task_id]
        self._depth[best] -= 1
        return task_id

    def pop_matching(
        self,
        now: float,
        predicate: Callable[[str], bool],
        limit: int,
        max_scan: int | None = None,
    ) -> list[str]:
        """Pop up to `limit` tasks the predicate accepts, in queue order.

        Rejected tasks (e.g. no worker fits them right now) keep their exact place:
        they are set aside during the scan and restored with their original keys.
        `max_scan` bounds how many tasks are examined, so one dispatch round stays
        cheap when the head of a long queue fits nowhere.
        """
        taken: list[str] = []
        skipped: list[tuple[int, _HeapEntry]] = []
        scanned = 0
        try:
            while len(taken) < limit and (max_scan is None or scanned < max_scan):
                best = self._best_level(now)
                if best is None:
                    break
                entry = heapq.heappop(self._heaps[best])
                scanned += 1
                try:
                    accepted = predicate(entry[3])
                except BaseException:
                    # Put it back with the others so a raising predicate leaves the
                    # queue exactly as it was.
                    skipped.append((best, entry))
                    raise
                if accepted:
                    del self._live[entry[3]]
                    self._depth[best] -= 1
                    taken.append(entry[3])
                else:
                    skipped.append((best, entry))
        finally:
            for level, entry in skipped:
                heapq.heappush(self._heaps[level], entry)
        return taken

    # ----- internals -----

    def _insert(self, task_id: str, priority: Priority, enqueued_at: float, seq: int) -> None:
        token = self._next_token
        self._next_token += 1
        self._live[task_id] = _Item(priority, enqueued_at, seq, token)
        self._depth[priority] += 1
        heapq.heappush(self._heaps[priority], (enqueued_at, seq, token, task_id))

    def _effective(self, priority: Priority, enqueued_at: float, now: float) -> Priority:
        if self._aging is None:
            return priority
        # A clock step backwards (now < enqueued_at) must not demote: clamp waited at 0.
        steps = int(max(0.0, now - enqueued_at) // self._aging)
        return Priority(max(0, priority - steps))

    def _key(self, item: _Item, now: float) -> tuple[int, float, int]:
        return (self._effective(item.priority, item.enqueued_at, now), item.enqueued_at, item.seq)

    def _best_level(self, now: float) -> int | None:
        """Base level whose live head pops next; drops dead heads on the way."""
        best: int | None = None
        best_key: tuple[int, float, int] | None = None
        for level, heap in enumerate(self._heaps):
            while heap and self._is_dead(heap[0]):
                heapq.heappop(heap)
            if not heap:
                continue
            enqueued_at, seq, _, _ = heap[0]
            key = (self._effective(Priority(level), enqueued_at, now), enqueued_at, seq)
            if best_key is None or key < best_key:
                best, best_key = level, key
        return best

    def _is_dead(self, entry: _HeapEntry) -> bool:
        item = self._live.get(entry[3])
        return item is None or item.token != entry[2]

    def _maybe_compact(self) -> None:
        stored = sum(len(h) for h in self._heaps)
        if stored <= _COMPACT_FACTOR * len(self._live) + _COMPACT_SLACK:
            return
        for level, heap in enumerate(self._heaps):
            kept = [e for e in heap if not self._is_dead(e)]
            heapq.heapify(kept)
            self._heaps[level] = kept
