"""`agentflow-worker`: run tasks for an AgentFlow cluster.

The module docstring is not the help: HELP below is (click's \\b blocks keep the
examples as written).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any

import click

from agentflow._proto import state_pb2
from agentflow.common.logging import configure as configure_logging
from agentflow.common.one_line_errors import StartupError as CommonStartupError
from agentflow.common.one_line_errors import one_line_errors
from agentflow.worker.agent import Agent, AgentConfig, Transport
from agentflow.worker.executor import Executor
from agentflow.worker.groups import detect_groups, parse_labels
from agentflow.worker.limits import AdaptiveConcurrency, compute_limits
from agentflow.worker.process_groups import Guardian
from agentflow.worker.resources import available_memory_mb, detect, usage

DEFAULT_MASTER = "127.0.0.1:6767"
PROG = "agentflow-worker"
PYTHONPATH_ENV = "AGENTFLOW_WORKER_PYTHONPATH"

HELP = f"""Run tasks for an AgentFlow cluster.

\b
Examples:
  {PROG} --master-url 10.0.0.1:6767,10.0.0.2:6767 --group gpu --gpu-count 1
  {PROG} --master-url 10.0.0.1:6767 --pythonpath ./tasks --label zone=a
  MASTER_URL=10.0.0.1:6767 WORKER_GROUP=etl {PROG}

--master-url lists masters' gRPC addresses (any master: followers redirect to the
leader). The HTTP shim, used when gRPC does not connect, is at --http-url; by default
each master's host at its gRPC port + 1, the port a master's --http-port defaults to.

python:<module>:<function> tasks import <module> on this worker: put its directory
on --pythonpath (or in the task's cwd).

\b
Limits, unless WORKER_MAX_CONCURRENT_TASKS, WORKER_TASK_MEMORY_LIMIT_MB or
WORKER_TASK_CPU_TIME_LIMIT_SEC say otherwise (see docs/workers.md):
  tasks at once   min(cores, available GB / 2, 10), at least 1
  memory per task 70 % of memory / tasks at once, within 512-4096 MB
  CPU time        min(1800, max(300, cores x 60)) s

SIGTERM drains (finishes what runs, takes nothing new) and exits; a second SIGTERM
exits at once. Process groups of tasks never outlive the worker: its guardian
process kills them if it dies (records in --state-dir).
"""


class StartupError(CommonStartupError):
    """The worker cannot start; the message names what failed."""


_OneLineErrors = one_line_errors(PROG)


def split_urls(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))


def _host_port(url: str, flag: str) -> tuple[str, int]:
    bare = url
    for scheme in ("grpc://", "http://", "https://"):
        bare = bare.removeprefix(scheme)
    host, _, port = bare.rstrip("/").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{flag}: {url!r} is not host:port (port 1-65535)")
    return host, int(port)


def default_http_url(master: str) -> str:
    """`host:6767` -> `http://host:6768`: a master's default HTTP port is its gRPC
    port + 1."""
    host, port = _host_port(master, "--master-url")
    if port == 65535:
        raise ValueError(f"--master-url: {master!r}: port + 1 is not a port; give --http-url")
    return f"http://{host}:{port + 1}"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "agentflow" / "worker"


def usable_state_dir(given: Path | None) -> Path:
    """The state dir: the one given (StartupError if unusable), else the default,
    else one under the system's temp dir (a read-only home must not stop a worker)."""
    candidates = (
        [given]
        if given is not None
        else [default_state_dir(), Path(tempfile.gettempdir()) / f"agentflow-worker-{os.getuid()}"]
    )
    error: OSError | None = None
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
            return path
        except OSError as exc:
            error = exc
    assert error is not None
    raise StartupError(f"--state-dir {candidates[-1]}: not usable: {error.strerror or error}")


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
    for m in masters:
        _host_port(m, "--master-url")
    https = split_urls(http_url)
    for h in https:
        _host_port(h, "--http-url")
    https = https or tuple(default_http_url(m) for m in masters)
    if cpu_cores is not None and not math.isfinite(cpu_cores):
        raise ValueError(f"--cpu-cores must be a finite number, got {cpu_cores}")
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


async def serve(agent: Agent, guardian: Guardian) -> None:
    """Starts the guardian and the python pool (StartupError naming what failed),
    then runs the agent until it stops."""
    try:
        await guardian.start()
    except OSError as exc:
        raise StartupError(f"--state-dir {guardian.state_dir}: {exc.strerror or exc}") from None
    try:
        try:
            await agent.executor.start()
        except Exception as exc:
            raise StartupError(f"the python pool (--python-pool-size): {exc}") from None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.request_stop)
        async with asyncio.TaskGroup() as tg:
            watching = tg.create_task(guardian.watch())
            with contextlib.suppress(asyncio.CancelledError):
                await agent.run()
            watching.cancel()
    finally:
        await agent.executor.close()
        await guardian.close()


class _Finite(click.FloatRange):
    """A finite number in range (FloatRange alone lets nan through: every comparison
    with it is false)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


_POSITIVE = _Finite(min=0, min_open=True)


@click.command(cls=_OneLineErrors, help=HELP, context_settings={"max_content_width": 100})
@click.option(
    "--master-url",
    envvar="MASTER_URL",
    default=DEFAULT_MASTER,
    show_default=True,
    metavar="URL[,URL]",
    help="Masters' gRPC addresses, host:port. [env: MASTER_URL]",
)
@click.option(
    "--http-url",
    envvar="WORKER_HTTP_URL",
    default="",
    metavar="URL[,URL]",
    help="Masters' HTTP URLs for the shim. [env: WORKER_HTTP_URL]"
    " [default: each --master-url host at its port + 1]",
)
@click.option(
    "--worker-id",
    envvar="WORKER_ID",
    default=socket.gethostname,
    show_default="the host name",
    help="Unique among live workers. [env: WORKER_ID]",
)
@click.option(
    "--group",
    default=None,
    help="Group(s), comma-separated. [env: WORKER_GROUP] [default: docker, k8s or the OS"
    " name, and default]",
)
@click.option(
    "--label", "labels", multiple=True, metavar="K=V", help="A label tasks can require; repeatable."
)
@click.option("--cpu-cores", type=float, default=None, help="Cores to offer. [default: detected]")
@click.option(
    "--memory-mb",
    type=click.IntRange(min=1, max=2**40),
    default=None,
    help="Memory to offer, MB. [default: detected]",
)
@click.option(
    "--gpu-count",
    type=click.IntRange(min=0, max=1024),
    default=None,
    help="GPUs to offer. [default: detected with nvidia-smi]",
)
@click.option(
    "--pythonpath",
    "pythonpath",
    multiple=True,
    envvar=PYTHONPATH_ENV,
    type=click.Path(exists=True, file_okay=False, resolve_path=True),
    metavar="DIR",
    help="Put DIR first on python tasks' sys.path; repeatable."
    f" [env: {PYTHONPATH_ENV}, {os.pathsep}-separated]",
)
@click.option(
    "--state-dir",
    envvar="WORKER_STATE_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the worker records its tasks' process groups, so that a worker started"
    " later kills what a dead one left. [env: WORKER_STATE_DIR]"
    " [default: $XDG_STATE_HOME/agentflow/worker, else ~/.local/state/agentflow/worker]",
)
@click.option(
    "--transport",
    type=click.Choice(["auto", "grpc", "http"]),
    default="auto",
    show_default=True,
    help="auto: gRPC, else the HTTP shim.",
)
@click.option(
    "--reconnect-base",
    type=_POSITIVE,
    default=5.0,
    show_default=True,
    help="First reconnect delay, seconds (doubles per failure, with jitter).",
)
@click.option(
    "--reconnect-max",
    type=_POSITIVE,
    default=60.0,
    show_default=True,
    help="Longest reconnect delay, seconds.",
)
@click.option(
    "--connect-timeout",
    type=_POSITIVE,
    default=1.0,
    show_default=True,
    help="Seconds to wait for a master to answer a connect; a dead leader costs this at failover.",
)
@click.option(
    "--drain-timeout",
    type=_POSITIVE,
    default=600.0,
    show_default=True,
    help="After SIGTERM, exit anyway after this many seconds.",
)
@click.option(
    "--python-pool-size",
    type=click.IntRange(min=0, max=256),
    default=2,
    show_default=True,
    help="Warm processes kept ready for python: tasks.",
)
@click.option(
    "--result-linger-ms",
    type=_Finite(min=0, max=10_000),
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
    pythonpath: tuple[str, ...],
    state_dir: Path | None,
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
    # Inherited by every task (and pool process): ctx.client() connects with it.
    os.environ["AGENTFLOW_MASTER_URL"] = master_url
    guardian = Guardian(usable_state_dir(state_dir))
    agent = Agent(
        config,
        Executor(python_pool_size=python_pool_size, groups=guardian, pythonpath=pythonpath),
        AdaptiveConcurrency(maximum=max_concurrent),
        usage=usage,
    )
    guardian.on_frozen = agent.groups_frozen
    asyncio.run(serve(agent, guardian))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
