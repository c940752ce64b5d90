"""The leader's expiry decision: leases end on time on the clock that granted them,
and a lease inherited from an earlier leader keeps its whole remaining time on the
new leader's clock, even when that clock runs ahead."""

from __future__ import annotations

from agentflow._proto import state_pb2 as pb
from agentflow.master.lock_expiry import LockExpiry
from agentflow.scheduler.proposer import Proposer
from agentflow.state import SchedulerState, encode


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


class NoNode:
    async def propose(self, command: bytes) -> object:
        raise AssertionError("not proposing in this test")


def grant(sm: SchedulerState, index: int, now: int, name: str, ttl: int) -> None:
    cmd = pb.Command(now_ms=now, acquire_lock=pb.AcquireLock(name=name, owner="o", ttl_ms=ttl))
    result = sm.apply(index, encode(cmd))
    assert result.lock_token == index


def expiry(sm: SchedulerState, clock: Clock) -> LockExpiry:
    return LockExpiry(sm, Proposer(NoNode(), sm, clock=clock))


def test_a_lease_is_due_at_its_end_on_the_granting_leaders_clock() -> None:
    sm = SchedulerState()
    clock = Clock(10_000)
    e = expiry(sm, clock)
    e.start_term()
    grant(sm, 1, 10_000, "a", 1_000)
    assert e.due(10_999) == ([], 11_000)
    assert e.due(11_000) == (["a"], None)


def test_an_inherited_lease_keeps_its_remaining_time_on_a_clock_that_runs_ahead() -> None:
    sm = SchedulerState()
    grant(sm, 1, 10_000, "a", 1_000)  # the old leader: ends at 11_000, 1_000 ms left
    clock = Clock(50_000)  # the new leader's clock is 40 s ahead
    e = expiry(sm, clock)
    e.start_term()
    names, upcoming = e.due(50_500)
    assert names == [] and upcoming == 51_000
    assert e.due(51_000)[0] == ["a"]


def test_an_inherited_lease_renewed_in_the_new_term_follows_the_new_stamp() -> None:
    sm = SchedulerState()
    grant(sm, 1, 10_000, "a", 1_000)
    e = expiry(sm, Clock(50_000))
    e.start_term()
    renew = pb.Command(
        now_ms=50_100, renew_lock=pb.RenewLock(name="a", owner="o", token=1, ttl_ms=300)
    )
    assert not sm.apply(2, encode(renew)).HasField("error")
    assert e.due(50_399) == ([], 50_400)
    assert e.due(50_400)[0] == ["a"]


def test_a_clock_behind_never_shortens_a_lease() -> None:
    sm = SchedulerState()
    grant(sm, 1, 10_000, "a", 1_000)
    e = expiry(sm, Clock(5_000))
    e.start_term()
    # The proposer never stamps a time before the last applied one, and the lease
    # ends at its own end on that time line.
    assert e.proposer.now_ms() == 10_000
    assert e.due(10_999)[0] == [] and e.due(11_000)[0] == ["a"]
