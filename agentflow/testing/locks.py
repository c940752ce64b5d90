"""The checker of lock histories from real runs: did the locks keep their promises?

Observers record, in one clock (the test's), per lock:
- Acquired: an owner was told it holds the lock with a token, at t_ms;
- Released / Lost: that lease ended, at t_ms (given back, or the owner learned or
  decided that its lease ran out: its own end of the lease);
- Write: the protected resource accepted a write from (owner, token) at t_ms.

`check_lock_history` returns every broken promise in words (empty: none): two leases
of one lock held at once (by their holders' own intervals; one ending exactly when
the next starts is not an overlap), a token not above every earlier token of its
lock, a write accepted with a token lower than one the resource had already accepted
(the fencing the tokens exist for), and events naming a lease nobody was granted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

__all__ = ["Acquired", "Event", "Lost", "Released", "Write", "check_lock_history"]


@dataclass(frozen=True)
class Acquired:
    owner: str
    token: int
    t_ms: float
    lock: str = "lock"


@dataclass(frozen=True)
class Released:
    owner: str
    token: int
    t_ms: float
    lock: str = "lock"


@dataclass(frozen=True)
class Lost:
    owner: str
    token: int
    t_ms: float
    lock: str = "lock"


@dataclass(frozen=True)
class Write:
    owner: str
    token: int
    t_ms: float
    lock: str = "lock"


Event = Acquired | Released | Lost | Write


@dataclass
class _Lease:
    lock: str
    owner: str
    token: int
    start: float
    end: float | None = None  # None: still held when the history ends

    def __str__(self) -> str:
        until = "the end" if self.end is None else f"{self.end:g} ms"
        return f"{self.owner} (token {self.token}, {self.start:g} ms to {until})"


def check_lock_history(events: Iterable[Event]) -> list[str]:
    events = list(events)
    problems: list[str] = []
    leases = _leases(events, problems)
    by_lock: dict[str, list[_Lease]] = {}
    for lease in leases:
        by_lock.setdefault(lease.lock, []).append(lease)
    for lock, held in by_lock.items():
        problems += _overlaps(lock, held)
        problems += _tokens_rise(lock, held)
    problems += _writes_fenced(events, {(x.lock, x.owner, x.token) for x in leases})
    return problems


def _leases(events: Sequence[Event], problems: list[str]) -> list[_Lease]:
    """Each Acquired paired with the end of that same lease, in event order."""
    leases: list[_Lease] = []
    open_: dict[tuple[str, str, int], _Lease] = {}
    seen: set[tuple[str, str, int]] = set()
    for e in events:
        key = (e.lock, e.owner, e.token)
        if isinstance(e, Acquired):
            if key in seen:
                problems.append(
                    f"lock {e.lock}: {e.owner} acquired token {e.token} twice "
                    f"(again at {e.t_ms:g} ms)"
                )
                continue
            seen.add(key)
            open_[key] = lease = _Lease(e.lock, e.owner, e.token, e.t_ms)
            leases.append(lease)
        elif isinstance(e, Released | Lost):
            lease_or_none = open_.pop(key, None)
            if lease_or_none is None:
                what = "released" if isinstance(e, Released) else "lost"
                problems.append(
                    f"lock {e.lock}: {e.owner} {what} token {e.token} at {e.t_ms:g} ms, "
                    "a lease it did not hold"
                )
                continue
            lease_or_none.end = e.t_ms
    return leases


def _overlaps(lock: str, leases: list[_Lease]) -> list[str]:
    problems = []
    ordered = sorted(leases, key=lambda x: x.start)
    active: list[_Lease] = []
    for lease in ordered:
        # Sweep: the leases still running when this one starts overlap it.
        active = [a for a in active if a.end is None or a.end > lease.start]
        for a in active:
            if lease.end is None or lease.end > a.start:
                problems.append(f"lock {lock}: {a} and {lease} held it at once")
        active.append(lease)
    return problems


def _tokens_rise(lock: str, leases: list[_Lease]) -> list[str]:
    problems = []
    ordered = sorted(leases, key=lambda x: x.start)  # stable: event order on ties
    for before, after in pairwise(ordered):
        if after.token <= before.token:
            problems.append(
                f"lock {lock}: token {after.token} of {after} is not above "
                f"token {before.token} of {before}, granted earlier"
            )
    return problems


def _writes_fenced(events: Sequence[Event], granted: set[tuple[str, str, int]]) -> list[str]:
    problems = []
    writes = sorted((e for e in events if isinstance(e, Write)), key=lambda w: w.t_ms)
    highest: dict[str, Write] = {}
    for w in writes:
        if (w.lock, w.owner, w.token) not in granted:
            problems.append(
                f"lock {w.lock}: a write by {w.owner} at {w.t_ms:g} ms carries token "
                f"{w.token}, a lease it was never granted"
            )
        top = highest.get(w.lock)
        if top is not None and w.token < top.token:
            problems.append(
                f"lock {w.lock}: a write by {w.owner} with token {w.token} at {w.t_ms:g} ms "
                f"was accepted after one by {top.owner} with token {top.token} "
                f"at {top.t_ms:g} ms"
            )
        if top is None or w.token > top.token:
            highest[w.lock] = w
    return problems
