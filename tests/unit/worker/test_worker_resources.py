"""Resource detection: nvidia-smi parsing, overrides, usage."""

from __future__ import annotations

import subprocess

import pytest

from agentflow.worker import resources
from agentflow.worker.resources import Gpu, detect, detect_gpus, parse_nvidia_smi

SAMPLE = """\
0, NVIDIA A100-SXM4-40GB, 40960 MiB
1, NVIDIA GeForce RTX 3090, 24576 MiB

2, Tesla T4, [N/A]
"""


def test_parse_nvidia_smi_sample() -> None:
    assert parse_nvidia_smi(SAMPLE) == [
        Gpu(0, "NVIDIA A100-SXM4-40GB", 40960),
        Gpu(1, "NVIDIA GeForce RTX 3090", 24576),
        Gpu(2, "Tesla T4", 0),
    ]


def test_parse_nvidia_smi_name_with_comma() -> None:
    assert parse_nvidia_smi("3, Quadro, Special Edition, 8192 MiB\n") == [
        Gpu(3, "Quadro, Special Edition", 8192)
    ]


def test_parse_nvidia_smi_empty_output_is_no_gpu() -> None:
    assert parse_nvidia_smi("") == []


@pytest.mark.parametrize("line", ["garbage", "x, name, 10 MiB", "0, name, lots"])
def test_parse_nvidia_smi_rejects_unexpected_lines(line: str) -> None:
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        parse_nvidia_smi(line)


def test_detect_gpus_without_nvidia_smi() -> None:
    assert detect_gpus(which=lambda _: None) == []


def test_detect_gpus_runs_nvidia_smi_when_present() -> None:
    calls: list[str] = []

    def run(path: str) -> str:
        calls.append(path)
        return SAMPLE

    gpus = detect_gpus(which=lambda _: "/usr/bin/nvidia-smi", run=run)
    assert calls == ["/usr/bin/nvidia-smi"]
    assert [g.index for g in gpus] == [0, 1, 2]


def test_detect_gpus_failing_nvidia_smi_means_none() -> None:
    def run(path: str) -> str:
        raise subprocess.CalledProcessError(9, path)

    assert detect_gpus(which=lambda _: "/usr/bin/nvidia-smi", run=run) == []


def test_detect_reads_the_machine() -> None:
    found = detect(gpus=[])
    assert found.cpu_cores >= 1
    assert found.memory_mb > 0
    assert found.gpu_count == 0 and found.gpu_names == ()


def test_detect_on_this_machine_has_no_gpu() -> None:
    # nvidia-smi is absent here; detection must not fail.
    assert detect().gpu_count == len(detect_gpus())


def test_overrides_replace_detection() -> None:
    found = detect(cpu_cores=8, memory_mb=16384, gpu_count=1, gpus=[])
    assert found == resources.Resources(8, 16384, 1, ("unknown",))


def test_gpu_count_override_truncates_detected() -> None:
    gpus = parse_nvidia_smi(SAMPLE)
    assert detect(gpu_count=1, gpus=gpus).gpu_names == ("NVIDIA A100-SXM4-40GB",)
    assert detect(gpus=gpus).gpu_count == 3


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"cpu_cores": 0}, "--cpu-cores"),
        ({"cpu_cores": -1.5}, "--cpu-cores"),
        ({"memory_mb": 0}, "--memory-mb"),
        ({"gpu_count": -1}, "--gpu-count"),
    ],
)
def test_bad_overrides_name_the_flag(kwargs: dict[str, float], flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        detect(gpus=[], **kwargs)  # type: ignore[arg-type]


def test_usage_is_within_range() -> None:
    resources.usage()  # the first cpu_percent call only starts the window
    sample = resources.usage()
    assert 0.0 <= sample.cpu_percent <= 100.0
    assert 0.0 < sample.memory_percent <= 100.0
    assert sample.memory_available_mb > 0
