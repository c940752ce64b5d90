"""click parameter types for AgentFlow values; bad input is a usage error (exit 2)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from agentflow.client.durations import parse_duration
from agentflow.client.errors import InvalidArgumentError
from agentflow.client.models import Priority, TaskState
from agentflow.client.validation import parse_priority

if TYPE_CHECKING:
    _Param = click.ParamType[Any, Any]  # generic from click 8.2 on
else:
    _Param = click.ParamType

_Ctx = click.Context | None
_Arg = click.Parameter | None


class PriorityType(_Param):
    name = "level"

    def convert(self, value: Any, param: _Arg, ctx: _Ctx) -> Priority:
        try:
            return parse_priority(value)
        except InvalidArgumentError as exc:
            self.fail(exc.reason, param, ctx)


class StatesType(_Param):
    """ "pending" or "pending,running"; the option may repeat."""

    name = "state[,state...]"

    def convert(self, value: Any, param: _Arg, ctx: _Ctx) -> tuple[TaskState, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(TaskState.parse(p) for p in str(value).split(",") if p.strip())
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class KeyValueType(_Param):
    """KEY=VALUE (the value may be empty or contain '=')."""

    name = "key=value"

    def convert(self, value: Any, param: _Arg, ctx: _Ctx) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, item = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"expected KEY=VALUE, got {value!r}", param, ctx)
        return key.strip(), item


class DurationType(_Param):
    name = "duration"

    def convert(self, value: Any, param: _Arg, ctx: _Ctx) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class JsonType(_Param):
    name = "json"

    def convert(self, value: Any, param: _Arg, ctx: _Ctx) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except RecursionError:
            self.fail("invalid JSON: nested too deeply", param, ctx)
        except ValueError as exc:
            self.fail(f"invalid JSON: {exc}", param, ctx)


PRIORITY = PriorityType()
STATES = StatesType()
KEY_VALUE = KeyValueType()
DURATION = DurationType()
JSON = JsonType()


def pairs_to_dict(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(pairs)


def flatten_states(groups: tuple[tuple[TaskState, ...], ...]) -> list[TaskState]:
    return list(dict.fromkeys(state for group in groups for state in group))
