"""Workflow DAG: validation, queries and an incremental ready set.

Pure and deterministic: no I/O, no clock, no randomness. Every order this module returns
is derived from the input order of the tasks, so two leaders that rebuild the same
workflow compute the same answers. Graphs are held as integer indexes into the input
order; every walk is iterative so that 10,000+ task workflows never hit recursion limits.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Literal

__all__ = ["Dag", "DagError", "DagRun", "OnFailure", "TaskStatus"]

OnFailure = Literal["skip", "continue"]
TaskSpec = Mapping[str, Iterable[str]] | Iterable[tuple[str, Iterable[str]]]


class DagError(ValueError):
    """The workflow graph is invalid, or a run was asked for an impossible transition.

    `cycle` is set only for cycle errors: the task ids along the cycle in "depends on"
    direction, first id repeated at the end (`("a", "b", "a")`: a depends on b, b on a).
    """

    def __init__(self, message: str, cycle: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.cycle = cycle


class Dag:
    """An immutable, validated dependency graph.

    Built from `{task_id: dependencies}` or a sequence of `(task_id, dependencies)`; the
    input order is the tie-break for every order returned. Repeated dependencies of one
    task collapse into one edge. Construction is O(V + E).
    """

    def __init__(self, tasks: TaskSpec) -> None:
        items = list(tasks.items()) if isinstance(tasks, Mapping) else list(tasks)
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        for position, (task_id, _) in enumerate(items):
            if not isinstance(task_id, str) or not task_id:
                raise DagError(f"task #{position}: empty task id")
            if task_id in self._index:
                raise DagError(f"duplicate task id {task_id!r}")
            self._index[task_id] = position
            self._ids.append(task_id)
        self._parents: list[tuple[int, ...]] = []
        self._children: list[list[int]] = [[] for _ in items]
        for child, (task_id, deps) in enumerate(items):
            if isinstance(deps, str):
                # A bare string would be iterated letter by letter into nonsense deps.
                raise DagError(f"task {task_id!r}: dependencies must be a collection of ids")
            parents: dict[int, None] = {}
            for dep in deps:
                if not isinstance(dep, str) or not dep:
                    raise DagError(f"task {task_id!r}: empty dependency id")
                if dep == task_id:
                    raise DagError(f"task {task_id!r} depends on itself")
                parent = self._index.get(dep)
                if parent is None:
                    raise DagError(f"task {task_id!r}: unknown dependency {dep!r}")
                if parent not in parents:
                    parents[parent] = None
                    self._children[parent].append(child)
            self._parents.append(tuple(parents))
        self._check_acyclic()
        self._topo: list[int] | None = None
        self._topo_pos: list[int] = []

    def _check_acyclic(self) -> None:
        # Kahn's algorithm with a plain FIFO keeps validation O(V + E); the ordered
        # topological sort (which needs a heap) is computed lazily only if asked for.
        remaining = [len(p) for p in self._parents]
        queue = deque(i for i, n in enumerate(remaining) if n == 0)
        seen = 0
        while queue:
            node = queue.popleft()
            seen += 1
            for child in self._children[node]:
                remaining[child] -= 1
                if remaining[child] == 0:
                    queue.append(child)
        if seen == len(self._ids):
            return
        # Every leftover node still has a leftover parent, so following the first one
        # from the earliest leftover node must revisit a node: that loop is a cycle.
        on_walk: dict[int, int] = {}
        walk: list[int] = []
        node = next(i for i, n in enumerate(remaining) if n > 0)
        while node not in on_walk:
            on_walk[node] = len(walk)
            walk.append(node)
            node = next(p for p in self._parents[node] if remaining[p] > 0)
        loop = walk[on_walk[node] :]
        # Rotate so the report starts at the earliest input task: one canonical name.
        start = loop.index(min(loop))
        loop = loop[start:] + loop[:start]
        cycle = tuple(self._ids[i] for i in [*loop, loop[0]])
        raise DagError(f"dependency cycle: {' -> '.join(cycle)}", cycle=cycle)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._index

    @property
    def tasks(self) -> list[str]:
        """All task ids in input order."""
        return list(self._ids)

    def _idx(self, task_id: str) -> int:
        try:
            return self._index[task_id]
        except KeyError:
            raise KeyError(f"unknown task {task_id!r}") from None

    def _order(self) -> list[int]:
        if self._topo is None:
            remaining = [len(p) for p in self._parents]
            heap = [i for i, n in enumerate(remaining) if n == 0]
            order: list[int] = []
            while heap:
                node = heapq.heappop(heap)
                order.append(node)
                for child in self._children[node]:
                    remaining[child] -= 1
                    if remaining[child] == 0:
                        heapq.heappush(heap, child)
            self._topo = order
            self._topo_pos = [0] * len(order)
            for pos, node in enumerate(order):
                self._topo_pos[node] = pos
        return self._topo

    def topological_order(self) -> list[str]:
        """Dependencies before dependents; among tasks ready together, input order wins.

        This is the lexicographically smallest order by input position, so an input that
        is already topologically sorted comes back unchanged.
        """
        return [self._ids[i] for i in self._order()]

    def dependencies(self, task_id: str) -> list[str]:
        """Direct dependencies, in the order the task declared them."""
        return [self._ids[p] for p in self._parents[self._idx(task_id)]]

    def dependents(self, task_id: str) -> list[str]:
        """Tasks that directly depend on `task_id`, in input order."""
        return [self._ids[c] for c in self._children[self._idx(task_id)]]

    def roots(self) -> list[str]:
        """Tasks without dependencies, in input order."""
        return [self._ids[i] for i, p in enumerate(self._parents) if not p]

    def leaves(self) -> list[str]:
        """Tasks nothing depends on, in input order."""
        return [self._ids[i] for i, c in enumerate(self._children) if not c]

    def dependency_chain(self, task_id: str) -> list[str]:
        """Every transitive dependency of `task_id` (not itself), in topological order."""
        start = self._idx(task_id)
        self._order()
        found: set[int] = set()
        stack = list(self._parents[start])
        while stack:
            node = stack.pop()
            if node not in found:
                found.add(node)
                stack.extend(self._parents[node])
        return [self._ids[i] for i in sorted(found, key=self._topo_pos.__getitem__)]

    def critical_path(
        self, durations: Mapping[str, float] | None = None
    ) -> tuple[list[str], float]:
        """The longest root-to-leaf path by summed duration, and that sum.

        Tasks missing from `durations` count 1. Ties go to the path ending earliest in
        topological order, then to the earliest-declared dependency along the way.
        """
        weight = [1.0] * len(self._ids)
        for task_id, duration in (durations or {}).items():
            if duration < 0:
                raise ValueError(f"task {task_id!r}: negative duration {duration}")
            weight[self._idx(task_id)] = float(duration)
        best = [0.0] * len(self._ids)
        via = [-1] * len(self._ids)
        end, end_length = -1, float("-inf")
        for node in self._order():
            for parent in self._parents[node]:
                if via[node] < 0 or best[parent] > best[via[node]]:
                    via[node] = parent
            best[node] = weight[node] + (best[via[node]] if via[node] >= 0 else 0.0)
            if best[node] > end_length:
                end, end_length = node, best[node]
        path: list[str] = []
        while end >= 0:
            path.append(self._ids[end])
            end = via[end]
        path.reverse()
        return path, (end_length if path else 0.0)


class TaskStatus(enum.Enum):
    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED}
)
_STARTABLE = frozenset({TaskStatus.READY, TaskStatus.RUNNING})


class DagRun:
    """Execution state of one workflow run over a `Dag`.

    Each task keeps a counter of parents not yet final, so every transition touches only
    the edges it affects. A task becomes READY when all its parents are final and none
    failed under "skip" (a failure under "skip" turns its descendants SKIPPED instead).
    """

    def __init__(self, dag: Dag) -> None:
        self._dag = dag
        self._status = [TaskStatus.PENDING] * len(dag)
        self._waiting = [len(p) for p in dag._parents]
        # Insertion-ordered set: the order tasks became ready is the order handed out.
        self._ready: dict[int, None] = {}
        self._final = 0
        for node, waiting in enumerate(self._waiting):
            if waiting == 0:
                self._make_ready(node)

    @property
    def dag(self) -> Dag:
        return self._dag

    def status(self, task_id: str) -> TaskStatus:
        return self._status[self._dag._idx(task_id)]

    def ready(self) -> list[str]:
        """Tasks READY and not yet started, in the order they became ready.

        Within one transition, newly ready tasks are ordered by input position. Costs
        O(number of ready tasks); calling twice without a transition returns the same.
        """
        return [self._dag._ids[i] for i in self._ready]

    def is_done(self) -> bool:
        """True once every task is final (succeeded, failed, skipped or cancelled)."""
        return self._final == len(self._status)

    def mark_running(self, task_id: str) -> None:
        node = self._expect(task_id, "start", frozenset({TaskStatus.READY}))
        del self._ready[node]
        self._status[node] = TaskStatus.RUNNING

    def mark_succeeded(self, task_id: str) -> list[str]:
        """Finish a READY or RUNNING task; returns the dependents it made READY."""
        node = self._expect(task_id, "succeed", _STARTABLE)
        self._finish(node, TaskStatus.SUCCEEDED)
        return self._release(node)

    def mark_failed(self, task_id: str, on_failure: OnFailure = "skip") -> list[str]:
        """Fail a READY or RUNNING task.

        "skip": every transitive dependent not yet final becomes SKIPPED; returns them in
        topological order. "continue": dependents treat the failure like a success;
        returns the dependents it made READY.
        """
        node = self._expect(task_id, "fail", _STARTABLE)
        self._finish(node, TaskStatus.FAILED)
        if on_failure == "continue":
            return self._release(node)
        if on_failure != "skip":
            raise ValueError(f"on_failure must be 'skip' or 'continue', not {on_failure!r}")
        skipped: list[int] = []
        stack = [node]
        while stack:
            for child in self._dag._children[stack.pop()]:
                # A final child was skipped (or cancelled) earlier along with all of its
                # descendants, so the walk stops there and stays proportional to new work.
                if not self._status[child].is_final:
                    self._finish(child, TaskStatus.SKIPPED)
                    skipped.append(child)
                    stack.append(child)
        self._dag._order()
        skipped.sort(key=self._dag._topo_pos.__getitem__)
        return [self._dag._ids[i] for i in skipped]

    def cancel(self) -> list[str]:
        """Cancel every task not yet final (the workflow was cancelled); input order."""
        cancelled = [i for i, s in enumerate(self._status) if not s.is_final]
        for node in cancelled:
            self._finish(node, TaskStatus.CANCELLED)
        return [self._dag._ids[i] for i in cancelled]

    def _expect(self, task_id: str, verb: str, allowed: frozenset[TaskStatus]) -> int:
        node = self._dag._idx(task_id)
        status = self._status[node]
        if status not in allowed:
            raise DagError(f"task {task_id!r} is {status.value}, cannot {verb}")
        return node

    def _make_ready(self, node: int) -> None:
        self._status[node] = TaskStatus.READY
        self._ready[node] = None

    def _finish(self, node: int, status: TaskStatus) -> None:
        self._ready.pop(node, None)
        self._status[node] = status
        self._final += 1

    def _release(self, node: int) -> list[str]:
        released: list[str] = []
        # Children lists are in input order, which gives each batch its documented order.
        for child in self._dag._children[node]:
            self._waiting[child] -= 1
            if self._waiting[child] == 0 and self._status[child] is TaskStatus.PENDING:
                self._make_ready(child)
                released.append(self._dag._ids[child])
        return released
