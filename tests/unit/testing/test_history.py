"""The history checker, on good histories and on each kind of broken promise."""

from __future__ import annotations

from pathlib import Path

from agentflow._proto import state_pb2
from agentflow.state import encode
from agentflow.testing.history import (
    Commit,
    Execution,
    Final,
    History,
    Submit,
    check,
    commits_from_log,
)


def good() -> History:
    """b depends on a; a failed once (attempt 1) and succeeded as attempt 2."""
    return History(
        submits=[Submit("r1", True, ["a", "b"], {"b": ["a"]}), Submit("r2", False)],
        executions=[
            Execution("a", 1, "w1", 1.0, 2.0, ok=False),
            Execution("a", 2, "w2", 3.0, 4.0, ok=True),
            Execution("b", 1, "w1", 5.0, 6.0, ok=True),
        ],
        commits=[
            Commit(10, "assigned", "a", 1, True),
            Commit(11, "finished", "a", 1, True, success=False),
            Commit(12, "assigned", "a", 2, True),
            Commit(13, "finished", "a", 1, False, success=True),  # stale, refused: fine
            Commit(14, "finished", "a", 2, True, success=True),
            Commit(15, "assigned", "b", 1, True),
            Commit(16, "finished", "b", 1, True, success=True),
        ],
        final={
            "a": Final("SUCCEEDED", 2, {"attempt": 2}),
            "b": Final("SUCCEEDED", 1, {"attempt": 1}),
        },
    )


def test_a_good_history_passes_and_survives_json(tmp_path: Path) -> None:
    h = good()
    assert check(h) == []
    h.save(tmp_path / "h.json")
    assert check(History.from_json((tmp_path / "h.json").read_text())) == []


def test_a_lost_acknowledged_task_is_found() -> None:
    h = good()
    del h.final["b"]
    assert check(h) == ["task b: acknowledged (request r1) but lost"]


def test_an_unfinished_acknowledged_task_is_found() -> None:
    h = good()
    h.final["b"] = Final("READY", 0)
    assert "task b: acknowledged but still READY at the end" in check(h)


def test_an_accepted_stale_report_is_found() -> None:
    h = good()
    h.commits[3] = Commit(13, "finished", "a", 1, True, success=True)
    problems = check(h)
    assert any("stale report of attempt 1 accepted at 13" in p for p in problems)


def test_a_result_committed_twice_is_found() -> None:
    h = good()
    h.commits.append(Commit(17, "finished", "b", 1, True, success=True))
    problems = check(h)
    assert "task b: attempt 1 result committed twice" in problems
    assert any("after its final result" in p for p in problems)


def test_a_result_from_an_attempt_that_never_ran_is_found() -> None:
    h = good()
    h.executions[1] = Execution("a", 2, "w2", 3.0, None, ok=False)  # killed mid-run
    assert check(h) == ["task a: SUCCEEDED as attempt 2, which never ran to the end"]


def test_a_result_kept_for_the_wrong_attempt_is_found() -> None:
    h = good()
    h.final["a"] = Final("SUCCEEDED", 2, {"attempt": 1})
    assert check(h) == ["task a: result of attempt 1 kept for attempt 2"]


def test_a_child_assigned_before_its_parent_succeeded_is_found() -> None:
    h = good()
    h.commits[5] = Commit(13, "assigned", "b", 1, True)
    h.executions[2] = Execution("b", 1, "w1", 3.5, 6.0, ok=True)
    problems = check(h)
    assert "task b: assigned at 13 before its dependency a succeeded (at 14)" in problems
    assert "task b: started before its dependency a finished" in problems


def test_reassignment_after_the_final_result_is_found() -> None:
    h = good()
    h.commits.append(Commit(20, "assigned", "a", 3, True))
    assert "task a: assigned again at 20 after its final result" in check(h)


def test_a_result_finished_while_every_master_was_paused_must_be_committed() -> None:
    h = good()
    h.pauses = [(3.5, 6.5)]  # a (attempt 2) and b (attempt 1) ended in it
    assert check(h) == []
    h.commits = [c for c in h.commits if c.index != 16]  # b's result discarded
    h.final["b"] = Final("FAILED", 1)
    assert check(h) == [
        "task b: attempt 1 finished on w1 while every master was paused, "
        "but its result was never committed"
    ]
    assert History.from_json(h.to_json()).pauses == [(3.5, 6.5)]


def test_commits_are_recovered_by_replaying_the_log() -> None:
    def cmd(**kind: object) -> bytes:
        return encode(state_pb2.Command(now_ms=1000, **kind))  # type: ignore[arg-type]

    log = [
        cmd(register_worker=state_pb2.RegisterWorker(
            info=state_pb2.WorkerInfo(id="w1", groups=["default"], capacity=2))),
        cmd(submit_tasks=state_pb2.SubmitTasks(
            tasks=[state_pb2.TaskSpec(command="shell:true", max_retries=1)])),
        cmd(assign_tasks=state_pb2.AssignTasks(
            assignments=[state_pb2.Assignment(task_id="1", attempt=1, worker_id="w1")])),
        cmd(task_finished=state_pb2.TaskFinished(
            task_id="1", attempt=1, worker_id="w1", success=False)),
        cmd(assign_tasks=state_pb2.AssignTasks(
            assignments=[state_pb2.Assignment(task_id="1", attempt=2, worker_id="w1")])),
        cmd(task_finished=state_pb2.TaskFinished(
            task_id="1", attempt=1, worker_id="w1", success=True)),
        cmd(task_finished=state_pb2.TaskFinished(
            task_id="1", attempt=2, worker_id="w1", success=True)),
        cmd(submit_tasks=state_pb2.SubmitTasks(
            tasks=[state_pb2.TaskSpec(command="shell:true")] * 2)),
        cmd(assign_tasks=state_pb2.AssignTasks(assignments=[
            state_pb2.Assignment(task_id="2", attempt=1, worker_id="w1"),
            state_pb2.Assignment(task_id="3", attempt=1, worker_id="w1")])),
        cmd(finish_tasks=state_pb2.FinishTasks(items=[
            state_pb2.TaskFinished(task_id="2", attempt=1, worker_id="w1", success=True),
            state_pb2.TaskFinished(task_id="3", attempt=7, worker_id="w1", success=True)])),
        cmd(submit_tasks=state_pb2.SubmitTasks(
            tasks=[state_pb2.TaskSpec(command="shell:true")] * 2,
            placements=[state_pb2.Placement(task_index=1, worker_id="w1"),
                        state_pb2.Placement(task_index=0, worker_id="nobody")])),
    ]  # fmt: skip
    commits = commits_from_log(enumerate(log, start=1))
    assert [(c.index, c.kind, c.attempt, c.accepted) for c in commits] == [
        (3, "assigned", 1, True),
        (4, "finished", 1, True),
        (5, "assigned", 2, True),
        (6, "finished", 1, False),
        (7, "finished", 2, True),
        (9, "assigned", 1, True),
        (9, "assigned", 1, True),
        (10, "finished", 1, True),  # one FinishTasks entry: each report on its own
        (10, "finished", 7, False),
        (11, "assigned", 1, True),  # placed in its own submit entry: task "5"
        (11, "assigned", 1, False),  # an unknown worker: refused
    ]
    assert [c.task_id for c in commits[-2:]] == ["5", "4"]
