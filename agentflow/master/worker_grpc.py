"""The gRPC transport of worker sessions (`WorkerService.Connect`) and the task log
reads (`TaskLogService.GetTaskLogs`).

A follower does not proxy streams: it answers the hello with a `redirect` naming
the leader's address and ends the stream, and the worker connects there itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import structlog

from agentflow._proto import worker_pb2 as wpb
from agentflow._proto import worker_pb2_grpc
from agentflow.master.status import Ctx
from agentflow.master.worker_sessions import MasterSession, Refusal, Sessions, refusal

log = structlog.get_logger(__name__)

HELLO_TIMEOUT = 10.0  # a connection that says nothing is not a worker
MAX_HANDLERS = 64  # batches handled at once per stream: backpressure on the reader


class WorkerServiceApi(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    async def Connect(
        self, request_iterator: AsyncIterator[wpb.WorkerMessage], context: Ctx
    ) -> AsyncIterator[wpb.MasterMessage]:
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT)
        except TimeoutError:
            yield refusal(Refusal.INVALID, f"no hello within {HELLO_TIMEOUT} s")
            return
        except StopAsyncIteration:
            return
        opened = await self.sessions.open(first)
        if not isinstance(opened, MasterSession):
            yield opened
            return
        session = opened
        reader = asyncio.create_task(self._read(request_iterator, session))
        try:
            while True:
                batch = await session.outbox.take()
                if not batch:
                    break  # closed and drained
                for message in batch:
                    yield message
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self.sessions.detach(session, session.outbox.closed or "the worker went away")

    async def _read(
        self, requests: AsyncIterator[wpb.WorkerMessage], session: MasterSession
    ) -> None:
        """Feed messages to the session as they arrive. Each is handled in its own
        task, so the reports of a busy worker are proposed together (one Raft append);
        the semaphore stops reading when too many are in flight."""
        slots = asyncio.Semaphore(MAX_HANDLERS)
        handlers: set[asyncio.Task[None]] = set()

        async def handle(message: wpb.WorkerMessage) -> None:
            try:
                await session.deliver([message])
            finally:
                slots.release()

        try:
            async for message in requests:
                await slots.acquire()
                task = asyncio.create_task(handle(message))
                handlers.add(task)
                task.add_done_callback(handlers.discard)
            # The worker closed its side: finish what it sent, then end the session.
            if handlers:
                await asyncio.gather(*handlers, return_exceptions=True)
            session.close("the worker closed the stream")
        except asyncio.CancelledError:
            for task in handlers:
                task.cancel()
            raise
        except Exception as exc:  # a broken stream ends the session, nothing else
            session.close(f"stream error: {exc!r}")


class TaskLogApi(worker_pb2_grpc.TaskLogServiceServicer):
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    async def GetTaskLogs(
        self, request: wpb.GetTaskLogsRequest, context: Ctx
    ) -> wpb.GetTaskLogsResponse:
        forwarder = self.sessions.rt.forwarder
        if not await forwarder.leader_here(context):
            return await forwarder.forward(
                "TaskLogService",
                "GetTaskLogs",
                request,
                wpb.GetTaskLogsResponse.FromString,
                context,
            )
        if not request.task_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "task_id: must not be empty")
        if self.sessions.rt.state.task(request.task_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task_id: no task {request.task_id!r}")
        return self.sessions.logs.read(request.task_id, request.after)
