"""Commands that follow work to its end: run (a workflow file) and wait."""

from __future__ import annotations

import sys

import click

from agentflow.cli import render
from agentflow.cli.context import AppContext, pass_app
from agentflow.cli.errors import CliError
from agentflow.cli.params import DURATION
from agentflow.cli.progress import ProgressDisplay
from agentflow.cli.tasks import describe, fetch, style
from agentflow.client.models import Task, WorkflowStatus


def _follow(app: AppContext, item: Task | WorkflowStatus, timeout: float | None) -> None:
    """Wait for `item` with a progress line on a terminal; print it; fail if it failed."""
    terminal = sys.stderr if not app.json and sys.stderr.isatty() else None
    display = ProgressDisplay(terminal, style())
    try:
        if isinstance(item, Task):
            display.start_task(item)
            final: Task | WorkflowStatus = app.client.wait_task(
                item.id, timeout=timeout, on_event=display.on_event
            )
        else:
            display.start_workflow(item)
            final = app.client.wait_workflow(item.id, timeout=timeout, on_event=display.on_event)
    finally:
        display.finish()
    app.emit(describe(final), final)
    if not final.succeeded:
        kind = "task" if isinstance(final, Task) else "workflow"
        raise CliError(f"{kind} {final.id} finished {final.state.value}")


@click.command()
@click.argument("item_id", metavar="ID")
@click.option("--timeout", "-t", type=DURATION, help="Give up after this long (e.g. 10m).")
@pass_app
def wait(app: AppContext, item_id: str, timeout: float | None) -> None:
    """Wait for a task or workflow to finish; exit 1 unless it succeeded."""
    _follow(app, fetch(app, item_id), timeout)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--wait", "-w", "wait_", is_flag=True, help="Wait for the workflow to finish.")
@click.option("--timeout", "-t", type=DURATION, help="With --wait: give up after this long.")
@pass_app
def run(app: AppContext, file: str, wait_: bool, timeout: float | None) -> None:
    """Submit the workflow in FILE (YAML)."""
    submitted = app.client.submit_workflow(file)
    if not wait_:
        ids = "".join(f"\n   {local} -> {gid}" for local, gid in submitted.local_ids.items())
        human = (
            f"submitted workflow {submitted.workflow_id} "
            f"({render.plural(len(submitted.task_ids), 'task')}){ids}"
        )
        app.emit(human, submitted)
        return
    if not app.json:
        click.echo(f"submitted workflow {submitted.workflow_id}")
    _follow(app, app.client.get_workflow(submitted.workflow_id), timeout)


COMMANDS = (run, wait)
