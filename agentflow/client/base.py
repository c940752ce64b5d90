"""What `Client` and `AsyncClient` share: configuration, routing state, deadlines."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike

from agentflow._proto import scheduler_pb2 as api
from agentflow.client.addresses import parse_addresses
from agentflow.client.channels import ChannelFactory, TlsConfig
from agentflow.client.durations import format_duration
from agentflow.client.errors import DeadlineExceededError, InvalidArgumentError
from agentflow.client.models import Workflow, WorkflowStatus
from agentflow.client.retry import Attempts, RetryPolicy, Router
from agentflow.client.workflow_file import load_workflow

# How long a waiter that has every listed task final waits for the server to end
# the watch before cancelling it (a server too old to end it never does).
END_GRACE_S = 1.0


class ClientBase:
    def __init__(
        self,
        masters: str | Sequence[str] | None = None,
        *,
        retry: RetryPolicy | None = None,
        tls: TlsConfig | None = None,
        token: str | None = None,
    ) -> None:
        self._router = Router(parse_addresses(masters))
        self._policy = retry if retry is not None else RetryPolicy()
        self._factory = ChannelFactory(tls, token)
        self._closed = False
        # The highest raft index a write of this client was committed at: a watch
        # passes it as min_index, so the master that already holds this client's
        # writes serves it without a ReadIndex round (read-your-writes).
        self._seen_index = 0

    @property
    def addresses(self) -> tuple[str, ...]:
        """The masters this client knows, including leaders it was pointed to."""
        return self._router.addresses

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._policy

    def _saw(self, response: object) -> None:
        index = getattr(response, "index", 0)
        if isinstance(index, int) and index > self._seen_index:
            self._seen_index = index

    def _watch_request(self, request: api.WatchTasksRequest) -> api.WatchTasksRequest:
        if self._seen_index > request.min_index:
            request.min_index = self._seen_index
        return request

    def _attempts(
        self,
        operation: str,
        *,
        write: bool = False,
        patience: float = 0.0,
        policy: RetryPolicy | None = None,
    ) -> Attempts:
        return Attempts(
            policy or self._policy, self._router, operation, write=write, patience=patience
        )


@dataclass(frozen=True, slots=True)
class Deadline:
    """The end of a caller's wait (`timeout=` seconds from now)."""

    seconds: float
    at: float  # time.monotonic()

    @classmethod
    def after(cls, timeout: float | None) -> Deadline | None:
        if timeout is None:
            return None
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise InvalidArgumentError("timeout", f"must be a number of seconds, got {timeout!r}")
        if math.isnan(timeout) or timeout < 0:
            raise InvalidArgumentError("timeout", f"must be >= 0, got {timeout!r}")
        return cls(float(timeout), time.monotonic() + timeout)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def error(self, what: str) -> DeadlineExceededError:
        return DeadlineExceededError(f"{what}: not finished after {format_duration(self.seconds)}")


def remaining(limit: Deadline | None) -> float | None:
    return None if limit is None else limit.remaining()


def as_workflow(workflow: Workflow | str | PathLike[str], id: str | None = None) -> Workflow:
    """The workflow itself or the one in a file; `id` (when given) replaces its id."""
    loaded = workflow if isinstance(workflow, Workflow) else load_workflow(workflow)
    return loaded if id is None else dataclasses.replace(loaded, id=id)


class Settle:
    """Polling for a workflow whose tasks are all final but whose own state may lag
    (the serving master has not applied that far yet)."""

    DELAYS = (0.02, 0.05, 0.1, 0.2, 0.5)

    def __init__(self, policy: RetryPolicy, limit: Deadline | None, what: str) -> None:
        self._limit = limit
        self._give_up = limit.at if limit is not None else time.monotonic() + policy.deadline
        self._what = what
        self._polls = 0

    def next_delay(self, status: WorkflowStatus) -> float | None:
        """None: return `status`. Without a caller deadline, a workflow that stays
        unfinished for a whole retry deadline is returned as the master reports it."""
        if status.is_finished:
            return None
        delay = self.DELAYS[min(self._polls, len(self.DELAYS) - 1)]
        self._polls += 1
        if time.monotonic() + delay < self._give_up:
            return delay
        if self._limit is not None:
            raise self._limit.error(self._what)
        return None
