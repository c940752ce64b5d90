"""The AgentFlow SDK: `Client` (blocking) and `AsyncClient` (asyncio).

    from agentflow import Client

    with Client("10.0.0.1:6767,10.0.0.2:6767") as client:
        task_id = client.submit("shell:make test", group="linux", priority="high")
        task = client.wait(task_id, timeout=600)
        print(task.state, task.result)

Errors are in `agentflow.client.errors`; results are the frozen dataclasses of
`agentflow.client.models`.
"""

from agentflow.client.aio import AsyncClient
from agentflow.client.channels import TlsConfig
from agentflow.client.errors import (
    AgentFlowError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
    WorkflowFileError,
)
from agentflow.client.models import (
    ClusterStatus,
    Deleted,
    Member,
    OnFailure,
    Priority,
    PriorityLike,
    SubmittedWorkflow,
    Task,
    TaskEvent,
    TaskPage,
    TaskResult,
    TaskSpec,
    TaskState,
    WorkerState,
    WorkerStatus,
    Workflow,
    WorkflowState,
    WorkflowStatus,
)
from agentflow.client.retry import RetryPolicy
from agentflow.client.sync import Client
from agentflow.client.workflow_file import load_tasks, load_workflow

__all__ = [
    "AgentFlowError",
    "AlreadyExistsError",
    "AsyncClient",
    "Client",
    "ClusterStatus",
    "DeadlineExceededError",
    "Deleted",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "Member",
    "NotFoundError",
    "OnFailure",
    "PermissionDeniedError",
    "Priority",
    "PriorityLike",
    "RetryPolicy",
    "SubmittedWorkflow",
    "Task",
    "TaskEvent",
    "TaskPage",
    "TaskResult",
    "TaskSpec",
    "TaskState",
    "TlsConfig",
    "UnavailableError",
    "WorkerState",
    "WorkerStatus",
    "Workflow",
    "WorkflowFileError",
    "WorkflowState",
    "WorkflowStatus",
    "load_tasks",
    "load_workflow",
]
