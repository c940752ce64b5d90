#!/usr/bin/env python3
"""Memory benchmark: resident memory a master spends per finished task it retains.

    python bench/memory_bench.py [--tasks 20000,50000,100000] [--tail-bytes 1024]
                                 [--args-bytes 256] [--batch 1] [--out FILE]

Each point runs in a fresh child process: a real one-node Raft (RaftNode over
RaftStorage, SQLite in a temporary directory, snapshots every 10,000 entries as a
master takes them) driving the real state machine, with every command proposed,
persisted, committed and applied as on a master; only gRPC is left out. The child
registers a worker, submits N tasks (one SubmitTasks with a request id per `--batch`
tasks, as the CLI and SDK do, each placed on the worker in the same entry), then
reports every one finished in FinishTasks of 500, with a stdout tail of
`--tail-bytes` and a stderr tail of a quarter of it (a worker keeps at most 4,096
bytes of each). Specs look like real ones: a command line, a name, a group, two
labels, three environment variables, `--args-bytes` of JSON args (a python task),
cpu and memory.

Reported per point: RSS before and after (after gc, so what stays), the peak RSS
(`ru_maxrss`, which includes the transient copy a snapshot makes), the size of the
serialized state, and per task: RSS delta, peak delta and snapshot bytes. The
marginal cost between the smallest and the largest point is what sizes retention
(docs/operations.md): fixed costs (the interpreter, the Raft log kept behind a
snapshot) cancel out in it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchlib import emit

FINISH_BATCH = 500
IN_FLIGHT = 2000  # proposals outstanding at once: what a busy leader batches


class _NoTransport:
    """A one-node cluster sends nothing."""

    def send(self, messages: Sequence[object]) -> None:
        pass

    def update_peers(self, addresses: Mapping[str, str]) -> None:
        pass


def _rss() -> int:
    import psutil  # type: ignore[import-untyped]

    return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _spec(i: int, args_bytes: int) -> Any:
    from agentflow._proto import state_pb2

    pad = "x" * max(0, args_bytes - 40)
    return state_pb2.TaskSpec(
        id=f"task-{i:08d}",
        name=f"train-shard-{i % 1000:04d}",
        command="python:jobs.train:main",
        args_json=json.dumps({"shard": i, "dataset": "s3://bucket/set", "pad": pad}),
        env={"RUN_ID": f"run-{i:012d}", "DATA_DIR": "/data/sets/current", "LOG_LEVEL": "info"},
        group="gpu",
        labels={"team": "ml", "env": "prod"},
        cpu=2.0,
        memory_mb=4096,
        max_retries=2,
        timeout_ms=3_600_000,
    )


async def _child(n: int, tail_bytes: int, args_bytes: int, batch: int) -> dict[str, Any]:
    from agentflow.raft.node import NodeConfig, RaftNode
    from agentflow.raft.storage import RaftStorage
    from agentflow.state import SchedulerState

    with tempfile.TemporaryDirectory(prefix="af-mem-") as tmp:
        storage = await RaftStorage.open(Path(tmp))
        state = SchedulerState()
        node = RaftNode("m1", storage, _NoTransport(), state, NodeConfig(tick_interval=0.01))
        runner = asyncio.create_task(node.run(bootstrap={"m1": "127.0.0.1:1"}))
        try:
            return await _load(node, state, n, tail_bytes, args_bytes, batch)
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            await storage.close()


async def _load(
    node: Any, state: Any, n: int, tail_bytes: int,
    args_bytes: int, batch: int,
) -> dict[str, Any]:  # fmt: skip
    from agentflow._proto import state_pb2
    from agentflow.scheduler.proposer import Proposer

    await node.wait_for_leader(lambda leader: leader == "m1", 30.0)
    proposer = Proposer(node, state)
    worker = state_pb2.WorkerInfo(
        id="w1", groups=["gpu"], cpu_cores=1e6, memory_mb=10**9, capacity=10**6
    )
    await proposer.propose(state_pb2.Command(register_worker=state_pb2.RegisterWorker(info=worker)))
    gc.collect()
    rss0, peak0 = _rss(), _peak_rss()
    started = time.perf_counter()

    async def submit(first: int) -> None:
        specs = [_spec(i, args_bytes) for i in range(first, min(n, first + batch))]
        placements = [state_pb2.Placement(task_index=k, worker_id="w1") for k in range(len(specs))]
        cmd = state_pb2.Command(
            submit_tasks=state_pb2.SubmitTasks(tasks=specs, placements=placements)
        )
        result = await proposer.propose(cmd, request_id=f"req-{first:08d}")
        assert not result.error.code, result.error

    stdout = ("epoch 3/3 loss=0.0123 acc=0.987\n" * (tail_bytes // 33 + 1))[:tail_bytes]
    stderr = ("W warning: slow io\n" * (tail_bytes // 76 + 1))[: tail_bytes // 4]
    for lo in range(0, n, IN_FLIGHT):
        hi = min(n, lo + IN_FLIGHT)
        await asyncio.gather(*(submit(i) for i in range(lo, hi, batch)))
        for f in range(lo, hi, FINISH_BATCH):
            items = [
                state_pb2.TaskFinished(
                    task_id=f"task-{i:08d}",
                    attempt=1,
                    worker_id="w1",
                    success=True,
                    result=state_pb2.TaskResult(
                        exit_code=0, stdout_tail=stdout, stderr_tail=stderr
                    ),
                )
                for i in range(f, min(hi, f + FINISH_BATCH))
            ]
            result = await proposer.propose(
                state_pb2.Command(finish_tasks=state_pb2.FinishTasks(items=items))
            )
            assert not result.rejected, result.rejected[:3]
    seconds = time.perf_counter() - started
    counts = state.counts()
    assert counts.get(state_pb2.TASK_STATE_SUCCEEDED, 0) == n, counts
    gc.collect()
    rss1, peak1 = _rss(), _peak_rss()
    snapshot_bytes = len(state.snapshot())
    status = node.status()
    return {
        "tasks": n,
        "seconds": round(seconds, 1),
        "raft_entries_applied": status.applied_index,
        "rss_before_mb": round(rss0 / 2**20, 1),
        "rss_after_mb": round(rss1 / 2**20, 1),
        "peak_rss_mb": round(peak1 / 2**20, 1),
        "snapshot_mb": round(snapshot_bytes / 2**20, 1),
        "rss_bytes_per_task": round((rss1 - rss0) / n),
        "peak_bytes_per_task": round((peak1 - max(peak0, rss0)) / n),
        "snapshot_bytes_per_task": round(snapshot_bytes / n),
    }


def _run_point(n: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(n),
        "--tail-bytes",
        str(args.tail_bytes),
        "--args-bytes",
        str(args.args_bytes),
        "--batch",
        str(args.batch),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"memory_bench child for {n} tasks failed:\n{done.stderr[-4000:]}")
    point: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="20000,50000,100000", help="points, comma-separated")
    parser.add_argument("--tail-bytes", type=int, default=1024, help="stdout tail per result")
    parser.add_argument("--args-bytes", type=int, default=256, help="args_json per spec")
    parser.add_argument("--batch", type=int, default=1, help="tasks per SubmitTasks request")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch < 1 or args.tail_bytes < 0 or args.args_bytes < 0:
        parser.error("--batch must be >= 1; --tail-bytes and --args-bytes >= 0")
    if args.child:
        # Quiet: the Raft node logs its snapshots; the parent reads one JSON line.
        import structlog

        structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
        point = asyncio.run(_child(args.child, args.tail_bytes, args.args_bytes, args.batch))
        print(json.dumps(point))
        return
    try:
        counts = sorted({int(x) for x in args.tasks.split(",") if x.strip()})
    except ValueError:
        parser.error(f"--tasks: not a comma-separated list of counts: {args.tasks!r}")
    if not counts or counts[0] < 1:
        parser.error("--tasks: give at least one count >= 1")
    points = [_run_point(n, args) for n in counts]
    report: dict[str, Any] = {
        "benchmark": "memory_bench",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "tail_bytes": args.tail_bytes,
        "args_bytes": args.args_bytes,
        "batch": args.batch,
        "points": points,
    }
    if len(points) > 1:
        lo, hi = points[0], points[-1]
        span = hi["tasks"] - lo["tasks"]
        report["marginal_rss_bytes_per_task"] = round(
            (hi["rss_after_mb"] - lo["rss_after_mb"]) * 2**20 / span
        )
        report["marginal_peak_bytes_per_task"] = round(
            (hi["peak_rss_mb"] - lo["peak_rss_mb"]) * 2**20 / span
        )
    emit(report, args.out)


if __name__ == "__main__":
    main()
