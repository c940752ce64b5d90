"""The real `agentflow-worker` command: failures to start are one line and a non-zero
exit at once; the help keeps its examples and states the rules, not their sources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = [sys.executable, "-m", "agentflow.worker.main"]


def run(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WORKER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=dict(os.environ, MASTER_URL="127.0.0.1:1"),
    )


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--cpu-cores", "0"], "--cpu-cores"),
        (["--cpu-cores", "inf"], "--cpu-cores"),
        (["--reconnect-base", "nan"], "--reconnect-base"),
        (["--memory-mb", "99999999999999999999"], "--memory-mb"),
        (["--master-url", "nohost"], "--master-url"),
        (["--http-url", "h:99999"], "--http-url"),
        (["--pythonpath", "/no/such/dir"], "--pythonpath"),
        (["--python-pool-size", "-1"], "--python-pool-size"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it(args: list[str], names: str) -> None:
    result = run(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0] and "Traceback" not in result.stderr


def test_an_unusable_state_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("--state-dir", str(blocker / "sub"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--state-dir" in lines[0], result.stderr


def test_help_keeps_examples_and_states_the_rules() -> None:
    result = run("--help")
    assert result.returncode == 0
    out = result.stdout
    assert "\n    agentflow-worker --master-url 10.0.0.1:6767,10.0.0.2:6767 --group gpu" in out
    assert "min(cores, available GB / 2, 10)" in out
    assert "port + 1" in out
    assert "seed" not in out.lower()
    assert "--pythonpath DIR" in out and "AGENTFLOW_WORKER_PYTHONPATH" in out
