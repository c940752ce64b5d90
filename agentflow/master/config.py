"""Master settings, checked once at startup (frozen afterwards)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agentflow.rules.limits import MAX_LOCK_DELAY_MS
from agentflow.scheduler.service import SchedulerConfig

Mode = Literal["leader", "master"]


def parse_peers(text: str) -> dict[str, str]:
    """`n1=host:port,n2=host:port` -> {"n1": "host:port", ...}; ValueError naming the
    bad item otherwise."""
    peers: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        node, sep, address = item.partition("=")
        if not sep or not node or ":" not in address:
            raise ValueError(f"{item!r} is not id=host:port")
        if node in peers:
            raise ValueError(f"node id {node!r} appears twice")
        peers[node] = address
    return peers


def strip_scheme(url: str) -> str:
    for scheme in ("grpc://", "http://", "https://"):
        if url.startswith(scheme):
            url = url[len(scheme) :]
    return url.rstrip("/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class MasterConfig:
    node_id: str
    data_dir: Path
    mode: Mode = "leader"
    host: str = "127.0.0.1"
    port: int = 6767
    # None = --port + 1 (so masters on one host differ by --port alone); 0 = no HTTP API.
    http_port: int | None = None
    advertise: str = ""  # address the other masters and clients use; default host:port
    leader_url: str = ""
    peers: dict[str, str] = field(default_factory=dict)
    insecure: bool = False
    tick_interval: float = 0.05
    snapshot_every: int = 10_000
    lock_delay_ms: int = 0  # after a lease expires, no grant for this long
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)

    def __post_init__(self) -> None:
        if not self.node_id:
            raise ValueError("--node-id: must not be empty")
        if self.mode not in ("leader", "master"):
            raise ValueError(f"--mode: expected leader or master, got {self.mode!r}")
        if self.mode == "master" and not self.leader_url and not self.peers:
            raise ValueError("--leader-url: required with --mode master (or give --peers)")
        if self.peers and self.node_id not in self.peers:
            raise ValueError(f"--peers: must include this node ({self.node_id!r})")
        if not 0 < self.port < 65536:
            raise ValueError(f"--port: {self.port} is not a TCP port")
        if self.http_port is None and self.port == 65535:
            raise ValueError("--http-port: --port 65535 + 1 is not a TCP port; give --http-port")
        if not 0 <= self.http < 65536:
            raise ValueError(f"--http-port: {self.http} is not a TCP port")
        if self.http == self.port:
            raise ValueError(f"--http-port: {self.http} is the gRPC --port too")
        if not 0 <= self.lock_delay_ms <= MAX_LOCK_DELAY_MS:
            raise ValueError(
                f"--lock-delay: {self.lock_delay_ms} ms (from 0 to {MAX_LOCK_DELAY_MS} ms)"
            )
        if not is_loopback(self.host) and not self.insecure:
            raise ValueError(
                f"--host: refusing to listen on {self.host} without TLS or tokens "
                "(not available yet); pass --insecure to accept that risk"
            )

    @property
    def http(self) -> int:
        """The HTTP API's port: --http-port, else --port + 1; 0 = off."""
        return self.port + 1 if self.http_port is None else self.http_port

    @property
    def address(self) -> str:
        if self.advertise:
            return self.advertise
        if self.peers:
            return self.peers[self.node_id]
        return f"{self.host}:{self.port}"
