"""The replicated scheduler state machine: commands in, deterministic state out.

`SchedulerState` is what the Raft driver applies committed commands to; the
validation functions are shared with the master, which checks requests before
proposing them.
"""

from agentflow.state.dag import Dag, DagError
from agentflow.state.errors import StateError
from agentflow.state.machine import (
    ACTIVE_STATES,
    FINAL_STATES,
    ChangeSet,
    Listener,
    SchedulerState,
    encode,
    state_name,
)
from agentflow.state.validate import (
    MAX_BATCH_TASKS,
    MAX_WORKFLOW_TASKS,
    validate_priority,
    validate_submit_tasks,
    validate_task_spec,
    validate_worker_info,
    validate_workflow_spec,
)

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "MAX_BATCH_TASKS",
    "MAX_WORKFLOW_TASKS",
    "ChangeSet",
    "Dag",
    "DagError",
    "Listener",
    "SchedulerState",
    "StateError",
    "encode",
    "state_name",
    "validate_priority",
    "validate_submit_tasks",
    "validate_task_spec",
    "validate_worker_info",
    "validate_workflow_spec",
]
