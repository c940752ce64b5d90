"""Pure validation of what clients submit.

Shared by the state machine and the master: the master checks a request before
proposing it so that a bad request never reaches the log, and the state machine
checks again because the log is the only thing every replica trusts. Everything
here is a function of its arguments alone (no state), so both sides agree.
Checks that need the state (does a dependency exist, is an id taken) live in the
state machine.
"""

from __future__ import annotations

import json
import keyword
import math
from collections.abc import Mapping, Sequence

from agentflow._proto import state_pb2
from agentflow.rules.dag import Dag, DagError
from agentflow.rules.fields import (
    GROUP,
    check_group,
    check_id,
    check_no_nul,
    check_request_digest,
    check_request_id,
    check_size,
    invalid,
    json_depth,
    number,
    show,
    utf8_len,
    validate_list_filter,
)
from agentflow.rules.limits import (
    MAX_ARGS_BYTES,
    MAX_ARGS_DEPTH,
    MAX_BATCH_TASKS,
    MAX_COMMAND_BYTES,
    MAX_CPU,
    MAX_CWD_BYTES,
    MAX_DELETE_IDS,
    MAX_ENV_BYTES,
    MAX_ENV_VARS,
    MAX_GPUS,
    MAX_LABEL_BYTES,
    MAX_LABELS,
    MAX_MAX_RETRIES,
    MAX_MEMORY_MB,
    MAX_NAME_LENGTH,
    MAX_REQUEST_BYTES,
    MAX_REQUEST_DEPENDENCIES,
    MAX_RETRY_BACKOFF_MS,
    MAX_TASK_DEPENDENCIES,
    MAX_TIMEOUT_MS,
    MAX_WORKFLOW_TASKS,
)

__all__ = [
    "MAX_BATCH_TASKS",
    "MAX_MAX_RETRIES",
    "MAX_NAME_LENGTH",
    "MAX_WORKFLOW_TASKS",
    "check_id",
    "check_request_digest",
    "check_request_id",
    "validate_delete",
    "validate_list_filter",
    "validate_priority",
    "validate_submit_tasks",
    "validate_task_spec",
    "validate_worker_info",
    "validate_workflow_spec",
]

MAX_WORKER_ID_LENGTH = 256
# A workflow's task is "<workflow id>/<task id>", each part at most 128 characters.
MAX_TASK_ID_LENGTH = 2 * 128 + 1

_PRIORITY_NAMES = ", ".join(
    state_pb2.Priority.Name(v).removeprefix("PRIORITY_") for v in state_pb2.Priority.values()
)
_PRIORITY_MAX = max(state_pb2.Priority.values())
_ON_FAILURE_NAMES = ", ".join(
    f"{state_pb2.OnFailure.Name(v).removeprefix('ON_FAILURE_')}={v}"
    for v in state_pb2.OnFailure.values()
)


def validate_priority(value: int, field: str) -> None:
    if not 0 <= value <= _PRIORITY_MAX:
        raise invalid(
            field, f"unknown level {value} (expected 0..{_PRIORITY_MAX}: {_PRIORITY_NAMES})"
        )


def _check_command(command: str, field: str) -> None:
    if not command:
        raise invalid(field, "required ('shell:<command line>' or 'python:<module>:<function>')")
    check_size(command, field, MAX_COMMAND_BYTES)
    check_no_nul(command, field)
    kind, sep, rest = command.partition(":")
    if sep and kind == "shell":
        if not rest.strip():
            raise invalid(field, "empty shell command after 'shell:'")
        return
    if sep and kind == "python":
        module, sep2, function = rest.rpartition(":")
        if not sep2 or not module:
            raise invalid(field, f"expected 'python:<module>:<function>', got {show(command)}")
        for part in module.split("."):
            if not _is_identifier(part):
                raise invalid(field, f"invalid module name {show(module)} in {show(command)}")
        if not _is_identifier(function):
            raise invalid(field, f"invalid function name {show(function)} in {show(command)}")
        return
    raise invalid(
        field,
        f"unknown command kind in {show(command)} (expected 'shell:<command line>' or "
        "'python:<module>:<function>')",
    )


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _check_args_json(args_json: str, command: str, field: str) -> None:
    if not args_json:
        return
    if command.startswith("shell:"):
        # Only a python task receives args; on a shell task they would be ignored.
        raise invalid(
            field, "only python tasks take args (give a shell task its values in the command)"
        )
    check_size(args_json, field, MAX_ARGS_BYTES)
    try:
        value = json.loads(args_json)
    except RecursionError:
        raise invalid(field, f"JSON nested more than {MAX_ARGS_DEPTH} levels deep") from None
    except ValueError as exc:
        raise invalid(field, f"not valid JSON: {exc}") from None
    if not isinstance(value, list | dict):
        raise invalid(field, f"must be a JSON array or object, not {type(value).__name__}")
    if json_depth(value, MAX_ARGS_DEPTH) > MAX_ARGS_DEPTH:
        raise invalid(field, f"JSON nested more than {MAX_ARGS_DEPTH} levels deep")


def _check_range(value: int | float, field: str, limit: int | float, unit: str = "") -> None:
    if not 0 <= value <= limit:
        raise invalid(field, f"must be 0..{number(limit)}{unit}, got {number(value)}")


def _check_labels(values: Mapping[str, str], field: str) -> None:
    if len(values) > MAX_LABELS:
        raise invalid(field, f"{len(values)} labels (at most {MAX_LABELS})")
    # Sorted so the reported key does not depend on the map's wire order.
    for key in sorted(values):
        if not key:
            raise invalid(field, "empty key")
        check_size(key, f"{field}[{show(key, 40)}]", MAX_LABEL_BYTES)
        check_size(values[key], f"{field}[{key!r}]", MAX_LABEL_BYTES)


def _check_env(values: Mapping[str, str], field: str) -> None:
    if len(values) > MAX_ENV_VARS:
        raise invalid(field, f"{len(values)} variables (at most {MAX_ENV_VARS})")
    total = 0
    for key in sorted(values):
        value = values[key]
        if not key:
            raise invalid(field, "empty key")
        where = f"{field}[{show(key, 40)}]"
        if "=" in key or "\0" in key:
            # The OS cannot represent such a variable: the worker would fail late.
            raise invalid(where, "environment variable names cannot contain '=' or NUL")
        check_no_nul(value, where)
        total += utf8_len(key) + utf8_len(value) + 1
    if total > MAX_ENV_BYTES:
        raise invalid(field, f"{total} bytes of KEY=VALUE (at most {MAX_ENV_BYTES})")


def _check_name(name: str, field: str) -> None:
    if not name:
        return  # no name: the command is shown instead
    if len(name) > MAX_NAME_LENGTH:
        raise invalid(field, f"longer than {MAX_NAME_LENGTH} characters")
    if not name.strip():
        raise invalid(field, "blank (leave it empty for no name)")
    if not name.isprintable():
        # Names are shown on one line of a table: a newline or NUL would break it.
        raise invalid(field, f"contains a control character: {show(name)}")


def validate_task_spec(spec: state_pb2.TaskSpec, field: str) -> None:
    """Raise RuleError(INVALID_ARGUMENT) naming the first bad field under `field`
    (e.g. "tasks[2]"). Dependencies are checked for form only; whether they exist
    depends on the state. Bounds: `agentflow.rules.limits`."""
    if spec.id:
        check_id(spec.id, f"{field}.id")
    _check_name(spec.name, f"{field}.name")
    command = spec.command
    _check_command(command, f"{field}.command")
    _check_args_json(spec.args_json, command, f"{field}.args_json")
    if spec.group:
        check_group(spec.group, f"{field}.group")
    if not math.isfinite(spec.cpu):
        raise invalid(f"{field}.cpu", f"must be a finite number, got {spec.cpu}")
    _check_range(spec.cpu, f"{field}.cpu", MAX_CPU, " cores")
    _check_range(spec.memory_mb, f"{field}.memory_mb", MAX_MEMORY_MB, " MB")
    _check_range(spec.gpus, f"{field}.gpus", MAX_GPUS)
    _check_range(spec.retry_backoff_ms, f"{field}.retry_backoff_ms", MAX_RETRY_BACKOFF_MS, " ms")
    _check_range(spec.timeout_ms, f"{field}.timeout_ms", MAX_TIMEOUT_MS, " ms")
    _check_range(spec.max_retries, f"{field}.max_retries", MAX_MAX_RETRIES)
    if spec.HasField("priority"):
        validate_priority(spec.priority, f"{field}.priority")
    if spec.cwd:
        check_size(spec.cwd, f"{field}.cwd", MAX_CWD_BYTES)
        check_no_nul(spec.cwd, f"{field}.cwd")
    if spec.labels:
        _check_labels(spec.labels, f"{field}.labels")
    if spec.env:
        _check_env(spec.env, f"{field}.env")
    deps = spec.dependencies
    if len(deps) > MAX_TASK_DEPENDENCIES:
        raise invalid(
            f"{field}.dependencies",
            f"{len(deps)} dependencies (at most {MAX_TASK_DEPENDENCIES} per task)",
        )
    for j, dep in enumerate(deps):
        if not dep:
            raise invalid(f"{field}.dependencies[{j}]", "empty dependency id")


def _check_request_size(
    specs: Sequence[state_pb2.TaskSpec], field: str, limit: int, what: str
) -> None:
    """Count, bytes and edges of one request, before any spec is looked at: a request
    past a cap is refused without the cost of reading it."""
    if len(specs) > limit:
        raise invalid(field, f"{len(specs)} tasks in one {what} (at most {limit})")
    size = sum(spec.ByteSize() for spec in specs)
    if size > MAX_REQUEST_BYTES:
        raise invalid(
            field, f"{size} bytes of task specs in one {what} (at most {MAX_REQUEST_BYTES})"
        )
    edges = sum(len(spec.dependencies) for spec in specs)
    if edges > MAX_REQUEST_DEPENDENCIES:
        raise invalid(
            field, f"{edges} dependencies in one {what} (at most {MAX_REQUEST_DEPENDENCIES})"
        )


def validate_submit_tasks(specs: Sequence[state_pb2.TaskSpec], field: str = "tasks") -> None:
    """A SubmitTasks batch: size, every spec, and ids unique inside the batch."""
    if not specs:
        raise invalid(field, "at least one task is required")
    _check_request_size(specs, field, MAX_BATCH_TASKS, "batch")
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        validate_task_spec(spec, f"{field}[{i}]")
        if spec.id:
            if spec.id in seen:
                raise invalid(
                    f"{field}[{i}].id",
                    f"duplicate task id {spec.id!r} (also {field}[{seen[spec.id]}].id)",
                )
            seen[spec.id] = i


def validate_workflow_spec(spec: state_pb2.WorkflowSpec, field: str = "workflow") -> None:
    """A whole workflow: its own fields, every task, and the graph (no duplicate ids,
    no unknown or self dependencies, no cycle)."""
    if spec.id:
        check_id(spec.id, f"{field}.id", "workflow id")
    _check_name(spec.name, f"{field}.name")
    if spec.on_failure not in state_pb2.OnFailure.values():
        raise invalid(
            f"{field}.on_failure",
            f"unknown value {spec.on_failure} (expected {_ON_FAILURE_NAMES})",
        )
    tasks = spec.tasks
    if not tasks:
        raise invalid(f"{field}.tasks", "a workflow needs at least one task")
    _check_request_size(tasks, f"{field}.tasks", MAX_WORKFLOW_TASKS, "workflow")
    index: dict[str, int] = {}
    for i, task in enumerate(tasks):
        task_field = f"{field}.tasks[{i}]"
        if not task.id:
            raise invalid(f"{task_field}.id", "required inside a workflow")
        validate_task_spec(task, task_field)
        if task.id in index:
            raise invalid(
                f"{task_field}.id",
                f"duplicate task id {task.id!r} (also {field}.tasks[{index[task.id]}].id)",
            )
        index[task.id] = i
    # Dag reports these too, but only by task name; checking here first lets the
    # error point at the exact field.
    edges: list[tuple[str, Sequence[str]]] = []
    for i, task in enumerate(tasks):
        task_id = task.id
        deps = task.dependencies
        for j, dep in enumerate(deps):
            if dep == task_id:
                raise invalid(
                    f"{field}.tasks[{i}].dependencies[{j}]", f"task {dep!r} depends on itself"
                )
            if dep not in index:
                raise invalid(
                    f"{field}.tasks[{i}].dependencies[{j}]", f"unknown dependency {show(dep)}"
                )
        edges.append((task_id, deps))
    try:
        Dag(edges)
    except DagError as exc:
        raise invalid(_cycle_field(field, tasks, index, exc.cycle), str(exc)) from None


def _cycle_field(
    field: str,
    tasks: Sequence[state_pb2.TaskSpec],
    index: Mapping[str, int],
    cycle: tuple[str, ...],
) -> str:
    # cycle[0] depends on cycle[1]: point at that edge, the first one of the loop.
    if len(cycle) < 2 or cycle[0] not in index:
        return f"{field}.tasks"
    i = index[cycle[0]]
    deps = list(tasks[i].dependencies)
    if cycle[1] not in deps:
        return f"{field}.tasks"
    return f"{field}.tasks[{i}].dependencies[{deps.index(cycle[1])}]"


def validate_worker_info(info: state_pb2.WorkerInfo, field: str = "info") -> None:
    if not info.id:
        raise invalid(f"{field}.id", "required")
    if len(info.id) > MAX_WORKER_ID_LENGTH:
        raise invalid(f"{field}.id", f"longer than {MAX_WORKER_ID_LENGTH} characters")
    if not info.groups:
        raise invalid(f"{field}.groups", "a worker serves at least one group")
    for i, group in enumerate(info.groups):
        if not GROUP.fullmatch(group):  # the worker's own message, kept short
            raise invalid(f"{field}.groups[{i}]", f"invalid group {group!r}")
    if not math.isfinite(info.cpu_cores):
        raise invalid(f"{field}.cpu_cores", f"must be a finite number, got {info.cpu_cores}")
    for name, value in (
        ("cpu_cores", info.cpu_cores),
        ("memory_mb", info.memory_mb),
        ("gpu_count", info.gpu_count),
        ("capacity", info.capacity),
    ):
        if value < 0:
            raise invalid(f"{field}.{name}", f"must be >= 0, got {value}")
    for key in sorted(info.labels):
        if not key:
            raise invalid(f"{field}.labels", "empty key")


def validate_delete(
    task_ids: Sequence[str], workflow_ids: Sequence[str], by_age: bool, age_ms: int
) -> None:
    """A DeleteRecords command (or request) by its form: something to delete, ids
    that could name a record, a non-negative age. Whether each record exists and
    may go depends on the state."""
    if not task_ids and not workflow_ids and not by_age:
        raise invalid("task_ids", "name tasks or workflows to delete, or an age (finished before)")
    named = len(task_ids) + len(workflow_ids)
    if named > MAX_DELETE_IDS:
        raise invalid("task_ids", f"{named} ids in one delete (at most {MAX_DELETE_IDS})")
    for field, ids in (("task_ids", task_ids), ("workflow_ids", workflow_ids)):
        for i, value in enumerate(ids):
            if not value:
                raise invalid(f"{field}[{i}]", "empty id")
            if len(value) > MAX_TASK_ID_LENGTH:
                raise invalid(f"{field}[{i}]", f"no record has an id this long: {show(value)}")
    if by_age and age_ms < 0:
        raise invalid("finished_before_age_ms", f"must be >= 0, got {age_ms}")
