"""`agentflow-master`: run one master of an AgentFlow cluster.

The module docstring is not the help: HELP below is (click's \\b blocks keep the
examples as written).
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import click
import structlog

from agentflow.common.logging import configure as configure_logging
from agentflow.common.one_line_errors import one_line_errors
from agentflow.master.config import MasterConfig, parse_peers
from agentflow.master.server import serve
from agentflow.master.startup import StartupError
from agentflow.scheduler.service import SchedulerConfig

PROG = "agentflow-master"

HELP = f"""Run one master of an AgentFlow cluster.

\b
Examples:
  {PROG} --mode leader --node-id m1 --port 6767 --data-dir data/m1
  {PROG} --mode master --node-id m2 --port 6777 --leader-url 127.0.0.1:6767
  {PROG} --node-id m1 --peers m1=h1:6767,m2=h2:6767,m3=h3:6767

--mode leader founds a new one-node cluster (a restart with data just resumes),
--mode master joins the cluster at --leader-url, and --peers founds a fixed set
(every member is started with the same list).

One gRPC port (--port) serves everything: Raft between masters and the client,
worker, health and reflection services. The HTTP API (probes, /stats, the worker
shim) is on --http-port, by default --port + 1, so masters on one host differ by
--port alone.

A master listens on loopback only unless --insecure is given: it has no TLS or
tokens yet. A failure to start is one line on stderr and a non-zero exit.
"""

log = structlog.get_logger(__name__)


_OneLineErrors = one_line_errors(PROG)


def _peers(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, str]:
    try:
        return parse_peers(value or "")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command(
    cls=_OneLineErrors,
    help=HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--mode",
    type=click.Choice(["leader", "master"]),
    default="leader",
    show_default=True,
    help="leader: found a new cluster (or resume one); master: join --leader-url.",
)
@click.option(
    "--node-id",
    default=socket.gethostname,
    show_default="the host name",
    help="This master's id: unique in the cluster, the same at every restart.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; one not on loopback needs --insecure.",
)
@click.option("--port", type=int, default=6767, show_default=True, help="gRPC port (all services).")
@click.option(
    "--http-port",
    type=int,
    default=None,
    show_default="--port + 1",
    help="HTTP API (probes, /stats, the worker shim); 0 = off.",
)
@click.option(
    "--advertise",
    default="",
    show_default="this node's --peers entry, else --host:--port",
    help="host:port the other masters and the clients reach this master at.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    show_default="agentflow-data/<node-id>",
    help="Where the Raft log, hard state and snapshots live.",
)
@click.option(
    "--leader-url",
    default="",
    envvar="AGENTFLOW_LEADER_URL",
    help="Any member of the cluster to join (--mode master). [env: AGENTFLOW_LEADER_URL]",
)
@click.option(
    "--peers",
    callback=_peers,
    default="",
    metavar="ID=HOST:PORT,...",
    help="Found a fixed set of masters (this one included); the same list on each.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback --host without TLS or tokens (warned at every start).",
)
@click.option(
    "--aging-seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="A waiting task rises one priority level after this long; 0 = no aging.",
)
@click.option(
    "--retention-hours",
    type=float,
    default=24.0,
    show_default=True,
    help="Finished tasks and workflows are kept this long, in hours.",
)
@click.option(
    "--retention-count",
    type=int,
    default=20_000,
    show_default=True,
    help="At most this many finished tasks outside workflows are kept "
    "(memory: see docs/operations.md).",
)
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
@click.option(
    "--snapshot-every",
    type=int,
    default=10_000,
    show_default=True,
    help="Take a snapshot (and compact the log) every N applied entries.",
)
@click.option(
    "--lock-delay",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds after a lock's lease expires during which nobody is granted it "
    "(the lost holder may still be finishing a write it started under its lease).",
)
@click.option(
    "--tick-ms",
    type=float,
    default=50.0,
    show_default=True,
    help="Raft tick, ms; election and heartbeat timeouts are multiples of it.",
)
def main(
    mode: str,
    node_id: str,
    host: str,
    port: int,
    http_port: int | None,
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
    lock_delay: float,
    tick_ms: float,
) -> None:
    try:
        configure_logging()
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
            lock_delay_ms=round(lock_delay * 1000),
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
    try:
        asyncio.run(serve(config))
    except StartupError as exc:
        # The log line for log shippers; the plain one (printed by _OneLineErrors)
        # for the person at the shell.
        log.error("master.failed", node=node_id, what=exc.what, error=exc.detail)
        raise


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
