"""The command lines the chart writes are ones the programs accept: every flag of the
master and worker containers is an option of agentflow-master / agentflow-worker, and
the `helm test` pod's commands and workflow parse with the real CLI."""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from typing import Any

import click
import pytest
from click.testing import CliRunner
from helmchart import REPO, VALUE_SETS, Rendered, value_set

from agentflow.cli.main import cli
from agentflow.client.durations import parse_duration
from agentflow.client.workflow_file import parse_workflow

# The flags the chart passes with tls.enabled / auth.enabled. agentflow-master does not
# implement TLS or tokens yet (docs/kubernetes.md says so); once it has any such
# option, these must be exactly its names.
SECURITY_FLAGS = {"--tls-cert", "--tls-key", "--tls-ca", "--token-dir"}


def entry_point(name: str) -> click.Command | None:
    with open(REPO / "pyproject.toml", "rb") as f:
        scripts: dict[str, str] = tomllib.load(f)["project"]["scripts"]
    if name not in scripts:
        return None
    module, _, attr = scripts[name].partition(":")
    command = getattr(importlib.import_module(module), attr)
    assert isinstance(command, click.Command), f"{name} is not a click command"
    return command


def option_names(command: click.Command) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def flag_names(args: list[str]) -> set[str]:
    return {a.partition("=")[0] for a in args if a.startswith("--")}


def accepts(command: click.Command, args: list[str]) -> None:
    """The arguments parse (`--help` last stops before anything runs)."""
    result = CliRunner().invoke(command, [*args, "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", VALUE_SETS)
def test_master_accepts_every_flag_the_chart_passes(render: Any, name: str) -> None:
    master = entry_point("agentflow-master")
    assert master is not None
    r: Rendered = render(value_set(name))
    (container,) = r.statefulset["spec"]["template"]["spec"]["containers"]
    args = container["args"][1:]
    known = option_names(master)
    unknown = flag_names(args) - known
    if known & {o for o in known if "tls" in o or "token" in o}:
        assert not unknown, f"the master now has TLS/token options: chart flags {unknown}"
    else:
        assert unknown <= SECURITY_FLAGS, unknown
        args = [a for a in args if a.partition("=")[0] not in SECURITY_FLAGS]
    accepts(master, args)


def test_worker_accepts_every_flag_the_chart_passes(render: Any) -> None:
    worker = entry_point("agentflow-worker")
    if worker is None:
        pytest.skip("agentflow-worker is not in pyproject.toml yet (the worker issue builds it)")
    for name in VALUE_SETS:
        r: Rendered = render(value_set(name))
        for d in r.all("Deployment"):
            (container,) = d["spec"]["template"]["spec"]["containers"]
            unknown = flag_names(container["args"][1:]) - option_names(worker)
            assert not unknown, f"{name}: {d['metadata']['name']}: {unknown}"


@pytest.mark.parametrize("name", ["default", "secure"])
def test_helm_test_pod_runs_real_cli_commands(render: Any, name: str) -> None:
    r: Rendered = render(value_set(name))
    pod = r.one("Pod")
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["sh", "-ec"]
    lines = [shlex.split(line) for line in container["args"][0].splitlines() if line.strip()]
    assert [line[0] for line in lines] == ["agentflow", "agentflow"]
    for line in lines:
        accepts(cli, line[1:])
    run = lines[1]
    assert run[1:3] == ["run", "/etc/agentflow-test/workflow.yaml"]
    assert parse_duration(run[run.index("--timeout") + 1]) == 240  # under helm test's 5m

    # The workflow it runs parses with the CLI's own loader, and targets a pool.
    config = r.one("ConfigMap", "agentflow-test")
    workflow = parse_workflow(config["data"]["workflow.yaml"], "workflow.yaml")
    groups = {t.group for t in workflow.tasks}
    pools = [d["spec"]["template"]["spec"]["containers"][0]["args"] for d in r.all("Deployment")]
    served = {
        group
        for args in pools
        for a in args
        if a.startswith("--group=")
        for group in a.partition("=")[2].split(",")
    }
    assert groups <= served
    assert [list(t.dependencies) for t in workflow.tasks] == [[], ["hello"]]
    # It reaches the masters through the client Service.
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MASTER_URL"] == "agentflow:6767"
    assert r.one("Service", "agentflow")["spec"]["ports"][0]["port"] == 6767


def test_the_guides_workflow_parses() -> None:
    """docs/kubernetes.md's example workflow is one `agentflow run` accepts."""
    guide = (REPO / "docs" / "kubernetes.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", guide, flags=re.S)
    (example,) = [b for b in blocks if b.startswith("workflow:")]
    workflow = parse_workflow(example, "docs/kubernetes.md")
    assert [t.id for t in workflow.tasks] == ["build", "test", "deploy"]
