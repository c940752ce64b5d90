"""What the `agentflow` command prints, run as a real process against a real master
and worker on 127.0.0.1: retry notices on a terminal, one-line and JSON errors, the
list table, task outcomes in their state's own words, return values and durations."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentflow.common.processes import ProcessGroup, free_ports
from agentflow.master.testing import MasterCluster

AGENTFLOW = Path(sys.executable).parent / "agentflow"
COMMAND = [str(AGENTFLOW)] if AGENTFLOW.exists() else [sys.executable, "-m", "agentflow.cli"]

JOBS = """
def answer(n):
    return {"n": n, "doubled": 2 * n}
"""


@dataclass
class Env:
    master: str
    group: str  # the worker's group


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("cli-output")
    jobs = root / "jobs"
    jobs.mkdir()
    (jobs / "cli_output_jobs.py").write_text(JOBS)
    cluster = MasterCluster(root / "masters", size=1)
    workers = ProcessGroup(root / "workers")
    group = f"cli-{uuid.uuid4().hex[:6]}"
    cluster.start("m1")
    try:
        asyncio.run(cluster.leader(30.0))
        cluster.start_worker(
            workers, "w-cli", group, "--pythonpath", str(jobs), "--python-pool-size", "1"
        )
        yield Env(cluster.address("m1"), group)
    finally:
        workers.stop_all()
        cluster.stop_all()


def run(
    master: str, *args: str, env: dict[str, str] | None = None, stdout: Any = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")}
    environ.update(MASTER_URL=master, **(env or {}))
    return subprocess.run(
        [*COMMAND, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
        timeout=90,
        check=False,
    )


def ok(master: str, *args: str) -> str:
    result = run(master, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def as_json(master: str, *args: str) -> Any:
    return json.loads(ok(master, "-o", "json", *args))


def wait_for(master: str, task_id: str, *states: str) -> dict[str, Any]:
    give_up = time.monotonic() + 60
    while True:
        task = as_json(master, "show", task_id)
        if task["state"] in states:
            return task
        assert time.monotonic() < give_up, f"task {task_id} still {task['state']}"
        time.sleep(0.1)


# ----- item: no master answers -----


def test_a_terminal_hears_at_once_that_no_master_answers() -> None:
    """stderr a real terminal (a pty): the retry line comes while the CLI is still
    retrying, long before its 60 s deadline."""
    (dead,) = free_ports(1)
    controller, terminal = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")}
    proc = subprocess.Popen(
        [*COMMAND, "--master", f"127.0.0.1:{dead}", "--deadline", "60", "list"],
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env=environ,
    )
    os.close(terminal)
    try:
        seen = b""
        give_up = time.monotonic() + 30
        while b"\n" not in seen and time.monotonic() < give_up:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if ready:
                seen += os.read(controller, 4096)
        still_running = proc.poll() is None
    finally:
        proc.kill()  # our own child, by its handle
        proc.wait()
        os.close(controller)
    line = seen.decode().splitlines()[0]
    assert line == (
        f"agentflow: list: no master answered at 127.0.0.1:{dead} (connection refused); "
        "retrying for up to 60 s"
    )
    assert still_running


def test_retry_lines_only_for_people(env: Env) -> None:
    (dead,) = free_ports(1)
    both = f"127.0.0.1:{dead},{env.master}"
    told = run(both, "list", "-n", "1", env={"AGENTFLOW_FORCE_TTY": "1"})
    assert told.returncode == 0, told.stderr
    assert told.stderr == (
        f"agentflow: list: no master answered at 127.0.0.1:{dead}, {env.master} "
        "(connection refused); retrying for up to 30 s\n"
    )
    quiet = run(both, "-o", "json", "list", "-n", "1", env={"AGENTFLOW_FORCE_TTY": "1"})
    assert (quiet.returncode, quiet.stderr) == (0, "")
    assert "tasks" in json.loads(quiet.stdout)
    piped = run(both, "list", "-n", "1")  # stderr is a pipe: scripts get no chatter
    assert (piped.returncode, piped.stderr) == (0, "")


def test_errors_are_one_line_or_json(env: Env) -> None:
    bad = run(env.master, "add", "x", "--desc", "shell:true", "-p", "urgent")
    assert (bad.returncode, bad.stderr) == (
        2,
        "agentflow: error: --priority: unknown level 'urgent' (expected critical, high, "
        "normal, low, idle) (see 'agentflow add --help')\n",
    )
    unknown = run(env.master, "--nope", "list")
    assert (unknown.returncode, unknown.stderr) == (
        2,
        "agentflow: error: no such option '--nope' (did you mean '--token'?) "
        "(see 'agentflow --help')\n",
    )
    missing = run(env.master, "add", "x")
    assert missing.stderr == (
        "agentflow: error: missing option '--desc' / '--command' (see 'agentflow add --help')\n"
    )
    as_json_error = run(env.master, "-o", "json", "add", "x", "--desc", "shell:true", "-p", "9")
    assert as_json_error.returncode == 2
    assert json.loads(as_json_error.stderr) == {
        "error": "--priority: unknown level '9' (expected critical, high, normal, low, idle)",
        "field": "--priority",
    }
    dep = run(env.master, "-o", "json", "add", "x", "--desc", "shell:true", "--depends-on", "zz")
    assert dep.returncode == 2
    assert json.loads(dep.stderr) == {
        "error": "tasks[0].dependencies[0]: unknown dependency 'zz'",
        "field": "tasks[0].dependencies[0]",
    }
    not_text = subprocess.run(
        [*COMMAND, "--master", env.master, "submit", "-"],
        input=b"- desc: shell:true\n  name: \xff\n",
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert (not_text.returncode, not_text.stderr) == (
        2,
        b"error: <stdin>: not UTF-8 text (invalid start byte)\n",
    )
    gone = run(env.master, "show", "no-such", env={"AGENTFLOW_OUTPUT": "json"})
    assert (gone.returncode, json.loads(gone.stderr)) == (
        1,
        {"error": "no task or workflow 'no-such'", "field": None},
    )
    assert gone.stdout == ""


def test_unexpected_failure_is_one_line_unless_debugging(env: Env) -> None:
    with open("/dev/full", "w") as full:  # every write to stdout fails: ENOSPC
        result = run(env.master, "list", stdout=full)
    assert result.returncode == 1
    assert result.stderr == (
        "agentflow: error: unexpected OSError: [Errno 28] No space left on device "
        "(set AGENTFLOW_DEBUG=1 for the traceback)\n"
    )
    with open("/dev/full", "w") as full:
        debug = run(env.master, "list", stdout=full, env={"AGENTFLOW_DEBUG": "1"})
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):\n")
    assert debug.stderr.endswith(
        "agentflow: error: unexpected OSError: [Errno 28] No space left on device\n"
    )


# ----- item: list, show -----


def test_list_is_a_table_and_wide_the_long_form(env: Env) -> None:
    group = f"table-{uuid.uuid4().hex[:6]}"
    first = as_json(env.master, "add", "Build docker image", "--desc", "shell:make", "-g", group)
    second = as_json(
        env.master, "add", "Run tests", "--desc", "shell:make test", "-g", group, "-p", "high"
    )
    lines = ok(env.master, "list", "--group", group).splitlines()
    assert len(lines) == 4  # count, header, one line per task
    assert lines[0] == "2 tasks"
    assert lines[1].split() == ["ID", "NAME", "STATE", "PRIORITY", "GROUP", "WORKER", "AGE", "TOOK"]
    row = re.compile(r"(\S+)\s+(.+?)\s{2,}ready\s+(\w+)\s+(\S+)\s+-\s+\d+ s$")
    found = [row.match(line) for line in lines[2:]]
    assert all(found), lines
    assert [m.groups() for m in found if m] == [
        (first["task_id"], "Build docker image", "normal", group),
        (second["task_id"], "Run tests", "high", group),
    ]
    wide = ok(env.master, "list", "--group", group, "--wide")
    assert wide.startswith(
        f"2 tasks\n\n⏸ [{first['task_id']}] Build docker image\n   group: {group}\n"
        "   state: ready\n"
    )
    assert "priority: high" in wide


def test_cancelled_and_skipped_tasks_say_why_without_an_exit_code(env: Env) -> None:
    parked = as_json(env.master, "add", "parked", "--desc", "shell:true", "-g", "nobody")
    ok(env.master, "cancel", parked["task_id"], "--reason", "wrong branch")
    shown = ok(env.master, "show", parked["task_id"])
    assert "   state: cancelled\n" in shown
    assert "   cancel reason: wrong branch" in shown
    assert "   cancelled by: a client at 127.0.0.1\n" in shown
    assert "exit code" not in shown and "error:" not in shown
    plain = as_json(env.master, "add", "plain", "--desc", "shell:true", "-g", "nobody")
    ok(env.master, "cancel", plain["task_id"])
    assert "   cancel reason: none given" in ok(env.master, "show", plain["task_id"])

    failing = as_json(env.master, "add", "fails", "--desc", "shell:exit 3", "-g", env.group)
    after = as_json(
        env.master,
        "add", "after", "--desc", "shell:true", "-g", env.group,
        "--depends-on", failing["task_id"],
    )  # fmt: skip
    wait_for(env.master, failing["task_id"], "failed")
    failed = ok(env.master, "show", failing["task_id"])
    assert "   exit code: 3\n" in failed and "   error: " in failed
    skipped = ok(env.master, "show", after["task_id"])
    assert "   state: skipped\n" in skipped
    assert f"   skipped because: dependency {failing['task_id']} failed" in skipped
    assert "exit code" not in skipped


def test_show_has_the_return_value_and_lists_have_short_durations(env: Env) -> None:
    python = as_json(
        env.master,
        "add", "double", "--desc", "python:cli_output_jobs:answer", "--args", "[21]",
        "-g", env.group,
    )  # fmt: skip
    shell = as_json(env.master, "add", "quick", "--desc", "shell:true", "-g", env.group)
    ok(env.master, "wait", python["task_id"])
    ok(env.master, "wait", shell["task_id"])
    shown = ok(env.master, "show", python["task_id"])
    assert '   returned: {"n": 21, "doubled": 42}' in shown
    assert "exit code" not in shown  # a python task returns; it has no exit status
    assert re.search(r"\n   took: (\d+ ms|\d\.\d s)\n", shown), shown
    quick = ok(env.master, "show", shell["task_id"])
    assert "   exit code: 0\n" in quick and "error" not in quick
    lines = ok(env.master, "list", "--group", env.group, "--status", "succeeded").splitlines()
    row = next(line for line in lines if line.startswith(f"{shell['task_id']} "))
    assert re.search(r"\d+ s  (\d+ ms|\d\.\d s)$", row), row


def test_add_help_says_how_python_tasks_are_found(env: Env) -> None:
    text = " ".join(ok(env.master, "add", "--help").split())
    assert "python:<module>:<function> <module> is imported on the worker" in text
    assert "agentflow-worker --pythonpath DIR" in text
    assert "AGENTFLOW_WORKER_PYTHONPATH" in text
