"""The edge check (agentflow/raft/guard.py) and the storage's last defence."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentflow.raft.guard import LIMIT, Membership, Refusal, RefusalLog, refusal
from agentflow.raft.storage import RaftStorage
from agentflow.raft.types import (
    Entry,
    HardState,
    Message,
    MessageType,
    RaftError,
    Ready,
)

VIEW = Membership(("n1", "n2", "n3"), is_member=True, term=5, leader="n1")


def kind(m: Message, peer: str | None = "n1", view: Membership = VIEW) -> Refusal | None:
    bad = refusal(m, "n2", peer, view)
    return None if bad is None else bad[0]


def append(**kw: object) -> Message:
    m = Message(MessageType.APPEND, "n2", "n1", term=5, index=3, log_term=4)
    m.entries = [Entry(5, 4), Entry(5, 5)]
    for k, v in kw.items():
        setattr(m, k, v)
    return m


def test_an_honest_append_passes() -> None:
    assert kind(append()) is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (Message(MessageType.HEARTBEAT, "n2", "n1", term=(1 << 64) - 1), Refusal.OUT_OF_RANGE),
        (Message(MessageType.VOTE, "n2", "n1", term=6, index=LIMIT), Refusal.OUT_OF_RANGE),
        (append(entries=[Entry(LIMIT, 4)]), Refusal.OUT_OF_RANGE),
        (append(to="n3"), Refusal.MISADDRESSED),
        (append(entries=[Entry(5, 7)]), Refusal.MALFORMED),
        (append(entries=[Entry(6, 4)]), Refusal.MALFORMED),
        (append(entries=[Entry(3, 4)]), Refusal.MALFORMED),
        (
            Message(MessageType.HEARTBEAT, "n2", "n1", term=5, entries=[Entry(5, 1)]),
            Refusal.MALFORMED,
        ),
        (append(frm="n2"), Refusal.MALFORMED),
    ],
)
def test_out_of_range_and_malformed_are_refused(message: Message, expected: Refusal) -> None:
    assert kind(message, peer=message.frm) is expected


def test_sender_must_match_the_connection() -> None:
    assert kind(append(), peer="n3") is Refusal.SENDER_MISMATCH
    assert kind(append(), peer=None) is Refusal.SENDER_MISMATCH


def test_non_members_are_refused_but_a_joining_node_accepts_anyone() -> None:
    m = append(frm="intruder", term=6, entries=[Entry(6, 4)])
    assert kind(m, peer="intruder") is Refusal.NON_MEMBER
    joining = Membership((), is_member=False, term=0, leader="")
    assert kind(m, peer="intruder", view=joining) is None


def test_a_second_leader_in_the_same_term_is_refused() -> None:
    assert kind(append(frm="n3"), peer="n3") is Refusal.SECOND_LEADER
    # A higher term is a new election, not a second leader.
    assert kind(append(frm="n3", term=6), peer="n3") is None


def test_refusal_log_is_rate_limited() -> None:
    rl = RefusalLog(interval=10.0)
    assert rl.record(Refusal.NON_MEMBER, 0.0) == 1
    assert rl.record(Refusal.NON_MEMBER, 1.0) == 0
    assert rl.record(Refusal.NON_MEMBER, 2.0) == 0
    assert rl.record(Refusal.NON_MEMBER, 11.0) == 3
    assert rl.counts[Refusal.NON_MEMBER] == 4


async def test_storage_refuses_an_out_of_range_term(tmp_path: Path) -> None:
    st = await RaftStorage.open(tmp_path)
    try:
        with pytest.raises(RaftError, match="hard state term"):
            await st.save(Ready(hard_state=HardState(term=LIMIT)))
        with pytest.raises(RaftError, match="entry term"):
            await st.save(Ready(entries=[Entry(LIMIT, 1)]))
        assert await st.is_empty()
    finally:
        await st.close()
