"""A local cluster of key/value server processes on 127.0.0.1, for tests and benchmarks.

Every process is our own child; it is stopped only by its PID (SIGKILL, SIGSTOP,
SIGTERM), never by name.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agentflow.common.processes import ProcessGroup, free_ports
from agentflow.raft.testing.kvclient import KvClient

__all__ = ["KvCluster", "free_ports"]


@dataclass
class KvCluster:
    root: Path
    size: int = 3
    snapshot_every: int = 10_000
    snapshot_keep: int = 1_000
    extra_args: list[str] = field(default_factory=list)
    founders: int = 0  # members bootstrapped with --peers (default: all); the rest join
    ids: list[str] = field(init=False)
    ports: dict[str, int] = field(init=False)
    group: ProcessGroup = field(init=False)

    def __post_init__(self) -> None:
        self.ids = [f"n{i + 1}" for i in range(self.size)]
        self.ports = dict(zip(self.ids, free_ports(self.size), strict=True))
        self.group = ProcessGroup(self.root)

    @property
    def procs(self) -> dict[str, object]:
        return dict(self.group.procs)

    def address(self, node: str) -> str:
        return f"127.0.0.1:{self.ports[node]}"

    def addresses(self) -> list[str]:
        return [self.address(n) for n in self.ids]

    def peers_arg(self) -> str:
        founders = self.ids[: self.founders or self.size]
        return ",".join(f"{n}={self.address(n)}" for n in founders)

    def start(
        self, node: str, *, bootstrap: bool = True, env: dict[str, str] | None = None
    ) -> None:
        data_dir = self.root / node
        data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "agentflow.raft.testing.kvserver",
            "--id",
            node,
            "--port",
            str(self.ports[node]),
            "--data-dir",
            str(data_dir),
            "--snapshot-every",
            str(self.snapshot_every),
            "--snapshot-keep",
            str(self.snapshot_keep),
            *self.extra_args,
        ]
        if bootstrap:
            cmd += ["--peers", self.peers_arg()]
        self.group.spawn(node, cmd, env)

    def start_all(self) -> None:
        for node in self.ids[: self.founders or self.size]:
            self.start(node)

    def terminate(self, node: str, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM): a leader hands over leadership first."""
        self.group.terminate(node, timeout)

    def exited(self) -> list[str]:
        return self.group.exited()

    def reap(self, node: str) -> None:
        self.group.reap(node)

    def kill(self, node: str) -> None:
        self.group.kill(node)

    def stop_all(self) -> None:
        self.group.stop_all()

    async def leader(self, client: KvClient, timeout: float = 10.0) -> str:
        """The id of the node that every live node agrees leads, once one does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            seen = set()
            for node in self.procs:
                try:
                    st = await client.status(self.address(node))
                except Exception:
                    seen.add("")
                    continue
                seen.add(st.leader_id if st.role != "leader" else st.node_id)
            if len(seen) == 1 and "" not in seen:
                return seen.pop()
            if loop.time() > deadline:
                raise TimeoutError(
                    f"no agreed leader after {timeout} s: {seen} (logs in {self.root})"
                )
            await asyncio.sleep(0.05)
