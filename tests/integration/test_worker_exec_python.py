"""The executor running python tasks on its warm pool: values, errors, context,
limits, cancellation, and replacement of dead pool processes."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentflow.common.processes import all_gone, descendants, gone
from agentflow.worker.executor import Executor, Outcome, TaskRun
from agentflow.worker.python_pool import PoolProcess
from agentflow.worker.testing_tasks import RecordingReporter

TASKS = "python:agentflow.worker.testing_tasks"


@pytest.fixture
async def executor() -> AsyncIterator[Executor]:
    ex = Executor(python_pool_size=2, log_batch_seconds=0.05, kill_grace_s=0.5)
    before = descendants()
    await ex.start()
    try:
        yield ex
    finally:
        await ex.close()
    # Everything the test started is gone (or a zombie about to be reaped).
    assert await all_gone(list(descendants() - before))


async def call(
    ex: Executor,
    function: str,
    args: Any = None,
    reporter: RecordingReporter | None = None,
    **fields: Any,
) -> Outcome:
    args_json = "" if args is None else json.dumps(args)
    run = TaskRun(
        fields.pop("task_id", "t"),
        fields.pop("attempt", 1),
        f"{TASKS}:{function}",
        args_json=args_json,
        **fields,
    )
    return await ex.run(run, reporter or RecordingReporter())


def value(outcome: Outcome) -> Any:
    assert outcome.success, outcome
    return json.loads(outcome.value_json)


async def idle_pool(ex: Executor, size: int = 2, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while ex.pool.idle_count < size:
        assert time.monotonic() < deadline, "the pool was not refilled"
        await asyncio.sleep(0.02)


async def test_positional_keyword_and_no_args(executor: Executor) -> None:
    assert value(await call(executor, "add", [2, 3])) == 5
    assert value(await call(executor, "describe", {"a": 1, "b": [2]})) == {
        "args": [],
        "kwargs": {"a": 1, "b": [2]},
    }
    assert value(await call(executor, "describe", [1, "x"])) == {"args": [1, "x"], "kwargs": {}}
    assert value(await call(executor, "noop")) is None


async def test_arguments_bigger_than_a_socket_buffer(executor: Executor) -> None:
    # The job goes to the pool process in one sendmsg with its pipes; a frame bigger
    # than the socket buffer is finished by a second send.
    big = "x" * (4 * 2**20)
    assert value(await call(executor, "describe", [big])) == {"args": [big], "kwargs": {}}
    assert value(await call(executor, "add", [1, 1])) == 2  # the same process, in step


async def test_async_function(executor: Executor) -> None:
    assert value(await call(executor, "async_add", [1, 2])) == 3


async def test_exception_gives_the_exception_line(executor: Executor) -> None:
    outcome = await call(executor, "fail", ["bad input\nsecond line"])
    assert not outcome.success and outcome.exit_code == 1
    assert outcome.error == "ValueError: bad input"
    assert "Traceback" in outcome.stderr_tail and "ValueError: bad input" in outcome.stderr_tail


async def test_missing_module_and_function(executor: Executor) -> None:
    outcome = await executor.run(TaskRun("t", 1, "python:no_such_module_x:f"), RecordingReporter())
    # The error says where the worker looked (its sys.path) and how to extend it.
    assert outcome.error.startswith(
        "ModuleNotFoundError: No module named 'no_such_module_x' on the worker's sys.path ("
    ), outcome.error
    assert sys.executable.rsplit("/bin/", 1)[0] in outcome.error or "site-packages" in outcome.error
    assert "--pythonpath DIR" in outcome.error
    outcome = await call(executor, "no_such_function")
    assert outcome.error.startswith("AttributeError: module 'agentflow.worker.testing_tasks'")


@pytest.mark.parametrize(
    ("command", "args_json", "message"),
    [
        ("python:mod", "", "expected python:<module>:<function>"),
        ("python:mod:f:g", "", "expected python:<module>:<function>"),
        ("python:1mod:f", "", "expected python:<module>:<function>"),
        (f"{TASKS}:add", "5", "args_json must be a JSON array or object, not int"),
        (f"{TASKS}:add", "[1,", "args_json is not valid JSON"),
    ],
)
async def test_bad_requests_never_start(
    executor: Executor, command: str, args_json: str, message: str
) -> None:
    outcome = await executor.run(TaskRun("t", 1, command, args_json=args_json), RecordingReporter())
    assert not outcome.success and outcome.exit_code == 2
    assert message in outcome.error


async def test_unserializable_return_value(executor: Executor) -> None:
    outcome = await call(executor, "unserializable")
    assert outcome.error.startswith("TypeError: return value is not JSON-serializable")


async def test_progress_logs_and_output_reach_the_reporter(executor: Executor) -> None:
    reporter = RecordingReporter()
    outcome = await call(executor, "chatty", [3], reporter, task_id="job", attempt=2)
    assert value(outcome) == 3
    assert reporter.progress_calls == [
        ("job", 2, 1 / 3, "step 1"),
        ("job", 2, 2 / 3, "step 2"),
        ("job", 2, 1.0, "step 3"),
    ]
    stdout = reporter.text("stdout")
    assert stdout == "out 0\nout 1\nout 2\ncontext log line\n"  # logs keep their place
    assert reporter.text("stderr") == "err 0\nerr 1\nerr 2\n"
    assert {(c[0], c[1]) for c in reporter.log_calls} == {("job", 2)}
    assert "out 2" in outcome.stdout_tail and outcome.stderr_tail.endswith("err 2\n")


async def test_context_env_cwd_and_gpus(executor: Executor, tmp_path: Path) -> None:
    seen = value(
        await call(
            executor,
            "whoami",
            task_id="abc",
            attempt=7,
            env={"AGENTFLOW_TEST_EXTRA": "1"},
            cwd=str(tmp_path),
            gpu_indices=(1, 3),
        )
    )
    assert seen["task_id"] == "abc" and seen["attempt"] == 7
    assert seen["env_task_id"] == "abc" and seen["env_attempt"] == "7"
    assert seen["cuda"] == "1,3" and seen["extra"] == "1"
    assert seen["cwd"] == str(tmp_path)
    # A warm process is put back as it was: nothing of the last job remains.
    after = value(await call(executor, "whoami", task_id="next"))
    assert after["extra"] is None and after["cuda"] is None and after["cwd"] != str(tmp_path)
    # A GPU job's process is not reused (CUDA fixes its devices at first use).
    await idle_pool(executor)
    pids = {value(await call(executor, "whoami"))["pid"] for _ in range(4)}
    assert seen["pid"] not in pids


async def test_pool_is_warm_and_reused(executor: Executor) -> None:
    pids = [value(await call(executor, "whoami"))["pid"] for _ in range(4)]
    assert len(set(pids)) <= 2  # the warm processes serve everything

    await call(executor, "noop")  # the module is imported in both processes now
    await call(executor, "noop")
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        assert (await call(executor, "noop")).success
        timings.append(time.perf_counter() - started)
    # Sequential tasks do not churn processes: the same ones served all of them.
    assert {value(await call(executor, "whoami"))["pid"] for _ in range(4)} == set(pids)
    started = time.perf_counter()
    bare_proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    assert await bare_proc.wait() == 0
    bare = time.perf_counter() - started
    started = time.perf_counter()
    child = await PoolProcess.spawn(sys.executable)
    spawn = time.perf_counter() - started
    await child.kill(0)
    warm = sorted(timings)[len(timings) // 2]
    # Reported, not asserted: timing depends on the machine.
    print(
        f"\nno-op python task through the executor: warm pool {warm * 1000:.2f} ms (median"
        f" of 20); a fresh `python -c pass` {bare * 1000:.1f} ms; starting a pool process"
        f" {spawn * 1000:.1f} ms"
    )


async def test_pool_grows_past_its_size_under_concurrency(executor: Executor) -> None:
    outcomes = await asyncio.gather(
        *(call(executor, "sleep", [0.3], task_id=f"t{i}") for i in range(4))
    )
    assert [value(o) for o in outcomes] == [0.3] * 4


async def pool_pids(executor: Executor) -> set[int]:
    """The pids of both idle processes: two calls at once take one each."""
    outcomes = await asyncio.gather(*(call(executor, "whoami", task_id=f"w{i}") for i in range(2)))
    return {value(o)["pid"] for o in outcomes}


async def test_sequential_tasks_keep_to_the_warmest_process(executor: Executor) -> None:
    await idle_pool(executor)
    pids = {value(await call(executor, "whoami"))["pid"] for _ in range(6)}
    assert len(pids) == 1  # the most recently used goes first; the other is a spare
    assert len(await pool_pids(executor)) == 2


async def test_crashed_pool_process_is_replaced(executor: Executor) -> None:
    await idle_pool(executor)
    before = await pool_pids(executor)
    outcome = await call(executor, "crash", [3])
    assert not outcome.success and outcome.exit_code == 3
    assert outcome.error == "python process exited with code 3 before returning"
    await idle_pool(executor)
    after = await pool_pids(executor)
    assert len(before & after) == 1  # one of the two was replaced
    assert len(after) == 2


async def test_process_with_a_leftover_thread_is_not_reused(executor: Executor) -> None:
    pid = value(await call(executor, "leave_thread"))
    assert await all_gone([pid])
    await idle_pool(executor)
    assert pid not in {value(await call(executor, "whoami"))["pid"] for _ in range(4)}


async def test_memory_limit_exceeded(executor: Executor) -> None:
    outcome = await call(executor, "allocate", [1024], memory_limit_mb=200)
    assert not outcome.success
    assert outcome.error == "memory limit 200 MB exceeded (MemoryError)"
    assert "MemoryError" in outcome.stderr_tail
    # Within the limit, the same function works (on a replaced, clean process).
    assert value(await call(executor, "allocate", [50], memory_limit_mb=1024)) == 50


async def test_cpu_time_limit(executor: Executor) -> None:
    outcome = await call(executor, "spin", [10], cpu_time_limit_s=1, timeout_s=20)
    assert outcome.error == "killed: CPU time limit 1 s exceeded"
    assert value(await call(executor, "add", [1, 1])) == 2


async def test_timeout_kills_and_replaces_the_process(executor: Executor) -> None:
    pid = value(await call(executor, "whoami"))["pid"]
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(call(executor, "sleep", [30], timeout_s=0.3, task_id=f"s{i}") for i in range(2))
    )
    assert time.monotonic() - started < 5
    assert [o.error for o in outcomes] == ["timed out after 0.3 s"] * 2
    assert await all_gone([pid])
    await idle_pool(executor)
    assert value(await call(executor, "add", [2, 2])) == 4


async def test_cancel_kills_the_pool_process_and_its_children(
    executor: Executor, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    task = asyncio.ensure_future(call(executor, "spawn_sleepers", [str(pid_file)], task_id="c"))
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().endswith("\n")):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 3 and not any(gone(p) for p in pids)
    assert executor.running() == [("c", 1)]
    assert await executor.cancel("c", 1)
    outcome = await asyncio.wait_for(task, 10)
    assert not outcome.success and outcome.error == "cancelled"
    assert await all_gone(pids)
    await idle_pool(executor)
    assert value(await call(executor, "add", [1, 2])) == 3


async def test_pool_process_that_cannot_start(tmp_path: Path) -> None:
    ex = Executor(python_pool_size=0, python=str(tmp_path / "no-python"))
    await ex.start()
    try:
        outcome = await call(ex, "noop")
    finally:
        await ex.close()
    assert not outcome.success and outcome.exit_code == 127
    assert outcome.error.startswith("could not start a python pool process:")


async def test_close_kills_the_pool(tmp_path: Path) -> None:
    ex = Executor(python_pool_size=2, kill_grace_s=0.5)
    await ex.start()
    pids = {value(await call(ex, "whoami"))["pid"] for _ in range(2)}
    running = asyncio.ensure_future(call(ex, "sleep", [600], task_id="long"))
    await asyncio.sleep(0.2)
    await ex.close()
    assert (await running).error == "cancelled: worker shutting down"
    assert await all_gone(list(pids))


async def test_pythonpath_makes_a_module_importable(tmp_path: Path) -> None:
    (tmp_path / "my_tasks_mod.py").write_text("def hello(name):\n    return 'hi ' + name\n")
    executor = Executor(python_pool_size=1, pythonpath=(str(tmp_path),))
    await executor.start()
    try:
        outcome = await executor.run(
            TaskRun("t", 1, "python:my_tasks_mod:hello", args_json='["x"]'), RecordingReporter()
        )
    finally:
        await executor.close()
    assert outcome.success, outcome.error
    assert outcome.value_json == '"hi x"'
