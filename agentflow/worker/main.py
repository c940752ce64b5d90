"""`agentflow-worker`: run tasks for an AgentFlow cluster.

    agentflow-worker --master-url 10.0.0.1:6767,10.0.0.2:6767 --group gpu --gpu-count 1

--master-url lists masters' gRPC addresses (any master: followers redirect to the
leader). The HTTP shim, used when gRPC does not connect, is at --http-url; by default
the same hosts at port + 1 (a master's default --http-port is its --port + 1).
Resources are detected (psutil, nvidia-smi) unless given; limits follow seed 004's
formulas unless WORKER_MAX_CONCURRENT_TASKS, WORKER_TASK_MEMORY_LIMIT_MB or
WORKER_TASK_CPU_TIME_LIMIT_SEC say otherwise. SIGTERM drains (finishes what runs,
takes nothing new) and exits; a second SIGTERM exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket

import click

from agentflow._proto import state_pb2
from agentflow.common.logging import configure as configure_logging
from agentflow.worker.agent import Agent, AgentConfig, Transport
from agentflow.worker.executor import Executor
from agentflow.worker.groups import detect_groups, parse_labels
from agentflow.worker.limits import AdaptiveConcurrency, compute_limits
from agentflow.worker.resources import available_memory_mb, detect, usage

DEFAULT_MASTER = "127.0.0.1:6767"


def split_urls(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))


def default_http_url(master: str) -> str:
    """`host:6767` -> `http://host:6768` (the masters' default port pair)."""
    for scheme in ("grpc://", "http://", "https://"):
        master = master.removeprefix(scheme)
    host, _, port = master.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--master-url: {master!r} is not host:port")
    return f"http://{host}:{int(port) + 1}"


def build_config(
    master_url: str,
    http_url: str,
    worker_id: str,
    group: str | None,
    labels: tuple[str, ...],
    cpu_cores: float | None,
    memory_mb: int | None,
    gpu_count: int | None,
    transport: Transport,
    reconnect_base: float,
    reconnect_max: float,
    connect_timeout: float,
    drain_timeout: float,
    result_linger: float = 0.005,
) -> tuple[AgentConfig, int]:
    """The agent's configuration and its maximum concurrency. ValueError names the
    flag or variable at fault."""
    masters = split_urls(master_url)
    https = split_urls(http_url) or tuple(default_http_url(m) for m in masters)
    res = detect(cpu_cores=cpu_cores, memory_mb=memory_mb, gpu_count=gpu_count)
    available = available_memory_mb()
    if memory_mb is not None:
        available = min(available, memory_mb)
    limits = compute_limits(res.cpu_cores, res.memory_mb, available)
    info = state_pb2.WorkerInfo(
        id=worker_id,
        groups=detect_groups(group),
        labels=parse_labels(labels),
        cpu_cores=res.cpu_cores,
        memory_mb=res.memory_mb,
        gpu_count=res.gpu_count,
        capacity=limits.max_concurrent_tasks,
        hostname=socket.gethostname(),
    )
    config = AgentConfig(
        info=info,
        grpc_targets=masters,
        http_targets=https,
        transport=transport,
        backoff_base=reconnect_base,
        backoff_max=reconnect_max,
        connect_timeout=connect_timeout,
        task_memory_limit_mb=limits.task_memory_limit_mb,
        task_cpu_time_limit_s=limits.task_cpu_time_limit_s,
        drain_timeout=drain_timeout,
        result_linger=result_linger,
    )
    return config, limits.max_concurrent_tasks


async def serve(agent: Agent) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_stop)
    with contextlib.suppress(asyncio.CancelledError):
        await agent.run()


@click.command(help=__doc__)
@click.option(
    "--master-url",
    envvar="MASTER_URL",
    default=DEFAULT_MASTER,
    show_default=True,
    metavar="URL[,URL]",
    help="Masters' gRPC addresses. [env: MASTER_URL]",
)
@click.option(
    "--http-url",
    envvar="WORKER_HTTP_URL",
    default="",
    metavar="URL[,URL]",
    help="Masters' HTTP URLs for the shim. [default: master ports + 1]",
)
@click.option(
    "--worker-id",
    envvar="WORKER_ID",
    default=socket.gethostname,
    show_default="the host name",
    help="Unique among live workers.",
)
@click.option(
    "--group",
    default=None,
    help="Group(s), comma-separated. [env: WORKER_GROUP; else docker/k8s/OS]",
)
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Repeatable.")
@click.option("--cpu-cores", type=float, default=None, help="Override detection.")
@click.option("--memory-mb", type=int, default=None, help="Override detection.")
@click.option("--gpu-count", type=int, default=None, help="Override detection.")
@click.option(
    "--transport",
    type=click.Choice(["auto", "grpc", "http"]),
    default="auto",
    show_default=True,
    help="auto: gRPC, else the HTTP shim.",
)
@click.option(
    "--reconnect-base",
    type=float,
    default=5.0,
    show_default=True,
    help="First reconnect delay, seconds (doubles per failure).",
)
@click.option("--reconnect-max", type=float, default=60.0, show_default=True)
@click.option(
    "--connect-timeout",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds to wait for a master to answer a connect; a dead leader costs this at failover.",
)
@click.option(
    "--drain-timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="After SIGTERM, exit anyway after this many seconds.",
)
@click.option(
    "--python-pool-size",
    type=int,
    default=2,
    show_default=True,
    help="Warm processes for python: tasks.",
)
@click.option(
    "--result-linger-ms",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="While more assigned tasks wait here, a result waits this long for others to "
    "travel with it (one message, one replicated command). 0 = send each at once.",
)
def main(
    master_url: str,
    http_url: str,
    worker_id: str,
    group: str | None,
    labels: tuple[str, ...],
    cpu_cores: float | None,
    memory_mb: int | None,
    gpu_count: int | None,
    transport: str,
    reconnect_base: float,
    reconnect_max: float,
    connect_timeout: float,
    drain_timeout: float,
    python_pool_size: int,
    result_linger_ms: float,
) -> None:
    configure_logging()
    try:
        config, max_concurrent = build_config(
            master_url,
            http_url,
            worker_id,
            group,
            labels,
            cpu_cores,
            memory_mb,
            gpu_count,
            "grpc" if transport == "grpc" else "http" if transport == "http" else "auto",
            reconnect_base,
            reconnect_max,
            connect_timeout,
            drain_timeout,
            result_linger_ms / 1000,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    agent = Agent(
        config,
        Executor(python_pool_size=python_pool_size),
        AdaptiveConcurrency(maximum=max_concurrent),
        usage=usage,
    )
    asyncio.run(serve(agent))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
