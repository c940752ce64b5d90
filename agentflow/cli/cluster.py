"""Cluster commands: workers, cluster status."""

from __future__ import annotations

import click

from agentflow.cli import cluster_view, render
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
    """Leader, term, indexes, and every member as the leader sees it.

    The term and indexes are those of the master that answered. Members come from
    the leader's replication progress: reachable or not, when it last replied, its
    match index and lag. A follower asks the leader for them; if the leader does not
    answer, it says so and shows its own view (membership only)."""
    result = app.client.cluster_status()
    app.emit(cluster_view.cluster_status(result, style()), result)


COMMANDS = (workers, cluster)
