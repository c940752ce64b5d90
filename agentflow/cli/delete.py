"""`agentflow delete`: purge finished workflows and tasks, so their ids can be used again."""

from __future__ import annotations

import click

from agentflow.cli import render
from agentflow.cli.context import AppContext, pass_app
from agentflow.cli.errors import BadInputError
from agentflow.cli.params import DURATION
from agentflow.client.durations import format_duration
from agentflow.client.models import Deleted


def _report(app: AppContext, deleted: Deleted, empty: str = "nothing to delete") -> None:
    workflows = deleted.workflow_ids
    tasks = deleted.task_ids
    if not workflows and not tasks:
        human = empty
    elif workflows:
        names = ", ".join(workflows)
        human = (
            f"deleted {render.plural(len(workflows), 'workflow')} ({names}) "
            f"with {render.plural(len(tasks), 'task')} in all"
        )
    else:
        human = f"deleted {render.plural(len(tasks), 'task')}: {', '.join(tasks)}"
    app.emit(human, deleted)


@click.group(invoke_without_command=True)
@click.option(
    "--finished-before",
    "age",
    type=DURATION,
    metavar="DURATION",
    help="Delete every finished workflow and task (on its own) that ended at least this "
    "long ago (e.g. 7d, 12h; 0 = all finished ones). One an unfinished task depends on stays.",
)
@click.pass_context
def delete(ctx: click.Context, age: float | None) -> None:
    """Purge finished workflows and tasks, so their ids can be used again.

    \b
      agentflow delete workflow release     a workflow with all its tasks
      agentflow delete task 17 build-42     tasks submitted on their own
      agentflow delete --finished-before 7d everything finished a week ago or more

    Only finished records go: one that is still queued or running is refused (cancel
    it first), and nothing is deleted when any one named cannot be.
    """
    if ctx.invoked_subcommand is not None:
        if age is not None:
            raise BadInputError(
                "--finished-before deletes by age: use it without 'workflow' or 'task'"
            )
        return
    if age is None:
        raise click.UsageError(
            "say what to delete: 'workflow ID...', 'task ID...' or --finished-before DURATION",
            ctx,
        )
    app = ctx.find_object(AppContext)
    assert app is not None
    deleted = app.client.delete(finished_before=age)
    ago = f" that finished {format_duration(age)} ago or more" if age else " that has finished"
    _report(app, deleted, f"nothing to delete{ago}")


@delete.command("workflow")
@click.argument("workflow_ids", metavar="ID...", nargs=-1, required=True)
@pass_app
def delete_workflow(app: AppContext, workflow_ids: tuple[str, ...]) -> None:
    """Delete finished workflows, each with all its tasks."""
    _report(app, app.client.delete(workflow_ids=workflow_ids))


@delete.command("task")
@click.argument("task_ids", metavar="ID...", nargs=-1, required=True)
@pass_app
def delete_task(app: AppContext, task_ids: tuple[str, ...]) -> None:
    """Delete finished tasks that were submitted on their own (a workflow's tasks go
    with their workflow)."""
    _report(app, app.client.delete(*task_ids))


COMMANDS = (delete,)
