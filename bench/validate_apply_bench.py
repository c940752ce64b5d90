"""How long one request at the size caps blocks a master's event loop.

A master validates a submit before proposing it (the edge check), and every master,
leader and followers, validates and applies it again when the entry commits. Each
of those runs on the event loop in one piece, so each must stay well below the
election timeout (750 ms) or heartbeats stop and an election starts. This measures
them for requests at the caps of `agentflow.rules.limits`:

- `workflow_chain`: MAX_WORKFLOW_TASKS tasks, each depending on the previous one;
- `workflow_fan`: MAX_WORKFLOW_TASKS tasks carrying MAX_REQUEST_DEPENDENCIES edges;
- `batch_bytes`: one SubmitTasks of (almost) MAX_REQUEST_BYTES of specs;
- `refused_over_cap`: a workflow one task over the cap, refused (must be cheap).

    python bench/validate_apply_bench.py [--rounds 5] [--out report.json]

Prints JSON: per case the wire size and the median and worst milliseconds of edge
validation, encoding, apply (decode + validate + mutate), and snapshot.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import emit

from agentflow._proto import state_pb2 as pb
from agentflow.rules import limits as lim
from agentflow.rules.validate import validate_submit_tasks, validate_workflow_spec
from agentflow.state import SchedulerState, StateError, encode

ELECTION_TIMEOUT_MS = 750.0


def chain() -> pb.Command:
    tasks = [
        pb.TaskSpec(
            id=f"t{i}",
            name=f"step {i}",
            command=f"shell:echo {i}",
            dependencies=[f"t{i - 1}"] if i else [],
        )
        for i in range(lim.MAX_WORKFLOW_TASKS)
    ]
    return pb.Command(submit_workflow=pb.SubmitWorkflow(workflow=pb.WorkflowSpec(tasks=tasks)))


def fan() -> pb.Command:
    width = lim.MAX_REQUEST_DEPENDENCIES // (lim.MAX_WORKFLOW_TASKS // 2)
    roots = [
        pb.TaskSpec(id=f"r{i}", command="shell:true") for i in range(lim.MAX_WORKFLOW_TASKS // 2)
    ]
    leaves = [
        pb.TaskSpec(
            id=f"l{i}",
            command="shell:true",
            dependencies=[f"r{(i + k) % len(roots)}" for k in range(width)],
        )
        for i in range(lim.MAX_WORKFLOW_TASKS // 2)
    ]
    return pb.Command(
        submit_workflow=pb.SubmitWorkflow(workflow=pb.WorkflowSpec(tasks=roots + leaves))
    )


def batch_bytes() -> pb.Command:
    per = 40_000
    count = lim.MAX_REQUEST_BYTES // (per + 16) - 1
    tasks = [pb.TaskSpec(command="shell:" + "x" * per, env={"K": "v"}) for _ in range(count)]
    return pb.Command(submit_tasks=pb.SubmitTasks(tasks=tasks))


def over_cap() -> pb.Command:
    tasks = [
        pb.TaskSpec(id=f"t{i}", command="shell:true") for i in range(lim.MAX_WORKFLOW_TASKS + 1)
    ]
    return pb.Command(submit_workflow=pb.SubmitWorkflow(workflow=pb.WorkflowSpec(tasks=tasks)))


def edge_check(cmd: pb.Command) -> None:
    try:
        if cmd.HasField("submit_workflow"):
            validate_workflow_spec(cmd.submit_workflow.workflow)
        else:
            validate_submit_tasks(cmd.submit_tasks.tasks)
    except StateError:
        pass


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def measure(make: Callable[[], pb.Command], rounds: int) -> dict[str, Any]:
    cmd = make()
    cmd.now_ms = 1
    samples: dict[str, list[float]] = {
        "edge_validate": [],
        "encode": [],
        "apply": [],
        "snapshot": [],
    }
    data = b""
    error = ""
    for _ in range(rounds):
        samples["edge_validate"].append(timed(lambda: edge_check(cmd)))
        start = time.perf_counter()
        data = encode(cmd)
        samples["encode"].append((time.perf_counter() - start) * 1000)
        state = SchedulerState()
        start = time.perf_counter()
        result = state.apply(1, data)
        samples["apply"].append((time.perf_counter() - start) * 1000)
        error = result.error.message
        samples["snapshot"].append(timed(state.snapshot))
    report: dict[str, Any] = {"bytes": len(data), "refused": error}
    for name, values in samples.items():
        report[f"{name}_ms_median"] = round(statistics.median(values), 1)
        report[f"{name}_ms_max"] = round(max(values), 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds: must be >= 1")
    cases = {
        "workflow_chain": chain,
        "workflow_fan": fan,
        "batch_bytes": batch_bytes,
        "refused_over_cap": over_cap,
    }
    results = {name: measure(make, args.rounds) for name, make in cases.items()}
    worst = max(max(r["edge_validate_ms_max"], r["apply_ms_max"]) for r in results.values())
    emit(
        {
            "benchmark": "validate_apply",
            "rounds": args.rounds,
            "caps": {
                "workflow_tasks": lim.MAX_WORKFLOW_TASKS,
                "batch_tasks": lim.MAX_BATCH_TASKS,
                "request_bytes": lim.MAX_REQUEST_BYTES,
                "request_dependencies": lim.MAX_REQUEST_DEPENDENCIES,
            },
            "election_timeout_ms": ELECTION_TIMEOUT_MS,
            "worst_single_block_ms": worst,
            "met": worst < ELECTION_TIMEOUT_MS / 2,
            "cases": results,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
