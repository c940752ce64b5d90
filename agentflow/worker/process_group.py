"""Ending a task's process group.

Every task process is started in a new session (start_new_session=True), so its pid
is also its process group id and everything it forks stays in that group unless it
calls setsid itself. Signalling the group (killpg) therefore reaches `sh -c 'a | b &'`
and its children, which signalling the pid alone would miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal


def signal_group(pgid: int, signum: int) -> bool:
    """Sends `signum` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Only a recycled pgid belonging to someone else can get here: leave it alone.
        return False
    return True


async def terminate_group(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    """SIGTERM to the group, SIGKILL after `grace_s`, and the leader reaped.

    The grace is measured on the leader: once it is gone the rest of the group gets
    SIGKILL at once, since a task's children have no reason to outlive it. SIGCONT
    follows SIGTERM so a stopped group can act on it. No grace (0) is SIGKILL alone:
    an attempt the leader has given to another worker must not run even its
    SIGTERM handler.
    """
    if grace_s > 0 and proc.returncode is None and signal_group(proc.pid, signal.SIGTERM):
        signal_group(proc.pid, signal.SIGCONT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace_s)
    kill_group(proc)
    await proc.wait()


def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL to whatever is left of the group (leftovers of a finished task).

    Called only while the leader is unreaped or just reaped by us, so the pgid cannot
    have been handed to an unrelated group yet.
    """
    signal_group(proc.pid, signal.SIGKILL)
