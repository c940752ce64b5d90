"""The durable record of a worker's running process groups, and the sweep that kills
what a dead worker left behind.

The guardian (`guardian.py`) keeps `<state dir>/process-groups-<worker pid>.json`
up to date while its worker runs and deletes it when the worker is gone and its groups
are killed. A record left behind means the worker and its guardian both died (both
killed at once, the OOM killer taking both, ...): the next worker started with the
same state dir kills the groups it names before it connects (`sweep`).

No fsync: the record only has to outlive processes, not the machine, and after a
reboot no task survives anyway (the boot id in the record says which boot it is of).

A process group id is a pid and pids are reused, so a group is killed only when it is
still the one recorded: its leader alive with the start time recorded, or (the leader
gone, its children left) a member started no earlier than the recorded leader.
Everything here reads /proc (Linux); elsewhere no start time is known and the sweep
kills nothing, which is the safe side.

Imports are kept small: the guardian process imports this module at start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

PREFIX = "process-groups-"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str:
    try:
        return Path(_BOOT_ID).read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22);
    0 if it is gone or unknown."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = data[data.rfind(")") + 2 :].split()  # the name in parentheses may hold spaces
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return 0


def process_state(pid: int) -> str:
    """/proc/<pid>/stat state letter ("T" stopped, "t" traced, "Z" zombie, ...); "" if gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return data[data.rfind(")") + 2 : data.rfind(")") + 3]


def record_path(state_dir: Path, worker_pid: int) -> Path:
    return state_dir / f"{PREFIX}{worker_pid}.json"


def write_record(path: Path, worker_pid: int, worker_start: int, groups: dict[int, int]) -> None:
    """Atomically replaces the record (temp file, rename)."""
    body = {
        "boot": boot_id(),
        "worker": {"pid": worker_pid, "start": worker_start},
        "groups": {str(pgid): start for pgid, start in groups.items()},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)


def _members(pgid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == pgid:
                    out.append(int(entry.name))
    return out


def still_ours(pgid: int, leader_start: int) -> bool:
    """Whether group `pgid` is still the one started at `leader_start` (see above)."""
    if leader_start <= 0:
        return False
    now = start_ticks(pgid)
    if now:  # the leader's pid is in use: by our leader only if it started then
        return now == leader_start and os.getpgid(pgid) == pgid
    return any(start_ticks(pid) >= leader_start for pid in _members(pgid))


def kill_groups(groups: dict[int, int], verify: bool) -> list[int]:
    """SIGKILL to each group (those still ours, when `verify`); the pgids signalled."""
    killed = []
    for pgid, start in groups.items():
        if pgid <= 1 or (verify and not still_ours(pgid, start)):
            continue
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        killed.append(pgid)
    return killed


def sweep(state_dir: Path) -> list[int]:
    """Kills the groups recorded by workers that are gone; deletes their records.

    A record whose worker is alive (pid and start time match) is left alone: it is
    another worker sharing this state dir. Returns the pgids signalled.
    """
    killed: list[int] = []
    boot = boot_id()
    for path in sorted(state_dir.glob(f"{PREFIX}*.json")):
        try:
            body = json.loads(path.read_text())
            worker = body["worker"]
            groups = {int(k): int(v) for k, v in body["groups"].items()}
            pid, start = int(worker["pid"]), int(worker["start"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            path.unlink(missing_ok=True)  # unreadable: nothing can be verified from it
            continue
        if body.get("boot") == boot and start and start_ticks(pid) == start:
            continue
        if body.get("boot") == boot:
            killed += kill_groups(groups, verify=True)
        path.unlink(missing_ok=True)
    return killed
