"""gRPC status -> SDK exception: one table, fields parsed out of the details."""

from __future__ import annotations

import grpc
import pytest

from agentflow.client.errors import (
    AgentFlowError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RpcStatus,
    UnavailableError,
    WorkflowFileError,
    error_from_status,
    rpc_status,
    sdk_field,
)

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (Code.NOT_FOUND, NotFoundError),
        (Code.ALREADY_EXISTS, AlreadyExistsError),
        (Code.FAILED_PRECONDITION, FailedPreconditionError),
        (Code.UNAUTHENTICATED, PermissionDeniedError),
        (Code.PERMISSION_DENIED, PermissionDeniedError),
        (Code.UNAVAILABLE, UnavailableError),
        (Code.ABORTED, UnavailableError),
        (Code.DEADLINE_EXCEEDED, DeadlineExceededError),
        (Code.INVALID_ARGUMENT, InvalidArgumentError),
        (Code.INTERNAL, AgentFlowError),
    ],
)
def test_each_code_maps_to_its_class(code: grpc.StatusCode, cls: type[AgentFlowError]) -> None:
    error = error_from_status(RpcStatus(code, "something"))
    assert type(error) is cls
    assert error.code is code


def test_invalid_argument_names_the_field() -> None:
    error = error_from_status(
        RpcStatus(Code.INVALID_ARGUMENT, "tasks[2].command: must start with 'shell:' or 'python:'")
    )
    assert isinstance(error, InvalidArgumentError)
    assert error.field == "tasks[2].command"
    assert error.reason == "must start with 'shell:' or 'python:'"
    assert str(error) == "tasks[2].command: must start with 'shell:' or 'python:'"


def test_invalid_argument_without_a_field() -> None:
    error = error_from_status(RpcStatus(Code.INVALID_ARGUMENT, "the request is too large"))
    assert isinstance(error, InvalidArgumentError)
    assert error.field == ""
    assert str(error) == "the request is too large"


def test_server_fields_are_given_in_sdk_terms() -> None:
    error = error_from_status(
        RpcStatus(Code.INVALID_ARGUMENT, "workflow.tasks[1].timeout_ms: must be >= 0, got -1")
    )
    assert isinstance(error, InvalidArgumentError)
    assert error.field == "tasks[1].timeout"
    assert sdk_field("tasks[0].args_json") == "tasks[0].args"
    assert sdk_field("tasks[0].retry_backoff_ms") == "tasks[0].retry_backoff"
    assert sdk_field("workflow.id") == "id"
    assert sdk_field("tasks[0].env['A=B']") == "tasks[0].env['A=B']"


def test_commit_unknown_is_a_deadline_error() -> None:
    error = error_from_status(RpcStatus(Code.UNKNOWN, "commit unknown: leader lost"))
    assert isinstance(error, DeadlineExceededError)
    assert isinstance(error, TimeoutError)


def test_other_unknown_keeps_the_code_in_the_message() -> None:
    error = error_from_status(RpcStatus(Code.UNKNOWN, "boom"))
    assert type(error) is AgentFlowError
    assert str(error) == "UNKNOWN: boom"


def test_builtin_bases() -> None:
    assert isinstance(InvalidArgumentError("f", "m"), ValueError)
    assert isinstance(DeadlineExceededError("late"), TimeoutError)
    assert issubclass(WorkflowFileError, InvalidArgumentError)


def test_workflow_file_error_text() -> None:
    error = WorkflowFileError("wf.yaml", 14, "tasks[2].priority", "unknown level 'urgent'")
    assert str(error) == "wf.yaml:14: tasks[2].priority: unknown level 'urgent'"
    assert (error.path, error.line, error.field) == ("wf.yaml", 14, "tasks[2].priority")
    assert str(WorkflowFileError("wf.yaml", 0, "", "cannot read")) == "wf.yaml: cannot read"


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, metadata: tuple[object, ...]) -> None:
        self._code, self._details, self._metadata = code, details, metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[object, ...]:  # type: ignore[override]
        return self._metadata


def test_rpc_status_reads_the_leader_hint() -> None:
    exc = _FakeRpcError(Code.UNAVAILABLE, "not leader", (("leader-address", "10.0.0.2:6767"),))
    assert rpc_status(exc) == RpcStatus(Code.UNAVAILABLE, "not leader", "10.0.0.2:6767")
    exc = _FakeRpcError(Code.UNAVAILABLE, "", (("leader-address", b"h:1"), ("other", "x")))
    assert rpc_status(exc).leader_address == "h:1"
    assert rpc_status(_FakeRpcError(Code.UNAVAILABLE, "", ())).leader_address == ""
