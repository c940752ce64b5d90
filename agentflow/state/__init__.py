"""The replicated scheduler state machine: commands in, deterministic state out.

`SchedulerState` is what the Raft driver applies committed commands to. The
validation it shares with the master and the SDK lives in `agentflow.rules`.
"""

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

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "ChangeSet",
    "Listener",
    "SchedulerState",
    "StateError",
    "encode",
    "state_name",
]
