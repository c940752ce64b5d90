"""What `AsyncClient` does around gRPC that is not a rename of what `Client` does.

`calls_sync` has the same names, blocking. aio.py imports this module; the generated
sync.py imports that one (scripts/gen_sync_client.py maps the module name), so these
few lines are the only client code written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import grpc

__all__ = ["Background", "StopSignal", "close_channels", "wait_for_end"]


async def close_channels(channels: Iterable[grpc.aio.Channel]) -> None:
    await asyncio.gather(*(channel.close() for channel in channels))


async def wait_for_end(call: grpc.aio.Call, seconds: float) -> None:
    """Until the call ends by itself, `seconds` at most."""
    if call.done():
        return
    with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
        async with asyncio.timeout(seconds):
            await call.code()


class StopSignal:
    """Asks a background loop to stop; the loop sleeps on it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, seconds: float) -> bool:
        """Sleeps `seconds` or until set; True when set."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        return self._event.is_set()


class Background:
    """`target` running beside its starter: a task in the running loop."""

    def __init__(self, target: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._task = asyncio.get_running_loop().create_task(target(), name=name)

    async def join(self) -> None:
        """Until `target` returns (at once when called from `target` itself)."""
        if asyncio.current_task() is self._task:
            return
        await asyncio.wait([self._task])
