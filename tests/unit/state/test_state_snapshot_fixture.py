"""The snapshot wire format holds: a snapshot committed to testdata by an earlier
version restores to the state it was taken of, and snapshots back to the same bytes."""

from __future__ import annotations

from snapshot_fixture import FIXTURE, build

from agentflow._proto import state_pb2 as pb
from agentflow.state import SchedulerState, encode, state_name

EXPECTED_TASKS = {
    "ok": "SUCCEEDED",
    "bad": "FAILED",
    "skipme": "SKIPPED",
    "running": "RUNNING",
    "waits": "PENDING",
    "assigned": "ASSIGNED",
    "ready": "READY",
    "retrying": "PENDING",
    "cancelme": "CANCELLED",
    "1": "READY",
    "wf-done/x": "SUCCEEDED",
    "wf-done/y": "SUCCEEDED",
    "wf-2/p": "READY",
    "wf-2/q": "PENDING",
}
REQUESTS = ["req-w3", "req-submit", "req-cancel", "req-wf", "req-delete", "req-late"]


def restored() -> SchedulerState:
    sm = SchedulerState()
    sm.restore(FIXTURE.read_bytes())
    return sm


def test_resnapshot_is_byte_identical() -> None:
    data = FIXTURE.read_bytes()
    assert restored().snapshot() == data


def test_builder_still_writes_the_fixture() -> None:
    assert build().snapshot() == FIXTURE.read_bytes()


def test_restored_entities_are_the_expected_ones() -> None:
    sm = restored()
    assert {t.id: state_name(t.state) for t in sm.tasks.values()} == EXPECTED_TASKS
    assert list(sm.tasks) == list(EXPECTED_TASKS)  # creation order survives
    assert "doomed" not in sm.tasks and "wf-gone" not in sm.workflows  # deleted stay gone
    assert {w: s.state for w, s in sm.workflows.items()} == {
        "wf-done": pb.WORKFLOW_STATE_SUCCEEDED,
        "wf-2": pb.WORKFLOW_STATE_RUNNING,
    }
    assert {w: s.state for w, s in sm.workers.items()} == {
        "w1": pb.WORKER_STATE_ONLINE,
        "w2": pb.WORKER_STATE_LOST,
        "w3": pb.WORKER_STATE_DRAINING,
    }
    for rid in REQUESTS:
        assert sm.request(rid) is not None, rid
    assert sm.request("req-w1") is None  # pruned before the snapshot
    assert sm.request("req-submit").digest == bytes(range(32))  # type: ignore[union-attr]


def test_restored_state_equals_the_built_one() -> None:
    sm, built = restored(), build()
    assert sm.applied_index == built.applied_index
    assert sm.last_now_ms == built.last_now_ms
    assert list(sm.tasks.values()) == list(built.tasks.values())
    assert list(sm.workflows.values()) == list(built.workflows.values())
    assert list(sm.workers.values()) == list(built.workers.values())
    for rid in REQUESTS:
        assert sm.request(rid) == built.request(rid)
    # The indexes a restore rebuilds answer like the ones kept while applying.
    assert sm.counts() == built.counts()
    assert [t.id for t in sm.ready_tasks()] == [t.id for t in built.ready_tasks()]
    assert [t.id for t in sm.retry_waiting()] == [t.id for t in built.retry_waiting()]
    assert [t.id for t in sm.retry_waiting()] == ["retrying"]
    for wid in sm.workers:
        assert [t.id for t in sm.tasks_of_worker(wid)] == [t.id for t in built.tasks_of_worker(wid)]
        assert sm.held_count(wid) == built.held_count(wid)
    for task_id in sm.tasks:
        assert sm.blocking(task_id) == built.blocking(task_id)
        assert sm.dependents(task_id) == built.dependents(task_id)
    assert sm.blocking("waits") == ["running"]


def test_restored_state_goes_on_like_the_built_one() -> None:
    """Counters (generated ids, ready order) and indexes survive: the same commands
    give the same results and the same bytes after the restore."""
    sm, built = restored(), build()
    index = sm.applied_index
    now = sm.last_now_ms
    commands = [
        pb.Command(submit_tasks=pb.SubmitTasks(tasks=[pb.TaskSpec(command="shell:true")])),
        pb.Command(
            submit_workflow=pb.SubmitWorkflow(
                workflow=pb.WorkflowSpec(tasks=[pb.TaskSpec(id="t", command="shell:true")])
            )
        ),
        pb.Command(
            task_finished=pb.TaskFinished(
                task_id="running", attempt=1, worker_id="w1", success=True
            )
        ),
        pb.Command(request_id="req-late", reprioritize=pb.Reprioritize(task_id="ready")),
        pb.Command(
            set_worker_state=pb.SetWorkerState(worker_id="w3", state=pb.WORKER_STATE_OFFLINE)
        ),
        pb.Command(prune=pb.Prune(finished_before_ms=now + 10_000, workers_gone_before_ms=now)),
    ]
    for i, cmd in enumerate(commands, start=1):
        cmd.now_ms = now + 1_000 * i
        entry = encode(cmd)
        assert sm.apply(index + i, entry) == built.apply(index + i, entry)
    assert sm.snapshot() == built.snapshot()


def test_a_snapshot_from_before_locks_restores_to_no_locks() -> None:
    sm = restored()
    assert sm.locks() == [] and sm.expired_locks(2**62) == []
    # And takes locks from there on, fenced above the restored index.
    cmd = pb.Command(
        now_ms=sm.last_now_ms,
        acquire_lock=pb.AcquireLock(name="db", owner="alice", ttl_ms=1_000),
    )
    result = sm.apply(sm.applied_index + 1, encode(cmd))
    assert result.lock_token == sm.applied_index
