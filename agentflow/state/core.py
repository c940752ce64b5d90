"""The state machine's core: what every command goes through, whatever it is about.

The core checks and dedupes request ids, dispatches a command by its kind (the name
of the set `Command.kind` field) to the handler a domain registered, keeps the time
(`Command.now_ms`), tells listeners what changed, and assembles the snapshot from the
sections the domains write. What the state holds and how a command changes it is the
domains' business (tasks, workflows, workers, ...): a new kind of record is a new
domain module, not a bigger core.

Deterministic by construction: no clock, no randomness, no I/O. Every handler validates
completely before its first mutation, so a command that fails changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog
from google.protobuf.message import DecodeError

from agentflow._proto import state_pb2
from agentflow.rules.validate import check_request_digest, check_request_id
from agentflow.state.domain import CHANGE_KINDS, Changes, ChangeSet, Domain, Handler, Listener
from agentflow.state.errors import FAILED_PRECONDITION, INVALID_ARGUMENT, StateError
from agentflow.state.requests import RequestLog

__all__ = ["StateMachine", "encode"]

_log = structlog.get_logger(__name__)


def encode(cmd: state_pb2.Command) -> bytes:
    """The bytes to propose; deterministic so equal commands give equal log entries."""
    return cmd.SerializeToString(deterministic=True)


class StateMachine:
    """Applies committed commands to a fixed set of domains."""

    applied_index: int

    def __init__(self, requests: RequestLog, domains: Sequence[Domain]) -> None:
        self._listeners: list[Listener] = []
        self._requests = requests
        self._domains: tuple[Domain, ...] = (requests, *domains)
        self._handlers: dict[str, Handler] = {}
        for domain in self._domains:
            for kind, handler in domain.handlers().items():
                if kind in self._handlers:
                    raise ValueError(f"command kind {kind!r} registered twice")
                self._handlers[kind] = handler
        self.applied_index = 0
        self._last_now_ms = 0

    @property
    def kinds(self) -> frozenset[str]:
        """The command kinds some domain applies (the others are refused)."""
        return frozenset(self._handlers)

    @property
    def last_now_ms(self) -> int:
        """`now_ms` of the last applied command: the state's notion of the time."""
        return self._last_now_ms

    def request(self, request_id: str) -> state_pb2.RequestRecord | None:
        """The recorded outcome of a request id, if it is still remembered."""
        return self._requests.get(request_id)

    # ---- listeners ----------------------------------------------------------------

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call `fn` after every apply that changed something, and after restore.

        Returns a function that unsubscribes (calling it twice is harmless).
        """
        self._listeners.append(fn)

        def unsubscribe() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)

        return unsubscribe

    def _notify(self, change: ChangeSet) -> None:
        for fn in list(self._listeners):
            try:
                fn(change)
            except Exception:
                # A listener is a leader-side view; its bug must not stall the log.
                _log.exception("state listener failed", index=change.index, listener=repr(fn))

    # ---- apply --------------------------------------------------------------------

    def apply(self, index: int, command: bytes) -> state_pb2.CommandResult:
        try:
            cmd = state_pb2.Command.FromString(command)
        except (DecodeError, ValueError, RuntimeError) as exc:
            # A corrupt entry must give the same answer on every replica, not a crash.
            self.applied_index = index
            error = StateError(INVALID_ARGUMENT, "command", f"undecodable command: {exc}")
            return state_pb2.CommandResult(index=index, error=error.to_proto())
        return self.apply_command(index, cmd)

    def apply_command(self, index: int, cmd: state_pb2.Command) -> state_pb2.CommandResult:
        self.applied_index = index
        self._last_now_ms = cmd.now_ms
        if cmd.request_id or cmd.request_digest:
            try:
                check_request_id(cmd.request_id)
                check_request_digest(cmd.request_digest)
            except StateError as exc:
                return state_pb2.CommandResult(index=index, error=exc.to_proto())
            record = self._requests.get(cmd.request_id)
            if record is not None:
                return self._repeated(index, cmd, record)
        changes = Changes(index, cmd.now_ms)
        result = state_pb2.CommandResult(index=index)
        kind = cmd.WhichOneof("kind")
        try:
            handler = self._handlers.get(kind) if kind is not None else None
            if handler is None:
                # No domain of this build knows the kind: the same answer on every replica.
                raise StateError(INVALID_ARGUMENT, "kind", "empty or unknown command")
            handler(cmd, changes, result)
        except StateError as exc:
            # Handlers raise only before their first mutation: nothing to undo.
            result = state_pb2.CommandResult(index=index, error=exc.to_proto())
        for domain in self._domains:
            domain.end_command(changes)
        if cmd.request_id:
            self._requests.record(cmd, result)
        change = changes.change_set()
        if change is not None:
            self._notify(change)
        return result

    @staticmethod
    def _repeated(
        index: int, cmd: state_pb2.Command, record: state_pb2.RequestRecord
    ) -> state_pb2.CommandResult:
        """A request id seen before: the first result if this is the same request (a
        retry), an error if it is another one, which would otherwise be dropped."""
        if record.digest and cmd.request_digest and record.digest != cmd.request_digest:
            # Like a payment API's idempotency key: reuse for a different request is the
            # caller's bug, and answering with the first result would hide its loss.
            error = StateError(
                FAILED_PRECONDITION,
                "request_id",
                f"request id {cmd.request_id!r} was already used for a different request "
                f"(applied at index {record.result.index}); use a new id for a new request",
            )
            return state_pb2.CommandResult(index=index, error=error.to_proto())
        # The first result, index included: it says where the change happened.
        duplicate = state_pb2.CommandResult()
        duplicate.CopyFrom(record.result)
        duplicate.duplicate = True
        return duplicate

    # ---- snapshot -----------------------------------------------------------------

    def snapshot(self) -> bytes:
        snap = state_pb2.StateSnapshot(
            applied_index=self.applied_index, last_now_ms=self._last_now_ms
        )
        for domain in self._domains:
            domain.write(snap)
        # Deterministic: map fields (env, labels) in key order, so replicas compare equal.
        return snap.SerializeToString(deterministic=True)

    def restore(self, data: bytes) -> None:
        """Replace the whole state. Raises DecodeError on bytes that are not a snapshot,
        before anything is changed."""
        snap = state_pb2.StateSnapshot.FromString(data)
        before = {d.name: list(d.ids()) for d in self._domains if d.name in CHANGE_KINDS}
        for domain in self._domains:
            domain.reset()
        self.applied_index = snap.applied_index
        self._last_now_ms = snap.last_now_ms
        for domain in self._domains:
            domain.read(snap)
        for domain in self._domains:
            domain.rebuild()
        now = {d.name: d.ids() for d in self._domains if d.name in CHANGE_KINDS}
        # Ids gone with the restore are listed too, so listeners drop them.
        union = {k: tuple(dict.fromkeys([*now[k], *before[k]])) for k in now}
        self._notify(ChangeSet(self.applied_index, **union))
