"""Vigil: a gap of about the leader's timeout stops the task groups until the verdict;
declared lost kills them, otherwise they continue. Real processes, a hand-moved clock."""

from __future__ import annotations

import signal
import subprocess
import time

import psutil

from agentflow.worker.process_groups import Unguarded
from agentflow.worker.vigil import Vigil


def _status(pid: int) -> str:
    deadline = time.monotonic() + 2
    while True:
        status = str(psutil.Process(pid).status())
        if status != psutil.STATUS_RUNNING or time.monotonic() > deadline:
            return status
        time.sleep(0.01)


def test_a_long_gap_stops_the_groups_until_the_verdict() -> None:
    now = [100.0]
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        groups = Unguarded()
        groups.started(proc.pid)
        vigil = Vigil(groups, clock=lambda: now[0])
        vigil.configure(worker_timeout_s=15.0, heartbeat_s=2.0)
        now[0] += 5.0
        assert not vigil.check()  # too short to have been declared lost
        now[0] += 12.0
        assert vigil.check() and vigil.suspect
        assert _status(proc.pid) == psutil.STATUS_STOPPED
        vigil.verdict(declared_lost=False)
        assert _status(proc.pid) != psutil.STATUS_STOPPED and proc.poll() is None
        now[0] += 12.0
        assert vigil.check()
        vigil.verdict(declared_lost=True)
        assert proc.wait(5) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_frozen_by_the_guardian_after_a_short_stop_continues_at_once() -> None:
    now = [0.0]
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        groups = Unguarded()
        groups.started(proc.pid)
        vigil = Vigil(groups, clock=lambda: now[0])
        groups.signal_all(signal.SIGSTOP)  # what the guardian does
        now[0] += 1.0
        assert not vigil.frozen()
        assert _status(proc.pid) != psutil.STATUS_STOPPED
    finally:
        proc.kill()
        proc.wait()
