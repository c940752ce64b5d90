"""How a master names a caller in the records it keeps (`cancelled by: ...`)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from agentflow.master.caller import CALLER, caller, peer_address


class Context:
    """Only what `caller` reads of a grpc.aio.ServicerContext."""

    def __init__(self, peer: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._peer, self._metadata = peer, metadata

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def ctx(peer: str, metadata: tuple[tuple[str, str], ...] = ()) -> Any:
    return cast(Any, Context(peer, metadata))


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:50123", "127.0.0.1"),
        ("ipv6:[::1]:50123", "::1"),
        ("ipv6:%5B::1%5D:50123", "::1"),
        ("unix:/tmp/s", "unix:/tmp/s"),
        ("", "unknown"),
    ],
)
def test_peer_address_drops_the_port(peer: str, host: str) -> None:
    assert peer_address(ctx(peer)) == host


def test_a_forwarded_call_names_the_client_not_the_follower() -> None:
    assert caller(ctx("ipv4:10.0.0.2:7000")) == "a client at 10.0.0.2"
    forwarded = ctx("ipv4:10.0.0.2:7000", ((CALLER, "a client at 10.0.0.9"),))
    assert caller(forwarded) == "a client at 10.0.0.9"
    long = ctx("ipv4:10.0.0.2:7000", ((CALLER, "x" * 1000),))
    assert len(caller(long)) == 200
