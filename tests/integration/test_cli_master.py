"""The `agentflow` command (the installed console script) against a real
`agentflow-master --mode leader` process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from agentflow.master.testing import MasterCluster

AGENTFLOW = Path(sys.executable).parent / "agentflow"


def agentflow(master: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(AGENTFLOW)] if AGENTFLOW.exists() else [sys.executable, "-m", "agentflow.cli"]
    env = dict(os.environ, MASTER_URL=master if "," in master else f"http://{master}")
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def ok(master: str, *args: str) -> str:
    result = agentflow(master, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def as_json(master: str, *args: str) -> Any:
    return json.loads(ok(master, "--output", "json", *args))


def test_add_list_show(master: str) -> None:
    group = f"docker-{uuid.uuid4().hex[:6]}"
    out = ok(
        master, "add", "Build docker image", "--desc", "shell:docker build .", "--group", group
    )
    assert out.startswith("submitted task ")
    first = out.split()[2].rstrip(":")
    second = as_json(
        master, "add", "Run tests", "--desc", "shell:make test", "-g", group, "-p", "high"
    )["task_id"]
    listing = ok(master, "list", "--group", group).splitlines()
    assert listing[0] == "2 tasks" and len(listing) == 4  # a header, then a line per task
    assert listing[2].startswith(first) and "Build docker image" in listing[2]
    assert re.search(rf"^{second}\s+Run tests\s+ready\s+high\s+{group}\s+-\s", listing[3])
    wide = ok(master, "list", "--group", group, "--wide")
    assert wide.startswith("2 tasks\n\n")
    assert f"⏸ [{first}] Build docker image\n   group: {group}\n   state: ready\n" in wide
    assert f"[{second}] Run tests" in wide and "priority: high" in wide
    data = as_json(master, "list", "--group", group, "--status", "ready")
    assert data["total"] == 2 and [t["id"] for t in data["tasks"]] == [first, second]
    shown = ok(master, "show", second)
    assert shown.startswith(f"⏸ [{second}] Run tests\n   command: shell:make test\n")
    assert as_json(master, "show", first)["spec"]["command"] == "shell:docker build ."


def test_errors_and_exit_codes(master: str, tmp_path: Path) -> None:
    bad = agentflow(master, "add", "x", "--desc", "make")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: tasks[0].command: unknown command kind in 'make'")
    assert "Traceback" not in bad.stderr
    missing = agentflow(master, "show", "no-such-thing")
    assert (missing.returncode, missing.stderr) == (
        1,
        "error: no task or workflow 'no-such-thing'\n",
    )
    dep = agentflow(master, "add", "x", "--desc", "shell:true", "--depends-on", "nope")
    assert dep.returncode == 2
    assert dep.stderr == "error: tasks[0].dependencies[0]: unknown dependency 'nope'\n"
    path = tmp_path / "wf.yaml"
    path.write_text("workflow:\n  tasks:\n    - task_id: a\n      desc: shell:a\n      prio: 1\n")
    result = agentflow(master, "run", str(path))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: {path}:5: tasks[0]: unknown key 'prio' (did you mean 'priority'?)\n"
    )
    unreachable = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentflow.cli",
            "--master",
            "127.0.0.1:1",
            "--deadline",
            "0.5",
            "list",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error: list: no master could serve the call")


def test_workflow_run_wait_cancel(master: str, tmp_path: Path) -> None:
    workflow_id = f"rel-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"workflow:\n  id: {workflow_id}\n  name: Release\n  tasks:\n"
        "    - task_id: build\n      desc: shell:make\n"
        "    - task_id: test\n      desc: shell:make test\n      dependencies: [build]\n"
    )
    out = ok(master, "run", str(path))
    assert out.startswith(f"submitted workflow {workflow_id} (2 tasks)\n")
    shown = ok(master, "show", workflow_id)
    assert shown.startswith(f"🔄 [{workflow_id}] Release\n   state: running\n")
    assert "tasks: 2 (1 pending, 1 ready)" in shown
    timed_out = agentflow(master, "wait", workflow_id, "--timeout", "300ms")
    assert timed_out.returncode == 1
    assert timed_out.stderr == (
        f"error: wait for workflow {workflow_id}: not finished after 300ms\n"
    )
    cancelled = as_json(master, "cancel", "--workflow", workflow_id)["cancelled"]
    assert sorted(cancelled) == sorted([f"{workflow_id}/build", f"{workflow_id}/test"])
    waited = agentflow(master, "--output", "json", "wait", workflow_id)
    assert waited.returncode == 1
    assert json.loads(waited.stdout)["state"] == "cancelled"
    assert json.loads(waited.stderr) == {
        "error": f"workflow {workflow_id} finished cancelled",
        "field": None,
    }


def test_reprioritize_explain_workers_cluster(master: str) -> None:
    task_id = as_json(master, "add", "Idle job", "--desc", "shell:true", "-g", "nobody")["task_id"]
    assert ok(master, "reprioritize", task_id, "critical") == f"task {task_id}: priority critical\n"
    assert as_json(master, "show", task_id)["priority"] == "critical"
    explained = ok(master, "explain", task_id)
    assert explained.startswith(f"task {task_id}:\n   - ")
    assert ok(master, "cancel", task_id) == f"cancelled 1 task: {task_id}\n"
    again = agentflow(master, "reprioritize", task_id, "low")
    assert again.returncode == 1 and again.stderr.startswith("error: ")
    assert ok(master, "workers") == "no workers\n"
    assert as_json(master, "workers") == {"workers": []}
    status = ok(master, "cluster", "status")
    assert status.startswith(f"cluster: 1 member, leader m1 ({master}), term ")
    assert as_json(master, "cluster", "status")["leader_id"] == "m1"


def test_three_masters_big_workflow_cycle_explain_and_leader_kill(tmp_path: Path) -> None:
    """The issue's acceptance run, through the installed commands only."""
    cluster = MasterCluster(tmp_path / "masters", size=3)
    try:
        asyncio.run(cluster.start_all())
        masters = cluster.url()
        big = tmp_path / "big.yaml"
        lines = ["workflow:", "  id: big", "  tasks:", "    - {task_id: start, desc: 'shell:true'}"]
        lines += [
            f"    - {{task_id: t{i}, desc: 'shell:echo {i}', dependencies: [start]}}"
            for i in range(9_998)
        ]
        lines.append("    - task_id: end")
        lines.append("      desc: 'shell:true'")
        lines.append("      dependencies: [" + ", ".join(f"t{i}" for i in range(9_998)) + "]")
        big.write_text("\n".join(lines) + "\n")
        assert ok(masters, "run", str(big)).startswith("submitted workflow big (10000 tasks)")

        cyclic = tmp_path / "cyclic.yaml"
        cyclic.write_text(
            "workflow:\n  id: loop\n  tasks:\n"
            "    - {task_id: a, desc: 'shell:true', dependencies: [b]}\n"
            "    - {task_id: b, desc: 'shell:true', dependencies: [a]}\n"
        )
        refused = agentflow(masters, "run", str(cyclic))
        assert refused.returncode == 2 and "a -> b -> a" in refused.stderr

        gpu = as_json(masters, "add", "train", "--desc", "shell:python train.py", "-g", "gpu")
        explained = ok(masters, "explain", gpu["task_id"])
        assert "no live worker in group 'gpu'" in explained

        leader = asyncio.run(cluster.leader())
        cluster.kill(leader)
        after = as_json(masters, "add", "after the kill", "--desc", "shell:true")["task_id"]
        listing = as_json(masters, "list", "--status", "ready")
        ids = {t["id"] for t in listing["tasks"]}
        assert {gpu["task_id"], after, "big/start"} <= ids
        status = as_json(masters, "cluster", "status")
        assert status["leader_id"] not in ("", leader)
    finally:
        cluster.stop_all()
