"""Checks of user input before it goes on the wire, with errors that name the field.

Two layers: the Python values themselves (types, priority names, JSON-serializable
args: what a protobuf cannot even hold), then the cluster's own rules from
`agentflow.rules.validate` run on the wire form (ids, commands, groups, limits,
workflow graph and cycles), so the SDK rejects exactly what the server would, without
a round trip, and the file loader can point at a line. Each function returns a
normalized copy (priority parsed, collections copied) or raises `InvalidArgumentError`
whose `field` is a path like "tasks[2].priority".
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from agentflow._proto import state_pb2
from agentflow.client import convert
from agentflow.client.errors import InvalidArgumentError, sdk_field
from agentflow.client.models import OnFailure, Priority, PriorityLike, TaskSpec, Workflow
from agentflow.rules import limits
from agentflow.rules.errors import RuleError
from agentflow.rules.fields import json_depth
from agentflow.rules.validate import (
    check_request_id,
    validate_list_filter,
    validate_submit_tasks,
    validate_workflow_spec,
)

__all__ = [
    "check_batch",
    "check_id",
    "check_list_filter",
    "check_spec",
    "check_text",
    "check_workflow",
    "checked_batch",
    "checked_request_id",
    "checked_workflow",
    "parse_priority",
    "suggest",
]

_LEVELS = ", ".join(p.name.lower() for p in Priority)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def suggest(word: str, choices: Iterable[str]) -> str:
    """ " (did you mean 'x'?)" for a close match, else ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_priority(value: PriorityLike, field: str = "priority") -> Priority:
    """ "high", 1, "1" or Priority.HIGH; InvalidArgumentError naming `field` otherwise."""
    try:
        return Priority.parse(value)
    except ValueError:
        raise InvalidArgumentError(field, f"unknown level {value!r} (expected {_LEVELS})") from None


def _utf8(value: str, field: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A lone surrogate: what Python makes of bytes that are not UTF-8 (a shell's
        # $'\xff', a file name in another encoding). Protobuf strings cannot hold it.
        bad = value[exc.start : exc.start + 1]
        raise InvalidArgumentError(
            field, f"not valid UTF-8 (character {exc.start}: {bad!r}, from undecodable bytes)"
        ) from None
    return value


def check_text(value: object, field: str) -> str:
    """A string that protobuf can carry (valid UTF-8)."""
    if not isinstance(value, str):
        raise InvalidArgumentError(field, f"must be a string, got {_kind(value)}")
    return _utf8(value, field)


def check_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(field, "must be a non-empty string")
    return _utf8(value, field)


def _count(value: object, field: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise InvalidArgumentError(field, f"must be a whole number 0..{limit}, got {value!r}")
    return value


def _amount(value: object, field: str, limit: float, unit: str) -> float:
    bound = int(limit) if float(limit).is_integer() else limit
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= limit
    ):
        raise InvalidArgumentError(field, f"must be a number 0..{bound}{unit}, got {value!r}")
    return float(value)


def _seconds(value: object, field: str, limit_ms: int) -> float | None:
    if value is None:
        return None
    seconds = _amount(value, field, limit_ms / 1000, " s")
    if 0 < seconds < 0.0005:
        # Sent in whole milliseconds: it would round to 0, which means "none".
        raise InvalidArgumentError(field, f"must be 0 (none) or at least 1 ms, got {value!r}")
    return seconds


def _string_map(value: object, field: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(field, f"must be a mapping of strings, got {_kind(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(field, f"keys must be non-empty strings, got {key!r}")
        _utf8(key, f"{field}[{key!r}]")
        if not isinstance(item, str):
            raise InvalidArgumentError(f"{field}.{key}", f"must be a string, got {_kind(item)}")
        out[key] = _utf8(item, f"{field}[{key!r}]")
    return out


def _args(value: object, field: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, list | tuple | dict):
        raise InvalidArgumentError(field, f"must be a JSON array or object, got {_kind(value)}")
    # Before json.dumps, which recurses: 5,000 levels would be a RecursionError.
    if json_depth(value, limits.MAX_ARGS_DEPTH) > limits.MAX_ARGS_DEPTH:
        raise InvalidArgumentError(
            field, f"JSON nested more than {limits.MAX_ARGS_DEPTH} levels deep"
        )
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgumentError(field, f"not JSON-serializable: {exc}") from None
    return value


def _dependencies(value: object, field: str) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidArgumentError(field, f"must be a list of task ids, got {_kind(value)}")
    deps = tuple(value)
    for i, dep in enumerate(deps):
        check_id(dep, f"{field}[{i}]")
    return deps


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    for cls, name in names.items():
        if type(value) is cls:
            return f"{name} ({value!r})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def check_spec(spec: TaskSpec, path: str = "") -> TaskSpec:
    """A normalized copy of `spec`, or InvalidArgumentError naming `path.field`."""
    if not isinstance(spec, TaskSpec):
        raise InvalidArgumentError(path, f"expected a TaskSpec, got {type(spec).__name__}")
    f = _join
    if spec.id:
        check_id(spec.id, f(path, "id"))
    return replace(
        spec,
        command=check_text(spec.command, f(path, "command")),
        id=check_text(spec.id, f(path, "id")),
        name=check_text(spec.name, f(path, "name")),
        group=check_text(spec.group, f(path, "group")),
        priority=None
        if spec.priority is None
        else parse_priority(spec.priority, f(path, "priority")),
        cpu=_amount(spec.cpu, f(path, "cpu"), limits.MAX_CPU, " cores"),
        memory_mb=_count(spec.memory_mb, f(path, "memory_mb"), limits.MAX_MEMORY_MB),
        gpus=_count(spec.gpus, f(path, "gpus"), limits.MAX_GPUS),
        labels=_string_map(spec.labels, f(path, "labels")),
        env=_string_map(spec.env, f(path, "env")),
        cwd=check_text(spec.cwd, f(path, "cwd")),
        args=_args(spec.args, f(path, "args")),
        max_retries=_count(spec.max_retries, f(path, "max_retries"), limits.MAX_MAX_RETRIES),
        retry_backoff=_seconds(
            spec.retry_backoff, f(path, "retry_backoff"), limits.MAX_RETRY_BACKOFF_MS
        ),
        timeout=_seconds(spec.timeout, f(path, "timeout"), limits.MAX_TIMEOUT_MS),
        dependencies=_dependencies(spec.dependencies, f(path, "dependencies")),
    )


def check_list_filter(group: object, workflow_id: object) -> tuple[str, str]:
    """The group and workflow filters of a task listing: a filter no task could match
    by its form is an error (as on the server), not an empty page."""
    checked = check_text(group, "group"), check_text(workflow_id, "workflow_id")
    with _server_rules():
        validate_list_filter([], *checked)
    return checked


def checked_request_id(value: object) -> str:
    """A caller's request id: a string the cluster accepts as an idempotency key."""
    text = check_id(value, "request_id")
    with _server_rules():
        check_request_id(text)
    return text


def check_batch(specs: Sequence[TaskSpec] | Iterable[TaskSpec]) -> list[TaskSpec]:
    """Specs for one SubmitTasks call; fields are named "tasks[i].<field>"."""
    return checked_batch(specs)[0]


def checked_batch(
    specs: Sequence[TaskSpec] | Iterable[TaskSpec],
) -> tuple[list[TaskSpec], list[state_pb2.TaskSpec]]:
    """check_batch, and the wire form it checked (built once, sent as is)."""
    if isinstance(specs, TaskSpec):
        specs = [specs]
    checked = [check_spec(spec, f"tasks[{i}]") for i, spec in enumerate(specs)]
    wire = [convert.spec_to_proto(s) for s in checked]
    with _server_rules():
        validate_submit_tasks(wire, "tasks")
    return checked, wire


def check_workflow(workflow: Workflow) -> Workflow:
    """A normalized copy; also checks ids, dependencies and cycles inside the workflow."""
    return checked_workflow(workflow)[0]


def checked_workflow(workflow: Workflow) -> tuple[Workflow, state_pb2.WorkflowSpec]:
    """check_workflow, and the wire form it checked (built once, sent as is)."""
    if not isinstance(workflow, Workflow):
        raise InvalidArgumentError("", f"expected a Workflow, got {type(workflow).__name__}")
    try:
        on_failure = OnFailure.parse(workflow.on_failure)
    except ValueError as exc:
        raise InvalidArgumentError("on_failure", str(exc)) from None
    if isinstance(workflow.tasks, TaskSpec | str) or not isinstance(workflow.tasks, Iterable):
        raise InvalidArgumentError("tasks", "must be a list of tasks")
    checked = replace(
        workflow,
        tasks=tuple(check_spec(spec, f"tasks[{i}]") for i, spec in enumerate(workflow.tasks)),
        id=check_text(workflow.id, "id"),
        name=check_text(workflow.name, "name"),
        on_failure=on_failure,
    )
    wire = convert.workflow_to_proto(checked)
    with _server_rules(checked.tasks):
        validate_workflow_spec(wire, "workflow")
    return checked, wire


_DEPENDENCY = re.compile(r"^tasks\[(\d+)\]\.dependencies\[(\d+)\]$")


@contextmanager
def _server_rules(tasks: Sequence[TaskSpec] = ()) -> Iterator[None]:
    """Run the cluster's own validation (`agentflow.rules.validate`) on the wire form,
    so the SDK rejects exactly what the server would, naming the SDK's fields."""
    try:
        yield
    except RuleError as exc:
        field = sdk_field(exc.field)
        message = exc.message
        dep = _DEPENDENCY.match(field)
        if dep and message.startswith("unknown dependency") and int(dep[1]) < len(tasks):
            name = tasks[int(dep[1])].dependencies[int(dep[2])]
            message += suggest(name, (t.id for t in tasks))
        raise InvalidArgumentError(field, message) from None
