"""`@leader_only`: serve a call on the leader, forward it there from a follower."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from google.protobuf.message import Message

from agentflow.master.runtime import Runtime
from agentflow.master.status import Ctx


class _Servicer(Protocol):
    rt: Runtime


S = TypeVar("S", bound=_Servicer)
Q = TypeVar("Q", bound=Message)
R = TypeVar("R", bound=Message)
Handler = Callable[[S, Q, Ctx], Awaitable[R]]


def leader_only(service: str, response: type[R]) -> Callable[[Handler[S, Q, R]], Handler[S, Q, R]]:
    """The wrapped handler runs only on the leader; on a follower the same request
    goes to the leader's method of the same name and its answer (or error) comes back."""

    def wrap(fn: Handler[S, Q, R]) -> Handler[S, Q, R]:
        @functools.wraps(fn)
        async def handler(self: S, request: Q, context: Ctx) -> R:
            forwarder = self.rt.forwarder
            if await forwarder.leader_here(context):
                return await fn(self, request, context)
            return await forwarder.forward(
                service, fn.__name__, request, response.FromString, context
            )

        return handler

    return wrap
