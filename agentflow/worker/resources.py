"""What this machine offers to tasks: CPU cores, memory, GPUs, and current usage.

Detection reads psutil and, when `nvidia-smi` is on PATH, the GPU list. Every number can
be overridden (`--cpu-cores --memory-mb --gpu-count`): a worker in a container sees the
host's cores and memory, and a test fakes a GPU with `--gpu-count 1`.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped]  # no types-psutil in the dev extras yet

NVIDIA_SMI_QUERY = ["--query-gpu=index,name,memory.total", "--format=csv,noheader"]


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    name: str
    memory_mb: int


@dataclass(frozen=True, slots=True)
class Resources:
    """What the worker offers; sent in its hello and used for placement and limits.

    `gpu_names` has one entry per GPU counted; a GPU faked with `--gpu-count` beyond
    the detected ones is named "unknown".
    """

    cpu_cores: float
    memory_mb: int
    gpu_count: int
    gpu_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_percent: float
    memory_percent: float
    memory_available_mb: int


def parse_nvidia_smi(output: str) -> list[Gpu]:
    """Parses `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader`.

    Lines look like `0, NVIDIA A100-SXM4-40GB, 40960 MiB`. A GPU name may itself contain
    commas, so index is the first field, memory the last, and the name what is between.
    Lines that do not parse raise ValueError quoting the line: a driver that prints
    something else should be noticed, not silently counted as zero GPUs.
    """
    gpus = []
    for raw in output.splitlines():
        line = raw.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3:
            raise ValueError(f"unexpected nvidia-smi line: {line!r}")
        memory = fields[-1]
        for unit in ("MiB", "MB"):
            memory = memory.removesuffix(unit).strip()
        try:
            index = int(fields[0])
            memory_mb = int(memory) if memory not in ("[N/A]", "N/A") else 0
        except ValueError:
            raise ValueError(f"unexpected nvidia-smi line: {line!r}") from None
        gpus.append(Gpu(index=index, name=", ".join(fields[1:-1]), memory_mb=memory_mb))
    return gpus


def _run_nvidia_smi(path: str) -> str:
    done = subprocess.run(
        [path, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout


def detect_gpus(
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[[str], str] = _run_nvidia_smi,
) -> list[Gpu]:
    """GPUs reported by nvidia-smi; none when it is absent or fails.

    A failing nvidia-smi (driver mismatch, no device) means no usable GPU, so it is not
    an error for the worker: it starts without GPUs.
    """
    path = which("nvidia-smi")
    if path is None:
        return []
    try:
        return parse_nvidia_smi(run(path))
    except (OSError, subprocess.SubprocessError, ValueError):
        return []


def detect(
    cpu_cores: float | None = None,
    memory_mb: int | None = None,
    gpu_count: int | None = None,
    gpus: list[Gpu] | None = None,
) -> Resources:
    """Detected resources with the given overrides applied (None = detect).

    `gpus` replaces nvidia-smi detection (tests). Overrides are validated here so the
    error names the flag the operator typed.
    """
    if cpu_cores is not None and not cpu_cores > 0:
        raise ValueError(f"--cpu-cores must be > 0, got {cpu_cores}")
    if memory_mb is not None and memory_mb <= 0:
        raise ValueError(f"--memory-mb must be > 0, got {memory_mb}")
    if gpu_count is not None and gpu_count < 0:
        raise ValueError(f"--gpu-count must be >= 0, got {gpu_count}")
    cores = cpu_cores if cpu_cores is not None else float(psutil.cpu_count(logical=True) or 1)
    memory = memory_mb if memory_mb is not None else psutil.virtual_memory().total // 2**20
    found = detect_gpus() if gpus is None else gpus
    count = len(found) if gpu_count is None else gpu_count
    names = tuple(g.name for g in found[:count]) + ("unknown",) * max(0, count - len(found))
    return Resources(cpu_cores=cores, memory_mb=memory, gpu_count=count, gpu_names=names)


def usage() -> Usage:
    """Current CPU and memory usage of the machine, without blocking.

    cpu_percent is the average since the previous call (psutil's interval=None), so the
    first call of a process returns 0.0; heartbeats call it periodically, which is
    exactly the window they report on.
    """
    vm = psutil.virtual_memory()
    return Usage(
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        memory_percent=float(vm.percent),
        memory_available_mb=int(vm.available // 2**20),
    )


def available_memory_mb() -> int:
    return int(psutil.virtual_memory().available // 2**20)
