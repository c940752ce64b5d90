"""`FakeMaster`: an in-process stand-in for a master, for tests of code that uses the
SDK or the CLI without a cluster.

It serves SchedulerService and ClusterService on 127.0.0.1 from a small in-memory
state (ids "1", "2", ...; a workflow's tasks are "<workflow>/<task>"; request ids are
deduplicated like the real state machine) and lets a test script faults at the edge:

    fake = FakeMaster().start()
    fake.fail_next("SubmitTasks", grpc.StatusCode.UNKNOWN, "commit unknown", apply=True)
    with Client(fake.address) as client:
        client.submit("shell:true")        # retried once, applied once
    assert len({r.request.request_id for r in fake.calls("SubmitTasks")}) == 1
    fake.stop()

No scheduling happens: tasks stay READY (PENDING with dependencies) until the test
calls `finish()`. Not a model of the real semantics beyond what the SDK relies on.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import grpc

from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import scheduler_pb2_grpc as api_grpc
from agentflow._proto import state_pb2 as pb

__all__ = ["Call", "FakeMaster", "Fault"]

_FINAL = frozenset(
    {
        pb.TASK_STATE_SUCCEEDED,
        pb.TASK_STATE_FAILED,
        pb.TASK_STATE_CANCELLED,
        pb.TASK_STATE_SKIPPED,
    }
)


@dataclass
class Fault:
    method: str  # "SubmitTasks", ... or "*"
    code: grpc.StatusCode
    details: str = ""
    leader_address: str = ""
    times: int | None = 1  # None: forever
    apply: bool = False  # do the work first, then fail (an outcome the client cannot see)


@dataclass(frozen=True)
class Call:
    method: str
    request: Any
    metadata: dict[str, str]
    failed: bool


@dataclass
class _State:
    tasks: dict[str, pb.Task] = field(default_factory=dict)
    workflows: dict[str, pb.Workflow] = field(default_factory=dict)
    requests: dict[str, Any] = field(default_factory=dict)
    index: int = 0
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))


class FakeMaster:
    def __init__(self, node_id: str = "fake", *, workers: list[api.WorkerStatus] | None = None):
        self.node_id = node_id
        self.address = ""
        self.workers = list(workers or [])
        self.explanations: list[str] = ["no live worker in group 'default'"]
        # False plays a master older than end_when_final: its watches never end.
        self.ends_watches = True
        self._state = _State()
        self._faults: list[Fault] = []
        self._calls: list[Call] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._server: grpc.Server | None = None

    # ----- lifecycle -----

    def start(self) -> FakeMaster:
        server = grpc.server(ThreadPoolExecutor(max_workers=16))
        api_grpc.add_SchedulerServiceServicer_to_server(_Scheduler(self), server)
        api_grpc.add_ClusterServiceServicer_to_server(_Cluster(self), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def __enter__(self) -> FakeMaster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- scripting -----

    def fail_next(
        self,
        method: str,
        code: grpc.StatusCode,
        details: str = "",
        *,
        leader_address: str = "",
        times: int | None = 1,
        apply: bool = False,
    ) -> None:
        """Answer the next `times` calls of `method` ("*" = any) with this error."""
        with self._cond:
            self._faults.append(Fault(method, code, details, leader_address, times, apply))

    def calls(self, method: str | None = None) -> list[Call]:
        with self._cond:
            return [c for c in self._calls if method is None or c.method == method]

    @property
    def index(self) -> int:
        """The index of the latest change: each write and each played event takes one."""
        with self._cond:
            return self._state.index

    def finish(self, task_id: str, success: bool = True, exit_code: int = 0) -> None:
        """Play a worker: the task ends (its dependents become READY or SKIPPED)."""
        with self._cond:
            task = self._state.tasks[task_id]
            task.state = pb.TASK_STATE_SUCCEEDED if success else pb.TASK_STATE_FAILED
            task.result.exit_code = exit_code
            self._changed(task)
            self._release_dependents()

    def set_running(self, task_id: str, progress: float = 0.0, worker_id: str = "w1") -> None:
        with self._cond:
            task = self._state.tasks[task_id]
            task.state, task.progress, task.worker_id = pb.TASK_STATE_RUNNING, progress, worker_id
            task.attempt = max(task.attempt, 1)
            self._changed(task)

    def task(self, task_id: str) -> pb.Task:
        with self._cond:
            copy = pb.Task()
            copy.CopyFrom(self._state.tasks[task_id])
            return copy

    # ----- internals (called with self._cond held unless noted) -----

    def _now(self) -> int:
        return int(time.time() * 1000)

    def _changed(self, task: pb.Task) -> None:
        self._state.index += 1
        task.updated_index = self._state.index
        self._update_workflow(task.workflow_id)
        self._cond.notify_all()

    def _update_workflow(self, workflow_id: str) -> None:
        workflow = self._state.workflows.get(workflow_id)
        if workflow is None:
            return
        states = [self._state.tasks[t].state for t in workflow.task_ids]
        if all(s in _FINAL for s in states) and workflow.state == pb.WORKFLOW_STATE_RUNNING:
            if all(s == pb.TASK_STATE_SUCCEEDED for s in states):
                workflow.state = pb.WORKFLOW_STATE_SUCCEEDED
            elif any(s == pb.TASK_STATE_CANCELLED for s in states):
                workflow.state = pb.WORKFLOW_STATE_CANCELLED
            else:
                workflow.state = pb.WORKFLOW_STATE_FAILED
            workflow.finished_ms = self._now()

    def _release_dependents(self) -> None:
        for task in self._state.tasks.values():
            if task.state != pb.TASK_STATE_PENDING:
                continue
            deps = [self._state.tasks[d].state for d in task.dependencies]
            if any(s in (pb.TASK_STATE_FAILED, pb.TASK_STATE_SKIPPED) for s in deps):
                task.state = pb.TASK_STATE_SKIPPED
                self._changed(task)
            elif all(s == pb.TASK_STATE_SUCCEEDED for s in deps):
                task.state = pb.TASK_STATE_READY
                self._changed(task)

    def _new_task(self, spec: pb.TaskSpec, task_id: str, workflow_id: str, deps: list[str]) -> str:
        if task_id in self._state.tasks:
            raise _Abort(grpc.StatusCode.ALREADY_EXISTS, f"id: task {task_id!r} exists")
        for k, dep in enumerate(deps):
            if dep not in self._state.tasks:
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"tasks[0].dependencies[{k}]: unknown dependency {dep!r}",
                )
        task = pb.Task(
            id=task_id,
            workflow_id=workflow_id,
            state=pb.TASK_STATE_PENDING if deps else pb.TASK_STATE_READY,
            priority=spec.priority if spec.HasField("priority") else pb.PRIORITY_NORMAL,
            created_ms=self._now(),
            dependencies=deps,
        )
        task.spec.CopyFrom(spec)
        self._state.tasks[task_id] = task
        self._changed(task)
        return task_id

    def enter(self, method: str, request: Any, context: grpc.ServicerContext) -> Fault | None:
        """Record the call; the fault to answer with, if one is scripted (lock not held)."""
        metadata = {k: str(v) for k, v in context.invocation_metadata()}
        with self._cond:
            fault = next((f for f in self._faults if f.method in (method, "*")), None)
            if fault is not None and fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            self._calls.append(Call(method, request, metadata, fault is not None))
        return fault


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _abort(
    context: grpc.ServicerContext, code: grpc.StatusCode, details: str, leader: str
) -> NoReturn:
    if leader:
        context.set_trailing_metadata((("leader-address", leader),))
    context.abort(code, details)
    raise AssertionError("context.abort raises")


_S = TypeVar("_S", bound="_Servicer")
_Q = TypeVar("_Q")
_R = TypeVar("_R")


def _handler(
    method: str,
) -> Callable[[Callable[[_S, _Q], _R]], Callable[[_S, _Q, grpc.ServicerContext], _R]]:
    """Wrap a unary handler: faults, recording, the lock, _Abort -> status."""

    def wrap(fn: Callable[[_S, _Q], _R]) -> Callable[[_S, _Q, grpc.ServicerContext], _R]:
        def handle(self: _S, request: _Q, context: grpc.ServicerContext) -> _R:
            fake = self.fake
            fault = fake.enter(method, request, context)
            if fault is not None and not fault.apply:
                return _abort(context, fault.code, fault.details, fault.leader_address)
            try:
                with fake._cond:
                    response = fn(self, request)
            except _Abort as exc:
                return _abort(context, exc.code, exc.details, "")
            if fault is not None:
                return _abort(context, fault.code, fault.details, fault.leader_address)
            return response

        return handle

    return wrap


class _Servicer:
    def __init__(self, fake: FakeMaster) -> None:
        self.fake = fake

    @property
    def state(self) -> _State:
        return self.fake._state


class _Scheduler(_Servicer, api_grpc.SchedulerServiceServicer):
    def _dedupe(self, request_id: str) -> Any:
        return self.state.requests.get(request_id) if request_id else None

    @_handler("SubmitTasks")
    def SubmitTasks(self, request: api.SubmitTasksRequest) -> api.SubmitTasksResponse:
        seen = self._dedupe(request.request_id)
        if seen is not None:
            return api.SubmitTasksResponse(task_ids=seen.task_ids, index=seen.index, duplicate=True)
        if not request.tasks:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "tasks: at least one task is required")
        ids = []
        for spec in request.tasks:
            task_id = spec.id or str(next(self.state.ids))
            ids.append(self.fake._new_task(spec, task_id, "", list(spec.dependencies)))
        response = api.SubmitTasksResponse(task_ids=ids, index=self.state.index)
        self.state.requests[request.request_id] = response
        return response

    @_handler("SubmitWorkflow")
    def SubmitWorkflow(self, request: api.SubmitWorkflowRequest) -> api.SubmitWorkflowResponse:
        seen = self._dedupe(request.request_id)
        if seen is not None:
            response = api.SubmitWorkflowResponse()
            response.CopyFrom(seen)
            response.duplicate = True
            return response
        spec = request.workflow
        workflow_id = spec.id or f"wf{next(self.state.ids)}"
        if workflow_id in self.state.workflows:
            raise _Abort(grpc.StatusCode.ALREADY_EXISTS, f"workflow.id: {workflow_id!r} exists")
        workflow = pb.Workflow(
            id=workflow_id,
            name=spec.name,
            on_failure=spec.on_failure,
            state=pb.WORKFLOW_STATE_RUNNING,
            created_ms=self.fake._now(),
        )
        for task in spec.tasks:
            deps = [f"{workflow_id}/{d}" for d in task.dependencies]
            global_id = f"{workflow_id}/{task.id}"
            self.fake._new_task(task, global_id, workflow_id, deps)
            workflow.task_ids.append(global_id)
        self.state.workflows[workflow_id] = workflow
        response = api.SubmitWorkflowResponse(
            workflow_id=workflow_id, task_ids=workflow.task_ids, index=self.state.index
        )
        self.state.requests[request.request_id] = response
        return response

    def _task(self, task_id: str) -> pb.Task:
        task = self.state.tasks.get(task_id)
        if task is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"task {task_id!r} not found")
        return task

    @_handler("GetTask")
    def GetTask(self, request: api.GetTaskRequest) -> pb.Task:
        return self._task(request.task_id)

    @_handler("GetWorkflow")
    def GetWorkflow(self, request: api.GetWorkflowRequest) -> api.GetWorkflowResponse:
        workflow = self.state.workflows.get(request.workflow_id)
        if workflow is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"workflow {request.workflow_id!r} not found")
        tasks = [self.state.tasks[t] for t in workflow.task_ids]
        counts: dict[str, int] = {}
        for task in tasks:
            name = pb.TaskState.Name(task.state)
            counts[name] = counts.get(name, 0) + 1
        return api.GetWorkflowResponse(
            workflow=workflow,
            tasks=tasks if request.include_tasks else [],
            execution_order=list(workflow.task_ids),
            critical_path=list(workflow.task_ids),
            state_counts=counts,
        )

    @_handler("ListTasks")
    def ListTasks(self, request: api.ListTasksRequest) -> api.ListTasksResponse:
        matching = [
            t
            for t in self.state.tasks.values()
            if (not request.states or t.state in request.states)
            and (not request.group or (t.spec.group or "default") == request.group)
            and (not request.workflow_id or t.workflow_id == request.workflow_id)
        ]
        start = int(request.page_token or 0)
        size = request.page_size or 100
        page = matching[start : start + size]
        more = start + size < len(matching)
        return api.ListTasksResponse(
            tasks=page, next_page_token=str(start + size) if more else "", total=len(matching)
        )

    @_handler("Cancel")
    def Cancel(self, request: api.CancelRequest) -> api.CancelResponse:
        ids = list(request.task_ids)
        if request.workflow_id:
            workflow = self.state.workflows.get(request.workflow_id)
            if workflow is None:
                raise _Abort(grpc.StatusCode.NOT_FOUND, f"workflow {request.workflow_id!r}")
            ids += workflow.task_ids
        cancelled = []
        for task_id in ids:
            task = self._task(task_id)
            if task.state not in _FINAL:
                task.state = pb.TASK_STATE_CANCELLED
                self.fake._changed(task)
                cancelled.append(task_id)
        return api.CancelResponse(cancelled=cancelled, index=self.state.index)

    @_handler("Delete")
    def Delete(self, request: api.DeleteRequest) -> api.DeleteResponse:
        """Named records only, plus (for `finished_before_age_ms`) every finished one
        whatever its age; refuses an unfinished one like the state machine."""
        seen = self._dedupe(request.request_id)
        if seen is not None:
            response = api.DeleteResponse()
            response.CopyFrom(seen)
            response.duplicate = True
            return response
        state = self.state
        workflows = list(request.workflow_ids)
        tasks = list(request.task_ids)
        if request.HasField("finished_before_age_ms"):
            workflows += [
                w.id for w in state.workflows.values() if w.state != pb.WORKFLOW_STATE_RUNNING
            ]
            tasks += [t.id for t in state.tasks.values() if t.state in _FINAL and not t.workflow_id]
        for wf_id in workflows:
            workflow = state.workflows.get(wf_id)
            if workflow is None:
                raise _Abort(grpc.StatusCode.NOT_FOUND, f"workflow {wf_id!r} not found")
            tasks += workflow.task_ids
        for task_id in tasks:
            if self._task(task_id).state not in _FINAL:
                raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, f"task {task_id!r} not finished")
        gone = list(dict.fromkeys(tasks))
        for task_id in gone:
            del state.tasks[task_id]
        for wf_id in dict.fromkeys(workflows):
            del state.workflows[wf_id]
        state.index += 1
        response = api.DeleteResponse(
            task_ids=gone, workflow_ids=list(dict.fromkeys(workflows)), index=state.index
        )
        state.requests[request.request_id] = response
        return response

    @_handler("Reprioritize")
    def Reprioritize(self, request: api.ReprioritizeRequest) -> api.ReprioritizeResponse:
        task = self._task(request.task_id)
        if task.state in _FINAL:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, f"task {task.id!r} is finished")
        task.priority = request.priority
        self.fake._changed(task)
        return api.ReprioritizeResponse(index=self.state.index)

    @_handler("Explain")
    def Explain(self, request: api.ExplainRequest) -> api.ExplainResponse:
        task = self._task(request.task_id)
        return api.ExplainResponse(
            task_id=task.id, state=task.state, reasons=self.fake.explanations
        )

    @_handler("ListWorkers")
    def ListWorkers(self, request: api.ListWorkersRequest) -> api.ListWorkersResponse:
        workers = [
            w
            for w in self.fake.workers
            if not request.group or request.group in w.worker.info.groups
        ]
        return api.ListWorkersResponse(workers=workers)

    def WatchTasks(
        self, request: api.WatchTasksRequest, context: grpc.ServicerContext
    ) -> Iterator[api.TaskEvent]:
        fake = self.fake
        fault = fake.enter("WatchTasks", request, context)
        if fault is not None:
            _abort(context, fault.code, fault.details, fault.leader_address)
        wanted = set(request.task_ids)
        if request.must_exist:
            for i, task_id in enumerate(request.task_ids):
                if task_id not in self.state.tasks:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"task_ids[{i}]: no task {task_id!r}")

        def matches(task: pb.Task) -> bool:
            if wanted and task.id not in wanted:
                return False
            if request.final_only and task.state not in _FINAL:
                return False
            return not request.workflow_id or task.workflow_id == request.workflow_id

        def ended() -> bool:
            if not (request.end_when_final and fake.ends_watches):
                return False
            if wanted:
                tasks = [self.state.tasks.get(i) for i in wanted]
            else:
                tasks = [
                    t for t in self.state.tasks.values() if t.workflow_id == request.workflow_id
                ]
            return all(t is not None and t.state in _FINAL for t in tasks)

        if request.end_when_final and not (request.task_ids or request.workflow_id):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "end_when_final: needs task_ids or a workflow_id"
                " (a watch of every task never ends)",
            )
        with fake._cond:
            sent = {t.id: t.updated_index for t in self.state.tasks.values() if matches(t)}
            initial = [self._copy(t) for t in self.state.tasks.values() if matches(t)]
            done = ended()
        for task in initial:
            yield api.TaskEvent(task=task, index=task.updated_index, initial=True)
        while not done and context.is_active():
            with fake._cond:
                if fake._stopped:
                    return
                fake._cond.wait(timeout=0.05)
                changed = [
                    self._copy(t)
                    for t in self.state.tasks.values()
                    if matches(t) and t.updated_index > sent.get(t.id, 0)
                ]
                for task in changed:
                    sent[task.id] = task.updated_index
                done = ended()
            for task in changed:
                yield api.TaskEvent(task=task, index=task.updated_index)

    @staticmethod
    def _copy(task: pb.Task) -> pb.Task:
        copy = pb.Task()
        copy.CopyFrom(task)
        return copy


class _Cluster(_Servicer, api_grpc.ClusterServiceServicer):
    @_handler("Status")
    def Status(self, request: api.ClusterStatusRequest) -> api.ClusterStatusResponse:
        counts: dict[str, int] = {}
        for task in self.state.tasks.values():
            name = pb.TaskState.Name(task.state)
            counts[name] = counts.get(name, 0) + 1
        return api.ClusterStatusResponse(
            node_id=self.fake.node_id,
            leader_id=self.fake.node_id,
            leader_address=self.fake.address,
            term=1,
            commit_index=self.state.index,
            applied_index=self.state.index,
            members=[api.Member(id=self.fake.node_id, address=self.fake.address, voter=True)],
            role="leader",
            task_counts=counts,
        )

    def AddMember(self, request: Any, context: grpc.ServicerContext) -> Any:
        _abort(context, grpc.StatusCode.UNIMPLEMENTED, "not in the fake", "")

    def RemoveMember(self, request: Any, context: grpc.ServicerContext) -> Any:
        _abort(context, grpc.StatusCode.UNIMPLEMENTED, "not in the fake", "")

    def TransferLeader(self, request: Any, context: grpc.ServicerContext) -> Any:
        _abort(context, grpc.StatusCode.UNIMPLEMENTED, "not in the fake", "")
