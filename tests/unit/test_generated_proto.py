"""The committed generated code must match proto/ (regenerated from scratch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_generated_modules_import_flat() -> None:
    from agentflow._proto import kv_pb2_grpc, raft_pb2_grpc

    assert raft_pb2_grpc.RaftServiceStub is not None
    assert kv_pb2_grpc.KvServiceStub is not None
