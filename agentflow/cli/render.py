"""Human-readable text for SDK results: a listing is a table, one line per task,

    2 tasks
    ID  NAME                STATE    PRIORITY  GROUP   WORKER      AGE   TOOK
    5   Build docker image  pending  normal    docker  -           3 m
    6   Run tests           running  high      docker  worker-002  1 m

and the long form (`list --wide`, `show`) is a block per task:

    ⏳ [5] Build docker image
       group: docker
       state: pending
       created: 2024-01-01 10:00:00

Pure functions of their arguments (the time zone and glyph set included), so tests
can pin the exact text.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

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


# ----- durations -----


def took(seconds: float) -> str:
    """How long something ran: "35 ms", "1.2 s", "42 s", "3 m 4 s", "2 h 5 m"."""
    seconds = max(0.0, seconds)
    if seconds < 0.9995:
        return f"{round(seconds * 1000)} ms"
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 59.5:
        return f"{round(seconds)} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} m {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} m"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def age(seconds: float) -> str:
    """How long ago, to one unit: "12 s", "5 m", "3 h", "2 d"."""
    whole = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size} {unit}"
    return f"{whole} s"


def run_seconds(task: Task) -> float | None:
    """From start (or assignment, when no start was recorded) to finish; None if it
    has not finished or never ran."""
    begin = task.started or task.assigned
    if begin is None or task.finished is None:
        return None
    return max(0.0, (task.finished - begin).total_seconds())


def _took(task: Task) -> str:
    seconds = run_seconds(task)
    return "" if seconds is None else took(seconds)


# ----- tasks -----


def task_summary(task: Task, style: Style) -> str:
    """A task in the long form of a listing (`list --wide`)."""
    lines = [
        ("group", task.group),
        ("state", _state(task)),
        ("priority", "" if task.priority is Priority.NORMAL else task.priority.name.lower()),
        ("worker", task.worker_id),
        ("workflow", task.workflow_id),
        ("created", style.time(task.created)),
        ("took", _took(task)),
    ]
    return _block(f"{style.task_icon(task.state)} [{task.id}] {_title(task)}", lines)


def _state(task: Task) -> str:
    text = task.state.value
    if task.attempt > 1:
        text += f" (attempt {task.attempt})"
    if task.state is TaskState.RUNNING and task.progress > 0:
        text += f", {task.progress:.0%}"
    return text


def _head(tasks: Sequence[Task], total: int | None) -> str:
    head = plural(len(tasks), "task")
    if total is not None and total > len(tasks):
        head = f"{len(tasks)} of {plural(total, 'task')}"
    return head


NAME_WIDTH = 32
_COLUMNS = ("ID", "NAME", "STATE", "PRIORITY", "GROUP", "WORKER", "AGE", "TOOK")


def task_list(
    tasks: Sequence[Task],
    style: Style,
    total: int | None = None,
    *,
    now: datetime | None = None,
    wide: bool = False,
) -> str:
    """A count line, then a table with one line per task, or with `wide` a block per
    task. `now` is what ages are measured from (default: the tasks' newest creation)."""
    if not tasks:
        return "no tasks"
    if wide:
        return "\n\n".join([_head(tasks, total), *(task_summary(t, style) for t in tasks)])
    if now is None:
        now = max((t.created for t in tasks if t.created), default=None)
    ellipsis = "…" if style.unicode else "..."
    rows = [_COLUMNS]
    for t in tasks:
        name = _title(t)
        if len(name) > NAME_WIDTH:
            name = name[: NAME_WIDTH - len(ellipsis)] + ellipsis
        created = (now - t.created).total_seconds() if now and t.created else None
        rows.append(
            (
                t.id,
                name,
                _state(t),
                t.priority.name.lower(),
                t.group,
                t.worker_id or "-",
                "-" if created is None else age(created),
                _took(t),
            )
        )
    return "\n".join([_head(tasks, total), *_table(rows)])


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


_FAILURE_LABELS = {
    TaskState.FAILED: "error",
    TaskState.CANCELLED: "cancel reason",
    TaskState.SKIPPED: "skipped because",
}


def _outcome(task: Task) -> list[tuple[str, str]]:
    """What the result says, in the state's own words. An exit code only when the task
    produced one: a shell task that ran to its end, or a failure with a real exit
    status (a python task returns or raises; its pool process only has a status when
    a signal killed it). Cancelled and skipped tasks never ended on their own."""
    result = task.result
    if result is None:
        return []
    code = result.exit_code
    if task.command.startswith("python:"):
        produced = task.state is TaskState.FAILED and code < 0
    else:
        produced = task.state is TaskState.SUCCEEDED or (
            task.state is TaskState.FAILED and code != 0
        )
    lines: list[tuple[str, str]] = []
    if produced:
        lines.append(("exit code", _exit_code(code)))
    label = _FAILURE_LABELS.get(task.state, "last error")
    error = result.error
    if task.state is TaskState.CANCELLED and error == "cancelled":
        error = "none given"  # the master's word when `cancel` had no --reason
    if task.state is TaskState.CANCELLED and result.cancelled_by:
        lines.append(("cancelled by", result.cancelled_by))
    if task.state is not TaskState.SUCCEEDED:
        lines.append((label, error))
    return lines


def _exit_code(code: int) -> str:
    if code < 0:
        try:
            return f"{code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"{code} (killed by signal {-code})"
    return str(code)


def _returned(task: Task) -> str:
    """A python task's return value as JSON: inline when short, else an indented block."""
    result = task.result
    if task.state is not TaskState.SUCCEEDED or result is None:
        return ""
    if not task.command.startswith("python:"):
        return ""
    inline = _json(result.value, None)
    if len(inline) <= 80 and "\n" not in inline:
        return f"\n{INDENT}returned: {inline}"
    lines = _json(result.value, 2).splitlines()
    return f"\n{INDENT}returned:" + "".join(f"\n{INDENT}  | {line}" for line in lines)


def _json(value: Any, indent: int | None) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=False)
    except (TypeError, ValueError):
        return repr(value)


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
        ("took", _took(task)),
        ("not before", style.time(task.not_before) if task.not_before else ""),
        *_outcome(task),
    ]
    text = _block(f"{style.task_icon(task.state)} [{task.id}] {_title(task)}", lines)
    text += _returned(task)
    result = task.result
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
        rows.append(
            f"{style.task_icon(t.state)} {t.id:<{width}}  {_state(t):<22} "
            f"{t.worker_id or '-':<12} {_took(t)}".rstrip()
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
