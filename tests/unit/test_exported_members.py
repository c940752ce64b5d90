"""Public names are pinned: adding or removing one is a deliberate change."""

from __future__ import annotations

from types import ModuleType

import pytest

import agentflow.raft
import agentflow.state


@pytest.mark.parametrize("package", [agentflow.raft, agentflow.state], ids=lambda p: p.__name__)
def test_exports_are_pinned(package: ModuleType) -> None:
    exported = set(package.__all__)
    public = {n for n in dir(package) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(package, n)).__name__ == "module"}
    assert exported == public - modules


SDK_NAMES = [
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


def test_top_level_sdk_names_are_pinned() -> None:
    import agentflow
    import agentflow.client

    assert agentflow.__all__ == SDK_NAMES
    for name in SDK_NAMES:
        assert getattr(agentflow, name) is getattr(agentflow.client, name)
    public = {n for n in dir(agentflow) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(agentflow, n)).__name__ == "module"}
    assert public - modules == set(SDK_NAMES)


def test_client_exports_are_pinned() -> None:
    import agentflow.client

    exported = set(agentflow.client.__all__)
    public = {n for n in dir(agentflow.client) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(agentflow.client, n)).__name__ == "module"}
    assert exported == public - modules
    assert set(SDK_NAMES) <= exported
