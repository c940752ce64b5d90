"""The lock domain: grants fenced by the Raft index, FIFO handoff, renewal, expiry
decided by the leader but checked at apply, waiter deadlines, bounds, snapshots."""

from __future__ import annotations

import pytest

from agentflow._proto import state_pb2 as pb
from agentflow.rules.limits import (
    MAX_LOCK_NAME_BYTES,
    MAX_LOCK_TTL_MS,
    MAX_LOCK_WAITERS,
    MIN_LOCK_TTL_MS,
)
from agentflow.state import ChangeSet, SchedulerState, encode
from agentflow.state.errors import FAILED_PRECONDITION, INVALID_ARGUMENT

TTL = 1_000


class Log:
    """A state machine fed commands at increasing indexes, at a settable time."""

    def __init__(self) -> None:
        self.sm = SchedulerState()
        self.index = 0
        self.now = 10_000
        self.changes: list[ChangeSet] = []
        self.sm.add_listener(self.changes.append)

    def apply(self, **kind: object) -> pb.CommandResult:
        self.index += 1
        cmd = pb.Command(now_ms=self.now, **kind)  # type: ignore[arg-type]
        return self.sm.apply(self.index, encode(cmd))

    def acquire(self, name: str, owner: str, ttl: int = TTL, **kw: object) -> pb.CommandResult:
        req = pb.AcquireLock(name=name, owner=owner, ttl_ms=ttl, **kw)  # type: ignore[arg-type]
        return self.apply(acquire_lock=req)

    def release(self, name: str, owner: str, token: int) -> pb.CommandResult:
        return self.apply(release_lock=pb.ReleaseLock(name=name, owner=owner, token=token))

    def renew(self, name: str, owner: str, token: int, ttl: int = TTL) -> pb.CommandResult:
        req = pb.RenewLock(name=name, owner=owner, token=token, ttl_ms=ttl)
        return self.apply(renew_lock=req)

    def leave(self, name: str, owner: str) -> pb.CommandResult:
        return self.apply(leave_lock_queue=pb.LeaveLockQueue(name=name, owner=owner))

    def expire(self, *names: str, delay: int = 0) -> pb.CommandResult:
        return self.apply(expire_locks=pb.ExpireLocks(names=names, lock_delay_ms=delay))


def refused(result: pb.CommandResult, code: int, field: str, *words: str) -> None:
    assert result.HasField("error"), result
    assert (result.error.code, result.error.field) == (code, field), result.error
    for word in words:
        assert word in result.error.message, result.error.message


@pytest.fixture
def log() -> Log:
    return Log()


def test_acquire_on_a_free_lock_grants_with_the_index_as_token(log: Log) -> None:
    r = log.acquire("db", "alice")
    assert not r.HasField("error")
    assert (r.lock_token, r.lock_expires_ms) == (1, 10_000 + TTL)
    lock = log.sm.lock("db")
    assert lock is not None
    assert (lock.owner, lock.token, lock.granted_ms, lock.expires_ms) == (
        "alice",
        1,
        10_000,
        11_000,
    )
    assert log.changes[-1] == ChangeSet(1, locks=("db",))
    assert [k.name for k in log.sm.locks()] == ["db"]


def test_acquire_on_a_held_lock_is_refused_naming_the_holder_and_changes_nothing(
    log: Log,
) -> None:
    log.acquire("db", "alice")
    before = log.sm.snapshot()
    r = log.acquire("db", "bob")
    refused(r, FAILED_PRECONDITION, "name", "'db'", "'alice'", "11000 ms")
    after = pb.StateSnapshot.FromString(log.sm.snapshot())
    after.applied_index = 1
    assert after.SerializeToString(deterministic=True) == before


def test_the_holder_acquiring_again_or_a_waiter_queuing_twice_is_refused(log: Log) -> None:
    log.acquire("db", "alice")
    refused(log.acquire("db", "alice", wait=True), FAILED_PRECONDITION, "owner", "renew")
    assert log.acquire("db", "bob", wait=True).lock_position == 1
    refused(log.acquire("db", "bob", wait=True), FAILED_PRECONDITION, "owner", "position 1")


def test_waiters_are_granted_in_fifo_order_with_strictly_increasing_tokens(log: Log) -> None:
    tokens = [log.acquire("db", "alice").lock_token]
    for position, owner in enumerate(["bob", "carol", "dave"], start=1):
        r = log.acquire("db", owner, wait=True)
        assert (r.lock_token, r.lock_position, r.lock_holder) == (0, position, "alice")
    holders = []
    for _ in range(4):
        lock = log.sm.lock("db")
        assert lock is not None
        holders.append(lock.owner)
        log.now += 10
        r = log.release("db", lock.owner, lock.token)
        assert not r.HasField("error")
        if r.lock_grants:
            (grant,) = r.lock_grants
            assert grant.token == log.index  # the releasing entry's index
            assert grant.expires_ms == log.now + TTL
            tokens.append(grant.token)
    assert holders == ["alice", "bob", "carol", "dave"]
    assert tokens == sorted(set(tokens)) and len(tokens) == 4
    assert log.sm.lock("db") is None  # nobody holds or waits: forgotten
    # A lock taken again later still gets a higher token.
    assert log.acquire("db", "erin").lock_token > tokens[-1]


def test_a_waiter_that_leaves_is_never_granted_and_the_next_one_is(log: Log) -> None:
    token = log.acquire("db", "alice").lock_token
    log.acquire("db", "bob", wait=True)
    log.acquire("db", "carol", wait=True)
    left = log.leave("db", "bob")
    assert not left.HasField("error") and left.lock_token == 0
    lock = log.sm.lock("db")
    assert lock is not None and [w.owner for w in lock.waiters] == ["carol"]
    (grant,) = log.release("db", "alice", token).lock_grants
    assert grant.owner == "carol"


def test_leaving_after_the_grant_reports_the_lease_and_leaving_twice_is_harmless(
    log: Log,
) -> None:
    token = log.acquire("db", "alice").lock_token
    log.acquire("db", "bob", wait=True)
    (grant,) = log.release("db", "alice", token).lock_grants
    # The grant reached bob's entry before his wait ended: his lease is reported,
    # not taken away.
    left = log.leave("db", "bob")
    assert (left.lock_token, left.lock_expires_ms) == (grant.token, grant.expires_ms)
    lock = log.sm.lock("db")
    assert lock is not None and lock.owner == "bob"
    assert log.leave("db", "nobody").lock_token == 0
    assert log.leave("free", "bob").lock_token == 0
    refused(log.leave("", "bob"), INVALID_ARGUMENT, "name")


def test_the_last_waiter_leaving_a_lock_in_its_delay_keeps_the_delay(log: Log) -> None:
    log.acquire("db", "alice", ttl=TTL)
    log.acquire("db", "bob", wait=True)
    log.now += TTL
    log.expire("db", delay=500)
    lock = log.sm.lock("db")
    assert lock is not None and not lock.owner and lock.lock_delay_until_ms == log.now + 500
    log.leave("db", "bob")
    lock = log.sm.lock("db")
    assert lock is not None and not lock.waiters and lock.lock_delay_until_ms


def test_release_by_anyone_but_the_holder_is_refused_naming_the_field(log: Log) -> None:
    token = log.acquire("db", "alice").lock_token
    refused(log.release("db", "bob", token), FAILED_PRECONDITION, "owner", "'alice'")
    refused(log.release("db", "alice", token + 7), FAILED_PRECONDITION, "token", str(token + 7))
    refused(log.release("other", "alice", token), FAILED_PRECONDITION, "name", "not held")
    refused(log.release("db", "alice", 0), INVALID_ARGUMENT, "token")
    lock = log.sm.lock("db")
    assert lock is not None and lock.owner == "alice"
    assert not log.release("db", "alice", token).HasField("error")


def test_renew_extends_the_lease_and_only_for_the_holder(log: Log) -> None:
    token = log.acquire("db", "alice").lock_token
    log.now += 600
    r = log.renew("db", "alice", token, ttl=2_000)
    assert (r.lock_token, r.lock_expires_ms) == (token, log.now + 2_000)
    refused(log.renew("db", "bob", token), FAILED_PRECONDITION, "owner")
    refused(log.renew("db", "alice", token + 1), FAILED_PRECONDITION, "token")
    refused(log.renew("db", "alice", token, ttl=1), INVALID_ARGUMENT, "ttl_ms")
    lock = log.sm.lock("db")
    assert lock is not None and lock.expires_ms == 10_600 + 2_000


def test_expiry_respects_a_renewal_applied_before_it(log: Log) -> None:
    token = log.acquire("db", "alice").lock_token
    log.now += TTL
    assert log.sm.expired_locks(log.now) == ["db"]  # the leader decides to expire...
    log.renew("db", "alice", token)  # ...but the renewal is committed first
    r = log.expire("db")
    assert list(r.expired_locks) == []
    assert list(r.rejected) == [f"db: lease runs until {log.now + TTL} ms"]
    lock = log.sm.lock("db")
    assert lock is not None and (lock.owner, lock.token) == ("alice", token)
    assert log.sm.expired_locks(log.now) == []


def test_expiry_hands_the_lock_to_the_next_waiter(log: Log) -> None:
    log.acquire("db", "alice")
    log.acquire("db", "bob", wait=True)
    log.now += 999
    r = log.expire("db")
    assert list(r.expired_locks) == [] and r.rejected  # not due yet
    log.now += 1
    r = log.expire("db", "ghost")
    assert list(r.expired_locks) == ["db"]
    assert list(r.rejected) == ["ghost: no such lock"]
    assert [(g.name, g.owner, g.token) for g in r.lock_grants] == [("db", "bob", log.index)]
    # A renewal by the holder that lost it names the field.
    refused(log.renew("db", "alice", 1), FAILED_PRECONDITION, "owner", "'bob'")


def test_lock_delay_holds_the_lock_back_after_an_expiry(log: Log) -> None:
    log.acquire("db", "alice")
    log.now += TTL
    r = log.expire("db", delay=500)
    assert list(r.expired_locks) == ["db"] and not r.lock_grants
    refused(log.acquire("db", "bob"), FAILED_PRECONDITION, "name", "lock delay")
    assert log.acquire("db", "bob", wait=True).lock_position == 1
    assert log.sm.expired_locks(log.now) == []
    log.now += 500
    assert log.sm.expired_locks(log.now) == ["db"]
    r = log.expire("db")
    assert [(g.owner, g.token) for g in r.lock_grants] == [("bob", log.index)]
    assert list(r.expired_locks) == []


def test_a_lock_whose_delay_passed_with_no_waiter_is_granted_to_a_newcomer(log: Log) -> None:
    log.acquire("db", "alice")
    log.now += TTL
    log.expire("db", delay=200)
    log.now += 200
    r = log.acquire("db", "bob")
    assert r.lock_token == log.index


def test_waiters_past_their_deadline_are_dropped_not_granted(log: Log) -> None:
    log.acquire("db", "alice")
    log.acquire("db", "bob", wait=True, wait_deadline_ms=log.now + 100)
    log.acquire("db", "carol", wait=True, wait_deadline_ms=log.now + 5_000)
    log.now += 100  # bob's deadline: dead at exactly his deadline
    r = log.release("db", "alice", 1)
    assert [g.owner for g in r.lock_grants] == ["carol"]
    lock = log.sm.lock("db")
    assert lock is not None and list(lock.waiters) == []
    # A dead waiter does not count as one when queuing again.
    log.acquire("x", "alice")
    log.acquire("x", "bob", wait=True, wait_deadline_ms=log.now + 100)
    log.now += 100
    assert log.acquire("x", "bob", wait=True).lock_position == 1


def test_only_dead_waiters_left_on_a_free_lock_means_free(log: Log) -> None:
    log.acquire("db", "alice")
    log.acquire("db", "bob", wait=True, wait_deadline_ms=log.now + 100)
    log.now += TTL
    log.expire("db", delay=50)  # bob is dead by now: the delay keeps the record
    log.now += 50
    r = log.acquire("db", "carol")
    assert r.lock_token == log.index
    lock = log.sm.lock("db")
    assert lock is not None and list(lock.waiters) == []


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * (MAX_LOCK_NAME_BYTES + 1)}, "name"),
        ({"name": "é" * (MAX_LOCK_NAME_BYTES // 2 + 1)}, "name"),  # bytes, not characters
        ({"name": "a\0b"}, "name"),
        ({"owner": ""}, "owner"),
        ({"owner": "o" * 257}, "owner"),
        ({"ttl_ms": MIN_LOCK_TTL_MS - 1}, "ttl_ms"),
        ({"ttl_ms": MAX_LOCK_TTL_MS + 1}, "ttl_ms"),
        ({"wait_deadline_ms": 20_000}, "wait_deadline_ms"),  # without wait
        ({"wait": True, "wait_deadline_ms": 10_000}, "wait_deadline_ms"),  # not after now
        ({"wait": True, "wait_deadline_ms": -1}, "wait_deadline_ms"),
        ({"wait": True, "wait_deadline_ms": 10_000 + 25 * 3600 * 1000}, "wait_deadline_ms"),
    ],
)
def test_bad_acquires_are_refused_naming_the_field(
    log: Log, kw: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"name": "db", "owner": "alice", "ttl_ms": TTL, **kw}
    r = log.apply(acquire_lock=pb.AcquireLock(**args))  # type: ignore[arg-type]
    refused(r, INVALID_ARGUMENT, field)
    assert log.sm.locks() == []


def test_bounds_accept_their_edges(log: Log) -> None:
    assert log.acquire("n" * MAX_LOCK_NAME_BYTES, "o" * 256, ttl=MIN_LOCK_TTL_MS).lock_token
    assert log.acquire("é" * (MAX_LOCK_NAME_BYTES // 2), "o", ttl=MAX_LOCK_TTL_MS).lock_token


def test_bad_expire_locks_are_refused_naming_the_field(log: Log) -> None:
    log.acquire("db", "alice")
    log.now += TTL
    refused(log.expire("db", ""), INVALID_ARGUMENT, "names[1]")
    refused(log.expire("db", delay=-1), INVALID_ARGUMENT, "lock_delay_ms")
    refused(log.expire("db", delay=61_000), INVALID_ARGUMENT, "lock_delay_ms")
    assert log.sm.lock("db") is not None and log.sm.lock("db").owner == "alice"  # type: ignore[union-attr]


def test_the_waiter_queue_is_bounded(log: Log) -> None:
    log.acquire("db", "alice")
    for i in range(MAX_LOCK_WAITERS):
        assert not log.acquire("db", f"w{i}", wait=True).HasField("error")
    refused(
        log.acquire("db", "late", wait=True), FAILED_PRECONDITION, "wait", str(MAX_LOCK_WAITERS)
    )


def test_the_number_of_locks_is_bounded(log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    # 100,000 real acquires would be slow in a unit test; the cap is one constant.
    monkeypatch.setattr("agentflow.state.locks.MAX_LOCKS", 3)
    for name in "abc":
        assert log.acquire(name, "alice").lock_token
    refused(log.acquire("d", "alice"), FAILED_PRECONDITION, "name", "at most 3")
    assert log.acquire("a", "bob", wait=True).lock_position == 1  # an existing lock is fine


def test_snapshot_round_trip_keeps_locks_waiters_and_delays(log: Log) -> None:
    log.acquire("db", "alice")
    log.acquire("db", "bob", wait=True, wait_deadline_ms=log.now + 3_000)
    log.acquire("db", "carol", wait=True)
    log.acquire("cache", "bob")
    log.now += TTL
    log.expire("cache", delay=400)
    log.acquire("cache", "dave", wait=True)
    data = log.sm.snapshot()
    restored = SchedulerState()
    seen: list[ChangeSet] = []
    restored.add_listener(seen.append)
    restored.restore(data)
    assert restored.snapshot() == data
    assert seen[-1].locks == ("db", "cache")
    lock = restored.lock("db")
    assert lock is not None and [w.owner for w in lock.waiters] == ["bob", "carol"]
    cache = restored.lock("cache")
    assert cache is not None and cache.lock_delay_until_ms == log.now + 400
    # Both continue alike.
    for sm in (log.sm, restored):
        sm.apply(
            log.index + 1,
            encode(
                pb.Command(
                    now_ms=log.now, release_lock=pb.ReleaseLock(name="db", owner="alice", token=1)
                )
            ),
        )
    assert restored.snapshot() == log.sm.snapshot()


def test_a_snapshot_without_locks_restores_to_none(log: Log) -> None:
    log.acquire("db", "alice")
    old = pb.StateSnapshot(applied_index=5, last_now_ms=1).SerializeToString()
    log.sm.restore(old)
    assert log.sm.locks() == [] and log.sm.lock("db") is None
    assert log.changes[-1].locks == ("db",)  # listeners hear the lock is gone
