"""The lock history checker passes good histories and names each kind of violation."""

from __future__ import annotations

from agentflow.testing.locks import Acquired, Event, Lost, Released, Write, check_lock_history


def good() -> list[Event]:
    return [
        Acquired("a", 5, 0),
        Write("a", 5, 10),
        Released("a", 5, 100),
        Acquired("b", 9, 100),  # starts exactly when a's lease ended: no overlap
        Write("b", 9, 150),
        Lost("b", 9, 300),
        Write("b", 9, 310),  # stale but still the highest token: fencing allows it
        Acquired("c", 12, 400),  # still held when the history ends
        Write("c", 12, 500),
        Acquired("a", 3, 50, lock="other"),  # another lock's tokens are its own
        Released("a", 3, 60, lock="other"),
    ]


def test_a_good_history_passes() -> None:
    assert check_lock_history(good()) == []
    assert check_lock_history([]) == []


def test_overlapping_leases_are_reported() -> None:
    events = [Acquired("a", 5, 0), Acquired("b", 9, 50), Released("a", 5, 100)]
    (problem,) = check_lock_history(events)
    assert "held it at once" in problem and "a (token 5" in problem and "b (token 9" in problem


def test_a_lease_never_ended_overlaps_every_later_one() -> None:
    events = [Acquired("a", 5, 0), Acquired("b", 9, 500), Released("b", 9, 600)]
    assert [p for p in check_lock_history(events) if "at once" in p]


def test_tokens_that_do_not_rise_are_reported() -> None:
    events = [
        Acquired("a", 9, 0),
        Released("a", 9, 10),
        Acquired("b", 9, 20),  # the same token again
        Released("b", 9, 30),
        Acquired("c", 4, 40),  # a lower one
        Released("c", 4, 50),
    ]
    problems = check_lock_history(events)
    assert len(problems) == 2, problems
    assert all("is not above" in p for p in problems)


def test_a_write_with_a_lower_token_than_one_accepted_is_reported() -> None:
    events = [
        Acquired("a", 5, 0),
        Lost("a", 5, 100),
        Acquired("b", 9, 100),
        Write("b", 9, 120),
        Write("a", 5, 130),  # the old holder's late write got through
    ]
    (problem,) = check_lock_history(events)
    assert "token 5" in problem and "after one by b with token 9" in problem


def test_writes_are_judged_in_time_order_not_list_order() -> None:
    events = [
        Acquired("a", 5, 0),
        Released("a", 5, 100),
        Acquired("b", 9, 100),
        Write("b", 9, 120),
        Write("a", 5, 50),  # recorded late, but happened first: fine
    ]
    assert check_lock_history(events) == []


def test_events_naming_a_lease_nobody_was_granted_are_reported() -> None:
    events = [
        Acquired("a", 5, 0),
        Acquired("a", 5, 10),
        Released("b", 5, 20),
        Write("z", 7, 30),
    ]
    problems = check_lock_history(events)
    assert len(problems) == 3, problems
    assert "twice" in problems[0]
    assert "did not hold" in problems[1]
    assert "never granted" in problems[2]
