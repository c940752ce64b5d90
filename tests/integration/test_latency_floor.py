"""bench/latency_floor.py still runs: its processes start, a few round trips go
through every hop (two fsynced commits each), and it reports them as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "latency_floor.py"


def test_the_floor_runs_its_round_trips_and_reports_them() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--warmup", "2", "--rounds", "10", "--followers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rounds"] == 10 and report["followers"] == 2
    assert 0 < report["p50_ms"] <= report["p99_ms"]


def test_the_floor_names_a_bad_option() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "0"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "argument --rounds: must be >= 1, got 0" in out.stderr
