"""Task commands: add, submit, list, show, cancel, reprioritize, explain."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import click

from agentflow.cli import params, render
from agentflow.cli.context import AppContext, pass_app
from agentflow.cli.errors import BadInputError
from agentflow.cli.output import can_encode
from agentflow.client.errors import NotFoundError
from agentflow.client.models import Priority, Task, TaskState, WorkflowStatus
from agentflow.client.workflow_file import load_tasks, parse_tasks

LIST_PAGE_SIZE = 500


def style() -> render.Style:
    return render.Style(unicode=can_encode("⏳✅▶🟢"))


@click.command()
@click.argument("title")
@click.option(
    "--desc",
    "--command",
    "command",
    required=True,
    help="What to run: shell:<command line> or python:<module>:<function> (see above).",
)
@click.option("--group", "-g", default="", help="Worker group (default: default).")
@click.option(
    "--priority", "-p", type=params.PRIORITY, help="critical, high, normal, low, idle (or 0-4)."
)
@click.option("--cpu", type=click.FloatRange(min=0), default=0.0, help="CPU cores required.")
@click.option("--memory-mb", type=click.IntRange(min=0), default=0, help="Memory required (MB).")
@click.option("--gpus", type=click.IntRange(min=0), default=0, help="GPUs required.")
@click.option(
    "--label",
    "labels",
    type=params.KEY_VALUE,
    multiple=True,
    help="Required worker label k=v (repeatable).",
)
@click.option(
    "--env",
    "env",
    type=params.KEY_VALUE,
    multiple=True,
    help="Environment variable K=V (repeatable).",
)
@click.option("--cwd", default="", help="Working directory on the worker.")
@click.option("--args", "args", type=params.JSON, help="JSON arguments of a python task.")
@click.option(
    "--max-retries", type=click.IntRange(min=0), default=0, help="Retries after a failure."
)
@click.option("--retry-backoff", type=params.DURATION, help="Base retry delay (e.g. 5s).")
@click.option("--timeout", type=params.DURATION, help="Per-attempt limit (e.g. 10m).")
@click.option(
    "--depends-on", "dependencies", multiple=True, help="Task id to wait for (repeatable)."
)
@click.option("--id", "task_id", default="", help="Task id (generated when omitted).")
@pass_app
def add(
    app: AppContext,
    title: str,
    command: str,
    group: str,
    priority: Priority | None,
    cpu: float,
    memory_mb: int,
    gpus: int,
    labels: tuple[tuple[str, str], ...],
    env: tuple[tuple[str, str], ...],
    cwd: str,
    args: Any,
    max_retries: int,
    retry_backoff: float | None,
    timeout: float | None,
    dependencies: tuple[str, ...],
    task_id: str,
) -> None:
    """Submit one task named TITLE.

    \b
    --desc says what the worker runs:
      shell:<command line>        run by /bin/sh in --cwd, with --env
      python:<module>:<function>  <module> is imported on the worker and <function>
                                  called with --args (a JSON list: positional, a
                                  JSON object: keyword arguments); what it returns
                                  is the task's result (`agentflow show ID`).
                                  Start the worker with
                                  `agentflow-worker --pythonpath DIR` (or set
                                  AGENTFLOW_WORKER_PYTHONPATH) so <module> is
                                  importable there.

    \b
    Examples:
      agentflow add "Build image" --desc "shell:docker build ." -g docker -p high
      agentflow add Train --desc python:jobs.train:main --args '{"epochs": 3}'
    """
    if not title.strip():
        raise click.BadParameter("must not be empty", param_hint="TITLE")
    new_id = app.client.submit(
        command, name=title, group=group, priority=priority, cpu=cpu, memory_mb=memory_mb,
        gpus=gpus, labels=dict(labels), env=dict(env), cwd=cwd, args=args,
        max_retries=max_retries, retry_backoff=retry_backoff, timeout=timeout,
        dependencies=dependencies, id=task_id,
    )  # fmt: skip
    app.emit(f"submitted task {new_id}: {title}", {"task_id": new_id})


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@pass_app
def submit(app: AppContext, file: str) -> None:
    """Submit the tasks in FILE (YAML or JSON list of tasks; - for stdin) in one call."""
    if file == "-":
        # Bytes, decoded strictly: the text layer may smuggle bad bytes through as
        # surrogates (surrogateescape), which YAML then refuses with no field to name.
        raw = getattr(sys.stdin, "buffer", None)
        try:
            text = raw.read().decode("utf-8") if raw is not None else sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise BadInputError(f"<stdin>: not UTF-8 text ({exc.reason})", field="FILE") from None
        specs = parse_tasks(text, "<stdin>")
    else:
        specs = load_tasks(file)
    ids = app.client.submit_many(specs)
    lines = [f"submitted {render.plural(len(ids), 'task')}"]
    lines += [
        f"   {spec.name or spec.id or spec.command} -> {i}"
        for spec, i in zip(specs, ids, strict=False)
    ]
    app.emit("\n".join(lines), {"task_ids": ids})


@click.command("list")
@click.option(
    "--status",
    "-s",
    "states",
    type=params.STATES,
    multiple=True,
    help="Only these states (comma-separated or repeated).",
)
@click.option("--group", "-g", default="", help="Only this worker group.")
@click.option("--workflow", "-w", "workflow_id", default="", help="Only tasks of this workflow.")
@click.option("--limit", "-n", type=click.IntRange(min=1), help="Show at most this many.")
@click.option("--wide", is_flag=True, help="A block of details per task instead of a table.")
@pass_app
def list_tasks(
    app: AppContext,
    states: tuple[tuple[TaskState, ...], ...],
    group: str,
    workflow_id: str,
    limit: int | None,
    wide: bool,
) -> None:
    """List tasks, oldest first: one line each (id, name, state, priority, group,
    worker, age, run time); `--wide` or `show ID` for the details."""
    wanted = params.flatten_states(states)
    page_size = min(limit or LIST_PAGE_SIZE, LIST_PAGE_SIZE)
    tasks: list[Task] = []
    total = 0
    token = ""
    while limit is None or len(tasks) < limit:
        page = app.client.list_page(
            states=wanted,
            group=group,
            workflow_id=workflow_id,
            page_size=page_size,
            page_token=token,
        )
        total = page.total
        tasks.extend(page.tasks)
        token = page.next_page_token
        if not token:
            break
    if limit is not None:
        tasks = tasks[:limit]
    total = max(total, len(tasks))
    if app.json:
        app.emit("", {"total": total, "tasks": tasks})
        return
    human = render.task_list(tasks, style(), total, now=datetime.now(UTC), wide=wide)
    app.emit(human, {"total": total, "tasks": tasks})


def fetch(app: AppContext, item_id: str) -> Task | WorkflowStatus:
    """The task with this id, else the workflow."""
    try:
        return app.client.get(item_id)
    except NotFoundError:
        try:
            return app.client.get_workflow(item_id, include_tasks=True)
        except NotFoundError:
            raise NotFoundError(f"no task or workflow {item_id!r}") from None


def describe(item: Task | WorkflowStatus) -> str:
    if isinstance(item, Task):
        return render.task_detail(item, style())
    return render.workflow_detail(item, style())


@click.command()
@click.argument("item_id", metavar="ID")
@pass_app
def show(app: AppContext, item_id: str) -> None:
    """Show a task, or a workflow with its tasks."""
    item = fetch(app, item_id)
    app.emit(describe(item), item)


@click.command()
@click.argument("ids", metavar="ID...", nargs=-1, required=True)
@click.option(
    "--workflow",
    "-w",
    "is_workflow",
    is_flag=True,
    help="The ids are workflows: cancel all their unfinished tasks.",
)
@click.option("--reason", default="", help="Recorded with the cancellation.")
@pass_app
def cancel(app: AppContext, ids: tuple[str, ...], is_workflow: bool, reason: str) -> None:
    """Cancel tasks (or workflows with --workflow)."""
    cancelled: list[str] = []
    if is_workflow:
        for workflow_id in ids:
            cancelled += app.client.cancel(workflow_id=workflow_id, reason=reason)
    else:
        cancelled = app.client.cancel(*ids, reason=reason)
    if cancelled:
        human = f"cancelled {render.plural(len(cancelled), 'task')}: {', '.join(cancelled)}"
    else:
        human = "nothing to cancel (already finished)"
    app.emit(human, {"cancelled": cancelled})


@click.command()
@click.argument("task_id", metavar="ID")
@click.argument("level", type=params.PRIORITY)
@pass_app
def reprioritize(app: AppContext, task_id: str, level: Priority) -> None:
    """Change the priority of a task that has not started (LEVEL: critical..idle)."""
    app.client.reprioritize(task_id, level)
    app.emit(
        f"task {task_id}: priority {level.name.lower()}",
        {"task_id": task_id, "priority": level},
    )


@click.command()
@click.argument("task_id", metavar="ID")
@pass_app
def explain(app: AppContext, task_id: str) -> None:
    """Say why a task is not running (yet)."""
    reasons = app.client.explain(task_id)
    if reasons:
        human = f"task {task_id}:" + "".join(f"\n   - {reason}" for reason in reasons)
    else:
        human = f"task {task_id}: nothing to explain"
    app.emit(human, {"task_id": task_id, "reasons": reasons})


COMMANDS = (add, submit, list_tasks, show, cancel, reprioritize, explain)
