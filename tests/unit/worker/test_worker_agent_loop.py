"""The worker's side of the protocol without processes: result retention, outbound
batching, and the agent loop against a scripted fake master."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import pytest

from agentflow._proto import state_pb2
from agentflow._proto import worker_pb2 as wpb
from agentflow.worker.agent import Agent, AgentConfig, backoff_delay
from agentflow.worker.limits import AdaptiveConcurrency
from agentflow.worker.main import default_http_url, split_urls
from agentflow.worker.outbound import Outbound, ResultStore
from agentflow.worker.runs import Outcome, Reporter, TaskRun
from agentflow.worker.transport import ConnectError, SessionClosed


def report(task_id: str, attempt: int = 1) -> wpb.ResultReport:
    return wpb.ResultReport(task_id=task_id, attempt=attempt, success=True)


# -- result retention --------------------------------------------------------------


def test_results_are_kept_until_acked_and_resent_in_each_new_session() -> None:
    store = ResultStore()
    store.add(report("a"))
    store.add(report("b"))
    assert [r.task_id for r in store.unsent()] == ["a", "b"]
    assert store.unsent() == []  # sent once per session
    assert store.ack("a", 1) and not store.ack("a", 1)
    assert not store.ack("b", 2)  # another attempt's ack does not count
    # The connection died: b may never have arrived, so the next hello carries it.
    assert [r.task_id for r in store.begin_session()] == ["b"]
    assert store.unsent() == [] and not store.has_unsent()
    store.add(report("c"))
    assert store.has_unsent() and [r.task_id for r in store.unsent(limit=5)] == ["c"]
    assert store.keys() == [("b", 1), ("c", 1)] and ("c", 1) in store and len(store) == 2


def test_outbound_orders_reports_before_results_and_coalesces_progress() -> None:
    out = Outbound()
    out.started("t", 1)
    out.progress("t", 1, 0.2, "a")
    out.progress("t", 1, 0.9, "b")
    out.log("t", 1, "stdout", "hi\n")
    out.result(report("t"))
    batch = out.take()
    kinds = [m.WhichOneof("body") for m in batch]
    assert kinds == ["started", "logs", "progress", "results"]
    assert batch[2].progress.fraction == 0.9
    assert len({m.seq for m in batch}) == 4
    assert out.take() == []  # the result was sent in this session, and is still kept
    assert len(out.results) == 1


def test_outbound_caps_logs_waiting_for_a_master() -> None:
    out = Outbound(max_log_bytes=10)
    for i in range(5):
        out.log("t", 1, "stdout", f"{i}2345\n")  # 6 bytes each
    texts = [m.logs.chunks[0].text for m in out.take()]
    assert texts == ["42345\n"] and out.dropped_log_bytes == 24


def test_outbound_limits_a_batch_and_forgets_cancelled_attempts() -> None:
    out = Outbound()
    for i in range(5):
        out.result(report(f"r{i}"))
    out.started("gone", 1)
    out.log("gone", 1, "stdout", "x")
    out.progress("gone", 1, 0.5, "")
    out.forget_queued([("gone", 1)])

    def ids(batch: list[wpb.WorkerMessage]) -> list[list[str]]:
        return [[r.task_id for r in m.results.reports] for m in batch]

    assert ids(out.take(limit=3)) == [["r0", "r1", "r2"]]  # results travel as one message
    assert ids(out.take(limit=3)) == [["r3", "r4"]]


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 5.0, 60.0, rng) for n in range(1, 8)]
    ceilings = [5, 10, 20, 40, 60, 60, 60]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling


def test_http_urls_default_to_the_next_port() -> None:
    assert default_http_url("10.0.0.1:6767") == "http://10.0.0.1:6768"
    assert default_http_url("grpc://h:7000/") == "http://h:7001"
    assert split_urls("a:1, b:2,,a:1") == ("a:1", "b:2")
    with pytest.raises(ValueError, match="--master-url"):
        default_http_url("nohost")


# -- the agent against a fake master ---------------------------------------------------


class FakeExecutor:
    def __init__(self) -> None:
        self.runs: list[TaskRun] = []
        self.release = asyncio.Event()
        self.cancelled: list[tuple[str, int]] = []

    async def start(self) -> None:
        pass

    async def run(self, run: TaskRun, reporter: Reporter) -> Outcome:
        self.runs.append(run)
        reporter.progress(run.task_id, run.attempt, 0.5, "half")
        await self.release.wait()
        return Outcome(success=True, exit_code=0, stdout_tail="out", stderr_tail="")

    async def cancel(
        self, task_id: str, attempt: int, reason: str = "cancelled", kill_now: bool = False
    ) -> bool:
        self.cancelled.append((task_id, attempt))
        return True

    async def close(self) -> None:
        pass


class FakeConnection:
    transport = "grpc"

    def __init__(self, master: FakeMaster) -> None:
        self.master = master
        self.target = "fake"

    async def open(self, hello: wpb.WorkerMessage) -> wpb.MasterMessage:
        if self.master.down:
            raise ConnectError("down")
        self.master.hellos.append(hello.hello)
        self.master.inbox = asyncio.Queue()
        return wpb.MasterMessage(welcome=wpb.Welcome(session_id="s", heartbeat_interval_ms=50))

    async def send(self, messages: Sequence[wpb.WorkerMessage]) -> None:
        self.master.received.extend(messages)
        self.master.got_something.set()

    async def receive(self) -> Sequence[wpb.MasterMessage]:
        message = await self.master.inbox.get()
        if message is None:
            raise SessionClosed("cut")
        return (message,)

    async def close(self) -> None:
        pass


class FakeMaster:
    def __init__(self) -> None:
        self.down = False
        self.hellos: list[wpb.Hello] = []
        self.received: list[wpb.WorkerMessage] = []
        self.inbox: asyncio.Queue[wpb.MasterMessage | None] = asyncio.Queue()
        self.got_something = asyncio.Event()

    def kinds(self) -> list[str]:
        return [m.WhichOneof("body") or "" for m in self.received]

    async def until(self, kind: str, count: int = 1) -> None:
        for _ in range(200):
            if self.kinds().count(kind) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind} (got {self.kinds()})")


def task(task_id: str, attempt: int = 1, **spec: object) -> state_pb2.Task:
    return state_pb2.Task(
        id=task_id,
        attempt=attempt,
        spec=state_pb2.TaskSpec(command="shell:true", **spec),  # type: ignore[arg-type]
        state=state_pb2.TASK_STATE_ASSIGNED,
    )


def make_agent(
    master: FakeMaster, executor: FakeExecutor, concurrency: int = 4, **config_kw: Any
) -> Agent:
    config = AgentConfig(
        info=state_pb2.WorkerInfo(id="w1"),
        grpc_targets=("fake",),
        http_targets=("http://fake",),
        backoff_base=0.01,
        backoff_max=0.02,
        task_memory_limit_mb=1024,
        drain_timeout=5.0,
        **config_kw,
    )
    return Agent(
        config,
        executor,
        AdaptiveConcurrency(maximum=concurrency),
        rng=random.Random(1),
        candidates=lambda hint: [FakeConnection(master)],
    )


async def test_agent_keeps_a_result_until_acked_across_reconnects() -> None:
    master, executor = FakeMaster(), FakeExecutor()
    agent = make_agent(master, executor)
    running = asyncio.create_task(agent.run())
    try:
        await master.until("heartbeat")
        assert master.hellos[0].info.id == "w1" and agent.connected_via == "grpc"
        master.inbox.put_nowait(
            wpb.MasterMessage(
                assignments=wpb.AssignmentBatch(tasks=[task("t1", timeout_ms=1500, memory_mb=0)])
            )
        )
        await master.until("started")
        await master.until("progress")
        (run,) = executor.runs
        assert run.timeout_s == 1.5 and run.memory_limit_mb == 1024
        executor.release.set()
        await master.until("results")
        # The session dies before the ack: the next hello carries the result again.
        master.inbox.put_nowait(None)
        for _ in range(200):
            if len(master.hellos) == 2:
                break
            await asyncio.sleep(0.01)
        assert [r.task_id for r in master.hellos[1].unacked_results] == ["t1"]
        assert list(master.hellos[1].running) == []
        # The same attempt assigned again (a resend) does not run twice.
        master.inbox.put_nowait(
            wpb.MasterMessage(assignments=wpb.AssignmentBatch(tasks=[task("t1")]))
        )
        master.inbox.put_nowait(
            wpb.MasterMessage(ack=wpb.Ack(results=[wpb.ResultAck(task_id="t1", attempt=1)]))
        )
        for _ in range(100):
            if not len(agent.outbound.results):
                break
            await asyncio.sleep(0.01)
        assert len(agent.outbound.results) == 0 and len(executor.runs) == 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_agent_cancels_and_drains_on_request() -> None:
    master, executor = FakeMaster(), FakeExecutor()
    agent = make_agent(master, executor, concurrency=1)
    running = asyncio.create_task(agent.run())
    await master.until("heartbeat")
    master.inbox.put_nowait(
        wpb.MasterMessage(assignments=wpb.AssignmentBatch(tasks=[task("a"), task("b"), task("c")]))
    )
    await master.until("started")
    assert agent.holding() == [("a", 1), ("b", 1), ("c", 1)]  # one runs, two wait
    master.inbox.put_nowait(wpb.MasterMessage(cancel=wpb.CancelTask(task_id="b", attempt=1)))
    master.inbox.put_nowait(wpb.MasterMessage(cancel=wpb.CancelTask(task_id="a", attempt=1)))
    for _ in range(100):
        if executor.cancelled:
            break
        await asyncio.sleep(0.01)
    assert executor.cancelled == [("a", 1)]  # b never started: just dropped
    agent.request_stop()
    await master.until("draining")
    executor.release.set()  # a ends (cancelled: no result), c runs and reports
    await master.until("results")
    reported = [
        r.task_id for m in master.received if m.HasField("results") for r in m.results.reports
    ]
    assert reported == ["c"]
    master.inbox.put_nowait(
        wpb.MasterMessage(ack=wpb.Ack(results=[wpb.ResultAck(task_id="c", attempt=1)]))
    )
    await master.until("draining", count=2)
    done = [m for m in master.received if m.HasField("draining")][-1]
    assert done.draining.done
    master.inbox.put_nowait(wpb.MasterMessage(ack=wpb.Ack(seqs=[done.seq])))
    await asyncio.wait_for(running, 5.0)  # exits once the leader acknowledged


async def test_results_wait_briefly_for_the_next_while_more_tasks_wait_here() -> None:
    master, executor = FakeMaster(), FakeExecutor()
    executor.release.set()  # every task ends at once
    agent = make_agent(master, executor, concurrency=1, result_linger=0.3)
    running = asyncio.create_task(agent.run())
    try:
        await master.until("heartbeat")
        start = time.monotonic()
        master.inbox.put_nowait(
            wpb.MasterMessage(assignments=wpb.AssignmentBatch(tasks=[task("a")]))
        )
        await master.until("results")
        assert time.monotonic() - start < 0.25  # alone: sent at once, no linger
        tasks = [task("b"), task("c"), task("d")]
        master.inbox.put_nowait(wpb.MasterMessage(assignments=wpb.AssignmentBatch(tasks=tasks)))
        await master.until("results", 2)
        batches = [
            [r.task_id for r in m.results.reports] for m in master.received if m.HasField("results")
        ]
        assert batches == [["a"], ["b", "c", "d"]]  # b waited for c and d: one message
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_more_urgent_task_runs_before_the_prefetched_ones_already_waiting() -> None:
    """A worker holding many short tasks beyond its concurrency (adaptive prefetch)
    does not make a CRITICAL task wait behind them: it runs next."""
    master, executor = FakeMaster(), FakeExecutor()
    agent = make_agent(master, executor, concurrency=1)
    running = asyncio.create_task(agent.run())
    try:
        await master.until("heartbeat")
        normal = [task(f"n{i}") for i in range(20)]
        for t in normal:
            t.priority = state_pb2.PRIORITY_NORMAL
        master.inbox.put_nowait(wpb.MasterMessage(assignments=wpb.AssignmentBatch(tasks=normal)))
        for _ in range(100):
            if executor.runs:
                break
            await asyncio.sleep(0.01)
        urgent = task("urgent")
        urgent.priority = state_pb2.PRIORITY_CRITICAL
        master.inbox.put_nowait(wpb.MasterMessage(assignments=wpb.AssignmentBatch(tasks=[urgent])))
        for _ in range(100):
            if len(agent.holding()) == 21:
                break
            await asyncio.sleep(0.01)
        executor.release.set()
        await master.until("results")
        for _ in range(200):
            if len(executor.runs) == 21:
                break
            await asyncio.sleep(0.01)
        order = [r.task_id for r in executor.runs]
        assert order[:2] == ["n0", "urgent"] and sorted(order[2:]) == sorted(
            f"n{i}" for i in range(1, 20)
        )
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def test_a_negative_result_linger_is_refused_by_its_flag() -> None:
    with pytest.raises(ValueError, match=r"^--result-linger-ms: must be >= 0, got -1$"):
        AgentConfig(
            info=state_pb2.WorkerInfo(id="w1"),
            grpc_targets=("m",),
            transport="grpc",
            result_linger=-0.001,
        )
