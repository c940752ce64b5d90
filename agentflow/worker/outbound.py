"""What the worker has to tell the master, kept across connections.

Results are the one thing that must not be lost: a result stays here from the moment
its attempt ends until the leader acknowledges it (committed, or refused as stale),
and every new session starts by sending the unacknowledged ones again in its hello.
Everything else (started, progress, logs) is best effort: sent once, in order;
progress is coalesced to the newest value per attempt, and logs waiting while no
master is reachable are capped, oldest dropped first.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict, deque
from collections.abc import Iterable

from agentflow._proto import worker_pb2 as wpb

Key = tuple[str, int]


class ResultStore:
    """Finished attempts not yet acknowledged, in the order they finished."""

    def __init__(self) -> None:
        self._unacked: OrderedDict[Key, wpb.ResultReport] = OrderedDict()
        self._sent: set[Key] = set()  # sent in the current session

    def __len__(self) -> int:
        return len(self._unacked)

    def __contains__(self, key: object) -> bool:
        return key in self._unacked

    def add(self, report: wpb.ResultReport) -> None:
        key = (report.task_id, report.attempt)
        self._unacked[key] = report
        self._sent.discard(key)

    def unsent(self, limit: int | None = None) -> list[wpb.ResultReport]:
        """Up to `limit` results not yet sent in this session; marked sent."""
        fresh = [r for k, r in self._unacked.items() if k not in self._sent][:limit]
        self._sent.update((r.task_id, r.attempt) for r in fresh)
        return fresh

    def has_unsent(self) -> bool:
        return len(self._sent) < len(self._unacked)

    def begin_session(self) -> list[wpb.ResultReport]:
        """Every unacknowledged result, for the hello of a new session (so marked
        sent in it): a result sent on a connection that died may never have arrived."""
        self._sent = set(self._unacked)
        return list(self._unacked.values())

    def ack(self, task_id: str, attempt: int) -> bool:
        key = (task_id, attempt)
        self._sent.discard(key)
        return self._unacked.pop(key, None) is not None

    def keys(self) -> list[Key]:
        return list(self._unacked)


class Outbound:
    def __init__(self, max_log_bytes: int = 4 * 1024 * 1024) -> None:
        self.results = ResultStore()
        self.max_log_bytes = max_log_bytes
        self.dropped_log_bytes = 0
        self._seq = itertools.count(1)
        self._queue: deque[wpb.WorkerMessage] = deque()
        self._log_bytes = 0
        self._progress: dict[Key, wpb.WorkerMessage] = {}
        self._ready = asyncio.Event()

    def _message(self) -> wpb.WorkerMessage:
        return wpb.WorkerMessage(seq=next(self._seq))

    def _push(self, message: wpb.WorkerMessage) -> None:
        self._queue.append(message)
        self._ready.set()

    # -- what the agent reports -------------------------------------------------

    def started(self, task_id: str, attempt: int) -> None:
        message = self._message()
        message.started.SetInParent()
        message.started.task_id = task_id
        message.started.attempt = attempt
        self._push(message)

    def progress(self, task_id: str, attempt: int, fraction: float, text: str) -> None:
        message = self._message()
        message.progress.CopyFrom(
            wpb.ProgressReport(task_id=task_id, attempt=attempt, fraction=fraction, message=text)
        )
        self._progress[(task_id, attempt)] = message
        self._ready.set()

    def log(self, task_id: str, attempt: int, stream: str, text: str) -> None:
        if not text:
            return
        message = self._message()
        message.logs.chunks.append(
            wpb.LogChunk(task_id=task_id, attempt=attempt, stream=stream, text=text)
        )
        self._log_bytes += len(text)
        self._push(message)
        while self._log_bytes > self.max_log_bytes:
            if not self._drop_oldest_log():
                break

    def _drop_oldest_log(self) -> bool:
        for i, queued in enumerate(self._queue):
            if queued.HasField("logs"):
                size = sum(len(c.text) for c in queued.logs.chunks)
                self._log_bytes -= size
                self.dropped_log_bytes += size
                del self._queue[i]
                return True
        return False

    def result(self, report: wpb.ResultReport) -> None:
        self.results.add(report)
        self._ready.set()

    def send_now(self, message: wpb.WorkerMessage) -> None:
        """A heartbeat or a drain notice: queued after what is already waiting."""
        message.seq = next(self._seq)
        self._push(message)

    # -- what the connection sends ------------------------------------------------

    async def wait(self) -> None:
        await self._ready.wait()

    def take(self, limit: int = 512) -> list[wpb.WorkerMessage]:
        """The next batch: queued messages in order, then the newest progress, then
        results not yet sent in this session (so a task's started and progress are
        proposed before its result)."""
        batch: list[wpb.WorkerMessage] = []
        while self._queue and len(batch) < limit:
            message = self._queue.popleft()
            if message.HasField("logs"):
                self._log_bytes -= sum(len(c.text) for c in message.logs.chunks)
            batch.append(message)
        while self._progress and len(batch) < limit:
            key = next(iter(self._progress))
            batch.append(self._progress.pop(key))
        if len(batch) < limit:
            # All in one message: one write on the stream, one command on the leader.
            reports = self.results.unsent(limit)
            if reports:
                message = self._message()
                message.results.reports.extend(reports)
                batch.append(message)
        if not self._queue and not self._progress and not self.results.has_unsent():
            self._ready.clear()
        return batch

    def forget_queued(self, keys: Iterable[Key]) -> None:
        """Drop queued reports about these attempts (the master cancelled them)."""
        gone = set(keys)
        self._queue = deque(m for m in self._queue if _key(m) not in gone)
        self._log_bytes = sum(
            len(c.text) for m in self._queue if m.HasField("logs") for c in m.logs.chunks
        )
        for key in gone:
            self._progress.pop(key, None)


def _key(message: wpb.WorkerMessage) -> Key | None:
    kind = message.WhichOneof("body")
    if kind == "started":
        return (message.started.task_id, message.started.attempt)
    if kind == "logs" and message.logs.chunks:
        return (message.logs.chunks[0].task_id, message.logs.chunks[0].attempt)
    return None
