"""AgentFlow: a gRPC-first distributed task scheduler with its own Raft consensus.

The SDK names below are loaded on first use, so that processes which never use the
client (masters, workers, the raft test server) do not import it.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from agentflow.client import (
        AgentFlowError,
        AlreadyExistsError,
        AsyncClient,
        Client,
        DeadlineExceededError,
        FailedPreconditionError,
        InvalidArgumentError,
        NotFoundError,
        PermissionDeniedError,
        Priority,
        TaskSpec,
        TaskState,
        UnavailableError,
        Workflow,
        WorkflowFileError,
    )

__version__ = "0.1.0"

__all__ = [
    "AgentFlowError",
    "AlreadyExistsError",
    "AsyncClient",
    "Client",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "Priority",
    "TaskSpec",
    "TaskState",
    "UnavailableError",
    "Workflow",
    "WorkflowFileError",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        value = getattr(_importlib.import_module("agentflow.client"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'agentflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
