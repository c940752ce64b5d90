"""task_context() and the pool wire format, without processes."""

from __future__ import annotations

from typing import Any

import pytest

from agentflow.worker import context
from agentflow.worker.context import TaskContext, task_context
from agentflow.worker.pool_protocol import HEADER, FrameBuffer, encode


def test_task_context_outside_a_task_explains_itself() -> None:
    with pytest.raises(RuntimeError, match="only available inside a python: task"):
        task_context()


def test_context_sends_progress_and_logs_until_the_job_ends() -> None:
    sent: list[dict[str, Any]] = []
    ctx = TaskContext("t", 2, sent.append, lambda text: sent.append({"log": text}))
    context._enter(ctx)
    try:
        assert task_context() is ctx
        task_context().progress(1.5, "over")
        task_context().progress(-1)
        task_context().log("hello")
        task_context().log("two\nlines\n")
    finally:
        context._exit()
    ctx.progress(0.5)  # a thread left running after the job: ignored
    assert sent == [
        {"type": "progress", "fraction": 1.0, "message": "over"},
        {"type": "progress", "fraction": 0.0, "message": ""},
        {"log": "hello\n"},
        {"log": "two\nlines\n"},
    ]
    with pytest.raises(RuntimeError):
        task_context()


def test_progress_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        TaskContext("t", 1, lambda _: None, lambda _: None).progress(float("nan"))


def test_frames_reassemble_across_chunks() -> None:
    data = encode({"type": "a", "n": 1}) + encode({"type": "b", "s": "é" * 100})
    buffer = FrameBuffer()
    frames = []
    for i in range(0, len(data), 7):
        frames.extend(buffer.feed(data[i : i + 7]))
    assert frames == [{"type": "a", "n": 1}, {"type": "b", "s": "é" * 100}]


def test_frame_without_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="type"):
        FrameBuffer().feed(HEADER.pack(3) + b"[1]")
