"""The executor running real shell tasks: output, env, limits, timeout, cancel."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentflow.common.processes import all_gone, descendants, gone
from agentflow.worker.executor import Executor, TaskRun
from agentflow.worker.testing_tasks import RecordingReporter

PY = sys.executable


@pytest.fixture
async def executor() -> AsyncIterator[Executor]:
    ex = Executor(
        python_pool_size=0, log_batch_bytes=4096, log_batch_seconds=0.05, kill_grace_s=0.5
    )
    before = descendants()
    await ex.start()
    try:
        yield ex
    finally:
        await ex.close()
    # Everything the test started is gone (or a zombie about to be reaped).
    assert await all_gone(list(descendants() - before))


def read_words(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def wait_for_lines(path: Path, count: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = read_words(path)
        if len(lines) >= count:
            return [int(x) for x in lines]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never got {count} lines")


async def test_success_exit_code_tails_and_logs(executor: Executor) -> None:
    reporter = RecordingReporter()
    outcome = await executor.run(TaskRun("t", 1, "shell:echo hello; echo oops >&2"), reporter)
    assert outcome.success and outcome.exit_code == 0 and outcome.error == ""
    assert outcome.stdout_tail == "hello\n" and outcome.stderr_tail == "oops\n"
    assert reporter.text("stdout") == "hello\n" and reporter.text("stderr") == "oops\n"
    assert {(c[0], c[1]) for c in reporter.log_calls} == {("t", 1)}


async def test_failure_exit_code_and_error_line(executor: Executor) -> None:
    outcome = await executor.run(
        TaskRun("t", 1, "shell:echo partial; echo 'no such file' >&2; exit 7"), RecordingReporter()
    )
    assert not outcome.success
    assert outcome.exit_code == 7
    assert outcome.error == "exit code 7: no such file"
    assert outcome.stdout_tail == "partial\n"


async def test_long_output_is_batched_and_tail_is_the_last_4kb(executor: Executor) -> None:
    reporter = RecordingReporter()
    command = f"shell:{PY} -c \"[print(f'line {{i:05d}}') for i in range(20000)]\""
    outcome = await executor.run(TaskRun("t", 1, command), reporter)
    assert outcome.success
    expected = "".join(f"line {i:05d}\n" for i in range(20000))
    assert reporter.text("stdout") == expected  # nothing lost, nothing reordered
    assert len(reporter.log_calls) > 10  # batched by size (4 KB), not one per line
    assert all(call[3].endswith("\n") for call in reporter.log_calls)
    assert 4000 <= len(outcome.stdout_tail) <= 4096
    assert expected.endswith(outcome.stdout_tail)


async def test_logs_stream_before_the_task_ends(executor: Executor) -> None:
    reporter = RecordingReporter()
    run = executor.run(TaskRun("t", 1, "shell:echo first; sleep 1; echo second"), reporter)
    task = asyncio.ensure_future(run)
    await asyncio.sleep(0.5)
    assert reporter.text("stdout") == "first\n"  # flushed by the time tick
    outcome = await task
    assert outcome.success and reporter.text("stdout") == "first\nsecond\n"


async def test_env_carries_task_identity_and_task_env(
    executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    command = (
        'shell:echo "$AGENTFLOW_TASK_ID $AGENTFLOW_ATTEMPT $EXTRA ${CUDA_VISIBLE_DEVICES-unset}"'
    )
    outcome = await executor.run(
        TaskRun("task-9", 3, command, env={"EXTRA": "x y"}), RecordingReporter()
    )
    assert outcome.stdout_tail == "task-9 3 x y unset\n"


async def test_cuda_visible_devices_from_assigned_gpus(executor: Executor) -> None:
    run = TaskRun("t", 1, 'shell:echo "$CUDA_VISIBLE_DEVICES"', gpu_indices=(0, 2))
    outcome = await executor.run(run, RecordingReporter())
    assert outcome.stdout_tail == "0,2\n"


async def test_task_cannot_spoof_its_identity(executor: Executor) -> None:
    run = TaskRun("real", 2, 'shell:echo "$AGENTFLOW_TASK_ID"', env={"AGENTFLOW_TASK_ID": "fake"})
    assert (await executor.run(run, RecordingReporter())).stdout_tail == "real\n"


async def test_cwd(executor: Executor, tmp_path: Path) -> None:
    outcome = await executor.run(
        TaskRun("t", 1, "shell:pwd", cwd=str(tmp_path)), RecordingReporter()
    )
    assert outcome.stdout_tail == f"{tmp_path}\n"


async def test_missing_cwd_is_a_clear_failure(executor: Executor, tmp_path: Path) -> None:
    run = TaskRun("t", 1, "shell:true", cwd=str(tmp_path / "missing"))
    outcome = await executor.run(run, RecordingReporter())
    assert not outcome.success and outcome.exit_code == 127
    assert outcome.error.startswith("could not start:") and "missing" in outcome.error


async def test_timeout_kills(executor: Executor) -> None:
    started = time.monotonic()
    outcome = await executor.run(
        TaskRun("t", 1, "shell:sleep 30", timeout_s=0.3), RecordingReporter()
    )
    assert time.monotonic() - started < 3
    assert not outcome.success
    assert outcome.error == "timed out after 0.3 s"


async def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(
    executor: Executor, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    # Ignored signals stay ignored across exec: both sh and sleep ignore SIGTERM.
    command = f"shell:trap '' TERM; sleep 600 & echo $! > {pids}; echo $$ >> {pids}; wait"
    started = time.monotonic()
    outcome = await executor.run(TaskRun("t", 1, command, timeout_s=0.3), RecordingReporter())
    elapsed = time.monotonic() - started
    assert outcome.error == "timed out after 0.3 s"
    assert outcome.exit_code == -9
    assert 0.7 < elapsed < 5  # timeout + grace (0.5 s), then SIGKILL
    assert await all_gone(await wait_for_lines(pids, 2))


async def test_cancel_kills_the_task_and_its_children(executor: Executor, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    inner = f"sleep 600 & echo $! >> {pids}; sleep 600 & echo $! >> {pids}; echo $$ >> {pids}; wait"
    command = f"shell:sh -c '{inner}'"
    task = asyncio.ensure_future(executor.run(TaskRun("t", 4, command), RecordingReporter()))
    children = await wait_for_lines(pids, 3)
    assert not any(gone(pid) for pid in children)
    assert executor.running() == [("t", 4)]
    assert await executor.cancel("t", 4)
    outcome = await asyncio.wait_for(task, 10)
    assert not outcome.success and outcome.error == "cancelled"
    assert await all_gone(children), [p for p in children if not gone(p)]
    assert executor.running() == []
    assert not await executor.cancel("t", 4)


async def test_processes_left_behind_are_killed_when_the_task_ends(
    executor: Executor, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    outcome = await executor.run(
        TaskRun("t", 1, f"shell:sleep 600 & echo $! > {pids}; echo done"), RecordingReporter()
    )
    assert outcome.success and outcome.stdout_tail == "done\n"
    assert time.monotonic() - started < 3  # not held up by the orphan's open stdout
    [orphan] = await wait_for_lines(pids, 1)
    assert await all_gone([orphan])


async def test_memory_limit_exceeded_is_a_clear_error(executor: Executor) -> None:
    command = f"shell:{PY} -c 'x = bytearray(1024 * 1024 * 1024)'"
    outcome = await executor.run(TaskRun("t", 1, command, memory_limit_mb=200), RecordingReporter())
    assert not outcome.success
    assert outcome.error.startswith("memory limit 200 MB exceeded"), outcome.error
    assert "MemoryError" in outcome.stderr_tail


async def test_the_same_program_runs_without_the_limit(executor: Executor) -> None:
    command = f"shell:{PY} -c 'x = bytearray(300 * 1024 * 1024)'"
    outcome = await executor.run(
        TaskRun("t", 1, command, memory_limit_mb=2048), RecordingReporter()
    )
    assert outcome.success, outcome


async def test_cpu_time_limit(executor: Executor) -> None:
    command = f"shell:{PY} -c 'while True: pass'"
    outcome = await executor.run(
        TaskRun("t", 1, command, cpu_time_limit_s=1, timeout_s=20), RecordingReporter()
    )
    assert outcome.error == "killed: CPU time limit 1 s exceeded"


async def test_unknown_command_kind(executor: Executor) -> None:
    outcome = await executor.run(TaskRun("t", 1, "perl:print 1"), RecordingReporter())
    assert not outcome.success and outcome.exit_code == 2
    assert "expected shell:<command> or python:<module>:<function>" in outcome.error


async def test_the_same_attempt_twice_is_refused(executor: Executor) -> None:
    task = asyncio.ensure_future(
        executor.run(TaskRun("t", 1, "shell:sleep 5"), RecordingReporter())
    )
    await asyncio.sleep(0.05)
    with pytest.raises(ValueError, match="already running"):
        await executor.run(TaskRun("t", 1, "shell:true"), RecordingReporter())
    # Another attempt of the same task is a different run.
    assert (await executor.run(TaskRun("t", 2, "shell:true"), RecordingReporter())).success
    await executor.cancel("t", 1)
    assert (await task).error == "cancelled"


async def test_close_kills_running_tasks(tmp_path: Path) -> None:
    ex = Executor(python_pool_size=0, kill_grace_s=0.5)
    await ex.start()
    pids = tmp_path / "pids"
    task = asyncio.ensure_future(
        ex.run(TaskRun("t", 1, f"shell:echo $$ > {pids}; sleep 600"), RecordingReporter())
    )
    [pid] = await wait_for_lines(pids, 1)
    await ex.close()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.error == "cancelled: worker shutting down"
    assert await all_gone([pid])
    with pytest.raises(RuntimeError, match="closed"):
        await ex.run(TaskRun("t", 2, "shell:true"), RecordingReporter())


async def test_cancelling_run_itself_kills_the_process(executor: Executor, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    task = asyncio.ensure_future(
        executor.run(TaskRun("t", 1, f"shell:echo $$ > {pids}; sleep 600"), RecordingReporter())
    )
    [pid] = await wait_for_lines(pids, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await all_gone([pid])
    assert executor.running() == []


class FailingReporter(RecordingReporter):
    def log(self, task_id: str, attempt: int, stream: str, text: str) -> None:
        raise RuntimeError("connection bug")


async def test_a_failing_reporter_does_not_hang_or_fail_the_task(executor: Executor) -> None:
    command = f"shell:{PY} -c \"print('x' * 1000000)\""  # more than a pipe buffer
    outcome = await asyncio.wait_for(executor.run(TaskRun("t", 1, command), FailingReporter()), 20)
    assert outcome.success and outcome.stdout_tail.endswith("x\n")
