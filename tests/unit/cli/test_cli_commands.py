"""The `agentflow` command against a FakeMaster: output, JSON, exit codes."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agentflow._proto import state_pb2 as pb
from agentflow.cli.main import cli
from agentflow.client.testing import FakeMaster

WORKFLOW = """\
workflow:
  id: rel
  name: Release
  tasks:
    - task_id: build
      desc: "shell:make"
    - task_id: test
      desc: "shell:make test"
      dependencies: [build]
"""


@pytest.fixture
def fake() -> Iterator[FakeMaster]:
    with FakeMaster() as master:
        yield master


def run(fake: FakeMaster, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--master", f"http://{fake.address}", *args], input=input)


def run_json(fake: FakeMaster, *args: str) -> Any:
    result = run(fake, "--output", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_add(fake: FakeMaster) -> None:
    result = run(
        fake,
        "add",
        "Build image",
        "--desc",
        "python:images.docker:build",  # --args is for python tasks only
        "--group",
        "docker",
        "--priority",
        "high",
        "--label",
        "arch=amd64",
        "--env",
        "A=1",
        "--timeout",
        "10m",
        "--max-retries",
        "2",
        "--args",
        '{"x": 1}',
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "submitted task 1: Build image\n"
    spec = fake.task("1").spec
    assert (spec.name, spec.group, spec.priority) == ("Build image", "docker", pb.PRIORITY_HIGH)
    assert dict(spec.labels) == {"arch": "amd64"} and dict(spec.env) == {"A": "1"}
    assert (spec.timeout_ms, spec.max_retries, spec.args_json) == (600_000, 2, '{"x":1}')
    data = run_json(fake, "add", "Two", "--desc", "shell:true", "--depends-on", "1")
    assert data == {"task_id": "2"}
    assert list(fake.task("2").spec.dependencies) == ["1"]


def test_bad_input_exits_2_with_one_line(fake: FakeMaster) -> None:
    result = run(fake, "add", "x", "--desc", "echo hi")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: tasks[0].command: unknown command kind in 'echo hi'")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    result = run(fake, "add", "x", "--desc", "shell:true", "--priority", "urgent")
    assert result.exit_code == 2
    assert "unknown level 'urgent'" in result.stderr
    assert fake.calls("SubmitTasks") == []


def test_submit_file(fake: FakeMaster, tmp_path: Path) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text("- desc: shell:a\n  name: A\n- desc: shell:b\n  priority: low\n")
    result = run(fake, "submit", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == "submitted 2 tasks\n   A -> 1\n   shell:b -> 2\n"
    result = run(fake, "--output", "json", "submit", "-", input='[{"desc": "shell:c"}]')
    assert json.loads(result.stdout) == {"task_ids": ["3"]}
    path.write_text("- desc: shell:a\n- desc: shell:b\n  priority: urgent\n")
    result = run(fake, "submit", str(path))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {path}:3: tasks[1].priority: unknown level 'urgent' "
        "(expected critical, high, normal, low, idle)\n"
    )


def test_list_and_show(fake: FakeMaster) -> None:
    run(fake, "add", "Build docker image", "--desc", "shell:a", "--group", "docker")
    run(fake, "add", "Run tests", "--desc", "shell:b", "--group", "docker")
    run(fake, "add", "Other", "--desc", "shell:c")
    fake.set_running("2", worker_id="worker-002")
    result = run(fake, "list", "--group", "docker")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 4  # one line per task under the header
    assert lines[:2] == [
        "2 tasks",
        "ID  NAME                STATE    PRIORITY  GROUP   WORKER      AGE  TOOK",
    ]
    assert lines[2].startswith("1   Build docker image  ready    normal    docker  -           ")
    assert lines[3].startswith("2   Run tests           running  normal    docker  worker-002  ")
    wide = run(fake, "list", "--group", "docker", "--wide").stdout.splitlines()
    assert wide[:4] == ["2 tasks", "", "⏸ [1] Build docker image", "   group: docker"]
    assert "▶ [2] Run tests" in wide
    assert "   worker: worker-002" in wide
    data = run_json(fake, "list", "--status", "running,ready", "-s", "pending")
    assert data["total"] == 3
    assert [t["state"] for t in data["tasks"]] == ["ready", "running", "ready"]
    assert run_json(fake, "list", "--limit", "1")["tasks"][0]["id"] == "1"
    assert run(fake, "list", "--limit", "1").stdout.startswith("1 of 3 tasks\n")
    shown = run(fake, "show", "2")
    assert shown.stdout.startswith("▶ [2] Run tests\n   command: shell:b\n")
    assert run_json(fake, "show", "2")["spec"]["name"] == "Run tests"
    missing = run(fake, "show", "nope")
    assert (missing.exit_code, missing.stderr) == (1, "error: no task or workflow 'nope'\n")


def test_run_and_show_workflow(fake: FakeMaster, tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    result = run(fake, "run", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "submitted workflow rel (2 tasks)\n   build -> rel/build\n   test -> rel/test\n"
    )
    shown = run(fake, "show", "rel")
    assert shown.stdout.startswith("🔄 [rel] Release\n   state: running\n")
    data = run_json(fake, "show", "rel")
    assert [t["id"] for t in data["tasks"]] == ["rel/build", "rel/test"]
    path.write_text(WORKFLOW.replace("[build]", "[biuld]"))
    bad = run(fake, "run", str(path))
    assert bad.exit_code == 2
    assert bad.stderr == (
        f"error: {path}:9: tasks[1].dependencies[0]: unknown dependency 'biuld' "
        "(did you mean 'build'?)\n"
    )


def test_run_wait(fake: FakeMaster, tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)

    def play() -> None:
        fake.finish("rel/build")
        fake.finish("rel/test")

    threading.Timer(0.3, play).start()
    result = run(fake, "run", str(path), "--wait", "--timeout", "10s")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("submitted workflow rel\n✅ [rel] Release\n")


def test_wait(fake: FakeMaster) -> None:
    run(fake, "add", "A", "--desc", "shell:a")
    run(fake, "add", "B", "--desc", "shell:b")
    threading.Timer(0.2, fake.finish, ("1",)).start()
    ok = run(fake, "wait", "1")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("✅ [1] A\n")
    threading.Timer(0.2, fake.finish, ("2", False, 3)).start()
    failed = run(fake, "--output", "json", "wait", "2")
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["result"]["exit_code"] == 3
    # With --output json the error is JSON too.
    assert json.loads(failed.stderr) == {"error": "task 2 finished failed", "field": None}
    run(fake, "add", "C", "--desc", "shell:c")
    late = run(fake, "wait", "3", "--timeout", "200ms")
    assert (late.exit_code, late.stderr) == (
        1,
        "error: wait for task 3: not finished after 200ms\n",
    )


def test_cancel_reprioritize_explain(fake: FakeMaster, tmp_path: Path) -> None:
    run(fake, "add", "A", "--desc", "shell:a")
    result = run(fake, "reprioritize", "1", "critical")
    assert (result.exit_code, result.stdout) == (0, "task 1: priority critical\n")
    assert run(fake, "reprioritize", "1", "urgent").exit_code == 2
    result = run(fake, "explain", "1")
    assert result.stdout == "task 1:\n   - no live worker in group 'default'\n"
    assert run_json(fake, "explain", "1")["reasons"] == ["no live worker in group 'default'"]
    assert run(fake, "cancel", "1").stdout == "cancelled 1 task: 1\n"
    assert run(fake, "cancel", "1").stdout == "nothing to cancel (already finished)\n"
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    run(fake, "run", str(path))
    data = run_json(fake, "cancel", "--workflow", "rel", "--reason", "stop")
    assert data == {"cancelled": ["rel/build", "rel/test"]}


def test_workers_and_cluster(fake: FakeMaster) -> None:
    assert run(fake, "workers").stdout == "no workers\n"
    assert run_json(fake, "workers", "--group", "gpu") == {"workers": []}
    status = run(fake, "cluster", "status")
    assert status.stdout.startswith(f"cluster: 1 member, leader fake ({fake.address}), term 1\n")
    assert run_json(fake, "cluster", "status")["role"] == "leader"


def test_master_from_env_and_unreachable(fake: FakeMaster) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["cluster", "status"], env={"MASTER_URL": fake.address})
    assert result.exit_code == 0, result.output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    result = runner.invoke(cli, ["--master", dead, "--deadline", "0.3", "list"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: list: no master could serve the call within 0.3s")
