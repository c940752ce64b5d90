"""Semantics of the replicated scheduler state (agentflow.state.machine), rule by rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from agentflow._proto import state_pb2 as pb
from agentflow.rules.limits import MAX_DELETE_IDS
from agentflow.state import ChangeSet, SchedulerState, encode
from agentflow.state.errors import (
    ALREADY_EXISTS,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
)
from agentflow.state.machine import state_name

CONTINUE = pb.ON_FAILURE_CONTINUE


def spec(id: str = "", deps: Sequence[str] = (), **kw: Any) -> pb.TaskSpec:
    kw.setdefault("command", "shell:true")
    return pb.TaskSpec(id=id, dependencies=list(deps), **kw)


class Harness:
    """Drives a SchedulerState through encoded commands, like the Raft driver does."""

    def __init__(self) -> None:
        self.sm = SchedulerState()
        self.index = 0
        self.now = 1_000
        self.changes: list[ChangeSet] = []
        self.sm.add_listener(self.changes.append)

    def run(self, request_id: str = "", now: int | None = None, **kind: Any) -> pb.CommandResult:
        self.index += 1
        cmd = pb.Command(request_id=request_id, now_ms=self.now if now is None else now, **kind)
        result = self.sm.apply(self.index, encode(cmd))
        assert result.index == self.index or result.duplicate
        return result

    def submit(self, *specs: pb.TaskSpec, **kw: Any) -> pb.CommandResult:
        return self.run(submit_tasks=pb.SubmitTasks(tasks=specs), **kw)

    def ids(self, *specs: pb.TaskSpec) -> list[str]:
        result = self.submit(*specs)
        assert not result.HasField("error"), result.error
        return list(result.task_ids)

    def workflow(self, *specs: pb.TaskSpec, **kw: Any) -> pb.CommandResult:
        return self.run(
            submit_workflow=pb.SubmitWorkflow(workflow=pb.WorkflowSpec(tasks=specs, **kw))
        )

    def worker(self, wid: str = "w1", groups: Sequence[str] = ("default",)) -> pb.CommandResult:
        info = pb.WorkerInfo(id=wid, groups=list(groups))
        return self.run(register_worker=pb.RegisterWorker(info=info))

    def assign(
        self, task_id: str, worker: str = "w1", attempt: int | None = None
    ) -> pb.CommandResult:
        if attempt is None:
            attempt = self.sm.tasks[task_id].attempt + 1
        a = pb.Assignment(task_id=task_id, attempt=attempt, worker_id=worker, gpu_indices=[0])
        return self.run(assign_tasks=pb.AssignTasks(assignments=[a]))

    def _fence(self, task_id: str, attempt: int | None, worker: str | None) -> dict[str, Any]:
        task = self.sm.tasks.get(task_id)
        return {
            "task_id": task_id,
            "attempt": task.attempt if attempt is None and task else (attempt or 0),
            "worker_id": task.worker_id if worker is None and task else (worker or ""),
        }

    def start(
        self, task_id: str, attempt: int | None = None, worker: str | None = None
    ) -> pb.CommandResult:
        return self.run(task_started=pb.TaskStarted(**self._fence(task_id, attempt, worker)))

    def progress(self, task_id: str, value: float, message: str = "") -> pb.CommandResult:
        fence = self._fence(task_id, None, None)
        return self.run(task_progress=pb.TaskProgress(progress=value, message=message, **fence))

    def finish(
        self,
        task_id: str,
        success: bool = True,
        *,
        error: str = "",
        exit_code: int = 0,
        delay: int = 0,
        attempt: int | None = None,
        worker: str | None = None,
    ) -> pb.CommandResult:
        report = pb.TaskFinished(
            success=success,
            result=pb.TaskResult(exit_code=exit_code, error=error, stdout_tail="out"),
            retry_delay_ms=delay,
            **self._fence(task_id, attempt, worker),
        )
        return self.run(task_finished=report)

    def complete(self, task_id: str, success: bool = True, **kw: Any) -> pb.CommandResult:
        """Assign to w1, start and finish in one go."""
        assert not self.assign(task_id).rejected
        assert not self.start(task_id).rejected
        return self.finish(task_id, success, **kw)

    def cancel(
        self, *task_ids: str, workflow_id: str = "", reason: str = "", by: str = ""
    ) -> pb.CommandResult:
        req = pb.CancelTasks(
            task_ids=task_ids, workflow_id=workflow_id, reason=reason, requested_by=by
        )
        return self.run(cancel_tasks=req)

    def state(self, task_id: str) -> str:
        return state_name(self.sm.tasks[task_id].state)

    def states(self, *task_ids: str) -> list[str]:
        return [self.state(t) for t in task_ids]


@pytest.fixture
def h() -> Harness:
    return Harness()


def error_of(result: pb.CommandResult) -> tuple[int, str, str]:
    assert result.HasField("error"), result
    return result.error.code, result.error.field, result.error.message


def entities(sm: SchedulerState) -> bytes:
    """The snapshot without the bookkeeping every apply moves (index, time, requests)."""
    snap = pb.StateSnapshot.FromString(sm.snapshot())
    snap.applied_index = 0
    snap.last_now_ms = 0
    del snap.requests[:]
    return snap.SerializeToString(deterministic=True)


def assert_rejected_without_change(h: Harness, result: pb.CommandResult, before: bytes) -> None:
    assert result.HasField("error")
    assert entities(h.sm) == before


# --- decoding ------------------------------------------------------------------------


def test_garbage_bytes_are_an_error_result_not_an_exception(h: Harness) -> None:
    h.ids(spec())
    before = entities(h.sm)
    result = h.sm.apply(7, b"\xff\xff\xff\xff")
    assert result.index == 7
    assert error_of(result)[:2] == (INVALID_ARGUMENT, "command")
    assert result.error.message.startswith("undecodable command")
    assert h.sm.applied_index == 7
    assert entities(h.sm) == before


def test_empty_command_names_the_kind(h: Harness) -> None:
    assert error_of(h.run())[:2] == (INVALID_ARGUMENT, "kind")


# --- SubmitTasks ---------------------------------------------------------------------


def test_submit_generates_numbers_and_fills_defaults(h: Harness) -> None:
    h.now = 5_000
    result = h.submit(spec(), spec(id="named", priority=pb.PRIORITY_HIGH), spec())
    assert list(result.task_ids) == ["1", "named", "2"]
    t1, named = h.sm.tasks["1"], h.sm.tasks["named"]
    assert t1.priority == pb.PRIORITY_NORMAL
    assert named.priority == pb.PRIORITY_HIGH
    assert (t1.created_ms, t1.ready_ms, t1.updated_index) == (5_000, 5_000, 1)
    assert [t.ready_seq for t in h.sm.ready_tasks()] == [1, 2, 3]
    assert h.states("1", "named", "2") == ["READY"] * 3
    assert h.ids(spec()) == ["3"]


def test_submit_rejects_an_existing_id(h: Harness) -> None:
    h.ids(spec(id="a"))
    before = entities(h.sm)
    result = h.submit(spec(id="b"), spec(id="a"))
    assert error_of(result) == (ALREADY_EXISTS, "tasks[1].id", "task 'a' already exists")
    assert_rejected_without_change(h, result, before)


def test_submit_validates_every_spec_with_its_index(h: Harness) -> None:
    result = h.submit(spec(), spec(), spec(priority=7))
    code, field, message = error_of(result)
    assert (code, field) == (INVALID_ARGUMENT, "tasks[2].priority")
    assert message.startswith("unknown level 7")
    assert h.sm.tasks == {}


def test_dependencies_must_exist_or_come_earlier_in_the_batch(h: Harness) -> None:
    h.ids(spec(id="old"))
    assert h.ids(spec(id="a", deps=["old"]), spec(deps=["a", "old"])) == ["a", "1"]
    result = h.submit(spec(id="x", deps=["y"]), spec(id="y"))
    assert error_of(result) == (
        INVALID_ARGUMENT,
        "tasks[0].dependencies[0]",
        "unknown dependency 'y'",
    )
    result = h.submit(spec(id="self", deps=["old", "self"]))
    assert error_of(result)[1] == "tasks[0].dependencies[1]"
    # Nothing from the failed batches, and no generated number was used up.
    assert list(h.sm.tasks) == ["old", "a", "1"]
    assert h.ids(spec()) == ["2"]


def test_submit_state_follows_the_dependencies(h: Harness) -> None:
    h.worker()
    done, running = h.ids(spec(id="done"), spec(id="running"))
    h.complete(done)
    h.assign(running)
    failed, cancelled = h.ids(spec(id="failed"), spec(id="cancelled"))
    h.complete(failed, False)
    h.cancel(cancelled)
    ids = h.ids(
        spec(deps=[done]),
        spec(deps=[done, running]),
        spec(deps=[running, failed]),
        spec(deps=[cancelled]),
        spec(id="sk", deps=[done]),
    )
    assert h.states(*ids) == ["READY", "PENDING", "SKIPPED", "SKIPPED", "READY"]
    assert h.sm.tasks[ids[2]].result.error == "dependency failed failed"
    assert h.sm.tasks[ids[3]].result.error == "dependency cancelled was cancelled"
    assert h.sm.tasks[ids[2]].finished_ms == h.now
    skipped_dep = h.ids(spec(deps=[ids[3]]))[0]
    assert h.sm.tasks[skipped_dep].result.error == f"dependency {ids[3]} was skipped"
    assert h.sm.blocking(ids[1]) == [running]


def test_repeated_dependencies_collapse(h: Harness) -> None:
    h.worker()
    h.ids(spec(id="a"))
    (b,) = h.ids(spec(deps=["a", "a"]))
    assert list(h.sm.tasks[b].dependencies) == ["a"]
    h.complete("a")
    assert h.state(b) == "READY"


def test_submit_depending_on_a_continue_workflow_failure_runs(h: Harness) -> None:
    h.worker()
    h.workflow(spec(id="a"), spec(id="b"), id="wf", on_failure=CONTINUE)
    h.complete("wf/a", False)
    (t,) = h.ids(spec(deps=["wf/a"]))
    assert h.state(t) == "READY"


# --- SubmitWorkflow ------------------------------------------------------------------


def test_workflow_ids_are_global_and_roots_ready(h: Harness) -> None:
    result = h.workflow(
        spec(id="test", deps=["build"]),
        spec(id="build"),
        spec(id="ship", deps=["test", "build"]),
        id="rel",
        name="release",
    )
    assert result.workflow_id == "rel"
    assert list(result.task_ids) == ["rel/test", "rel/build", "rel/ship"]
    assert h.states("rel/test", "rel/build", "rel/ship") == ["PENDING", "READY", "PENDING"]
    assert list(h.sm.tasks["rel/ship"].dependencies) == ["rel/test", "rel/build"]
    assert h.sm.tasks["rel/ship"].spec.dependencies == ["test", "build"]
    wf = h.sm.workflows["rel"]
    assert (wf.name, wf.state, list(wf.task_ids)) == (
        "release",
        pb.WORKFLOW_STATE_RUNNING,
        ["rel/test", "rel/build", "rel/ship"],
    )
    assert h.sm.dependents("rel/build") == ["rel/test", "rel/ship"]
    assert [t.id for t in h.sm.tasks_of_workflow("rel")] == list(result.task_ids)


def test_generated_workflow_ids_share_the_counter_and_skip_taken_names(h: Harness) -> None:
    h.ids(spec())
    assert h.workflow(spec(id="a"), id="wf-3").workflow_id == "wf-3"
    assert h.workflow(spec(id="a")).workflow_id == "wf-2"
    assert h.workflow(spec(id="a")).workflow_id == "wf-4"
    assert h.ids(spec()) == ["5"]


def test_workflow_errors(h: Harness) -> None:
    h.workflow(spec(id="a"), id="wf")
    before = entities(h.sm)
    result = h.workflow(spec(id="a"), id="wf")
    assert error_of(result) == (ALREADY_EXISTS, "workflow.id", "workflow 'wf' already exists")
    result = h.workflow(spec(id="a", deps=["b"]), spec(id="b", deps=["a"]))
    assert error_of(result) == (
        INVALID_ARGUMENT,
        "workflow.tasks[0].dependencies[0]",
        "dependency cycle: a -> b -> a",
    )
    assert entities(h.sm) == before


# --- AssignTasks ---------------------------------------------------------------------


def test_assign_sets_the_attempt(h: Harness) -> None:
    h.worker()
    (t,) = h.ids(spec())
    h.now = 2_000
    result = h.assign(t)
    assert list(result.task_ids) == [t]
    task = h.sm.tasks[t]
    assert (h.state(t), task.attempt, task.worker_id, list(task.gpu_indices)) == (
        "ASSIGNED",
        1,
        "w1",
        [0],
    )
    assert task.assigned_ms == 2_000
    assert h.sm.tasks_of_worker("w1") == [task]
    assert h.sm.ready_tasks() == []


def test_each_assignment_is_checked_on_its_own(h: Harness) -> None:
    h.worker()
    h.worker("w2")
    h.run(set_worker_state=pb.SetWorkerState(worker_id="w2", state=pb.WORKER_STATE_DRAINING))
    a, b, c, d = h.ids(spec(), spec(), spec(), spec())
    (e,) = h.ids(spec(deps=[a]))
    h.assign(d)
    assignments = [
        pb.Assignment(task_id=a, attempt=1, worker_id="w1"),
        pb.Assignment(task_id="nope", attempt=1, worker_id="w1"),
        pb.Assignment(task_id=b, attempt=2, worker_id="w1"),
        pb.Assignment(task_id=c, attempt=1, worker_id="ghost"),
        pb.Assignment(task_id=c, attempt=1, worker_id="w2"),
        pb.Assignment(task_id=d, attempt=2, worker_id="w1"),
        pb.Assignment(task_id=e, attempt=1, worker_id="w1"),
        pb.Assignment(task_id=a, attempt=1, worker_id="w1"),
    ]
    result = h.run(assign_tasks=pb.AssignTasks(assignments=assignments))
    assert not result.HasField("error")
    assert list(result.task_ids) == [a]
    assert list(result.rejected) == [
        "nope: unknown task",
        f"{b}: attempt 2 (expected 1)",
        f"{c}: unknown worker 'ghost'",
        f"{c}: worker w2 is DRAINING",
        f"{d}: task is ASSIGNED",
        f"{e}: waiting on 1 unfinished dependencies",
        f"{a}: task is ASSIGNED",
    ]
    assert h.states(a, b, c) == ["ASSIGNED", "READY", "READY"]


# --- reports and fencing -------------------------------------------------------------


def test_started_progress_finished(h: Harness) -> None:
    h.worker()
    a, b = h.ids(spec(), spec())
    (c,) = h.ids(spec(deps=[a, b]))
    h.assign(a)
    h.now = 1_500
    assert list(h.start(a).task_ids) == [a]
    assert (h.state(a), h.sm.tasks[a].started_ms) == ("RUNNING", 1_500)
    h.progress(a, 2.5, "almost")
    assert (h.sm.tasks[a].progress, h.sm.tasks[a].progress_message) == (1.0, "almost")
    h.progress(a, -1)
    assert h.sm.tasks[a].progress == 0.0
    h.progress(a, float("nan"))
    assert h.sm.tasks[a].progress == 0.0
    h.now = 1_600
    h.finish(a)
    task = h.sm.tasks[a]
    assert (h.state(a), task.finished_ms, task.result.stdout_tail) == ("SUCCEEDED", 1_600, "out")
    assert h.sm.tasks_of_worker("w1") == []
    assert h.state(c) == "PENDING"
    assert h.sm.blocking(c) == [b]
    h.complete(b)
    assert h.state(c) == "READY"
    assert h.sm.tasks[c].ready_ms == h.now


def test_progress_implies_running(h: Harness) -> None:
    h.worker()
    (a,) = h.ids(spec())
    h.assign(a)
    h.progress(a, 0.25)
    assert (h.state(a), h.sm.tasks[a].started_ms, h.sm.tasks[a].progress) == (
        "RUNNING",
        h.now,
        0.25,
    )


def test_stale_reports_are_rejected_and_change_nothing(h: Harness) -> None:
    h.worker()
    h.worker("w2")
    (a,) = h.ids(spec(max_retries=3))
    h.assign(a)
    h.finish(a, False)  # attempt 1 fails, back to PENDING
    h.assign(a, "w2")  # attempt 2 on w2
    before = entities(h.sm)
    cases = [
        (h.start(a, attempt=1, worker="w1"), f"{a}: stale attempt 1 (current 2)"),
        (h.finish(a, attempt=1, worker="w1"), f"{a}: stale attempt 1 (current 2)"),
        (h.start(a, worker="w1"), f"{a}: attempt 2 belongs to worker w2, not w1"),
        (h.start("ghost", attempt=1, worker="w1"), "ghost: unknown task"),
    ]
    for result, reason in cases:
        assert not result.HasField("error")
        assert list(result.rejected) == [reason]
        assert list(result.task_ids) == []
    assert entities(h.sm) == before
    h.finish(a)
    assert list(h.finish(a).rejected) == [f"{a}: task is SUCCEEDED"]
    assert list(h.progress(a, 0.5).rejected) == [f"{a}: task is SUCCEEDED"]


def test_a_batch_of_results_applies_each_as_its_own_report(h: Harness) -> None:
    h.worker()
    a, b, c = h.ids(spec(), spec(max_retries=1), spec())
    for t in (a, b, c):
        h.assign(t)
    h.finish(c)
    items = [
        pb.TaskFinished(task_id=a, attempt=1, worker_id="w1", success=True),
        pb.TaskFinished(
            task_id=b,
            attempt=1,
            worker_id="w1",
            result=pb.TaskResult(exit_code=2),
            retry_delay_ms=9,
        ),
        pb.TaskFinished(task_id=c, attempt=1, worker_id="w1", success=True),  # already final
        pb.TaskFinished(task_id="ghost", attempt=1, worker_id="w1", success=True),
    ]
    result = h.run(finish_tasks=pb.FinishTasks(items=items))
    assert not result.HasField("error")
    assert list(result.task_ids) == [a, b]
    assert list(result.rejected) == [f"{c}: task is SUCCEEDED", "ghost: unknown task"]
    assert h.states(a, b, c) == ["SUCCEEDED", "PENDING", "SUCCEEDED"]
    assert h.sm.tasks[b].not_before_ms == h.now + 9
    assert set(h.changes[-1].tasks) == {a, b}


def test_a_submit_may_place_its_new_tasks_in_the_same_entry(h: Harness) -> None:
    h.worker()
    h.worker("w2")
    h.run(set_worker_state=pb.SetWorkerState(worker_id="w2", state=pb.WORKER_STATE_DRAINING))
    placements = [
        pb.Placement(task_index=0, worker_id="w1", gpu_indices=[1]),
        pb.Placement(task_index=1, worker_id="w1"),  # depends on task 0: not READY
        pb.Placement(task_index=2, worker_id="w2"),  # draining
        pb.Placement(task_index=7, worker_id="w1"),
    ]
    specs = [spec("a"), spec("b", deps=["a"]), spec("c")]
    result = h.run(submit_tasks=pb.SubmitTasks(tasks=specs, placements=placements))
    assert not result.HasField("error")
    assert list(result.task_ids) == ["a", "b", "c"]
    assert list(result.rejected) == [
        "b: waiting on 1 unfinished dependencies",
        "c: worker w2 is DRAINING",
        "placements[3]: no task at index 7",
    ]
    a = h.sm.tasks["a"]
    assert (h.state("a"), a.attempt, a.worker_id, list(a.gpu_indices)) == ("ASSIGNED", 1, "w1", [1])
    assert a.assigned_ms == h.now
    assert h.states("b", "c") == ["PENDING", "READY"]
    assert [t.id for t in h.sm.tasks_of_worker("w1")] == ["a"]


def test_a_workflow_submit_may_place_its_roots_too(h: Harness) -> None:
    h.worker()
    specs = [spec("build"), spec("test", deps=["build"])]
    placements = [
        pb.Placement(task_index=0, worker_id="w1"),
        pb.Placement(task_index=1, worker_id="w1"),
    ]
    result = h.run(
        submit_workflow=pb.SubmitWorkflow(
            workflow=pb.WorkflowSpec(tasks=specs, id="wf"), placements=placements
        )
    )
    assert list(result.task_ids) == ["wf/build", "wf/test"]
    assert list(result.rejected) == ["wf/test: waiting on 1 unfinished dependencies"]
    assert h.states("wf/build", "wf/test") == ["ASSIGNED", "PENDING"]
    assert h.sm.tasks["wf/build"].attempt == 1


def test_failure_message_and_retry(h: Harness) -> None:
    h.worker()
    (a,) = h.ids(spec(max_retries=1))
    h.assign(a)
    h.now = 2_000
    h.finish(a, False, exit_code=3, delay=500)
    task = h.sm.tasks[a]
    assert h.state(a) == "PENDING"
    assert (task.not_before_ms, task.worker_id, list(task.gpu_indices)) == (2_500, "", [])
    assert list(task.errors) == ["attempt 1 on w1: exit code 3"]
    assert task.result.error == "exit code 3"
    assert h.sm.retry_waiting() == [task]
    assert h.sm.ready_tasks() == []
    h.now = 2_499
    assert list(h.assign(a).rejected) == [f"{a}: retry not before 2500 (now 2499)"]
    h.now = 2_500
    assert list(h.assign(a, attempt=1).rejected) == [f"{a}: attempt 1 (expected 2)"]
    h.assign(a)
    assert (h.state(a), task.attempt, task.not_before_ms) == ("ASSIGNED", 2, 0)
    assert h.sm.retry_waiting() == []
    h.finish(a, False, error="boom")
    assert h.state(a) == "FAILED"
    assert list(task.errors) == ["attempt 1 on w1: exit code 3", "attempt 2 on w1: boom"]
    assert task.finished_ms == h.now


def test_failure_skips_dependents_transitively(h: Harness) -> None:
    h.worker()
    a, b, c, d = h.ids(spec(), spec(), spec(deps=["1", "2"]), spec())
    (e,) = h.ids(spec(deps=[c, d]))
    h.complete(a, False)
    assert h.states(a, b, c, d, e) == ["FAILED", "READY", "SKIPPED", "READY", "SKIPPED"]
    assert h.sm.tasks[c].result.error == "dependency 1 failed"
    assert h.sm.tasks[e].result.error == f"dependency {c} was skipped"
    assert h.changes[-1].tasks == (a, c, e)


def test_continue_workflow_releases_dependents_of_a_failure(h: Harness) -> None:
    h.worker()
    h.workflow(
        spec(id="a"),
        spec(id="b", deps=["a"]),
        spec(id="c", deps=["b"]),
        id="wf",
        on_failure=CONTINUE,
    )
    h.complete("wf/a", False)
    assert h.states("wf/a", "wf/b", "wf/c") == ["FAILED", "READY", "PENDING"]
    h.complete("wf/b")
    h.complete("wf/c")
    wf = h.sm.workflows["wf"]
    assert (wf.state, wf.finished_ms, wf.updated_index) == (
        pb.WORKFLOW_STATE_FAILED,
        h.now,
        h.index,
    )


def test_skip_workflow_fails_when_its_last_task_is_skipped(h: Harness) -> None:
    h.worker()
    h.workflow(spec(id="a"), spec(id="b", deps=["a"]), id="wf")
    h.complete("wf/a", False)
    assert h.states("wf/a", "wf/b") == ["FAILED", "SKIPPED"]
    assert h.sm.workflows["wf"].state == pb.WORKFLOW_STATE_FAILED
    assert "wf" in h.changes[-1].workflows


def test_workflow_succeeds_when_every_task_succeeds(h: Harness) -> None:
    h.worker()
    h.workflow(spec(id="a"), spec(id="b", deps=["a"]), id="wf")
    h.complete("wf/a")
    assert h.sm.workflows["wf"].state == pb.WORKFLOW_STATE_RUNNING
    h.now = 9_000
    h.complete("wf/b")
    wf = h.sm.workflows["wf"]
    assert (wf.state, wf.finished_ms) == (pb.WORKFLOW_STATE_SUCCEEDED, 9_000)


# --- CancelTasks ---------------------------------------------------------------------


def test_cancel_tasks(h: Harness) -> None:
    h.worker()
    a, b, done = h.ids(spec(), spec(), spec())
    (c,) = h.ids(spec(deps=[a]))
    h.complete(done)
    h.assign(b)
    h.start(b)
    result = h.cancel(a, b, done, c, reason="not needed")
    # c is named too, so it is cancelled rather than skipped as a's dependent.
    assert list(result.task_ids) == [a, b, c]
    assert h.states(a, b, done, c) == ["CANCELLED", "CANCELLED", "SUCCEEDED", "CANCELLED"]
    assert h.sm.tasks[a].result.error == "not needed"
    # The worker keeps its name on the task so the leader can tell it to stop.
    assert h.sm.tasks[b].worker_id == "w1"
    assert h.sm.tasks_of_worker("w1") == []
    assert list(h.finish(b).rejected) == [f"{b}: task is CANCELLED"]


def test_cancel_reports_only_direct_cancellations(h: Harness) -> None:
    a, b = h.ids(spec(), spec(deps=["1"]))
    result = h.cancel(a)
    assert list(result.task_ids) == [a]
    assert h.sm.tasks[a].result.error == "cancelled"
    assert h.sm.tasks[b].result.error == "dependency 1 was cancelled"
    assert h.changes[-1].tasks == (a, b)


def test_cancel_a_workflow(h: Harness) -> None:
    h.worker()
    h.workflow(spec(id="a"), spec(id="b", deps=["a"]), spec(id="c"), id="wf")
    h.complete("wf/c")
    result = h.cancel(workflow_id="wf")
    assert list(result.task_ids) == ["wf/a", "wf/b"]
    assert h.sm.workflows["wf"].state == pb.WORKFLOW_STATE_CANCELLED
    assert h.changes[-1].workflows == ("wf",)


def test_a_cancel_records_who_asked(h: Harness) -> None:
    h.workflow(spec(id="a"), spec(id="b"), id="wf")
    (lone,) = h.ids(spec())
    h.cancel(lone, by="a client at 10.0.0.7")
    assert h.sm.tasks[lone].result.cancelled_by == "a client at 10.0.0.7"
    h.cancel("wf/a", workflow_id="wf", by="ops")
    assert h.sm.tasks["wf/a"].result.cancelled_by == "ops"
    assert h.sm.tasks["wf/b"].result.cancelled_by == "ops, cancelling its workflow"


def test_cancelling_single_tasks_of_a_workflow_fails_it(h: Harness) -> None:
    h.workflow(spec(id="a"), id="wf")
    h.cancel("wf/a")
    assert h.sm.workflows["wf"].state == pb.WORKFLOW_STATE_FAILED


def test_cancel_errors(h: Harness) -> None:
    (a,) = h.ids(spec())
    before = entities(h.sm)
    assert error_of(h.cancel(a, "zz")) == (NOT_FOUND, "task_ids[1]", "unknown task 'zz'")
    assert error_of(h.cancel(a, workflow_id="nope")) == (
        NOT_FOUND,
        "workflow_id",
        "unknown workflow 'nope'",
    )
    assert error_of(h.cancel())[:2] == (INVALID_ARGUMENT, "task_ids")
    assert entities(h.sm) == before


# --- Reprioritize --------------------------------------------------------------------


def test_reprioritize(h: Harness) -> None:
    h.worker()
    a, b = h.ids(spec(), spec())
    h.complete(b)

    def repri(task_id: str, priority: int) -> pb.CommandResult:
        return h.run(reprioritize=pb.Reprioritize(task_id=task_id, priority=priority))  # type: ignore[arg-type]

    ready_ms = h.sm.tasks[a].ready_ms
    h.now += 100
    assert list(repri(a, pb.PRIORITY_CRITICAL).task_ids) == [a]
    assert h.sm.tasks[a].priority == pb.PRIORITY_CRITICAL
    assert (h.sm.tasks[a].ready_ms, h.sm.tasks[a].updated_index) == (ready_ms, h.index)
    assert error_of(repri("zz", 1)) == (NOT_FOUND, "task_id", "unknown task 'zz'")
    assert error_of(repri(b, 1)) == (FAILED_PRECONDITION, "task_id", "task 2 is SUCCEEDED")
    code, field, message = error_of(repri(a, 9))
    assert (code, field) == (INVALID_ARGUMENT, "priority")
    assert message.startswith("unknown level 9")


# --- workers -------------------------------------------------------------------------


def test_register_worker(h: Harness) -> None:
    h.now = 100
    h.worker("w1", ["gpu"])
    w = h.sm.workers["w1"]
    assert (w.state, w.registered_ms, w.state_changed_ms, w.session) == (
        pb.WORKER_STATE_ONLINE,
        100,
        100,
        1,
    )
    h.now = 200
    h.run(set_worker_state=pb.SetWorkerState(worker_id="w1", state=pb.WORKER_STATE_LOST))
    h.worker("w1", ["cpu"])
    w = h.sm.workers["w1"]
    assert (list(w.info.groups), w.state, w.registered_ms, w.session) == (
        ["cpu"],
        pb.WORKER_STATE_ONLINE,
        100,
        3,
    )
    assert h.changes[-1].workers == ("w1",)
    assert error_of(h.worker(""))[:2] == (INVALID_ARGUMENT, "info.id")
    assert error_of(h.worker("w2", []))[:2] == (INVALID_ARGUMENT, "info.groups")


def test_lost_worker_fails_the_current_attempts(h: Harness) -> None:
    h.worker()
    a, b, idle = h.ids(spec(max_retries=1), spec(), spec())
    h.assign(a)
    h.assign(b)
    h.start(b)
    h.now = 3_000
    req = pb.SetWorkerState(
        worker_id="w1", state=pb.WORKER_STATE_LOST, retry_delay_ms=250, reason="silent 30s"
    )
    result = h.run(set_worker_state=req)
    assert list(result.task_ids) == [a, b]
    assert h.states(a, b, idle) == ["PENDING", "FAILED", "READY"]
    assert h.sm.tasks[a].not_before_ms == 3_250
    assert list(h.sm.tasks[b].errors) == ["attempt 1 on w1: worker w1 lost: silent 30s"]
    assert h.sm.workers["w1"].state == pb.WORKER_STATE_LOST
    assert h.sm.workers["w1"].state_changed_ms == 3_000
    assert list(h.assign(idle).rejected) == [f"{idle}: worker w1 is LOST"]


def test_set_worker_state_errors(h: Harness) -> None:
    result = h.run(set_worker_state=pb.SetWorkerState(worker_id="w", state=pb.WORKER_STATE_LOST))
    assert error_of(result) == (NOT_FOUND, "worker_id", "unknown worker 'w'")
    h.worker("w")
    result = h.run(set_worker_state=pb.SetWorkerState(worker_id="w"))
    assert error_of(result)[:2] == (INVALID_ARGUMENT, "state")


def test_requeue_is_fenced_and_counts_as_a_failed_attempt(h: Harness) -> None:
    h.worker()
    a, b = h.ids(spec(max_retries=2), spec())
    h.assign(a)
    items = [
        pb.RequeueTasks.Item(task_id=a, attempt=1, reason="not on worker", retry_delay_ms=10),
        pb.RequeueTasks.Item(task_id=b, attempt=0),
        pb.RequeueTasks.Item(task_id=a, attempt=1),
    ]
    result = h.run(requeue_tasks=pb.RequeueTasks(items=items))
    assert list(result.task_ids) == [a]
    assert list(result.rejected) == [f"{b}: task is READY", f"{a}: task is PENDING"]
    assert list(h.sm.tasks[a].errors) == ["attempt 1 on w1: not on worker"]
    assert h.sm.tasks[a].not_before_ms == h.now + 10


# --- request ids ---------------------------------------------------------------------


def test_request_ids_apply_once(h: Harness) -> None:
    first = h.submit(spec(), request_id="r1")
    before = entities(h.sm)
    again = h.submit(spec(), spec(), request_id="r1")
    assert again.duplicate
    assert (again.index, list(again.task_ids)) == (first.index, list(first.task_ids))
    assert entities(h.sm) == before
    assert h.sm.request("r1") is not None


def test_errors_are_recorded_too(h: Harness) -> None:
    result = h.submit(spec(id="a", deps=["b"]), request_id="r")
    h.ids(spec(id="b"))
    again = h.submit(spec(id="a", deps=["b"]), request_id="r")
    assert again.duplicate
    assert again.error == result.error
    assert "a" not in h.sm.tasks


# --- Prune ---------------------------------------------------------------------------


def prune(h: Harness, before: int = 0, keep: int = 0, requests: int = 0) -> pb.CommandResult:
    req = pb.Prune(finished_before_ms=before, keep_finished=keep, requests_before_ms=requests)
    return h.run(prune=req)


def test_prune_by_age_and_count(h: Harness) -> None:
    h.worker()
    ids = h.ids(*(spec() for _ in range(5)))
    for i, t in enumerate(ids):
        h.now = 1_000 * (i + 1)
        h.complete(t)
    (running,) = h.ids(spec())
    result = prune(h, before=2_001)
    assert list(result.task_ids) == ids[:2]
    assert h.changes[-1].tasks == tuple(ids[:2])
    assert list(prune(h, keep=2).task_ids) == [ids[2]]
    assert list(h.sm.tasks) == [*ids[3:], running]
    calls = len(h.changes)
    assert prune(h, keep=2).task_ids == []
    assert len(h.changes) == calls  # nothing removed: listeners are not called


def test_prune_keeps_what_unfinished_tasks_depend_on(h: Harness) -> None:
    h.worker()
    a, b = h.ids(spec(), spec())
    h.complete(a)
    h.complete(b)
    (c,) = h.ids(spec(deps=[a, b]))
    h.assign(c)
    h.cancel(b)  # nothing: b is final already
    assert prune(h, before=h.now + 1).task_ids == []
    h.finish(c)
    assert list(prune(h, before=h.now + 1).task_ids) == [a, b, c]


def test_prune_removes_finished_workflows_whole(h: Harness) -> None:
    h.worker()
    h.workflow(spec(id="a"), spec(id="b", deps=["a"]), id="old")
    h.workflow(spec(id="a"), id="live")
    h.complete("old/a")
    h.complete("old/b")
    h.now += 1
    result = prune(h, before=h.now)
    assert list(result.task_ids) == ["old/a", "old/b"]
    assert list(h.sm.workflows) == ["live"]
    assert h.changes[-1].workflows == ("old",)
    # The id is free again.
    assert h.workflow(spec(id="a"), id="old").workflow_id == "old"


def test_prune_keeps_a_workflow_a_standalone_task_waits_on(h: Harness) -> None:
    h.worker()
    h.workflow(spec(id="a"), id="wf")
    h.complete("wf/a")
    (t,) = h.ids(spec(deps=["wf/a"]))
    h.now += 1
    assert prune(h, before=h.now).task_ids == []
    h.complete(t)
    h.now += 1
    assert list(prune(h, before=h.now).task_ids) == ["wf/a", t]


def test_prune_forgets_old_request_ids(h: Harness) -> None:
    h.submit(spec(), request_id="old", now=100)
    h.submit(spec(), request_id="new", now=200)
    prune(h, requests=150)
    assert h.sm.request("old") is None
    assert h.sm.request("new") is not None
    assert not h.submit(spec(), request_id="old").duplicate


def test_reused_id_does_not_inherit_old_dependents(h: Harness) -> None:
    h.worker()
    h.ids(spec(id="a"))
    h.complete("a")
    (b,) = h.ids(spec(deps=["a"]))
    h.complete(b)
    # a is pruned by count while b (its finished dependent) stays.
    h.now += 1
    assert list(prune(h, keep=1).task_ids) == ["a"]
    h.ids(spec(id="a"))
    assert h.sm.dependents("a") == []
    restored = SchedulerState()
    restored.restore(h.sm.snapshot())
    assert restored.dependents("a") == []


# --- DeleteRecords: an operator's purge, so ids can be used again ----------------


def delete(
    h: Harness, *task_ids: str, workflows: tuple[str, ...] = (), age: int | None = None, **kw: Any
) -> pb.CommandResult:
    req = pb.DeleteRecords(task_ids=task_ids, workflow_ids=workflows)
    if age is not None:
        req.finished_before_age_ms = age
    return h.run(delete_records=req, **kw)


def refused(h: Harness, result: pb.CommandResult, before: bytes) -> tuple[int, str, str]:
    assert entities(h.sm) == before, "a refused delete changed the state"
    return error_of(result)


def finished_workflow(h: Harness, wf_id: str = "release") -> None:
    h.workflow(spec(id="build"), spec(id="test", deps=["build"]), id=wf_id)
    h.complete(f"{wf_id}/build")
    h.complete(f"{wf_id}/test")


def test_deleting_a_finished_workflow_frees_its_id(h: Harness) -> None:
    h.worker()
    finished_workflow(h)
    old_index = h.sm.tasks["release/build"].created_index
    assert old_index == 2  # the submit's raft index
    again = h.workflow(spec(id="build"), id="release")
    assert error_of(again)[0] == pb.CommandError.ALREADY_EXISTS
    result = delete(h, workflows=("release",))
    assert not result.HasField("error")
    assert list(result.workflow_ids) == ["release"]
    assert list(result.task_ids) == ["release/build", "release/test"]
    assert "release" not in h.sm.workflows and not h.sm.tasks
    assert h.changes[-1].workflows == ("release",)
    assert h.changes[-1].tasks == ("release/build", "release/test")
    rerun = h.workflow(spec(id="build"), spec(id="test", deps=["build"]), id="release")
    assert rerun.workflow_id == "release"
    assert h.states("release/build", "release/test") == ["READY", "PENDING"]
    # What tells a worker that attempt 1 of the new task is not the old one again.
    assert h.sm.tasks["release/build"].created_index == rerun.index > old_index


def test_a_running_workflow_is_refused_naming_the_busy_task(h: Harness) -> None:
    h.worker()
    h.workflow(spec(id="build"), spec(id="test", deps=["build"]), id="release")
    h.complete("release/build")
    h.assign("release/test")
    before = entities(h.sm)
    code, field, message = refused(h, delete(h, workflows=("release",)), before)
    assert (code, field) == (FAILED_PRECONDITION, "workflow_ids[0]")
    assert message == (
        "workflow release is still running (task release/test is ASSIGNED): "
        "cancel it first, then delete it"
    )
    h.cancel(workflow_id="release")
    assert list(delete(h, workflows=("release",)).workflow_ids) == ["release"]


def test_unfinished_tasks_are_refused_naming_id_and_state(h: Harness) -> None:
    h.worker()
    done, queued = h.ids(spec(id="done"), spec(id="queued"))
    h.complete(done)
    before = entities(h.sm)
    # All or nothing: the finished task named first stays too.
    code, field, message = refused(h, delete(h, done, queued), before)
    assert (code, field) == (FAILED_PRECONDITION, "task_ids[1]")
    assert message == "task queued is READY: cancel it first, then delete it"
    h.assign(queued)
    h.start(queued)
    before = entities(h.sm)
    message = refused(h, delete(h, queued), before)[2]
    assert message.startswith("task queued is RUNNING")
    h.cancel(queued)
    assert list(delete(h, done, queued).task_ids) == ["done", "queued"]
    assert not h.sm.tasks


def test_a_task_of_a_workflow_goes_only_with_its_workflow(h: Harness) -> None:
    h.worker()
    finished_workflow(h)
    before = entities(h.sm)
    code, field, message = refused(h, delete(h, "release/build"), before)
    assert (code, field) == (FAILED_PRECONDITION, "task_ids[0]")
    assert message == (
        "task release/build belongs to workflow release: delete the workflow, "
        "which takes its tasks with it"
    )
    # Named together with its workflow it is simply part of it.
    result = delete(h, "release/build", workflows=("release",))
    assert list(result.task_ids) == ["release/build", "release/test"]


def test_what_an_unfinished_task_depends_on_stays(h: Harness) -> None:
    h.worker()
    (a,) = h.ids(spec(id="a"))
    h.complete(a)
    h.ids(spec(id="b", deps=["a"]), spec(id="c", deps=["b"]))
    before = entities(h.sm)
    message = refused(h, delete(h, "a"), before)[2]
    assert message == "task a is a dependency of unfinished task b (READY)"
    finished_workflow(h, "wf")
    (t,) = h.ids(spec(deps=["wf/test"]))
    before = entities(h.sm)
    message = refused(h, delete(h, workflows=("wf",)), before)[2]
    assert message == f"workflow wf: task wf/test is a dependency of unfinished task {t} (READY)"


def test_unknown_and_malformed_names_change_nothing(h: Harness) -> None:
    h.worker()
    (a,) = h.ids(spec(id="a"))
    h.complete(a)
    before = entities(h.sm)
    assert refused(h, delete(h, "a", "ghost"), before)[:2] == (NOT_FOUND, "task_ids[1]")
    assert refused(h, delete(h, workflows=("nope",)), before) == (
        NOT_FOUND,
        "workflow_ids[0]",
        "unknown workflow 'nope'",
    )
    assert refused(h, delete(h), before)[:2] == (INVALID_ARGUMENT, "task_ids")
    assert refused(h, delete(h, ""), before)[:2] == (INVALID_ARGUMENT, "task_ids[0]")
    assert refused(h, delete(h, "x" * 300), before)[:2] == (INVALID_ARGUMENT, "task_ids[0]")
    assert refused(h, delete(h, age=-1), before)[:2] == (INVALID_ARGUMENT, "finished_before_age_ms")
    many = tuple(f"t{i}" for i in range(MAX_DELETE_IDS + 1))
    assert refused(h, delete(h, *many), before)[:2] == (INVALID_ARGUMENT, "task_ids")
    assert "a" in h.sm.tasks


def test_the_age_sweep_takes_what_finished_long_enough_ago_and_skips_the_rest(
    h: Harness,
) -> None:
    h.worker()
    h.now = 1_000
    old, young, waited_on, live = h.ids(spec(id="old"), spec(id="young"), spec(id="w"), spec())
    h.complete(old)
    h.complete(waited_on)
    finished_workflow(h, "wf-old")
    h.workflow(spec(id="a"), id="wf-live")
    h.ids(spec(id="child", deps=["w"]))
    h.now = 5_000
    h.complete(young)
    # Finished at 1000, swept at 5000 with an age of 4000: exactly old enough.
    result = delete(h, age=4_000)
    assert not result.HasField("error")
    assert list(result.task_ids) == ["old", "wf-old/build", "wf-old/test"]
    assert list(result.workflow_ids) == ["wf-old"]
    assert set(h.sm.tasks) == {young, waited_on, live, "wf-live/a", "child"}
    # Age 0: everything finished, still skipping what an unfinished task waits on.
    assert list(delete(h, age=0).task_ids) == ["young"]
    assert delete(h, age=0).task_ids == []


def test_a_retried_delete_is_a_duplicate_and_a_reused_request_id_is_refused(h: Harness) -> None:
    h.worker()
    finished_workflow(h)
    digest = b"d" * 32
    first = delete(h, workflows=("release",), request_id="r1", request_digest=digest)
    again = delete(h, workflows=("release",), request_id="r1", request_digest=digest)
    assert again.duplicate and again.index == first.index
    assert list(again.workflow_ids) == ["release"]
    other = delete(h, "x", request_id="r1", request_digest=b"e" * 32)
    assert (other.error.code, other.error.field) == (FAILED_PRECONDITION, "request_id")


def test_indexes_and_snapshot_after_a_delete_match_a_restore(h: Harness) -> None:
    h.worker()
    h.worker("w2")
    finished_workflow(h)
    (a,) = h.ids(spec(id="a"))
    h.complete(a)
    (b,) = h.ids(spec(id="b", deps=["a"]))
    h.complete(b)
    delete(h, "a", workflows=("release",))
    # b keeps naming its deleted dependency; a new "a" is not its parent.
    (a2,) = h.ids(spec(id="a"))
    assert h.sm.dependents(a2) == []
    restored = SchedulerState()
    restored.restore(h.sm.snapshot())
    assert restored.snapshot() == h.sm.snapshot()
    assert restored.dependents(a2) == []
    assert restored.counts() == h.sm.counts()
    assert list(restored.workflows) == list(h.sm.workflows) == []


# --- listeners, snapshot -------------------------------------------------------------


def test_listeners_see_each_change_and_failures_are_contained(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(change: ChangeSet) -> None:
        raise RuntimeError("listener bug")

    unsubscribe = h.sm.add_listener(broken)
    (a,) = h.ids(spec())
    assert h.changes[-1] == ChangeSet(h.index, (a,), (), ())
    assert "state listener failed" in capsys.readouterr().out + capsys.readouterr().err
    unsubscribe()
    unsubscribe()
    count = len(h.changes)
    h.start(a)  # rejected: no change, no call
    assert len(h.changes) == count


def test_restore_rebuilds_every_index(h: Harness) -> None:
    h.worker()
    h.worker("w2")
    ids = h.ids(*(spec(max_retries=1) for _ in range(6)))
    (dep,) = h.ids(spec(deps=ids[:2]))
    h.workflow(spec(id="a"), spec(id="b", deps=["a"]), spec(id="c", deps=["a"]), id="wf")
    h.complete(ids[0])
    h.assign(ids[1], "w2")
    h.start(ids[1])
    h.assign(ids[2])
    h.complete(ids[3], False, delay=1_000)
    h.complete(ids[4], False)
    h.assign(ids[4])
    h.finish(ids[4], False)
    h.cancel(ids[5])
    h.complete("wf/a")
    h.run(reprioritize=pb.Reprioritize(task_id="wf/c", priority=pb.PRIORITY_HIGH))
    h.submit(spec(id="late"), request_id="rq")

    restored = SchedulerState()
    seen: list[ChangeSet] = []
    restored.add_listener(seen.append)
    restored.restore(h.sm.snapshot())
    assert restored.snapshot() == h.sm.snapshot()
    assert seen == [
        ChangeSet(h.index, tuple(h.sm.tasks), tuple(h.sm.workflows), tuple(h.sm.workers))
    ]
    assert_same_answers(h.sm, restored)
    assert restored.request("rq") is not None
    assert restored.last_now_ms == h.sm.last_now_ms
    # ...and both keep agreeing as the log goes on.
    other = Harness()
    other.sm, other.index, other.now = restored, h.index, h.now
    for drive in (h, other):
        drive.complete("wf/b")
        drive.finish(ids[1])
        drive.complete(dep)
        drive.submit(spec())
    assert restored.snapshot() == h.sm.snapshot()
    assert_same_answers(h.sm, restored)


def assert_same_answers(a: SchedulerState, b: SchedulerState) -> None:
    assert a.counts() == b.counts()
    for state in a.counts():
        assert a.tasks_in_state(state) == b.tasks_in_state(state)
    assert a.ready_tasks() == b.ready_tasks()
    assert a.retry_waiting() == b.retry_waiting()
    for wid in a.workers:
        assert a.tasks_of_worker(wid) == b.tasks_of_worker(wid)
    for wf in a.workflows:
        assert a.tasks_of_workflow(wf) == b.tasks_of_workflow(wf)
    for t in a.tasks:
        assert a.blocking(t) == b.blocking(t)
        assert a.dependents(t) == b.dependents(t)


def test_restore_replaces_the_state_and_lists_removed_ids(h: Harness) -> None:
    empty = SchedulerState().snapshot()
    (a,) = h.ids(spec())
    h.sm.restore(empty)
    assert h.sm.tasks == {}
    assert h.sm.counts()[pb.TASK_STATE_READY] == 0
    assert h.changes[-1] == ChangeSet(0, (a,), (), ())


def test_snapshot_is_deterministic_with_maps(h: Harness) -> None:
    h.ids(spec(env={f"K{i}": str(i) for i in range(20)}, labels={"b": "1", "a": "2"}))
    other = SchedulerState()
    other.restore(h.sm.snapshot())
    assert other.snapshot() == h.sm.snapshot()


# --- scale ---------------------------------------------------------------------------


def test_ten_thousand_task_workflow_is_linear(h: Harness) -> None:
    # A chain (deepest possible walk) plus a fan-out: both must stay linear and must
    # not recurse. About 0.2 s on a laptop; a quadratic step would take minutes.
    n = 10_000
    chain = [spec(id="t0")] + [spec(id=f"t{i}", deps=[f"t{i - 1}"]) for i in range(1, n // 2)]
    fan = [spec(id=f"f{i}", deps=["t0"]) for i in range(n // 2)]
    result = h.workflow(*chain, *fan, id="big")
    assert not result.HasField("error")
    assert len(h.sm.tasks) == n
    h.worker()
    h.complete("big/t0", False)
    assert h.sm.counts()[pb.TASK_STATE_SKIPPED] == n - 1
    assert h.sm.workflows["big"].state == pb.WORKFLOW_STATE_FAILED
