"""What every command shares: connection settings, output mode, the client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click

from agentflow.cli.output import emit_json
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
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                self.masters,
                retry=RetryPolicy(deadline=self.deadline, attempt_timeout=min(10.0, self.deadline)),
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
