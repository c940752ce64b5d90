"""Inputs that used to crash the SDK with a raw exception (ValueError, OverflowError,
RecursionError, UnicodeEncodeError) from protobuf or json: each is an
InvalidArgumentError naming the field, raised before anything is sent. The same values
the server refuses (agentflow.rules.limits) are refused here too, in the SDK's words."""

from __future__ import annotations

from typing import Any

import pytest

from agentflow.client import requests
from agentflow.client.errors import InvalidArgumentError
from agentflow.client.models import TaskSpec, Workflow
from agentflow.rules import limits

SURROGATE = b"\xff".decode("utf-8", "surrogateescape")  # what a shell's $'\xff' becomes


def submit_error(**fields: Any) -> InvalidArgumentError:
    command = fields.pop("command", "shell:true")
    with pytest.raises(InvalidArgumentError) as info:
        requests.submit_tasks([TaskSpec(command, **fields)], None)
    return info.value


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"max_retries": 99999999999}, "tasks[0].max_retries", "0..100"),
        ({"memory_mb": 10**20}, "tasks[0].memory_mb", f"0..{limits.MAX_MEMORY_MB}"),
        ({"gpus": 2**31 - 1}, "tasks[0].gpus", "0..1024"),
        ({"cpu": 1e308}, "tasks[0].cpu", "0..4096 cores"),
        ({"timeout": 1e308}, "tasks[0].timeout", "0..2592000 s"),
        ({"retry_backoff": 1e308}, "tasks[0].retry_backoff", "0..86400 s"),
        ({"timeout": 0.0001}, "tasks[0].timeout", "at least 1 ms"),
        ({"command": "python:m:f", "args": nested(5000)}, "tasks[0].args", "nested more than 64"),
        ({"name": "bad" + SURROGATE}, "tasks[0].name", "not valid UTF-8"),
        ({"command": "shell:echo " + SURROGATE}, "tasks[0].command", "not valid UTF-8"),
        ({"env": {"A": SURROGATE}}, "tasks[0].env['A']", "not valid UTF-8"),
        ({"env": {SURROGATE: "x"}}, "tasks[0].env['\\udcff']", "not valid UTF-8"),
        ({"labels": {"zone": SURROGATE}}, "tasks[0].labels['zone']", "not valid UTF-8"),
        ({"id": "a" + SURROGATE}, "tasks[0].id", "not valid UTF-8"),
        ({"cwd": SURROGATE}, "tasks[0].cwd", "not valid UTF-8"),
        ({"dependencies": [SURROGATE]}, "tasks[0].dependencies[0]", "not valid UTF-8"),
        # Accepted by the types, refused by the cluster's own rules, named in SDK terms.
        ({"command": "shell:echo a\0b"}, "tasks[0].command", "NUL"),
        ({"env": {"A": "x\0"}}, "tasks[0].env['A']", "NUL"),
        ({"cwd": "/tmp\0"}, "tasks[0].cwd", "NUL"),
        ({"args": [1]}, "tasks[0].args", "only python tasks take args"),
        ({"name": "   "}, "tasks[0].name", "blank"),
        ({"timeout": 31 * 86400}, "tasks[0].timeout", "0..2592000 s"),
        (
            {"command": "shell:" + "x" * limits.MAX_COMMAND_BYTES},
            "tasks[0].command",
            f"(at most {limits.MAX_COMMAND_BYTES})",
        ),
    ],
)
def test_a_bad_value_is_an_invalid_argument_naming_the_field(
    fields: dict[str, Any], field: str, message: str
) -> None:
    err = submit_error(**fields)
    assert err.field == field
    assert message in err.reason


def test_a_workflow_checks_the_same_and_its_own_fields() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        requests.submit_workflow(Workflow([TaskSpec("shell:a", id="a")], id=SURROGATE), None)
    assert info.value.field == "id"
    big = Workflow([TaskSpec("shell:a", id=f"t{i}") for i in range(limits.MAX_WORKFLOW_TASKS + 1)])
    with pytest.raises(InvalidArgumentError) as info:
        requests.submit_workflow(big, None)
    assert str(info.value) == (
        f"tasks: {limits.MAX_WORKFLOW_TASKS + 1} tasks in one workflow "
        f"(at most {limits.MAX_WORKFLOW_TASKS})"
    )


@pytest.mark.parametrize(
    ("request_id", "message"),
    [(SURROGATE, "not valid UTF-8"), ("x" * 129, "at most 128"), ("a b", "no spaces")],
)
def test_a_request_id_the_cluster_would_refuse_is_refused(request_id: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        requests.submit_tasks([TaskSpec("shell:true")], request_id)
    assert info.value.field == "request_id"
    assert message in info.value.reason


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"group": "x y"}, "group"),
        ({"group": SURROGATE}, "group"),
        ({"workflow_id": "a/b"}, "workflow_id"),
        ({"states": ["done"]}, "states[0]"),
    ],
)
def test_a_list_filter_that_can_match_nothing_is_an_error(kw: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"states": [], "group": "", "workflow_id": "", "page_size": 10}
    args.update(kw)
    with pytest.raises(InvalidArgumentError) as info:
        requests.list_tasks(**args)
    assert info.value.field == field


def test_ids_elsewhere_are_checked_for_utf8_too() -> None:
    for call in (
        lambda: requests.get_task(SURROGATE),
        lambda: requests.explain("a" + SURROGATE),
        lambda: requests.cancel(["a"], "", SURROGATE, None),
        lambda: requests.list_workers(SURROGATE),
    ):
        with pytest.raises(InvalidArgumentError, match="not valid UTF-8"):
            call()
