#!/usr/bin/env python3
"""`make demo`: a local AgentFlow cluster on 127.0.0.1 doing real work.

Starts 3 masters (the first `--mode leader`, two joining with `--leader-url`) and 2
workers in different groups, then, through the real `agentflow` CLI:
1. runs a build -> test -> deploy release workflow (examples/release.yaml) with
   progress bars;
2. runs a 1 -> 24 -> 1 fan-out workflow and kills the leader (SIGKILL) while it runs:
   a new leader takes over, the workers follow it, and the workflow completes;
3. prints the final tables (tasks, workers, cluster) and stops everything.
Data lives under ./data/demo (removed at start). Ctrl-C stops everything cleanly.

On a terminal the fan-out's `agentflow run --wait` writes into a pseudo-terminal that
this script relays, so it knows the text of the progress line and can print its own
lines (the failover) above it: clear the line, print, redraw.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import os
import pty
import shutil
import subprocess
import sys
import termios
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


class Console:
    """The demo's own lines and a child's one-line progress display on one terminal.

    The child writes into a pty whose output passes through `relay`, which keeps the
    text of the line being redrawn (everything after the last newline, as the
    display redraws it after a carriage return). `say` clears that line, prints its
    own, and draws the child's line again below it."""

    def __init__(self) -> None:
        self._line = ""  # the child's unfinished line, as last drawn
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def relay(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        sys.stdout.write(text)
        sys.stdout.flush()
        tail = self._line + text
        tail = tail.rsplit("\n", 1)[-1]
        self._line = tail.rsplit("\r", 1)[-1]

    def say(self, line: str) -> None:
        if self._line:
            sys.stdout.write(f"\r\033[K{line}\n{self._line}")
        else:
            sys.stdout.write(f"{line}\n")
        sys.stdout.flush()


async def kill_leader_soon(cluster: MasterCluster, delay: float, console: Console) -> None:
    await asyncio.sleep(delay)
    leader = await cluster.leader()
    pid = cluster.group.procs[leader].pid
    console.say(f"   !! kill -9 of the leader, master {leader} (pid {pid})")
    cluster.kill(leader)
    t0 = time.monotonic()
    new = await cluster.leader(30)
    console.say(f"   !! master {new} leads after {time.monotonic() - t0:.1f} s")
    cluster.start(leader)
    console.say(f"   !! master {leader} restarted from its disk")


async def run_in_pty(args: list[str], env: dict[str, str], console: Console) -> int:
    """Run `args` with stdout and stderr on a new pty (the size of ours), relaying
    its output to `console` until the child exits and the pty is drained."""
    primary, secondary = pty.openpty()
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(sys.stdout.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, size)
    # Bytes pass unchanged: our own terminal turns newlines into CR LF already.
    attrs = termios.tcgetattr(secondary)
    attrs[1] &= ~termios.ONLCR
    termios.tcsetattr(secondary, termios.TCSANOW, attrs)
    loop = asyncio.get_running_loop()
    drained: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(primary, 4096)
        except OSError:  # EIO: the child's side is closed
            data = b""
        if data:
            console.relay(data)
        elif not drained.done():
            loop.remove_reader(primary)
            drained.set_result(None)

    try:
        proc = await asyncio.create_subprocess_exec(
            *args, env=env, stdout=secondary, stderr=secondary
        )
    finally:
        os.close(secondary)  # the child holds its own copy
    loop.add_reader(primary, readable)
    try:
        code = await proc.wait()
        await drained
    finally:
        loop.remove_reader(primary)
        os.close(primary)
    return code


async def run_fanout(cluster: MasterCluster, path: Path) -> None:
    env = dict(os.environ, MASTER_URL=cluster.url())
    args = [str(BIN / "agentflow"), "run", str(path), "--wait"]
    console = Console()
    killer = asyncio.create_task(kill_leader_soon(cluster, 2.5, console))
    if sys.stdout.isatty():
        code = await run_in_pty(args, env, console)
    else:  # no progress display to share the screen with
        code = await (await asyncio.create_subprocess_exec(*args, env=env)).wait()
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

        show("a release workflow: build -> test -> deploy")
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
