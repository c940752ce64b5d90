"""What every command shares: connection settings, output mode, the client."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click

from agentflow.cli.output import emit_json
from agentflow.cli.retrying import RetryReporter, stderr_is_terminal
from agentflow.client.channels import TlsConfig
from agentflow.client.retry import RetryPolicy
from agentflow.client.sync import Client


@dataclass
class AppContext:
    masters: str | None
    output: str = "human"
    deadline: float = 30.0
    token: str | None = None
    tls: TlsConfig | None = None
    _client: Client | None = field(default=None, init=False)

    @property
    def json(self) -> bool:
        return self.output == "json"

    @property
    def tells_progress(self) -> bool:
        """Progress and retry lines on stderr: human output to a terminal only."""
        return not self.json and stderr_is_terminal()

    @property
    def client(self) -> Client:
        if self._client is None:
            # A person at a terminal hears at once that no master answers; scripts
            # and `-o json` get only the final error.
            reporter = RetryReporter(sys.stderr) if self.tells_progress else None
            self._client = Client(
                self.masters,
                retry=RetryPolicy(
                    deadline=self.deadline,
                    attempt_timeout=min(10.0, self.deadline),
                    on_retry=reporter,
                ),
                tls=self.tls,
                token=self.token,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def emit(self, human: str, data: Any) -> None:
        """Print `data` as JSON or `human` as text, whichever the user asked for."""
        if self.json:
            emit_json(data)
        elif human:
            click.echo(human)


pass_app = click.make_pass_decorator(AppContext)
