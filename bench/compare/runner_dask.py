"""Dask distributed runner: LocalCluster(n_workers=2, threads_per_worker=1,
processes=True) on 127.0.0.1, futures API. Prints one JSON object on stdout.

    .venvs/dask/bin/python runner_dask.py --workdir DIR
"""

from __future__ import annotations

import time

import dask
import distributed
from common import arguments, emit, fanout, latency, log, settle_disk, throughput
from distributed import Client, LocalCluster, wait


def noop(*_: object) -> None:
    return None


def main() -> None:
    args = arguments(__doc__ or "").parse_args()
    result: dict[str, object] = {
        "framework": "dask",
        "version": distributed.__version__,
        "layout": "LocalCluster(n_workers=2, threads_per_worker=1, processes=True)",
    }
    started = time.perf_counter()
    with (
        dask.config.set({"temporary-directory": args.workdir}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            local_directory=args.workdir,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        wait(client.map(noop, range(50), pure=False))  # warm-up
        result["startup_seconds"] = round(time.perf_counter() - started, 3)
        workloads = set(args.workloads.split(","))

        if "throughput" in workloads:
            settle_disk()
            log(f"dask: {args.tasks} no-op tasks")
            t0 = time.perf_counter()
            futures = client.map(noop, range(args.tasks), pure=False)
            t1 = time.perf_counter()
            values = client.gather(futures)
            t2 = time.perf_counter()
            assert len(values) == args.tasks
            result["throughput"] = throughput(args.tasks, t1 - t0, t2 - t0)
            del futures, values

        if "latency" in workloads:
            settle_disk()
            log(f"dask: {args.rounds} round trips")
            samples = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                client.submit(noop, pure=False).result(timeout=60)
                samples.append(time.perf_counter() - t0)
            result["latency"] = latency(samples)

        if "fanout" in workloads:
            settle_disk()
            log(f"dask: 1 -> {args.fanout} -> 1")
            t0 = time.perf_counter()
            root = client.submit(noop, pure=False)
            middle = [client.submit(noop, root, i, pure=False) for i in range(args.fanout)]
            sink = client.submit(noop, *middle, pure=False)
            sink.result(timeout=600)
            result["fanout"] = fanout(args.fanout, time.perf_counter() - t0)
    emit(result)


if __name__ == "__main__":
    main()
