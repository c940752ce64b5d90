"""Ready-task priority queue: five levels, FIFO inside a level, aging so nothing starves,
and one lane per placement shape so that tasks nobody can take never hide ones that
somebody can.

Pure and deterministic: no clock is read. The caller passes `enqueued_at` on push and
`now` on every query, so the same pushes and the same `now` values give the same pops
(leader-side index, rebuilt from replicated state after a leader change).

Order. A task's *effective level* is its priority improved by one level per
`aging_seconds` it has waited, never better than CRITICAL. Tasks pop by
(effective level, enqueued_at, insertion sequence). Without aging that is plain
(priority, enqueue order). `pop`, `peek` and `position` follow that order over the
whole queue.

Lanes. Every task is pushed with its group and its *shape* (what placement looks at:
resources, labels); tasks of one (group, shape) share a lane. Placement treats every
task of a lane alike, and during one dispatch round workers only fill up, so when a
lane's head cannot be placed none of the lane can: `pop_placeable` stops looking at
that lane for the round and goes on with the others. Its cost is one look per lane
it considers plus one per task it takes, never one per waiting task; lanes of groups
without room are not even considered, and `park` takes a lane out of consideration
until `unpark_all` (a shape no worker could ever fit, until the workers change).

Structure. Per lane, one heap per base priority keyed by (enqueued_at, seq). Inside
one base level the head has waited longest, so it also has the best effective level
and the earliest tie-break: a lane's best is one of its five heads. Heaps rather than
deques because `reprioritize` keeps the original enqueue time, and a moved task must
slot in by that time, not at the tail. Removal is lazy: the live map is the truth and
heap entries whose token it no longer holds are skipped (and compacted away when they
pile up).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from agentflow.common.priority import Priority

__all__ = ["DEFAULT_PRIORITY", "LaneKey", "Position", "Priority", "ReadyQueue"]


DEFAULT_PRIORITY = Priority.NORMAL

# (group, shape): tasks that placement cannot tell apart.
LaneKey = tuple[str, Hashable]


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
    lane: LaneKey


# (enqueued_at, seq, token, task_id): tuples compare on the first two, which are unique
# per task, so task_id never decides order and never needs to be comparable.
_HeapEntry = tuple[float, int, int, str]
_Key = tuple[int, float, int]  # (effective level, enqueued_at, seq)

# Compact when dead heap entries exceed this multiple of live tasks (plus slack), so a
# remove/reprioritize-heavy workload cannot grow memory without bound.
_COMPACT_FACTOR = 2
_COMPACT_SLACK = 64


class _Lane:
    __slots__ = ("heaps", "key", "size")

    def __init__(self, key: LaneKey) -> None:
        self.key = key
        self.heaps: list[list[_HeapEntry]] = [[] for _ in Priority]
        self.size = 0


class ReadyQueue:
    """Ready tasks waiting for a worker. Task ids are unique within the queue."""

    def __init__(self, aging_seconds: float | None = 30.0) -> None:
        """`aging_seconds=None` disables aging; otherwise it must be positive."""
        if aging_seconds is not None and not aging_seconds > 0:
            raise ValueError(f"aging_seconds must be positive or None, got {aging_seconds!r}")
        self._aging = aging_seconds
        self._lanes: dict[LaneKey, _Lane] = {}
        self._open: dict[str, dict[LaneKey, None]] = {}  # group -> unparked lanes
        self._parked: set[LaneKey] = set()
        self._live: dict[str, _Item] = {}
        self._depth = [0 for _ in Priority]
        self._stored = 0  # heap entries, live or dead
        self._next_seq = 0
        self._next_token = 0
        # Work done by pop_placeable, ever: lane heads offered to its caller. Tests
        # compare it, not wall time, to show a round's cost.
        self.examined = 0

    # ----- queries -----

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._live

    def depth_by_level(self) -> dict[Priority, int]:
        """Queued tasks per assigned priority (not aged), every level present."""
        return {p: self._depth[p] for p in Priority}

    def lanes(self) -> int:
        return len(self._lanes)

    def priority_of(self, task_id: str) -> Priority:
        """Assigned priority of a queued task; KeyError if not queued."""
        return self._live[task_id].priority

    def effective_level(self, task_id: str, now: float) -> Priority:
        """Assigned priority improved by aging at time `now`; KeyError if not queued."""
        item = self._live[task_id]
        return self._effective(item.priority, item.enqueued_at, now)

    def peek(self, now: float) -> str | None:
        """The task `pop(now)` would return, without removing it."""
        best = self._best(self._lanes.values(), now)
        return None if best is None else best[1].heaps[best[2]][0][3]

    def position(self, task_id: str, now: float) -> Position:
        """Tasks that would pop before this one at `now`, and its effective level.

        O(n): meant for explain/status, not the dispatch path. KeyError if not queued.
        """
        item = self._live[task_id]
        key = self._key(item, now)
        ahead = sum(1 for other in self._live.values() if self._key(other, now) < key)
        return Position(ahead, Priority(key[0]))

    # ----- mutations -----

    def push(
        self,
        task_id: str,
        priority: Priority,
        enqueued_at: float,
        group: str = "default",
        shape: Hashable = None,
    ) -> None:
        """Queue a task in the lane of (group, shape); ValueError if already queued."""
        if task_id in self._live:
            raise ValueError(f"task {task_id!r} is already queued")
        seq = self._next_seq
        self._next_seq += 1
        self._insert(task_id, Priority(priority), enqueued_at, seq, (group, shape))

    def remove(self, task_id: str) -> None:
        """Drop a queued task (cancelled, or dispatched elsewhere); KeyError if absent."""
        item = self._live.pop(task_id)
        self._depth[item.priority] -= 1
        self._shrink(self._lanes[item.lane])
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
        self._lanes[item.lane].size -= 1
        self._insert(task_id, priority, item.enqueued_at, item.seq, item.lane)
        self._maybe_compact()

    def pop(self, now: float) -> str | None:
        """Remove and return the next task at time `now`, or None if empty."""
        best = self._best(self._lanes.values(), now)
        if best is None:
            return None
        _, lane, level = best
        return self._take(lane, level)

    def pop_placeable(
        self,
        now: float,
        groups: Iterable[str],
        try_place: Callable[[LaneKey, str], bool],
        limit: int,
    ) -> list[str]:
        """Pop up to `limit` tasks of the unparked lanes of `groups`, in queue order,
        each one `try_place(lane, task_id)` accepts.

        A refusal closes that lane for this call (the rest of it has the same shape)
        and leaves the task exactly where it was. If `try_place` raises, the tasks
        already accepted stay popped and everything else stays queued.
        """
        heads: list[tuple[_Key, int, _Lane]] = []
        for group in groups:
            for key in self._open.get(group, ()):
                lane = self._lanes[key]
                head = self._head(lane, now)
                if head is not None:
                    heads.append((head[0], head[1], lane))
        heapq.heapify(heads)  # (key, level, lane): keys are unique, lanes never compared
        taken: list[str] = []
        while heads and len(taken) < limit:
            _, level, lane = heapq.heappop(heads)
            self.examined += 1
            if not try_place(lane.key, lane.heaps[level][0][3]):
                continue
            taken.append(self._take(lane, level))
            if lane.size:
                head = self._head(lane, now)
                assert head is not None
                heapq.heappush(heads, (head[0], head[1], lane))
        return taken

    def park(self, lane: LaneKey) -> None:
        """Keep this lane out of `pop_placeable` until `unpark_all` (its tasks stay
        queued, in order, and `pop`/`position` still count them)."""
        if lane in self._lanes and lane not in self._parked:
            self._parked.add(lane)
            self._open[lane[0]].pop(lane, None)

    def unpark_all(self) -> None:
        for lane in self._parked:
            self._open.setdefault(lane[0], {})[lane] = None
        self._parked.clear()

    def parked(self) -> int:
        return len(self._parked)

    # ----- internals -----

    def _insert(
        self, task_id: str, priority: Priority, enqueued_at: float, seq: int, key: LaneKey
    ) -> None:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(key)
            self._open.setdefault(key[0], {})[key] = None
        token = self._next_token
        self._next_token += 1
        self._live[task_id] = _Item(priority, enqueued_at, seq, token, key)
        self._depth[priority] += 1
        lane.size += 1
        self._stored += 1
        heapq.heappush(lane.heaps[priority], (enqueued_at, seq, token, task_id))

    def _take(self, lane: _Lane, level: int) -> str:
        """Pop the live head of one of the lane's heaps."""
        task_id = heapq.heappop(lane.heaps[level])[3]
        self._stored -= 1
        del self._live[task_id]
        self._depth[level] -= 1
        self._shrink(lane)
        return task_id

    def _shrink(self, lane: _Lane) -> None:
        lane.size -= 1
        if lane.size:
            return
        del self._lanes[lane.key]
        self._stored -= sum(len(h) for h in lane.heaps)
        self._parked.discard(lane.key)
        group = self._open.get(lane.key[0])
        if group is not None:
            group.pop(lane.key, None)
            if not group:
                del self._open[lane.key[0]]

    def _effective(self, priority: Priority, enqueued_at: float, now: float) -> Priority:
        if self._aging is None:
            return priority
        # A clock step backwards (now < enqueued_at) must not demote: clamp waited at 0.
        steps = int(max(0.0, now - enqueued_at) // self._aging)
        return Priority(max(0, priority - steps))

    def _key(self, item: _Item, now: float) -> _Key:
        return (self._effective(item.priority, item.enqueued_at, now), item.enqueued_at, item.seq)

    def _head(self, lane: _Lane, now: float) -> tuple[_Key, int] | None:
        """The lane's next task's key and base level; drops dead heads on the way."""
        best: tuple[_Key, int] | None = None
        for level, heap in enumerate(lane.heaps):
            while heap and self._is_dead(heap[0]):
                heapq.heappop(heap)
                self._stored -= 1
            if not heap:
                continue
            enqueued_at, seq, _, _ = heap[0]
            key = (self._effective(Priority(level), enqueued_at, now), enqueued_at, seq)
            if best is None or key < best[0]:
                best = (key, level)
        return best

    def _best(self, lanes: Iterable[_Lane], now: float) -> tuple[_Key, _Lane, int] | None:
        best: tuple[_Key, _Lane, int] | None = None
        for lane in list(lanes):
            head = self._head(lane, now)
            if head is not None and (best is None or head[0] < best[0]):
                best = (head[0], lane, head[1])
        return best

    def _is_dead(self, entry: _HeapEntry) -> bool:
        item = self._live.get(entry[3])
        return item is None or item.token != entry[2]

    def _maybe_compact(self) -> None:
        if self._stored <= _COMPACT_FACTOR * len(self._live) + _COMPACT_SLACK:
            return
        stored = 0
        for lane in self._lanes.values():
            for level, heap in enumerate(lane.heaps):
                kept = [e for e in heap if not self._is_dead(e)]
                heapq.heapify(kept)
                lane.heaps[level] = kept
                stored += len(kept)
        self._stored = stored
