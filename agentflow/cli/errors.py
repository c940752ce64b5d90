"""How failures leave the CLI: one line on stderr and an exit status (2 for bad input,
1 for everything else), never a traceback unless AGENTFLOW_DEBUG=1.

    error: no task or workflow 'x'                          what a command refused
    agentflow: error: --priority: unknown level 'urgent'   bad options and arguments
    agentflow: error: unexpected OSError: ...              a bug or the environment

With `-o json` the line is a JSON object instead: `{"error": ..., "field": ...}`
(`field` names the input at fault, or is null).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import traceback
from collections.abc import Sequence
from typing import IO, Any

import click

from agentflow.client.errors import AgentFlowError, InvalidArgumentError, WorkflowFileError

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEBUG_ENV = "AGENTFLOW_DEBUG"
OUTPUT_ENV = "AGENTFLOW_OUTPUT"


class CliError(click.ClickException):
    exit_code = EXIT_FAILURE

    def __init__(
        self, message: str, *, field: str | None = None, where: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        self.where = where or {}  # path and line of a bad file, for JSON output
        self.json_output: bool | None = None  # set once the options are known

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class BadInputError(CliError):
    exit_code = EXIT_BAD_INPUT


def cli_error(exc: AgentFlowError) -> CliError:
    if isinstance(exc, WorkflowFileError):
        return BadInputError(
            str(exc), field=exc.field or None, where={"path": exc.path, "line": exc.line}
        )
    if isinstance(exc, InvalidArgumentError):
        return BadInputError(str(exc), field=exc.field or None)
    return CliError(str(exc))


class AgentFlowGroup(click.Group):
    """Turns SDK errors raised by any subcommand into `CliError`, and reports every
    failure as one line (see the module docstring)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AgentFlowError as exc:
            error = cli_error(exc)
            error.json_output = _json_output(ctx)
            raise error from None
        except Exception as exc:
            # The options are parsed by now: remember how the user wants errors
            # (an exception type with __slots__ cannot take it: the options are
            # then read again from the command line).
            with contextlib.suppress(AttributeError):
                exc.json_output = _json_output(ctx)  # type: ignore[attr-defined]
            raise

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        try:
            result = super().main(argv, prog_name, complete_var, False, **extra)
        except CliError as exc:
            _report(argv, exc, exc.format_message(), exc.field, prefix="error: ")
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `agentflow` alone: the help
                exc.show()
                sys.exit(exc.exit_code)
            message, field = _usage_message(exc)
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _report(argv, exc, message, field, hint=hint)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _report(argv, exc, exc.format_message(), None)
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt) as exc:
            _report(argv, exc, "interrupted", None)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            # `agentflow list | head`: the reader has what it wanted.
            _silence_stdout()
            sys.exit(EXIT_FAILURE)
        except Exception as exc:
            debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
            if debug:
                traceback.print_exc()
            _silence_stdout()
            message = f"unexpected {type(exc).__name__}: {exc}".rstrip(": ")
            hint = "" if debug else f" (set {DEBUG_ENV}=1 for the traceback)"
            _report(argv, exc, message, None, hint=hint)
            sys.exit(EXIT_FAILURE)
        sys.exit(result if isinstance(result, int) else 0)


def _usage_message(exc: click.UsageError) -> tuple[str, str | None]:
    """One line for a usage error, and the option or argument it is about."""
    field: str | None = None
    if isinstance(exc, click.BadParameter):
        param, hint = exc.param, exc.param_hint
        if isinstance(hint, str):  # raised by a command: `BadParameter(..., param_hint=)`
            field = hint
        elif hint:
            field = str(next(iter(hint)))
        elif isinstance(param, click.Option):
            field = param.opts[0]
        elif param is not None:
            field = param.human_readable_name
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        message = f"{field}: {exc.message}" if field else exc.message
    else:
        message = exc.format_message()
        message = message[:1].lower() + message[1:]
    message = " ".join(message.split()).rstrip(".")
    # click: "no such option '--nope'. Did you mean '--token'?"
    message = re.sub(r"\. Did you mean (.+)\?$", r" (did you mean \1?)", message)
    return message, field


def _json_output(ctx: click.Context) -> bool | None:
    output = getattr(ctx.find_root().obj, "output", None)
    return output == "json" if isinstance(output, str) else None


def _wants_json(argv: Sequence[str], exc: BaseException) -> bool:
    known = getattr(exc, "json_output", None)
    if isinstance(known, bool):
        return known
    # The failure came before the options were parsed: read them ourselves.
    wanted = os.environ.get(OUTPUT_ENV, "")
    for i, arg in enumerate(argv):
        if arg in ("-o", "--output") and i + 1 < len(argv):
            wanted = argv[i + 1]
        elif arg.startswith("--output="):
            wanted = arg.partition("=")[2]
        elif arg.startswith("-o") and len(arg) > 2:
            wanted = arg[2:]
    return wanted == "json"


def _report(
    argv: Sequence[str],
    exc: BaseException,
    message: str,
    field: str | None,
    *,
    prefix: str = "agentflow: error: ",
    hint: str = "",
) -> None:
    if _wants_json(argv, exc):
        data: dict[str, Any] = {"error": message, "field": field}
        if isinstance(exc, CliError):
            data.update(exc.where)
        line = json.dumps(data, ensure_ascii=False)
    else:
        line = prefix + " ".join(message.splitlines()) + hint
    with contextlib.suppress(OSError):
        click.echo(line, err=True)


def _silence_stdout() -> None:
    """Stdout failed (closed pipe, full disk): point it at /dev/null so the flush at
    exit does not print a second error."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
