"""Histories of real cluster runs, and the checker of the scheduler's promises.

A history is what independent observers saw during a run (TESTING.md, layer 5):
- submits: what clients were told (acknowledged or not) and the DAG edges they asked for;
- executions: what task code really ran (each run appends to a journal itself);
- commits: every committed report and assignment, with whether the state machine
  accepted it, recovered afterwards by replaying a master's Raft log into a fresh
  state machine (`commits_from_log`);
- final: each task as the cluster reports it at the end;
- pauses: wall-clock windows in which every master was stopped (SIGSTOP).

`check` returns every broken promise in words; an empty list means the run kept them:
nothing acknowledged is lost, each (task, attempt) result is committed at most once
and never after the task's final result, no stale attempt's report is accepted, the
final result comes from an attempt that really ran, no child starts before its
parents have succeeded, and a result that finished while every master was paused is
committed (the pause is the masters', not the workers').
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentflow._proto import state_pb2
from agentflow.state import SchedulerState

FINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED")


@dataclass
class Submit:
    request_id: str
    acked: bool
    task_ids: list[str] = field(default_factory=list)
    dependencies: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Execution:
    task_id: str
    attempt: int
    worker: str
    start: float
    end: float | None = None  # None: killed before it finished
    ok: bool = False


@dataclass
class Commit:
    index: int
    kind: str  # assigned | finished | requeued
    task_id: str
    attempt: int
    accepted: bool
    success: bool = False


@dataclass
class Final:
    state: str  # TaskState name without the prefix: "SUCCEEDED"
    attempt: int
    value: Any = None  # the decoded value_json of the result


@dataclass
class History:
    submits: list[Submit] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    final: dict[str, Final] = field(default_factory=dict)
    pauses: list[tuple[float, float]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> History:
        raw = json.loads(text)
        return cls(
            submits=[Submit(**s) for s in raw.get("submits", [])],
            executions=[Execution(**e) for e in raw.get("executions", [])],
            commits=[Commit(**c) for c in raw.get("commits", [])],
            final={k: Final(**v) for k, v in raw.get("final", {}).items()},
            pauses=[(a, b) for a, b in raw.get("pauses", [])],
        )

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())


def commits_from_log(entries: Iterable[tuple[int, bytes]]) -> list[Commit]:
    """Replay committed commands (index, bytes) into a fresh state machine and
    record what each assignment and report did. The log must start at index 1
    (no compaction) for the picture to be complete."""
    state = SchedulerState()
    commits: list[Commit] = []
    for index, data in entries:
        cmd = state_pb2.Command.FromString(data)
        result = state.apply_command(index, cmd)
        refused = {r.split(":", 1)[0] for r in result.rejected}
        kind = cmd.WhichOneof("kind")
        if result.duplicate or result.error.code:
            continue
        if kind in ("submit_tasks", "submit_workflow"):
            # Placed in their own submit entry: an assignment like any other.
            ids = list(result.task_ids)
            placements = (
                cmd.submit_tasks.placements
                if kind == "submit_tasks"
                else cmd.submit_workflow.placements
            )
            for p in placements:
                if p.task_index < len(ids):
                    task_id = ids[p.task_index]
                    commits.append(Commit(index, "assigned", task_id, 1, task_id not in refused))
        elif kind == "assign_tasks":
            for a in cmd.assign_tasks.assignments:
                commits.append(
                    Commit(index, "assigned", a.task_id, a.attempt, a.task_id not in refused)
                )
        elif kind in ("task_finished", "finish_tasks"):
            reports = [cmd.task_finished] if kind == "task_finished" else cmd.finish_tasks.items
            for f in reports:
                commits.append(
                    Commit(
                        index, "finished", f.task_id, f.attempt, f.task_id not in refused, f.success
                    )
                )
        elif kind == "requeue_tasks":
            for item in cmd.requeue_tasks.items:
                commits.append(
                    Commit(
                        index, "requeued", item.task_id, item.attempt, item.task_id not in refused
                    )
                )
    return commits


def check(history: History) -> list[str]:
    problems: list[str] = []
    problems += _nothing_lost(history)
    problems += _reports_fenced(history)
    problems += _results_really_ran(history)
    problems += _dag_order(history)
    problems += _results_kept_through_pauses(history)
    return problems


def _results_kept_through_pauses(h: History) -> list[str]:
    out = []
    committed = {(c.task_id, c.attempt) for c in h.commits if c.kind == "finished" and c.accepted}
    for start, stop in h.pauses:
        for e in h.executions:
            ended = e.ok and e.end is not None and start <= e.end <= stop
            if ended and (e.task_id, e.attempt) not in committed:
                out.append(
                    f"task {e.task_id}: attempt {e.attempt} finished on {e.worker} while "
                    "every master was paused, but its result was never committed"
                )
    return out


def _nothing_lost(h: History) -> list[str]:
    out = []
    for submit in h.submits:
        if not submit.acked:
            continue
        for task_id in submit.task_ids:
            final = h.final.get(task_id)
            if final is None:
                out.append(f"task {task_id}: acknowledged (request {submit.request_id}) but lost")
            elif final.state not in FINAL:
                out.append(f"task {task_id}: acknowledged but still {final.state} at the end")
    return out


def _reports_fenced(h: History) -> list[str]:
    out = []
    current: dict[str, int] = {}  # task -> attempt of its last accepted assignment
    finished: dict[str, int] = {}  # task -> index of its final (successful) result
    seen: set[tuple[str, int]] = set()
    for c in sorted(h.commits, key=lambda c: c.index):
        if not c.accepted:
            continue
        if c.kind == "assigned":
            if c.task_id in finished:
                out.append(f"task {c.task_id}: assigned again at {c.index} after its final result")
            if c.attempt <= current.get(c.task_id, 0):
                out.append(f"task {c.task_id}: attempt {c.attempt} assigned again at {c.index}")
            current[c.task_id] = c.attempt
            continue
        if c.attempt != current.get(c.task_id):
            out.append(
                f"task {c.task_id}: stale report of attempt {c.attempt} accepted at {c.index} "
                f"(current attempt {current.get(c.task_id, 0)})"
            )
        key = (c.task_id, c.attempt)
        if key in seen:
            out.append(f"task {c.task_id}: attempt {c.attempt} result committed twice")
        seen.add(key)
        if c.task_id in finished:
            out.append(
                f"task {c.task_id}: result committed at {c.index} after its final result "
                f"at {finished[c.task_id]}"
            )
        if c.kind == "finished" and c.success:
            finished[c.task_id] = c.index
    return out


def _results_really_ran(h: History) -> list[str]:
    out = []
    ran_ok = {(e.task_id, e.attempt) for e in h.executions if e.ok}
    for task_id, final in h.final.items():
        if final.state != "SUCCEEDED":
            continue
        if (task_id, final.attempt) not in ran_ok:
            out.append(
                f"task {task_id}: SUCCEEDED as attempt {final.attempt}, which never ran to the end"
            )
        reported = final.value.get("attempt") if isinstance(final.value, dict) else None
        if reported is not None and reported != final.attempt:
            out.append(
                f"task {task_id}: result of attempt {reported} kept for attempt {final.attempt}"
            )
    return out


def _dag_order(h: History) -> list[str]:
    out = []
    parents: dict[str, list[str]] = {}
    for submit in h.submits:
        parents.update(submit.dependencies)
    succeeded_at = {
        c.task_id: c.index for c in h.commits if c.accepted and c.kind == "finished" and c.success
    }
    first_assigned: dict[str, int] = {}
    for c in sorted(h.commits, key=lambda c: c.index):
        if c.accepted and c.kind == "assigned":
            first_assigned.setdefault(c.task_id, c.index)
    ends = {}
    for e in h.executions:
        if e.ok and e.end is not None:
            ends[(e.task_id, e.attempt)] = e.end
    first_start: dict[str, float] = {}
    for e in h.executions:
        first_start[e.task_id] = min(first_start.get(e.task_id, e.start), e.start)
    for child, deps in parents.items():
        for parent in deps:
            at = first_assigned.get(child)
            done = succeeded_at.get(parent)
            if at is not None and (done is None or at < done):
                out.append(
                    f"task {child}: assigned at {at} before its dependency {parent} "
                    f"succeeded ({'never' if done is None else f'at {done}'})"
                )
            final = h.final.get(parent)
            end = ends.get((parent, final.attempt)) if final else None
            start = first_start.get(child)
            if start is not None and end is not None and start < end:
                out.append(f"task {child}: started before its dependency {parent} finished")
    return out


async def committed_log(data_dir: Path) -> list[tuple[int, bytes]]:
    """The scheduler commands stored in a master's Raft log, in order. Read it from
    the leader of a quiescent cluster (its whole log is then committed), started
    with a --snapshot-every high enough that nothing was compacted."""
    from agentflow.raft.storage import RaftStorage
    from agentflow.raft.types import EntryType

    storage = await RaftStorage.open(data_dir)
    try:
        persisted = await storage.load()
    finally:
        await storage.close()
    if persisted.snapshot is not None:
        raise ValueError(f"{data_dir}: the log was compacted; the history would be partial")
    return [(e.index, e.data) for e in persisted.entries if e.type == EntryType.NORMAL and e.data]
