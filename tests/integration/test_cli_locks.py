"""`agentflow lock` against a real master, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys


def agentflow(master: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentflow.cli", "--master", master, "-o", "json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_acquire_held_release(master: str) -> None:
    got = agentflow(master, "lock", "acquire", "cli-a", "--ttl", "10s")
    assert got.returncode == 0, got.stderr
    lease = json.loads(got.stdout)
    assert isinstance(lease["token"], int) and lease["owner"].startswith("cli:")
    assert lease["name"] == "cli-a" and lease["expires_at"]
    held = agentflow(master, "lock", "acquire", "cli-a", "--ttl", "10s", "--owner", "o2",
                     "--wait", "300ms")  # fmt: skip
    assert held.returncode == 1
    assert lease["owner"] in held.stderr
    shown = json.loads(agentflow(master, "lock", "show", "cli-a").stdout)
    assert shown["token"] == lease["token"]
    released = agentflow(master, "lock", "release", "cli-a", "--token", str(lease["token"]))
    assert released.returncode == 0, released.stderr
    assert json.loads(agentflow(master, "lock", "list").stdout) == []
