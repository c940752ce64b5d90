"""The bounds of agentflow.rules.limits, enforced by the validation the master runs
before proposing and the state machine runs when it applies: every value that could
never be placed or run, and every request past a size cap, is refused naming the field
(and the cap), and a refused command changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentflow._proto import state_pb2 as pb
from agentflow.rules import limits as lim
from agentflow.rules.errors import INVALID_ARGUMENT
from agentflow.rules.validate import (
    check_request_id,
    validate_list_filter,
    validate_submit_tasks,
    validate_task_spec,
    validate_workflow_spec,
)
from agentflow.state import SchedulerState, StateError, encode


def spec(**kw: Any) -> pb.TaskSpec:
    kw.setdefault("command", "shell:true")
    return pb.TaskSpec(**kw)


def error(fn: Any, *args: Any) -> StateError:
    with pytest.raises(StateError) as info:
        fn(*args)
    assert info.value.code == INVALID_ARGUMENT
    return info.value


def task_error(**kw: Any) -> StateError:
    return error(validate_task_spec, spec(**kw), "tasks[0]")


# --- values that can never be placed or run --------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cpu", 1e308, "must be 0..4096 cores, got 1e+308"),
        ("cpu", 4096.5, "must be 0..4096 cores, got 4096.5"),
        ("gpus", 2**31 - 1, "must be 0..1024, got 2147483647"),
        ("memory_mb", 2**63 - 1, f"must be 0..{lim.MAX_MEMORY_MB} MB, got {2**63 - 1}"),
        ("timeout_ms", 2**63 - 1, f"must be 0..{lim.MAX_TIMEOUT_MS} ms, got {2**63 - 1}"),
        ("retry_backoff_ms", 10**15, f"must be 0..{lim.MAX_RETRY_BACKOFF_MS} ms, got {10**15}"),
        ("max_retries", 2**31 - 1, "must be 0..100, got 2147483647"),
    ],
)
def test_resources_and_times_beyond_any_machine_are_refused(
    field: str, value: float, message: str
) -> None:
    err = task_error(**{field: value})
    assert (err.field, err.message) == (f"tasks[0].{field}", message)


def test_the_bounds_themselves_are_accepted() -> None:
    validate_task_spec(
        spec(
            cpu=lim.MAX_CPU,
            gpus=lim.MAX_GPUS,
            memory_mb=lim.MAX_MEMORY_MB,
            timeout_ms=lim.MAX_TIMEOUT_MS,
            retry_backoff_ms=lim.MAX_RETRY_BACKOFF_MS,
        ),
        "t",
    )


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"command": "shell:echo a\0b"}, "tasks[0].command"),
        ({"cwd": "/tmp\0/x"}, "tasks[0].cwd"),
        ({"env": {"A": "x\0y"}}, "tasks[0].env['A']"),
        ({"env": {"A\0B": "x"}}, "tasks[0].env['A\\x00B']"),
    ],
)
def test_nul_bytes_the_os_cannot_take_are_refused(kw: dict[str, Any], field: str) -> None:
    err = task_error(**kw)
    assert err.field == field
    assert "NUL" in err.message


def test_args_on_a_shell_task_are_refused() -> None:
    err = task_error(command="shell:echo hi", args_json="[1]")
    assert (err.field, err.message) == (
        "tasks[0].args_json",
        "only python tasks take args (give a shell task its values in the command)",
    )
    validate_task_spec(spec(command="python:m:f", args_json="[1]"), "t")


@pytest.mark.parametrize(("name", "message"), [(" ", "blank"), ("a\nb", "control character")])
def test_a_blank_or_multi_line_name_is_refused(name: str, message: str) -> None:
    err = task_error(name=name)
    assert err.field == "tasks[0].name"
    assert message in err.message
    validate_task_spec(spec(name=""), "t")  # empty = no name


def test_args_nested_past_the_depth_cap_are_refused() -> None:
    ok = "[" * lim.MAX_ARGS_DEPTH + "]" * lim.MAX_ARGS_DEPTH
    validate_task_spec(spec(command="python:m:f", args_json=ok), "t")
    deep = "[" * (lim.MAX_ARGS_DEPTH + 1) + "]" * (lim.MAX_ARGS_DEPTH + 1)
    err = task_error(command="python:m:f", args_json=deep)
    assert (err.field, err.message) == (
        "tasks[0].args_json",
        "JSON nested more than 64 levels deep",
    )
    # Far past the interpreter's recursion limit: still this error, not a crash.
    err = task_error(command="python:m:f", args_json="[" * 5000 + "]" * 5000)
    assert err.field == "tasks[0].args_json"


# --- size caps of one value -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "field", "message"),
    [
        (
            {"command": "shell:" + "x" * lim.MAX_COMMAND_BYTES},
            "tasks[0].command",
            f"{lim.MAX_COMMAND_BYTES + 6} bytes (at most {lim.MAX_COMMAND_BYTES})",
        ),
        (
            {"command": "shell:" + "é" * (lim.MAX_COMMAND_BYTES // 2)},
            "tasks[0].command",
            f"{lim.MAX_COMMAND_BYTES + 6} bytes (at most {lim.MAX_COMMAND_BYTES})",
        ),
        (
            {"command": "python:m:f", "args_json": json.dumps(["x" * lim.MAX_ARGS_BYTES])},
            "tasks[0].args_json",
            f"{lim.MAX_ARGS_BYTES + 4} bytes (at most {lim.MAX_ARGS_BYTES})",
        ),
        (
            {"cwd": "/" * (lim.MAX_CWD_BYTES + 1)},
            "tasks[0].cwd",
            f"{lim.MAX_CWD_BYTES + 1} bytes (at most {lim.MAX_CWD_BYTES})",
        ),
        (
            {"env": {f"V{i}": "" for i in range(lim.MAX_ENV_VARS + 1)}},
            "tasks[0].env",
            f"{lim.MAX_ENV_VARS + 1} variables (at most {lim.MAX_ENV_VARS})",
        ),
        (
            {"env": {"A": "x" * lim.MAX_ENV_BYTES}},
            "tasks[0].env",
            f"{lim.MAX_ENV_BYTES + 2} bytes of KEY=VALUE (at most {lim.MAX_ENV_BYTES})",
        ),
        (
            {"labels": {f"k{i}": "v" for i in range(lim.MAX_LABELS + 1)}},
            "tasks[0].labels",
            f"{lim.MAX_LABELS + 1} labels (at most {lim.MAX_LABELS})",
        ),
        (
            {"labels": {"k": "v" * (lim.MAX_LABEL_BYTES + 1)}},
            "tasks[0].labels['k']",
            f"{lim.MAX_LABEL_BYTES + 1} bytes (at most {lim.MAX_LABEL_BYTES})",
        ),
        (
            {"dependencies": ["a"] * (lim.MAX_TASK_DEPENDENCIES + 1)},
            "tasks[0].dependencies",
            f"{lim.MAX_TASK_DEPENDENCIES + 1} dependencies (at most 10000 per task)",
        ),
    ],
)
def test_values_past_their_cap_are_refused_naming_the_cap(
    kw: dict[str, Any], field: str, message: str
) -> None:
    err = task_error(**kw)
    assert (err.field, err.message) == (field, message)


def test_an_error_never_echoes_a_huge_value() -> None:
    err = task_error(command="bash:" + "x" * 1_000_000)
    assert len(err.message) < 300


# --- size caps of one request -------------------------------------------------------------


def test_a_batch_past_the_byte_cap_is_refused_before_its_specs_are_read() -> None:
    # Each spec alone is fine; together they pass the request cap.
    big = spec(command="shell:" + "x" * 100_000)
    count = lim.MAX_REQUEST_BYTES // 100_000 + 1
    err = error(validate_submit_tasks, [big] * count)
    assert err.field == "tasks"
    assert err.message.endswith(
        f"bytes of task specs in one batch (at most {lim.MAX_REQUEST_BYTES})"
    )


def test_a_workflow_past_the_dependency_cap_is_refused() -> None:
    width = 1_000
    roots = [spec(id=f"r{i}") for i in range(width)]
    fan = [
        spec(id=f"f{j}", dependencies=[f"r{i}" for i in range(width)])
        for j in range(lim.MAX_REQUEST_DEPENDENCIES // width + 1)
    ]
    err = error(validate_workflow_spec, pb.WorkflowSpec(tasks=roots + fan))
    assert err.field == "workflow.tasks"
    assert err.message == (
        f"{(len(fan)) * width} dependencies in one workflow "
        f"(at most {lim.MAX_REQUEST_DEPENDENCIES})"
    )


def test_the_state_machine_refuses_a_command_past_a_cap_and_changes_nothing() -> None:
    sm = SchedulerState()
    ok = pb.Command(now_ms=1, submit_tasks=pb.SubmitTasks(tasks=[spec(id="a")]))
    assert not sm.apply(1, encode(ok)).HasField("error")
    before = pb.StateSnapshot.FromString(sm.snapshot())
    cases = [
        pb.SubmitWorkflow(
            workflow=pb.WorkflowSpec(
                tasks=[spec(id=f"t{i}") for i in range(lim.MAX_WORKFLOW_TASKS + 1)]
            )
        ),
        pb.SubmitWorkflow(workflow=pb.WorkflowSpec(tasks=[spec(id="x", command="shell:a\0b")])),
    ]
    for index, kind in enumerate(cases, start=2):
        cmd = pb.Command(now_ms=2, submit_workflow=kind)
        result = sm.apply(index, encode(cmd))
        assert result.error.code == INVALID_ARGUMENT, result
        assert result.error.field.startswith("workflow.tasks")
    batch = pb.Command(
        now_ms=2, submit_tasks=pb.SubmitTasks(tasks=[spec()] * (lim.MAX_BATCH_TASKS + 1))
    )
    result = sm.apply(4, encode(batch))
    assert (result.error.field, result.error.message) == (
        "tasks",
        f"{lim.MAX_BATCH_TASKS + 1} tasks in one batch (at most {lim.MAX_BATCH_TASKS})",
    )
    after = pb.StateSnapshot.FromString(sm.snapshot())
    assert after.tasks == before.tasks and after.workflows == before.workflows
    assert after.next_number == before.next_number


# --- request ids and list filters ---------------------------------------------------------


@pytest.mark.parametrize("value", ["x" * 129, "a b", "a\nb"])
def test_request_id_form(value: str) -> None:
    err = error(check_request_id, value)
    assert err.field == "request_id"
    check_request_id("")
    check_request_id("0f" * 64)


@pytest.mark.parametrize(
    ("states", "group", "workflow_id", "field"),
    [
        ([99], "", "", "states[0]"),
        ([pb.TASK_STATE_READY, 0], "", "", "states[1]"),
        ([], "x y", "", "group"),
        ([], "", "a/b", "workflow_id"),
    ],
)
def test_list_filters_that_can_match_nothing_by_form_are_errors(
    states: list[int], group: str, workflow_id: str, field: str
) -> None:
    err = error(validate_list_filter, states, group, workflow_id)
    assert err.field == field
    validate_list_filter([pb.TASK_STATE_READY], "linux", "wf-1")
