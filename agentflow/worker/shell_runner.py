"""`shell:<command>` tasks: /bin/sh -c in a process group of their own.

task_context() is not available to shell tasks (there is no channel back from an
arbitrary program); they see AGENTFLOW_TASK_ID and AGENTFLOW_ATTEMPT in their
environment, and their stdout/stderr are streamed as logs.
"""

from __future__ import annotations

import asyncio
import subprocess

from agentflow.worker import rlimits
from agentflow.worker.attempt import OutputPipes, Stop, race
from agentflow.worker.process_group import kill_group, terminate_group
from agentflow.worker.process_groups import Unguarded
from agentflow.worker.runs import (
    EXIT_NOT_STARTED,
    SHELL_PREFIX,
    Outcome,
    Reporter,
    TaskRun,
    failed,
    format_seconds,
    task_env,
)


async def run_shell(
    run: TaskRun,
    reporter: Reporter,
    stop: Stop,
    deadline: float | None,
    batch_bytes: int,
    batch_s: float,
    grace_s: float,
    groups: Unguarded,
) -> Outcome:
    command = run.command.removeprefix(SHELL_PREFIX)
    argv = rlimits.shell_argv(command, run.memory_limit_mb, run.cpu_time_limit_s)
    pipes = OutputPipes(run, reporter, batch_bytes, batch_s)
    out_w, err_w = pipes.write_fds
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            env=task_env(run),
            cwd=run.cwd or None,
            start_new_session=True,
        )
    except OSError as exc:
        await pipes.finish(drain_s=0)
        return failed(EXIT_NOT_STARTED, f"could not start: {exc}")
    groups.started(proc.pid)
    pipes.started()
    ending = "done"
    try:
        ending, _ = await race(proc.wait(), stop, deadline)
        if ending == "done":
            # The task is over; children it left behind would hold the pipes open.
            kill_group(proc)
        else:
            await terminate_group(proc, stop.grace(grace_s))
    finally:
        if proc.returncode is None:  # we are being cancelled: do not leave it running
            kill_group(proc)
            await asyncio.shield(proc.wait())
        groups.ended(proc.pid)
        stdout_tail, stderr_tail = await pipes.finish()
    code = proc.returncode
    assert code is not None
    if ending == "stopped":
        error = stop.reason
    elif ending == "timeout":
        assert run.timeout_s is not None
        error = f"timed out after {format_seconds(run.timeout_s)}"
    elif code == 0:
        error = ""
    else:
        error = rlimits.describe_failure(
            code, stderr_tail, run.memory_limit_mb, run.cpu_time_limit_s, via_shell=True
        )
    return Outcome(
        success=ending == "done" and code == 0,
        exit_code=code,
        stdout_tail=stdout_tail,
        stderr_tail=stderr_tail,
        error=error,
    )
