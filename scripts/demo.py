#!/usr/bin/env python3
"""`make demo`: a local AgentFlow cluster on 127.0.0.1 doing real work.

Starts 3 masters (the first `--mode leader`, two joining with `--leader-url`) and 2
workers in different groups, then, through the real `agentflow` CLI:
1. runs seed 001's build -> test -> deploy workflow (examples/release.yaml) with
   progress bars;
2. runs a 1 -> 24 -> 1 fan-out workflow and kills the leader (SIGKILL) while it runs:
   a new leader takes over, the workers follow it, and the workflow completes;
3. prints the final tables (tasks, workers, cluster) and stops everything.
Data lives under ./data/demo (removed at start). Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from agentflow.common.processes import ProcessGroup
from agentflow.master.testing import MasterCluster

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("data/demo")
BIN = Path(sys.executable).parent
FANOUT = 24


def show(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


def agentflow(cluster: MasterCluster, *args: str, check: bool = True) -> int:
    env = dict(os.environ, MASTER_URL=cluster.url())
    code = subprocess.call([str(BIN / "agentflow"), *args], env=env)
    if check and code != 0:
        raise SystemExit(f"demo: `agentflow {' '.join(args)}` exited with {code}")
    return code


def start_workers(cluster: MasterCluster, group: ProcessGroup) -> None:
    paths = [str(ROOT / "examples"), os.environ.get("PYTHONPATH", "")]
    env = {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    for worker_id, groups in (("builder", "build,default"), ("runner", "linux,default")):
        cluster.start_worker(group, worker_id, groups, "--cpu-cores", "2", env=env)


def fanout_yaml(path: Path) -> None:
    lines = [
        "workflow:",
        "  id: fanout",
        "  name: Fan-out 1 -> 24 -> 1",
        "  tasks:",
        "    - {task_id: split, desc: 'shell:echo splitting', name: Split}",
    ]
    for i in range(FANOUT):
        lines.append(
            f"    - {{task_id: part{i:02d}, name: 'Part {i}', desc: 'python:demo_tasks:crunch',"
            f" args: {{name: part{i}, steps: 10, pause: 0.15}}, dependencies: [split],"
            " max_retries: 3}"
        )
    parts = ", ".join(f"part{i:02d}" for i in range(FANOUT))
    lines.append(
        f"    - {{task_id: merge, name: Merge, desc: 'python:demo_tasks:merge',"
        f" args: {{parts: {FANOUT}}}, dependencies: [{parts}]}}"
    )
    path.write_text("\n".join(lines) + "\n")


async def kill_leader_soon(cluster: MasterCluster, delay: float) -> None:
    await asyncio.sleep(delay)
    leader = await cluster.leader()
    print(f"\n   !! kill -9 of the leader, master {leader} (pid "
          f"{cluster.group.procs[leader].pid})", flush=True)  # fmt: skip
    cluster.kill(leader)
    t0 = time.monotonic()
    new = await cluster.leader(30)
    print(f"   !! master {new} leads after {time.monotonic() - t0:.1f} s", flush=True)
    cluster.start(leader)
    print(f"   !! master {leader} restarted from its disk", flush=True)


async def run_fanout(cluster: MasterCluster, path: Path) -> None:
    env = dict(os.environ, MASTER_URL=cluster.url())
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "agentflow"), "run", str(path), "--wait", env=env
    )
    killer = asyncio.create_task(kill_leader_soon(cluster, 2.5))
    code = await proc.wait()
    await killer
    if code != 0:
        raise SystemExit(f"demo: the fan-out workflow ended with exit code {code}")


def shutdown(cluster: MasterCluster, workers: ProcessGroup) -> None:
    """SIGTERM first (workers drain, a leader hands over), SIGKILL what lingers."""
    for group in (workers, cluster.group):
        for name in group.running():
            with contextlib.suppress(subprocess.TimeoutExpired):
                group.terminate(name, timeout=10)
        group.stop_all()


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    cluster = MasterCluster(DATA / "masters", size=3)
    workers = ProcessGroup(DATA / "workers")
    try:
        show("3 masters on 127.0.0.1 (m1 --mode leader, m2 and m3 join with --leader-url)")
        asyncio.run(cluster.start_all())
        start_workers(cluster, workers)
        time.sleep(1.5)
        agentflow(cluster, "cluster", "status")
        agentflow(cluster, "workers")

        show("seed 001's release workflow: build -> test -> deploy")
        agentflow(cluster, "run", str(ROOT / "examples" / "release.yaml"), "--wait")

        show(f"a 1 -> {FANOUT} -> 1 fan-out; the leader is killed while it runs")
        path = DATA / "fanout.yaml"
        fanout_yaml(path)
        asyncio.run(run_fanout(cluster, path))

        show("the cluster afterwards")
        asyncio.run(cluster.wait_members(3, 30))
        agentflow(cluster, "cluster", "status")
        agentflow(cluster, "workers")
        print(f"\nlogs and data: {DATA}/", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the cluster", flush=True)
    finally:
        shutdown(cluster, workers)


if __name__ == "__main__":
    main()
