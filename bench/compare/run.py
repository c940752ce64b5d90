#!/usr/bin/env python3
"""AgentFlow against Celery 5, Dask distributed and Ray: the same workloads, this machine,
one run. Standard library only; each framework runs in its own venv.

    python bench/compare/run.py [--only celery,dask,ray,agentflow,floor] [--tasks 20000]
                                [--out FILE] [--readme]

(a) throughput: --tasks no-op tasks end to end on 2 worker processes;
(b) latency: --rounds sequential submit-and-wait round trips, p50/p99;
(c) fanout: a 1 -> --fanout -> 1 DAG, wall time;
(d) leader_kill (AgentFlow only): kill -9 the leader under load; seconds until tasks
    complete again, and lost tasks.
floor: (b) through bench/latency_floor.py, the processes and hops of AgentFlow's round
    trip with none of its logic: how much of AgentFlow's p50 the hops alone take.
Ratios: AgentFlow's throughput / Celery's (target >= 1.5), AgentFlow's p50 / Celery's
(target <= 2), AgentFlow's fan-out time / Dask's (target <= 1).

Venvs: bench/compare/.venvs/{celery,dask,ray} from requirements-*.txt (built on first
use). Celery's broker and result backend is a Debian redis-server (apt-get installed if
missing) started here on 127.0.0.1 at a free port, in its own temp dir, stopped by pid.
Every process started is marked (an environment variable with this run's token) and,
after each runner, anything still alive with that mark is stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import venvs  # noqa: E402

# Run in this order. Ray goes last: for a minute after it stops, whatever runs next is
# slower although the CPUs are idle (latency_floor.py's p50: 4.5 ms right after Ray,
# then 4.1 and 3.6 ms, against 3.1-3.5 ms otherwise), so it would tax whoever follows.
FRAMEWORKS = ("celery", "dask", "floor", "agentflow", "ray")
# Not a framework: bench/latency_floor.py, AgentFlow's (b) hops with none of its logic.
FLOOR_LAYOUT = "(b) only: agentflow's processes and hops, raw bytes, no logic"
README = REPO / "bench" / "README.md"
README_JSON = HERE / "results.json"  # the run whose table is in the README (committed)
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"


# ----- the machine -----


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over `seconds` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    b0, t0 = sample()
    time.sleep(seconds)
    b1, t1 = sample()
    return (b1 - b0) / max(1, t1 - t0)


def wait_quiet(limit: float, threshold: float) -> dict[str, Any]:
    """Flush the disk's writeback (see common.settle_disk), then wait (at most `limit` s)
    until the machine's CPUs are mostly idle; say how it was."""
    start = time.monotonic()
    synced = common.settle_disk()
    busy = cpu_busy(2.0)
    while busy > threshold and time.monotonic() - start < limit:
        busy = cpu_busy(2.0)
    return {
        "cpu_busy_before": round(busy, 3),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "waited_s": round(time.monotonic() - start, 1),
        "sync_s": synced,
        "quiet": busy <= threshold,
    }


# ----- redis for Celery -----


def ensure_redis() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("redis-server is missing: apt-get install redis-server (as root)")
    common.log("installing redis-server with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env, timeout=900
    )
    found = shutil.which("redis-server")
    if not found:
        raise SystemExit("apt-get installed redis-server but it is not on PATH")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(workdir: Path, env: dict[str, str]) -> tuple[Any, str]:
    binary = ensure_redis()
    folder = workdir / "redis"
    folder.mkdir()
    port = free_port()
    cmd = [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
        "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
    ]  # fmt: skip
    proc = common.spawn(cmd, str(folder / "redis.log"), env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}"
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    common.stop(proc)
    raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{port} (see {folder})")


def redis_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


# ----- runners -----


def run_runner(
    name: str, cmd: list[str], env: dict[str, str], workdir: Path, timeout: float
) -> dict[str, Any]:
    """Run one runner (its own session); its JSON from stdout, or an error."""
    common.log(f"{name}: {shlex.join(cmd)}")
    stderr_path = workdir / f"{name}.stderr.log"
    start = time.perf_counter()
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(HERE),
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            common.log(f"{name}: timed out after {timeout} s; stopping it")
            common.stop(proc, grace=15)
            out = b""
    elapsed = round(time.perf_counter() - start, 1)
    lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith("{")]
    tail = stderr_path.read_text(errors="replace")[-3000:]
    if proc.returncode == 0 and lines:
        result: dict[str, Any] = json.loads(lines[-1])
        result["runner_seconds"] = elapsed
        return result
    partial = workdir / name / "partial.json"
    return {
        "framework": name,
        "error": f"exit code {proc.returncode} after {elapsed} s",
        "partial": json.loads(partial.read_text()) if partial.exists() else None,
        "stderr_tail": tail,
        "runner_seconds": elapsed,
    }


def floor_result(raw: dict[str, Any]) -> dict[str, Any]:
    """latency_floor.py's JSON in a runner's shape."""
    latency = {k: raw.get(k) for k in ("rounds", "p50_ms", "p99_ms", "mean_ms")}
    return {
        "framework": "floor",
        "version": "",
        "layout": FLOOR_LAYOUT,
        "followers": raw.get("followers"),
        "latency": latency,
        "runner_seconds": raw.get("runner_seconds"),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 2)


def get(results: dict[str, Any], name: str, *path: str) -> Any:
    value: Any = results.get(name)
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def effective(results: dict[str, Any]) -> dict[str, Any]:
    """Results, with a failed runner's checkpointed measurements in its place."""
    return {name: (r.get("partial") or {}) if "error" in r else r for name, r in results.items()}


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    results = effective(results)
    tp = ratio(get(results, "agentflow", "throughput", "tasks_per_s"),
               get(results, "celery", "throughput", "tasks_per_s"))  # fmt: skip
    p50 = ratio(get(results, "agentflow", "latency", "p50_ms"),
                get(results, "celery", "latency", "p50_ms"))  # fmt: skip
    dag = ratio(get(results, "agentflow", "fanout", "seconds"),
                get(results, "dask", "fanout", "seconds"))  # fmt: skip
    lost = get(results, "agentflow", "leader_kill", "lost_tasks")
    floor = get(results, "floor", "latency", "p50_ms")
    floor_vs_celery = ratio(floor, get(results, "celery", "latency", "p50_ms"))
    agentflow_vs_floor = ratio(get(results, "agentflow", "latency", "p50_ms"), floor)

    def check(value: float | None, target: str, met: bool) -> dict[str, Any]:
        """`met` is None when a side was not measured (--only, or a runner failed)."""
        return {"ratio": value, "target": target, "met": None if value is None else met}

    return {
        "throughput_vs_celery": check(tp, ">= 1.5", tp is not None and tp >= 1.5),
        "p50_latency_vs_celery": check(p50, "<= 2", p50 is not None and p50 <= 2),
        "fanout_time_vs_dask": check(dag, "<= 1", dag is not None and dag <= 1),
        # What the hops alone cost (no target): see bench/latency_floor.py.
        "p50_floor_vs_celery": {"ratio": floor_vs_celery, "target": "", "met": None},
        "p50_latency_vs_floor": {"ratio": agentflow_vs_floor, "target": "", "met": None},
        "leader_kill_lost_tasks": {
            "value": lost,
            "target": "== 0",
            "met": None if lost is None else lost == 0,
        },
    }


# ----- the table -----


def cell(value: Any, unit: str = "") -> str:
    return "—" if value is None else f"{value}{unit}"


def table(report: dict[str, Any]) -> str:
    results = report["results"]
    rows = [
        "| | tasks/s (a) | (a) seconds | p50 ms (b) | p99 ms (b) | fan-out s (c) | layout |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name in FRAMEWORKS:
        if name not in results:
            continue
        r = results[name]
        if "error" in r:
            partial = r.get("partial") or {}
            done = ", ".join(k for k in ("throughput", "latency", "fanout") if k in partial)
            rows.append(
                f"| {name} | runner failed ({r['error']}); measured before that:"
                f" {done or 'nothing'} | | | | | |"
            )
            if not partial:
                continue
            results = {**results, name: partial}
            r = {**partial, "version": f"{partial.get('version', '')} (partial)"}
        version = r.get("version", "")
        rows.append(
            f"| {name} {version} | {cell(get(results, name, 'throughput', 'tasks_per_s'))}"
            f" | {cell(get(results, name, 'throughput', 'seconds'))}"
            f" | {cell(get(results, name, 'latency', 'p50_ms'))}"
            f" | {cell(get(results, name, 'latency', 'p99_ms'))}"
            f" | {cell(get(results, name, 'fanout', 'seconds'))}"
            f" | {r.get('layout', '')} |"
        )
    lines = ["\n".join(rows), ""]
    r = report["ratios"]
    lines.append("| ratio (AgentFlow / other) | measured | target | met |")
    lines.append("|---|---:|---|---|")
    for key, label in (
        ("throughput_vs_celery", "throughput / Celery's"),
        ("p50_latency_vs_celery", "p50 latency / Celery's"),
        ("fanout_time_vs_dask", "fan-out DAG time / Dask's"),
    ):
        lines.append(
            f"| {label} | {cell(r[key]['ratio'])} | {r[key]['target']}"
            f" | {({True: 'yes', False: 'no'}).get(r[key]['met'], 'not measured')} |"
        )
    for key, label in (
        ("p50_floor_vs_celery", "p50 of the bare hops (floor) / Celery's"),
        ("p50_latency_vs_floor", "p50 latency / the floor's"),
    ):
        if key in r and r[key]["ratio"] is not None:
            lines.append(f"| {label} | {r[key]['ratio']} | (no target) | |")
    kill = get(results, "agentflow", "leader_kill")
    if isinstance(kill, dict):
        lines += [
            "",
            "| (d) leader kill -9 under load (AgentFlow) | |",
            "|---|---:|",
            f"| tasks acknowledged (stream of {kill.get('tasks_submitted')} + 1 probe) |"
            f" {kill.get('tasks_acknowledged')} |",
            f"| s from kill -9 to the first task finished by the new leader |"
            f" {cell(kill.get('first_task_finished_after_kill_s'))} |",
            f"| s without any completion (last before the kill -> first after) |"
            f" {cell(kill.get('completion_stall_s'))} |",
            f"| s from kill -9 to a task submitted right after it succeeding |"
            f" {cell(kill.get('probe_submitted_after_kill_succeeded_s'))} |",
            f"| lost tasks | {kill.get('lost_tasks')} |",
        ]
    return "\n".join(lines)


def write_readme(report: dict[str, Any]) -> None:
    block = "\n".join(
        [
            BEGIN,
            f"Command: `{report['command']}`  ",
            f"Run: {report['started']}, {report['machine']['cpus']} CPUs, "
            f"Python {report['machine']['python']}; full JSON: `{report.get('out', '-')}`.",
            "",
            table(report),
            END,
        ]
    )
    text = README.read_text() if README.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text)


# ----- main -----


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", default=",".join(FRAMEWORKS), help="comma-separated subset")
    parser.add_argument("--tasks", type=int, default=20_000, help="(a) no-op tasks")
    parser.add_argument("--rounds", type=int, default=500, help="(b) round trips")
    parser.add_argument("--fanout", type=int, default=1_000, help="(c) width")
    parser.add_argument("--kill-tasks", type=int, default=3_000, help="(d) tasks in the stream")
    parser.add_argument("--kill-after", type=int, default=500, help="(d) succeeded before kill")
    parser.add_argument("--celery-layout", choices=["one-x2", "two-x1"], default="one-x2")
    parser.add_argument(
        "--agentflow-python",
        default=str(REPO / ".venv" / "bin" / "python"),
        help="the interpreter with agentflow installed",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="per runner, seconds")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120,
        help="before each runner, wait up to this long for the CPUs to be < 25%% busy",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "compare.json")
    parser.add_argument("--readme", action="store_true", help="write the table to bench/README.md")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    args = parser.parse_args()
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(only) - set(FRAMEWORKS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {FRAMEWORKS}")

    token = uuid.uuid4().hex
    env = {**os.environ, common.MARKER: token, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    workdir = Path(tempfile.mkdtemp(prefix="agentflow-compare-"))
    argv = ["python", "bench/compare/run.py", *sys.argv[1:]]
    report: dict[str, Any] = {
        "benchmark": "compare",
        "command": shlex.join(argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "workloads": {
            "throughput_tasks": args.tasks,
            "latency_rounds": args.rounds,
            "fanout_width": args.fanout,
            "leader_kill_tasks": args.kill_tasks,
        },
        "venvs": {},
        "conditions": {},
        "results": {},
        "stray_processes_stopped": {},
    }
    common_args = [
        "--tasks", str(args.tasks), "--rounds", str(args.rounds), "--fanout", str(args.fanout),
    ]  # fmt: skip
    try:
        for name in only:
            if name not in ("agentflow", "floor"):
                report["venvs"][name] = venvs.ensure(name)
        for name in only:
            rdir = workdir / name
            rdir.mkdir()
            redis = None
            try:
                if name == "agentflow":
                    python = args.agentflow_python
                    extra = [
                        "--workloads", "throughput,latency,fanout,leader_kill",
                        "--kill-tasks", str(args.kill_tasks), "--kill-after", str(args.kill_after),
                    ]  # fmt: skip
                else:
                    python = str(venvs.python_of(name))
                    extra = []
                if name == "celery":
                    redis, url = start_redis(workdir, env)
                    report["redis"] = {
                        "version": redis_version(ensure_redis()),
                        "url": url,
                        "persistence": "off (--save '' --appendonly no)",
                    }
                    extra = ["--redis-url", url, "--layout", args.celery_layout]
                report["conditions"][name] = wait_quiet(args.wait_quiet, 0.25)
                cmd = [
                    python, str(HERE / f"runner_{name}.py"), "--workdir", str(rdir),
                    *common_args, *extra,
                ]  # fmt: skip
                if name == "floor":
                    python = args.agentflow_python
                    cmd = [python, str(REPO / "bench" / "latency_floor.py"),
                           "--rounds", str(args.rounds)]  # fmt: skip
                result = run_runner(name, cmd, env, workdir, args.timeout)
                if name == "floor" and "error" not in result:
                    result = floor_result(result)
                report["results"][name] = result
                report["conditions"][name]["load_after"] = [round(x, 2) for x in os.getloadavg()]
                common.log(f"{name}: {json.dumps(result)[:600]}")
            finally:
                if redis is not None:
                    common.stop(redis)
                stray = common.sweep(token)
                if stray:
                    report["stray_processes_stopped"][name] = stray
                    common.log(f"{name}: stopped stray processes {stray}")
    finally:
        stray = common.sweep(token)
        if stray:
            report["stray_processes_stopped"]["end"] = stray
        if args.keep:
            report["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report["ratios"] = ratios(report["results"])
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        report["out"] = os.path.relpath(args.out, REPO)
    print(text)
    print("\n" + table(report), file=sys.stderr)
    if args.readme:
        report["out"] = os.path.relpath(README_JSON, REPO)
        README_JSON.write_text(json.dumps(report, indent=2) + "\n")
        write_readme(report)
        common.log(f"table written to {os.path.relpath(README, REPO)}")


if __name__ == "__main__":
    main()
