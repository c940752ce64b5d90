"""Captured task output: batched to the reporter, last bytes kept for the outcome.

A task's stdout and stderr arrive as raw chunks from pipes. Each stream is decoded
incrementally (UTF-8, invalid bytes replaced) and handed to the reporter in batches, so
a task printing a line per millisecond costs one report per batch, not per line:
a batch goes out when it reaches `batch_bytes`, or on the periodic tick
(`batch_seconds`), and at the end. Batches end at a line boundary when there is one;
a partial line waits for its newline for one tick at most (progress bars written with
'\\r' never end a line). Concatenating the batches of a stream gives the stream back.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
from collections.abc import Callable

TAIL_BYTES = 4096
READ_CHUNK = 65536


class StreamCapture:
    """One stream (stdout or stderr) of one task attempt. Not thread-safe: loop only."""

    def __init__(
        self, emit: Callable[[str], None], batch_bytes: int, tail_bytes: int = TAIL_BYTES
    ) -> None:
        self._emit = emit
        self._batch_bytes = max(1, batch_bytes)
        self._tail_bytes = tail_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._partial_ticks = 0
        self._tail = bytearray()
        self._closed = False

    def feed(self, data: bytes) -> None:
        if not data or self._closed:
            return
        self._tail += data
        if len(self._tail) > 2 * self._tail_bytes:
            del self._tail[: len(self._tail) - self._tail_bytes]
        self._add(self._decoder.decode(data))

    def _add(self, text: str) -> None:
        if not text:
            return
        self._pending.append(text)
        self._pending_bytes += len(text)
        if self._pending_bytes >= self._batch_bytes:
            self._partial_ticks = 0  # what stays pending is a new partial line
            self._flush(whole_lines=True)
            # A single line longer than a batch goes out anyway: memory stays bounded.
            if self._pending_bytes >= self._batch_bytes:
                self._flush(whole_lines=False)

    def tick(self) -> None:
        """Periodic flush; a partial line is held back for one tick only."""
        if not self._pending:
            return
        self._partial_ticks += 1
        self._flush(whole_lines=self._partial_ticks < 2)

    def close(self) -> None:
        """End of the stream: everything pending goes out."""
        if self._closed:
            return
        self._add(self._decoder.decode(b"", final=True))
        self._flush(whole_lines=False)
        self._closed = True

    def tail(self) -> str:
        data = bytes(self._tail[-self._tail_bytes :])
        # The cut may split a UTF-8 sequence: drop continuation bytes at the start.
        start = 0
        while start < min(4, len(data)) and data[start] & 0xC0 == 0x80:
            start += 1
        return data[start:].decode("utf-8", errors="replace")

    def _flush(self, whole_lines: bool) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        if whole_lines:
            cut = text.rfind("\n") + 1
            if cut == 0:
                self._pending = [text]
                return
            text, rest = text[:cut], text[cut:]
        else:
            rest = ""
        self._pending = [rest] if rest else []
        self._pending_bytes = len(rest)
        if not rest:
            self._partial_ticks = 0
        self._emit(text)


class Capture:
    """stdout + stderr of one task attempt, with the tick that flushes them on time."""

    def __init__(
        self,
        emit: Callable[[str, str], None],
        batch_bytes: int,
        batch_seconds: float,
    ) -> None:
        self.stdout = StreamCapture(lambda text: emit("stdout", text), batch_bytes)
        self.stderr = StreamCapture(lambda text: emit("stderr", text), batch_bytes)
        self._batch_seconds = batch_seconds
        self._ticker: asyncio.Task[None] | None = None

    # The tick starts with the first output, not with the attempt: most tasks print
    # nothing, and a task plus a timer per attempt is measurable at hundreds a second.

    def feed_stdout(self, data: bytes) -> None:
        self._tick_soon()
        self.stdout.feed(data)

    def feed_stderr(self, data: bytes) -> None:
        self._tick_soon()
        self.stderr.feed(data)

    def _tick_soon(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._batch_seconds)
            self.stdout.tick()
            self.stderr.tick()

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        self.stdout.close()
        self.stderr.close()


class PipeReader:
    """Feeds everything from `read_fd` to `sink` until EOF, from a bare readiness
    callback (no transport, stream or task per pipe); owns and closes the fd.
    `done` resolves at EOF (or with the read error); `cancel()` stops early.

    EOF comes when every holder of the write end is gone: the task and any children
    it started. The caller bounds the wait after the task ended (a daemon that
    escaped the process group may hold the pipe forever) by cancelling.
    """

    def __init__(self, read_fd: int, sink: Callable[[bytes], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._fd = read_fd
        self._sink = sink
        self.done: asyncio.Future[None] = self._loop.create_future()
        os.set_blocking(read_fd, False)
        self._loop.add_reader(read_fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._end(exc)
            return
        if not data:
            self._end(None)
            return
        try:
            self._sink(data)
        except Exception as exc:  # the sink's bug ends this pipe, not the loop
            self._end(exc)

    def _end(self, error: BaseException | None) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)

    def cancel(self) -> None:
        """Stop reading now (`done` resolves without error); nothing once ended."""
        self._end(None)
