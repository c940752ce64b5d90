"""Retry decisions and leader routing, with a fake clock."""

from __future__ import annotations

import grpc
import pytest

from agentflow.client.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    RpcStatus,
    UnavailableError,
)
from agentflow.client.retry import Attempts, RetryNotice, RetryPolicy, Router, is_retryable

Code = grpc.StatusCode


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (RpcStatus(Code.UNAVAILABLE, ""), True),
        (RpcStatus(Code.ABORTED, "dropped"), True),
        (RpcStatus(Code.DEADLINE_EXCEEDED, ""), True),
        (RpcStatus(Code.CANCELLED, ""), True),
        (RpcStatus(Code.UNKNOWN, "commit unknown: term changed"), True),
        (RpcStatus(Code.UNKNOWN, "exception in handler"), False),
        (RpcStatus(Code.INVALID_ARGUMENT, "x: y"), False),
        (RpcStatus(Code.NOT_FOUND, ""), False),
        (RpcStatus(Code.FAILED_PRECONDITION, ""), False),
    ],
)
def test_what_is_retried(status: RpcStatus, retry: bool) -> None:
    assert is_retryable(status) is retry


def test_backoff_grows_with_jitter_and_caps() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0)
    assert policy.backoff(0, 0.0) == pytest.approx(0.05)
    assert policy.backoff(0, 0.999) == pytest.approx(0.0999, rel=1e-3)
    assert policy.backoff(3, 0.0) == pytest.approx(0.4)
    assert policy.backoff(50, 1.0) == pytest.approx(1.0)
    assert policy.backoff(10_000, 0.5) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "kwargs", [{"deadline": 0}, {"attempt_timeout": -1}, {"multiplier": 0.5}, {"max_backoff": 0}]
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)


def test_router_rotates_and_sticks() -> None:
    router = Router(["a:1", "b:1", "c:1"])
    assert router.current == "a:1"
    assert router.failed("a:1") is False
    assert router.current == "b:1"
    router.succeeded("b:1")
    assert router.current == "b:1"
    router.failed("c:1")  # a stale failure of another call does not move us
    assert router.current == "b:1"


def test_router_follows_hints_and_learns_addresses() -> None:
    router = Router(["a:1", "b:1"])
    assert router.failed("a:1", leader_hint="b:1") is True
    assert router.current == "b:1"
    assert router.failed("b:1", leader_hint="z:9") is True
    assert router.current == "z:9"
    assert router.addresses == ("a:1", "b:1", "z:9")
    assert router.failed("z:9", leader_hint="z:9") is False  # a hint at itself: rotate
    assert router.current == "a:1"


def _attempts(clock: Clock, **policy: float) -> tuple[Attempts, Router]:
    router = Router(["a:1", "b:1"])
    attempts = Attempts(
        RetryPolicy(**policy), router, "submit", write=True, clock=clock, rand=lambda: 0.0
    )
    return attempts, router


def test_final_errors_are_raised_at_once() -> None:
    attempts, _ = _attempts(Clock())
    with pytest.raises(InvalidArgumentError) as info:
        attempts.failed("a:1", RpcStatus(Code.INVALID_ARGUMENT, "tasks[0].cpu: bad"))
    assert info.value.field == "tasks[0].cpu"
    with pytest.raises(NotFoundError):
        attempts.failed("a:1", RpcStatus(Code.NOT_FOUND, "no task"))


def test_first_hint_is_immediate_then_backoff() -> None:
    clock = Clock()
    attempts, router = _attempts(clock, initial_backoff=0.1)
    assert attempts.failed("a:1", RpcStatus(Code.UNAVAILABLE, "", "b:1")) == 0.0
    assert router.current == "b:1"
    # b says a is the leader: ping-pong is slowed down
    assert attempts.failed("b:1", RpcStatus(Code.UNAVAILABLE, "", "a:1")) > 0
    assert attempts.failed("a:1", RpcStatus(Code.UNAVAILABLE, "")) > 0


def test_gives_up_with_unavailable_at_the_deadline() -> None:
    clock = Clock()
    attempts, _ = _attempts(clock, deadline=1.0, initial_backoff=0.25, max_backoff=0.25)
    delays = []
    with pytest.raises(UnavailableError) as info:
        for _ in range(100):
            delays.append(attempts.failed("a:1", RpcStatus(Code.UNAVAILABLE, "connection refused")))
            clock.now += delays[-1]
    # 0.125 s each (rand=0 -> half the base): the 8th would end exactly at the deadline
    assert delays == [0.125] * 7
    assert "within 1s" in str(info.value)
    assert "a:1" in str(info.value) and "connection refused" in str(info.value)


def test_maybe_applied_gives_deadline_exceeded() -> None:
    clock = Clock()
    attempts, _ = _attempts(clock, deadline=0.5)
    with pytest.raises(DeadlineExceededError) as info:
        while True:
            clock.now += attempts.failed("a:1", RpcStatus(Code.UNKNOWN, "commit unknown")) + 0.1
    assert "may or may not have been applied" in str(info.value)


def test_attempt_timeout_never_passes_the_deadline() -> None:
    clock = Clock()
    attempts, _ = _attempts(clock, deadline=12.0, attempt_timeout=10.0)
    assert attempts.timeout() == 10.0
    clock.now += 9.0
    assert attempts.timeout() == pytest.approx(3.0)
    clock.now += 5.0
    assert attempts.timeout() == 0.001


def test_on_retry_hears_each_retry_before_its_delay() -> None:
    heard: list[RetryNotice] = []
    clock = Clock()
    policy = RetryPolicy(deadline=10.0, initial_backoff=1.0, max_backoff=1.0, on_retry=heard.append)
    router = Router(["a:1", "b:2"])
    attempts = Attempts(policy, router, "list", clock=clock, rand=lambda: 0.0)
    clock.now += 0.25
    delay = attempts.failed("a:1", RpcStatus(Code.UNAVAILABLE, "connection refused"))
    assert [(n.address, n.addresses, n.retry, n.elapsed, n.delay) for n in heard] == [
        ("a:1", ("a:1", "b:2"), 1, 0.25, delay)
    ]
    assert heard[0].operation == "list" and heard[0].deadline == 10.0
    assert not heard[0].following_hint
    attempts.failed("b:2", RpcStatus(Code.UNAVAILABLE, "not leader", leader_address="c:3"))
    assert heard[-1].following_hint and heard[-1].delay == 0.0
    clock.now += 9.9
    with pytest.raises(UnavailableError):  # the last failure: no retry, nothing heard
        attempts.failed("c:3", RpcStatus(Code.UNAVAILABLE, ""))
    assert len(heard) == 2
    assert policy == RetryPolicy(deadline=10.0, initial_backoff=1.0, max_backoff=1.0)
