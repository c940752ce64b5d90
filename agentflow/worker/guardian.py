"""The guardian: `python -m agentflow.worker.guardian <socket fd> <record> <worker pid>`.

One small process per worker, started before any task, in a session of its own. The
worker tells it over a socket pair which process groups it has started and which have
ended (`+<pgid>` / `-<pgid>` lines); only the worker holds the other end. When the
socket reaches EOF the worker is gone, however it died (SIGKILL included), and the
guardian kills every group still recorded, then exits. A task's children are in its
group unless they call setsid, so this reaches `sh -c 'sleep 30 & sleep 30'` whole,
which a parent-death signal on the group's leader would not.

While the worker runs, the guardian also keeps the durable record
(`group_record.py`) current, at most every RECORD_EVERY_S, so a group that starts and
ends in between never touches the disk.

And it watches the worker's state: a worker stopped (SIGSTOP, SIGTSTP, a debugger)
for FREEZE_AFTER_S has its task groups stopped too, and is told so (`F`). The leader
declares a silent worker lost and runs its tasks elsewhere; a task of a stopped worker
must not go on producing side effects meanwhile. On resume the worker decides: it
kills the attempts the leader took away, and continues the others (see vigil.py).

SIGINT and SIGTERM are ignored: the guardian must outlast its worker's drain; it
ends when the worker does.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path

from agentflow.worker.group_record import (
    kill_groups,
    process_state,
    start_ticks,
    write_record,
)

POLL_S = 0.1
FREEZE_AFTER_S = 0.5
RECORD_EVERY_S = 0.05
FROZEN = b"F\n"


class Guard:
    def __init__(self, sock: socket.socket, record: Path, worker_pid: int) -> None:
        self.sock = sock
        self.record = record
        self.worker_pid = worker_pid
        self.worker_start = start_ticks(worker_pid)
        self.groups: dict[int, int] = {}  # pgid -> its leader's start ticks (0 = unknown)
        self._buffer = b""
        self._dirty = False
        self._written = 0.0
        self._stopped_since: float | None = None
        self._frozen = False

    def feed(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            if len(line) < 2 or not line[1:].isdigit():
                continue
            pgid = int(line[1:])
            if line[:1] == b"+":
                self.groups[pgid] = start_ticks(pgid)
            elif line[:1] == b"-":
                self.groups.pop(pgid, None)
            self._dirty = True

    @property
    def busy(self) -> bool:
        return bool(self.groups) or self._dirty

    def flush_record(self, now: float) -> None:
        if self._dirty and now - self._written >= RECORD_EVERY_S:
            with contextlib.suppress(OSError):  # a full disk must not stop the guarding
                write_record(self.record, self.worker_pid, self.worker_start, self.groups)
            self._dirty = False
            self._written = now

    def watch_worker(self, now: float) -> None:
        if process_state(self.worker_pid) not in ("T", "t"):
            self._stopped_since = None
            self._frozen = False
            return
        if self._stopped_since is None:
            self._stopped_since = now
        if not self._frozen and self.groups and now - self._stopped_since >= FREEZE_AFTER_S:
            self._frozen = True
            for pgid in self.groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGSTOP)
            with contextlib.suppress(OSError):
                self.sock.sendall(FROZEN)  # read by the worker once it runs again

    def finish(self) -> None:
        """The worker is gone: nothing it started may go on."""
        kill_groups(self.groups, verify=False)
        time.sleep(0.05)  # a fork racing the first signal: its child joins the group
        kill_groups(self.groups, verify=False)
        self.record.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[1]))
    guard = Guard(sock, Path(argv[2]), int(argv[3]))
    while True:
        readable, _, _ = select.select([sock], [], [], POLL_S if guard.busy else None)
        if readable:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            guard.feed(data)
        now = time.monotonic()
        guard.watch_worker(now)
        guard.flush_record(now)
    guard.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
