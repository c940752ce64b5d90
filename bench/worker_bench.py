#!/usr/bin/env python3
"""Worker benchmark: no-op Python tasks/s through one worker, gRPC stream vs HTTP shim.

    python bench/worker_bench.py [--tasks 2000] [--concurrency 4] [--masters 1] [--out FILE]

Starts `agentflow-master` processes on 127.0.0.1 (one by default: this measures the
worker path, not replication; `--masters 3` for a replicated cluster) and, for each
transport in turn, one `agentflow-worker --transport T` with a fixed concurrency and
as many warm Python processes. It submits `--tasks` tasks of
`python:agentflow.worker.testing_tasks:noop` (in batches of 500) and measures from the
first submit until the last one is SUCCEEDED: each task is assigned (committed), pushed
to the worker, run on the warm pool, and its started report and result committed and
acknowledged. The gRPC stream is the baseline of the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

from benchlib import emit, run_in

from agentflow import AsyncClient, TaskSpec, TaskState
from agentflow.master.testing import MasterCluster

NOOP = "python:agentflow.worker.testing_tasks:noop"
BATCH = 500


async def wait_connected(client: AsyncClient, worker_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(w.id == worker_id and w.connected for w in await client.workers()):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"worker {worker_id} did not connect")


async def succeeded(client: AsyncClient, group: str) -> int:
    page = await client.list_page(states=[TaskState.SUCCEEDED], group=group, page_size=1)
    return page.total


async def run_tasks(client: AsyncClient, group: str, count: int) -> float:
    """Seconds from the first submit until `count` tasks of `group` succeeded."""
    t0 = time.perf_counter()
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        await client.submit_many([TaskSpec(NOOP, group=group) for _ in range(n)])
    while True:
        if await succeeded(client, group) >= count:
            return time.perf_counter() - t0
        await asyncio.sleep(0.02)


async def measure(
    cluster: MasterCluster, client: AsyncClient, transport: str, tasks: int, concurrency: int
) -> dict[str, float | int | str]:
    name = f"bench-{transport}"
    cluster.group.spawn(
        name,
        [
            sys.executable,
            "-m",
            "agentflow.worker.main",
            "--master-url",
            cluster.address(cluster.ids[0]),
            "--http-url",
            f"http://127.0.0.1:{cluster.http_ports[cluster.ids[0]]}",
            "--transport",
            transport,
            "--worker-id",
            name,
            "--group",
            f"{name},{name}-warm",
            "--python-pool-size",
            str(concurrency),
            "--reconnect-base",
            "0.2",
        ],
        {"WORKER_MAX_CONCURRENT_TASKS": str(concurrency), "AGENTFLOW_LOG_LEVEL": "warning"},
    )
    try:
        await wait_connected(client, name)
        await run_tasks(client, f"{name}-warm", 50)  # warm-up: pool, channels, caches
        seconds = await run_tasks(client, name, tasks)
    finally:
        cluster.group.terminate(name, timeout=30)
    return {
        "transport": transport,
        "tasks": tasks,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(tasks / seconds, 1),
        "ms_per_task": round(1000 * seconds / tasks, 3),
    }


async def bench(tasks: int, concurrency: int, masters: int, root: Path) -> dict[str, object]:
    cluster = MasterCluster(root, size=masters)
    try:
        await cluster.start_all()
        async with AsyncClient(cluster.url()) as client:
            results = {
                "grpc": await measure(cluster, client, "grpc", tasks, concurrency),
                "http_shim": await measure(cluster, client, "http", tasks, concurrency),
            }
            status = await client.cluster_status()
        base = results["grpc"]["tasks_per_s"]
        assert isinstance(base, float)
        shim = results["http_shim"]["tasks_per_s"]
        assert isinstance(shim, float)
        return {
            "benchmark": "worker",
            "command": (
                f"python bench/worker_bench.py --tasks {tasks} --concurrency {concurrency}"
                f" --masters {masters}"
            ),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "cluster": {"masters": masters, "commit_index": status.commit_index},
            "worker": {"concurrency": concurrency, "python_pool_size": concurrency},
            "task": NOOP,
            "baseline": "grpc",
            "results": results,
            "ratio_to_baseline": {"http_shim": round(shim / base, 2)},
        }
    finally:
        cluster.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="measured tasks per transport")
    parser.add_argument("--concurrency", type=int, default=4, help="worker concurrency")
    parser.add_argument("--masters", type=int, default=1, choices=(1, 3, 5))
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--data-dir", type=Path, help="keep data and logs here")
    args = parser.parse_args()
    report = run_in(
        args.data_dir,
        "agentflow-worker-bench-",
        lambda root: bench(args.tasks, args.concurrency, args.masters, root),
    )
    emit(report, args.out)


if __name__ == "__main__":
    main()
