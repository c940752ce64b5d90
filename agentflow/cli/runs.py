"""Commands that follow work to its end: run (a workflow file) and wait."""

from __future__ import annotations

import re
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from agentflow.cli import render
from agentflow.cli.context import AppContext, pass_app
from agentflow.cli.errors import BadInputError, CliError
from agentflow.cli.params import DURATION
from agentflow.cli.progress import ProgressDisplay
from agentflow.cli.tasks import describe, fetch, style
from agentflow.client.errors import AgentFlowError, AlreadyExistsError, InvalidArgumentError
from agentflow.client.models import Task, Workflow, WorkflowStatus
from agentflow.client.workflow_file import load_workflow

MAX_ID_LENGTH = 128
# What a workflow id may not contain, for an id made from a file name.
_NOT_ID = re.compile(r"[^A-Za-z0-9_.:-]+", re.ASCII)


def _follow(app: AppContext, item: Task | WorkflowStatus, timeout: float | None) -> None:
    """Wait for `item` with a progress line on a terminal; print it; fail if it failed."""
    terminal = sys.stderr if app.tells_progress else None
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


def unique_id(base: str, now: datetime | None = None) -> str:
    """`base` with the time (UTC, to the minute) and 4 random hex digits appended:
    release-20261203-0637-ab12. Shortened at the end of `base` to stay a valid id."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M")
    suffix = f"-{stamp}-{secrets.token_hex(2)}"
    return base[: MAX_ID_LENGTH - len(suffix)].rstrip("-_.:") + suffix


def _base_id(workflow: Workflow, file: str) -> str:
    """The id a --unique run starts from: the file's workflow id, else its name."""
    if workflow.id:
        return workflow.id
    return _NOT_ID.sub("-", Path(file).stem).strip("-_.:") or "workflow"


def _already_exists(app: AppContext, workflow_id: str, file: str, exc: AgentFlowError) -> CliError:
    """The refusal of a second run of one workflow id, with the ways out."""
    try:
        old = app.client.get_workflow(workflow_id, include_tasks=False)
    except AgentFlowError:
        old = None
    rerun = f"give this run its own id with --id ID or --unique (agentflow run {file} --unique)"
    delete = f"agentflow delete workflow {workflow_id}"
    if old is None:
        return CliError(f"{exc}; {rerun}, or delete the old one first: {delete}")
    if old.is_finished:
        return CliError(
            f"workflow {workflow_id!r} already exists (finished {old.state.value}); {rerun}, "
            f"or delete the old one first: {delete}"
        )
    return CliError(
        f"workflow {workflow_id!r} already exists and is still running; {rerun}, or cancel "
        f"the old one (agentflow cancel --workflow {workflow_id}) and then delete it: {delete}"
    )


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--wait", "-w", "wait_", is_flag=True, help="Wait for the workflow to finish.")
@click.option("--timeout", "-t", type=DURATION, help="With --wait: give up after this long.")
@click.option(
    "--id",
    "workflow_id",
    metavar="ID",
    help="Run under this workflow id instead of the file's (one file, several runs).",
)
@click.option(
    "--unique",
    is_flag=True,
    help="Append the time (UTC) and a random suffix to the id (release-20261203-0637-ab12), "
    "so every run gets its own; the id used is printed.",
)
@pass_app
def run(
    app: AppContext,
    file: str,
    wait_: bool,
    timeout: float | None,
    workflow_id: str | None,
    unique: bool,
) -> None:
    """Submit the workflow in FILE (YAML).

    A workflow id is used once: to run FILE again, use --id or --unique, or delete
    the finished run first (agentflow delete workflow ID).
    """
    workflow = load_workflow(file)
    new_id = None
    if workflow_id is not None or unique:
        if workflow_id is not None and not workflow_id.strip():
            raise BadInputError("--id: must not be empty")
        base = workflow_id or _base_id(workflow, file)
        new_id = unique_id(base) if unique else base
    try:
        submitted = app.client.submit_workflow(workflow, id=new_id)
    except AlreadyExistsError as exc:
        raise _already_exists(app, new_id or workflow.id, file, exc) from None
    except InvalidArgumentError as exc:
        if new_id is not None and exc.field in ("id", "workflow.id"):
            raise BadInputError(f"--id: {exc.reason}") from None
        raise
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
