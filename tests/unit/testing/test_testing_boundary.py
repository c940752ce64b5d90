"""Test helpers stay out of what runs in production: no module of AgentFlow outside a
`testing` package or module imports one (`agentflow.testing`, `agentflow.raft.testing`,
`agentflow.master.testing`, `agentflow.client.testing`)."""

from __future__ import annotations

import ast
from pathlib import Path

import agentflow

ROOT = Path(agentflow.__file__).parent


def is_testing(module: str) -> bool:
    return "testing" in module.split(".")


def in_testing(path: Path) -> bool:
    return any(part in ("testing", "testing.py") for part in path.relative_to(ROOT).parts)


def shipped_modules() -> list[Path]:
    return [
        path
        for path in sorted(ROOT.rglob("*.py"))
        if not in_testing(path) and "_proto" not in path.parts
    ]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_shipped_module_imports_a_testing_module() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name
            for name in imported_modules(path)
            if name.startswith("agentflow") and is_testing(name)
        )
        for path in shipped_modules()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_scan_sees_the_shipped_modules() -> None:
    scanned = shipped_modules()
    names = {str(path.relative_to(ROOT)) for path in scanned}
    assert {"state/machine.py", "scheduler/service.py", "client/validation.py"} <= names
    assert "testing/history.py" not in names
    assert "master/testing.py" not in names
