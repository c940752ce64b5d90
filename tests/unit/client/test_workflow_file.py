"""Workflow/task files: every error has the file, the line and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agentflow.client.errors import WorkflowFileError
from agentflow.client.models import OnFailure, Priority
from agentflow.client.workflow_file import load_tasks, load_workflow, parse_tasks, parse_workflow

GOOD = """\
workflow:
  id: release
  name: Release 1.2
  on_failure: continue
  tasks:
    - task_id: build
      name: Build
      desc: "shell:make build"
      priority: high
      group: linux
      cpu: 2
      memory_mb: 1024
      gpus: 1
      labels: {arch: amd64, cuda: 12}
      env:
        DEBUG: true
        PORT: 8080
      cwd: /src
      max_retries: 3
      retry_backoff: 500ms
      timeout: 10m
    - task_id: test
      command: "python:tests.run:main"
      args: {suite: unit, shards: [1, 2]}
      dependencies: [build]
"""


def test_good_file_loads() -> None:
    wf = parse_workflow(GOOD, "wf.yaml")
    assert (wf.id, wf.name, wf.on_failure) == ("release", "Release 1.2", OnFailure.CONTINUE)
    build, test = wf.tasks
    assert build.id == "build"
    assert build.command == "shell:make build"
    assert build.priority is Priority.HIGH
    assert (build.cpu, build.memory_mb, build.gpus) == (2.0, 1024, 1)
    assert build.labels == {"arch": "amd64", "cuda": "12"}
    assert build.env == {"DEBUG": "true", "PORT": "8080"}
    assert (build.max_retries, build.retry_backoff, build.timeout) == (3, 0.5, 600.0)
    assert test.args == {"suite": "unit", "shards": [1, 2]}
    assert test.dependencies == ("build",)


def _error(text: str, name: str = "wf.yaml") -> WorkflowFileError:
    with pytest.raises(WorkflowFileError) as info:
        parse_workflow(textwrap.dedent(text), name)
    return info.value


def test_priority_error_points_at_its_line() -> None:
    error = _error(
        """\
        workflow:
          tasks:
            - task_id: a
              command: shell:a
            - task_id: b
              command: shell:b
            - task_id: c
              command: shell:c
              priority: urgent
        """
    )
    assert str(error) == (
        "wf.yaml:9: tasks[2].priority: unknown level 'urgent' "
        "(expected critical, high, normal, low, idle)"
    )
    assert (error.line, error.field) == (9, "tasks[2].priority")


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (
            "workflow:\n  tasks:\n    - task_id: a\n      command: shell:a\n      priorty: 1\n",
            5,
            "tasks[0]",
            "unknown key 'priorty' (did you mean 'priority'?)",
        ),
        (
            "workflow:\n  on_failur: skip\n  tasks: []\n",
            2,
            "",
            "unknown key 'on_failur' (did you mean 'on_failure'?)",
        ),
        ("workflw:\n  tasks: []\n", 1, "", "expected a mapping with a 'workflow:' key"),
        (
            "workflow: {tasks: []}\nextra: 1\n",
            2,
            "",
            "unknown key 'extra'",
        ),
        ("workflow:\n  id: x\n", 1, "tasks", "missing: a workflow needs a list of tasks"),
        ("workflow:\n  tasks: {a: 1}\n", 2, "tasks", "expected a list of tasks, got a mapping"),
        ("workflow:\n  tasks: []\n", 2, "tasks", "a workflow needs at least one task"),
        (
            "workflow:\n  tasks:\n    - shell:a\n",
            3,
            "tasks[0]",
            "expected a mapping of task fields, got 'shell:a'",
        ),
        (
            "workflow:\n  tasks:\n    - task_id: a\n      group: linux\n",
            3,
            "tasks[0]",
            "missing 'command' (or 'desc')",
        ),
        (
            "workflow:\n  tasks:\n    - command: shell:a\n",
            3,
            "tasks[0]",
            "missing 'task_id'",
        ),
        (
            "workflow:\n  tasks:\n    - task_id: a\n      command: shell:a\n      desc: shell:b\n",
            5,
            "tasks[0]",
            "give 'command' or 'desc', not both",
        ),
        (
            "workflow:\n  tasks:\n    - task_id: a\n      desc: make\n",
            4,
            "tasks[0].desc",
            "unknown command kind in 'make'",
        ),
        (
            "workflow:\n  tasks:\n    - task_id: 7\n      command: shell:a\n",
            3,
            "tasks[0].task_id",
            "all-digit ids are reserved",
        ),
        (
            "workflow:\n  tasks:\n    - task_id: a\n      command: shell:a\n      timeout: 5 min\n",
            5,
            "tasks[0].timeout",
            "invalid duration '5 min'",
        ),
        (
            "workflow:\n  tasks:\n    - task_id: a\n      command: shell:a\n      cpu: lots\n",
            5,
            "tasks[0].cpu",
            "must be a number 0..4096 cores, got 'lots'",
        ),
        (
            "workflow:\n  tasks:\n    - task_id: a\n      command: shell:a\n"
            "      env:\n        A: x\n        B: [1]\n",
            7,
            "tasks[0].env.B",
            "must be a string, got a list",
        ),
        (
            "workflow:\n  tasks:\n    - task_id: a\n      command: shell:a\n"
            "      dependencies:\n        - a\n",
            6,
            "tasks[0].dependencies[0]",
            "task 'a' depends on itself",
        ),
        (
            "workflow:\n  on_failure: maybe\n  tasks:\n    - task_id: a\n      command: shell:a\n",
            2,
            "on_failure",
            "unknown value 'maybe' (expected skip, continue)",
        ),
        (
            "workflow:\n  tasks:\n    - task_id: a\n      command: shell:a\n    - task_id: a\n"
            "      command: shell:b\n",
            5,
            "tasks[1].task_id",
            "duplicate task id 'a'",
        ),
        ("workflow:\n  id: a\n  id: b\n", 3, "", "duplicate key 'id' (first on line 2)"),
        ("workflow:\n  tasks: [\n", 3, "", "invalid YAML"),
    ],
)
def test_errors(text: str, line: int, field: str, message: str) -> None:
    error = _error(text)
    assert (error.line, error.field) == (line, field), str(error)
    assert message in error.reason, str(error)
    assert str(error).startswith(f"wf.yaml:{line}: ")


def test_cycle_is_named_at_the_first_edge() -> None:
    error = _error(
        """\
        workflow:
          tasks:
            - task_id: a
              command: shell:a
              dependencies: [c]
            - task_id: b
              command: shell:b
              dependencies: [a]
            - task_id: c
              command: shell:c
              dependencies:
                - b
        """
    )
    assert str(error) == "wf.yaml:5: tasks[0].dependencies[0]: dependency cycle: a -> c -> b -> a"


def test_unknown_dependency_suggests() -> None:
    error = _error(
        """\
        workflow:
          tasks:
            - task_id: build
              command: shell:a
            - task_id: test
              command: shell:b
              dependencies:
                - biuld
        """
    )
    assert str(error) == (
        "wf.yaml:8: tasks[1].dependencies[0]: unknown dependency 'biuld' (did you mean 'build'?)"
    )


def test_files(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(GOOD)
    assert load_workflow(path).id == "release"
    with pytest.raises(WorkflowFileError) as info:
        load_workflow(tmp_path / "missing.yaml")
    assert (
        str(info.value)
        == f"{tmp_path / 'missing.yaml'}: cannot read the file: No such file or directory"
    )


def test_task_files() -> None:
    specs = parse_tasks("- desc: shell:a\n- command: shell:b\n  task_id: b\n  priority: low\n")
    assert [s.command for s in specs] == ["shell:a", "shell:b"]
    assert specs[1].priority is Priority.LOW
    assert len(parse_tasks("tasks:\n  - desc: shell:a\n")) == 1
    json_text = '[{"desc": "shell:a", "priority": "high"}, {"desc": "shell:b", "gpus": 1}]'
    assert [s.gpus for s in parse_tasks(json_text)] == [0, 1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- desc: shell:a\n- desc: shell:b\n  prio: 1\n", "t.yaml:3: tasks[1]: unknown key 'prio'"),
        ("- desc: shell:a\n- desc: 'b'\n", "t.yaml:2: tasks[1].desc: unknown command kind"),
        ("jobs: []\n", "t.yaml:1: unknown key 'jobs'"),
        ("[]\n", "t.yaml:1: tasks: at least one task is required"),
        ("'hello'\n", "t.yaml:1: tasks: expected a list of tasks, got 'hello'"),
    ],
)
def test_task_file_errors(text: str, expected: str) -> None:
    with pytest.raises(WorkflowFileError) as info:
        parse_tasks(text, "t.yaml")
    assert str(info.value).startswith(expected), str(info.value)


def test_load_tasks(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_text('[\n  {"desc": "shell:a"},\n  {"desc": "shell:b", "cpu": -1}\n]\n')
    with pytest.raises(WorkflowFileError) as info:
        load_tasks(path)
    assert str(info.value).startswith(f"{path}:3: tasks[1].cpu: must be a number 0..4096 cores")
