"""Master addresses as users write them -> gRPC targets ("host:port")."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from agentflow.client.errors import InvalidArgumentError

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_PORT", "MASTER_URL_ENV", "parse_addresses"]

DEFAULT_PORT = 6767
DEFAULT_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"
MASTER_URL_ENV = "MASTER_URL"

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def parse_addresses(
    value: str | Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """`"a:1,b:2"`, `["http://a:1", "b"]`, or None for $MASTER_URL (else 127.0.0.1:6767).

    Schemes and paths are dropped, a missing port is 6767, duplicates collapse.
    """
    if value is None:
        value = (os.environ if env is None else env).get(MASTER_URL_ENV, "") or DEFAULT_ADDRESS
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidArgumentError("masters", f"expected host:port strings, got {item!r}")
        for part in item.split(","):
            if part.strip():
                address = _normalize(part.strip())
                if address not in out:
                    out.append(address)
    if not out:
        raise InvalidArgumentError("masters", "no master address given")
    return tuple(out)


def _normalize(text: str) -> str:
    hostport = _SCHEME.sub("", text).split("/", 1)[0]
    if hostport.startswith("["):  # [v6]:port or [v6]
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise InvalidArgumentError("masters", f"invalid address {text!r}")
        host = f"[{host}]"
    elif hostport.count(":") > 1:  # bare IPv6, no port
        host, port = f"[{hostport}]", ""
    else:
        host, _, port = hostport.partition(":")
    if not host or host == "[]":
        raise InvalidArgumentError("masters", f"invalid address {text!r}: no host")
    if not port:
        return f"{host}:{DEFAULT_PORT}"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgumentError("masters", f"invalid address {text!r}: bad port {port!r}")
    return f"{host}:{int(port)}"
