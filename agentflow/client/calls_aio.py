"""What `AsyncClient` does around gRPC that is not a rename of what `Client` does.

`calls_sync` has the same names, blocking. aio.py imports this module; the generated
sync.py imports that one (scripts/gen_sync_client.py maps the module name), so these
few lines are the only client code written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import grpc

__all__ = ["close_channels", "wait_for_end"]


async def close_channels(channels: Iterable[grpc.aio.Channel]) -> None:
    await asyncio.gather(*(channel.close() for channel in channels))


async def wait_for_end(call: grpc.aio.Call, seconds: float) -> None:
    """Until the call ends by itself, `seconds` at most."""
    if call.done():
        return
    with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
        async with asyncio.timeout(seconds):
            await call.code()
