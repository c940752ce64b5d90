"""`agentflow-master`: run one master of an AgentFlow cluster.

    agentflow-master --mode leader --node-id m1 --port 6767 --data-dir data/m1
    agentflow-master --mode master --node-id m2 --port 6777 --leader-url 127.0.0.1:6767 ...
    agentflow-master --node-id m1 --peers m1=h1:6767,m2=h2:6767,m3=h3:6767 ...

`leader` founds a new one-node cluster (a restart with data just resumes), `master`
joins the cluster at --leader-url, and --peers founds a fixed set (every member is
started with the same list).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import click

from agentflow.common.logging import configure as configure_logging
from agentflow.master.config import MasterConfig, parse_peers
from agentflow.master.server import serve
from agentflow.scheduler.service import SchedulerConfig


def _peers(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, str]:
    try:
        return parse_peers(value or "")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command(help=__doc__)
@click.option(
    "--mode", type=click.Choice(["leader", "master"]), default="leader", show_default=True
)
@click.option("--node-id", default=socket.gethostname, show_default="the host name")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=6767, show_default=True, help="gRPC port (all services).")
@click.option("--http-port", type=int, default=6768, show_default=True, help="HTTP API; 0 = off.")
@click.option("--advertise", default="", help="host:port others reach this master at.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--leader-url", default="", envvar="AGENTFLOW_LEADER_URL", help="Cluster to join.")
@click.option("--peers", callback=_peers, default="", help="id=host:port,... (fixed set).")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --host without TLS.")
@click.option("--aging-seconds", type=float, default=30.0, show_default=True)
@click.option("--retention-hours", type=float, default=24.0, show_default=True)
@click.option("--retention-count", type=int, default=20_000, show_default=True)
@click.option(
    "--prefetch",
    type=click.FloatRange(min=0),
    default=3.0,
    show_default=True,
    help="Assignments a worker may hold beyond its concurrency, as a share of it "
    "(0 = none, and no adaptive prefetch either).",
)
@click.option(
    "--prefetch-window-ms",
    type=click.FloatRange(min=0),
    default=200.0,
    show_default=True,
    help="A worker of short tasks may hold as many more as it finishes in this time.",
)
@click.option(
    "--prefetch-max",
    type=click.IntRange(min=0),
    default=256,
    show_default=True,
    help="Cap on the adaptive prefetch, per worker.",
)
@click.option(
    "--worker-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=15.0,
    show_default=True,
    help="Seconds a worker may be silent before the leader declares it lost.",
)
@click.option("--snapshot-every", type=int, default=10_000, show_default=True)
@click.option("--tick-ms", type=float, default=50.0, show_default=True)
def main(
    mode: str,
    node_id: str,
    host: str,
    port: int,
    http_port: int,
    advertise: str,
    data_dir: Path | None,
    leader_url: str,
    peers: dict[str, str],
    insecure: bool,
    aging_seconds: float,
    retention_hours: float,
    retention_count: int,
    prefetch: float,
    prefetch_window_ms: float,
    prefetch_max: int,
    worker_timeout: float,
    snapshot_every: int,
    tick_ms: float,
) -> None:
    configure_logging()
    try:
        config = MasterConfig(
            node_id=node_id,
            data_dir=data_dir or Path("agentflow-data") / node_id,
            mode="leader" if mode == "leader" else "master",
            host=host,
            port=port,
            http_port=http_port,
            advertise=advertise,
            leader_url=leader_url,
            peers=peers,
            insecure=insecure,
            tick_interval=tick_ms / 1000,
            snapshot_every=snapshot_every,
            scheduler=SchedulerConfig(
                aging_seconds=aging_seconds if aging_seconds > 0 else None,
                retention_seconds=retention_hours * 3600,
                retention_keep=retention_count,
                prefetch=prefetch,
                prefetch_window=prefetch_window_ms / 1000,
                prefetch_max=prefetch_max,
                worker_timeout=worker_timeout,
            ),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
