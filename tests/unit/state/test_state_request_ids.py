"""The request-id table: a retry (same id, same request) answers with the first result;
the same id with a different request is refused, naming request_id, rather than answered
as a duplicate while the new request is silently dropped. The digest that tells them
apart is part of the replicated table, so a restored replica decides the same."""

from __future__ import annotations

import hashlib

from agentflow._proto import state_pb2 as pb
from agentflow.state import SchedulerState, encode
from agentflow.state.errors import FAILED_PRECONDITION, INVALID_ARGUMENT


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def submit(sm: SchedulerState, index: int, command: str, rid: str, dig: bytes) -> pb.CommandResult:
    cmd = pb.Command(
        request_id=rid,
        request_digest=dig,
        now_ms=1000 + index,
        submit_tasks=pb.SubmitTasks(tasks=[pb.TaskSpec(command=command)]),
    )
    return sm.apply(index, encode(cmd))


def test_a_retry_is_a_duplicate_with_the_first_result() -> None:
    sm = SchedulerState()
    first = submit(sm, 1, "shell:a", "r1", digest("a"))
    again = submit(sm, 2, "shell:a", "r1", digest("a"))
    assert again.duplicate and list(again.task_ids) == list(first.task_ids)
    assert again.index == first.index == 1
    assert len(sm.tasks) == 1


def test_the_same_id_for_a_different_request_is_refused_and_changes_nothing() -> None:
    sm = SchedulerState()
    first = submit(sm, 1, "shell:a", "r1", digest("a"))
    before = sm.snapshot()
    other = submit(sm, 2, "shell:b", "r1", digest("b"))
    assert not other.duplicate
    assert (other.error.code, other.error.field) == (FAILED_PRECONDITION, "request_id")
    assert "already used for a different request (applied at index 1)" in other.error.message
    assert list(sm.tasks) == list(first.task_ids)
    # Only the applied index moved; the first record still answers a true retry.
    restored = pb.StateSnapshot.FromString(sm.snapshot())
    restored.applied_index = 1
    restored.last_now_ms = 1001
    assert restored.SerializeToString(deterministic=True) == before
    assert submit(sm, 3, "shell:a", "r1", digest("a")).duplicate


def test_the_digest_survives_snapshot_and_restore() -> None:
    sm = SchedulerState()
    submit(sm, 1, "shell:a", "r1", digest("a"))
    replica = SchedulerState()
    replica.restore(sm.snapshot())
    assert replica.request("r1") is not None
    assert replica.request("r1").digest == digest("a")  # type: ignore[union-attr]
    refused = submit(replica, 2, "shell:b", "r1", digest("b"))
    assert refused.error.code == FAILED_PRECONDITION
    assert submit(replica, 3, "shell:a", "r1", digest("a")).duplicate
    assert len(replica.tasks) == 1


def test_without_a_digest_on_either_side_a_repeat_stays_a_duplicate() -> None:
    # Records written before digests existed, and commands the cluster makes itself.
    sm = SchedulerState()
    submit(sm, 1, "shell:a", "old", b"")
    assert submit(sm, 2, "shell:b", "old", digest("b")).duplicate
    submit(sm, 3, "shell:a", "new", digest("a"))
    assert submit(sm, 4, "shell:b", "new", b"").duplicate


def test_a_malformed_request_id_or_digest_in_a_command_is_refused() -> None:
    sm = SchedulerState()
    long_id = submit(sm, 1, "shell:a", "x" * 129, digest("a"))
    assert (long_id.error.code, long_id.error.field) == (INVALID_ARGUMENT, "request_id")
    short = submit(sm, 2, "shell:a", "r", b"abc")
    assert (short.error.code, short.error.field) == (INVALID_ARGUMENT, "request_digest")
    assert not sm.tasks and sm.request("r") is None
