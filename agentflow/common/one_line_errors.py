"""The programs' start-up rule: every failure to start is one line on stderr and a
non-zero exit (usage errors 2, what fails once the flags parsed 1); no usage dump, no
traceback. Shared by `agentflow-master` and `agentflow-worker`."""

from __future__ import annotations

import sys
from typing import Any

import click


class StartupError(Exception):
    """A program cannot start; the message names what failed."""


def one_line_errors(prog: str) -> type[click.Command]:
    """A click command class that applies the rule for the program `prog`."""

    class OneLineErrors(click.Command):
        def main(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("standalone_mode", True) is False:
                return super().main(*args, **kwargs)
            kwargs["standalone_mode"] = False
            try:
                code = super().main(*args, **kwargs)
            except click.ClickException as exc:
                click.echo(f"{prog}: error: {exc.format_message()} (see {prog} --help)", err=True)
                sys.exit(exc.exit_code)
            except click.Abort:
                sys.exit(1)
            except StartupError as exc:
                click.echo(f"{prog}: error: {exc}", err=True)
                sys.exit(1)
            sys.exit(code if isinstance(code, int) else 0)

    return OneLineErrors
