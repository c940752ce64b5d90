"""The wire between the worker and its python pool processes.

One AF_UNIX stream socket per pool process. Frames are a 4-byte big-endian length
and a JSON object. A job is sent as one marker byte carrying the job's stdout and
stderr pipe write ends (SCM_RIGHTS), then the job frame: fresh pipes per job mean
output is attributed to the job that wrote it, and EOF on them marks its end.

parent -> child: marker + {"type": "job", ...}
child -> parent: {"type": "ready", "pid"}  once, at start
                 {"type": "progress", "fraction", "message"}  any number, during a job
                 {"type": "result", ...}                       once per job, last
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 2**20
JOB_MARKER = b"J"


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise ValueError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    message = json.loads(body)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("pool frame is not an object with a type")
    return message


class FrameBuffer:
    """Reassembles frames from stream chunks."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        frames = []
        while len(self._buf) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise ValueError(f"pool frame of {length} bytes exceeds {MAX_FRAME}")
            if len(self._buf) < HEADER.size + length:
                break
            body = bytes(self._buf[HEADER.size : HEADER.size + length])
            del self._buf[: HEADER.size + length]
            frames.append(decode(body))
        return frames


# Blocking helpers for the pool process side.


def recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """`size` bytes, or None at EOF before any byte (the worker went away)."""
    chunks = []
    remaining = size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            if remaining == size:
                return None
            raise EOFError("worker closed the pool socket mid-frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> dict[str, Any] | None:
    header = recv_exact(sock, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"pool frame of {length} bytes exceeds {MAX_FRAME}")
    body = recv_exact(sock, length) if length else b""
    if body is None:
        raise EOFError("worker closed the pool socket mid-frame")
    return decode(body)
