"""The worker's register of the process groups it started, mirrored to its guardian.

The runners call `started(pgid)` as soon as a task's (or pool process's) group exists
and `ended(pgid)` once it is dead and reaped; each is one short line on a socket to
the guardian (`guardian.py`), no disk and no round trip on the worker's side. The
guardian kills every group still registered when the worker dies.

`Unguarded` keeps the same register without a guardian (an Executor used on its own,
in tests or embedded); the worker process always runs with a `Guardian`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import structlog

from agentflow.worker.group_record import record_path, sweep

log = structlog.get_logger(__name__)

GUARDIAN_MODULE = "agentflow.worker.guardian"
READY_TIMEOUT_S = 30.0


class Unguarded:
    """The register alone: which groups are alive, and signalling them all."""

    def __init__(self) -> None:
        self.groups: set[int] = set()

    def started(self, pgid: int) -> None:
        self.groups.add(pgid)

    def ended(self, pgid: int) -> None:
        self.groups.discard(pgid)

    def signal_all(self, signum: int) -> None:
        for pgid in list(self.groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signum)


class Guardian(Unguarded):
    """Starts and restarts the guardian process; tells it about every group.

    `on_frozen()` is called when the guardian stopped the groups because this worker
    was stopped (it runs once the worker runs again).
    """

    def __init__(
        self,
        state_dir: Path,
        on_frozen: Callable[[], None] | None = None,
        python: str = sys.executable,
    ) -> None:
        super().__init__()
        self.state_dir = state_dir
        self.on_frozen = on_frozen
        self.python = python
        self.proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._pending = bytearray()
        self._closing = False

    async def start(self) -> list[int]:
        """Kills what dead workers of this state dir left running, then starts the
        guardian. Returns the pgids killed. OSError if the state dir is unusable."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        probe = self.state_dir / f".probe-{os.getpid()}"
        probe.write_text("")  # fails here, at start, rather than silently later
        probe.unlink()
        killed = sweep(self.state_dir)
        if killed:
            log.warning(
                "worker.orphans_killed", process_groups=killed, state_dir=str(self.state_dir)
            )
        await self._spawn()
        return killed

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                GUARDIAN_MODULE,
                str(theirs.fileno()),
                str(record_path(self.state_dir, os.getpid())),
                str(os.getpid()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # the worker's terminal signals are not its own
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._pending = bytearray(b"".join(b"+%d\n" % g for g in self.groups))
        asyncio.get_running_loop().add_reader(ours.fileno(), self._readable)
        self._flush()

    async def watch(self) -> None:
        """Restarts the guardian whenever it dies, until close()."""
        while not self._closing:
            proc = self.proc
            if proc is None:
                return
            code = await proc.wait()
            if self._closing:
                return
            log.warning("worker.guardian_died", exit_code=code, restarting=True)
            self._drop_socket()
            await self._spawn()

    def started(self, pgid: int) -> None:
        super().started(pgid)
        self._send(b"+%d\n" % pgid)

    def ended(self, pgid: int) -> None:
        super().ended(pgid)
        self._send(b"-%d\n" % pgid)

    def _send(self, line: bytes) -> None:
        self._pending += line
        self._flush()

    def _flush(self) -> None:
        sock = self._sock
        if sock is None or not self._pending:
            return
        try:
            sent = sock.send(self._pending)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the guardian died: watch() restarts it and sends the whole set
        del self._pending[:sent]
        loop = asyncio.get_running_loop()
        if self._pending:
            loop.add_writer(sock.fileno(), self._writable)

    def _writable(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_writer(self._sock.fileno())
        self._flush()

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_socket()
            return
        if b"F" in data and self.on_frozen is not None:
            self.on_frozen()

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(sock.fileno())
            loop.remove_writer(sock.fileno())
            sock.close()

    async def close(self) -> None:
        """The worker is stopping and its groups are dead: the guardian exits."""
        self._closing = True
        self._flush()
        self._drop_socket()
        if self.proc is not None:
            try:
                await asyncio.wait_for(self.proc.wait(), 5.0)
            except TimeoutError:
                self.proc.send_signal(signal.SIGKILL)
                await self.proc.wait()
