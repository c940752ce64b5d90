"""What a master checks before it serves, and how a failure to start is described.

Every failure to start becomes a `StartupError` whose message names what failed (a
flag, a file) in one line: `agentflow-master` prints it and exits non-zero at once,
never a traceback and never a half-started process that keeps a port.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sqlite3
from pathlib import Path

from agentflow.common.one_line_errors import StartupError as CommonStartupError
from agentflow.raft.storage import DB_NAME, StorageCorruptError
from agentflow.raft.types import RaftError

LOCK_NAME = "master.lock"
RECOVERY_HINT = 'to recover, see "Recovering a master" in docs/operations.md'
# SQLite's names for a file that is not (or no longer) a database.
_DAMAGED = ("SQLITE_NOTADB", "SQLITE_CORRUPT")


class StartupError(CommonStartupError):
    """The master cannot start. `what` names the flag or file at fault."""

    def __init__(self, what: str, detail: str) -> None:
        self.what = what
        self.detail = detail
        super().__init__(f"{what}: {detail}")


def check_data_dir(path: Path) -> None:
    """Create `path` if needed and prove it writable (a probe file), so that a bad
    --data-dir is reported by name before any port is taken."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"--data-dir {path}", f"not usable: {reason(exc)}") from None


def lock_data_dir(path: Path) -> int:
    """Take `path`/master.lock for as long as the returned descriptor stays open
    (the kernel drops it when the process dies, however it dies): two masters on
    one directory would both write its raft.db and ruin it."""
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StartupError(f"--data-dir {path}", f"not usable: {reason(exc)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StartupError(
            f"--data-dir {path}", f"in use by another master (pid {holder})"
        ) from None
    with contextlib.suppress(OSError):  # the pid is only for the message above
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def check_listen(flag: str, host: str, port: int) -> None:
    """Bind and release `host:port` the way gRPC will (it needs one of the resolved
    addresses), so that a port in use is named with the kernel's reason: gRPC's own
    bind error does not say why, and logs lines of its own."""
    where = f"{flag} {port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"--host {host}", f"cannot be resolved: {exc.strerror}") from None
    errors: list[str] = []
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            # As gRPC does: a port left in TIME_WAIT by a master that just
            # stopped is free to it, and to the probe.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                errors.append(f"cannot listen on {_show(address)}: {reason(exc)}")
    if errors and len(errors) == len(infos):
        raise StartupError(where, errors[0])


def storage_error(data_dir: Path, exc: RaftError | sqlite3.DatabaseError) -> StartupError:
    """The one-line description of a Raft storage failure; a damaged file says which
    and where to read how to recover."""
    db = data_dir / DB_NAME
    if isinstance(exc, StorageCorruptError):
        return StartupError(str(data_dir), f"stored Raft state is damaged: {exc}; {RECOVERY_HINT}")
    if isinstance(exc, sqlite3.DatabaseError):
        name = str(getattr(exc, "sqlite_errorname", ""))
        if name.startswith(_DAMAGED):
            return StartupError(str(db), f"damaged ({exc}); {RECOVERY_HINT}")
        return StartupError(str(db), str(exc))
    text = str(exc)
    # RaftStorage's own errors already start with the file's name.
    what, sep, detail = text.partition(": ")
    return StartupError(what, detail) if sep and what == str(db) else StartupError(str(db), text)


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or `exc` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def reason(exc: OSError) -> str:
    """The kernel's words for `exc` (asyncio puts a sentence of its own in strerror)."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _show(address: tuple[object, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
