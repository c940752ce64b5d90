"""What `Client` does around gRPC that is not a rename of what `AsyncClient` does.

The blocking twin of `calls_aio` (same names); the generated sync.py imports it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import grpc

__all__ = ["Background", "StopSignal", "close_channels", "wait_for_end"]


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


class StopSignal:
    """Asks a background loop to stop; the loop sleeps on it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleeps `seconds` or until set; True when set."""
        return self._event.wait(seconds)


class Background:
    """`target` running beside its starter: a daemon thread (a process that exits with
    a lease still renewing is not kept alive by it; the lease then expires)."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Until `target` returns (at once when called from `target` itself)."""
        if threading.current_thread() is self._thread:
            return
        self._thread.join()
