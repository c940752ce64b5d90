"""AgentFlow runner: 3 `agentflow-master` processes (every change replicated to a
majority and fsynced) and 2 `agentflow-worker` processes (--cpu-cores 1 each: one task at
a time each), all on 127.0.0.1, driven through `agentflow.AsyncClient`. Prints one JSON
object on stdout.

    .venv/bin/python runner_agentflow.py --workdir DIR [--workloads ...,leader_kill]

Workloads: throughput (N tasks submitted with submit_many in batches of 500, done when
all are SUCCEEDED), latency (submit + wait_task, one at a time), fanout (one workflow
1 -> N -> 1, submit_workflow + wait_workflow), leader_kill (a stream of tasks; once some
have succeeded, kill -9 the leader; seconds until tasks succeed again, and every
acknowledged task checked at the end: lost = acknowledged but not SUCCEEDED).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from common import arguments, checkpoint, emit, fanout, latency, log, settle_disk, throughput

import agentflow
from agentflow import AsyncClient, TaskSpec, TaskState, Workflow
from agentflow.common.processes import ProcessGroup
from agentflow.master.testing import MasterCluster

HERE = Path(__file__).resolve().parent
NOOP = "python:af_tasks:noop"
BATCH = 500
WORKERS = ("af-w1", "af-w2")


async def succeeded(client: AsyncClient) -> int:
    """Tasks SUCCEEDED in the whole cluster: ClusterStatus's per-state counts, O(1) on
    the master (a ListTasks filter would scan the task table on every poll)."""
    counts = (await client.cluster_status()).task_counts
    if counts.get(TaskState.FAILED):
        raise RuntimeError(f"tasks failed: {dict(counts)}")
    return counts.get(TaskState.SUCCEEDED, 0)


async def wait_succeeded(
    client: AsyncClient,
    count: int,
    timeout: float,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Until `count` tasks in all have succeeded (workloads run one after the other);
    `progress(done)` every 10 s."""
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + 10
    while (done := await succeeded(client)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done}/{count} tasks succeeded after {timeout} s")
        if progress is not None and time.monotonic() > next_report:
            progress(done)
            next_report += 10
        await asyncio.sleep(0.02)


async def submit_batches(client: AsyncClient, group: str, count: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        ids += await client.submit_many([TaskSpec(NOOP, group=group) for _ in range(n)])
    return ids


def cluster_cpu() -> dict[int, float]:
    """CPU seconds (user + system) so far of every process this runner started:
    masters, workers and their pool processes."""
    seconds: dict[int, float] = {}
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            seconds[proc.pid] = times.user + times.system
    return seconds


def cpu_ms_per_task(before: dict[int, float], tasks: int) -> float:
    """Cluster CPU per task since `before` (processes alive at both readings): a
    steadier measure than tasks/s on a machine whose other load varies."""
    after = cluster_cpu()
    spent = sum(after[pid] - before[pid] for pid in before.keys() & after.keys())
    return round(spent / max(1, tasks) * 1000, 3)


async def wait_workers(client: AsyncClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connected = {w.id for w in await client.workers() if w.connected}
        if connected >= set(WORKERS):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"workers {WORKERS} did not all connect within {timeout} s")


async def leader_kill(
    cluster: MasterCluster, client: AsyncClient, total: int, kill_after: int
) -> dict[str, object]:
    """Submit `total` tasks in batches of 100 (a steady stream, while they run); once
    `kill_after` of them have succeeded, kill -9 the leader, and at once submit one
    CRITICAL probe task and wait for it. Afterwards, from the tasks' own `finished` times
    (stamped by the leader that committed each result): the first task finished after
    the kill, and the stall (last finish before the kill -> first after). Lost = an
    acknowledged task that is not SUCCEEDED once the stream has drained."""
    group = "kill"
    acknowledged: list[str] = []
    submit_errors: list[str] = []

    async def submitter() -> None:
        for start in range(0, total, 100):
            n = min(100, total - start)
            try:
                acknowledged.extend(
                    await client.submit_many([TaskSpec(NOOP, group=group) for _ in range(n)])
                )
            except Exception as exc:  # an unacknowledged batch is not counted as lost
                submit_errors.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.01)

    feeding = asyncio.create_task(submitter())
    t0 = time.perf_counter()
    base = await succeeded(client)
    while (before := await succeeded(client)) < base + kill_after:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    old_leader = await cluster.leader()
    kill_wall = time.time()
    t_kill = time.perf_counter()
    cluster.kill(old_leader)  # SIGKILL by pid, reaped
    log(f"agentflow: killed leader {old_leader} with {before - base} tasks succeeded")
    probe_s = None
    probe_error = ""
    try:
        probe = await client.submit(NOOP, group=group, priority="critical", name="probe")
        acknowledged.append(probe)
        done = await client.wait_task(probe, timeout=120)
        if done.state == TaskState.SUCCEEDED:
            probe_s = time.perf_counter() - t_kill
        else:
            probe_error = f"probe ended {done.state}"
    except Exception as exc:
        probe_error = f"{type(exc).__name__}: {exc}"
    new_leader = await cluster.leader(timeout=30)
    leader_seen_s = time.perf_counter() - t_kill  # an upper bound: read after the probe
    cluster.start(old_leader)  # back to 3 masters (it rejoins from its own disk)
    await feeding
    drain_deadline = time.monotonic() + 300
    while time.monotonic() < drain_deadline:
        if await succeeded(client) >= base + len(acknowledged):
            break
        await asyncio.sleep(0.1)
    all_s = time.perf_counter() - t0
    states: dict[str, TaskState] = {}
    finished: list[float] = []
    attempts_over_one = 0
    async for task in client.list(group=group, page_size=1000):
        states[task.id] = task.state
        attempts_over_one += task.attempt > 1
        if task.finished is not None:
            finished.append(task.finished.timestamp())
    lost = [i for i in acknowledged if states.get(i) != TaskState.SUCCEEDED]
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state.name.lower()] = counts.get(state.name.lower(), 0) + 1
    after = [f for f in finished if f >= kill_wall]
    last_before = max((f for f in finished if f < kill_wall), default=None)
    first_after = min(after, default=None)

    def seconds(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "tasks_submitted": total,
        "tasks_acknowledged": len(acknowledged),
        "submit_errors": submit_errors[:5],
        "killed": old_leader,
        "new_leader": new_leader,
        "succeeded_before_kill": before - base,
        "first_task_finished_after_kill_s": seconds(
            None if first_after is None else first_after - kill_wall
        ),
        "completion_stall_s": seconds(
            None if first_after is None or last_before is None else first_after - last_before
        ),
        "probe_submitted_after_kill_succeeded_s": seconds(probe_s),
        "probe_error": probe_error,
        "leader_seen_after_s": seconds(leader_seen_s),
        "seconds_for_all": seconds(all_s),
        "states": counts,
        "tasks_with_more_than_one_attempt": attempts_over_one,
        "lost_tasks": len(lost),
        "lost_sample": lost[:10],
    }


async def bench(args: object) -> dict[str, object]:
    a = args  # argparse.Namespace
    root = Path(a.workdir)  # type: ignore[attr-defined]
    workloads = set(a.workloads.split(","))  # type: ignore[attr-defined]
    result: dict[str, object] = {
        "framework": "agentflow",
        "version": agentflow.__version__ if hasattr(agentflow, "__version__") else "0.1.0",
        "layout": "3 agentflow-master + 2 agentflow-worker --cpu-cores 1",
        "task": NOOP,
    }
    cluster = MasterCluster(root / "masters", size=3)
    workers = ProcessGroup(root / "workers")  # apart: cluster.leader() asks its group
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        "AGENTFLOW_LOG_LEVEL": "warning",
    }
    worker_bin = str(Path(sys.executable).with_name("agentflow-worker"))
    started = time.perf_counter()
    try:
        await cluster.start_all()
        for worker_id in WORKERS:
            cmd = [
                worker_bin, "--master-url", cluster.url(), "--group", "bench,kill",
                "--cpu-cores", "1", "--worker-id", worker_id,
                *a.worker_args.split(),  # type: ignore[attr-defined]
            ]  # fmt: skip
            workers.spawn(worker_id, cmd, env)
        result["worker_command"] = " ".join([*cmd[:1], "...", *cmd[4:]])
        async with AsyncClient(cluster.url()) as client:
            await wait_workers(client)
            await submit_batches(client, "bench", 50)
            await wait_succeeded(client, 50, timeout=60)
            result["startup_seconds"] = round(time.perf_counter() - started, 3)
            checkpoint(result, str(root))

            if "throughput" in workloads:
                settle_disk()
                n = a.tasks  # type: ignore[attr-defined]
                cap = a.throughput_timeout  # type: ignore[attr-defined]
                log(f"agentflow: {n} no-op tasks")
                base = await succeeded(client)
                cpu_before = cluster_cpu()
                t0 = time.perf_counter()
                ids = await submit_batches(client, "bench", n)
                t1 = time.perf_counter()

                def note(done: int) -> None:
                    seconds = round(time.perf_counter() - t0, 1)
                    result["throughput_progress"] = {"succeeded": done - base, "seconds": seconds}
                    checkpoint(result, str(root))

                try:
                    await wait_succeeded(client, base + n, timeout=cap, progress=note)
                    result["throughput"] = throughput(n, t1 - t0, time.perf_counter() - t0)
                    result["throughput"]["cluster_cpu_ms_per_task"] = cpu_ms_per_task(  # type: ignore[index]
                        cpu_before, n
                    )
                except TimeoutError:
                    elapsed = time.perf_counter() - t0
                    done = await succeeded(client) - base
                    cancelled = await client.cancel(*ids, reason="benchmark time cap")
                    result["throughput"] = {
                        **throughput(done, t1 - t0, elapsed),
                        "tasks_submitted": n,
                        "timed_out_after_s": cap,
                        "cancelled_at_cap": len(cancelled),
                    }
                    await asyncio.sleep(2)  # let running attempts end
                log(f"agentflow: {result['throughput']}")
                checkpoint(result, str(root))

            if "latency" in workloads:
                settle_disk()
                rounds = a.rounds  # type: ignore[attr-defined]
                log(f"agentflow: {rounds} round trips")
                samples = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    task_id = await client.submit(NOOP, group="bench")
                    task = await client.wait_task(task_id, timeout=60)
                    samples.append(time.perf_counter() - t0)
                    assert task.state == TaskState.SUCCEEDED, task
                result["latency"] = latency(samples)
                log(f"agentflow: {result['latency']}")
                checkpoint(result, str(root))

            if "fanout" in workloads:
                settle_disk()
                width = a.fanout  # type: ignore[attr-defined]
                log(f"agentflow: 1 -> {width} -> 1")
                specs = [TaskSpec(NOOP, id="root", group="bench")]
                specs += [
                    TaskSpec(NOOP, id=f"m{i}", group="bench", dependencies=["root"])
                    for i in range(width)
                ]
                specs.append(
                    TaskSpec(
                        NOOP, id="sink", group="bench",
                        dependencies=[f"m{i}" for i in range(width)],
                    )
                )  # fmt: skip
                t0 = time.perf_counter()
                submitted = await client.submit_workflow(Workflow(specs, name="fanout"))
                status = await client.wait_workflow(submitted.workflow_id, timeout=600)
                result["fanout"] = fanout(width, time.perf_counter() - t0)
                result["fanout"]["state"] = str(status.state)  # type: ignore[index]
                log(f"agentflow: {result['fanout']}")
                checkpoint(result, str(root))

            if "leader_kill" in workloads:
                settle_disk()
                log("agentflow: leader kill -9 under load")
                result["leader_kill"] = await leader_kill(
                    cluster,
                    client,
                    a.kill_tasks,  # type: ignore[attr-defined]
                    a.kill_after,  # type: ignore[attr-defined]
                )
            result["commit_index"] = (await client.cluster_status()).commit_index
    finally:
        for worker_id in WORKERS:
            if worker_id in workers.running():
                try:
                    workers.terminate(worker_id, timeout=15)  # SIGTERM: drain and exit
                except Exception as exc:
                    log(f"worker {worker_id} did not stop on SIGTERM: {exc}")
        workers.stop_all()
        cluster.stop_all()
    return result


def main() -> None:
    parser = arguments(__doc__ or "")
    parser.add_argument("--kill-tasks", type=int, default=3000, help="(d) tasks in the stream")
    parser.add_argument("--kill-after", type=int, default=500, help="(d) succeeded before kill")
    parser.add_argument(
        "--throughput-timeout",
        type=float,
        default=1800,
        help="(a) stop waiting after this long: report the rate so far, cancel the rest",
    )
    parser.add_argument(
        "--worker-args", default="", help="extra agentflow-worker flags, space-separated"
    )
    args = parser.parse_args()
    emit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
