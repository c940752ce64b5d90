"""Input checks: Python-level types here, the cluster's own rules via state.validate."""

from __future__ import annotations

from typing import Any

import pytest

from agentflow.client.errors import InvalidArgumentError
from agentflow.client.models import OnFailure, Priority, TaskSpec, Workflow
from agentflow.client.validation import check_batch, check_spec, check_workflow, parse_priority


@pytest.mark.parametrize(
    ("value", "level"),
    [("high", Priority.HIGH), ("HIGH", Priority.HIGH), (1, Priority.HIGH), ("4", Priority.IDLE)],
)
def test_priority_forms(value: Any, level: Priority) -> None:
    assert parse_priority(value) is level
    assert parse_priority(Priority.LOW) is Priority.LOW


@pytest.mark.parametrize("value", ["urgent", 5, -1, True, None, 1.0])
def test_priority_errors(value: Any) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_priority(value, "tasks[2].priority")
    assert info.value.field == "tasks[2].priority"
    assert info.value.reason == (
        f"unknown level {value!r} (expected critical, high, normal, low, idle)"
    )


def test_check_spec_normalizes() -> None:
    spec = check_spec(
        TaskSpec(
            "shell:make",
            priority="high",  # type: ignore[arg-type]
            labels={"a": "b"},
            dependencies=["x", "y"],
            args={"n": 1},
            cpu=2,
        )
    )
    assert spec.priority is Priority.HIGH
    assert spec.dependencies == ("x", "y")
    assert spec.cpu == 2.0
    assert isinstance(spec.cpu, float)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"cpu": -1}, "cpu", "must be a number 0..4096 cores, got -1"),
        ({"cpu": "two"}, "cpu", "must be a number 0..4096 cores, got 'two'"),
        ({"memory_mb": 1.5}, "memory_mb", "must be a whole number 0..67108864, got 1.5"),
        ({"gpus": True}, "gpus", "must be a whole number 0..1024, got True"),
        ({"max_retries": -2}, "max_retries", "must be a whole number 0..100, got -2"),
        ({"timeout": "10m"}, "timeout", "must be a number 0..2592000 s, got '10m'"),
        ({"labels": ["a"]}, "labels", "must be a mapping of strings, got a list"),
        ({"env": {"A": 1}}, "env.A", "must be a string, got a number (1)"),
        ({"args": "x"}, "args", "must be a JSON array or object, got a string ('x')"),
        ({"args": {"a": {1, 2}}}, "args", "not JSON-serializable"),
        ({"dependencies": "build"}, "dependencies", "must be a list of task ids"),
        ({"dependencies": ["a", ""]}, "dependencies[1]", "must be a non-empty string"),
        ({"name": 3}, "name", "must be a string, got a number (3)"),
    ],
)
def test_spec_errors_name_the_field(fields: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_batch([TaskSpec("shell:true"), TaskSpec("shell:true", **fields)])
    assert info.value.field == f"tasks[1].{field}"
    assert message in info.value.reason


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("echo hi", "unknown command kind"),
        ("shell:   ", "empty shell command"),
        ("python:mod", "expected 'python:<module>:<function>'"),
        ("", "required"),
    ],
)
def test_commands_are_checked_by_the_cluster_rules(command: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_batch([TaskSpec(command)])
    assert info.value.field == "tasks[0].command"
    assert message in info.value.reason


def test_cluster_rules_use_sdk_field_names() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_batch([TaskSpec("shell:x", group="no spaces please")])
    assert info.value.field == "tasks[0].group"
    with pytest.raises(InvalidArgumentError) as info:
        check_batch([TaskSpec("shell:x", id="123")])
    assert "all-digit ids are reserved" in str(info.value)


def test_batch_needs_a_task_and_accepts_one_spec() -> None:
    with pytest.raises(InvalidArgumentError, match="tasks: at least one task"):
        check_batch([])
    assert len(check_batch(TaskSpec("shell:x"))) == 1  # type: ignore[arg-type]


def _wf(*tasks: TaskSpec, **kwargs: Any) -> Workflow:
    return Workflow(list(tasks), **kwargs)


def test_workflow_ok() -> None:
    wf = check_workflow(
        _wf(
            TaskSpec("shell:a", id="a"),
            TaskSpec("shell:b", id="b", dependencies=["a"]),
            on_failure="continue",
        )
    )
    assert wf.on_failure is OnFailure.CONTINUE
    assert isinstance(wf.tasks, tuple)


def test_workflow_cycle_is_named() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_workflow(
            _wf(
                TaskSpec("shell:a", id="a", dependencies=["c"]),
                TaskSpec("shell:b", id="b", dependencies=["a"]),
                TaskSpec("shell:c", id="c", dependencies=["b"]),
            )
        )
    assert info.value.reason == "dependency cycle: a -> c -> b -> a"
    assert info.value.field == "tasks[0].dependencies[0]"


@pytest.mark.parametrize(
    ("tasks", "field", "message"),
    [
        (
            [TaskSpec("shell:a", id="build"), TaskSpec("shell:b", id="t", dependencies=["biuld"])],
            "tasks[1].dependencies[0]",
            "unknown dependency 'biuld' (did you mean 'build'?)",
        ),
        (
            [TaskSpec("shell:a", id="a"), TaskSpec("shell:b", id="a")],
            "tasks[1].id",
            "duplicate task id 'a'",
        ),
        (
            [TaskSpec("shell:a", id="a", dependencies=["a"])],
            "tasks[0].dependencies[0]",
            "depends on itself",
        ),
        ([TaskSpec("shell:a")], "tasks[0].id", "required inside a workflow"),
        ([], "tasks", "a workflow needs at least one task"),
    ],
)
def test_workflow_graph_errors(tasks: list[TaskSpec], field: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_workflow(_wf(*tasks))
    assert info.value.field == field
    assert message in info.value.reason


def test_workflow_on_failure_error() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_workflow(_wf(TaskSpec("shell:a", id="a"), on_failure="sometimes"))
    assert info.value.field == "on_failure"
    assert "expected skip, continue" in info.value.reason
