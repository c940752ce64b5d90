"""Who is calling, in words a record can keep ("a client at 127.0.0.1").

Until tokens exist the master knows a caller only by its address. A follower that
forwards a call passes the address it saw (`x-agentflow-caller`), so the leader records
the client rather than the follower. With tokens, the token's name goes here instead.
"""

from __future__ import annotations

from agentflow.master.status import Ctx

CALLER = "x-agentflow-caller"
_MAX = 200  # a forwarded value is only ever a short address


def peer_address(context: Ctx) -> str:
    """The host of the connection ("ipv4:127.0.0.1:5000" -> "127.0.0.1")."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        host = rest.rpartition(":")[0].strip("[]")
        return host.removeprefix("%5B").removesuffix("%5D") or rest
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return peer or "unknown"


def caller(context: Ctx) -> str:
    """The caller of this call: the address a forwarding master passed on, else the
    connection's own."""
    for key, value in context.invocation_metadata() or ():
        if key == CALLER and isinstance(value, str) and value:
            return value[:_MAX]
    return f"a client at {peer_address(context)}"
