"""The one error type for input that breaks a rule, carried in `CommandResult.error`.

The state machine raises it too (as `agentflow.state.errors.StateError`, the same
class) for what depends on the state: an unknown task, an id already taken.
"""

from __future__ import annotations

from agentflow._proto import state_pb2

__all__ = [
    "ALREADY_EXISTS",
    "FAILED_PRECONDITION",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "Code",
    "RuleError",
]

Code = state_pb2.CommandError.Code

INVALID_ARGUMENT = state_pb2.CommandError.INVALID_ARGUMENT
NOT_FOUND = state_pb2.CommandError.NOT_FOUND
ALREADY_EXISTS = state_pb2.CommandError.ALREADY_EXISTS
FAILED_PRECONDITION = state_pb2.CommandError.FAILED_PRECONDITION


class RuleError(Exception):
    """A command (or a request the master is about to propose) is not acceptable.

    `field` names the offending field the way a client wrote it
    ("tasks[3].dependencies[0]"), so gRPC and HTTP errors can point at it.
    """

    def __init__(self, code: Code.ValueType, field: str, message: str) -> None:
        super().__init__(code, field, message)
        self.code = code
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def __repr__(self) -> str:
        try:
            name = state_pb2.CommandError.Code.Name(self.code)
        except ValueError:  # an unknown code from a newer peer must still print
            name = str(int(self.code))
        # The name it has always had in logs, where the state machine raised it.
        return f"StateError({name}, {self.field!r}, {self.message!r})"

    def to_proto(self) -> state_pb2.CommandError:
        return state_pb2.CommandError(code=self.code, field=self.field, message=self.message)

    @classmethod
    def from_proto(cls, error: state_pb2.CommandError) -> RuleError:
        return cls(error.code, error.field, error.message)
