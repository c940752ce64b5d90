"""A durable lower bound of the log, kept outside SQLite: `acked.watermark`.

The WAL can be damaged behind SQLite's back (a disk that lies about fsync, a
file cut by hand after kill -9); SQLite then opens a shorter, consistent log and
nothing inside the database can tell. This small file records the highest index
this node held durably *and* knew committed. Committed entries are never
legitimately removed from a log, so a restart that finds the log ending before
the watermark knows it lost acknowledged entries: the driver says so, and the
core neither votes nor campaigns until it has caught up past it (a node that
lost acknowledged entries, or the vote stored with them, could otherwise help
elect a leader that lacks committed entries).

Written lazily by the driver (at most once per `WRITE_EVERY` seconds), always
atomically: temp file, fsync, rename, fsync of the directory. It only ever lags
what is durable, never leads it.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentflow.raft.snapshots import fsync_dir

FILE_NAME = "acked.watermark"
WRITE_EVERY = 1.0  # seconds between writes at most


def read(data_dir: Path) -> int:
    """The recorded watermark; 0 when absent (a new node, or an older version).
    A damaged file raises ValueError naming it."""
    path = data_dir / FILE_NAME
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return 0
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{path}: not an index ({text[:40]!r})") from None
    if value < 0:
        raise ValueError(f"{path}: negative index {value}")
    return value


def write(data_dir: Path, index: int) -> None:
    path = data_dir / FILE_NAME
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"%d\n" % index)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(data_dir)
