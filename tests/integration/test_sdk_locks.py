"""The lock SDK against a real master: grants, fencing tokens, held and lost errors,
the context manager and the auto-renewing lease."""

from __future__ import annotations

import time

import pytest

from agentflow.client import Client
from agentflow.client.errors import FailedPreconditionError, LockHeldError, LockLostError


def test_acquire_held_release_and_tokens_grow(master: str) -> None:
    with Client(master) as client:
        first = client.acquire_lock("sdk-a", "5s", owner="alice")
        assert first.owner == "alice" and first.token > 0 and first.expires_at is not None
        with pytest.raises(FailedPreconditionError) as held:
            client.acquire_lock("sdk-a", 5, owner="bob")
        assert "alice" in str(held.value)
        with pytest.raises(LockHeldError) as waited:
            client.acquire_lock("sdk-a", 5, owner="bob", wait="300ms")
        assert waited.value.holder == "alice"
        assert client.get_lock("sdk-a").owner == "alice"
        assert [k.name for k in client.list_locks("sdk-")] == ["sdk-a"]
        client.release_lock("sdk-a", first.token, owner="alice")
        with pytest.raises(LockLostError):
            client.release_lock("sdk-a", first.token, owner="alice")
        second = client.acquire_lock("sdk-a", 5, owner="bob")
        assert second.token > first.token
        client.release_lock("sdk-a", second.token, owner="bob")


def test_context_manager_and_auto_renew(master: str) -> None:
    with Client(master) as client:
        with client.lock("sdk-b", ttl="2s") as lease:
            assert lease.token > 0 and not lease.lost
        assert client.get_lock("sdk-b").owner == ""
        with client.auto_renew_lock("sdk-c", ttl="600ms") as renewing:
            time.sleep(1.5)  # past two ttls: only renewals keep it
            assert renewing.renewals >= 2 and not renewing.lost
            assert client.get_lock("sdk-c").token == renewing.token
        assert client.get_lock("sdk-c").owner == ""
