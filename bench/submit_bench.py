#!/usr/bin/env python3
"""Submit benchmark: tasks/s accepted (committed on a majority, fsynced) through the SDK.

    python bench/submit_bench.py [--seconds 5] [--out FILE]

Starts 3 `agentflow-master` processes on 127.0.0.1 (first `--mode leader`, then two
joining), and measures through `agentflow.AsyncClient` pointed at all three:
- one_by_one_sequential: one task per call, each awaited before the next (the
  baseline every ratio refers to), with per-call latency p50/p99;
- one_by_one_concurrent: one task per call, 64 calls in flight;
- batched_sequential: `submit_many` with 500 tasks per call, one call at a time;
- batched_concurrent: `submit_many`, 500 tasks per call, 4 calls in flight;
- workflow_10k: one 10,000-task workflow (1 -> 9,998 -> 1), time until committed.
Nothing runs the tasks (no workers): this measures the submit path alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchlib import emit, percentile, run_in

from agentflow import AsyncClient, TaskSpec, Workflow
from agentflow.master.testing import MasterCluster


async def run_for(
    seconds: float, workers: int, one: Callable[[], Awaitable[int]]
) -> tuple[int, float, list[float]]:
    """Run `one` (returns tasks accepted) in `workers` loops for `seconds`."""
    latencies: list[float] = []
    accepted = 0
    stop_at = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal accepted
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            got = await one()  # not `accepted += await ...`: that reads before awaiting
            accepted += got
            latencies.append((time.perf_counter() - t0) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(workers)))
    return accepted, time.perf_counter() - start, latencies


def summary(
    accepted: int, elapsed: float, latencies: list[float], calls_in_flight: int
) -> dict[str, float]:
    return {
        "calls_in_flight": calls_in_flight,
        "tasks": accepted,
        "seconds": round(elapsed, 3),
        "tasks_per_s": round(accepted / elapsed, 1),
        "call_p50_ms": round(percentile(latencies, 0.5), 2),
        "call_p99_ms": round(percentile(latencies, 0.99), 2),
    }


async def bench(seconds: float, root: Path) -> dict[str, object]:
    cluster = MasterCluster(root, size=3)
    try:
        await cluster.start_all()
        async with AsyncClient(cluster.url()) as client:
            await client.submit("shell:true", name="warm-up")
            n = 0

            def spec() -> TaskSpec:
                nonlocal n
                n += 1
                return TaskSpec("shell:true", name=f"bench-{n}")

            async def single() -> int:
                await client.submit_many([spec()])
                return 1

            async def batch() -> int:
                return len(await client.submit_many([spec() for _ in range(500)]))

            results: dict[str, dict[str, float]] = {}
            results["one_by_one_sequential"] = summary(*await run_for(seconds, 1, single), 1)
            results["one_by_one_concurrent"] = summary(*await run_for(seconds, 64, single), 64)
            results["batched_sequential"] = summary(*await run_for(seconds, 1, batch), 1)
            results["batched_concurrent"] = summary(*await run_for(seconds, 4, batch), 4)

            tasks = [TaskSpec("shell:true", id="start")]
            tasks += [
                TaskSpec(f"shell:echo {i}", id=f"t{i}", dependencies=["start"])
                for i in range(9_998)
            ]
            tasks.append(
                TaskSpec("shell:true", id="end", dependencies=[f"t{i}" for i in range(9_998)])
            )
            t0 = time.perf_counter()
            submitted = await client.submit_workflow(Workflow(tasks=tasks, name="bench"))
            wf_seconds = time.perf_counter() - t0
            assert len(submitted.task_ids) == 10_000
            results["workflow_10k"] = {
                "tasks": 10_000,
                "seconds": round(wf_seconds, 3),
                "tasks_per_s": round(10_000 / wf_seconds, 1),
            }
            base = results["one_by_one_sequential"]["tasks_per_s"]
            ratios = {
                name: round(r["tasks_per_s"] / base, 2)
                for name, r in results.items()
                if name != "one_by_one_sequential"
            }
            status = await client.cluster_status()
        return {
            "benchmark": "submit",
            "command": f"python bench/submit_bench.py --seconds {seconds:g}",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "cluster": {
                "masters": 3,
                "leader": status.leader_id,
                "commit_index": status.commit_index,
            },
            "baseline": "one_by_one_sequential",
            "results": results,
            "ratio_to_baseline": ratios,
        }
    finally:
        cluster.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measured phase")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--data-dir", type=Path, help="keep the masters' data here")
    args = parser.parse_args()
    report = run_in(args.data_dir, "agentflow-bench-", lambda root: bench(args.seconds, root))
    emit(report, args.out)


if __name__ == "__main__":
    main()
