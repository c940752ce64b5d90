"""PipeReader and the lazy tick of Capture, on real pipes."""

from __future__ import annotations

import asyncio
import os

import pytest

from agentflow.worker.output import Capture, PipeReader


async def test_a_pipe_is_read_to_eof_and_closed() -> None:
    r, w = os.pipe()
    got: list[bytes] = []
    reader = PipeReader(r, got.append)
    os.write(w, b"hello ")
    await asyncio.sleep(0.01)
    os.write(w, b"world")
    os.close(w)
    await asyncio.wait_for(reader.done, 2)
    assert b"".join(got) == b"hello world"
    with pytest.raises(OSError):
        os.fstat(r)  # the reader owned the fd and closed it


async def test_cancel_stops_reading_a_pipe_someone_still_holds() -> None:
    r, w = os.pipe()
    reader = PipeReader(r, lambda data: None)
    await asyncio.sleep(0.01)
    assert not reader.done.done()  # a holder of the write end keeps it open
    reader.cancel()
    assert reader.done.done() and reader.done.exception() is None
    os.close(w)


async def test_a_failing_sink_ends_the_pipe_with_its_error() -> None:
    r, w = os.pipe()

    def sink(data: bytes) -> None:
        raise RuntimeError("boom")

    reader = PipeReader(r, sink)
    os.write(w, b"x")
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(reader.done, 2)
    os.close(w)


async def test_capture_ticks_only_once_there_is_output() -> None:
    batches: list[tuple[str, str]] = []
    capture = Capture(lambda stream, text: batches.append((stream, text)), 1000, 0.01)
    await asyncio.sleep(0.03)
    assert capture._ticker is None  # a silent task costs no timer
    capture.feed_stderr(b"partial line")
    await asyncio.sleep(0.05)  # the tick flushes it without a newline
    assert batches == [("stderr", "partial line")]
    await capture.close()
    assert capture._ticker is None
