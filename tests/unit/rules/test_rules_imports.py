"""The rules depend only on the generated protobuf code and the standard library, so
every party (SDK, master, state machine) can load them alone."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import agentflow.rules.dag, agentflow.rules.errors, agentflow.rules.fields
import agentflow.rules.limits, agentflow.rules.validate
allowed = ("agentflow.rules", "agentflow._proto")
bad = sorted(
    m for m in sys.modules
    if m.startswith("agentflow.") and not m.startswith(allowed) or m.startswith("structlog")
)
assert not bad, bad
"""


def test_the_rules_load_nothing_else_of_agentflow() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
