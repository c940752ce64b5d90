"""Protobuf <-> dataclass conversion."""

from __future__ import annotations

from datetime import UTC, datetime

from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import state_pb2 as pb
from agentflow.client import convert
from agentflow.client.models import (
    OnFailure,
    Priority,
    TaskSpec,
    TaskState,
    WorkerState,
    Workflow,
    WorkflowState,
)


def test_spec_round_trip() -> None:
    spec = TaskSpec(
        "python:mod.sub:fn",
        id="t1",
        name="Train",
        group="gpu",
        priority=Priority.HIGH,
        cpu=2.5,
        memory_mb=2048,
        gpus=1,
        labels={"cuda": "12"},
        env={"A": "b"},
        cwd="/w",
        args={"lr": 0.1, "layers": [1, 2]},
        max_retries=2,
        retry_backoff=1.5,
        timeout=600.0,
        dependencies=("a", "b"),
    )
    message = convert.spec_to_proto(spec)
    assert message.args_json == '{"lr":0.1,"layers":[1,2]}'
    assert (message.retry_backoff_ms, message.timeout_ms) == (1500, 600_000)
    assert message.priority == pb.PRIORITY_HIGH
    assert convert.spec_from_proto(message) == spec


def test_unset_priority_stays_unset() -> None:
    message = convert.spec_to_proto(TaskSpec("shell:x"))
    assert not message.HasField("priority")
    assert convert.spec_from_proto(message).priority is None
    explicit = convert.spec_to_proto(TaskSpec("shell:x", priority=Priority.CRITICAL))
    assert explicit.HasField("priority")
    assert explicit.priority == pb.PRIORITY_CRITICAL


def test_task_from_proto() -> None:
    message = pb.Task(
        id="7",
        spec=pb.TaskSpec(command="shell:make", name="Build", group=""),
        workflow_id="wf",
        state=pb.TASK_STATE_FAILED,
        priority=pb.PRIORITY_LOW,
        attempt=2,
        worker_id="w1",
        gpu_indices=[0, 1],
        created_ms=1_704_103_200_000,
        started_ms=1_704_103_201_500,
        result=pb.TaskResult(exit_code=3, stderr_tail="oops", value_json="[1]", error="exit 3"),
        progress=0.5,
        dependencies=["6"],
        updated_index=42,
        errors=["attempt 1: exit 3"],
    )
    task = convert.task_from_proto(message)
    assert (task.id, task.name, task.group, task.command) == ("7", "Build", "default", "shell:make")
    assert task.state is TaskState.FAILED and task.is_finished and not task.succeeded
    assert task.priority is Priority.LOW
    assert task.gpu_indices == (0, 1)
    assert task.created == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    assert task.started == datetime(2024, 1, 1, 10, 0, 1, 500_000, tzinfo=UTC)
    assert task.finished is None
    assert task.result is not None
    assert (task.result.exit_code, task.result.value, task.result.error) == (3, [1], "exit 3")
    assert task.errors == ("attempt 1: exit 3",)
    assert task.updated_index == 42


def test_no_result_until_there_is_one() -> None:
    assert convert.task_from_proto(pb.Task(id="1")).result is None


def test_unknown_enum_values_do_not_break_reading() -> None:
    task = pb.Task(id="1")
    task.state = 99  # type: ignore[assignment]
    assert convert.task_from_proto(task).state is TaskState.UNKNOWN
    assert convert.task_from_proto(pb.Task(id="1")).state is TaskState.UNKNOWN


def test_state_filter_to_proto() -> None:
    assert convert.task_state_to_proto(TaskState.RUNNING) == pb.TASK_STATE_RUNNING
    assert convert.task_state_to_proto(TaskState.UNKNOWN) == pb.TASK_STATE_UNSPECIFIED


def test_workflow_to_proto() -> None:
    wf = Workflow([TaskSpec("shell:a", id="a")], id="w", name="W", on_failure=OnFailure.CONTINUE)
    message = convert.workflow_to_proto(wf)
    assert (message.id, message.name, message.on_failure) == ("w", "W", pb.ON_FAILURE_CONTINUE)
    assert [t.id for t in message.tasks] == ["a"]


def test_submitted_workflow_maps_local_ids() -> None:
    wf = Workflow([TaskSpec("shell:a", id="a"), TaskSpec("shell:b", id="b")])
    response = api.SubmitWorkflowResponse(
        workflow_id="w", task_ids=["w/a", "w/b"], index=9, duplicate=True
    )
    submitted = convert.submitted_workflow_from_proto(response, wf)
    assert submitted.local_ids == {"a": "w/a", "b": "w/b"}
    assert (submitted.index, submitted.duplicate) == (9, True)


def test_workflow_status() -> None:
    response = api.GetWorkflowResponse(
        workflow=pb.Workflow(
            id="w",
            name="W",
            on_failure=pb.ON_FAILURE_SKIP,
            task_ids=["w/a"],
            state=pb.WORKFLOW_STATE_SUCCEEDED,
            created_ms=1000,
            finished_ms=2000,
        ),
        tasks=[pb.Task(id="w/a", state=pb.TASK_STATE_SUCCEEDED)],
        execution_order=["w/a"],
        critical_path=["w/a"],
        state_counts={"TASK_STATE_SUCCEEDED": 1, "running": 2, "bogus": 5},
    )
    status = convert.workflow_status_from_proto(response)
    assert status.state is WorkflowState.SUCCEEDED and status.succeeded
    assert status.on_failure is OnFailure.SKIP
    assert status.state_counts == {TaskState.SUCCEEDED: 1, TaskState.RUNNING: 2}
    assert [t.id for t in status.tasks] == ["w/a"]


def test_worker_and_cluster() -> None:
    worker = convert.worker_from_proto(
        api.WorkerStatus(
            worker=pb.Worker(
                info=pb.WorkerInfo(id="w1", groups=["linux"], cpu_cores=8, capacity=4),
                state=pb.WORKER_STATE_DRAINING,
            ),
            connected=True,
            last_heartbeat_ms=5000,
            running=2,
        )
    )
    assert (worker.id, worker.groups, worker.state) == ("w1", ("linux",), WorkerState.DRAINING)
    assert worker.last_heartbeat == datetime.fromtimestamp(5, tz=UTC)
    status = convert.cluster_status_from_proto(
        api.ClusterStatusResponse(
            node_id="n2",
            leader_id="n1",
            leader_address="h:1",
            term=3,
            members=[api.Member(id="n1", address="h:1", voter=True, match_index=7)],
            role="follower",
            task_counts={"TASK_STATE_READY": 4},
        )
    )
    assert status.members[0].match_index == 7
    assert status.task_counts == {TaskState.READY: 4}
