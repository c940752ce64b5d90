"""`agentflow`: submit, inspect and control tasks on an AgentFlow cluster.

    agentflow [--master URL] [--output human|json] COMMAND ...

Exit status: 0 success, 1 failure (including a task that did not succeed under
`wait`/`run --wait`), 2 bad input (usage, invalid task fields, bad files).
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from agentflow.cli import cluster, delete, locks, runs, tasks
from agentflow.cli.context import AppContext
from agentflow.cli.errors import AgentFlowGroup
from agentflow.client.addresses import MASTER_URL_ENV
from agentflow.client.channels import TlsConfig


@click.group(cls=AgentFlowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--master",
    "-m",
    "masters",
    envvar=MASTER_URL_ENV,
    metavar="URL[,URL...]",
    help="Master address(es), host:port or http://host:port. [env: MASTER_URL; "
    "default: 127.0.0.1:6767]",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["human", "json"]),
    default="human",
    envvar="AGENTFLOW_OUTPUT",
    show_default=True,
    help="Output format. [env: AGENTFLOW_OUTPUT]",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds to keep retrying one call while no master answers.",
)
@click.option("--token", envvar="AGENTFLOW_TOKEN", help="Bearer token. [env: AGENTFLOW_TOKEN]")
@click.option(
    "--ca-cert",
    type=click.Path(exists=True, dir_okay=False),
    envvar="AGENTFLOW_CA_CERT",
    help="Use TLS, trusting this CA (PEM). [env: AGENTFLOW_CA_CERT]",
)
@click.option(
    "--client-cert",
    type=click.Path(exists=True, dir_okay=False),
    envvar="AGENTFLOW_CLIENT_CERT",
    help="Client certificate for mutual TLS (PEM). [env: AGENTFLOW_CLIENT_CERT]",
)
@click.option(
    "--client-key",
    type=click.Path(exists=True, dir_okay=False),
    envvar="AGENTFLOW_CLIENT_KEY",
    help="Client key for mutual TLS (PEM). [env: AGENTFLOW_CLIENT_KEY]",
)
@click.version_option(package_name="agentflow", prog_name="agentflow")
@click.pass_context
def cli(
    ctx: click.Context,
    masters: str | None,
    output: str,
    deadline: float,
    token: str | None,
    ca_cert: str | None,
    client_cert: str | None,
    client_key: str | None,
) -> None:
    """Submit, inspect and control tasks on an AgentFlow cluster."""
    tls = None
    if ca_cert or client_cert or client_key:
        tls = TlsConfig(ca_cert=ca_cert, client_cert=client_cert, client_key=client_key)
    app = AppContext(masters, output=output, deadline=deadline, token=token, tls=tls)
    ctx.obj = app
    ctx.call_on_close(app.close)


for command in (
    *tasks.COMMANDS,
    *runs.COMMANDS,
    *cluster.COMMANDS,
    *delete.COMMANDS,
    *locks.COMMANDS,
):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="agentflow")


if __name__ == "__main__":
    main()
