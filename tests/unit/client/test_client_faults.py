"""Leader following and safe retries, against in-process fake masters that inject
faults at the gRPC edge (agentflow.client.testing.FakeMaster)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import grpc
import pytest

from agentflow.client import (
    AsyncClient,
    Client,
    InvalidArgumentError,
    NotFoundError,
    RetryPolicy,
    TaskSpec,
    UnavailableError,
)
from agentflow.client.testing import FakeMaster

Code = grpc.StatusCode
FAST = RetryPolicy(deadline=5.0, attempt_timeout=2.0, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
def leader() -> Iterator[FakeMaster]:
    with FakeMaster("n1") as fake:
        yield fake


@pytest.fixture
def follower(leader: FakeMaster) -> Iterator[FakeMaster]:
    """Refuses everything, pointing at the leader (as a master without a leader lease)."""
    with FakeMaster("n2") as fake:
        fake.fail_next(
            "*", Code.UNAVAILABLE, "not the leader", leader_address=leader.address, times=None
        )
        yield fake


def dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def request_ids(fake: FakeMaster, method: str = "SubmitTasks") -> list[str]:
    return [call.request.request_id for call in fake.calls(method)]


def test_follows_the_leader_hint(leader: FakeMaster, follower: FakeMaster) -> None:
    with Client(follower.address, retry=FAST) as client:
        task_id = client.submit("shell:true")
        assert client.addresses == (follower.address, leader.address)
        assert client.get(task_id).id == task_id
    assert len(follower.calls("SubmitTasks")) == 1
    assert len(leader.calls("SubmitTasks")) == 1
    assert len(follower.calls("GetTask")) == 0  # sticks with the leader afterwards


def test_commit_unknown_is_retried_with_the_same_request_id(leader: FakeMaster) -> None:
    leader.fail_next("SubmitTasks", Code.UNKNOWN, "commit unknown: lost leadership", apply=True)
    with Client(leader.address, retry=FAST) as client:
        ids = client.submit_many([TaskSpec("shell:a"), TaskSpec("shell:b")])
    first, retry = request_ids(leader)
    assert first == retry and len(first) == 32
    assert ids == ["1", "2"]
    assert len(leader.calls("ListTasks")) == 0
    assert [c.failed for c in leader.calls("SubmitTasks")] == [True, False]


@pytest.mark.parametrize(
    "code", [Code.ABORTED, Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED]
)
def test_retryable_codes(leader: FakeMaster, code: grpc.StatusCode) -> None:
    leader.fail_next("SubmitTasks", code, "try again", times=2)
    with Client(leader.address, retry=FAST) as client:
        assert client.submit("shell:true") == "1"
    assert len(set(request_ids(leader))) == 1
    assert len(request_ids(leader)) == 3


def test_each_logical_call_has_its_own_request_id(leader: FakeMaster) -> None:
    with Client(leader.address, retry=FAST) as client:
        client.submit("shell:a")
        client.submit("shell:b")
        client.cancel("1")
        client.reprioritize("2", "high")
    ids = request_ids(leader) + request_ids(leader, "Cancel") + request_ids(leader, "Reprioritize")
    assert len(set(ids)) == 4


def test_a_given_request_id_makes_a_repeat_harmless(leader: FakeMaster) -> None:
    with Client(leader.address, retry=FAST) as client:
        first = client.submit("shell:a", request_id="my-request-1")
        again = client.submit("shell:a", request_id="my-request-1")
    assert first == again
    assert request_ids(leader) == ["my-request-1", "my-request-1"]


def test_a_dead_master_is_skipped(leader: FakeMaster) -> None:
    with Client([dead_address(), leader.address], retry=FAST) as client:
        assert client.cluster_status().node_id == "n1"


def test_unavailable_after_the_deadline() -> None:
    policy = RetryPolicy(deadline=0.5, initial_backoff=0.01, max_backoff=0.05)
    start = time.monotonic()
    with (
        Client([dead_address(), dead_address()], retry=policy) as client,
        pytest.raises(UnavailableError, match=r"no master could serve the call within 0\.5s"),
    ):
        client.submit("shell:true")
    assert time.monotonic() - start < 3.0


def test_final_errors_are_not_retried(leader: FakeMaster) -> None:
    leader.fail_next("SubmitTasks", Code.INVALID_ARGUMENT, "tasks[0].group: no such group")
    with Client(leader.address, retry=FAST) as client:
        with pytest.raises(InvalidArgumentError) as info:
            client.submit("shell:true")
        assert info.value.field == "tasks[0].group"
        with pytest.raises(NotFoundError):
            client.get("404")
    assert len(leader.calls("SubmitTasks")) == 1
    assert len(leader.calls("GetTask")) == 1


def test_bad_input_never_reaches_the_server(leader: FakeMaster) -> None:
    with Client(leader.address, retry=FAST) as client:
        with pytest.raises(InvalidArgumentError) as info:
            client.submit("echo hi")
        assert info.value.field == "tasks[0].command"
        with pytest.raises(InvalidArgumentError, match=r"tasks\[0\]\.priority: unknown level"):
            client.submit("shell:true", priority="urgent")
    assert leader.calls() == []


def test_token_is_sent(leader: FakeMaster) -> None:
    with Client(leader.address, retry=FAST, token="s3cret") as client:
        client.cluster_status()
    assert leader.calls("Status")[0].metadata["authorization"] == "Bearer s3cret"


def test_watch_reconnects_after_a_failure(leader: FakeMaster) -> None:
    leader.fail_next("WatchTasks", Code.UNAVAILABLE, "restarting")
    with Client(leader.address, retry=FAST) as client:
        task_id = client.submit("shell:true")
        events = client.watch([task_id])
        first = next(events)
        assert first.initial and first.task.id == task_id
        events.close()
    assert len(leader.calls("WatchTasks")) == 2


async def test_async_follows_the_leader_with_one_request_id(
    leader: FakeMaster, follower: FakeMaster
) -> None:
    leader.fail_next("SubmitTasks", Code.UNKNOWN, "commit unknown", apply=True)
    async with AsyncClient([dead_address(), follower.address], retry=FAST) as client:
        task_id = await client.submit("shell:true", priority=1)
        assert (await client.get(task_id)).priority.name == "HIGH"
    assert len(set(request_ids(leader) + request_ids(follower))) == 1
    assert len(request_ids(leader)) == 2


async def test_async_errors(leader: FakeMaster) -> None:
    policy = RetryPolicy(deadline=0.3, initial_backoff=0.01, max_backoff=0.02)
    async with AsyncClient(leader.address, retry=policy) as client:
        with pytest.raises(NotFoundError):
            await client.get("nope")
        leader.fail_next("Explain", Code.UNAVAILABLE, "no leader", times=None)
        await client.submit("shell:true")
        with pytest.raises(UnavailableError):
            await client.explain("1")
