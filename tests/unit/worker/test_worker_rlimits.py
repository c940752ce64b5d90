"""Limit wrappers and how a process's end is explained."""

from __future__ import annotations

import resource
import signal
import subprocess

import pytest

from agentflow.worker import rlimits
from agentflow.worker.rlimits import describe_failure, shell_argv, signal_of


def test_shell_argv_without_limits_is_plain_sh() -> None:
    assert shell_argv("echo hi", None, None) == ["/bin/sh", "-c", "echo hi"]


def test_shell_argv_sets_limits_then_execs_the_command() -> None:
    script = shell_argv("ulimit -v; ulimit -S -t; ulimit -H -t; ulimit -c; echo $0", 256, 30)
    done = subprocess.run(script, capture_output=True, text=True, check=True)
    assert done.stdout.split() == [str(256 * 1024), "30", "35", "0", "/bin/sh"]


def test_shell_argv_passes_the_command_verbatim() -> None:
    tricky = """printf '%s\\n' "a  b" '$HOME' "it's" """
    done = subprocess.run(shell_argv(tricky, 512, None), capture_output=True, text=True)
    assert done.stdout == "a  b\n$HOME\nit's\n"


def test_signal_of() -> None:
    assert signal_of(-9, via_shell=False) == 9
    assert signal_of(137, via_shell=True) == 9
    assert signal_of(137, via_shell=False) == 0
    assert signal_of(1, via_shell=True) == 0


@pytest.mark.parametrize(
    ("code", "stderr", "memory", "cpu", "shell", "expected"),
    [
        (1, "x\nMemoryError\n", 256, None, True, "memory limit 256 MB exceeded ('MemoryError'"),
        (2, "Cannot allocate memory", 100, None, True, "memory limit 100 MB exceeded"),
        (
            -11,
            "",
            256,
            None,
            False,
            "killed: memory limit 256 MB probably exceeded (died of SIGSEGV)",
        ),
        (139, "", 256, None, True, "killed: memory limit 256 MB probably exceeded"),
        (152, "", None, 5, True, "killed: CPU time limit 5 s exceeded"),
        (-24, "", 64, 5, False, "killed: CPU time limit 5 s exceeded"),
        (-11, "", None, None, False, "killed by SIGSEGV"),
        (1, "MemoryError", None, None, True, "exit code 1: MemoryError"),
        (3, "first\nlast line\n\n", None, None, True, "exit code 3: last line"),
        (4, "", None, None, True, "exit code 4"),
    ],
)
def test_describe_failure(
    code: int, stderr: str, memory: int | None, cpu: int | None, shell: bool, expected: str
) -> None:
    assert describe_failure(code, stderr, memory, cpu, via_shell=shell).startswith(expected)


def test_last_line_is_truncated() -> None:
    assert len(rlimits.last_line("y" * 1000)) == 300


def test_signal_name_unknown() -> None:
    assert rlimits.signal_name(signal.SIGTERM) == "SIGTERM"
    assert rlimits.signal_name(99) == "signal 99"


def test_apply_and_restore_in_process() -> None:
    before_as = resource.getrlimit(resource.RLIMIT_AS)
    before_cpu = resource.getrlimit(resource.RLIMIT_CPU)
    saved = rlimits.apply_in_process(memory_limit_mb=64 * 1024, cpu_time_limit_s=3600)
    try:
        assert resource.getrlimit(resource.RLIMIT_AS)[0] == 64 * 1024 * 2**20
        assert resource.getrlimit(resource.RLIMIT_CPU)[0] >= 3600
    finally:
        rlimits.restore(saved)
    assert resource.getrlimit(resource.RLIMIT_AS) == before_as
    assert resource.getrlimit(resource.RLIMIT_CPU) == before_cpu
