"""Child processes of tests, benchmarks and the demo, managed by PID only.

Every process here is our own child; it is signalled only through its Popen handle
(SIGTERM, SIGKILL, SIGSTOP/SIGCONT), never by name. Output goes to `<root>/<name>.log`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no types-psutil in the dev extras yet


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def descendants() -> set[int]:
    """Pids of every process below this one (children, their children, ...)."""
    return {c.pid for c in psutil.Process().children(recursive=True)}


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting to be reaped."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


async def all_gone(pids: list[int], timeout: float = 3.0) -> bool:
    """Whether every one of `pids` is gone within `timeout` seconds (SIGKILL is
    delivered asynchronously: the kernel may need a moment)."""
    deadline = time.monotonic() + timeout
    while not all(gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@dataclass
class ProcessGroup:
    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        if name in self.procs and self.procs[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        child_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env
        )
        log.close()

    def running(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def terminate(self, name: str, timeout: float = 10.0) -> int:
        """Graceful stop (SIGTERM); returns the exit code. Past `timeout` the process
        is killed (SIGKILL) and TimeoutExpired raised, so nothing is left behind."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            raise

    def exited(self) -> list[str]:
        """Processes that ended on their own (a crash failpoint, say)."""
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def reap(self, name: str) -> int:
        return self.procs.pop(name).wait()

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def pause(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGCONT)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGKILL)
            proc.wait()

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""
