"""Connected workers on the leader: one `MasterSession` per worker connection.

A session is what the scheduler pushes committed assignments and cancels into (it is
a `WorkerSession`) and what a transport feeds the worker's messages to. The gRPC
stream (`worker_grpc.py`) and the HTTP shim (`worker_http.py`) are two transports of
the same session: both hand it `WorkerMessage`s and drain its `Outbox`.

Reports become commands through the scheduler. The messages of one batch are
handled concurrently, so their proposals reach the Raft node in the same loop turn
and are appended together; a result is acknowledged only after its commit returned
(accepted, or refused as stale: both end the worker's duty to keep it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from agentflow._proto import state_pb2
from agentflow._proto import worker_pb2 as wpb
from agentflow.common.failpoints import Failpoints
from agentflow.master.outbox import Outbox
from agentflow.master.reconcile import reconcile
from agentflow.master.runtime import Runtime
from agentflow.master.task_logs import TaskLogs
from agentflow.raft.types import RaftError
from agentflow.scheduler.liveness import Stalls, stall_tolerance
from agentflow.scheduler.service import Scheduler
from agentflow.scheduler.sessions import Usage, WorkerConflictError
from agentflow.state import ChangeSet

_Outcome = wpb.ResultAck | list[wpb.ResultAck] | None  # of handling one message
log = structlog.get_logger(__name__)

Refusal = wpb.Refusal


@dataclass(frozen=True, slots=True)
class SessionConfig:
    heartbeat_interval: float = 2.0  # told to workers in the welcome
    scheduler_wait: float = 5.0  # a hello waits this long for the leader's scheduler
    http_poll_max: float = 30.0  # longest long poll the shim allows
    # An HTTP session nobody polled for this long is over (its worker died or moved).
    http_idle_timeout: float = 40.0
    # A session that sent nothing (not even a heartbeat) for this long is over: its
    # worker died without closing the connection, or the link is half-open.
    silence_timeout: float = 20.0

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "scheduler_wait", "http_poll_max", "silence_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.http_idle_timeout <= self.http_poll_max:
            raise ValueError("http_idle_timeout must be longer than http_poll_max")
        if self.silence_timeout <= 2 * self.heartbeat_interval:
            raise ValueError("silence_timeout must exceed two heartbeat intervals")


def refusal(code: wpb.Refusal.Code.ValueType, reason: str) -> wpb.MasterMessage:
    return wpb.MasterMessage(refusal=wpb.Refusal(code=code, reason=reason))


class MasterSession:
    """One live worker connection on the leader."""

    def __init__(
        self,
        scheduler: Scheduler,
        info: state_pb2.WorkerInfo,
        instance: str,
        logs: TaskLogs,
        failpoints: Failpoints,
    ) -> None:
        self.session_id = uuid.uuid4().hex
        self.info = info
        self.instance = instance
        self.outbox = Outbox()
        self.last_seen = time.monotonic()
        self.http = False  # served by the HTTP shim: ended when nobody polls it
        self.detached = False
        self.drain_sent = False
        self.scheduler = scheduler
        self._logs = logs
        self._failpoints = failpoints

    # -- WorkerSession: called by the scheduler with committed facts ---------------

    @property
    def worker_id(self) -> str:
        return self.info.id

    def assign(self, tasks: Sequence[state_pb2.Task]) -> None:
        if tasks:
            self.outbox.put(wpb.MasterMessage(assignments=wpb.AssignmentBatch(tasks=tasks)))

    def cancel(self, task_id: str, attempt: int, reason: str) -> None:
        self.outbox.put(
            wpb.MasterMessage(
                cancel=wpb.CancelTask(task_id=task_id, attempt=attempt, reason=reason)
            )
        )

    def close(self, reason: str) -> None:
        self.outbox.close(reason)

    # -- the transport side ----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.outbox.closed is not None

    def drain(self, reason: str) -> None:
        if not self.drain_sent:
            self.drain_sent = True
            self.outbox.put(wpb.MasterMessage(drain=wpb.Drain(reason=reason)))

    async def deliver(self, messages: Sequence[wpb.WorkerMessage]) -> None:
        """Handle a batch from the worker, then queue one ack for it. A failed
        proposal (leadership moved, commit unknown) closes the session unacked: the
        worker reconnects to the leader and sends its results again."""
        self.last_seen = time.monotonic()
        if self.closed or not messages:
            return
        outcomes = await _all_settled([self._handle(m) for m in messages])
        ack = wpb.Ack()
        for message, outcome in zip(messages, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, RaftError | TimeoutError):
                    reason = f"this master cannot commit any more ({outcome}); reconnect"
                else:
                    log.error(
                        "worker_session.handler_failed", worker=self.worker_id, error=repr(outcome)
                    )
                    reason = f"internal error handling {message.WhichOneof('body')}"
                self.close(reason)
                return
            ack.seqs.append(message.seq)
            if isinstance(outcome, wpb.ResultAck):
                ack.results.append(outcome)
            elif outcome is not None:
                ack.results.extend(outcome)
        self.outbox.put(wpb.MasterMessage(ack=ack))

    async def _handle(self, message: wpb.WorkerMessage) -> _Outcome:
        kind = message.WhichOneof("body")
        sched, wid = self.scheduler, self.worker_id
        if kind == "heartbeat":
            hb = message.heartbeat
            sched.heartbeat(wid, Usage(hb.cpu_percent, hb.memory_percent, len(hb.running)))
        elif kind == "started":
            await sched.report_started(wid, message.started.task_id, message.started.attempt)
        elif kind == "progress":
            p = message.progress
            await sched.report_progress(wid, p.task_id, p.attempt, p.fraction, p.message)
        elif kind == "logs":
            for chunk in message.logs.chunks:
                self._logs.append(chunk)
        elif kind == "result":
            return await self.commit_result(message.result)
        elif kind == "results":
            return await self.commit_results(message.results.reports)
        elif kind == "draining":
            await self._draining(message.draining)
        else:
            log.warning("worker_session.unexpected", worker=wid, kind=kind)
        return None

    async def commit_results(self, reports: Sequence[wpb.ResultReport]) -> list[wpb.ResultAck]:
        """Several results in one replicated command (see Scheduler.report_results)."""
        items = [
            state_pb2.TaskFinished(
                task_id=r.task_id, attempt=r.attempt, success=r.success, result=r.result
            )
            for r in reports
        ]
        accepted = await self.scheduler.report_results(self.worker_id, items)
        await self._failpoints.hit("master.worker_result.after_commit")
        return [self._result_ack(r, ok) for r, ok in zip(reports, accepted, strict=True)]

    def _result_ack(self, report: wpb.ResultReport, accepted: bool) -> wpb.ResultAck:
        if not accepted:
            log.info(
                "worker_session.stale_result",
                worker=self.worker_id,
                task=report.task_id,
                attempt=report.attempt,
            )
        return wpb.ResultAck(
            task_id=report.task_id,
            attempt=report.attempt,
            stale=not accepted,
            reason="" if accepted else "refused as stale: not the current attempt, or final",
        )

    async def commit_result(self, report: wpb.ResultReport) -> wpb.ResultAck:
        accepted = await self.scheduler.report_finished(
            self.worker_id, report.task_id, report.attempt, report.success, report.result
        )
        # For fault tests: the result is committed, the ack not yet sent.
        await self._failpoints.hit("master.worker_result.after_commit")
        return self._result_ack(report, accepted)

    async def _draining(self, notice: wpb.DrainNotice) -> None:
        want = state_pb2.WORKER_STATE_OFFLINE if notice.done else state_pb2.WORKER_STATE_DRAINING
        worker = self.scheduler.state.workers.get(self.worker_id)
        if worker is None or worker.state == want:
            return
        self.drain_sent = True  # it drains already: no need to tell it
        result = await self.scheduler.proposer.propose(
            state_pb2.Command(
                set_worker_state=state_pb2.SetWorkerState(
                    worker_id=self.worker_id, state=want, reason=notice.reason
                )
            )
        )
        if result.error.code:
            log.warning(
                "worker_session.drain_refused", worker=self.worker_id, error=result.error.message
            )


class Sessions:
    """Every worker session of this master while it leads: opening them from a
    hello, finding HTTP sessions by id, telling draining workers, and ending idle
    HTTP sessions."""

    def __init__(
        self,
        runtime: Runtime,
        config: SessionConfig | None = None,
        logs: TaskLogs | None = None,
        failpoints: Failpoints | None = None,
    ) -> None:
        self.rt = runtime
        self.config = config or SessionConfig()
        self.logs = logs if logs is not None else TaskLogs()
        self._failpoints = failpoints if failpoints is not None else Failpoints.from_env()
        self._by_id: dict[str, MasterSession] = {}
        self._by_worker: dict[str, MasterSession] = {}

    def get(self, session_id: str) -> MasterSession | None:
        return self._by_id.get(session_id)

    def by_worker(self, worker_id: str) -> MasterSession | None:
        return self._by_worker.get(worker_id)

    def __len__(self) -> int:
        return len(self._by_id)

    async def open(self, message: wpb.WorkerMessage) -> MasterSession | wpb.MasterMessage:
        """A session for the worker saying hello, its welcome already queued; or the
        one message that ends the attempt (redirect or refusal)."""
        if message.WhichOneof("body") != "hello":
            return refusal(Refusal.INVALID, "the first message of a session must be hello")
        hello = message.hello
        if not hello.info.id:
            return refusal(Refusal.INVALID, "hello.info.id: must not be empty")
        node = self.rt.node
        if not node.is_leader():
            return self.redirect("this master is not the leader")
        try:
            scheduler = await self.rt.running_scheduler(self.config.scheduler_wait)
        except TimeoutError:
            return self.redirect("this master has no running scheduler yet")
        old = self._by_worker.get(hello.info.id)
        if old is not None and hello.instance and old.instance == hello.instance:
            # The same worker process again (its old connection died unnoticed by us).
            self.detach(old, "replaced by a newer connection of the same worker")
        session = MasterSession(scheduler, hello.info, hello.instance, self.logs, self._failpoints)
        before = scheduler.state.workers.get(hello.info.id)
        was_lost = before is not None and before.state == state_pb2.WORKER_STATE_LOST
        try:
            await scheduler.connect(hello.info, session)
        except WorkerConflictError as exc:
            return refusal(Refusal.DUPLICATE_WORKER, str(exc))
        except ValueError as exc:
            return refusal(Refusal.INVALID, f"hello.info.{exc}")
        except (RaftError, TimeoutError) as exc:
            return self.redirect(f"registration not committed: {exc}")
        # Nothing can have been queued yet: connect() registered the session last.
        worker = scheduler.state.workers.get(hello.info.id)
        session.outbox.put(
            wpb.MasterMessage(
                welcome=wpb.Welcome(
                    session_id=session.session_id,
                    heartbeat_interval_ms=int(self.config.heartbeat_interval * 1000),
                    leader_id=node.id,
                    registration=worker.session if worker is not None else 0,
                    declared_lost=was_lost,
                    worker_timeout_ms=int(scheduler.config.worker_timeout * 1000),
                )
            )
        )
        self._by_id[session.session_id] = session
        self._by_worker[session.worker_id] = session
        log.info(
            "worker_session.opened",
            worker=session.worker_id,
            session=session.session_id,
            running=len(hello.running),
            unacked=len(hello.unacked_results),
        )
        try:
            await self._catch_up(scheduler, session, hello)
        except (RaftError, TimeoutError) as exc:
            self.detach(session, f"this master cannot commit any more ({exc}); reconnect")
        return session

    async def _catch_up(
        self, scheduler: Scheduler, session: MasterSession, hello: wpb.Hello
    ) -> None:
        """Commit the results the worker kept, then reconcile what it runs."""
        if hello.unacked_results:
            acks = await session.commit_results(hello.unacked_results)
            session.outbox.put(wpb.MasterMessage(ack=wpb.Ack(results=acks)))
        running = [(r.task_id, r.attempt) for r in hello.running]
        plan = reconcile(scheduler.state, session.worker_id, running)
        session.assign(plan.resend)
        for task_id, attempt, reason in plan.cancel:
            session.cancel(task_id, attempt, reason)
        if plan.requeue:
            tasks = [t for t in (scheduler.state.task(i) for i, _ in plan.requeue) if t is not None]
            await scheduler.requeue(
                tasks, f"worker {session.worker_id} reconnected without this attempt"
            )
        worker = scheduler.state.workers.get(session.worker_id)
        if worker is not None and worker.state == state_pb2.WORKER_STATE_DRAINING:
            session.drain("the worker is marked draining")
        if plan.resend or plan.cancel or plan.requeue:
            log.info(
                "worker_session.reconciled",
                worker=session.worker_id,
                resent=len(plan.resend),
                cancelled=len(plan.cancel),
                requeued=len(plan.requeue),
            )

    def redirect(self, reason: str) -> wpb.MasterMessage:
        node = self.rt.node
        return wpb.MasterMessage(
            redirect=wpb.Redirect(
                leader_id=node.leader(), leader_address=node.leader_address(), reason=reason
            )
        )

    def detach(self, session: MasterSession, reason: str) -> None:
        """The transport is gone (or the session is replaced): forget it everywhere."""
        if session.detached:
            return
        session.detached = True
        session.close(reason)
        if self._by_id.get(session.session_id) is session:
            del self._by_id[session.session_id]
        if self._by_worker.get(session.worker_id) is session:
            del self._by_worker[session.worker_id]
        session.scheduler.disconnect(session)
        log.info("worker_session.closed", worker=session.worker_id, reason=session.outbox.closed)

    # -- background duties -------------------------------------------------------

    async def run(self, sweep_every: float = 1.0) -> None:
        """Tell connected workers when the state marks them draining (an operator's
        drain), and end sessions that went silent. Runs for the master's lifetime."""
        unsubscribe = self.rt.state.add_listener(self._on_change)
        stalls = Stalls(sweep_every, stall_tolerance(self.config.silence_timeout))
        try:
            while True:
                await asyncio.sleep(sweep_every)
                if stalls.tick(time.monotonic()):
                    self.forgive()
                self.sweep()
        finally:
            unsubscribe()

    def forgive(self) -> None:
        """This master did not run for a while (SIGSTOP, VM pause): what workers sent
        meanwhile is still unread, so their silence is not theirs. Count it from now."""
        now = time.monotonic()
        for session in self._by_id.values():
            session.last_seen = max(session.last_seen, now)

    def sweep(self) -> None:
        limit = self.config.silence_timeout
        now = time.monotonic()
        for session in list(self._by_id.values()):
            if now - session.last_seen > limit:
                self.detach(session, f"nothing from the worker for {limit:g} s")

    def _on_change(self, change: ChangeSet) -> None:
        for wid in change.workers:
            session = self._by_worker.get(wid)
            worker = self.rt.state.workers.get(wid)
            if (
                session is not None
                and worker is not None
                and worker.state == state_pb2.WORKER_STATE_DRAINING
            ):
                session.drain("the worker is marked draining")


async def _all_settled(
    calls: list[Coroutine[Any, Any, _Outcome]],
) -> list[_Outcome | BaseException]:
    """gather(..., return_exceptions=True), without a task when there is one call
    (a worker's stream delivers its messages one at a time)."""
    if len(calls) != 1:
        return await asyncio.gather(*calls, return_exceptions=True)
    try:
        return [await calls[0]]
    except Exception as exc:
        return [exc]
