"""A state with something of everything, built by commands: the source of the
committed snapshot fixture (testdata/snapshot-v1.bin).

The fixture was written by this builder before the state machine was split into
domains; a restore of it must keep giving the same state and the same bytes, so the
snapshot's wire format cannot drift unnoticed.

Regenerate only on a deliberate format change:
    PYTHONPATH=$PWD python tests/unit/state/snapshot_fixture.py
"""

from __future__ import annotations

from pathlib import Path

from agentflow._proto import state_pb2 as pb
from agentflow.state import SchedulerState, encode

FIXTURE = Path(__file__).parent / "testdata" / "snapshot-v1.bin"


def build() -> SchedulerState:
    """Tasks in every state (PENDING on a dependency and on a retry), a finished and a
    running workflow, workers ONLINE/DRAINING/LOST, remembered request ids, and
    records deleted and pruned."""
    sm = SchedulerState()
    index = 0

    def run(cmd: pb.Command) -> pb.CommandResult:
        nonlocal index
        index += 1
        cmd.now_ms = 1_000 * index
        result = sm.apply(index, encode(cmd))
        assert not result.HasField("error"), result
        return result

    def spec(task_id: str, *deps: str, retries: int = 0) -> pb.TaskSpec:
        s = pb.TaskSpec(id=task_id, command="shell:echo hi", max_retries=retries)
        s.env["B"] = "2"
        s.env["A"] = "1"
        s.labels["team"] = "core"
        s.dependencies.extend(deps)
        return s

    for wid in ("w1", "w2", "w3"):
        info = pb.WorkerInfo(id=wid, groups=["default"], capacity=4, hostname=f"h-{wid}")
        info.labels["zone"] = "z1"
        info.labels["arch"] = "x86"
        run(pb.Command(request_id=f"req-{wid}", register_worker=pb.RegisterWorker(info=info)))
    # A pruned request id: recorded, then forgotten.
    run(pb.Command(prune=pb.Prune(requests_before_ms=1_000 * index)))

    def assign(task_id: str, attempt: int = 1, worker: str = "w1") -> None:
        a = pb.Assignment(task_id=task_id, attempt=attempt, worker_id=worker)
        run(pb.Command(assign_tasks=pb.AssignTasks(assignments=[a])))

    def finish(task_id: str, ok: bool, attempt: int = 1, worker: str = "w1") -> None:
        rep = pb.TaskFinished(
            task_id=task_id,
            attempt=attempt,
            worker_id=worker,
            success=ok,
            result=pb.TaskResult(exit_code=0 if ok else 3, stdout_tail="out"),
            retry_delay_ms=60_000,
        )
        run(pb.Command(task_finished=rep))

    submit = pb.SubmitTasks(
        tasks=[
            spec("ok"),
            spec("bad"),
            spec("skipme", "bad"),
            spec("running"),
            spec("waits", "running"),
            spec("assigned"),
            spec("ready"),
            spec("retrying", retries=2),
            spec("cancelme"),
            spec("doomed"),
        ]
    )
    submit.tasks.append(pb.TaskSpec(command="shell:true"))
    run(pb.Command(request_id="req-submit", request_digest=bytes(range(32)), submit_tasks=submit))

    assign("ok")
    run(pb.Command(task_started=pb.TaskStarted(task_id="ok", attempt=1, worker_id="w1")))
    finish("ok", True)
    assign("bad", worker="w2")
    finish("bad", False, worker="w2")
    assign("running")
    run(
        pb.Command(
            task_progress=pb.TaskProgress(
                task_id="running", attempt=1, worker_id="w1", progress=0.5, message="half"
            )
        )
    )
    assign("assigned", worker="w3")
    assign("retrying", worker="w3")
    finish("retrying", False, worker="w3")
    run(
        pb.Command(
            request_id="req-cancel",
            cancel_tasks=pb.CancelTasks(task_ids=["cancelme"], reason="no", requested_by="op"),
        )
    )
    run(pb.Command(reprioritize=pb.Reprioritize(task_id="ready", priority=pb.PRIORITY_HIGH)))

    wf_done = pb.WorkflowSpec(id="wf-done", name="done", tasks=[spec("x"), spec("y", "x")])
    run(pb.Command(submit_workflow=pb.SubmitWorkflow(workflow=wf_done)))
    for t in ("wf-done/x", "wf-done/y"):
        assign(t, worker="w1")
        finish(t, True, worker="w1")
    wf_live = pb.WorkflowSpec(
        name="live", on_failure=pb.ON_FAILURE_CONTINUE, tasks=[spec("p"), spec("q", "p")]
    )
    run(pb.Command(request_id="req-wf", submit_workflow=pb.SubmitWorkflow(workflow=wf_live)))
    wf_gone = pb.WorkflowSpec(id="wf-gone", name="gone", tasks=[spec("z")])
    run(pb.Command(submit_workflow=pb.SubmitWorkflow(workflow=wf_gone)))
    run(pb.Command(cancel_tasks=pb.CancelTasks(workflow_id="wf-gone", requested_by="op")))

    # Deleted records: a task on its own and a whole workflow.
    cancel_doomed = pb.CancelTasks(task_ids=["doomed"])
    run(pb.Command(cancel_tasks=cancel_doomed))
    delete = pb.DeleteRecords(task_ids=["doomed"], workflow_ids=["wf-gone"])
    run(pb.Command(request_id="req-delete", delete_records=delete))
    run(pb.Command(request_id="req-late", reprioritize=pb.Reprioritize(task_id="ready")))

    run(
        pb.Command(
            set_worker_state=pb.SetWorkerState(worker_id="w3", state=pb.WORKER_STATE_DRAINING)
        )
    )
    run(
        pb.Command(
            set_worker_state=pb.SetWorkerState(
                worker_id="w2", state=pb.WORKER_STATE_LOST, retry_delay_ms=5_000, reason="gone"
            )
        )
    )
    return sm


def main() -> None:
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_bytes(build().snapshot())


if __name__ == "__main__":
    main()
