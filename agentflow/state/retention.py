"""Retention: forgetting finished records, by the leader's policy (Prune) or an
operator's purge (DeleteRecords). It owns no records of its own; it works across
the tasks, workflows, workers and request-id domains.

A finished task goes only once no unfinished task depends on it: its dependents
would otherwise run as if it had succeeded.
"""

from __future__ import annotations

from collections.abc import Mapping

from agentflow._proto import state_pb2
from agentflow.rules.validate import validate_delete
from agentflow.state.domain import Changes, Domain, Handler
from agentflow.state.errors import FAILED_PRECONDITION, NOT_FOUND, StateError
from agentflow.state.requests import RequestLog
from agentflow.state.tasks import FINAL_STATES, TASKS, TaskDomain, state_name
from agentflow.state.workers import WorkerDomain
from agentflow.state.workflows import WorkflowDomain

__all__ = ["Retention"]


class Retention(Domain):
    def __init__(
        self,
        tasks: TaskDomain,
        workflows: WorkflowDomain,
        workers: WorkerDomain,
        requests: RequestLog,
    ) -> None:
        self.tasks = tasks
        self.workflows = workflows
        self.workers = workers
        self.requests = requests

    def handlers(self) -> Mapping[str, Handler]:
        return {"prune": self._prune, "delete_records": self._delete_records}

    def _prune(self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult) -> None:
        prune = cmd.prune
        cutoff = prune.finished_before_ms
        tasks = self.tasks
        finished = tasks.finished_standalone()
        doomed = [t for t in finished if t.finished_ms < cutoff]
        kept = [t for t in finished if t.finished_ms >= cutoff]
        if prune.keep_finished and len(kept) > prune.keep_finished:
            # Stable sort: equal finish times go oldest-created first.
            kept.sort(key=lambda t: t.finished_ms)
            doomed.extend(kept[: len(kept) - prune.keep_finished])
        removed = {t.id: t for t in doomed if not tasks.has_unfinished_dependent(t.id)}
        dropped_workflows: list[str] = []
        for wf in self.workflows.workflows.values():
            if wf.state == state_pb2.WORKFLOW_STATE_RUNNING or wf.finished_ms >= cutoff:
                continue
            if any(tasks.has_unfinished_dependent(t) for t in wf.task_ids):
                continue
            dropped_workflows.append(wf.id)
            removed.update((t, tasks.tasks[t]) for t in wf.task_ids)
        for task_id in sorted(removed, key=tasks.pos.__getitem__):
            tasks.remove(removed[task_id])
            ch.mark(TASKS, task_id)
            result.task_ids.append(task_id)
        for wf_id in dropped_workflows:
            self.workflows.remove(wf_id, ch)
        if prune.requests_before_ms:
            self.requests.prune_before(prune.requests_before_ms)
        if prune.workers_gone_before_ms:
            self.workers.prune_gone(prune.workers_gone_before_ms, ch)

    def _delete_records(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        """An operator's purge (DeleteRecords). Every named record is checked before
        the first goes, so a refusal changes nothing; the age sweep skips instead."""
        req = cmd.delete_records
        by_age = req.HasField("finished_before_age_ms")
        validate_delete(req.task_ids, req.workflow_ids, by_age, req.finished_before_age_ms)
        all_tasks = self.tasks.tasks
        all_workflows = self.workflows.workflows
        workflows: dict[str, None] = {}
        for i, wf_id in enumerate(req.workflow_ids):
            wf = all_workflows.get(wf_id)
            if wf is None:
                raise StateError(NOT_FOUND, f"workflow_ids[{i}]", f"unknown workflow {wf_id!r}")
            why = self._cannot_delete_workflow(wf)
            if why:
                raise StateError(FAILED_PRECONDITION, f"workflow_ids[{i}]", why)
            workflows[wf_id] = None
        tasks: dict[str, None] = {}
        for i, task_id in enumerate(req.task_ids):
            task = all_tasks.get(task_id)
            if task is None:
                raise StateError(NOT_FOUND, f"task_ids[{i}]", f"unknown task {task_id!r}")
            if task.workflow_id in workflows:
                continue  # goes with its workflow
            why = self._cannot_delete_task(task)
            if why:
                raise StateError(FAILED_PRECONDITION, f"task_ids[{i}]", why)
            tasks[task_id] = None
        if by_age:
            cutoff = ch.now - req.finished_before_age_ms
            for task in self.tasks.finished_standalone():
                if task.finished_ms <= cutoff and not self._cannot_delete_task(task):
                    tasks[task.id] = None
            for wf in all_workflows.values():
                if (
                    wf.state != state_pb2.WORKFLOW_STATE_RUNNING
                    and wf.finished_ms <= cutoff
                    and not self._cannot_delete_workflow(wf)
                ):
                    workflows[wf.id] = None
        removed = dict(tasks)
        for wf_id in workflows:
            removed.update(dict.fromkeys(all_workflows[wf_id].task_ids))
        for task_id in sorted(removed, key=self.tasks.pos.__getitem__):
            self.tasks.remove(all_tasks[task_id])
            ch.mark(TASKS, task_id)
            result.task_ids.append(task_id)
        # In creation order, like the tasks, whatever order they were named in.
        for wf_id in [w for w in all_workflows if w in workflows]:
            self.workflows.remove(wf_id, ch)
            result.workflow_ids.append(wf_id)

    def _cannot_delete_task(self, task: state_pb2.Task) -> str:
        """Why a task on its own may not be deleted yet ("" = it may)."""
        if task.workflow_id:
            return (
                f"task {task.id} belongs to workflow {task.workflow_id}: delete the workflow, "
                "which takes its tasks with it"
            )
        if task.state not in FINAL_STATES:
            return f"task {task.id} is {state_name(task.state)}: cancel it first, then delete it"
        return self.tasks.needed_by(task.id)

    def _cannot_delete_workflow(self, wf: state_pb2.Workflow) -> str:
        """Why a workflow may not be deleted yet ("" = it may)."""
        if self.workflows.unfinished(wf.id):
            busy = next(
                self.tasks.tasks[t]
                for t in wf.task_ids
                if self.tasks.tasks[t].state not in FINAL_STATES
            )
            return (
                f"workflow {wf.id} is still running (task {busy.id} is "
                f"{state_name(busy.state)}): cancel it first, then delete it"
            )
        for task_id in wf.task_ids:
            why = self.tasks.needed_by(task_id)
            if why:
                return f"workflow {wf.id}: {why}"
        return ""
