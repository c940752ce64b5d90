"""The core of the state machine on its own: dispatch by command kind to the domain
that registered it, ids per domain in the ChangeSet, snapshot sections, request ids."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest

from agentflow._proto import state_pb2 as pb
from agentflow.state import ChangeSet, SchedulerState, encode
from agentflow.state.core import StateMachine
from agentflow.state.domain import Changes, Domain, Handler
from agentflow.state.requests import RequestLog


class Names(Domain):
    """A toy domain: RegisterWorker records a name, kept in the snapshot's workers."""

    name = "workers"

    def __init__(self) -> None:
        self.names: dict[str, None] = {}

    def handlers(self) -> Mapping[str, Handler]:
        return {"register_worker": self._register}

    def _register(self, cmd: pb.Command, ch: Changes, result: pb.CommandResult) -> None:
        self.names[cmd.register_worker.info.id] = None
        ch.mark(self.name, cmd.register_worker.info.id)

    def ids(self) -> Iterable[str]:
        return self.names

    def reset(self) -> None:
        self.names = {}

    def write(self, snap: pb.StateSnapshot) -> None:
        snap.workers.extend(pb.Worker(info=pb.WorkerInfo(id=n)) for n in self.names)

    def read(self, snap: pb.StateSnapshot) -> None:
        self.names = dict.fromkeys(w.info.id for w in snap.workers)


def register(name: str, request_id: str = "") -> bytes:
    info = pb.WorkerInfo(id=name)
    return encode(pb.Command(request_id=request_id, register_worker=pb.RegisterWorker(info=info)))


def test_every_command_kind_has_a_handler() -> None:
    kinds = [f.name for f in pb.Command.DESCRIPTOR.oneofs_by_name["kind"].fields]
    sm = SchedulerState()
    assert sorted(sm.kinds) == sorted(kinds)


def test_a_kind_registered_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="register_worker"):
        StateMachine(RequestLog(), [Names(), Names()])


def test_the_core_dispatches_to_the_domain_and_reports_its_ids() -> None:
    names = Names()
    sm = StateMachine(RequestLog(), [names])
    seen: list[ChangeSet] = []
    sm.add_listener(seen.append)
    assert not sm.apply(1, register("a", "r1")).HasField("error")
    assert names.names == {"a": None}
    assert seen == [ChangeSet(1, workers=("a",))]
    # The retry gets the first result and changes nothing.
    again = sm.apply(2, register("b", "r1"))
    assert again.duplicate and again.index == 1
    assert names.names == {"a": None}
    # A kind no domain registered is refused like an empty command.
    cancel = encode(pb.Command(cancel_tasks=pb.CancelTasks(task_ids=["x"])))
    refused = sm.apply(3, cancel)
    assert refused.error.field == "kind"
    assert refused.error.code == pb.CommandError.INVALID_ARGUMENT


def test_the_snapshot_is_assembled_from_the_sections() -> None:
    sm = StateMachine(RequestLog(), [Names()])
    sm.apply(1, register("a", "r1"))
    sm.apply(2, register("b"))
    snap = pb.StateSnapshot.FromString(sm.snapshot())
    assert [w.info.id for w in snap.workers] == ["a", "b"]
    assert [r.request_id for r in snap.requests] == ["r1"]
    assert snap.applied_index == 2
    names = Names()
    restored = StateMachine(RequestLog(), [names])
    seen: list[ChangeSet] = []
    restored.add_listener(seen.append)
    restored.restore(sm.snapshot())
    assert names.names == {"a": None, "b": None}
    assert restored.request("r1") is not None
    assert restored.snapshot() == sm.snapshot()
    assert seen == [ChangeSet(2, workers=("a", "b"))]
