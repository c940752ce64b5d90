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
import re
from collections.abc import Mapping, Sequence

from agentflow._proto import state_pb2
from agentflow.state.dag import Dag, DagError
from agentflow.state.errors import INVALID_ARGUMENT, StateError

__all__ = [
    "MAX_BATCH_TASKS",
    "MAX_MAX_RETRIES",
    "MAX_NAME_LENGTH",
    "MAX_WORKFLOW_TASKS",
    "check_id",
    "validate_priority",
    "validate_submit_tasks",
    "validate_task_spec",
    "validate_worker_info",
    "validate_workflow_spec",
]

MAX_BATCH_TASKS = 10_000
MAX_WORKFLOW_TASKS = 100_000
MAX_MAX_RETRIES = 100
MAX_NAME_LENGTH = 256
MAX_WORKER_ID_LENGTH = 256

# ASCII only: ids end up in URLs, file names and log lines on every platform.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}", re.ASCII)
_GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
_PRIORITY_NAMES = ", ".join(
    state_pb2.Priority.Name(v).removeprefix("PRIORITY_") for v in state_pb2.Priority.values()
)
_PRIORITY_MAX = max(state_pb2.Priority.values())
_ON_FAILURE_NAMES = ", ".join(
    f"{state_pb2.OnFailure.Name(v).removeprefix('ON_FAILURE_')}={v}"
    for v in state_pb2.OnFailure.values()
)


def _invalid(field: str, message: str) -> StateError:
    return StateError(INVALID_ARGUMENT, field, message)


def check_id(value: str, field: str, what: str = "id") -> None:
    """A task or workflow id: ASCII, at most 128 characters, not all digits."""
    if not _ID.fullmatch(value):
        raise _invalid(
            field,
            f"invalid {what} {value!r} (1-128 characters: letters, digits, '_', '.', ':', "
            "'-', starting with a letter or digit)",
        )
    if value.isdigit():
        # Generated task ids are plain numbers; a client id that looked like one could
        # collide with an id the state machine hands out later.
        raise _invalid(field, f"invalid {what} {value!r}: all-digit ids are reserved")


def validate_priority(value: int, field: str) -> None:
    if not 0 <= value <= _PRIORITY_MAX:
        raise _invalid(
            field, f"unknown level {value} (expected 0..{_PRIORITY_MAX}: {_PRIORITY_NAMES})"
        )


def _check_command(command: str, field: str) -> None:
    if not command:
        raise _invalid(field, "required ('shell:<command line>' or 'python:<module>:<function>')")
    kind, sep, rest = command.partition(":")
    if sep and kind == "shell":
        if not rest.strip():
            raise _invalid(field, "empty shell command after 'shell:'")
        return
    if sep and kind == "python":
        module, sep2, function = rest.rpartition(":")
        if not sep2 or not module:
            raise _invalid(field, f"expected 'python:<module>:<function>', got {command!r}")
        for part in module.split("."):
            if not _is_identifier(part):
                raise _invalid(field, f"invalid module name {module!r} in {command!r}")
        if not _is_identifier(function):
            raise _invalid(field, f"invalid function name {function!r} in {command!r}")
        return
    raise _invalid(
        field,
        f"unknown command kind in {command!r} (expected 'shell:<command line>' or "
        "'python:<module>:<function>')",
    )


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _check_args_json(args_json: str, field: str) -> None:
    if not args_json:
        return
    try:
        value = json.loads(args_json)
    except RecursionError:
        raise _invalid(field, "JSON nested too deeply") from None
    except ValueError as exc:
        raise _invalid(field, f"not valid JSON: {exc}") from None
    if not isinstance(value, list | dict):
        raise _invalid(field, f"must be a JSON array or object, not {type(value).__name__}")


def _check_non_negative(value: int | float, field: str) -> None:
    if value < 0:
        raise _invalid(field, f"must be >= 0, got {value}")


def _check_map_keys(values: Mapping[str, str], field: str, env: bool) -> None:
    # Sorted so the reported key does not depend on the map's wire order.
    for key in sorted(values):
        if not key:
            raise _invalid(field, "empty key")
        if env and ("=" in key or "\0" in key):
            # The OS cannot represent such a variable: the worker would fail late.
            raise _invalid(f"{field}[{key!r}]", "environment variable names cannot contain '='")


def validate_task_spec(spec: state_pb2.TaskSpec, field: str) -> None:
    """Raise StateError(INVALID_ARGUMENT) naming the first bad field under `field`
    (e.g. "tasks[2]"). Dependencies are checked for form only; whether they exist
    depends on the state."""
    if spec.id:
        check_id(spec.id, f"{field}.id")
    if len(spec.name) > MAX_NAME_LENGTH:
        raise _invalid(f"{field}.name", f"longer than {MAX_NAME_LENGTH} characters")
    _check_command(spec.command, f"{field}.command")
    _check_args_json(spec.args_json, f"{field}.args_json")
    if spec.group and not _GROUP.fullmatch(spec.group):
        raise _invalid(
            f"{field}.group",
            f"invalid group {spec.group!r} (1-64 characters: letters, digits, '_', '.', '-', "
            "starting with a letter or digit)",
        )
    if not math.isfinite(spec.cpu):
        raise _invalid(f"{field}.cpu", f"must be a finite number, got {spec.cpu}")
    _check_non_negative(spec.cpu, f"{field}.cpu")
    _check_non_negative(spec.memory_mb, f"{field}.memory_mb")
    _check_non_negative(spec.gpus, f"{field}.gpus")
    _check_non_negative(spec.retry_backoff_ms, f"{field}.retry_backoff_ms")
    _check_non_negative(spec.timeout_ms, f"{field}.timeout_ms")
    if not 0 <= spec.max_retries <= MAX_MAX_RETRIES:
        raise _invalid(
            f"{field}.max_retries", f"must be 0..{MAX_MAX_RETRIES}, got {spec.max_retries}"
        )
    if spec.HasField("priority"):
        validate_priority(spec.priority, f"{field}.priority")
    _check_map_keys(spec.labels, f"{field}.labels", env=False)
    _check_map_keys(spec.env, f"{field}.env", env=True)
    for j, dep in enumerate(spec.dependencies):
        if not dep:
            raise _invalid(f"{field}.dependencies[{j}]", "empty dependency id")


def validate_submit_tasks(specs: Sequence[state_pb2.TaskSpec], field: str = "tasks") -> None:
    """A SubmitTasks batch: size, every spec, and ids unique inside the batch."""
    if not specs:
        raise _invalid(field, "at least one task is required")
    if len(specs) > MAX_BATCH_TASKS:
        raise _invalid(field, f"{len(specs)} tasks in one batch (at most {MAX_BATCH_TASKS})")
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        validate_task_spec(spec, f"{field}[{i}]")
        if spec.id:
            if spec.id in seen:
                raise _invalid(
                    f"{field}[{i}].id",
                    f"duplicate task id {spec.id!r} (also {field}[{seen[spec.id]}].id)",
                )
            seen[spec.id] = i


def validate_workflow_spec(spec: state_pb2.WorkflowSpec, field: str = "workflow") -> None:
    """A whole workflow: its own fields, every task, and the graph (no duplicate ids,
    no unknown or self dependencies, no cycle)."""
    if spec.id:
        check_id(spec.id, f"{field}.id", "workflow id")
    if len(spec.name) > MAX_NAME_LENGTH:
        raise _invalid(f"{field}.name", f"longer than {MAX_NAME_LENGTH} characters")
    if spec.on_failure not in state_pb2.OnFailure.values():
        raise _invalid(
            f"{field}.on_failure",
            f"unknown value {spec.on_failure} (expected {_ON_FAILURE_NAMES})",
        )
    tasks = spec.tasks
    if not tasks:
        raise _invalid(f"{field}.tasks", "a workflow needs at least one task")
    if len(tasks) > MAX_WORKFLOW_TASKS:
        raise _invalid(
            f"{field}.tasks", f"{len(tasks)} tasks in one workflow (at most {MAX_WORKFLOW_TASKS})"
        )
    index: dict[str, int] = {}
    for i, task in enumerate(tasks):
        task_field = f"{field}.tasks[{i}]"
        if not task.id:
            raise _invalid(f"{task_field}.id", "required inside a workflow")
        validate_task_spec(task, task_field)
        if task.id in index:
            raise _invalid(
                f"{task_field}.id",
                f"duplicate task id {task.id!r} (also {field}.tasks[{index[task.id]}].id)",
            )
        index[task.id] = i
    # Dag reports these too, but only by task name; checking here first lets the
    # error point at the exact field.
    for i, task in enumerate(tasks):
        for j, dep in enumerate(task.dependencies):
            if dep == task.id:
                raise _invalid(
                    f"{field}.tasks[{i}].dependencies[{j}]", f"task {dep!r} depends on itself"
                )
            if dep not in index:
                raise _invalid(
                    f"{field}.tasks[{i}].dependencies[{j}]", f"unknown dependency {dep!r}"
                )
    try:
        Dag((task.id, task.dependencies) for task in tasks)
    except DagError as exc:
        raise _invalid(_cycle_field(field, tasks, index, exc.cycle), str(exc)) from None


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
        raise _invalid(f"{field}.id", "required")
    if len(info.id) > MAX_WORKER_ID_LENGTH:
        raise _invalid(f"{field}.id", f"longer than {MAX_WORKER_ID_LENGTH} characters")
    if not info.groups:
        raise _invalid(f"{field}.groups", "a worker serves at least one group")
    for i, group in enumerate(info.groups):
        if not _GROUP.fullmatch(group):
            raise _invalid(f"{field}.groups[{i}]", f"invalid group {group!r}")
    if not math.isfinite(info.cpu_cores):
        raise _invalid(f"{field}.cpu_cores", f"must be a finite number, got {info.cpu_cores}")
    _check_non_negative(info.cpu_cores, f"{field}.cpu_cores")
    _check_non_negative(info.memory_mb, f"{field}.memory_mb")
    _check_non_negative(info.gpu_count, f"{field}.gpu_count")
    _check_non_negative(info.capacity, f"{field}.capacity")
    _check_map_keys(info.labels, f"{field}.labels", env=False)
