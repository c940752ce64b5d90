"""The worker agent: stay connected to the leader, run what it assigns, report back.

Connecting: gRPC first, to a leader named by the last redirect, then to the masters
in the order given; the HTTP shim when no gRPC connection comes up (`auto`), or only
one of the two when forced. A session that ends is followed at once by a new attempt;
attempts that fail wait an exponential backoff with jitter (base and cap set by
configuration: 5 s and 60 s by default). While on the shim in `auto` mode the agent
keeps probing gRPC and moves back as soon as it answers.

Every session starts with a hello carrying what the worker runs and the results the
leader has not acknowledged; the leader commits those, and tells the worker what to
cancel or what it missed. Assignments go to the task slots (`slots.py`), which run
them through the `Executor`, at most as many at once as the adaptive concurrency
allows (extra ones wait there, most urgent first).

SIGTERM drains: the worker says so (the leader marks it DRAINING and assigns nothing
more), finishes what it has, waits until its results are acknowledged, says it is
done (OFFLINE) and exits. A second SIGTERM, or the drain timeout, stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from agentflow._proto import state_pb2
from agentflow._proto import worker_pb2 as wpb
from agentflow.worker.connection import GrpcConnection, grpc_reachable
from agentflow.worker.executor import Executor
from agentflow.worker.http_connection import HttpConnection
from agentflow.worker.limits import AdaptiveConcurrency
from agentflow.worker.outbound import Key, Outbound
from agentflow.worker.process_groups import Unguarded
from agentflow.worker.resources import Usage
from agentflow.worker.slots import TaskExecutor, TaskSlots
from agentflow.worker.transport import ConnectError, Connection, SessionClosed
from agentflow.worker.vigil import TICK_S, Vigil

log = structlog.get_logger(__name__)

Transport = Literal["auto", "grpc", "http"]
DEFAULT_HEARTBEAT_S = 2.0
DONE_ACK_WAIT_S = 5.0
MIN_GOOD_SESSION_S = 2.0


@dataclass(frozen=True, slots=True)
class AgentConfig:
    info: state_pb2.WorkerInfo
    grpc_targets: tuple[str, ...]
    http_targets: tuple[str, ...] = ()
    transport: Transport = "auto"
    backoff_base: float = 5.0
    backoff_max: float = 60.0
    connect_timeout: float = 1.0  # per attempt; a dead leader costs this much at failover
    poll_timeout: float = 10.0  # HTTP long poll (heartbeat acks end most polls sooner)
    grpc_retry_interval: float = 60.0  # on the shim in auto mode: probe gRPC this often
    task_memory_limit_mb: int | None = None  # for tasks that do not ask for memory
    task_cpu_time_limit_s: int | None = None
    drain_timeout: float = 600.0
    # While more assigned tasks wait here, a result waits this long for the next ones
    # to travel with it (one message, one replicated command); alone, it goes at once.
    result_linger: float = 0.005

    def __post_init__(self) -> None:
        if not self.info.id:
            raise ValueError("--worker-id: must not be empty")
        if self.transport not in ("auto", "grpc", "http"):
            raise ValueError(f"--transport: expected auto, grpc or http, got {self.transport!r}")
        if self.transport != "http" and not self.grpc_targets:
            raise ValueError("--master-url: give at least one master")
        if self.transport != "grpc" and not self.http_targets:
            raise ValueError("--http-url: give at least one master HTTP URL")
        if not 0 < self.backoff_base <= self.backoff_max:
            raise ValueError("reconnect backoff: need 0 < base <= max")
        if self.result_linger < 0:
            raise ValueError(f"--result-linger-ms: must be >= 0, got {self.result_linger * 1000:g}")


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential in the number of failures in a row, with equal jitter (half fixed,
    half random) so that workers cut off together do not come back together."""
    ceiling = min(cap, base * 2.0 ** max(0, failures - 1))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        executor: TaskExecutor,
        concurrency: AdaptiveConcurrency,
        usage: Callable[[], Usage] | None = None,
        rng: random.Random | None = None,
        candidates: Callable[[str], Sequence[Connection]] | None = None,
    ) -> None:
        """`candidates(hint)`: the connections to try, in order (tests pass fakes);
        by default gRPC then HTTP to the configured masters, the redirect hint first."""
        self.config = config
        self.executor = executor
        self.concurrency = concurrency
        self.outbound = Outbound()
        self.slots = TaskSlots(
            executor,
            concurrency,
            self.outbound,
            self._check_drained,
            config.task_memory_limit_mb,
            config.task_cpu_time_limit_s,
        )
        self.instance = uuid.uuid4().hex
        self.connected_via = ""  # transport of the live session, "" when none
        self.sessions = 0  # sessions welcomed so far
        self.draining = ""  # why, once draining
        self._usage = usage
        self._rng = rng or random.Random()
        self._make_candidates = candidates or self._candidates
        groups = executor.groups if isinstance(executor, Executor) else Unguarded()
        self.vigil = Vigil(groups)
        self._stalled = asyncio.Event()  # set: end the session, the leader must say
        self._stop_now = asyncio.Event()
        self._finished = asyncio.Event()
        self._exit_on_drain = False
        self._done_seq = 0

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Until drained (after `request_stop`) or stopped."""
        await self.executor.start()
        try:
            async with asyncio.TaskGroup() as tg:
                connecting = tg.create_task(self._connect_loop())
                watching = tg.create_task(self._watch_stalls())
                running = tg.create_task(self.slots.run())  # cancelled: cancels its tasks
                ending = tg.create_task(self._stop_now.wait())
                done = tg.create_task(self._finished.wait())
                await asyncio.wait({ending, done}, return_when=asyncio.FIRST_COMPLETED)
                for task in (connecting, watching, running, ending, done):
                    task.cancel()
        finally:
            await self.executor.close()
            log.info("worker.stopped", worker=self.worker_id, unacked=len(self.outbound.results))

    @property
    def worker_id(self) -> str:
        return self.config.info.id

    def request_stop(self) -> None:
        """SIGTERM: drain and exit; a second call stops at once."""
        if self._exit_on_drain:
            log.info("worker.stop_now", worker=self.worker_id)
            self._stop_now.set()
            return
        self._exit_on_drain = True
        self._begin_drain("the worker is shutting down (SIGTERM)", tell_master=True)
        loop = asyncio.get_running_loop()
        loop.call_later(self.config.drain_timeout, self._drain_timed_out)

    def _drain_timed_out(self) -> None:
        if not self._finished.is_set():
            log.warning(
                "worker.drain_timeout",
                worker=self.worker_id,
                running=len(self.slots.running()),
                unacked=len(self.outbound.results),
            )
            self._stop_now.set()

    def _begin_drain(self, reason: str, tell_master: bool) -> None:
        if not self.draining:
            self.draining = reason
            log.info("worker.draining", worker=self.worker_id, reason=reason)
        if tell_master:
            self.outbound.send_now(wpb.WorkerMessage(draining=wpb.DrainNotice(reason=reason)))
        self._check_drained()

    def _check_drained(self) -> None:
        """Once draining for exit and nothing is left to run or report: say done,
        and exit when the leader acknowledged that (or soon after, if it cannot)."""
        if not self._exit_on_drain or self._done_seq:
            return
        if not self.slots.idle or len(self.outbound.results):
            return
        message = wpb.WorkerMessage(draining=wpb.DrainNotice(reason=self.draining, done=True))
        self.outbound.send_now(message)
        self._done_seq = message.seq
        asyncio.get_running_loop().call_later(DONE_ACK_WAIT_S, self._finished.set)

    async def _watch_stalls(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            if self.vigil.check():
                self._stalled.set()

    def groups_frozen(self) -> None:
        """The guardian stopped the task groups while this process was stopped."""
        if self.vigil.frozen():
            self._stalled.set()

    def holding(self) -> list[Key]:
        """Attempts this worker has: running, or assigned and waiting for a slot."""
        return self.slots.holding()

    # -- connecting ------------------------------------------------------------------

    async def _connect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        redirects = 0
        hint = ""
        while True:
            self.vigil.check()  # a stall just now: this hello is the question
            self._stalled.clear()
            opened = await self._open(hint)
            hint = ""
            if opened is not None:
                conn, first = opened
                kind = first.WhichOneof("body")
                if kind == "welcome":
                    redirects = 0
                    began = loop.time()
                    await self._serve(conn, first.welcome)
                    # A session that ends at once (the leader is changing hands, say)
                    # counts as a failure: no tight reconnect loop against it.
                    if loop.time() - began > MIN_GOOD_SESSION_S:
                        failures = 0
                        continue
                    failures += 1
                    await asyncio.sleep(self._backoff(failures))
                    continue
                await conn.close()
                if kind == "redirect":
                    r = first.redirect
                    log.info(
                        "worker.redirected",
                        leader=r.leader_id,
                        address=r.leader_address,
                        reason=r.reason,
                    )
                    redirects += 1
                    if r.leader_address and redirects <= 3:
                        hint = r.leader_address
                        continue
                elif kind == "refusal":
                    log.error(
                        "worker.refused",
                        worker=self.worker_id,
                        code=wpb.Refusal.Code.Name(first.refusal.code),
                        reason=first.refusal.reason,
                        via=conn.target,
                    )
            failures += 1
            # Each backoff starts a fresh round of redirect hops: the cap only stops
            # ping-pong between masters that disagree during an election, and must
            # not stop the worker from ever following the new leader afterwards.
            redirects = 0
            await asyncio.sleep(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        cfg = self.config
        delay = backoff_delay(failures, cfg.backoff_base, cfg.backoff_max, self._rng)
        log.info("worker.reconnect_wait", seconds=round(delay, 2), failures=failures)
        return delay

    def _hello(self) -> wpb.WorkerMessage:
        return wpb.WorkerMessage(
            hello=wpb.Hello(
                info=self.config.info,
                running=[wpb.TaskAttempt(task_id=t, attempt=a) for t, a in self.holding()],
                unacked_results=self.outbound.results.begin_session(),
                instance=self.instance,
            )
        )

    def _candidates(self, hint: str) -> list[Connection]:
        cfg = self.config
        out: list[Connection] = []
        if cfg.transport != "http":
            targets = dict.fromkeys([hint, *cfg.grpc_targets] if hint else cfg.grpc_targets)
            out += [GrpcConnection(t, cfg.connect_timeout) for t in targets]
        if cfg.transport != "grpc":
            out += [
                HttpConnection(t, cfg.connect_timeout, cfg.poll_timeout) for t in cfg.http_targets
            ]
        return out

    async def _open(self, hint: str) -> tuple[Connection, wpb.MasterMessage] | None:
        for conn in self._make_candidates(hint):
            try:
                return conn, await conn.open(self._hello())
            except ConnectError as exc:
                log.info("worker.connect_failed", transport=conn.transport, error=str(exc))
        return None

    async def _serve(self, conn: Connection, welcome: wpb.Welcome) -> None:
        self.sessions += 1
        self.connected_via = conn.transport
        interval = welcome.heartbeat_interval_ms / 1000 or DEFAULT_HEARTBEAT_S
        self.vigil.configure(welcome.worker_timeout_ms / 1000, interval)
        if welcome.declared_lost:
            # Before anything else of this session: the attempts were requeued and may
            # already run elsewhere.
            await self.slots.abandon("the leader declared this worker lost")
        self.vigil.verdict(welcome.declared_lost)
        log.info(
            "worker.connected",
            worker=self.worker_id,
            transport=conn.transport,
            master=conn.target,
            leader=welcome.leader_id,
            session=welcome.session_id,
        )
        duties = [
            asyncio.create_task(self._send(conn)),
            asyncio.create_task(self._receive(conn, 3 * interval + 10.0)),
            asyncio.create_task(self._heartbeat(interval)),
            asyncio.create_task(self._end_on_stall()),
        ]
        if conn.transport == "http" and self.config.transport == "auto":
            duties.append(asyncio.create_task(self._probe_grpc()))
        try:
            done, _ = await asyncio.wait(duties, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                reason = str(exc) if exc is not None else "gRPC is reachable again"
                log.info("worker.session_ended", worker=self.worker_id, reason=reason)
        finally:
            for task in duties:
                task.cancel()
            await asyncio.gather(*duties, return_exceptions=True)
            self.connected_via = ""
            await conn.close()

    async def _end_on_stall(self) -> None:
        await self._stalled.wait()
        raise SessionClosed("this worker was stopped for about the leader's timeout: asking")

    async def _send(self, conn: Connection) -> None:
        while True:
            await self.outbound.wait()
            if self.slots.waiting and self.config.result_linger > 0:
                await asyncio.sleep(self.config.result_linger)
            batch = self.outbound.take()
            if batch:
                await conn.send(batch)

    async def _receive(self, conn: Connection, silence: float) -> None:
        """Every heartbeat is acknowledged, so a master silent for `silence` seconds
        is gone (or the link is half-open): end the session and connect again."""
        while True:
            try:
                async with asyncio.timeout(silence):  # no task per message, unlike wait_for
                    messages = await conn.receive()
            except TimeoutError:
                raise SessionClosed(f"no word from the master in {silence:g} s") from None
            for message in messages:
                await self._on_message(message)

    async def _on_message(self, message: wpb.MasterMessage) -> None:
        kind = message.WhichOneof("body")
        if kind == "assignments":
            self.slots.accept(message.assignments.tasks)
        elif kind == "cancel":
            await self.slots.cancel(message.cancel)
        elif kind == "ack":
            for ack in message.ack.results:
                self.outbound.results.ack(ack.task_id, ack.attempt)
                if ack.stale:
                    log.info(
                        "worker.result_stale",
                        task=ack.task_id,
                        attempt=ack.attempt,
                        reason=ack.reason,
                    )
            if self._done_seq and self._done_seq in message.ack.seqs:
                self._finished.set()
            self._check_drained()
        elif kind == "drain":
            self._begin_drain(f"the master asked: {message.drain.reason}", tell_master=False)
        elif kind == "set_concurrency":
            value = self.concurrency.set_maximum(message.set_concurrency.max_concurrent)
            log.info("worker.concurrency", current=value, maximum=self.concurrency.maximum)
            self.slots.capacity_changed()
        else:
            log.warning("worker.unexpected_message", kind=kind)

    async def _heartbeat(self, interval: float) -> None:
        while True:
            cpu = memory = 0.0
            if self._usage is not None:
                usage = self._usage()
                cpu, memory = usage.cpu_percent, usage.memory_percent
                self.slots.memory_percent = memory
                self.concurrency.observe(cpu)
            self.slots.capacity_changed()
            beat = wpb.Heartbeat(
                cpu_percent=cpu,
                memory_percent=memory,
                running=[wpb.TaskAttempt(task_id=t, attempt=a) for t, a in self.slots.running()],
                max_concurrent=self.concurrency.current,
            )
            self.outbound.send_now(wpb.WorkerMessage(heartbeat=beat))
            await asyncio.sleep(interval)

    async def _probe_grpc(self) -> None:
        while True:
            await asyncio.sleep(self.config.grpc_retry_interval)
            for target in self.config.grpc_targets:
                with contextlib.suppress(Exception):
                    if await grpc_reachable(target, self.config.connect_timeout):
                        log.info("worker.grpc_back", target=target)
                        return
