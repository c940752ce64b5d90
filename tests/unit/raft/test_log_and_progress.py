"""Edge cases of the in-memory Raft log (`log.py`) and the leader's per-follower
progress (`progress.py`)."""

from __future__ import annotations

import pytest

from agentflow.raft.log import LogError, RaftLog
from agentflow.raft.progress import Progress, ProgressState
from agentflow.raft.types import ConfState, Entry, Snapshot, SnapshotMeta


def log_with(terms: list[int], base: tuple[int, int] = (0, 0)) -> RaftLog:
    """A stable log: a compaction point at `base` (index, term), then one entry per
    term in `terms`."""
    index, term = base
    log = RaftLog(SnapshotMeta(index, term, ConfState()) if index else None)
    log.append([Entry(t, index + i) for i, t in enumerate(terms, start=1)])
    log.stable_to(log.last_index())
    return log


def pairs(entries: list[Entry]) -> list[tuple[int, int]]:
    return [(e.term, e.index) for e in entries]


# -- RaftLog: lookups ----------------------------------------------------------------


def test_empty_log_bounds() -> None:
    log = RaftLog()
    assert (log.first_index(), log.last_index(), log.last_term()) == (1, 0, 0)
    assert log.term(0) == 0
    assert log.term(1) is None
    assert log.unstable_entries() == []
    assert log.next_committed() == []


def test_term_across_compaction_point() -> None:
    log = log_with([3, 3, 4], base=(5, 2))
    assert (log.first_index(), log.last_index(), log.last_term()) == (6, 8, 4)
    assert log.term(4) is None  # compacted
    assert log.term(5) == 2  # the compaction point itself is known
    assert [log.term(i) for i in (6, 7, 8)] == [3, 3, 4]
    assert log.term(9) is None
    assert log.match_term(5, 2) and not log.match_term(5, 3)


@pytest.mark.parametrize(
    ("last_index", "last_term", "up_to_date"),
    [
        (3, 2, True),  # equal
        (4, 2, True),  # same term, longer
        (2, 2, False),  # same term, shorter
        (1, 3, True),  # later term, shorter
        (9, 1, False),  # earlier term, longer
    ],
)
def test_is_up_to_date(last_index: int, last_term: int, up_to_date: bool) -> None:
    log = log_with([1, 2, 2])
    assert log.is_up_to_date(last_index, last_term) is up_to_date


def test_slice_bounds() -> None:
    log = log_with([1, 1, 2, 2], base=(2, 1))  # entries 3..6
    assert pairs(log.slice(3, 7)) == [(1, 3), (1, 4), (2, 5), (2, 6)]
    assert pairs(log.slice(4, 100)) == [(1, 4), (2, 5), (2, 6)]  # capped at last
    assert pairs(log.slice(3, 7, max_count=2)) == [(1, 3), (1, 4)]
    assert log.slice(7, 9) == []
    assert log.slice(5, 5) == []
    with pytest.raises(LogError, match="compacted"):
        log.slice(2, 4)


def test_slice_is_bounded_in_bytes_but_never_empty() -> None:
    log = RaftLog()
    log.append([Entry(1, i, data=b"x" * size) for i, size in enumerate([4, 4, 10, 1], 1)])
    assert pairs(log.slice(1, 5, max_bytes=8)) == [(1, 1), (1, 2)]
    assert pairs(log.slice(1, 5, max_bytes=7)) == [(1, 1)]
    assert pairs(log.slice(3, 5, max_bytes=2)) == [(1, 3)]  # one too big goes alone
    assert pairs(log.slice(1, 5, max_count=3, max_bytes=100)) == [(1, 1), (1, 2), (1, 3)]


def test_transport_splits_batches_by_bytes() -> None:
    from agentflow._proto import raft_pb2 as pb
    from agentflow.raft import transport

    def msg(size: int) -> pb.Message:
        return pb.Message(entries=[pb.Entry(data=b"x" * size)])

    big = transport.MAX_BATCH_BYTES // 2
    batches = transport._batches([msg(big), msg(big), msg(10), msg(3 * big), msg(1)])
    assert [len(b) for b in batches] == [1, 2, 1, 1]
    assert transport._batches([]) == []


@pytest.mark.parametrize(
    ("index", "term", "want"),
    [
        (6, 3, 6),  # entry 6 has term 3 <= 3
        (6, 2, 4),  # skip the whole term-3 run
        (6, 1, 2),
        (6, 0, 0),  # nothing has a term <= 0: down to the compaction point
        (9, 3, 6),  # beyond the log: start at the last index
        (3, 2, 3),
    ],
)
def test_find_conflict_by_term(index: int, term: int, want: int) -> None:
    log = log_with([1, 1, 2, 2, 3, 3])
    assert log.find_conflict_by_term(index, term) == want


def test_find_conflict_by_term_stops_at_compaction_point() -> None:
    log = log_with([3, 3], base=(4, 2))
    assert log.find_conflict_by_term(6, 1) == 4
    assert log.find_conflict_by_term(2, 1) == 2  # below the log: returned as is


# -- RaftLog: appending --------------------------------------------------------------------


def test_append_must_follow_last_entry() -> None:
    log = log_with([1, 1])
    with pytest.raises(LogError, match="append at 4"):
        log.append([Entry(1, 4)])
    with pytest.raises(LogError):
        log.append([Entry(1, 2)])
    assert log.append([]) == 2
    assert log.append([Entry(2, 3)]) == 3
    assert pairs(log.unstable_entries()) == [(2, 3)]


@pytest.mark.parametrize(
    ("prev", "entries", "want_last_new", "want_log", "want_unstable"),
    [
        # prev does not match: nothing changes
        ((2, 3), [(2, 4)], None, [(1, 1), (1, 2), (2, 3)], []),
        ((4, 2), [], None, [(1, 1), (1, 2), (2, 3)], []),
        # all entries already present: nothing to persist, nothing truncated
        ((0, 0), [(1, 1), (1, 2)], 2, [(1, 1), (1, 2), (2, 3)], []),
        ((1, 1), [], 1, [(1, 1), (1, 2), (2, 3)], []),
        # new entries after the last one
        ((3, 2), [(3, 4), (3, 5)], 5, [(1, 1), (1, 2), (2, 3), (3, 4), (3, 5)], [(3, 4), (3, 5)]),
        # conflict at 3: truncate 3.. and append
        ((2, 1), [(3, 3)], 3, [(1, 1), (1, 2), (3, 3)], [(3, 3)]),
        # overlap then conflict: only the conflicting suffix is rewritten
        ((1, 1), [(1, 2), (4, 3), (4, 4)], 4, [(1, 1), (1, 2), (4, 3), (4, 4)], [(4, 3), (4, 4)]),
    ],
)
def test_maybe_append(
    prev: tuple[int, int],
    entries: list[tuple[int, int]],
    want_last_new: int | None,
    want_log: list[tuple[int, int]],
    want_unstable: list[tuple[int, int]],
) -> None:
    log = log_with([1, 1, 2])
    got = log.maybe_append(prev[0], prev[1], 0, [Entry(t, i) for t, i in entries])
    assert got == want_last_new
    assert pairs(log.entries) == want_log
    assert pairs(log.unstable_entries()) == want_unstable


def test_maybe_append_commit_is_bounded_by_last_new_entry() -> None:
    """The leader's commit index only applies to entries known to match it."""
    log = log_with([1, 1, 1, 1])
    assert log.maybe_append(1, 1, committed=4, entries=[Entry(1, 2)]) == 2
    assert log.committed == 2  # entries 3, 4 may still differ from the leader's
    assert log.maybe_append(4, 1, committed=3, entries=[]) == 4
    assert log.committed == 3
    assert log.maybe_append(4, 1, committed=1, entries=[]) == 4
    assert log.committed == 3  # never decreases


def test_maybe_append_refuses_to_rewrite_committed_entries() -> None:
    log = log_with([1, 1, 2])
    log.commit_to(3)
    with pytest.raises(LogError, match="conflicts with committed"):
        log.maybe_append(2, 1, 3, [Entry(5, 3)])


def test_maybe_append_skips_entries_covered_by_snapshot() -> None:
    log = log_with([2, 2], base=(5, 2))  # entries 6, 7
    assert log.maybe_append(5, 2, 0, [Entry(2, 6), Entry(2, 7), Entry(3, 8)]) == 8
    assert pairs(log.entries) == [(2, 6), (2, 7), (3, 8)]


def test_commit_to() -> None:
    log = log_with([1, 1])
    log.commit_to(1)
    log.commit_to(0)  # never decreases
    assert log.committed == 1
    with pytest.raises(LogError, match="beyond last index"):
        log.commit_to(3)


def test_truncation_moves_unstable_back() -> None:
    log = log_with([1, 1, 1])
    assert log.unstable_entries() == []
    log.maybe_append(1, 1, 0, [Entry(2, 2)])
    assert pairs(log.unstable_entries()) == [(2, 2)]
    assert log.last_index() == 2
    log.stable_to(2)
    assert log.unstable_entries() == []


# -- RaftLog: snapshot, compaction, hand-off --------------------------------------------------


def test_restore_replaces_everything() -> None:
    log = log_with([1, 1, 2])
    log.commit_to(2)
    snap = Snapshot(SnapshotMeta(10, 4, ConfState(("1",))))
    log.restore(snap)
    assert (log.first_index(), log.last_index(), log.last_term()) == (11, 10, 4)
    assert log.committed == 10
    assert log.pending_snapshot is snap
    assert log.unstable_entries() == []
    assert log.next_committed() == []  # the snapshot, not entries, brings the state


def test_compact() -> None:
    log = log_with([1, 1, 2, 2])
    log.commit_to(4)
    log.applied_to(3)
    with pytest.raises(LogError, match="beyond applied"):
        log.compact(4)
    log.compact(2)
    assert (log.base_index, log.base_term, log.first_index()) == (2, 1, 3)
    assert pairs(log.entries) == [(2, 3), (2, 4)]
    log.compact(1)  # already compacted: nothing happens
    assert log.base_index == 2
    assert pairs(log.next_committed()) == [(2, 4)]


def test_next_committed_and_applied_to() -> None:
    log = log_with([1, 1, 1])
    assert log.next_committed() == []
    log.commit_to(2)
    assert pairs(log.next_committed()) == [(1, 1), (1, 2)]
    log.applied_to(2)
    assert log.next_committed() == []
    with pytest.raises(LogError, match="beyond committed"):
        log.applied_to(3)
    log.applied_to(1)  # never decreases
    assert log.applied == 2


def test_log_starting_from_snapshot_meta() -> None:
    log = RaftLog(SnapshotMeta(7, 3, ConfState()))
    assert (log.committed, log.applied, log.last_index(), log.last_term()) == (7, 7, 7, 3)
    assert log.unstable_from == 8


# -- Progress ----------------------------------------------------------------------------------


def test_progress_probe_sends_one_at_a_time() -> None:
    pr = Progress(next=5)
    assert pr.state is ProgressState.PROBE
    assert not pr.is_paused(4)
    pr.sent_entries(7, 3)
    assert pr.is_paused(4)
    assert pr.next == 5  # a probe does not move next
    assert pr.maybe_update(7)
    assert not pr.is_paused(4)
    assert (pr.match, pr.next) == (7, 8)


def test_progress_replicate_pipelines_up_to_max_inflight() -> None:
    pr = Progress(match=4, next=5)
    pr.become_replicate()
    assert pr.next == 5
    pr.sent_entries(6, 2)
    pr.sent_entries(8, 2)
    assert (pr.next, list(pr.inflight)) == (9, [6, 8])
    assert pr.is_paused(2)
    pr.sent_entries(8, 0)  # an empty append is not in flight
    assert list(pr.inflight) == [6, 8]
    assert pr.maybe_update(7)  # frees every append ending at or before 7
    assert list(pr.inflight) == [8]
    assert not pr.is_paused(2)
    assert not pr.maybe_update(6)  # old news
    assert pr.match == 7


def test_progress_maybe_decr_to_in_replicate() -> None:
    pr = Progress(match=5, next=5)
    pr.become_replicate()
    pr.sent_entries(9, 4)
    assert not pr.maybe_decr_to(5, 3)  # rejection of something already matched: stale
    assert pr.maybe_decr_to(8, 3)
    assert pr.next == 6  # back to match + 1, whatever the hint


@pytest.mark.parametrize(
    ("match", "next_", "rejected", "hint", "ok", "want_next"),
    [
        (0, 10, 9, 4, True, 5),  # use the hint
        (0, 10, 9, 20, True, 9),  # a hint beyond the rejected index is capped
        (6, 10, 9, 2, True, 7),  # never below match + 1
        (0, 10, 7, 4, False, 10),  # not a reply to the current probe: stale
    ],
)
def test_progress_maybe_decr_to_in_probe(
    match: int, next_: int, rejected: int, hint: int, ok: bool, want_next: int
) -> None:
    pr = Progress(match=match, next=next_)
    pr.probe_sent = True
    assert pr.maybe_decr_to(rejected, hint) is ok
    assert pr.next == want_next
    assert pr.probe_sent is not ok


def test_progress_snapshot_state() -> None:
    pr = Progress(match=2, next=3)
    pr.become_snapshot(10)
    assert pr.is_paused(100)  # nothing else is sent while a snapshot is pending
    assert pr.pending_snapshot == 10
    pr.become_probe()  # snapshot assumed delivered: resume after it
    assert (pr.state, pr.next, pr.pending_snapshot) == (ProgressState.PROBE, 11, 0)
    pr.become_snapshot(10)
    pr.match = 12
    pr.become_probe()
    assert pr.next == 13


def test_progress_state_changes_reset_flow_control() -> None:
    pr = Progress(match=3, next=4)
    pr.become_replicate()
    pr.sent_entries(5, 2)
    pr.stall_ticks = 4
    pr.become_probe()
    assert (pr.next, list(pr.inflight), pr.stall_ticks, pr.probe_sent) == (4, [], 0, False)
