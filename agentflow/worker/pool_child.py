"""A warm python pool process: `python -m agentflow.worker.pool_child <socket fd>`.

Runs one job at a time for the worker (protocol: agentflow.worker.pool_protocol).
Around each job it points fds 1 and 2 at the job's pipes, overlays the task's
environment, enters its cwd, sets task_context() and lowers its rlimits; afterwards it
undoes all of that, so the next job starts from the same state. What it cannot undo
(imported modules stay imported, threads the task left running) is reported in the
result so the worker can retire the process instead of reusing it.

Imports are kept to the few modules the protocol needs: this is what every pool
process pays at start.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

from agentflow.worker import context, rlimits
from agentflow.worker.pool_protocol import JOB_MARKER, encode, recv_frame

ERROR_LINE_LIMIT = 500
MAX_VALUE_BYTES = 16 * 2**20
WATCHDOG_S = 1.0


class Channel:
    """The socket to the worker; sends from any thread, one frame at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = encode(message)
        with self._lock:
            self.sock.sendall(data)


def parse_args(args_json: str) -> tuple[list[Any], dict[str, Any]]:
    if not args_json.strip():
        return [], {}
    value = json.loads(args_json)
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict):
        return [], value
    raise TypeError(f"args_json must be a JSON array or object, not {type(value).__name__}")


class TaskNotFoundError(ModuleNotFoundError):
    """The task's module is not importable here: says where the worker looked."""


def resolve(module_name: str, function: str) -> Any:
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise  # the module exists; something it imports does not
        looked = os.pathsep.join(p or os.getcwd() for p in sys.path)
        raise TaskNotFoundError(
            f"No module named {exc.name!r} on the worker's sys.path ({looked}); make it"
            " importable with agentflow-worker --pythonpath DIR (or"
            " AGENTFLOW_WORKER_PYTHONPATH), or give the task a cwd that holds it",
            name=exc.name,
        ) from None
    for part in function.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{module_name}:{function} is not callable")
    return target


def error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    name = "ModuleNotFoundError" if isinstance(exc, TaskNotFoundError) else type(exc).__name__
    line = f"{name}: {text[0]}" if text else name
    # Where the worker looked is the point of that error: it gets the room a path needs.
    limit = 4 * ERROR_LINE_LIMIT if isinstance(exc, TaskNotFoundError) else ERROR_LINE_LIMIT
    return line if len(line) <= limit else line[: limit - 3] + "..."


class JobState:
    """Everything a job changes in this process, and how to put it back."""

    def __init__(self, job: dict[str, Any], fds: list[int], saved_fds: tuple[int, int]):
        self.job = job
        self._fds = fds
        self._saved_fds = saved_fds
        self._env_before: dict[str, str | None] = {}
        self._cwd_before = ""
        self._path_added = ""

    def enter(self, channel: Channel) -> None:
        _flush_std()
        os.dup2(self._fds[0], 1)
        os.dup2(self._fds[1], 2)
        for fd in self._fds:
            os.close(fd)
        for key, value in self.job["env"].items():
            self._env_before[key] = os.environ.get(key)
            os.environ[key] = value
        context._enter(
            context.TaskContext(self.job["task_id"], self.job["attempt"], channel.send, write_log)
        )
        cwd = self.job["cwd"]
        if cwd:
            self._cwd_before = os.getcwd()
            os.chdir(cwd)  # may raise: reported as the job's error
            # As `python script.py` would: modules next to the task's cwd import.
            sys.path.insert(0, cwd)
            self._path_added = cwd

    def exit(self) -> None:
        context._exit()
        if self._path_added and self._path_added in sys.path:
            sys.path.remove(self._path_added)
        if self._cwd_before:
            os.chdir(self._cwd_before)
        for key, before in self._env_before.items():
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before
        _flush_std()
        # Closes the job pipes' last write ends held here: the worker sees EOF.
        os.dup2(self._saved_fds[0], 1)
        os.dup2(self._saved_fds[1], 2)


def write_log(text: str) -> None:
    """task_context().log(): straight to fd 1, after whatever print() still buffers."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    data = text.encode("utf-8", errors="replace")
    while data:
        data = data[os.write(1, data) :]


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a task closed or broke it
            stream.flush()


def call(job: dict[str, Any]) -> dict[str, Any]:
    """Runs the job's function under its limits; the result frame to send."""
    saved = None
    try:
        function = resolve(job["module"], job["function"])
        args, kwargs = parse_args(job["args_json"])
        saved = rlimits.apply_in_process(job.get("memory_limit_mb"), job.get("cpu_time_limit_s"))
        value = function(*args, **kwargs)
        if inspect.iscoroutine(value):
            import asyncio  # only tasks written as coroutines pay for asyncio

            value = asyncio.run(value)
        rlimits.restore(saved)
        saved = None
        try:
            value_json = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"return value is not JSON-serializable: {exc}") from None
        if len(value_json) > MAX_VALUE_BYTES:
            raise ValueError(
                f"return value is {len(value_json)} bytes of JSON, over {MAX_VALUE_BYTES}"
            )
        return {"type": "result", "ok": True, "exit_code": 0, "value_json": value_json}
    except MemoryError:
        # Restore first: reporting needs memory the limit may not leave.
        if saved is not None:
            rlimits.restore(saved)
            saved = None
        traceback.print_exc()
        kind = "memory" if job.get("memory_limit_mb") is not None else "exception"
        return {"type": "result", "ok": False, "exit_code": 1, "kind": kind, "error": "MemoryError"}
    except SystemExit as exc:
        if exc.code is None or exc.code == 0:
            return {"type": "result", "ok": True, "exit_code": 0, "value_json": "null"}
        code = exc.code if isinstance(exc.code, int) else 1
        return {"type": "result", "ok": False, "exit_code": code, "error": error_line(exc)}
    except BaseException as exc:
        if saved is not None:
            rlimits.restore(saved)
            saved = None
        traceback.print_exc()
        return {"type": "result", "ok": False, "exit_code": 1, "error": error_line(exc)}
    finally:
        if saved is not None:
            rlimits.restore(saved)


def run_job(
    job: dict[str, Any], fds: list[int], channel: Channel, saved_fds: tuple[int, int]
) -> dict[str, Any]:
    state = JobState(job, fds, saved_fds)
    try:
        state.enter(channel)
        result = call(job)
    except BaseException as exc:  # the job's cwd did not exist, say
        traceback.print_exc()
        result = {"type": "result", "ok": False, "exit_code": 1, "error": error_line(exc)}
    finally:
        state.exit()
    # The watchdog is ours; anything beyond it was started by the task and keeps
    # running into the next job unless the worker retires this process.
    result["stray_threads"] = threading.active_count() - 2
    return result


def watch_parent(parent: int) -> None:
    """Kills this process group when the worker is gone.

    Pool processes run in their own session, so nothing else would end a job (or the
    processes it started) if the worker died with SIGKILL.
    """
    while True:
        time.sleep(WATCHDOG_S)
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)


def main() -> int:
    sock = socket.socket(fileno=int(sys.argv[1]))
    # agentflow-worker --pythonpath, in order, ahead of everything but the task's cwd.
    sys.path[0:0] = sys.argv[2:]
    sock.setblocking(True)
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))  # SIGXCPU would dump core
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # prints stream as they happen
    threading.Thread(
        target=watch_parent, args=(os.getppid(),), name="agentflow-watchdog", daemon=True
    ).start()
    saved_fds = (os.dup(1), os.dup(2))
    channel = Channel(sock)
    channel.send({"type": "ready", "pid": os.getpid()})
    while True:
        marker, fds, _, _ = socket.recv_fds(sock, 1, 2)
        if not marker:
            return 0  # the worker closed the socket: nothing more to do
        if marker != JOB_MARKER or len(fds) != 2:
            raise RuntimeError(f"protocol error: marker {marker!r} with {len(fds)} fds")
        job = recv_frame(sock)
        if job is None:
            return 0
        channel.send(run_job(job, fds, channel, saved_fds))


if __name__ == "__main__":
    sys.exit(main())
