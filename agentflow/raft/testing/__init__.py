"""Test helpers shipped with the Raft package: the deterministic simulator and the
safety checkers it runs (TESTING.md layers 3 and 4).

`run_seed(seed, nodes, steps)` simulates one seed and returns a `SimResult`;
`scripts/raft_sim.py` runs many seeds and the corpus of past failures.
"""

from agentflow.raft.testing.invariants import (
    AppliedHistory,
    CommitRecord,
    DurableStateMonitor,
    ElectionRecord,
    InvariantViolation,
    LeaderAppendOnly,
    LogMatchingIndex,
    LogWatcher,
    check_applied_prefixes,
    check_log_matching,
)
from agentflow.raft.testing.plan import SimPlan, choose_plan
from agentflow.raft.testing.sim import DEFAULT_STEPS, SimResult, Simulator, run_seed

__all__ = [
    "DEFAULT_STEPS",
    "AppliedHistory",
    "CommitRecord",
    "DurableStateMonitor",
    "ElectionRecord",
    "InvariantViolation",
    "LeaderAppendOnly",
    "LogMatchingIndex",
    "LogWatcher",
    "SimPlan",
    "SimResult",
    "Simulator",
    "check_applied_prefixes",
    "check_log_matching",
    "choose_plan",
    "run_seed",
]
