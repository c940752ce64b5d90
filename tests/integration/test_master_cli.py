"""The real `agentflow-master` command line: -h works, the help keeps its examples as
written and explains every option; a bad flag is one line and exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from agentflow.master.main import main as master_main

MASTER = [sys.executable, "-m", "agentflow.master.main"]
EXAMPLES = [
    "    agentflow-master --mode leader --node-id m1 --port 6767 --data-dir data/m1",
    "    agentflow-master --mode master --node-id m2 --port 6777 --leader-url 127.0.0.1:6767",
    "    agentflow-master --node-id m1 --peers m1=h1:6767,m2=h2:6767,m3=h3:6767",
]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTFLOW_LEADER_URL"}
    return subprocess.run(
        [*MASTER, *args], capture_output=True, text=True, timeout=30, check=False, env=env, cwd=cwd
    )


def options_help(text: str) -> dict[str, str]:
    """Each option of the help's Options section -> its help text (joined lines)."""
    section = text.split("\nOptions:\n", 1)[1]
    entries: dict[str, str] = {}
    name = ""
    for line in section.splitlines():
        if re.match(r"  -", line):
            first, _, rest = line.strip().partition("  ")
            name = next(w.rstrip(",") for w in first.split() if w.startswith("--"))
            entries[name] = rest.strip()
        elif line.startswith("      ") and name:
            entries[name] = f"{entries[name]} {line.strip()}".strip()
    return entries


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_keeps_the_examples_and_explains_every_option(flag: str) -> None:
    result = run(flag)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for example in EXAMPLES:
        assert f"\n{example}\n" in out, out
    helps = options_help(out)
    declared = {
        next(o for o in p.opts if o.startswith("--"))
        for p in master_main.params
        if isinstance(p, click.Option)
    }
    assert declared <= helps.keys(), declared - helps.keys()
    for name, text in helps.items():
        assert text and not text.startswith("["), f"{name} has no help: {text!r}"
    assert "[default: (agentflow-data/<node-id>)]" in helps["--data-dir"]
    assert "[default: (--port + 1)]" in helps["--http-port"]
    assert "seed" not in out.lower() and "issue" not in out.lower()


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--port", "x"], "--port"),
        (["--port", "70000"], "--port"),
        (["--http-port", "-1"], "--http-port"),
        (["--port", "65535"], "--http-port"),
        (["--port", "7000", "--http-port", "7000"], "--http-port"),
        (["--mode", "boss"], "--mode"),
        (["--mode", "master"], "--leader-url"),
        (["--peers", "m1"], "--peers"),
        (["--node-id", ""], "--node-id"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--host", "0.0.0.0"], "--insecure"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it(args: list[str], names: str, tmp_path: Path) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agentflow-master: error: ") and names in lines[0], lines[0]
    assert not list(tmp_path.iterdir()), "a refused start created files"


def test_a_bad_log_setting_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        MASTER,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
        env=dict(os.environ, AGENTFLOW_LOG_LEVEL="loud"),
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "AGENTFLOW_LOG_LEVEL" in lines[0], result.stderr
