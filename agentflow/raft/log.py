"""The in-memory Raft log: every entry after the last compaction point.

Entries are kept in memory between compactions (the host snapshots often enough
to bound it). The log tracks three positions besides its bounds:
`committed` (known replicated on a majority), `applied` (handed to the state
machine) and `unstable_from` (first index not yet given to the host to persist).
"""

from __future__ import annotations

from collections.abc import Sequence

from agentflow.raft.types import Entry, Snapshot, SnapshotMeta


class LogError(Exception):
    """A request that would break the log's own invariants: a bug in the caller."""


class RaftLog:
    def __init__(self, snapshot_meta: SnapshotMeta | None = None) -> None:
        meta = snapshot_meta or SnapshotMeta()
        # Index and term of the entry just before `entries[0]`: the compaction point.
        self.base_index = meta.index
        self.base_term = meta.term
        self.entries: list[Entry] = []
        self.committed = meta.index
        self.applied = meta.index
        self.unstable_from = meta.index + 1
        # A snapshot received from the leader that the host has not yet persisted.
        self.pending_snapshot: Snapshot | None = None

    # -- bounds and lookups ----------------------------------------------------

    def first_index(self) -> int:
        return self.base_index + 1

    def last_index(self) -> int:
        return self.base_index + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.base_term

    def term(self, index: int) -> int | None:
        """Term of the entry at `index`, or None if compacted away or not yet written."""
        if index == self.base_index:
            return self.base_term
        if index < self.base_index or index > self.last_index():
            return None
        return self.entries[index - self.base_index - 1].term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a candidate's log at least as up to date as ours?"""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def slice(
        self, lo: int, hi: int, max_count: int | None = None, max_bytes: int | None = None
    ) -> list[Entry]:
        """Entries with lo <= index < hi, at most `max_count` of them and no more data
        than `max_bytes` (but at least one entry). Raises if lo was compacted away."""
        if lo <= self.base_index:
            raise LogError(f"entry {lo} is compacted (first index {self.first_index()})")
        hi = min(hi, self.last_index() + 1)
        if max_count is not None:
            hi = min(hi, lo + max_count)
        if lo >= hi:
            return []
        off = self.base_index + 1
        if max_bytes is not None:
            size = 0
            for i in range(lo, hi):
                size += len(self.entries[i - off].data)
                if size > max_bytes and i > lo:
                    hi = i
                    break
        return self.entries[lo - off : hi - off]

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest index <= `index` whose entry term is <= `term` (etcd's probe
        optimisation: skips a whole diverging term per round trip)."""
        index = min(index, self.last_index())
        while index > self.base_index:
            t = self.term(index)
            if t is not None and t <= term:
                return index
            index -= 1
        return index

    # -- mutation --------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> int:
        """Append entries that directly follow the last one (leader path)."""
        if entries:
            if entries[0].index != self.last_index() + 1:
                raise LogError(f"append at {entries[0].index} after last {self.last_index()}")
            self.entries.extend(entries)
        return self.last_index()

    def maybe_append(
        self, prev_index: int, prev_term: int, committed: int, entries: Sequence[Entry]
    ) -> int | None:
        """Follower path of AppendEntries. Returns the last index known to match the
        leader, or None when (prev_index, prev_term) does not match our log."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self._find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise LogError(f"entry {conflict} conflicts with committed {self.committed}")
            start = conflict - (prev_index + 1)
            self._truncate_and_append(entries[start:])
        self.commit_to(min(committed, last_new))
        return last_new

    def _find_conflict(self, entries: Sequence[Entry]) -> int:
        """First index whose term differs from ours, or is new; 0 if all present."""
        for e in entries:
            if e.index <= self.base_index:
                continue  # already covered by our snapshot, so committed and equal
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def _truncate_and_append(self, entries: Sequence[Entry]) -> None:
        first = entries[0].index
        if first <= self.base_index:
            raise LogError(f"cannot rewrite compacted entry {first}")
        del self.entries[first - self.base_index - 1 :]
        self.entries.extend(entries)
        self.unstable_from = min(self.unstable_from, first)

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise LogError(f"commit {index} beyond last index {self.last_index()}")
            self.committed = index

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a snapshot received from the leader."""
        meta = snapshot.meta
        self.base_index, self.base_term = meta.index, meta.term
        self.entries = []
        self.committed = meta.index
        self.unstable_from = meta.index + 1
        self.pending_snapshot = snapshot

    def compact(self, index: int) -> None:
        """Drop entries up to `index` (already in a local snapshot)."""
        if index <= self.base_index:
            return
        if index > self.applied:
            raise LogError(f"compact {index} beyond applied {self.applied}")
        term = self.term(index)
        assert term is not None
        del self.entries[: index - self.base_index]
        self.base_index, self.base_term = index, term

    # -- host hand-off ---------------------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        if self.unstable_from > self.last_index():
            return []
        return self.entries[self.unstable_from - self.base_index - 1 :]

    def next_committed(self) -> list[Entry]:
        """Committed entries not yet applied (never beyond what the host persists
        in the same Ready, since the host persists before it applies)."""
        lo = max(self.applied, self.base_index) + 1
        if lo > self.committed:
            return []
        return self.slice(lo, self.committed + 1)

    def stable_to(self, index: int) -> None:
        self.unstable_from = max(self.unstable_from, index + 1)

    def applied_to(self, index: int) -> None:
        if index > self.committed:
            raise LogError(f"applied {index} beyond committed {self.committed}")
        self.applied = max(self.applied, index)
