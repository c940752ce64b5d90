from __future__ import annotations

import pytest

from agentflow.common.failpoints import FailpointError, Failpoints


async def test_error_fires_only_on_the_nth_hit() -> None:
    fp = Failpoints("raft.after_persist=error@3; raft.before_send=sleep(1ms)")
    assert fp
    await fp.hit("raft.after_persist")
    await fp.hit("raft.after_persist")
    with pytest.raises(FailpointError, match=r"raft\.after_persist"):
        await fp.hit("raft.after_persist")
    await fp.hit("raft.after_persist")  # past the 3rd: quiet again
    await fp.hit("raft.before_send")
    await fp.hit("not.configured")


def test_empty_spec_is_off() -> None:
    assert not Failpoints("")


@pytest.mark.parametrize("spec", ["raft.x", "raft.x=explode", "=crash", "raft.x=sleep(5m)"])
def test_bad_spec_names_the_variable_and_item(spec: str) -> None:
    with pytest.raises(ValueError, match="AGENTFLOW_FAILPOINTS: cannot parse"):
        Failpoints(spec)
