"""Ray runner: a local Ray started by ray.init(num_cpus=2) on 127.0.0.1 (no dashboard),
remote functions of num_cpus=1. Prints one JSON object on stdout.

    .venvs/ray/bin/python runner_ray.py --workdir DIR
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from common import arguments, emit, fanout, latency, log, settle_disk, throughput


def main() -> None:
    args = arguments(__doc__ or "").parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    # Ray's unix sockets live under its temp dir: keep that path short.
    temp_dir = tempfile.mkdtemp(prefix="rb-", dir="/tmp")

    @ray.remote(num_cpus=1)
    def noop(*_: object) -> None:
        return None

    result: dict[str, object] = {
        "framework": "ray",
        "version": ray.__version__,
        "layout": "ray.init(num_cpus=2), tasks num_cpus=1",
    }
    started = time.perf_counter()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=temp_dir,
        logging_level="warning",
        log_to_driver=False,
    )
    try:
        ray.get([noop.remote() for _ in range(50)])  # warm-up (starts the 2 workers)
        result["startup_seconds"] = round(time.perf_counter() - started, 3)
        workloads = set(args.workloads.split(","))

        if "throughput" in workloads:
            settle_disk()
            log(f"ray: {args.tasks} no-op tasks")
            t0 = time.perf_counter()
            refs = [noop.remote() for _ in range(args.tasks)]
            t1 = time.perf_counter()
            values = ray.get(refs)
            t2 = time.perf_counter()
            assert len(values) == args.tasks
            result["throughput"] = throughput(args.tasks, t1 - t0, t2 - t0)
            del refs, values

        if "latency" in workloads:
            settle_disk()
            log(f"ray: {args.rounds} round trips")
            samples = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                ray.get(noop.remote(), timeout=60)
                samples.append(time.perf_counter() - t0)
            result["latency"] = latency(samples)

        if "fanout" in workloads:
            settle_disk()
            log(f"ray: 1 -> {args.fanout} -> 1")
            t0 = time.perf_counter()
            root = noop.remote()
            middle = [noop.remote(root, i) for i in range(args.fanout)]
            ray.get(noop.remote(*middle), timeout=600)
            result["fanout"] = fanout(args.fanout, time.perf_counter() - t0)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
