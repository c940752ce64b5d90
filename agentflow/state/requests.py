"""Request ids: the outcome of every command that carried a client's idempotency key,
remembered until pruned, so a retried request gets its first result."""

from __future__ import annotations

from agentflow._proto import state_pb2
from agentflow.state.domain import Domain

__all__ = ["RequestLog"]


class RequestLog(Domain):
    _records: dict[str, state_pb2.RequestRecord]

    def __init__(self) -> None:
        self.reset()

    def get(self, request_id: str) -> state_pb2.RequestRecord | None:
        return self._records.get(request_id)

    def record(self, cmd: state_pb2.Command, result: state_pb2.CommandResult) -> None:
        self._records[cmd.request_id] = state_pb2.RequestRecord(
            request_id=cmd.request_id,
            recorded_ms=cmd.now_ms,
            result=result,
            digest=cmd.request_digest,
        )

    def prune_before(self, before_ms: int) -> None:
        """Forget the records made before `before_ms`."""
        self._records = {k: r for k, r in self._records.items() if r.recorded_ms >= before_ms}

    def reset(self) -> None:
        self._records = {}

    def write(self, snap: state_pb2.StateSnapshot) -> None:
        snap.requests.extend(self._records.values())

    def read(self, snap: state_pb2.StateSnapshot) -> None:
        for r in snap.requests:
            record = state_pb2.RequestRecord()
            record.CopyFrom(r)
            self._records[record.request_id] = record
