"""Hostile input against a real `agentflow-master` process: raw gRPC with hand-built
bytes (what no SDK would send), the SDK, and the `agentflow` CLI. Every bad request is
refused naming the field, and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import state_pb2 as pb
from agentflow.client import Client, FailedPreconditionError, RetryPolicy
from agentflow.rules import limits

SERVICE = "/agentflow.v1.SchedulerService/"
AGENTFLOW = Path(sys.executable).parent / "agentflow"


@pytest.fixture(scope="module")
def channel(master: str) -> Iterator[grpc.Channel]:
    options = [("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(master, options=options) as ch:
        yield ch


def raw(channel: grpc.Channel, method: str, data: bytes) -> grpc.RpcError:
    """Send `data` as is (no serializer) and return the error it must raise."""
    call = channel.unary_unary(SERVICE + method)
    with pytest.raises(grpc.RpcError) as info:
        call(data, timeout=30)
    return info.value


def total(channel: grpc.Channel) -> int:
    call = channel.unary_unary(
        SERVICE + "ListTasks",
        request_serializer=api.ListTasksRequest.SerializeToString,
        response_deserializer=api.ListTasksResponse.FromString,
    )
    response: api.ListTasksResponse = call(api.ListTasksRequest(page_size=1), timeout=30)
    return response.total


def corrupt(message: Any, marker: bytes, replacement: bytes) -> bytes:
    data: bytes = message.SerializeToString()
    assert data.count(marker) == 1
    return data.replace(marker, replacement)


def spec(**kw: Any) -> pb.TaskSpec:
    kw.setdefault("command", "shell:true")
    return pb.TaskSpec(**kw)


# --- invalid UTF-8 on the wire --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "message", "marker", "field"),
    [
        (
            "SubmitTasks",
            api.SubmitTasksRequest(tasks=[spec(), spec(command="shell:echo MARK")]),
            b"MARK",
            "tasks[1].command",
        ),
        (
            "SubmitTasks",
            api.SubmitTasksRequest(tasks=[spec(name="MARK")]),
            b"MARK",
            "tasks[0].name",
        ),
        (
            "SubmitTasks",
            api.SubmitTasksRequest(tasks=[spec(env={"HOME": "MARK"})]),
            b"MARK",
            "tasks[0].env['HOME']",
        ),
        (
            "SubmitWorkflow",
            api.SubmitWorkflowRequest(workflow=pb.WorkflowSpec(tasks=[spec(id="MARK")])),
            b"MARK",
            "workflow.tasks[0].id",
        ),
        (
            "SubmitTasks",
            api.SubmitTasksRequest(request_id="MARK", tasks=[spec()]),
            b"MARK",
            "request_id",
        ),
        ("GetTask", api.GetTaskRequest(task_id="MARK"), b"MARK", "task_id"),
        ("ListTasks", api.ListTasksRequest(group="MARK"), b"MARK", "group"),
    ],
)
def test_invalid_utf8_is_invalid_argument_naming_the_field(
    channel: grpc.Channel, method: str, message: Any, marker: bytes, field: str
) -> None:
    before = total(channel)
    err = raw(channel, method, corrupt(message, marker, b"\xff\xfe\xfd\xfc"))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert err.details() == f"{field}: not valid UTF-8"
    assert total(channel) == before


def test_a_stream_request_that_does_not_decode_is_invalid_argument(channel: grpc.Channel) -> None:
    data = corrupt(api.WatchTasksRequest(workflow_id="MARK"), b"MARK", b"\xff\xff\xff\xff")
    call = channel.unary_stream(SERVICE + "WatchTasks")
    with pytest.raises(grpc.RpcError) as info:
        list(call(data, timeout=30))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "workflow_id: not valid UTF-8"


def test_bytes_that_are_no_message_at_all_are_invalid_argument(channel: grpc.Channel) -> None:
    err = raw(channel, "SubmitTasks", b"\x0a\xff\xff\xff\xff\x0f")
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot decode agentflow.v1.SubmitTasksRequest" in (err.details() or "")


HUGE = api.SubmitTasksRequest(tasks=[spec(command="shell:" + "x" * (50 << 20))])


# --- values that can never be placed or run, and size caps ---------------------------------


@pytest.mark.parametrize(
    ("method", "message", "details"),
    [
        ("SubmitTasks", api.SubmitTasksRequest(tasks=[spec(cpu=1e308)]),
         "tasks[0].cpu: must be 0..4096 cores, got 1e+308"),
        ("SubmitTasks", api.SubmitTasksRequest(tasks=[spec(gpus=2**31 - 1)]),
         "tasks[0].gpus: must be 0..1024, got 2147483647"),
        ("SubmitTasks", api.SubmitTasksRequest(tasks=[spec(command="shell:a\0b")]),
         "tasks[0].command: contains a NUL byte"),
        ("SubmitTasks", api.SubmitTasksRequest(tasks=[spec(env={"A": "\0"})]),
         "tasks[0].env['A']: contains a NUL byte"),
        ("SubmitTasks", api.SubmitTasksRequest(tasks=[spec(cwd="/\0")]),
         "tasks[0].cwd: contains a NUL byte"),
        ("SubmitTasks", api.SubmitTasksRequest(tasks=[spec(args_json="[1]")]),
         "tasks[0].args_json: only python tasks take args (give a shell task its values in "
         "the command)"),
        ("SubmitTasks", api.SubmitTasksRequest(tasks=[spec(name=" ")]),
         "tasks[0].name: blank (leave it empty for no name)"),
        ("SubmitTasks", api.SubmitTasksRequest(request_id="x" * 200, tasks=[spec()]),
         "request_id: 200 characters (at most 128)"),
        (
            "SubmitWorkflow",
            api.SubmitWorkflowRequest(
                workflow=pb.WorkflowSpec(
                    tasks=[spec(id=f"t{i}") for i in range(limits.MAX_WORKFLOW_TASKS + 1)]
                )
            ),
            f"workflow.tasks: {limits.MAX_WORKFLOW_TASKS + 1} tasks in one workflow "
            f"(at most {limits.MAX_WORKFLOW_TASKS})",
        ),
        (
            "SubmitTasks",
            api.SubmitTasksRequest(tasks=[spec(command="shell:" + "x" * 100_000)] * 42),
            f"tasks: {42 * spec(command='shell:' + 'x' * 100_000).ByteSize()} bytes of task "
            "specs in one batch "
            f"(at most {limits.MAX_REQUEST_BYTES})",
        ),
        (
            "SubmitTasks",
            HUGE,
            # The request's own size is checked first: refused before it is read.
            f"tasks: {HUGE.tasks[0].ByteSize()} bytes of task specs in one batch "
            f"(at most {limits.MAX_REQUEST_BYTES})",
        ),
        ("ListTasks", api.ListTasksRequest(states=[99]),  # type: ignore[list-item]
         "states[0]: unknown task state 99 (expected PENDING=1, READY=2, ASSIGNED=3, "
         "RUNNING=4, SUCCEEDED=5, FAILED=6, CANCELLED=7, SKIPPED=8)"),
        ("ListTasks", api.ListTasksRequest(group="x y"),
         "group: invalid group 'x y' (1-64 characters: letters, digits, '_', '.', '-', "
         "starting with a letter or digit)"),
    ],
)  # fmt: skip
def test_the_master_refuses_what_could_never_run_and_changes_nothing(
    channel: grpc.Channel, method: str, message: Any, details: str
) -> None:
    before = total(channel)
    err = raw(channel, method, message.SerializeToString())
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == details
    assert total(channel) == before


def test_grpc_refuses_a_message_past_its_own_limit(channel: grpc.Channel) -> None:
    data = api.SubmitTasksRequest(tasks=[spec(command="shell:" + "x" * (65 << 20))])
    err = raw(channel, "SubmitTasks", data.SerializeToString())
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


# --- request ids --------------------------------------------------------------------------


def test_a_request_id_reused_for_a_different_request_is_refused(master: str) -> None:
    rid = uuid.uuid4().hex
    with Client(master, retry=RetryPolicy(deadline=20.0, attempt_timeout=5.0)) as client:
        first = client.submit("shell:echo one", request_id=rid)
        # The SDK's own retry sends the identical request: the first result.
        assert client.submit("shell:echo one", request_id=rid) == first
        with pytest.raises(FailedPreconditionError) as info:
            client.submit("shell:echo two", request_id=rid)
        assert str(info.value).startswith(f"request_id: request id {rid!r} was already used")
        assert client.get(first).command == "shell:echo one"
        assert not [t for t in client.list() if t.command == "shell:echo two"]


# --- the CLI ------------------------------------------------------------------------------


def cli(master: str, *args: str | bytes) -> subprocess.CompletedProcess[str]:
    command = [str(AGENTFLOW)] if AGENTFLOW.exists() else [sys.executable, "-m", "agentflow.cli"]
    env = dict(os.environ, MASTER_URL=f"http://{master}")
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


NESTED = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (("--max-retries", "99999999999"), "error: tasks[0].max_retries: must be a whole "
         "number 0..100, got 99999999999\n"),
        (("--timeout", "1e308"), "error: tasks[0].timeout: must be a number 0..2592000 s, "
         "got 1e+308\n"),
        (("--cpu", "1e308"), "error: tasks[0].cpu: must be a number 0..4096 cores, got 1e+308\n"),
        (("--gpus", "2147483647"), "error: tasks[0].gpus: must be a whole number 0..1024, "
         "got 2147483647\n"),
        (("--memory-mb", "99999999999999"), "error: tasks[0].memory_mb: must be a whole number "
         "0..67108864, got 99999999999999\n"),
        (("--args", "[1]"), "error: tasks[0].args: only python tasks take args (give a shell "
         "task its values in the command)\n"),
        (("--env", b"A=\xff"), "error: tasks[0].env['A']: not valid UTF-8 (character 0: "
         "'\\udcff', from undecodable bytes)\n"),
        (("--id", b"a\xff"), "error: tasks[0].id: not valid UTF-8 (character 1: '\\udcff', "
         "from undecodable bytes)\n"),
        (("--desc", b"shell:\xff"), "error: tasks[0].command: not valid UTF-8 (character 6: "
         "'\\udcff', from undecodable bytes)\n"),
    ],
)  # fmt: skip
def test_cli_add_refuses_bad_values_naming_the_field(
    master: str, args: tuple[str | bytes, ...], stderr: str
) -> None:
    desc: tuple[str, ...] = () if "--desc" in args else ("--desc", "shell:true")
    result = cli(master, "add", "t", *desc, *args)
    assert (result.returncode, result.stderr) == (2, stderr)


def test_cli_add_refuses_a_bad_title_and_deep_args(master: str) -> None:
    bad = cli(master, "add", b"x\xff", "--desc", "shell:true")
    assert (bad.returncode, bad.stderr) == (
        2,
        "error: tasks[0].name: not valid UTF-8 (character 1: '\\udcff', from undecodable bytes)\n",
    )
    empty = cli(master, "add", "", "--desc", "shell:true")
    assert (empty.returncode, empty.stderr) == (
        2,
        "agentflow: error: TITLE: must not be empty (see 'agentflow add --help')\n",
    )
    deep = cli(master, "add", "t", "--desc", "python:m:f", "--args", NESTED)
    assert deep.returncode == 2 and "Traceback" not in deep.stderr
    assert "nested too deeply" in deep.stderr
    deep64 = "[" * 65 + "]" * 65
    nested = cli(master, "add", "t", "--desc", "python:m:f", "--args", deep64)
    assert (nested.returncode, nested.stderr) == (
        2,
        "error: tasks[0].args: JSON nested more than 64 levels deep\n",
    )


def test_cli_list_refuses_filters_that_can_match_nothing(master: str) -> None:
    result = cli(master, "list", "--group", "x y")
    assert result.returncode == 2
    assert result.stderr.startswith("error: group: invalid group 'x y'")
