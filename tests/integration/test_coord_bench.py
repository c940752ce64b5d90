"""bench/coord_bench.py still runs at a tiny size: both 3-member clusters start, the
lock workloads go through (round trips, contended handoffs; messages with --locks-only off) and
the JSON report carries the ratios its targets are read from. Skipped where etcd is
not installed (the benchmark itself installs it with apt-get; a test does not)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "coord_bench.py"


@pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed")
def test_a_quick_run_measures_both_sides_and_reports_the_ratios() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--repeat", "1", "--locks-only"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout)
    (only,) = report["rounds"]
    etcd, agentflow = only["etcd"], only["agentflow"]
    for side in (etcd, agentflow):
        assert 0 < side["uncontended"]["p50_ms"] <= side["uncontended"]["p99_ms"]
        assert side["contended"]["handoffs"] > 0
    assert etcd["request_response"]["n"] == report["sizes"]["requests"]
    ratios = report["summary"]["ratios"]
    assert set(ratios) == {"a_p50_agentflow_over_etcd", "b_handoffs_agentflow_over_etcd"}


def test_the_benchmark_names_a_bad_option() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--batch", "0"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "argument --batch: must be >= 1, got 0" in out.stderr
