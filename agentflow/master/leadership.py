"""Run a fresh scheduler for every term this master leads, and only then."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from agentflow.master.runtime import Runtime
from agentflow.raft.types import RaftError
from agentflow.scheduler.service import Scheduler

log = structlog.get_logger(__name__)


async def lead_when_elected(
    runtime: Runtime,
    make: Callable[[], Scheduler],
    also: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
) -> None:
    """Each term this master leads: a fresh scheduler, and the other leader-only
    loops of `also` (started after the same barrier, stopped with it)."""
    node = runtime.node
    while True:
        await node.wait_for_leader(lambda leader: leader == node.id)
        try:
            # Apply everything earlier terms committed before rebuilding from state:
            # the barrier returns once this term's first entry is applied here.
            await node.read_barrier(timeout=5.0)
        except (RaftError, TimeoutError) as exc:
            log.info("master.leading_aborted", error=str(exc))
            await asyncio.sleep(0.05)
            continue
        scheduler = make()
        await runtime.set_scheduler(scheduler)
        log.info("master.scheduler_started", node=node.id, term=node.status().term)

        async def lead(scheduler: Scheduler) -> None:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(scheduler.run())
                for loop in also:
                    tg.create_task(loop())

        running = asyncio.create_task(lead(scheduler))
        deposed = asyncio.create_task(node.wait_for_leader(lambda leader: leader != node.id))
        try:
            await asyncio.wait({running, deposed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (running, deposed):
                task.cancel()
            for task in (running, deposed):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await runtime.set_scheduler(None)
        if running.done() and not running.cancelled() and running.exception() is not None:
            # A proposal failed because leadership moved, or a bug: either way start
            # over from replicated state rather than guess what the indexes hold.
            log.warning("master.scheduler_stopped", error=repr(running.exception()))
            await asyncio.sleep(0.1)
        else:
            log.info("master.scheduler_stopped", node=node.id, leader=node.leader())
