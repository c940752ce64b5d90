"""Raft safety properties (paper Figure 3) as checkers the simulator runs after
every step (TESTING.md layer 4). Each raises `InvariantViolation` naming the
property and what broke it. They work on plain values so tests can feed them
hand-made bad histories.

The incremental checkers keep a history across the whole run; the standalone
functions check one snapshot of state and are also used as a cross-check.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agentflow.raft.log import RaftLog
from agentflow.raft.types import NONE, Entry, EntryType, HardState, NodeId

ELECTION_SAFETY = "election-safety"
LEADER_APPEND_ONLY = "leader-append-only"
LOG_MATCHING = "log-matching"
LEADER_COMPLETENESS = "leader-completeness"
STATE_MACHINE_SAFETY = "state-machine-safety"
DURABLE_STATE = "durable-state"
PERSIST_BEFORE_SEND = "persist-before-send"
LINEARIZABLE_READ = "linearizable-read"
ACKNOWLEDGED_WRITE = "acknowledged-write"
MEMBERSHIP = "membership"
LIVENESS = "liveness"
EXCEPTION = "exception"


class InvariantViolation(Exception):
    """A safety or liveness property failed; `invariant` is one of the names above."""

    def __init__(self, invariant: str, detail: str) -> None:
        self.invariant = invariant
        self.detail = detail
        super().__init__(f"{invariant}: {detail}")


# -- Election Safety -------------------------------------------------------------


class ElectionRecord:
    """At most one leader per term, over the whole run (crashes included)."""

    def __init__(self) -> None:
        self.leaders: dict[int, NodeId] = {}

    def observe(self, term: int, node: NodeId) -> bool:
        """Record that `node` leads `term`; True the first time it is seen."""
        known = self.leaders.get(term)
        if known is None:
            self.leaders[term] = node
            return True
        if known != node:
            raise InvariantViolation(
                ELECTION_SAFETY, f"term {term} has two leaders: {known} and {node}"
            )
        return False


# -- Leader Append-Only ------------------------------------------------------------


@dataclass(slots=True)
class _LeaderMark:
    term: int
    incarnation: int
    last_index: int
    last_term: int


class LeaderAppendOnly:
    """While a node leads a term it never removes or overwrites its entries.

    Checked step by step: the entry that was last when last looked at is still
    there with the same term (or compacted), and the log did not shrink."""

    def __init__(self) -> None:
        self._marks: dict[NodeId, _LeaderMark] = {}

    def observe(self, node: NodeId, term: int, incarnation: int, log: RaftLog) -> None:
        mark = self._marks.get(node)
        last = log.last_index()
        if mark is not None and mark.term == term and mark.incarnation == incarnation:
            if last < mark.last_index:
                raise InvariantViolation(
                    LEADER_APPEND_ONLY,
                    f"leader {node} of term {term}: last index went {mark.last_index} -> {last}",
                )
            t = log.term(mark.last_index)
            if t is not None and t != mark.last_term:
                raise InvariantViolation(
                    LEADER_APPEND_ONLY,
                    f"leader {node} of term {term}: entry {mark.last_index} changed term "
                    f"{mark.last_term} -> {t}",
                )
        self._marks[node] = _LeaderMark(term, incarnation, last, log.last_term())

    def forget(self, node: NodeId) -> None:
        self._marks.pop(node, None)


# -- Log Matching ------------------------------------------------------------------


def check_log_matching(logs: Mapping[NodeId, RaftLog]) -> None:
    """Pairwise over the overlap of in-memory logs: if two logs hold an entry with
    the same index and term, they are identical in every entry up to it."""
    names = sorted(logs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            _check_pair(a, logs[a], b, logs[b])


def _check_pair(na: NodeId, a: RaftLog, nb: NodeId, b: RaftLog) -> None:
    lo = max(a.base_index, b.base_index) + 1
    hi = min(a.last_index(), b.last_index())
    # The highest index in the overlap where both logs have the same term.
    top = hi
    while top >= lo and a.term(top) != b.term(top):
        top -= 1
    if top < lo:
        return
    off_a, off_b = a.base_index + 1, b.base_index + 1
    for idx in range(top, lo - 1, -1):
        ea, eb = a.entries[idx - off_a], b.entries[idx - off_b]
        if ea.term != eb.term or ea.type != eb.type or ea.data != eb.data:
            raise InvariantViolation(
                LOG_MATCHING,
                f"{na} and {nb} agree on entry {top} (term {a.term(top)}) but differ at "
                f"{idx}: {_show(ea)} vs {_show(eb)}",
            )


class LogMatchingIndex:
    """Incremental Log Matching over the whole run: an (index, term) pair names one
    entry forever, with one predecessor term and one payload. If every log agrees
    with this map, any two logs sharing an (index, term) have identical prefixes."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], tuple[int, EntryType, bytes, NodeId]] = {}

    def observe(self, node: NodeId, prev_term: int, e: Entry) -> None:
        key = (e.index, e.term)
        got = self._seen.get(key)
        if got is None:
            self._seen[key] = (prev_term, e.type, e.data, node)
            return
        if got[0] != prev_term:
            raise InvariantViolation(
                LOG_MATCHING,
                f"entry {e.index} term {e.term}: preceded by term {got[0]} on {got[3]} "
                f"but by term {prev_term} on {node}",
            )
        if got[1] != e.type or got[2] != e.data:
            raise InvariantViolation(
                LOG_MATCHING,
                f"entry {e.index} term {e.term}: payload {got[2]!r} on {got[3]} "
                f"but {e.data!r} on {node}",
            )

    def observe_log(self, node: NodeId, log: RaftLog, from_index: int) -> None:
        """Check every entry of `log` at or after `from_index`."""
        start = max(from_index, log.base_index + 1)
        prev = log.term(start - 1)
        for e in log.entries[start - log.base_index - 1 :]:
            self.observe(node, prev if prev is not None else 0, e)
            prev = e.term


# -- State Machine Safety ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppliedRecord:
    term: int
    data: bytes
    digest: bytes  # of the whole applied sequence through this entry
    node: NodeId  # the first node seen applying it


class AppliedHistory:
    """The applied sequence every node must follow: the first node to apply an
    index fixes what it is; every other node must apply the same (index, term,
    data) there. Together with each node applying contiguously, applied
    sequences are prefixes of each other. An entry in here is committed."""

    def __init__(self) -> None:
        self.records: dict[int, AppliedRecord] = {}
        self.max_index = 0

    def observe(self, node: NodeId, index: int, term: int, data: bytes, digest: bytes) -> bool:
        """Record an apply; True if this is the first time anyone applied `index`."""
        rec = self.records.get(index)
        if rec is None:
            self.records[index] = AppliedRecord(term, data, digest, node)
            self.max_index = max(self.max_index, index)
            return True
        if rec.term != term or rec.data != data:
            raise InvariantViolation(
                STATE_MACHINE_SAFETY,
                f"index {index}: {rec.node} applied (term {rec.term}, {rec.data!r}) but "
                f"{node} applied (term {term}, {data!r})",
            )
        if rec.digest != digest:
            raise InvariantViolation(
                STATE_MACHINE_SAFETY,
                f"index {index}: {node}'s applied sequence differs from {rec.node}'s "
                "in an earlier entry",
            )
        return False

    def check_snapshot(self, node: NodeId, index: int, digest: bytes) -> None:
        """A state machine image installed at `index` must be what was applied."""
        if index == 0:
            return
        rec = self.records.get(index)
        if rec is None:
            raise InvariantViolation(
                STATE_MACHINE_SAFETY, f"{node} installed a snapshot at {index}, never applied"
            )
        if rec.digest != digest:
            raise InvariantViolation(
                STATE_MACHINE_SAFETY,
                f"{node} installed a snapshot at {index} whose state differs from {rec.node}'s",
            )


def check_applied_prefixes(applied: Mapping[NodeId, Sequence[tuple[int, int, bytes]]]) -> None:
    """Standalone State Machine Safety: each node's applied (index, term, data)
    sequence is contiguous, and any two are prefixes of each other."""
    names = sorted(applied)
    for n in names:
        seq = applied[n]
        for k in range(1, len(seq)):
            if seq[k][0] != seq[k - 1][0] + 1:
                raise InvariantViolation(
                    STATE_MACHINE_SAFETY,
                    f"{n} applied {seq[k][0]} right after {seq[k - 1][0]}",
                )
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            sa, sb = applied[a], applied[b]
            if not sa or not sb:
                continue
            if sa[0][0] != sb[0][0]:
                raise InvariantViolation(
                    STATE_MACHINE_SAFETY,
                    f"{a} and {b} start applying at {sa[0][0]} and {sb[0][0]}",
                )
            for x, y in zip(sa, sb, strict=False):
                if x != y:
                    raise InvariantViolation(
                        STATE_MACHINE_SAFETY,
                        f"index {x[0]}: {a} applied (term {x[1]}, {x[2]!r}) but {b} "
                        f"applied (term {y[1]}, {y[2]!r})",
                    )


# -- Leader Completeness -----------------------------------------------------------


class CommitRecord:
    """Every entry known committed, with the term of the leader that committed it.

    Commit indexes only advance at leaders, so watching every leader's commit
    index after every step sees each entry the moment it is committed, and in
    which term. Leader Completeness (§5.4.3): an entry committed in term C is in
    the log of every leader of a term after C. Both orders are checked: a new
    leader against everything committed in earlier terms, and a new commit
    against every current leader of a later term (a stale leader can still
    commit once later ones exist, when old acknowledgements arrive late)."""

    def __init__(self) -> None:
        self.entry_term: list[int] = [0]  # by index; [0] is a sentinel
        self.commit_term: list[int] = [0]

    @property
    def max_index(self) -> int:
        return len(self.entry_term) - 1

    def add(self, node: NodeId, leader_term: int, log: RaftLog) -> range:
        """`node`, leader of `leader_term`, has committed up to `log.committed`;
        returns the indexes that were not known committed before."""
        new = range(self.max_index + 1, log.committed + 1)
        for i in new:
            t = log.term(i)
            if t is None:
                raise InvariantViolation(
                    LEADER_COMPLETENESS,
                    f"leader {node} of term {leader_term} committed {i} but no longer holds it",
                )
            self.entry_term.append(t)
            self.commit_term.append(leader_term)
        return new

    def check_leader(
        self, node: NodeId, term: int, log: RaftLog, lo: int = 1, hi: int | None = None
    ) -> None:
        """Leader `node` of `term` holds every entry in [lo, hi] committed in an
        earlier term (entries under its compaction point count as held)."""
        hi = self.max_index if hi is None else hi
        for i in range(max(lo, log.base_index, 1), hi + 1):
            if self.commit_term[i] >= term:
                continue
            t = log.term(i)
            if t != self.entry_term[i]:
                held = "nothing" if t is None else f"term {t}"
                raise InvariantViolation(
                    LEADER_COMPLETENESS,
                    f"leader {node} of term {term} holds {held} at {i}, but an entry of term "
                    f"{self.entry_term[i]} was committed there in term {self.commit_term[i]}",
                )


# -- durable hard state ------------------------------------------------------------


class DurableStateMonitor:
    """Durable term never decreases, and a vote persisted in a term never changes
    within that term, across crashes and restarts."""

    def __init__(self) -> None:
        self._last: dict[NodeId, HardState] = {}

    def observe(self, node: NodeId, hs: HardState) -> None:
        prev = self._last.get(node)
        if prev is not None:
            if hs.term < prev.term:
                raise InvariantViolation(
                    DURABLE_STATE, f"{node}: durable term went {prev.term} -> {hs.term}"
                )
            if hs.term == prev.term and prev.vote != NONE and hs.vote != prev.vote:
                raise InvariantViolation(
                    DURABLE_STATE,
                    f"{node}: durable vote in term {hs.term} changed "
                    f"{prev.vote} -> {hs.vote or '(none)'}",
                )
        self._last[node] = hs


def _show(e: Entry) -> str:
    return f"(term {e.term}, {e.type.name}, {e.data!r})"


class LogWatcher:
    """Feeds a `LogMatchingIndex` only what changed in each node's log since the
    last look, so Log Matching can be checked after every step cheaply."""

    def __init__(self, index: LogMatchingIndex) -> None:
        self.index = index
        self._shadow: dict[NodeId, tuple[int, list[Entry]]] = {}

    def observe(self, node: NodeId, log: RaftLog) -> None:
        entries = log.entries
        prev = self._shadow.get(node)
        if prev is None:
            start = log.base_index + 1
        else:
            pbase, pent = prev
            if (
                pbase == log.base_index
                and len(pent) == len(entries)
                and (not entries or pent[-1] is entries[-1])
            ):
                return
            start = _first_change(pbase, pent, log.base_index, entries)
        self.index.observe_log(node, log, start)
        self._shadow[node] = (log.base_index, list(entries))

    def forget(self, node: NodeId) -> None:
        self._shadow.pop(node, None)


def _first_change(pbase: int, old: list[Entry], base: int, cur: list[Entry]) -> int:
    """First index at which `cur` holds an entry object `old` did not hold there."""
    if base < pbase:
        return base + 1
    lo = max(pbase, base) + 1
    hi = min(pbase + len(old), base + len(cur))
    if lo > hi:
        return base + 1
    a = old[lo - pbase - 1 : hi - pbase]
    b = cur[lo - base - 1 : hi - base]
    if all(map(operator.is_, a, b)):
        return hi + 1
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        if x is not y:
            return lo + k
    return hi + 1
