"""A local cluster of `agentflow-master` processes on 127.0.0.1, for tests, benchmarks
and the demo. Started the way a user does: the first with `--mode leader`, the
others with `--mode master --leader-url` (or all with `--peers`)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from agentflow._proto import scheduler_pb2, scheduler_pb2_grpc
from agentflow.common.processes import ProcessGroup, free_ports


@dataclass
class MasterCluster:
    root: Path
    size: int = 3
    use_peers: bool = False  # found all members with --peers instead of joining
    extra_args: list[str] = field(default_factory=list)
    ids: list[str] = field(init=False)
    ports: dict[str, int] = field(init=False)
    http_ports: dict[str, int] = field(init=False)
    group: ProcessGroup = field(init=False)

    def __post_init__(self) -> None:
        self.ids = [f"m{i + 1}" for i in range(self.size)]
        ports = free_ports(2 * self.size)
        self.ports = dict(zip(self.ids, ports[: self.size], strict=True))
        self.http_ports = dict(zip(self.ids, ports[self.size :], strict=True))
        self.group = ProcessGroup(self.root)

    def address(self, node: str) -> str:
        return f"127.0.0.1:{self.ports[node]}"

    def addresses(self) -> list[str]:
        return [self.address(n) for n in self.ids]

    def url(self) -> str:
        """The comma-separated master list clients take (--master / MASTER_URL)."""
        return ",".join(self.addresses())

    def command(self, node: str) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "agentflow.master.main",
            "--node-id",
            node,
            "--port",
            str(self.ports[node]),
            "--http-port",
            str(self.http_ports[node]),
            "--data-dir",
            str(self.root / node),
            *self.extra_args,
        ]
        if self.use_peers:
            cmd += ["--peers", ",".join(f"{n}={self.address(n)}" for n in self.ids)]
        elif node == self.ids[0]:
            cmd += ["--mode", "leader"]
        else:
            cmd += ["--mode", "master", "--leader-url", self.address(self.ids[0])]
        return cmd

    def start(self, node: str, env: dict[str, str] | None = None) -> None:
        self.group.spawn(node, self.command(node), env)

    async def start_all(self, timeout: float = 30.0) -> None:
        """Start every master and wait until all are voters under one leader."""
        self.start(self.ids[0])
        if not self.use_peers:
            await self.leader(timeout)
        for node in self.ids[1:]:
            self.start(node)
        await self.wait_members(self.size, timeout)

    async def status(
        self, node: str, timeout: float = 2.0, own_view: bool = True
    ) -> scheduler_pb2.ClusterStatusResponse:
        """`node`'s status. With `own_view` (the default) a follower answers at once
        from what it knows, without asking the leader for its view of the members,
        which would wait for a leader that is paused."""
        async with grpc.aio.insecure_channel(self.address(node)) as channel:
            stub = scheduler_pb2_grpc.ClusterServiceStub(channel)
            response: scheduler_pb2.ClusterStatusResponse = await stub.Status(
                scheduler_pb2.ClusterStatusRequest(own_view=own_view), timeout=timeout
            )
            return response

    async def leader(self, timeout: float = 15.0) -> str:
        """The running master every running master agrees leads, once they do."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen: set[str] = set()
        while loop.time() < deadline:
            seen = set()
            for node in self.group.running():
                try:
                    seen.add((await self.status(node)).leader_id)
                except grpc.aio.AioRpcError:
                    seen.add("")
            if len(seen) == 1 and "" not in seen:
                leader = seen.pop()
                if leader in self.group.running():  # not one killed a moment ago
                    return leader
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no agreed leader after {timeout} s: {seen} (logs in {self.root})")

    async def wait_members(self, voters: int, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            leader = await self.leader(max(0.1, deadline - loop.time()))
            st = await self.status(leader)
            if sum(1 for m in st.members if m.voter) >= voters:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"only {len(st.members)} members after {timeout} s")
            await asyncio.sleep(0.1)

    def worker_command(self, worker_id: str, groups: str = "default", *extra: str) -> list[str]:
        """`agentflow-worker` pointed at every master (gRPC and the HTTP shim), with
        quick reconnects for tests; `extra` flags are appended."""
        http = ",".join(f"127.0.0.1:{self.http_ports[n]}" for n in self.ids)
        return [
            sys.executable, "-m", "agentflow.worker.main",
            "--master-url", self.url(),
            "--http-url", http,
            "--worker-id", worker_id,
            "--group", groups,
            "--reconnect-base", "0.1",
            "--reconnect-max", "1",
            *extra,
        ]  # fmt: skip

    def start_worker(
        self,
        group: ProcessGroup,
        worker_id: str,
        groups: str = "default",
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start a worker as a child in `group` (kept apart from the masters' group so
        a test can kill masters and workers separately)."""
        group.spawn(
            worker_id,
            self.worker_command(worker_id, groups, *extra),
            {"AGENTFLOW_WORKER_ID": worker_id, **(env or {})},
        )

    def kill(self, node: str) -> None:
        self.group.kill(node)

    def terminate(self, node: str, timeout: float = 10.0) -> int:
        return self.group.terminate(node, timeout)

    def stop_all(self) -> None:
        self.group.stop_all()
