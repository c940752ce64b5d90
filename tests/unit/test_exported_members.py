"""Public names are pinned: adding or removing one is a deliberate change."""

from __future__ import annotations

import agentflow.raft


def test_raft_exports_are_pinned() -> None:
    exported = set(agentflow.raft.__all__)
    public = {n for n in dir(agentflow.raft) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(agentflow.raft, n)).__name__ == "module"}
    assert exported == public - modules
