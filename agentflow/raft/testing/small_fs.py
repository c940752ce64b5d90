"""A real, small filesystem for disk-full tests: a tmpfs of a few megabytes.

Mounting needs root (CAP_SYS_ADMIN); where that is missing, `SmallFsUnavailable`
says why, and the caller skips (the unit tests also reach SQLITE_FULL without a
mount, through `PRAGMA max_page_count`). `fill` takes every free byte with one
file, `Filler.release` gives them back.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class SmallFsUnavailable(Exception):
    """A tmpfs cannot be mounted here (not root, or no mount permission)."""


@contextlib.contextmanager
def small_filesystem(path: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_bytes` on `path` (created if missing) for the block."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise SmallFsUnavailable("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SmallFsUnavailable(f"mount -t tmpfs failed: {done.stderr.strip()}")
    try:
        yield path
    finally:
        # Lazy: a process of the test that still holds a file there must not
        # keep the mount (and its memory) alive past the test.
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@dataclass
class Filler:
    path: Path
    size: int

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def fill(directory: Path, name: str = "filler", leave: int = 0) -> Filler:
    """Write one file into `directory` until the filesystem refuses more (ENOSPC),
    then shrink it to leave `leave` bytes free."""
    path = directory / name
    chunk = b"\0" * 65536
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while True:
            try:
                size += os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
        if leave:
            size = max(0, size - leave)
            os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    return Filler(path, size)


def free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free
