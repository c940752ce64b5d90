"""Text that users read (help, errors, docstrings that become help) speaks of AgentFlow
alone: no references to the project's internal seed listings or design sections."""

from __future__ import annotations

import re
from pathlib import Path

import agentflow

PACKAGES = ("cli", "client", "worker", "master")
INTERNAL = re.compile(r"\bseed (\d{3}|listing)|\bseed's listing|DESIGN(\.md)? section", re.I)


def test_no_internal_references_in_user_facing_packages() -> None:
    root = Path(agentflow.__file__).parent
    found = [
        f"{path.relative_to(root)}:{number}: {line.strip()}"
        for package in PACKAGES
        for path in sorted((root / package).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if INTERNAL.search(line)
    ]
    assert found == []
