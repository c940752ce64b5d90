"""The state machine's error: the rules' error type itself (one class, so a request
the master refuses and a command the state machine refuses are caught alike)."""

from __future__ import annotations

from agentflow.rules.errors import (
    ALREADY_EXISTS,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    Code,
)
from agentflow.rules.errors import RuleError as StateError

__all__ = [
    "ALREADY_EXISTS",
    "FAILED_PRECONDITION",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "Code",
    "StateError",
]
