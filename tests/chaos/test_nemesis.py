"""The nemesis run (TESTING.md layers 5 and 7): 3 masters and 2 workers as real
processes on 127.0.0.1; tasks submitted through the SDK while a nemesis kills the
leader (SIGKILL, then restarts it), pauses a leader past the election timeout
(SIGSTOP/SIGCONT), kills a worker, and at last SIGSTOPs every master for twice the
worker timeout (a VM pause) while the workers keep running tasks. Afterwards the
history (acknowledged submits, what task code really ran, every committed assignment
and report, the final state, the all-masters pause) is written as JSON and checked
by `agentflow.testing.history.check`.

`make chaos` runs it bigger: AGENTFLOW_CHAOS_TASKS, AGENTFLOW_CHAOS_KILLS.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from agentflow import AsyncClient, TaskSpec, Workflow
from agentflow.client.errors import AgentFlowError
from agentflow.client.retry import RetryPolicy
from agentflow.common.processes import ProcessGroup
from agentflow.master.testing import MasterCluster
from agentflow.testing.history import (
    Execution,
    Final,
    History,
    Submit,
    check,
    commits_from_log,
    committed_log,
)

TASKS = int(os.environ.get("AGENTFLOW_CHAOS_TASKS", "5000"))
KILLS = int(os.environ.get("AGENTFLOW_CHAOS_KILLS", "5"))
WORKFLOWS = 40  # of 5 tasks each: a -> (b, c, d) -> e
BATCH = 100
WORKER_TIMEOUT = 4.0  # short: the all-masters pause must outlast it, and costs 2x it
TASK = "python:agentflow.worker.testing_tasks:journal"


def start_worker(cluster: MasterCluster, group: ProcessGroup, worker_id: str) -> None:
    env = {"WORKER_MAX_CONCURRENT_TASKS": "4"}
    cluster.start_worker(group, worker_id, "default", "--cpu-cores", "4", env=env)


async def submitter(client: AsyncClient, journal: Path, history: History) -> None:
    args = json.dumps({"path": str(journal)})
    standalone = TASKS - WORKFLOWS * 5
    for n in range(0, standalone, BATCH):
        specs = [
            TaskSpec(TASK, name=f"t{n + i}", args=json.loads(args), max_retries=20,
                     retry_backoff=0.05)
            for i in range(min(BATCH, standalone - n))
        ]  # fmt: skip
        request_id = f"batch-{n}"
        try:
            ids = await client.submit_many(specs, request_id=request_id)
            history.submits.append(Submit(request_id, True, ids))
        except AgentFlowError:
            history.submits.append(Submit(request_id, False))
        if n // BATCH % 5 == 0 and n // BATCH // 5 < WORKFLOWS:
            await submit_workflow(client, journal, history, n // BATCH // 5)
        await asyncio.sleep(0.05)
    for w in range(standalone // BATCH // 5 + 1, WORKFLOWS):
        await submit_workflow(client, journal, history, w)


async def submit_workflow(client: AsyncClient, journal: Path, history: History, w: int) -> None:
    args = {"path": str(journal)}
    edges = {"a": [], "b": ["a"], "c": ["a"], "d": ["a"], "e": ["b", "c", "d"]}
    tasks = [
        TaskSpec(TASK, id=local, args=args, dependencies=deps, max_retries=20, retry_backoff=0.05)
        for local, deps in edges.items()
    ]
    request_id = f"wf-{w}"
    try:
        submitted = await client.submit_workflow(
            Workflow(tasks, id=f"wf{w}"), request_id=request_id
        )
        deps = {f"wf{w}/{t}": [f"wf{w}/{d}" for d in ds] for t, ds in edges.items()}
        history.submits.append(Submit(request_id, True, list(submitted.task_ids), deps))
    except AgentFlowError:
        history.submits.append(Submit(request_id, False))


async def nemesis(
    cluster: MasterCluster, workers: ProcessGroup, log: list[str], history: History
) -> None:
    for k in range(KILLS):
        await asyncio.sleep(2.0)
        victim = await cluster.leader(30)
        cluster.kill(victim)
        t0 = time.monotonic()
        new = await cluster.leader(30)
        log.append(f"kill -9 {victim}: {new} leads after {time.monotonic() - t0:.2f} s")
        cluster.start(victim)
        if k == 1:
            await asyncio.sleep(1.0)
            workers.kill("w2")
            log.append("kill -9 worker w2")
            await asyncio.sleep(1.0)
            start_worker(cluster, workers, "w2")
    await asyncio.sleep(2.0)
    paused = await cluster.leader(30)
    cluster.group.pause(paused)
    await asyncio.sleep(3.0)  # past the election timeout: the others elect a leader
    cluster.group.resume(paused)
    log.append(f"SIGSTOP {paused} for 3 s, then SIGCONT")
    await asyncio.sleep(1.0)
    # Every master at once, past the worker timeout: on resume no worker may be
    # declared lost for the masters' own silence, and every result that finished
    # meanwhile must be committed (History.pauses; checked by `check`).
    start = time.time()
    for node in cluster.group.running():
        cluster.group.pause(node)
    await asyncio.sleep(2 * WORKER_TIMEOUT)
    for node in cluster.group.running():
        cluster.group.resume(node)
    history.pauses.append((start, time.time()))
    log.append(f"SIGSTOP every master for {2 * WORKER_TIMEOUT:g} s, then SIGCONT")


async def run(root: Path) -> tuple[History, list[str]]:
    cluster = MasterCluster(
        root / "masters",
        size=3,
        extra_args=["--snapshot-every", "1000000", "--worker-timeout", str(WORKER_TIMEOUT)],
    )
    workers = ProcessGroup(root / "workers")
    journal = root / "journal.jsonl"
    history = History()
    log: list[str] = []
    try:
        await cluster.start_all()
        for wid in ("w1", "w2"):
            start_worker(cluster, workers, wid)
        policy = RetryPolicy(deadline=60.0)
        async with AsyncClient(cluster.url(), retry=policy) as client:
            await asyncio.gather(
                submitter(client, journal, history), nemesis(cluster, workers, log, history)
            )
            acked = {t for s in history.submits if s.acked for t in s.task_ids}
            deadline = time.monotonic() + 180
            while True:
                pending = [t async for t in client.list(page_size=1000) if not t.is_finished]
                if not pending or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1.0)
            async for task in client.list(page_size=1000):
                value = task.result.value if task.result else None
                history.final[task.id] = Final(task.state.name, task.attempt, value)
            log.append(f"acknowledged {len(acked)} tasks; {len(pending)} unfinished at the end")
            leader = await cluster.leader(30)
        cluster.group.stop_all()  # the log is read from the leader's disk, quiescent
        history.commits = commits_from_log(await committed_log(root / "masters" / leader))
        if journal.exists():
            for line in journal.read_text().splitlines():
                e = json.loads(line)
                history.executions.append(
                    Execution(e["task_id"], e["attempt"], e["worker"], e["start"], e["end"], True)
                )
        return history, log
    finally:
        workers.stop_all()
        cluster.stop_all()


@pytest.mark.timeout(600)
async def test_nemesis_loses_nothing_and_keeps_every_promise(tmp_path: Path) -> None:
    history, log = await run(tmp_path)
    history.save(tmp_path / "history.json")
    problems = check(history)
    acked = sum(len(s.task_ids) for s in history.submits if s.acked)
    keep = Path("chaos-failure")
    if problems:
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(tmp_path, keep)
    assert not problems, (
        f"{len(problems)} broken promises (data in {keep}/): {problems[:10]}\n{log}"
    )
    assert acked >= TASKS * 0.9, log
    assert sum(1 for c in history.commits if c.kind == "finished" and c.accepted) >= acked
    print("\n".join(log))


if __name__ == "__main__":  # python tests/chaos/test_nemesis.py DIR: keep everything
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    h, lines = asyncio.run(run(out))
    h.save(out / "history.json")
    print("\n".join(lines))
    print(check(h) or "no problems")
