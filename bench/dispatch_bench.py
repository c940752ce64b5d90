#!/usr/bin/env python3
"""Dispatch benchmark: what a dispatch round costs while unplaceable tasks wait.

    python bench/dispatch_bench.py [--stuck 0,1100,10000,50000] [--out FILE]

In process (the leader's Scheduler over a real state machine, proposals applied
directly, no Raft or disk): `--stuck` CRITICAL tasks of a group no worker serves are
queued first, then 200 NORMAL tasks for a worker of capacity 8 that reports each
result at once. Per stuck count: whether the placeable tasks all ran, how long they
took, and the work done (placement attempts, lane heads looked at) per task placed.
The work counts are the measure; the seconds only show what they cost here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import random
import time
from pathlib import Path
from typing import Any

from benchlib import emit

from agentflow._proto import state_pb2
from agentflow.scheduler.proposer import Proposer
from agentflow.scheduler.service import Scheduler, SchedulerConfig
from agentflow.state import SchedulerState
from agentflow.testing.scheduler import DirectReplicator, RecordingSession

PLACEABLE = 200
BATCH = 10_000  # the most tasks one SubmitTasks takes


async def one(stuck: int, timeout: float) -> dict[str, Any]:
    state = SchedulerState()
    proposer = Proposer(DirectReplicator(state), state)
    scheduler = Scheduler(state, proposer, SchedulerConfig(prefetch=0.0), rng=random.Random(1))

    async def submit(specs: list[state_pb2.TaskSpec]) -> list[str]:
        result = await proposer.propose(
            state_pb2.Command(submit_tasks=state_pb2.SubmitTasks(tasks=specs))
        )
        return list(result.task_ids)

    for n in range(0, stuck, BATCH):
        await submit(
            [
                state_pb2.TaskSpec(name=f"s{i}", command="shell:true", group="nobody", priority=0)
                for i in range(n, min(stuck, n + BATCH))
            ]
        )
    runner = asyncio.create_task(scheduler.run())
    await scheduler.started()
    session = RecordingSession("w1", state)
    info = state_pb2.WorkerInfo(id="w1", groups=["default"], capacity=8, cpu_cores=8)
    await scheduler.connect(info, session)
    ids = await submit(
        [state_pb2.TaskSpec(name=f"p{i}", command="shell:true") for i in range(PLACEABLE)]
    )
    start = time.perf_counter()
    done = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while done < PLACEABLE:
                if done >= len(session.assigned):
                    session.new_work.clear()
                    await session.new_work.wait()
                task = session.assigned[done]
                await scheduler.report_finished(
                    "w1", task.id, task.attempt, True, state_pb2.TaskResult()
                )
                done += 1
    seconds = time.perf_counter() - start
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    attempts = getattr(scheduler, "place_attempts", None)
    examined = getattr(scheduler.queue, "examined", None)
    return {
        "stuck": stuck,
        "placeable": len(ids),
        "ran": done,
        "seconds": round(seconds, 3),
        "rounds": scheduler.rounds,
        "place_attempts_per_task": None if attempts is None else round(attempts / max(1, done), 2),
        "lane_looks_per_task": None if examined is None else round(examined / max(1, done), 2),
    }


async def main(stucks: list[int], timeout: float) -> dict[str, Any]:
    return {
        "bench": "dispatch",
        "python": platform.python_version(),
        "runs": [await one(s, timeout) for s in stucks],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stuck", default="0,1100,10000,50000")
    parser.add_argument("--timeout", type=float, default=10.0, help="per run, seconds")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    emit(asyncio.run(main([int(s) for s in args.stuck.split(",")], args.timeout)), args.out)
