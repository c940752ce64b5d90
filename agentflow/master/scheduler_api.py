"""SchedulerService: the client API of a master.

Writes run on the leader (a follower forwards them) as one committed command each;
the answer is the state machine's result. Reads of replicated state are served by
whichever master was asked, after a ReadIndex barrier, so they are linearizable
without a hop. Explain and workers need the leader's live view and are forwarded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, MutableSequence, Sequence

import grpc
from google.protobuf.message import Message

from agentflow._proto import scheduler_pb2 as api
from agentflow._proto import scheduler_pb2_grpc, state_pb2
from agentflow.master.caller import caller
from agentflow.master.leader_only import leader_only
from agentflow.master.runtime import Runtime
from agentflow.master.status import Ctx, abort_for, abort_invalid
from agentflow.master.watch import WatchCutOff, missing_task, watch_tasks
from agentflow.master.writes import barrier, write
from agentflow.raft.types import NONE
from agentflow.rules.dag import Dag, DagError
from agentflow.rules.validate import (
    validate_delete,
    validate_list_filter,
    validate_submit_tasks,
    validate_workflow_spec,
)
from agentflow.scheduler.explain import explain
from agentflow.scheduler.placement import DEFAULT_GROUP
from agentflow.state import StateError

SERVICE = "SchedulerService"
MAX_PAGE = 1000
DEFAULT_PAGE = 100
READ_TIMEOUT = 5.0


class SchedulerApi(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    # -- plumbing -------------------------------------------------------------------

    async def _write(
        self, context: Ctx, command: state_pb2.Command, request: Message, request_id: str
    ) -> state_pb2.CommandResult:
        return await write(self.rt, context, command, request, request_id)

    async def _placed_write(
        self,
        context: Ctx,
        command: state_pb2.Command,
        placements: MutableSequence[state_pb2.Placement],
        specs: Sequence[state_pb2.TaskSpec],
        request: Message,
        request_id: str,
    ) -> state_pb2.CommandResult:
        """A submit carrying the scheduler's placements of its new tasks when they
        would be dispatched at once anyway (Scheduler.place_new): one commit less
        before they run. The room stays reserved until the entry is applied."""
        scheduler = self.rt.scheduler
        token = 0
        if scheduler is not None:
            token, placed = scheduler.place_new(specs)
            placements.extend(placed)
        try:
            return await self._write(context, command, request, request_id)
        finally:
            if scheduler is not None and token:
                scheduler.release(token)

    async def _barrier(self, context: Ctx) -> None:
        await barrier(self.rt, context, READ_TIMEOUT)

    def _task(self, task_id: str) -> state_pb2.Task | None:
        return self.rt.state.task(task_id)

    # -- writes ---------------------------------------------------------------------

    @leader_only(SERVICE, api.SubmitTasksResponse)
    async def SubmitTasks(
        self, request: api.SubmitTasksRequest, context: Ctx
    ) -> api.SubmitTasksResponse:
        try:
            # Refuse bad input before it costs a log entry; the state machine checks
            # again (deterministically) when it applies.
            validate_submit_tasks(request.tasks)
        except StateError as exc:
            await abort_for(context, exc)
        cmd = state_pb2.Command(submit_tasks=state_pb2.SubmitTasks(tasks=request.tasks))
        result = await self._placed_write(
            context, cmd, cmd.submit_tasks.placements, request.tasks, request, request.request_id
        )
        return api.SubmitTasksResponse(
            task_ids=result.task_ids, index=result.index, duplicate=result.duplicate
        )

    @leader_only(SERVICE, api.SubmitWorkflowResponse)
    async def SubmitWorkflow(
        self, request: api.SubmitWorkflowRequest, context: Ctx
    ) -> api.SubmitWorkflowResponse:
        try:
            validate_workflow_spec(request.workflow)
        except StateError as exc:
            await abort_for(context, exc)
        cmd = state_pb2.Command(submit_workflow=state_pb2.SubmitWorkflow(workflow=request.workflow))
        result = await self._placed_write(
            context,
            cmd,
            cmd.submit_workflow.placements,
            request.workflow.tasks,
            request,
            request.request_id,
        )
        return api.SubmitWorkflowResponse(
            workflow_id=result.workflow_id,
            task_ids=result.task_ids,
            index=result.index,
            duplicate=result.duplicate,
        )

    @leader_only(SERVICE, api.CancelResponse)
    async def Cancel(self, request: api.CancelRequest, context: Ctx) -> api.CancelResponse:
        if not request.task_ids and not request.workflow_id:
            await abort_invalid(context, "task_ids", "name at least one task or a workflow_id")
        cmd = state_pb2.Command(
            cancel_tasks=state_pb2.CancelTasks(
                task_ids=request.task_ids,
                workflow_id=request.workflow_id,
                reason=request.reason,
                requested_by=caller(context),
            )
        )
        result = await self._write(context, cmd, request, request.request_id)
        return api.CancelResponse(cancelled=result.task_ids, index=result.index)

    @leader_only(SERVICE, api.ReprioritizeResponse)
    async def Reprioritize(
        self, request: api.ReprioritizeRequest, context: Ctx
    ) -> api.ReprioritizeResponse:
        cmd = state_pb2.Command(
            reprioritize=state_pb2.Reprioritize(task_id=request.task_id, priority=request.priority)
        )
        result = await self._write(context, cmd, request, request.request_id)
        return api.ReprioritizeResponse(index=result.index)

    @leader_only(SERVICE, api.DeleteResponse)
    async def Delete(self, request: api.DeleteRequest, context: Ctx) -> api.DeleteResponse:
        # Authorization seam: purging records is an admin action once tokens carry
        # roles. The role check goes here, before anything is proposed; until roles
        # exist every caller that may write may delete.
        by_age = request.HasField("finished_before_age_ms")
        try:
            validate_delete(
                request.task_ids, request.workflow_ids, by_age, request.finished_before_age_ms
            )
        except StateError as exc:
            await abort_for(context, exc)
        purge = state_pb2.DeleteRecords(
            task_ids=request.task_ids, workflow_ids=request.workflow_ids
        )
        if by_age:
            # An age, not a time: the state machine measures it from the command's
            # now_ms, the leader's clock, like every other time in the state.
            purge.finished_before_age_ms = request.finished_before_age_ms
        cmd = state_pb2.Command(delete_records=purge)
        result = await self._write(context, cmd, request, request.request_id)
        return api.DeleteResponse(
            task_ids=result.task_ids,
            workflow_ids=result.workflow_ids,
            index=result.index,
            duplicate=result.duplicate,
        )

    # -- reads of replicated state ----------------------------------------------------

    async def GetTask(self, request: api.GetTaskRequest, context: Ctx) -> state_pb2.Task:
        await self._barrier(context)
        task = self._task(request.task_id)
        if task is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task_id: no task {request.task_id!r}")
        assert task is not None
        return task

    async def GetWorkflow(
        self, request: api.GetWorkflowRequest, context: Ctx
    ) -> api.GetWorkflowResponse:
        await self._barrier(context)
        wf = self.rt.state.workflows.get(request.workflow_id)
        if wf is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"workflow_id: no workflow {request.workflow_id!r}"
            )
        assert wf is not None
        tasks = [t for t in (self._task(i) for i in wf.task_ids) if t is not None]
        response = api.GetWorkflowResponse(workflow=wf)
        if request.include_tasks:
            response.tasks.extend(tasks)
        for task in tasks:
            name = state_pb2.TaskState.Name(task.state)
            response.state_counts[name] = response.state_counts.get(name, 0) + 1
        try:
            members = set(wf.task_ids)  # not the repeated field: `in` on it is a scan
            dag = Dag([(t.id, [d for d in t.dependencies if d in members]) for t in tasks])
            response.execution_order.extend(dag.topological_order())
            # Measured durations where known, so the path reflects what really took time.
            durations = {
                t.id: (t.finished_ms - t.started_ms) / 1000
                for t in tasks
                if t.started_ms and t.finished_ms >= t.started_ms
            }
            path, _ = dag.critical_path(durations)
            response.critical_path.extend(path)
        except DagError:
            pass  # pruned parts of an old workflow: the queries are best effort
        return response

    async def ListTasks(self, request: api.ListTasksRequest, context: Ctx) -> api.ListTasksResponse:
        try:
            validate_list_filter(request.states, request.group, request.workflow_id)
        except StateError as exc:
            await abort_for(context, exc)
        await self._barrier(context)
        size = request.page_size or DEFAULT_PAGE
        if size > MAX_PAGE:
            await abort_invalid(context, "page_size", f"at most {MAX_PAGE}, got {size}")
        start = 0
        if request.page_token:
            if not request.page_token.isdigit():
                await abort_invalid(context, "page_token", "not a token from a previous page")
            start = int(request.page_token)
        matches = list(self._matching(request))
        page = matches[start : start + size]
        more = start + size < len(matches)
        return api.ListTasksResponse(
            tasks=page, next_page_token=str(start + size) if more else "", total=len(matches)
        )

    def _matching(self, request: api.ListTasksRequest) -> Iterable[state_pb2.Task]:
        state = self.rt.state
        # Submission order across states: one pass over the table (or the workflow).
        candidates: Iterable[state_pb2.Task] = (
            state.tasks_of_workflow(request.workflow_id)
            if request.workflow_id
            else state.tasks.values()
        )
        states = set(request.states)
        for task in candidates:
            if states and task.state not in states:
                continue
            if request.group and (task.spec.group or DEFAULT_GROUP) != request.group:
                continue
            yield task

    async def WatchTasks(
        self, request: api.WatchTasksRequest, context: Ctx
    ) -> AsyncIterator[api.TaskEvent]:
        if request.end_when_final and not (request.task_ids or request.workflow_id):
            await abort_invalid(
                context,
                "end_when_final",
                "needs task_ids or a workflow_id (a watch of every task never ends)",
            )
        # A master that has applied what the caller saw serves it as is (see
        # min_index); otherwise the barrier waits for a point at least that recent.
        if not request.min_index or self.rt.state.applied_index < request.min_index:
            await self._barrier(context)
        if (error := missing_task(self.rt.state, request)) is not None:
            await context.abort(grpc.StatusCode.NOT_FOUND, error)
        node = self.rt.node
        try:
            async for event in watch_tasks(self.rt.state, request, lambda: node.leader() != NONE):
                yield event
        except WatchCutOff as exc:
            # Without a leader this master's state may have stopped while the cluster
            # goes on: a waiter here would wait for nothing. It watches elsewhere.
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; watch on another master")

    # -- the leader's live view -----------------------------------------------------

    @leader_only(SERVICE, api.ExplainResponse)
    async def Explain(self, request: api.ExplainRequest, context: Ctx) -> api.ExplainResponse:
        try:
            scheduler = await self.rt.running_scheduler()
        except TimeoutError as exc:
            await abort_for(context, exc, self.rt.node.leader_address())
        task = self._task(request.task_id)
        if task is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task_id: no task {request.task_id!r}")
        assert task is not None
        return api.ExplainResponse(
            task_id=task.id, state=task.state, reasons=explain(scheduler, task)
        )

    @leader_only(SERVICE, api.ListWorkersResponse)
    async def ListWorkers(
        self, request: api.ListWorkersRequest, context: Ctx
    ) -> api.ListWorkersResponse:
        try:
            scheduler = await self.rt.running_scheduler()
        except TimeoutError as exc:
            await abort_for(context, exc, self.rt.node.leader_address())
        response = api.ListWorkersResponse()
        for wid, worker in self.rt.state.workers.items():
            if request.group and request.group not in worker.info.groups:
                continue
            live = scheduler.usage(wid)
            status = api.WorkerStatus(
                worker=worker,
                connected=live is not None,
                running=len(self.rt.state.tasks_of_worker(wid)),
            )
            if live is not None:
                usage, last = live
                status.last_heartbeat_ms = int(last * 1000)
                status.cpu_percent = usage.cpu_percent
                status.memory_percent = usage.memory_percent
            response.workers.append(status)
        return response
