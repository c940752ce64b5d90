"""Workflow and task files (YAML, or JSON) with errors that point at a line.

Workflow file:

    workflow:
      id: release            # optional; generated when missing
      name: Release 1.2
      on_failure: skip       # or continue
      tasks:
        - task_id: build
          desc: "shell:make build"   # `command:` works too
          priority: high
        - task_id: test
          command: "shell:make test"
          dependencies: [build]
          group: linux
          timeout: 10m               # seconds, or 500ms / 30s / 10m / 2h

Task file (for `agentflow submit`): a list of such tasks (task_id optional), or a
mapping with just `tasks:`.

Every problem is one `WorkflowFileError`:
"workflow.yaml:14: tasks[2].priority: unknown level 'urgent' (expected critical, ...)".
The file only shapes the data; the values are checked by `validation`, the same code
that checks SDK callers, and its field paths are mapped back to lines here.
"""

from __future__ import annotations

import re
from os import PathLike, fspath
from pathlib import Path
from typing import Any

from agentflow.client.durations import parse_duration
from agentflow.client.errors import InvalidArgumentError, WorkflowFileError
from agentflow.client.marked_yaml import MarkedDict, MarkedList, YamlSyntaxError, load
from agentflow.client.models import TaskSpec, Workflow
from agentflow.client.validation import check_batch, check_workflow, suggest

__all__ = ["load_tasks", "load_workflow", "parse_tasks", "parse_workflow"]

# file key -> TaskSpec field
TASK_KEYS: dict[str, str] = {
    "task_id": "id",
    "name": "name",
    "command": "command",
    "desc": "command",
    "group": "group",
    "priority": "priority",
    "cpu": "cpu",
    "memory_mb": "memory_mb",
    "gpus": "gpus",
    "labels": "labels",
    "env": "env",
    "cwd": "cwd",
    "args": "args",
    "max_retries": "max_retries",
    "retry_backoff": "retry_backoff",
    "timeout": "timeout",
    "dependencies": "dependencies",
}
WORKFLOW_KEYS = ("id", "name", "on_failure", "tasks")
_DURATIONS = frozenset({"retry_backoff", "timeout"})
_STRING_MAPS = frozenset({"labels", "env"})
_LAST_PART = re.compile(r"(\.[^.\[]+|\[[^\]]*\])$")


def load_workflow(path: str | PathLike[str]) -> Workflow:
    """The workflow in a YAML/JSON file, checked; WorkflowFileError otherwise."""
    return parse_workflow(_read(path), fspath(path))


def load_tasks(path: str | PathLike[str]) -> list[TaskSpec]:
    """The tasks in a YAML/JSON task file, checked; WorkflowFileError otherwise."""
    return parse_tasks(_read(path), fspath(path))


def _read(path: str | PathLike[str]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise WorkflowFileError(fspath(path), 0, "", f"cannot read the file: {reason}") from None


class _File:
    """Where each field path of one file is, and the file's own key names."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: dict[str, int] = {}
        self.renames: dict[str, str] = {}  # "tasks[0].id" -> "tasks[0].task_id"

    def error(self, field: str, message: str, line: int) -> WorkflowFileError:
        return WorkflowFileError(self.name, line, self._display(field), message)

    def locate(self, exc: InvalidArgumentError) -> WorkflowFileError:
        """The same error, at the line of its field (or of the closest enclosing one)."""
        path = exc.field
        while path and path not in self.lines:
            path = _LAST_PART.sub("", path) if _LAST_PART.search(path) else ""
        return self.error(exc.field, exc.reason, self.lines.get(path, 0))

    def _display(self, field: str) -> str:
        path = field
        while path:
            if path in self.renames:
                return self.renames[path] + field[len(path) :]
            path = _LAST_PART.sub("", path) if _LAST_PART.search(path) else ""
        return field

    def load(self, text: str) -> Any:
        try:
            return load(text)
        except YamlSyntaxError as exc:
            raise WorkflowFileError(self.name, exc.line, "", exc.message) from None


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "nothing" if value is None else f"{value!r}"


def _as_id(value: Any) -> Any:
    """Ids written as numbers (`task_id: 1`) are meant as text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _scalar_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else value


def parse_workflow(text: str, name: str = "<workflow>") -> Workflow:
    """Parse and check workflow file content; `name` is used in error messages."""
    file = _File(name)
    data = file.load(text)
    if not isinstance(data, MarkedDict) or "workflow" not in data:
        line = data.line if isinstance(data, MarkedDict | MarkedList) else 1
        raise file.error("", "expected a mapping with a 'workflow:' key at the top", line)
    _reject_unknown(file, data, ("workflow",), "")
    body = data["workflow"]
    if not isinstance(body, MarkedDict):
        raise file.error(
            "workflow", f"expected a mapping, got {_kind(body)}", data.value_lines["workflow"]
        )
    _reject_unknown(file, body, WORKFLOW_KEYS, "")
    for key in body:
        file.lines[key] = body.value_lines[key]
    if "tasks" not in body:
        raise file.error(
            "tasks", "missing: a workflow needs a list of tasks", data.key_lines["workflow"]
        )
    tasks = _tasks(file, body["tasks"], body.value_lines["tasks"], require_id=True)
    fields = {k: _as_id(v) if k == "id" else v for k, v in body.items() if k != "tasks"}
    try:
        return check_workflow(Workflow(tasks, **fields))
    except InvalidArgumentError as exc:
        raise file.locate(exc) from None


def parse_tasks(text: str, name: str = "<tasks>") -> list[TaskSpec]:
    """Parse and check task file content (a list of tasks, or `tasks: [...]`)."""
    file = _File(name)
    data = file.load(text)
    line = data.line if isinstance(data, MarkedDict | MarkedList) else 1
    if isinstance(data, MarkedDict):
        _reject_unknown(file, data, ("tasks",), "")
        if "tasks" not in data:
            raise file.error("tasks", "missing: expected a list of tasks", line)
        data, line = data["tasks"], data.value_lines["tasks"]
    tasks = _tasks(file, data, line, require_id=False)
    try:
        return check_batch(tasks)
    except InvalidArgumentError as exc:
        raise file.locate(exc) from None


def _reject_unknown(file: _File, data: MarkedDict, known: tuple[str, ...], path: str) -> None:
    for key in data:
        if key not in known:
            hint = suggest(str(key), known)
            raise file.error(path, f"unknown key {key!r}{hint}", data.key_lines[key])


def _tasks(file: _File, raw: Any, line: int, *, require_id: bool) -> list[TaskSpec]:
    file.lines["tasks"] = line
    if not isinstance(raw, MarkedList):
        raise file.error("tasks", f"expected a list of tasks, got {_kind(raw)}", line)
    specs = []
    for i, (item, item_line) in enumerate(zip(raw, raw.item_lines, strict=True)):
        specs.append(_task(file, item, f"tasks[{i}]", item_line, require_id))
    return specs


def _task(file: _File, raw: Any, path: str, line: int, require_id: bool) -> TaskSpec:
    file.lines[path] = line
    if not isinstance(raw, MarkedDict):
        raise file.error(path, f"expected a mapping of task fields, got {_kind(raw)}", line)
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in TASK_KEYS:
            hint = suggest(str(key), TASK_KEYS)
            raise file.error(path, f"unknown key {key!r}{hint}", raw.key_lines[key])
        field = TASK_KEYS[key]
        if field in fields:
            raise file.error(path, "give 'command' or 'desc', not both", raw.key_lines[key])
        field_path = f"{path}.{field}"
        file.lines[field_path] = raw.value_lines[key]
        if key != field:
            file.renames[field_path] = f"{path}.{key}"
        fields[field] = _field_value(file, field, field_path, value, raw.value_lines[key])
    if "command" not in fields:
        raise file.error(path, "missing 'command' (or 'desc')", line)
    if require_id and "id" not in fields:
        raise file.error(path, "missing 'task_id' (other tasks depend on it by this id)", line)
    return TaskSpec(fields.pop("command"), **fields)


def _field_value(file: _File, field: str, path: str, value: Any, line: int) -> Any:
    if field == "id":
        return _as_id(value)
    if field in _DURATIONS and isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise file.error(path, str(exc), line) from None
    if field in _STRING_MAPS and isinstance(value, MarkedDict):
        for key in value:
            file.lines[f"{path}.{key}"] = value.value_lines[key]
        return {key: _scalar_text(item) for key, item in value.items()}
    if field == "dependencies" and isinstance(value, MarkedList):
        for k, item_line in enumerate(value.item_lines):
            file.lines[f"{path}[{k}]"] = item_line
        return [_as_id(item) for item in value]
    return value
