"""Shared by every runner (standard library only: it is imported under each framework's
own venv python, next to the runner script)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tasks", type=int, default=20_000, help="(a) no-op tasks")
    parser.add_argument("--rounds", type=int, default=500, help="(b) sequential round trips")
    parser.add_argument("--fanout", type=int, default=1_000, help="(c) width of 1 -> N -> 1")
    parser.add_argument("--workdir", required=True, help="a fresh folder for this runner")
    parser.add_argument(
        "--workloads", default="throughput,latency,fanout", help="comma-separated subset"
    )
    return parser


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(tasks: int, submit_s: float, total_s: float) -> dict[str, Any]:
    return {
        "tasks": tasks,
        "submit_seconds": round(submit_s, 3),
        "seconds": round(total_s, 3),
        "tasks_per_s": round(tasks / total_s, 1),
    }


def latency(samples_s: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in samples_s]
    return {
        "rounds": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "mean_ms": round(sum(ms) / len(ms), 3),
        "max_ms": round(max(ms), 3),
    }


def fanout(width: int, seconds: float) -> dict[str, Any]:
    return {"width": width, "tasks": width + 2, "seconds": round(seconds, 3)}


def settle_disk() -> float:
    """sync(2) before a workload, so that the writeback of the previous one (AgentFlow
    fsyncs every commit; the others write little) does not land in this one's fsyncs.
    Seconds it took. Every runner calls it before each workload."""
    start = time.perf_counter()
    os.sync()
    return round(time.perf_counter() - start, 3)


def checkpoint(result: dict[str, Any], workdir: str) -> None:
    """What is measured so far, kept in `workdir`/partial.json: run.py reports it if the
    runner dies before `emit`."""
    path = os.path.join(workdir, "partial.json")
    with open(path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(path + ".tmp", path)


def emit(result: dict[str, Any]) -> None:
    """The runner's one line of JSON on stdout (everything else goes to stderr)."""
    result.setdefault("python", platform.python_version())
    result.setdefault("pid", os.getpid())
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----- processes: each started in its own session, stopped by its own pid -----

MARKER = "AGENTFLOW_BENCH_RUN"  # set by run.py; every descendant inherits it


def spawn(
    cmd: list[str], log_path: str, env: dict[str, str] | None = None, cwd: str | None = None
) -> Any:
    import subprocess

    out = open(log_path, "ab")  # noqa: SIM115 (closed with the process, by the OS)
    return subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,  # its process group is its pid: children go with it
    )


def stop(proc: Any, grace: float = 10.0) -> None:
    """SIGTERM the process (its group, which is its pid), then SIGKILL after `grace`."""
    import signal
    import subprocess

    if proc.poll() is not None:
        _kill_group(proc.pid, signal.SIGKILL)  # leftovers of an exited leader
        return
    _kill_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    _kill_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        log(f"pid {proc.pid} did not die after SIGKILL")


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def marked_pids(token: str) -> list[int]:
    """Live processes whose environment has MARKER=token (what a run started, at any
    depth, even daemons that left our session), except this one."""
    needle = f"{MARKER}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def sweep(token: str, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process marked with `token`; returns their pids."""
    import signal

    pids = marked_pids(token)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False
