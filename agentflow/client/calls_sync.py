"""What `Client` does around gRPC that is not a rename of what `AsyncClient` does.

The blocking twin of `calls_aio` (same names); the generated sync.py imports it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import grpc

__all__ = ["close_channels", "wait_for_end"]


def close_channels(channels: Iterable[grpc.Channel]) -> None:
    for channel in channels:
        channel.close()


def wait_for_end(call: grpc.Call, seconds: float) -> None:
    """Until the call ends by itself, `seconds` at most."""
    if not call.is_active():
        return
    ended = threading.Event()
    if call.add_callback(ended.set):  # False: it has ended already
        ended.wait(seconds)
