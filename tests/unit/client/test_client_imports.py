"""The SDK loads only what a client needs: not the state machine, the scheduler, the
master, Raft, nor the masters' logging library (structlog). A fresh interpreter is the
only way to see what an import pulls in, since this test process has loaded them all."""

from __future__ import annotations

import subprocess
import sys

SERVER_SIDE = (
    "agentflow.state",
    "agentflow.scheduler",
    "agentflow.master",
    "agentflow.raft",
    "agentflow.worker",
    "structlog",
)

PROBE = f"""
import sys
import {{module}}
bad = sorted(m for m in sys.modules if m.startswith({SERVER_SIDE!r}))
assert not bad, bad
"""


def run_probe(module: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_importing_the_client_loads_no_server_side_module() -> None:
    result = run_probe("agentflow.client")
    assert result.returncode == 0, result.stderr


def test_the_top_level_sdk_names_load_no_server_side_module() -> None:
    result = run_probe("agentflow; agentflow.Client; agentflow.TaskSpec")
    assert result.returncode == 0, result.stderr
