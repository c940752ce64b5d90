"""`python:<module>:<function>` tasks on a pool of warm python processes.

The pool keeps `size` processes started ahead of time (interpreter up, agentflow's
pool code imported), so a task pays for a socket round trip instead of a process
start. A job takes an idle process, or starts one when none is idle, so the pool never
limits concurrency (the worker's adaptive limit does); at most `size` are kept idle
afterwards. A process goes back to the idle set after a clean job; it is killed and
replaced in the background when its job was cancelled or timed out, when it died, hit
a limit, ran a GPU job (CUDA fixes its devices at first use), or left threads running.

Each pool process is its own session and process group, so cancelling a job kills
whatever the job started as well.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
import socket
import subprocess
import sys
from typing import Any

import structlog

from agentflow.worker import rlimits
from agentflow.worker.attempt import OutputPipes, Stop, race, report
from agentflow.worker.pool_protocol import JOB_MARKER, FrameBuffer, encode
from agentflow.worker.process_group import terminate_group
from agentflow.worker.process_groups import Unguarded
from agentflow.worker.runs import (
    EXIT_BAD_REQUEST,
    EXIT_NOT_STARTED,
    PYTHON_PREFIX,
    Outcome,
    Reporter,
    TaskRun,
    failed,
    format_seconds,
    task_env,
)

log = structlog.get_logger(__name__)

START_TIMEOUT_S = 30.0
CHILD_MODULE = "agentflow.worker.pool_child"


class PoolStartError(RuntimeError):
    pass


def parse_python_command(command: str) -> tuple[str, str]:
    """("pkg.module", "function") from "python:pkg.module:function"; ValueError if not."""
    body = command.removeprefix(PYTHON_PREFIX)
    module, sep, function = body.partition(":")
    names = [*module.split("."), *function.split(".")]
    if not sep or ":" in function or not all(n.isidentifier() for n in names):
        raise ValueError(f"invalid python command {command!r}: expected python:<module>:<function>")
    return module, function


def check_args_json(args_json: str) -> None:
    if not args_json.strip():
        return
    try:
        value = json.loads(args_json)
    except ValueError as exc:
        raise ValueError(f"args_json is not valid JSON: {exc}") from None
    if not isinstance(value, list | dict):
        raise ValueError(f"args_json must be a JSON array or object, not {type(value).__name__}")


class PoolProcess:
    """One pool process and its socket. Runs one job at a time."""

    def __init__(
        self, proc: asyncio.subprocess.Process, sock: socket.socket, groups: Unguarded
    ) -> None:
        self.proc = proc
        self.sock = sock
        self.groups = groups
        self._buffer = FrameBuffer()
        self._frames: collections.deque[dict[str, Any]] = collections.deque()

    @classmethod
    async def spawn(
        cls, python: str, groups: Unguarded | None = None, pythonpath: tuple[str, ...] = ()
    ) -> PoolProcess:
        """`pythonpath`: directories the process puts first on its sys.path."""
        groups = groups if groups is not None else Unguarded()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                python,
                "-m",
                CHILD_MODULE,
                str(theirs.fileno()),
                *pythonpath,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        groups.started(proc.pid)
        ours.setblocking(False)
        child = cls(proc, ours, groups)
        try:
            ready = await asyncio.wait_for(child.next_frame(), START_TIMEOUT_S)
        except BaseException:
            await child.kill(0)
            raise
        if ready is None or ready["type"] != "ready":
            await child.kill(0)
            raise PoolStartError(f"python pool process failed to start (exit {proc.returncode})")
        return child

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def next_frame(self) -> dict[str, Any] | None:
        """The next frame from the process; None when it closed the socket (died)."""
        loop = asyncio.get_running_loop()
        while not self._frames:
            data = await loop.sock_recv(self.sock, 65536)
            if not data:
                return None
            self._frames.extend(self._buffer.feed(data))
        return self._frames.popleft()

    async def send_job(self, job: dict[str, Any], fds: tuple[int, int]) -> None:
        # Marker, pipes and frame in one sendmsg: one wake-up of the process, not two.
        # (It reads the marker with the descriptors, then the frame.) The send buffer
        # is empty here (the process read the previous job before it answered), so
        # only a frame bigger than the buffer leaves a rest to send.
        data = JOB_MARKER + encode(job)
        sent = socket.send_fds(self.sock, [data], list(fds))
        if sent < len(data):
            await asyncio.get_running_loop().sock_sendall(self.sock, data[sent:])

    async def kill(self, grace_s: float) -> None:
        try:
            await terminate_group(self.proc, grace_s)
        finally:
            self.groups.ended(self.proc.pid)
            self.sock.close()


class PythonPool:
    def __init__(
        self,
        size: int,
        grace_s: float,
        python: str = sys.executable,
        groups: Unguarded | None = None,
        pythonpath: tuple[str, ...] = (),
    ) -> None:
        self.size = max(0, size)
        self.grace_s = grace_s
        self.python = python
        self.groups = groups if groups is not None else Unguarded()
        self.pythonpath = pythonpath
        self._idle: collections.deque[PoolProcess] = collections.deque()
        self._busy: set[PoolProcess] = set()
        self._starting = 0
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    async def start(self) -> None:
        """Starts the idle processes and waits until they are ready."""
        needed = self.size - len(self._idle) - self._starting
        if needed <= 0:
            return
        self._starting += needed
        try:
            results = await asyncio.gather(
                *(
                    PoolProcess.spawn(self.python, self.groups, self.pythonpath)
                    for _ in range(needed)
                ),
                return_exceptions=True,
            )
        finally:
            self._starting -= needed
        errors = [r for r in results if isinstance(r, BaseException)]
        for result in results:
            if isinstance(result, PoolProcess):
                self._park(result)
        if errors:
            raise errors[0]

    async def acquire(self) -> PoolProcess:
        while self._idle:
            # The most recently used: in a sequential stream one process stays warm
            # (caches, scheduler) while the others wait as spares.
            child = self._idle.pop()
            if child.alive:
                self._busy.add(child)
                return child
            self._retire(child)
            self._refill()
        # Never cancel a start half-way (asyncio would lose the process it created):
        # if our caller gives up, the new process joins the idle set instead.
        spawn = asyncio.get_running_loop().create_task(
            PoolProcess.spawn(self.python, self.groups, self.pythonpath)
        )
        try:
            child = await asyncio.shield(spawn)
        except asyncio.CancelledError:
            self._in_background(self._adopt(spawn))
            raise
        if self._closed:
            await child.kill(0)
            raise PoolStartError("executor is closing")
        self._busy.add(child)
        return child

    def release(self, child: PoolProcess, reusable: bool) -> None:
        self._busy.discard(child)
        if reusable and child.alive:
            self._park(child)
        else:
            self._retire(child)
        self._refill()

    async def discard(self, child: PoolProcess, grace_s: float | None = None) -> None:
        """Kills a busy process now (its job was cancelled or timed out)."""
        self._busy.discard(child)
        try:
            await child.kill(self.grace_s if grace_s is None else grace_s)
        finally:
            self._refill()

    def _park(self, child: PoolProcess) -> None:
        if self._closed or len(self._idle) >= self.size:
            self._retire(child)
        else:
            self._idle.append(child)

    def _retire(self, child: PoolProcess) -> None:
        self._in_background(child.kill(0))

    def _refill(self) -> None:
        """Starts processes until `size` exist, busy ones included.

        Taking an idle process does not start another: a sequential stream of tasks
        would otherwise start and retire a process per task. Only a lost process (died,
        killed, retired) is replaced.
        """
        while not self._closed and len(self._idle) + len(self._busy) + self._starting < self.size:
            self._starting += 1
            self._in_background(self._start_one())

    async def _adopt(self, spawn: asyncio.Task[PoolProcess]) -> None:
        try:
            child = await spawn
        except Exception:
            return
        self._park(child)

    async def _start_one(self) -> None:
        try:
            child = await PoolProcess.spawn(self.python, self.groups, self.pythonpath)
        except Exception as exc:
            # Not retried in a loop: the next release or acquire tries again.
            log.warning("python pool process failed to start", error=str(exc))
            return
        finally:
            self._starting -= 1
        self._park(child)

    def _in_background(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        self._closed = True
        # Starts and kills in flight are awaited, not cancelled: a start cancelled
        # half-way would lose its process. Each is bounded (START_TIMEOUT_S, kill).
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        children = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        for child in children:
            with contextlib.suppress(Exception):
                await child.kill(0)


async def run_python(
    pool: PythonPool,
    run: TaskRun,
    reporter: Reporter,
    stop: Stop,
    deadline: float | None,
    batch_bytes: int,
    batch_s: float,
) -> Outcome:
    try:
        module, function = parse_python_command(run.command)
        check_args_json(run.args_json)
    except ValueError as exc:
        return failed(EXIT_BAD_REQUEST, str(exc))
    try:
        ending, child = await race(pool.acquire(), stop, deadline)
    except (OSError, PoolStartError, TimeoutError) as exc:
        return failed(
            EXIT_NOT_STARTED, f"could not start a python pool process: {exc or type(exc).__name__}"
        )
    if ending == "stopped":
        return failed(EXIT_NOT_STARTED, stop.reason)
    if ending == "timeout":
        return failed(EXIT_NOT_STARTED, f"timed out after {format_seconds(run.timeout_s or 0)}")
    assert child is not None
    job = {
        "type": "job",
        "task_id": run.task_id,
        "attempt": run.attempt,
        "module": module,
        "function": function,
        "args_json": run.args_json,
        "env": task_env(run, base={}),
        "cwd": run.cwd,
        "memory_limit_mb": run.memory_limit_mb,
        "cpu_time_limit_s": run.cpu_time_limit_s,
    }
    pipes = OutputPipes(run, reporter, batch_bytes, batch_s)
    result: dict[str, Any] | None = None
    ending = "done"
    settled = False  # the process is back in the pool or dead, with its group
    try:
        try:
            await child.send_job(job, pipes.write_fds)
        except OSError as exc:
            await pool.discard(child)
            settled = True
            return failed(EXIT_NOT_STARTED, f"could not hand the job to a pool process: {exc}")
        pipes.started()
        ending, result = await race(_follow(child, run, reporter, pipes), stop, deadline)
        if ending == "done" and result is not None:
            reusable = not run.gpu_indices and result.get("kind") != "memory"
            pool.release(child, reusable=reusable and result.get("stray_threads", 0) <= 0)
        else:
            # Cancelled, timed out or died: the job's whole group is dead before we return.
            await pool.discard(child, stop.grace(pool.grace_s))
        settled = True
    finally:
        if not settled:  # we are being cancelled ourselves
            await asyncio.shield(pool.discard(child))
        stdout_tail, stderr_tail = await pipes.finish()
    return _outcome(run, stop, ending, result, child, stdout_tail, stderr_tail)


async def _follow(
    child: PoolProcess, run: TaskRun, reporter: Reporter, pipes: OutputPipes
) -> dict[str, Any] | None:
    """Relays the job's progress frames; returns its result, None if it died."""
    while True:
        frame = await child.next_frame()
        if frame is None:
            await child.proc.wait()
            return None
        kind = frame["type"]
        if kind == "result":
            return frame
        if kind == "progress":
            fraction, message = float(frame["fraction"]), str(frame["message"])
            report(reporter.progress, run.task_id, run.attempt, fraction, message)


def _outcome(
    run: TaskRun,
    stop: Stop,
    ending: str,
    result: dict[str, Any] | None,
    child: PoolProcess,
    stdout_tail: str,
    stderr_tail: str,
) -> Outcome:
    code = child.proc.returncode
    if ending == "stopped":
        return Outcome(False, code or -signal.SIGTERM, stdout_tail, stderr_tail, error=stop.reason)
    if ending == "timeout":
        error = f"timed out after {format_seconds(run.timeout_s or 0)}"
        return Outcome(False, code or -signal.SIGTERM, stdout_tail, stderr_tail, error=error)
    if result is None:  # the pool process died during the job
        assert code is not None
        reason = rlimits.describe_failure(
            code, stderr_tail, run.memory_limit_mb, run.cpu_time_limit_s, via_shell=False
        )
        if code >= 0:
            reason = f"python process exited with code {code} before returning"
        return Outcome(False, code, stdout_tail, stderr_tail, error=reason)
    if result["ok"]:
        return Outcome(True, 0, stdout_tail, stderr_tail, value_json=str(result["value_json"]))
    error = str(result["error"])
    if result.get("kind") == "memory":
        error = f"memory limit {run.memory_limit_mb} MB exceeded (MemoryError)"
    return Outcome(False, int(result["exit_code"]), stdout_tail, stderr_tail, error=error)
