"""The last lines each task printed, kept in memory by the leader.

Logs are not replicated: they are large, arrive continuously, and losing the live
view on a leader change costs little (a new leader starts empty, and the final tails
are committed with every result). Memory is bounded twice: per task (oldest lines
dropped first) and in the number of tasks (least recently written dropped first).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from agentflow._proto import worker_pb2 as wpb


@dataclass(slots=True)
class _Buffer:
    lines: deque[wpb.LogLine] = field(default_factory=deque)
    size: int = 0
    next_offset: int = 1


class TaskLogs:
    def __init__(self, bytes_per_task: int = 64 * 1024, max_tasks: int = 2000) -> None:
        if bytes_per_task < 1 or max_tasks < 1:
            raise ValueError("bytes_per_task and max_tasks must be >= 1")
        self.bytes_per_task = bytes_per_task
        self.max_tasks = max_tasks
        self._tasks: OrderedDict[str, _Buffer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tasks)

    def append(self, chunk: wpb.LogChunk) -> None:
        if not chunk.text:
            return
        buf = self._tasks.get(chunk.task_id)
        if buf is None:
            buf = self._tasks[chunk.task_id] = _Buffer()
            while len(self._tasks) > self.max_tasks:
                self._tasks.popitem(last=False)
        else:
            self._tasks.move_to_end(chunk.task_id)
        # A chunk longer than the whole budget keeps only its end: the newest output
        # is what someone following a task wants.
        text = chunk.text[-self.bytes_per_task :]
        line = wpb.LogLine(
            offset=buf.next_offset, attempt=chunk.attempt, stream=chunk.stream, text=text
        )
        buf.next_offset += 1
        buf.lines.append(line)
        buf.size += len(text)
        while buf.size > self.bytes_per_task and len(buf.lines) > 1:
            buf.size -= len(buf.lines.popleft().text)

    def read(self, task_id: str, after: int = 0) -> wpb.GetTaskLogsResponse:
        buf = self._tasks.get(task_id)
        if buf is None:
            return wpb.GetTaskLogsResponse(next=after)
        lines = [line for line in buf.lines if line.offset > after]
        # Truncated from this reader's point of view: lines it never saw were dropped.
        missed = bool(buf.lines) and buf.lines[0].offset > after + 1
        return wpb.GetTaskLogsResponse(lines=lines, next=buf.next_offset - 1, truncated=missed)
