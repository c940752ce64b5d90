"""gRPC channels to masters: options, TLS credentials and the bearer token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from agentflow.client.errors import InvalidArgumentError

__all__ = ["CHANNEL_OPTIONS", "ChannelFactory", "TlsConfig"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # After a master restarts, reconnect within a second rather than gRPC's default
    # backoff (1 s growing to 120 s): the SDK has its own retry loop and deadline.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS to the masters. Paths to PEM files; no `ca_cert` = the system roots.

    `client_cert` and `client_key` together enable mutual TLS. `server_name` overrides
    the name checked against the server's certificate.
    """

    ca_cert: str | Path | None = None
    client_cert: str | Path | None = None
    client_key: str | Path | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.client_cert is None) != (self.client_key is None):
            raise InvalidArgumentError("tls", "client_cert and client_key go together")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_cert, "tls.ca_cert"),
            private_key=_read(self.client_key, "tls.client_key"),
            certificate_chain=_read(self.client_cert, "tls.client_cert"),
        )


def _read(path: str | Path | None, field: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(field, f"cannot read {str(path)!r}: {exc.strerror}") from None


class ChannelFactory:
    """Makes sync or asyncio channels with the same options and credentials."""

    def __init__(self, tls: TlsConfig | None = None, token: str | None = None) -> None:
        self._credentials = tls.credentials() if tls is not None else None
        self._options = list(CHANNEL_OPTIONS)
        if tls is not None and tls.server_name:
            self._options.append(("grpc.ssl_target_name_override", tls.server_name))
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )

    def sync_channel(self, address: str) -> grpc.Channel:
        if self._credentials is None:
            return grpc.insecure_channel(address, options=self._options)
        return grpc.secure_channel(address, self._credentials, options=self._options)

    def aio_channel(self, address: str) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(address, options=self._options)
        return grpc.aio.secure_channel(address, self._credentials, options=self._options)
