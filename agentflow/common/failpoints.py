"""Failpoints for fault-injection tests (TESTING.md layer 8), off unless configured.

    AGENTFLOW_FAILPOINTS="raft.after_persist=crash@200;raft.before_apply=sleep(50ms)"

Each entry is `name=action[@N]`. Actions: `crash` (SIGKILL to this process, as a
power cut would), `sleep(<n>ms)` / `sleep(<n>s)`, `error` (raises FailpointError).
`@N` fires only on the N-th time the point is reached; without it, every time.
Names in use: raft.before_persist, raft.after_persist, raft.before_send,
raft.before_apply, raft.before_snapshot_install, master.worker_result.after_commit
(a worker's result is committed, its ack not yet sent).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from dataclasses import dataclass

ENV = "AGENTFLOW_FAILPOINTS"
_ACTION = re.compile(r"^(crash|error|sleep\((\d+(?:\.\d+)?)(ms|s)\))(?:@(\d+))?$")


class FailpointError(RuntimeError):
    """Raised by a failpoint whose action is `error`."""


@dataclass(slots=True)
class _Point:
    kind: str
    seconds: float
    nth: int
    hits: int = 0


class Failpoints:
    def __init__(self, spec: str = "") -> None:
        self._points: dict[str, _Point] = {}
        for item in filter(None, (p.strip() for p in spec.split(";"))):
            name, sep, action = item.partition("=")
            match = _ACTION.match(action.strip())
            if not sep or not name.strip() or match is None:
                raise ValueError(
                    f"{ENV}: cannot parse {item!r}; expected name=crash|error|sleep(<n>ms)[@N]"
                )
            kind = match.group(1).split("(")[0]
            seconds = 0.0
            if kind == "sleep":
                seconds = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
            self._points[name.strip()] = _Point(kind, seconds, int(match.group(4) or 0))

    @classmethod
    def from_env(cls) -> Failpoints:
        return cls(os.environ.get(ENV, ""))

    def __bool__(self) -> bool:
        return bool(self._points)

    async def hit(self, name: str) -> None:
        point = self._points.get(name)
        if point is None:
            return
        point.hits += 1
        if point.nth and point.hits != point.nth:
            return
        if point.kind == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        elif point.kind == "error":
            raise FailpointError(f"failpoint {name} fired")
        else:
            await asyncio.sleep(point.seconds)
