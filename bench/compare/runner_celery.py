"""Celery 5 runner: Redis broker and result backend (the Redis run.py started), prefork
workers started here. Prints one JSON object on stdout.

    .venvs/celery/bin/python runner_celery.py --redis-url redis://127.0.0.1:PORT --workdir DIR

--layout one-x2: one `celery worker --pool prefork --concurrency 2` (2 worker processes
under one parent); two-x1: two `celery worker --concurrency 1` nodes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import celery
import kombu
import redis
from celery import chain, chord, group
from common import (
    arguments,
    emit,
    fanout,
    latency,
    log,
    settle_disk,
    spawn,
    stop,
    throughput,
)

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = arguments(__doc__ or "")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--layout", choices=["one-x2", "two-x1"], default="one-x2")
    args = parser.parse_args()
    os.environ["BENCH_REDIS_URL"] = args.redis_url
    from celery_app import app, noop

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    nodes = [("w1", 2)] if args.layout == "one-x2" else [("w1", 1), ("w2", 1)]
    procs = []
    result: dict[str, object] = {
        "framework": "celery",
        "version": celery.__version__,
        "layout": args.layout,
        "kombu": kombu.__version__,
        "redis_py": redis.__version__,
        "workers": [
            f"celery worker -n {name}@%h --pool prefork --concurrency {c}" for name, c in nodes
        ],
    }
    started = time.perf_counter()
    try:
        for name, concurrency in nodes:
            cmd = [
                sys.executable, "-m", "celery", "-A", "celery_app", "worker",
                "-n", f"{name}@%h", "--pool", "prefork", "--concurrency", str(concurrency),
                "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
                "--without-heartbeat",
            ]  # fmt: skip
            procs.append(spawn(cmd, str(workdir / f"{name}.log"), env, cwd=str(HERE)))
        wait_for_nodes(app, len(nodes), timeout=60)
        group(noop.s() for _ in range(50)).apply_async().get(timeout=60)  # warm-up
        result["startup_seconds"] = round(time.perf_counter() - started, 3)
        workloads = set(args.workloads.split(","))

        if "throughput" in workloads:
            settle_disk()
            log(f"celery: {args.tasks} no-op tasks")
            t0 = time.perf_counter()
            pending = group(noop.s() for _ in range(args.tasks)).apply_async()
            t1 = time.perf_counter()
            values = pending.get(timeout=3600)
            t2 = time.perf_counter()
            assert len(values) == args.tasks
            result["throughput"] = throughput(args.tasks, t1 - t0, t2 - t0)
            pending.forget()

        if "latency" in workloads:
            settle_disk()
            log(f"celery: {args.rounds} round trips")
            samples = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                noop.delay().get(timeout=60)
                samples.append(time.perf_counter() - t0)
            result["latency"] = latency(samples)

        if "fanout" in workloads:
            settle_disk()
            log(f"celery: 1 -> {args.fanout} -> 1")
            t0 = time.perf_counter()
            dag = chain(noop.si(), chord([noop.si() for _ in range(args.fanout)], noop.si()))
            dag.apply_async().get(timeout=600)
            result["fanout"] = fanout(args.fanout, time.perf_counter() - t0)
    finally:
        for proc in procs:
            stop(proc)
    emit(result)


def wait_for_nodes(app: celery.Celery, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5)
        if len(replies) >= count:
            return
    raise TimeoutError(f"fewer than {count} celery workers answered within {timeout} s")


if __name__ == "__main__":
    main()
