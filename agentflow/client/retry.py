"""When to retry a call, where to send it next, and how long to wait: no I/O here.

Both clients run the same loop around one RPC:

    attempts = Attempts(policy, router, "submit")
    while True:
        address = router.current
        try:   response = call(address, timeout=attempts.timeout())
        except RpcError as exc:   sleep(attempts.failed(address, rpc_status(exc)))
        else:  router.succeeded(address); return response

Retried: UNAVAILABLE and ABORTED (nothing was applied), DEADLINE_EXCEEDED, CANCELLED
and UNKNOWN "commit unknown" (maybe applied: a write is retried with the same request
id, so the state machine applies it once). Everything else is final at once.

`RetryPolicy.on_retry` is told about each retry before its delay (the CLI uses it to
say on a terminal that it is still trying, instead of staying silent until the deadline).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from agentflow.client.errors import (
    AgentFlowError,
    DeadlineExceededError,
    RpcStatus,
    UnavailableError,
    error_from_status,
)

__all__ = ["Attempts", "RetryNotice", "RetryPolicy", "Router", "is_retryable"]

_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    }
)
# Codes after which the request may have been applied.
_AMBIGUOUS = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})


def is_retryable(status: RpcStatus) -> bool:
    return status.code in _RETRYABLE or status.commit_unknown


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """One retry about to happen, as `RetryPolicy.on_retry` sees it."""

    operation: str
    address: str  # the master whose attempt just failed
    addresses: tuple[str, ...]  # every master the client knows; it goes round them
    status: RpcStatus  # why the attempt failed
    retry: int  # 1 for the first retry of this call
    elapsed: float  # seconds since the call began
    delay: float  # seconds until the next attempt
    deadline: float  # the policy's deadline for the whole call
    following_hint: bool  # going straight to the leader a master named: no trouble


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Limits for one logical call (all its attempts), in seconds.

    The delay before retry n (0-based) is drawn from [b/2, b] with
    b = min(max_backoff, initial_backoff * multiplier**n). Following a fresh
    `leader-address` hint is immediate. `on_retry`, when set, is called in the
    caller's thread (or event loop) before each retry; what it raises ends the call.
    """

    deadline: float = 30.0
    attempt_timeout: float = 10.0
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0
    on_retry: Callable[[RetryNotice], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("deadline", "attempt_timeout", "initial_backoff", "max_backoff"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"RetryPolicy.{name} must be a positive number, got {value!r}")
        if self.multiplier < 1:
            raise ValueError(f"RetryPolicy.multiplier must be >= 1, got {self.multiplier!r}")

    def backoff(self, retry: int, rand: float) -> float:
        """Delay before retry number `retry`; `rand` is uniform in [0, 1)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** min(retry, 64))
        return base / 2 + base / 2 * rand


class Router:
    """The master to try next: sticky on the last one that answered, follows
    `leader-address` hints, otherwise goes round the known addresses."""

    def __init__(self, addresses: Sequence[str]) -> None:
        if not addresses:
            raise ValueError("Router needs at least one address")
        self._addresses = list(dict.fromkeys(addresses))
        self._current = 0

    @property
    def current(self) -> str:
        return self._addresses[self._current]

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(self._addresses)

    def succeeded(self, address: str) -> None:
        if address in self._addresses:
            self._current = self._addresses.index(address)

    def failed(self, address: str, leader_hint: str = "") -> bool:
        """Move on from `address`; True when that means following a new leader hint."""
        if leader_hint and leader_hint != address:
            if leader_hint not in self._addresses:
                self._addresses.append(leader_hint)
            self._current = self._addresses.index(leader_hint)
            return True
        # Only rotate if no concurrent call has already moved on from this address.
        if self.current == address:
            self._current = (self._current + 1) % len(self._addresses)
        return False


class Attempts:
    """The retry state of one logical call."""

    def __init__(
        self,
        policy: RetryPolicy,
        router: Router,
        operation: str,
        *,
        write: bool = False,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        patience: float = 0.0,
    ) -> None:
        # `patience`: seconds the server may rightly take on top of the policy's
        # limits (an acquire that waits for a lock), added to both of them.
        self._patience = patience
        self._policy = policy
        self._router = router
        self._operation = operation
        self._write = write
        self._clock = clock
        self._rand = rand
        self._began = clock()
        self._give_up = self._began + policy.deadline + patience
        self._retries = 0
        self._hints_followed = 0
        self._tried: dict[str, None] = {}

    @property
    def retries(self) -> int:
        return self._retries

    def timeout(self) -> float:
        """Timeout for the next attempt: the per-attempt limit within what is left."""
        limit = self._policy.attempt_timeout + self._patience
        return max(0.001, min(limit, self._give_up - self._clock()))

    def failed(self, address: str, status: RpcStatus) -> float:
        """Seconds to wait before the next attempt; raises when the call must stop."""
        self._tried[address] = None
        if not is_retryable(status):
            raise error_from_status(status)
        followed = self._router.failed(address, status.leader_address)
        # A first hint is followed at once; hints that keep bouncing get the backoff.
        self._hints_followed = self._hints_followed + 1 if followed else 0
        delay = (
            0.0 if self._hints_followed == 1 else self._policy.backoff(self._retries, self._rand())
        )
        self._retries += 1
        now = self._clock()
        if now + delay >= self._give_up:
            raise self._exhausted(status)
        if self._policy.on_retry is not None:
            self._policy.on_retry(
                RetryNotice(
                    operation=self._operation,
                    address=address,
                    addresses=self._router.addresses,
                    status=status,
                    retry=self._retries,
                    elapsed=now - self._began,
                    delay=delay,
                    deadline=self._policy.deadline,
                    following_hint=followed and self._hints_followed == 1,
                )
            )
        return delay

    def _exhausted(self, status: RpcStatus) -> AgentFlowError:
        tried = ", ".join(self._tried)
        within = f"within {self._policy.deadline:g}s"
        last = f"last error: {status.code.name}: {status.details or 'no details'}"
        if status.code in _AMBIGUOUS or status.commit_unknown:
            outcome = " (it may or may not have been applied)" if self._write else ""
            return DeadlineExceededError(
                f"{self._operation}: no answer {within}{outcome} (tried {tried}); {last}",
                code=status.code,
            )
        return UnavailableError(
            f"{self._operation}: no master could serve the call {within} (tried {tried}); {last}",
            code=status.code,
        )
