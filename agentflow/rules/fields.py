"""Checks of single values, shared by every validator of client input: ids, request
ids, groups, sizes, text the OS must accept, JSON depth; and the ListTasks filters.

Pure functions of their arguments, like the rest of `agentflow.rules.validate`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from agentflow._proto import state_pb2
from agentflow.rules.errors import INVALID_ARGUMENT, RuleError
from agentflow.rules.limits import MAX_REQUEST_ID_LENGTH

__all__ = [
    "GROUP",
    "ID",
    "REQUEST_DIGEST_BYTES",
    "check_group",
    "check_id",
    "check_no_nul",
    "check_request_digest",
    "check_request_id",
    "check_size",
    "invalid",
    "json_depth",
    "number",
    "show",
    "utf8_len",
    "validate_list_filter",
]

# ASCII only: ids end up in URLs, file names and log lines on every platform.
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}", re.ASCII)
GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)


def invalid(field: str, message: str) -> RuleError:
    return RuleError(INVALID_ARGUMENT, field, message)


def show(value: str, limit: int = 80) -> str:
    """repr() of a value for an error message, shortened: the value may be megabytes."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def check_size(text: str, field: str, limit: int) -> None:
    # len() first: a str is never shorter in UTF-8 than in characters.
    if len(text) > limit or utf8_len(text) > limit:
        raise invalid(field, f"{utf8_len(text)} bytes (at most {limit})")


def check_no_nul(text: str, field: str) -> None:
    if "\0" in text:
        # The OS takes commands, paths and environment as C strings: it would be cut.
        raise invalid(field, "contains a NUL byte")


def check_id(value: str, field: str, what: str = "id") -> None:
    """A task or workflow id: ASCII, at most 128 characters, not all digits."""
    if not ID.fullmatch(value):
        raise invalid(
            field,
            f"invalid {what} {show(value)} (1-128 characters: letters, digits, '_', '.', "
            "':', '-', starting with a letter or digit)",
        )
    if value.isdigit():
        # Generated task ids are plain numbers; a client id that looked like one could
        # collide with an id the state machine hands out later.
        raise invalid(field, f"invalid {what} {value!r}: all-digit ids are reserved")


REQUEST_DIGEST_BYTES = 32  # SHA-256


def check_request_digest(value: bytes, field: str = "request_digest") -> None:
    if value and len(value) != REQUEST_DIGEST_BYTES:
        raise invalid(field, f"{len(value)} bytes (a SHA-256 digest is {REQUEST_DIGEST_BYTES})")


def check_request_id(value: str, field: str = "request_id") -> None:
    """An idempotency key: empty (none) or 1-128 printable characters without spaces."""
    if len(value) > MAX_REQUEST_ID_LENGTH:
        raise invalid(field, f"{len(value)} characters (at most {MAX_REQUEST_ID_LENGTH})")
    if not value.isprintable() or any(c.isspace() for c in value):
        raise invalid(field, f"invalid request id {show(value)} (printable, no spaces)")


def json_depth(value: object, stop: int) -> int:
    """Nesting depth of arrays/objects in a JSON value (a scalar is 0), iteratively;
    stops counting once past `stop`."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > stop:
            return deepest
        stack.extend((c, depth + 1) for c in children if isinstance(c, list | tuple | dict))
    return deepest


def number(value: int | float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def check_group(group: str, field: str) -> None:
    if not GROUP.fullmatch(group):
        raise invalid(
            field,
            f"invalid group {show(group)} (1-64 characters: letters, digits, '_', '.', '-', "
            "starting with a letter or digit)",
        )


_TASK_STATES = frozenset(v for v in state_pb2.TaskState.values() if v)


def validate_list_filter(states: Sequence[int], group: str, workflow_id: str) -> None:
    """The filters of ListTasks: a filter that can match nothing by its form (a state
    number this version does not know, a group or workflow id no submit could have
    used) is an error, not an empty page."""
    for i, state in enumerate(states):
        if state not in _TASK_STATES:
            names = ", ".join(
                f"{state_pb2.TaskState.Name(v).removeprefix('TASK_STATE_')}={v}"
                for v in sorted(_TASK_STATES)
            )
            raise invalid(f"states[{i}]", f"unknown task state {state} (expected {names})")
    if group:
        check_group(group, "group")
    if workflow_id:
        check_id(workflow_id, "workflow_id", "workflow id")
