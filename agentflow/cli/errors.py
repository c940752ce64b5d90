"""How failures leave the CLI: one "error: ..." line on stderr and an exit status
(2 for bad input, 1 for everything else), never a traceback."""

from __future__ import annotations

from typing import IO, Any

import click

from agentflow.client.errors import AgentFlowError, InvalidArgumentError

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class CliError(click.ClickException):
    exit_code = EXIT_FAILURE

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class BadInputError(CliError):
    exit_code = EXIT_BAD_INPUT


def cli_error(exc: AgentFlowError) -> CliError:
    if isinstance(exc, InvalidArgumentError):
        return BadInputError(str(exc))
    return CliError(str(exc))


class AgentFlowGroup(click.Group):
    """Turns SDK errors raised by any subcommand into `CliError`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AgentFlowError as exc:
            raise cli_error(exc) from None
