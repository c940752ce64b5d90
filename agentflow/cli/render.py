"""Human-readable text for SDK results, in the style of the seed listings:

    2 tasks

    ⏳ [5] Build docker image
       group: docker
       state: pending
       created: 2024-01-01 10:00:00

Pure functions of their arguments (the time zone and glyph set included), so tests
can pin the exact text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from agentflow.client.durations import format_duration
from agentflow.client.models import (
    Priority,
    Task,
    TaskState,
    WorkerState,
    WorkerStatus,
    WorkflowState,
    WorkflowStatus,
)

INDENT = "   "


@dataclass(frozen=True, slots=True)
class Style:
    """Glyphs and time zone. `tz=None` is the local zone."""

    unicode: bool = True
    tz: tzinfo | None = None

    def task_icon(self, state: TaskState) -> str:
        return (_TASK_ICONS if self.unicode else _TASK_ASCII)[state]

    def workflow_icon(self, state: WorkflowState) -> str:
        return (_WORKFLOW_ICONS if self.unicode else _WORKFLOW_ASCII)[state]

    def worker_icon(self, state: WorkerState) -> str:
        return (_WORKER_ICONS if self.unicode else _WORKER_ASCII)[state]

    def time(self, value: datetime | None) -> str:
        return value.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


_TASK_ICONS = {
    TaskState.UNKNOWN: "❔",
    TaskState.PENDING: "⏳",
    TaskState.READY: "⏸",
    TaskState.ASSIGNED: "▶",
    TaskState.RUNNING: "▶",
    TaskState.SUCCEEDED: "✅",
    TaskState.FAILED: "❌",
    TaskState.CANCELLED: "🚫",
    TaskState.SKIPPED: "⏭",
}
_TASK_ASCII = {
    TaskState.UNKNOWN: "?",
    TaskState.PENDING: ".",
    TaskState.READY: "-",
    TaskState.ASSIGNED: ">",
    TaskState.RUNNING: ">",
    TaskState.SUCCEEDED: "+",
    TaskState.FAILED: "x",
    TaskState.CANCELLED: "/",
    TaskState.SKIPPED: "~",
}
_WORKFLOW_ICONS = {
    WorkflowState.UNKNOWN: "❔",
    WorkflowState.RUNNING: "🔄",
    WorkflowState.SUCCEEDED: "✅",
    WorkflowState.FAILED: "❌",
    WorkflowState.CANCELLED: "🚫",
}
_WORKFLOW_ASCII = {
    WorkflowState.UNKNOWN: "?",
    WorkflowState.RUNNING: ">",
    WorkflowState.SUCCEEDED: "+",
    WorkflowState.FAILED: "x",
    WorkflowState.CANCELLED: "/",
}
_WORKER_ICONS = {
    WorkerState.UNKNOWN: "⚪",
    WorkerState.ONLINE: "🟢",
    WorkerState.DRAINING: "🟡",
    WorkerState.LOST: "🔴",
    WorkerState.OFFLINE: "⚪",
}
_WORKER_ASCII = {
    WorkerState.UNKNOWN: "?",
    WorkerState.ONLINE: "+",
    WorkerState.DRAINING: "~",
    WorkerState.LOST: "x",
    WorkerState.OFFLINE: "-",
}


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _block(head: str, lines: Iterable[tuple[str, str]]) -> str:
    return "\n".join([head, *(f"{INDENT}{key}: {value}" for key, value in lines if value)])


def _title(task: Task) -> str:
    return task.name or task.command


def counts_text(counts: Mapping[TaskState, int]) -> str:
    """ "2 running, 1 failed" in life-cycle order, zeros left out."""
    parts = [f"{counts[s]} {s.value}" for s in TaskState if counts.get(s)]
    return ", ".join(parts) or "none"


# ----- tasks -----


def task_summary(task: Task, style: Style) -> str:
    """A task as one entry of a listing."""
    lines = [
        ("group", task.group),
        ("state", _state(task)),
        ("priority", "" if task.priority is Priority.NORMAL else task.priority.name.lower()),
        ("worker", task.worker_id),
        ("workflow", task.workflow_id),
        ("created", style.time(task.created)),
    ]
    return _block(f"{style.task_icon(task.state)} [{task.id}] {_title(task)}", lines)


def _state(task: Task) -> str:
    text = task.state.value
    if task.attempt > 1:
        text += f" (attempt {task.attempt})"
    if task.state is TaskState.RUNNING and task.progress > 0:
        text += f", {task.progress:.0%}"
    return text


def task_list(tasks: Sequence[Task], style: Style, total: int | None = None) -> str:
    if not tasks:
        return "no tasks"
    head = plural(len(tasks), "task")
    if total is not None and total > len(tasks):
        head = f"{len(tasks)} of {plural(total, 'task')}"
    return "\n\n".join([head, *(task_summary(t, style) for t in tasks)])


def task_detail(task: Task, style: Style) -> str:
    spec = task.spec
    resources = ", ".join(
        part
        for part in (
            f"cpu {spec.cpu:g}" if spec.cpu else "",
            f"memory {spec.memory_mb} MB" if spec.memory_mb else "",
            f"gpus {spec.gpus}" if spec.gpus else "",
        )
        if part
    )
    worker = task.worker_id
    if worker and task.gpu_indices:
        worker += f" (GPUs {', '.join(map(str, task.gpu_indices))})"
    attempt = str(task.attempt) if task.attempt else ""
    if attempt and spec.max_retries:
        attempt += f" (max retries {spec.max_retries})"
    progress = ""
    if task.progress or task.progress_message:
        progress = f"{task.progress:.0%} {task.progress_message}".strip()
    lines = [
        ("command", task.command),
        ("group", task.group),
        ("state", task.state.value),
        ("priority", task.priority.name.lower()),
        ("attempt", attempt),
        ("worker", worker),
        ("workflow", task.workflow_id),
        ("dependencies", ", ".join(task.dependencies)),
        ("resources", resources),
        ("labels", _pairs(spec.labels)),
        ("timeout", format_duration(spec.timeout) if spec.timeout else ""),
        ("progress", progress),
        ("created", style.time(task.created)),
        ("started", style.time(task.started) if task.started else ""),
        ("finished", style.time(task.finished) if task.finished else ""),
        ("not before", style.time(task.not_before) if task.not_before else ""),
    ]
    result = task.result
    if result is not None:
        lines.append(("exit code", str(result.exit_code)))
        lines.append(("error", result.error))
    text = _block(f"{style.task_icon(task.state)} [{task.id}] {_title(task)}", lines)
    if result is not None:
        text += _tail("stdout", result.stdout_tail) + _tail("stderr", result.stderr_tail)
    if task.errors:
        text += f"\n{INDENT}errors:" + "".join(f"\n{INDENT}  - {e}" for e in task.errors)
    return text


def _pairs(values: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items()))


def _tail(label: str, text: str) -> str:
    if not text.strip():
        return ""
    lines = text.rstrip("\n").splitlines()
    return f"\n{INDENT}{label}:" + "".join(f"\n{INDENT}  | {line}" for line in lines)


# ----- workflows -----


def workflow_detail(status: WorkflowStatus, style: Style) -> str:
    counts = dict(status.state_counts) or _count(status.tasks)
    head = f"{style.workflow_icon(status.state)} [{status.id}] {status.name or 'workflow'}"
    lines = [
        ("state", status.state.value),
        ("on failure", status.on_failure.value),
        ("tasks", f"{len(status.task_ids)} ({counts_text(counts)})"),
        ("execution order", _shortened(status.execution_order, ", ")),
        ("critical path", " -> ".join(status.critical_path)),
        ("created", style.time(status.created)),
        ("finished", style.time(status.finished) if status.finished else ""),
    ]
    if not status.tasks:
        return _block(head, lines)
    return _block(head, lines) + "\n\n" + task_table(status.tasks, style)


def _shortened(ids: Sequence[str], sep: str, keep: int = 12) -> str:
    if len(ids) <= keep:
        return sep.join(ids)
    return sep.join(ids[:keep]) + f"{sep}... ({len(ids) - keep} more)"


def task_table(tasks: Sequence[Task], style: Style) -> str:
    """One line per task (a workflow's tasks can be thousands)."""
    width = max(len(t.id) for t in tasks)
    rows = []
    for t in tasks:
        took = ""
        if t.started and t.finished:
            took = f"{(t.finished - t.started).total_seconds():.2f} s"
        rows.append(
            f"{style.task_icon(t.state)} {t.id:<{width}}  {_state(t):<22} "
            f"{t.worker_id or '-':<12} {took}".rstrip()
        )
    return "\n".join(rows)


def _count(tasks: Iterable[Task]) -> dict[TaskState, int]:
    counts: dict[TaskState, int] = {}
    for task in tasks:
        counts[task.state] = counts.get(task.state, 0) + 1
    return counts


# ----- workers and cluster -----


def worker_summary(worker: WorkerStatus, style: Style) -> str:
    resources = f"{worker.cpu_cores:g} cpu, {worker.memory_mb} MB memory"
    if worker.gpu_count:
        resources += f", {plural(worker.gpu_count, 'gpu')}"
    usage = ""
    if worker.connected:
        usage = f"cpu {worker.cpu_percent:.0f}%, memory {worker.memory_percent:.0f}%"
    lines = [
        ("groups", ", ".join(worker.groups)),
        ("state", worker.state.value + ("" if worker.connected else ", not connected")),
        ("running", f"{worker.running} / {worker.capacity}"),
        ("resources", resources),
        ("usage", usage),
        ("labels", _pairs(worker.labels)),
        ("last heartbeat", style.time(worker.last_heartbeat)),
    ]
    head = f"{style.worker_icon(worker.state)} [{worker.id}] {worker.hostname or worker.address}"
    return _block(head.rstrip(), lines)


def worker_list(workers: Sequence[WorkerStatus], style: Style) -> str:
    if not workers:
        return "no workers"
    return "\n\n".join(
        [plural(len(workers), "worker"), *(worker_summary(w, style) for w in workers)]
    )
