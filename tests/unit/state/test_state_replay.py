"""Property: the scheduler state is a deterministic function of its log.

Hypothesis writes logs of every command kind (valid and invalid submits, workflows
with cycles, assignments with right and wrong attempts, fresh and stale reports,
cancels, prunes, operator deletes (named and by age, allowed and refused), workers
coming and going, locks acquired, queued for, released, renewed and expired (by
holders and by others, with right and stale tokens), retried request ids, garbage
bytes), choosing ids from the state as it evolves. Then:

- replaying the log into two fresh machines gives byte-identical snapshots;
- restore(snapshot) then snapshot() is byte-identical, and a machine restored midway
  that applies the rest of the log ends byte-identical too;
- after every command: a final task never changes again (until pruned), attempts never
  decrease, and every index agrees with a recount from the entities; a lock's token
  only grows, its holder never also waits, and no owner waits twice.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agentflow._proto import state_pb2 as pb
from agentflow.state import ACTIVE_STATES, FINAL_STATES, SchedulerState, encode, state_name

WORKERS = ["w1", "w2", "w3"]
TASK_IDS = ["a", "b", "c", "d"]
WORKFLOW_IDS = ["wa", "wb"]
REQUEST_IDS = ["r1", "r2", "r3"]
LOCK_NAMES = ["L1", "L2"]
OWNERS = ["o1", "o2", "o3"]
# Weighted so that tasks get through their whole life in most logs.
KINDS = [
    *["submit"] * 3,
    *["workflow"] * 2,
    *["assign"] * 4,
    *["started"] * 2,
    "progress",
    *["finished"] * 4,
    "cancel",
    "reprioritize",
    "register",
    "worker_state",
    "requeue",
    "prune",
    *["delete"] * 2,
    *["acquire"] * 3,
    *["release"] * 2,
    "renew",
    *["expire"] * 2,
    "leave",
    "garbage",
]


def pick(data: st.DataObject, options: list[str], extra: list[str]) -> str:
    return data.draw(st.sampled_from(options + extra) if options else st.sampled_from(extra))


def some_task(data: st.DataObject, sm: SchedulerState, likely: list[str] | None = None) -> str:
    """Mostly one of `likely` (when there are any), sometimes any task or an unknown id."""
    if likely and not rarely(data):
        return data.draw(st.sampled_from(likely))
    return pick(data, list(sm.tasks), ["ghost"])


def rarely(data: st.DataObject) -> bool:
    """True one time in ten: invalid input should be tried, not dominate the log."""
    return data.draw(st.integers(0, 9)) == 0


def draw_spec(data: st.DataObject, known: list[str], local: bool) -> pb.TaskSpec:
    spec = pb.TaskSpec(
        command="shell:true",
        max_retries=data.draw(st.integers(0, 2)),
        env=data.draw(st.dictionaries(st.sampled_from(["B", "A", "C"]), st.just("1"), max_size=2)),
    )
    if data.draw(st.booleans()):
        spec.priority = data.draw(st.integers(0, 4))  # type: ignore[assignment]
    if not local and data.draw(st.booleans()):
        spec.id = data.draw(st.sampled_from(TASK_IDS))
    if known:
        spec.dependencies.extend(data.draw(st.lists(st.sampled_from(known), max_size=3)))
    return spec


def corrupt(data: st.DataObject, specs: list[pb.TaskSpec]) -> None:
    """Break one spec in one of the ways validation must catch."""
    spec = data.draw(st.sampled_from(specs))
    how = data.draw(st.sampled_from(["command", "priority", "dependency", "retries"]))
    if how == "command":
        spec.command = ""
    elif how == "priority":
        spec.priority = 5  # type: ignore[assignment]
    elif how == "dependency":
        spec.dependencies.append("zz")
    else:
        spec.max_retries = 101


def draw_command(data: st.DataObject, sm: SchedulerState, now: int) -> bytes:
    kind = data.draw(st.sampled_from(KINDS))
    if kind == "garbage":
        return data.draw(st.binary(max_size=24))
    cmd = pb.Command(now_ms=now)
    if data.draw(st.integers(0, 4)) == 0:
        cmd.request_id = data.draw(st.sampled_from(REQUEST_IDS))
    if kind == "submit":
        known = list(sm.tasks)[-6:]
        specs = []
        for _ in range(data.draw(st.integers(1, 4))):
            specs.append(draw_spec(data, known, local=False))
            if specs[-1].id:
                known.append(specs[-1].id)
        if rarely(data):
            corrupt(data, specs)
        cmd.submit_tasks.tasks.extend(specs)
    elif kind == "workflow":
        wf = cmd.submit_workflow.workflow
        if data.draw(st.booleans()):
            wf.id = data.draw(st.sampled_from(WORKFLOW_IDS))
        wf.on_failure = 2 if rarely(data) else data.draw(st.integers(0, 1))  # type: ignore[assignment]
        size = data.draw(st.integers(1, 5))
        for i in range(size):
            # Mostly earlier tasks (a DAG); sometimes any task (cycles, self edges).
            pool = [f"l{j}" for j in range(size if rarely(data) else i)]
            task = draw_spec(data, pool, local=True)
            task.id = f"l{i}"
            wf.tasks.append(task)
        if rarely(data):
            corrupt(data, list(wf.tasks))
    elif kind == "assign":
        queued = [t.id for t in sm.ready_tasks()] + [t.id for t in sm.retry_waiting()]
        for _ in range(data.draw(st.integers(1, 3))):
            task_id = some_task(data, sm, queued)
            task = sm.tasks.get(task_id)
            attempt = (task.attempt if task else 0) + data.draw(st.sampled_from([1, 1, 1, 0, 2]))
            cmd.assign_tasks.assignments.add(
                task_id=task_id,
                attempt=attempt,
                worker_id=data.draw(st.sampled_from(WORKERS)),
                gpu_indices=data.draw(st.lists(st.integers(0, 3), max_size=2)),
            )
    elif kind in ("started", "progress", "finished"):
        active = [t.id for t in sm.tasks.values() if t.state in ACTIVE_STATES]
        task_id = some_task(data, sm, active)
        task = sm.tasks.get(task_id)
        attempt = (task.attempt if task else 1) - data.draw(st.sampled_from([0, 0, 0, 1]))
        worker = task.worker_id if task and task.worker_id else "w1"
        if data.draw(st.integers(0, 5)) == 0:
            worker = data.draw(st.sampled_from(WORKERS))
        fence = {"task_id": task_id, "attempt": attempt, "worker_id": worker}
        if kind == "started":
            cmd.task_started.CopyFrom(pb.TaskStarted(**fence))
        elif kind == "progress":
            value = data.draw(st.floats(allow_nan=True, allow_infinity=True))
            cmd.task_progress.CopyFrom(pb.TaskProgress(progress=value, message="p", **fence))
        else:
            result = pb.TaskResult(
                exit_code=data.draw(st.integers(0, 3)),
                error=data.draw(st.sampled_from(["", "boom"])),
            )
            cmd.task_finished.CopyFrom(
                pb.TaskFinished(
                    success=data.draw(st.booleans()),
                    result=result,
                    retry_delay_ms=data.draw(st.integers(-10, 3_000)),
                    **fence,
                )
            )
    elif kind == "cancel":
        cmd.cancel_tasks.task_ids.extend(
            data.draw(st.lists(st.sampled_from([*list(sm.tasks), "ghost"]), max_size=2))
        )
        if data.draw(st.booleans()):
            cmd.cancel_tasks.workflow_id = pick(data, list(sm.workflows), ["nope"])
    elif kind == "reprioritize":
        cmd.reprioritize.task_id = some_task(data, sm)
        cmd.reprioritize.priority = data.draw(st.integers(0, 5))  # type: ignore[assignment]
    elif kind == "register":
        info = cmd.register_worker.info
        info.id = data.draw(st.sampled_from([*WORKERS, ""]))
        info.groups.extend(data.draw(st.sampled_from([["default"], ["default", "gpu"], []])))
        info.labels["zone"] = "a"
    elif kind == "worker_state":
        req = cmd.set_worker_state
        req.worker_id = data.draw(st.sampled_from(WORKERS))
        req.state = data.draw(st.sampled_from([1, 2, 3, 3, 4, 0]))  # type: ignore[assignment]
        req.retry_delay_ms = data.draw(st.integers(0, 2_000))
        req.reason = "silent"
    elif kind == "requeue":
        for _ in range(data.draw(st.integers(1, 2))):
            task_id = some_task(data, sm)
            task = sm.tasks.get(task_id)
            cmd.requeue_tasks.items.add(
                task_id=task_id,
                attempt=(task.attempt if task else 0) - data.draw(st.sampled_from([0, 0, 1])),
                reason="gone",
                retry_delay_ms=data.draw(st.integers(0, 1_000)),
            )
    elif kind == "delete":
        req = cmd.delete_records
        # Mostly finished records (allowed), sometimes any record or an unknown one.
        finished = [t.id for t in sm.tasks.values() if t.state in FINAL_STATES]
        for _ in range(data.draw(st.integers(0, 2))):
            req.task_ids.append(some_task(data, sm, finished))
        if data.draw(st.booleans()):
            ended = [w.id for w in sm.workflows.values() if w.state != pb.WORKFLOW_STATE_RUNNING]
            req.workflow_ids.append(pick(data, ended or list(sm.workflows), ["nope"]))
        if not (req.task_ids or req.workflow_ids) or rarely(data):
            req.finished_before_age_ms = data.draw(st.integers(-1 if rarely(data) else 0, 3_000))
    elif kind == "acquire":
        req = cmd.acquire_lock
        req.name = data.draw(st.sampled_from([*LOCK_NAMES, ""] if rarely(data) else LOCK_NAMES))
        req.owner = data.draw(st.sampled_from(OWNERS))
        req.ttl_ms = data.draw(
            st.sampled_from([50, 100, 1_000, 3_000] if rarely(data) else [100, 1_000, 3_000])
        )
        req.wait = data.draw(st.booleans())
        if req.wait and data.draw(st.booleans()):
            req.wait_deadline_ms = now + data.draw(st.integers(-100 if rarely(data) else 1, 4_000))
    elif kind in ("release", "renew"):
        held = [k.name for k in sm.locks() if k.owner]
        name = data.draw(st.sampled_from(held if held and not rarely(data) else LOCK_NAMES))
        lock = sm.lock(name)
        owner, token = (lock.owner, lock.token) if lock and lock.owner else ("o1", 1)
        if rarely(data):
            owner = data.draw(st.sampled_from(OWNERS))
        if rarely(data):
            token = data.draw(st.sampled_from([0, max(token - 1, 1), token + 1]))
        if kind == "release":
            cmd.release_lock.CopyFrom(pb.ReleaseLock(name=name, owner=owner, token=token))
        else:
            ttl = data.draw(st.sampled_from([1_000, 3_000, 99 if rarely(data) else 500]))
            cmd.renew_lock.CopyFrom(pb.RenewLock(name=name, owner=owner, token=token, ttl_ms=ttl))
    elif kind == "expire":
        # Mostly what the leader would propose, sometimes stale or unknown names.
        due = sm.expired_locks(now - data.draw(st.sampled_from([0, 0, 500])))
        cmd.expire_locks.names.extend(
            due or data.draw(st.lists(st.sampled_from([*LOCK_NAMES, "L9"]), max_size=2))
        )
        cmd.expire_locks.lock_delay_ms = data.draw(
            st.sampled_from([0, 0, 300, -1 if rarely(data) else 0])
        )
    elif kind == "leave":
        # Mostly a waiter leaving, sometimes the holder (granted first) or a stranger.
        queued = [(k.name, w.owner) for k in sm.locks() for w in k.waiters]
        if queued and not rarely(data):
            name, owner = data.draw(st.sampled_from(queued))
        else:
            name = data.draw(st.sampled_from(LOCK_NAMES))
            owner = data.draw(st.sampled_from(OWNERS))
        cmd.leave_lock_queue.CopyFrom(pb.LeaveLockQueue(name=name, owner=owner))
    elif kind == "prune":
        cmd.prune.finished_before_ms = now - data.draw(st.integers(0, 5_000))
        cmd.prune.keep_finished = data.draw(st.integers(0, 3))
        cmd.prune.requests_before_ms = now - data.draw(st.integers(0, 5_000))
    return encode(cmd)


# --- invariants ----------------------------------------------------------------------


def is_done(sm: SchedulerState, task: pb.Task | None) -> bool:
    if task is None or task.state == pb.TASK_STATE_SUCCEEDED:
        return True
    wf = sm.workflows.get(task.workflow_id)
    return (
        task.state == pb.TASK_STATE_FAILED
        and wf is not None
        and wf.on_failure == pb.ON_FAILURE_CONTINUE
    )


def check_indexes(sm: SchedulerState) -> None:
    tasks = list(sm.tasks.values())
    order = {t.id: i for i, t in enumerate(tasks)}
    states = [s for s in pb.TaskState.values() if s != pb.TASK_STATE_UNSPECIFIED]
    assert sm.counts() == {s: sum(1 for t in tasks if t.state == s) for s in states}
    for s in states:
        assert sm.tasks_in_state(s) == [t for t in tasks if t.state == s]
    ready = [t for t in tasks if t.state == pb.TASK_STATE_READY]
    assert sm.ready_tasks() == sorted(ready, key=lambda t: (t.ready_ms, t.ready_seq))
    for w in {*WORKERS, *(t.worker_id for t in tasks)}:
        held = [t for t in tasks if t.state in ACTIVE_STATES and t.worker_id == w]
        assert sm.tasks_of_worker(w) == held
    for t in tasks:
        unfinished = [d for d in t.dependencies if not is_done(sm, sm.tasks.get(d))]
        if t.state in FINAL_STATES:
            continue
        # An unfinished task never waits on a dependency that ended badly: it would
        # have been skipped.
        for d in unfinished:
            assert sm.tasks[d].state not in FINAL_STATES
        assert sm.blocking(t.id) == unfinished
        if t.state != pb.TASK_STATE_PENDING:
            assert unfinished == []
        elif not unfinished:
            assert t.worker_id == ""
    waiting = [t for t in tasks if t.state == pb.TASK_STATE_PENDING and not sm.blocking(t.id)]
    assert sm.retry_waiting() == sorted(waiting, key=lambda t: t.not_before_ms)
    for t in tasks:
        expected = [
            c.id
            for c in tasks
            if t.id in c.dependencies
            and ((c.workflow_id and c.workflow_id == t.workflow_id) or order[t.id] < order[c.id])
        ]
        assert sm.dependents(t.id) == expected
    for wf in sm.workflows.values():
        members = [sm.tasks[i] for i in wf.task_ids]
        assert all(m.workflow_id == wf.id for m in members)
        running = any(m.state not in FINAL_STATES for m in members)
        assert (wf.state == pb.WORKFLOW_STATE_RUNNING) == running
        if wf.state == pb.WORKFLOW_STATE_SUCCEEDED:
            assert all(m.state == pb.TASK_STATE_SUCCEEDED for m in members)
    for t in tasks:
        assert t.updated_index <= sm.applied_index
    assert [k.name for k in sm.locks()] == [k.name for k in sm.locks() if sm.lock(k.name) is k]
    for lock in sm.locks():
        waiting = [w.owner for w in lock.waiters]
        assert len(waiting) == len(set(waiting)) and lock.owner not in waiting
        assert lock.owner or lock.waiters or lock.lock_delay_until_ms
        if lock.owner:
            assert 0 < lock.token <= sm.applied_index


class History:
    """Remembers what must not change: final tasks' bytes and attempts."""

    def __init__(self) -> None:
        self.final: dict[str, bytes] = {}
        self.attempt: dict[str, int] = {}
        self.token: dict[str, int] = {}

    def check(self, sm: SchedulerState) -> None:
        for lock in sm.locks():
            if lock.owner:
                # The same lease, or a newer one: a lock's tokens never go back.
                assert lock.token >= self.token.get(lock.name, 0)
                self.token[lock.name] = lock.token
        for gone in [i for i in self.attempt if i not in sm.tasks]:
            del self.attempt[gone]
            self.final.pop(gone, None)
        for task_id, frozen in self.final.items():
            assert sm.tasks[task_id].SerializeToString(deterministic=True) == frozen
        for task in sm.tasks.values():
            assert task.attempt >= self.attempt.get(task.id, 0)
            self.attempt[task.id] = task.attempt
            if task.state in FINAL_STATES and task.id not in self.final:
                self.final[task.id] = task.SerializeToString(deterministic=True)


def _outcomes(result: pb.CommandResult) -> set[str]:
    found = set()
    if result.duplicate:
        found.add("duplicate request")
    elif result.HasField("error"):
        found.add(f"error on {result.error.field.split('[')[0].split('.')[0]}")
    if result.rejected:
        found.add("rejected report or assignment")
    if result.workflow_ids and not result.duplicate:
        found.add("deleted a workflow")
    if result.lock_grants:
        found.add("handed a lock to a waiter")
    if result.expired_locks:
        found.add("expired a lease")
    if result.lock_position:
        found.add("queued for a lock")
    return found


def replay(log: list[bytes], start: int = 0, sm: SchedulerState | None = None) -> SchedulerState:
    sm = sm or SchedulerState()
    for i, entry in enumerate(log[start:], start=start + 1):
        sm.apply(i, entry)
    return sm


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_log_replay_is_deterministic_and_invariants_hold(data: st.DataObject) -> None:
    sm = SchedulerState()
    history = History()
    log: list[bytes] = []
    outcomes: set[str] = set()
    now = 1_000
    seen: set[int] = set()
    length = data.draw(st.integers(8, 48), label="length")
    for index in range(1, length + 1):
        # Mostly forward; a new leader's clock may be a little behind.
        now += data.draw(st.integers(-200, 2_000))
        if index <= 2:
            # Workers first, so that most logs get as far as running tasks.
            info = pb.WorkerInfo(id=WORKERS[index - 1], groups=["default"])
            entry = encode(pb.Command(now_ms=now, register_worker=pb.RegisterWorker(info=info)))
        else:
            entry = draw_command(data, sm, now)
        log.append(entry)
        result = sm.apply(index, entry)
        assert result.index == index or result.duplicate
        outcomes.update(_outcomes(result))
        assert sm.applied_index == index
        history.check(sm)
        check_indexes(sm)
        seen.update(t.state for t in sm.tasks.values())
    # Visible with --hypothesis-show-statistics: what the logs actually exercised.
    for outcome in sorted(outcomes):
        event(outcome)
    for state in sorted(seen):
        event(f"a task was {state_name(state)}")
    if sm.workflows:
        event(f"workflows ended: {len([w for w in sm.workflows.values() if w.state > 1])}")
    final = sm.snapshot()
    assert replay(log).snapshot() == final
    assert replay(log).snapshot() == final
    restored = SchedulerState()
    restored.restore(final)
    assert restored.snapshot() == final
    check_indexes(restored)
    # A replica that caught up from a snapshot taken midway ends in the same place.
    cut = data.draw(st.integers(0, len(log)), label="cut")
    midway = SchedulerState()
    midway.restore(replay(log[:cut]).snapshot())
    assert replay(log, cut, midway).snapshot() == final
