"""A one-line progress display for `wait`, redrawn in place on a terminal."""

from __future__ import annotations

from typing import IO

from agentflow.cli.render import Style, counts_text
from agentflow.client.models import Task, TaskEvent, TaskState, WorkflowStatus
from agentflow.client.tracking import WorkflowTracker

BAR_WIDTH = 24


def bar(fraction: float, unicode: bool = True, width: int = BAR_WIDTH) -> str:
    fraction = min(1.0, max(0.0, fraction))
    done = round(fraction * width)
    full, empty = ("█", "░") if unicode else ("#", "-")
    return f"[{full * done}{empty * (width - done)}]"


def task_line(task: Task, style: Style) -> str:
    fraction = 1.0 if task.is_finished else task.progress
    icon = style.task_icon(task.state)
    text = f"{icon} [{task.id}] {task.state.value} {bar(fraction, style.unicode)} {fraction:4.0%}"
    if task.progress_message and not task.is_finished:
        text += f" {task.progress_message}"
    return text


def workflow_line(tracker: WorkflowTracker, style: Style) -> str:
    fraction = tracker.finished / tracker.total if tracker.total else 1.0
    counts: dict[TaskState, int] = {
        s: n for s, n in tracker.counts().items() if s is not TaskState.UNKNOWN
    }
    return (
        f"{bar(fraction, style.unicode)} {tracker.finished}/{tracker.total} tasks finished"
        f" ({counts_text(counts)})"
    )


class ProgressDisplay:
    """Redraws one status line on `stream` (a terminal); silent when `stream` is None."""

    def __init__(self, stream: IO[str] | None, style: Style) -> None:
        self._stream = stream
        self._style = style
        self._width = 0
        self._tracker: WorkflowTracker | None = None

    def start_workflow(self, status: WorkflowStatus) -> None:
        self._tracker = WorkflowTracker(status)
        self._draw(workflow_line(self._tracker, self._style))

    def start_task(self, task: Task) -> None:
        self._draw(task_line(task, self._style))

    def on_event(self, event: TaskEvent) -> None:
        if self._tracker is not None:
            self._tracker.update(event.task)
            self._draw(workflow_line(self._tracker, self._style))
        else:
            self._draw(task_line(event.task, self._style))

    def _draw(self, line: str) -> None:
        if self._stream is None:
            return
        padding = " " * max(0, self._width - len(line))
        self._stream.write(f"\r{line}{padding}")
        self._stream.flush()
        self._width = len(line)

    def finish(self) -> None:
        if self._stream is not None and self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0
