"""scripts/raft_sim.py tells how far it is while it runs: a progress line on stderr
every --progress-every seconds, the final summary on stdout as before."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "raft_sim.py"
LINE = re.compile(r"raft_sim: (\d+)/(\d+) seeds done, (\d+) failed, (\d+)s elapsed")


def corpus_size() -> int:
    lines = (ROOT / "tests" / "sim" / "corpus.txt").read_text().splitlines()
    return sum(1 for raw in lines if raw.split("#", 1)[0].strip())


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


def test_progress_lines_on_stderr_and_summary_on_stdout() -> None:
    result = run("--seeds", "3", "--first-seed", "1", "--progress-every", "0.3")
    assert result.returncode == 0, result.stderr
    total = 3 + corpus_size()  # the corpus seeds are replayed on every run
    assert result.stdout == f"{total} passed, 0 failed\n"
    lines = result.stderr.splitlines()
    assert len(lines) >= 2, result.stderr
    seen = []
    for line in lines:
        match = LINE.fullmatch(line)
        assert match, line
        done, of, failed, elapsed = map(int, match.groups())
        assert (of, failed) == (total, 0) and 0 <= done <= total
        seen.append((done, elapsed))
    assert seen == sorted(seen)  # counts and time only go up


def test_bad_interval_is_refused_by_name() -> None:
    result = run("--seeds", "1", "--first-seed", "1", "--progress-every", "-1")
    assert result.returncode == 2
    assert result.stderr.endswith("error: --progress-every must be >= 0, got -1\n")
    assert result.stdout == ""
