"""Cluster commands: workers, cluster status."""

from __future__ import annotations

import click

from agentflow.cli import render
from agentflow.cli.context import AppContext, pass_app
from agentflow.cli.tasks import style


@click.command()
@click.option("--group", "-g", default="", help="Only workers serving this group.")
@pass_app
def workers(app: AppContext, group: str) -> None:
    """List workers."""
    found = app.client.workers(group)
    app.emit(render.worker_list(found, style()), {"workers": found})


@click.group()
def cluster() -> None:
    """The masters."""


@cluster.command()
@pass_app
def status(app: AppContext) -> None:
    """Leader, term, indexes and members, as one master sees them."""
    result = app.client.cluster_status()
    app.emit(render.cluster_status(result, style()), result)


COMMANDS = (workers, cluster)
