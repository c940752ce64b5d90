"""The workflows domain: a named DAG of tasks submitted, cancelled and finished as one.

A workflow's tasks live in the tasks domain (ids `<workflow>/<local id>`); this one
keeps the workflow records, how many of their tasks are unfinished (an index, rebuilt
on restore), and settles a workflow's outcome once its last task ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from agentflow._proto import state_pb2
from agentflow.rules.validate import validate_workflow_spec
from agentflow.state.domain import Changes, Domain, Handler
from agentflow.state.errors import ALREADY_EXISTS, StateError
from agentflow.state.tasks import FINAL_STATES, SUCCEEDED

if TYPE_CHECKING:
    from agentflow.state.tasks import TaskDomain

__all__ = ["WORKFLOWS", "WorkflowDomain"]

WORKFLOWS = "workflows"


class WorkflowDomain(Domain):
    """Workflows by id, in creation order (live protobuf objects: read-only to callers)."""

    name = WORKFLOWS
    workflows: dict[str, state_pb2.Workflow]

    def __init__(self, tasks: TaskDomain) -> None:
        self.tasks = tasks
        # Per command: workflows with a task that became final (checked for completion
        # at the end of the command) and workflows being cancelled.
        self._touched: dict[str, None] = {}
        self._cancelled: set[str] = set()
        self.reset()

    def reset(self) -> None:
        self.workflows = {}
        self._unfinished: dict[str, int] = {}

    def handlers(self) -> Mapping[str, Handler]:
        return {"submit_workflow": self._submit_workflow}

    # ---- what the other domains tell it ----------------------------------------------

    def task_ended(self, workflow_id: str) -> None:
        """A task of the workflow became final."""
        self._unfinished[workflow_id] -= 1
        self._touched[workflow_id] = None

    def cancelling(self, workflow_id: str) -> None:
        """The workflow itself is being cancelled (not only some of its tasks)."""
        self._cancelled.add(workflow_id)

    def unfinished(self, workflow_id: str) -> int:
        return self._unfinished[workflow_id]

    def remove(self, workflow_id: str, ch: Changes) -> None:
        """Forget a workflow (its tasks are removed by the caller)."""
        del self.workflows[workflow_id]
        del self._unfinished[workflow_id]
        ch.mark(WORKFLOWS, workflow_id)

    # ---- commands -----------------------------------------------------------------

    def _submit_workflow(
        self, cmd: state_pb2.Command, ch: Changes, result: state_pb2.CommandResult
    ) -> None:
        spec = cmd.submit_workflow.workflow
        validate_workflow_spec(spec)
        if spec.id:
            if spec.id in self.workflows:
                raise StateError(
                    ALREADY_EXISTS, "workflow.id", f"workflow {spec.id!r} already exists"
                )
            wf_id = spec.id
        else:
            wf_id = f"wf-{self.tasks.generate_number()}"
            # A client may have picked a name of this form itself.
            while wf_id in self.workflows:
                wf_id = f"wf-{self.tasks.generate_number()}"
        wf = state_pb2.Workflow(
            id=wf_id,
            name=spec.name,
            on_failure=spec.on_failure,
            state=state_pb2.WORKFLOW_STATE_RUNNING,
            created_ms=ch.now,
            updated_index=ch.index,
        )
        prefix = f"{wf_id}/"
        tasks = [self.tasks.new_task(prefix + s.id, s, wf_id, ch) for s in spec.tasks]
        wf.task_ids.extend(t.id for t in tasks)
        self.workflows[wf_id] = wf
        self._unfinished[wf_id] = len(tasks)
        ch.mark(WORKFLOWS, wf_id)
        # Wired only once every task exists: a dependency may come later in the list.
        for task, task_spec in zip(tasks, spec.tasks, strict=True):
            deps = [prefix + d for d in dict.fromkeys(task_spec.dependencies)]
            self.tasks.wire_workflow_task(task, deps, ch)
        result.workflow_id = wf_id
        result.task_ids.extend(wf.task_ids)
        self.tasks.place(cmd.submit_workflow.placements, wf.task_ids, ch, result)

    def end_command(self, ch: Changes) -> None:
        for wf_id in self._touched:
            wf = self.workflows.get(wf_id)
            if wf is None or wf.state != state_pb2.WORKFLOW_STATE_RUNNING:
                continue
            if self._unfinished[wf_id]:
                continue
            if wf_id in self._cancelled:
                wf.state = state_pb2.WORKFLOW_STATE_CANCELLED
            elif all(self.tasks.tasks[t].state == SUCCEEDED for t in wf.task_ids):
                wf.state = state_pb2.WORKFLOW_STATE_SUCCEEDED
            else:
                wf.state = state_pb2.WORKFLOW_STATE_FAILED
            wf.finished_ms = ch.now
            wf.updated_index = ch.index
            ch.mark(WORKFLOWS, wf_id)
        self._touched = {}
        self._cancelled = set()

    # ---- snapshot section: workflows --------------------------------------------------

    def ids(self) -> Iterable[str]:
        return self.workflows

    def write(self, snap: state_pb2.StateSnapshot) -> None:
        snap.workflows.extend(self.workflows.values())

    def read(self, snap: state_pb2.StateSnapshot) -> None:
        for w in snap.workflows:
            wf = state_pb2.Workflow()
            wf.CopyFrom(w)
            self.workflows[wf.id] = wf

    def rebuild(self) -> None:
        tasks = self.tasks.tasks
        for wf in self.workflows.values():
            self._unfinished[wf.id] = sum(
                1 for t in wf.task_ids if tasks[t].state not in FINAL_STATES
            )
