"""Waiting out a full disk: tell ENOSPC apart, say so once, retry until a write fits.

A node whose data directory is full must not acknowledge anything it could not
persist, and must not die either (a restart finds the same full disk, and an
operator freeing space expects the process to carry on by itself). So a write that
fails for lack of space is retried every `RETRY_EVERY` seconds, unchanged, until it
succeeds: the caller simply does not return, and the Raft driver makes no progress
(no append acknowledged, no vote granted) until the disk has room again.

The log says it once per change of state (`storage.disk_full`,
`storage.disk_recovered`) and then every `REMIND_EVERY` seconds while it lasts
(`storage.disk_still_full`), never once per retry.

Only "no space" is retried. Any other I/O error (SQLITE_IOERR, a failed fsync)
leaves the durable state unknown and still ends the process.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import structlog

log = structlog.get_logger(__name__)

RETRY_EVERY = 1.0  # seconds between attempts of a write refused for lack of space
REMIND_EVERY = 30.0  # seconds between log lines while the disk stays full

_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL_TEXT = "database or disk is full"

T = TypeVar("T")


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the write did not fit: SQLITE_FULL, or ENOSPC/EDQUOT."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int):
            # Extended codes keep the primary code in the low byte.
            return code & 0xFF == sqlite3.SQLITE_FULL
        return _SQLITE_FULL_TEXT in str(exc)
    if isinstance(exc, OSError):
        return exc.errno in _NO_SPACE_ERRNOS
    return False


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


class DiskFullWatch:
    """Tracks whether writes into one data directory currently fail for lack of
    space, logs the changes, and runs writes with the retry described above."""

    def __init__(
        self,
        data_dir: Path,
        retry_every: float = RETRY_EVERY,
        remind_every: float = REMIND_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.retry_every = retry_every
        self.remind_every = remind_every
        self._clock = clock
        self._full_since: float | None = None
        self._said_at = 0.0
        self.attempts_refused = 0  # writes refused for lack of space, ever

    @property
    def full(self) -> bool:
        """The last write into the data directory failed for lack of space."""
        return self._full_since is not None

    def report_full(self, exc: BaseException, what: str) -> None:
        """A write (`what`) failed with `exc`, a disk-full error."""
        self.attempts_refused += 1
        now = self._clock()
        if self._full_since is None:
            self._full_since = self._said_at = now
            log.error(
                "storage.disk_full",
                data_dir=str(self.data_dir),
                free_bytes=free_bytes(self.data_dir),
                write=what,
                error=str(exc),
                action=f"not acknowledging writes; retrying every {self.retry_every:g} s "
                "until space is freed in data_dir",
            )
        elif now - self._said_at >= self.remind_every:
            self._said_at = now
            log.error(
                "storage.disk_still_full",
                data_dir=str(self.data_dir),
                free_bytes=free_bytes(self.data_dir),
                full_for_seconds=round(now - self._full_since, 1),
                refused_attempts=self.attempts_refused,
            )

    def report_ok(self) -> None:
        """A write into the data directory succeeded."""
        if self._full_since is None:
            return
        log.info(
            "storage.disk_recovered",
            data_dir=str(self.data_dir),
            free_bytes=free_bytes(self.data_dir),
            full_for_seconds=round(self._clock() - self._full_since, 1),
        )
        self._full_since = None

    async def run(self, write: Callable[[], Awaitable[T]], what: str) -> T:
        """`await write()` until it succeeds. `write` must leave nothing half done
        when it raises (a rolled-back transaction, a removed temp file), so that
        running it again is the same write. Other errors propagate at once."""
        while True:
            try:
                result = await write()
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                self.report_full(exc, what)
                await asyncio.sleep(self.retry_every)
                continue
            self.report_ok()
            return result
