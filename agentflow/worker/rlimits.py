"""Per-task resource limits (RLIMIT_AS for memory, RLIMIT_CPU for CPU time) and what
a process's end says about them.

Shell tasks get their limits from `ulimit` in the /bin/sh that runs them, not from a
Popen preexec_fn: preexec_fn runs Python between fork and exec, which can deadlock in a
process with other threads (the worker has gRPC's), and a wrapper costs nothing since
the task runs in a shell anyway. Python pool processes set their own limits around
each job (apply/restore below).

RLIMIT_AS limits address space, not resident memory: a task that maps much more than
it touches (some allocators, thread stacks, JIT runtimes) can fail below its real
footprint. It is what POSIX offers without cgroups.
"""

from __future__ import annotations

import math
import resource
import signal
from dataclasses import dataclass

MB = 2**20
CPU_HARD_MARGIN_S = 5

# Messages a process typically leaves on stderr when an allocation failed.
_MEMORY_MARKERS = (
    "MemoryError",
    "Cannot allocate memory",
    "cannot allocate memory",
    "out of memory",
    "Out of memory",
    "std::bad_alloc",
)
# Signals a process dies of when an allocation failure is not handled (NULL
# dereference, abort in the allocator) or when the kernel reclaims memory.
_MEMORY_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGKILL)


def shell_argv(
    command: str, memory_limit_mb: int | None, cpu_time_limit_s: int | None
) -> list[str]:
    """argv running `command` under /bin/sh -c with the limits set first (soft and hard
    alike for memory, so the task cannot raise it).

    The outer shell sets the limits and `exec`s an inner `/bin/sh -c command`, so the
    task sees exactly the `sh -c` it was written for ($0, traps, exit status). Core
    dumps are disabled when a limit is set: SIGXCPU dumps core by default.
    """
    steps = []
    if memory_limit_mb is not None:
        steps.append(f"ulimit -v {int(memory_limit_mb) * 1024}")
    if cpu_time_limit_s is not None:
        # Hard above soft: the soft limit's SIGXCPU says what happened; SIGKILL at the
        # hard one only if the task handles SIGXCPU and keeps going.
        seconds = max(1, math.ceil(cpu_time_limit_s))
        steps.append(f"ulimit -S -t {seconds}")  # soft first: it must stay <= hard
        steps.append(f"ulimit -H -t {seconds + CPU_HARD_MARGIN_S}")
    if not steps:
        return ["/bin/sh", "-c", command]
    steps.append("ulimit -c 0")
    script = " && ".join(steps) + ' && exec /bin/sh -c "$1"'
    return ["/bin/sh", "-c", script, "agentflow-task", command]


@dataclass(frozen=True, slots=True)
class Saved:
    address_space: tuple[int, int]
    cpu: tuple[int, int]


def apply_in_process(memory_limit_mb: int | None, cpu_time_limit_s: int | None) -> Saved:
    """Lowers this process's soft limits for one job; restore() undoes it.

    Only soft limits move, so they can be raised back. The CPU limit is cumulative
    for the process, hence "CPU used so far + the job's limit".
    """
    saved = Saved(
        address_space=resource.getrlimit(resource.RLIMIT_AS),
        cpu=resource.getrlimit(resource.RLIMIT_CPU),
    )
    if memory_limit_mb is not None:
        _lower(resource.RLIMIT_AS, int(memory_limit_mb) * MB, saved.address_space)
    if cpu_time_limit_s is not None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = math.ceil(usage.ru_utime + usage.ru_stime)
        _lower(resource.RLIMIT_CPU, used + max(1, math.ceil(cpu_time_limit_s)), saved.cpu)
    return saved


def _lower(which: int, soft: int, current: tuple[int, int]) -> None:
    hard = current[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))


def restore(saved: Saved) -> None:
    resource.setrlimit(resource.RLIMIT_AS, saved.address_space)
    resource.setrlimit(resource.RLIMIT_CPU, saved.cpu)


def signal_of(returncode: int, via_shell: bool) -> int:
    """The signal that ended a process, 0 if it exited normally.

    A negative return code is the signal that killed the process itself; a shell
    reports a child killed by signal N as exit status 128 + N.
    """
    if returncode < 0:
        return -returncode
    if via_shell and 128 < returncode < 128 + 65:
        return returncode - 128
    return 0


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_failure(
    returncode: int,
    stderr_tail: str,
    memory_limit_mb: int | None,
    cpu_time_limit_s: int | None,
    via_shell: bool,
) -> str:
    """One line saying why a process ended unsuccessfully.

    Limit hits are inferred, not observed (POSIX does not say why an allocation
    failed), and the wording says so when it is a guess: a MemoryError or ENOMEM
    message on stderr under a memory limit is called "exceeded", a crash signal under
    a memory limit only "probably exceeded".
    """
    sig = signal_of(returncode, via_shell)
    if cpu_time_limit_s is not None and sig == signal.SIGXCPU:
        return f"killed: CPU time limit {cpu_time_limit_s} s exceeded"
    if memory_limit_mb is not None:
        marker = next((m for m in _MEMORY_MARKERS if m in stderr_tail), None)
        if marker is not None:
            return f"memory limit {memory_limit_mb} MB exceeded ({marker!r} on stderr)"
        if sig in _MEMORY_SIGNALS:
            return (
                f"killed: memory limit {memory_limit_mb} MB probably exceeded"
                f" (died of {signal_name(sig)})"
            )
    if sig:
        return f"killed by {signal_name(sig)}"
    last = last_line(stderr_tail)
    return f"exit code {returncode}" + (f": {last}" if last else "")


def last_line(text: str, limit: int = 300) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""
