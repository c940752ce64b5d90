"""Validation shared by the master and the state machine (agentflow.rules.validate)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from agentflow._proto import state_pb2
from agentflow.rules.errors import INVALID_ARGUMENT, NOT_FOUND
from agentflow.rules.validate import (
    validate_submit_tasks,
    validate_task_spec,
    validate_worker_info,
    validate_workflow_spec,
)
from agentflow.state import StateError


def spec(**kw: Any) -> state_pb2.TaskSpec:
    kw.setdefault("command", "shell:true")
    return state_pb2.TaskSpec(**kw)


def task_error(s: state_pb2.TaskSpec, field: str = "tasks[2]") -> StateError:
    with pytest.raises(StateError) as info:
        validate_task_spec(s, field)
    assert info.value.code == INVALID_ARGUMENT
    return info.value


def workflow_error(**kw: Any) -> StateError:
    with pytest.raises(StateError) as info:
        validate_workflow_spec(state_pb2.WorkflowSpec(**kw))
    assert info.value.code == INVALID_ARGUMENT
    return info.value


# --- StateError -----------------------------------------------------------------------


def test_state_error_str_and_proto_round_trip() -> None:
    err = StateError(NOT_FOUND, "tasks[3].dependencies[0]", "unknown dependency 'x'")
    assert str(err) == "tasks[3].dependencies[0]: unknown dependency 'x'"
    proto = err.to_proto()
    assert proto == state_pb2.CommandError(
        code=NOT_FOUND, field="tasks[3].dependencies[0]", message="unknown dependency 'x'"
    )
    back = StateError.from_proto(proto)
    assert (back.code, back.field, back.message) == (err.code, err.field, err.message)
    assert "NOT_FOUND" in repr(err)
    assert str(StateError(NOT_FOUND, "", "gone")) == "gone"


# --- task specs -----------------------------------------------------------------------


def test_a_minimal_spec_is_valid() -> None:
    validate_task_spec(spec(), "tasks[0]")
    validate_task_spec(spec(command="python:pkg.mod:run", args_json="[1, 2]"), "tasks[0]")
    validate_task_spec(
        spec(command="python:m:f", args_json='{"a": 1}', id="build:x86_64.v-1_2"), "tasks[0]"
    )


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("", "required"),
        ("shell:", "empty shell command"),
        ("shell:   ", "empty shell command"),
        ("bash:ls", "unknown command kind"),
        ("ls -l", "unknown command kind"),
        ("python:mod", "expected 'python:<module>:<function>'"),
        ("python::run", "expected 'python:<module>:<function>'"),
        ("python:pkg..mod:run", "invalid module name 'pkg..mod'"),
        ("python:pkg.class:run", "invalid module name"),
        ("python:pkg.mod:", "invalid function name ''"),
        ("python:pkg.mod:1run", "invalid function name '1run'"),
        ("python:a:b:c", "invalid module name 'a:b'"),
    ],
)
def test_command_must_be_shell_or_python(command: str, message: str) -> None:
    err = task_error(spec(command=command))
    assert err.field == "tasks[2].command"
    assert message in err.message


@pytest.mark.parametrize(
    ("args_json", "message"),
    [("{", "not valid JSON"), ("42", "not int"), ('"s"', "not str"), ("null", "NoneType")],
)
def test_args_json_is_empty_or_an_array_or_object(args_json: str, message: str) -> None:
    err = task_error(spec(command="python:m:f", args_json=args_json))
    assert err.field == "tasks[2].args_json"
    assert message in err.message


def test_args_json_nested_too_deeply_is_an_error_not_a_crash() -> None:
    err = task_error(spec(command="python:m:f", args_json="[" * 100_000 + "]" * 100_000))
    assert err.field == "tasks[2].args_json"


@pytest.mark.parametrize("bad_id", ["-a", "a b", "a/b", "\u00e4", "x" * 129, "_a", ".a"])
def test_task_id_pattern(bad_id: str) -> None:
    err = task_error(spec(id=bad_id))
    assert err.field == "tasks[2].id"
    assert "invalid id" in err.message


def test_task_id_may_be_128_characters_but_not_all_digits() -> None:
    validate_task_spec(spec(id="x" * 128), "t")
    validate_task_spec(spec(id="1a"), "t")
    err = task_error(spec(id="123"))
    assert err.message == "invalid id '123': all-digit ids are reserved"


@pytest.mark.parametrize("group", ["-gpu", "gpu pool", "a:b", "g" * 65])
def test_group_pattern(group: str) -> None:
    err = task_error(spec(group=group))
    assert err.field == "tasks[2].group"
    validate_task_spec(spec(group="gpu.a100-x_1"), "t")


@pytest.mark.parametrize("cpu", [math.nan, math.inf, -math.inf, -0.5])
def test_cpu_is_finite_and_not_negative(cpu: float) -> None:
    assert task_error(spec(cpu=cpu)).field == "tasks[2].cpu"


@pytest.mark.parametrize(
    ("name", "bound"),
    [
        ("memory_mb", "0..67108864 MB"),
        ("gpus", "0..1024"),
        ("retry_backoff_ms", "0..86400000 ms"),
        ("timeout_ms", "0..2592000000 ms"),
    ],
)
def test_resources_and_times_are_not_negative(name: str, bound: str) -> None:
    err = task_error(spec(**{name: -1}))
    assert (err.field, err.message) == (f"tasks[2].{name}", f"must be {bound}, got -1")


@pytest.mark.parametrize("retries", [-1, 101])
def test_max_retries_range(retries: int) -> None:
    err = task_error(spec(max_retries=retries))
    assert (err.field, err.message) == ("tasks[2].max_retries", f"must be 0..100, got {retries}")
    validate_task_spec(spec(max_retries=100), "t")


def test_priority_message_lists_the_levels() -> None:
    err = task_error(spec(priority=7))  # type: ignore[arg-type]
    assert (
        str(err)
        == "tasks[2].priority: unknown level 7 (expected 0..4: CRITICAL, HIGH, NORMAL, LOW, IDLE)"
    )
    validate_task_spec(spec(priority=state_pb2.PRIORITY_CRITICAL), "t")


def test_label_and_env_keys() -> None:
    assert task_error(spec(labels={"": "x"})).field == "tasks[2].labels"
    assert task_error(spec(env={"": "x"})).field == "tasks[2].env"
    err = task_error(spec(env={"A=B": "x"}))
    assert err.field == "tasks[2].env['A=B']"
    validate_task_spec(spec(env={"A": ""}, labels={"zone": ""}), "t")


def test_name_length() -> None:
    validate_task_spec(spec(name="n" * 256), "t")
    assert task_error(spec(name="n" * 257)).field == "tasks[2].name"


def test_dependencies_are_non_empty() -> None:
    err = task_error(spec(dependencies=["a", ""]))
    assert (err.field, err.message) == ("tasks[2].dependencies[1]", "empty dependency id")


# --- batches --------------------------------------------------------------------------


def test_batch_size_and_duplicate_ids() -> None:
    with pytest.raises(StateError, match=r"^tasks: at least one task"):
        validate_submit_tasks([])
    with pytest.raises(StateError, match=r"^tasks: 10001 tasks in one batch \(at most 10000\)$"):
        validate_submit_tasks([spec()] * 10_001)
    validate_submit_tasks([spec()] * 10_000)
    with pytest.raises(StateError) as info:
        validate_submit_tasks([spec(id="a"), spec(), spec(id="a")])
    assert str(info.value) == "tasks[2].id: duplicate task id 'a' (also tasks[0].id)"
    with pytest.raises(StateError, match=r"^tasks\[1\]\.command: required"):
        validate_submit_tasks([spec(), spec(command="")])


# --- workflows ------------------------------------------------------------------------


def test_valid_workflow() -> None:
    validate_workflow_spec(
        state_pb2.WorkflowSpec(
            id="nightly",
            on_failure=state_pb2.ON_FAILURE_CONTINUE,
            tasks=[spec(id="b", dependencies=["a"]), spec(id="a")],
        )
    )


def test_workflow_id_follows_the_task_id_rule() -> None:
    assert workflow_error(id="a/b", tasks=[spec(id="a")]).field == "workflow.id"
    err = workflow_error(id="42", tasks=[spec(id="a")])
    assert err.message == "invalid workflow id '42': all-digit ids are reserved"


def test_workflow_task_count() -> None:
    assert str(workflow_error()) == "workflow.tasks: a workflow needs at least one task"
    err = workflow_error(tasks=[spec(id="a")] * 10_001)
    assert err.field == "workflow.tasks"
    assert err.message == "10001 tasks in one workflow (at most 10000)"


def test_every_workflow_task_needs_an_id() -> None:
    err = workflow_error(tasks=[spec(id="a"), spec()])
    assert str(err) == "workflow.tasks[1].id: required inside a workflow"


def test_workflow_task_fields_are_prefixed() -> None:
    err = workflow_error(tasks=[spec(id="a"), spec(id="b", priority=9)])
    assert err.field == "workflow.tasks[1].priority"


def test_unknown_on_failure() -> None:
    err = workflow_error(tasks=[spec(id="a")], on_failure=5)
    assert err.field == "workflow.on_failure"
    assert err.message == "unknown value 5 (expected SKIP=0, CONTINUE=1)"


def test_workflow_graph_errors_name_the_field() -> None:
    err = workflow_error(tasks=[spec(id="a"), spec(id="a")])
    assert str(err) == "workflow.tasks[1].id: duplicate task id 'a' (also workflow.tasks[0].id)"
    err = workflow_error(tasks=[spec(id="a"), spec(id="b", dependencies=["a", "zz"])])
    assert str(err) == "workflow.tasks[1].dependencies[1]: unknown dependency 'zz'"
    err = workflow_error(tasks=[spec(id="a", dependencies=["a"])])
    assert str(err) == "workflow.tasks[0].dependencies[0]: task 'a' depends on itself"


def test_cycle_points_at_the_first_edge_of_the_loop() -> None:
    err = workflow_error(
        tasks=[
            spec(id="x"),
            spec(id="a", dependencies=["x", "b"]),
            spec(id="b", dependencies=["a"]),
        ]
    )
    assert str(err) == "workflow.tasks[1].dependencies[1]: dependency cycle: a -> b -> a"


# --- workers --------------------------------------------------------------------------


def test_worker_info() -> None:
    validate_worker_info(state_pb2.WorkerInfo(id="w1", groups=["default"]))
    with pytest.raises(StateError, match=r"^info\.id: required$"):
        validate_worker_info(state_pb2.WorkerInfo(groups=["default"]))
    with pytest.raises(StateError, match=r"^info\.groups: a worker serves at least one group$"):
        validate_worker_info(state_pb2.WorkerInfo(id="w1"))
    with pytest.raises(StateError, match=r"^info\.groups\[1\]: invalid group ' x'$"):
        validate_worker_info(state_pb2.WorkerInfo(id="w1", groups=["a", " x"]))
    with pytest.raises(StateError, match=r"^info\.cpu_cores: must be a finite number"):
        validate_worker_info(state_pb2.WorkerInfo(id="w1", groups=["a"], cpu_cores=math.nan))
    with pytest.raises(StateError, match=r"^info\.capacity: must be >= 0"):
        validate_worker_info(state_pb2.WorkerInfo(id="w1", groups=["a"], capacity=-1))
