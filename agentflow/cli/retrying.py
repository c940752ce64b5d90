"""Telling a person at a terminal that the CLI is retrying, instead of 30 silent seconds.

The first retry of a call prints one line at once (which masters, why, for how long);
while the call keeps failing, one more line every `REPEAT_S`. Nothing for a redirect to
the leader a master named (that is routine), nothing off a terminal or with `-o json`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO

import grpc

from agentflow.client.errors import RpcStatus
from agentflow.client.retry import RetryNotice

FORCE_TTY_ENV = "AGENTFLOW_FORCE_TTY"
REPEAT_S = 5.0
_MAX_DETAILS = 100


def stderr_is_terminal() -> bool:
    """stderr is a terminal, or AGENTFLOW_FORCE_TTY=1 says to behave as if it were."""
    if os.environ.get(FORCE_TTY_ENV, "") == "1":
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def reason(status: RpcStatus) -> str:
    """A few words for why an attempt failed (gRPC's connect errors are long)."""
    details = status.details.strip()
    lowered = details.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if "failed to connect" in lowered:
        return "cannot connect"
    if status.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return "no answer in time"
    words = status.code.name.lower().replace("_", " ")
    if not details:
        return words
    first = details.splitlines()[0]
    if len(first) > _MAX_DETAILS:
        first = first[: _MAX_DETAILS - 3] + "..."
    return f"{words}: {first}"


def seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 1 else f"{value:.1f} s"


def retry_line(notice: RetryNotice, first: bool) -> str:
    masters = ", ".join(notice.addresses)
    why = reason(notice.status)
    if first:
        return (
            f"agentflow: {notice.operation}: no master answered at {masters} ({why}); "
            f"retrying for up to {seconds(notice.deadline)}"
        )
    return (
        f"agentflow: {notice.operation}: still retrying after {seconds(notice.elapsed)} "
        f"of {seconds(notice.deadline)} ({notice.address}: {why})"
    )


class RetryReporter:
    """`RetryPolicy.on_retry` for the CLI: writes `retry_line`s to `stream`, sparingly."""

    def __init__(
        self,
        stream: IO[str],
        *,
        repeat_s: float = REPEAT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._repeat_s = repeat_s
        self._clock = clock
        self._last: float | None = None

    def __call__(self, notice: RetryNotice) -> None:
        if notice.following_hint:
            return
        now = self._clock()
        if self._last is not None and now - self._last < self._repeat_s:
            return
        first = self._last is None or notice.retry == 1
        self._last = now
        try:
            self._stream.write(retry_line(notice, first) + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # a closed terminal must not end the call
            pass
