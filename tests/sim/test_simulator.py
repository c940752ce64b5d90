"""The deterministic simulator (TESTING.md layers 3-4): seeds pass, runs are
reproducible, and every invariant checker catches a hand-made violation."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from agentflow.raft import roles
from agentflow.raft.config import RaftConfig
from agentflow.raft.core import RaftCore, bootstrap_entries
from agentflow.raft.log import RaftLog
from agentflow.raft.testing import (
    DEFAULT_STEPS,
    AppliedHistory,
    CommitRecord,
    DurableStateMonitor,
    ElectionRecord,
    InvariantViolation,
    LeaderAppendOnly,
    LogMatchingIndex,
    LogWatcher,
    check_applied_prefixes,
    check_log_matching,
    run_seed,
)
from agentflow.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "sim" / "corpus.txt"


def make_log(base: int, base_term: int, terms: list[int], data: bytes = b"") -> RaftLog:
    log = RaftLog(SnapshotMeta(base, base_term))
    log.append([Entry(t, base + 1 + i, EntryType.NORMAL, data) for i, t in enumerate(terms)])
    return log


def corpus_lines() -> list[tuple[int, int | None, int | None]]:
    out: list[tuple[int, int | None, int | None]] = []
    for raw in CORPUS.read_text().splitlines():
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        opts = dict(zip(words[1::2], map(int, words[2::2]), strict=True))
        out.append((int(words[0]), opts.get("--nodes"), opts.get("--steps")))
    return out


# -- the simulator finds nothing wrong with the core -------------------------------


@pytest.mark.parametrize("seed", range(1, 25))
def test_seeds_pass(seed: int) -> None:
    res = run_seed(seed, nodes=3 if seed % 2 else 5, steps=8000)
    assert res.ok, f"{res.invariant}: {res.detail} [{res.plan}]"
    assert res.stats.get("acked", 0) > 0


@pytest.mark.parametrize(("seed", "nodes", "steps"), corpus_lines())
def test_corpus_seeds_pass(seed: int, nodes: int | None, steps: int | None) -> None:
    res = run_seed(seed, nodes or (3 if seed % 2 == 0 else 5), steps or DEFAULT_STEPS)
    assert res.ok, f"{res.invariant}: {res.detail}"


def test_faults_are_exercised() -> None:
    """Across a few seeds every kind of fault and every core path the simulator
    aims at actually happens."""
    totals: dict[str, int] = {}
    for seed in range(20, 32):
        res = run_seed(seed, nodes=3, steps=3000)
        assert res.ok, f"seed {seed}: {res.invariant}: {res.detail}"
        for k, v in res.stats.items():
            totals[k] = totals.get(k, 0) + v
    for key in (
        "crashes",
        "pauses",
        "partitions",
        "snapshots_installed",
        "compactions",
        "conf_changes",
        "transfers",
        "reads_checked",
        "leaders",
    ):
        assert totals.get(key, 0) > 0, key


# -- determinism -------------------------------------------------------------------


def test_same_seed_same_trace() -> None:
    a = run_seed(7, nodes=5, steps=3000, trace=True)
    b = run_seed(7, nodes=5, steps=3000, trace=True)
    assert a.trace and a.trace == b.trace
    assert a.stats == b.stats
    c = run_seed(8, nodes=5, steps=3000, trace=True)
    assert c.trace != a.trace


def test_trace_does_not_depend_on_hash_seed() -> None:
    """Set and dict ordering of str keys changes with PYTHONHASHSEED; a run must not."""
    code = (
        "import hashlib; from agentflow.raft.testing import run_seed; "
        "r = run_seed(11, 3, 2000, trace=True); "
        "print(hashlib.sha256('\\n'.join(r.trace).encode()).hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    local = run_seed(11, 3, 2000, trace=True)
    digests.add(hashlib.sha256("\n".join(local.trace).encode()).hexdigest())
    assert len(digests) == 1


def test_trace_prefix_does_not_depend_on_step_budget() -> None:
    short = run_seed(3, 3, 1000, trace=True)
    long = run_seed(3, 3, 3000, trace=True)
    heal = short.trace.index(next(t for t in short.trace if t.endswith(" heal")))
    assert long.trace[:heal] == short.trace[:heal]


# -- the simulator catches a broken core -------------------------------------------


def test_simulator_catches_two_leaders_in_a_term(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core that counts refused votes as granted elects two leaders in a term."""
    record_vote = roles.record_vote

    def count_refusals(
        core: RaftCore, node: str, granted: bool
    ) -> Literal["won", "lost", "pending"]:
        return record_vote(core, node, True)

    monkeypatch.setattr(roles, "record_vote", count_refusals)
    results = [run_seed(s, 5, 3000) for s in range(1, 9)]
    assert "election-safety" in {r.invariant for r in results}


def test_simulator_catches_votes_not_made_durable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core that grants every vote request changes its durable vote in a term."""

    def grant_all(core: RaftCore, m: Message) -> None:
        pre = m.type is MessageType.PRE_VOTE
        resp = MessageType.PRE_VOTE_RESP if pre else MessageType.VOTE_RESP
        core.send(Message(resp, m.frm, core.id, term=m.term))
        if not pre:
            core.vote = m.frm

    monkeypatch.setattr(roles, "handle_vote_request", grant_all)
    results = [run_seed(s, 5, 3000) for s in range(1, 9)]
    assert "durable-state" in {r.invariant for r in results}


def test_simulator_catches_stale_logs_winning(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core that ignores the up-to-date check (§5.4.1) loses committed entries."""
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)
    results = [run_seed(s, 3, 6000) for s in range(1, 13)]
    assert "leader-completeness" in {r.invariant for r in results}


# -- each checker reports a hand-made violation ------------------------------------


def test_election_record_catches_two_leaders_in_a_term() -> None:
    rec = ElectionRecord()
    assert rec.observe(3, "n1")
    assert not rec.observe(3, "n1")
    assert rec.observe(4, "n2")
    with pytest.raises(InvariantViolation) as err:
        rec.observe(3, "n2")
    assert err.value.invariant == "election-safety"


def test_leader_append_only_catches_a_lost_entry() -> None:
    check = LeaderAppendOnly()
    log = make_log(0, 0, [1, 2, 2])
    check.observe("n1", 2, 1, log)
    log.append([Entry(2, 4)])
    check.observe("n1", 2, 1, log)
    log.entries.pop()
    with pytest.raises(InvariantViolation) as err:
        check.observe("n1", 2, 1, log)
    assert err.value.invariant == "leader-append-only"
    # Overwriting the last entry with another term is caught too.
    check = LeaderAppendOnly()
    check.observe("n1", 2, 1, log)
    log.entries[-1] = Entry(3, 3)
    with pytest.raises(InvariantViolation):
        check.observe("n1", 2, 1, log)
    # A new term (or a restart) starts afresh.
    check.observe("n1", 3, 1, make_log(0, 0, [1]))


def test_log_matching_catches_diverging_prefixes() -> None:
    a = make_log(0, 0, [1, 1, 2, 3])
    b = make_log(0, 0, [1, 1, 2, 3, 3])
    c = make_log(2, 1, [2, 4])  # diverges after index 3: allowed
    check_log_matching({"a": a, "b": b, "c": c})
    bad = make_log(0, 0, [1, 2, 2, 3])  # same (4, 3) as a, different term at 2
    with pytest.raises(InvariantViolation) as err:
        check_log_matching({"a": a, "bad": bad})
    assert err.value.invariant == "log-matching"
    payload = make_log(0, 0, [1, 1, 2, 3], data=b"x")  # same terms, different data
    with pytest.raises(InvariantViolation):
        check_log_matching({"a": a, "payload": payload})


def test_log_matching_index_catches_diverging_prefixes() -> None:
    index = LogMatchingIndex()
    watch = LogWatcher(index)
    watch.observe("a", make_log(0, 0, [1, 1, 2, 3]))
    watch.observe("b", make_log(0, 0, [1, 1, 2]))
    with pytest.raises(InvariantViolation) as err:
        watch.observe("c", make_log(0, 0, [1, 2, 2, 3]))
    assert err.value.invariant == "log-matching"
    with pytest.raises(InvariantViolation):
        index.observe("d", 2, Entry(3, 4, EntryType.NORMAL, b"other"))


def test_log_watcher_sees_a_rewritten_suffix() -> None:
    index = LogMatchingIndex()
    watch = LogWatcher(index)
    watch.observe("a", make_log(0, 0, [1, 1, 2]))
    log = make_log(0, 0, [1, 1, 2])
    watch.observe("b", log)
    log.entries[2:] = [Entry(3, 3), Entry(3, 4)]  # fine: (3, 3) is new
    watch.observe("b", log)
    log.entries[1:] = [Entry(2, 2), Entry(3, 3)]  # (3, 3) now preceded by term 2
    with pytest.raises(InvariantViolation):
        watch.observe("b", log)


def test_state_machine_safety_catches_diverging_applies() -> None:
    good = [(1, 1, b"a"), (2, 1, b"b"), (3, 2, b"c")]
    check_applied_prefixes({"n1": good, "n2": good[:2], "n3": []})
    with pytest.raises(InvariantViolation) as err:
        check_applied_prefixes({"n1": good, "n2": [(1, 1, b"a"), (2, 2, b"x")]})
    assert err.value.invariant == "state-machine-safety"
    with pytest.raises(InvariantViolation):
        check_applied_prefixes({"n1": [(1, 1, b"a"), (3, 1, b"c")]})  # a gap

    hist = AppliedHistory()
    assert hist.observe("n1", 1, 1, b"a", b"d1")
    assert not hist.observe("n2", 1, 1, b"a", b"d1")
    with pytest.raises(InvariantViolation):
        hist.observe("n3", 1, 2, b"a", b"d1")
    with pytest.raises(InvariantViolation):
        hist.observe("n3", 1, 1, b"a", b"other-digest")
    with pytest.raises(InvariantViolation):
        hist.check_snapshot("n3", 1, b"other-digest")
    with pytest.raises(InvariantViolation):
        hist.check_snapshot("n3", 5, b"d1")


def test_leader_completeness_catches_a_missing_committed_entry() -> None:
    rec = CommitRecord()
    leader = make_log(0, 0, [1, 1, 2, 2])
    leader.commit_to(3)
    assert list(rec.add("n1", 2, leader)) == [1, 2, 3]
    rec.check_leader("n2", 3, make_log(0, 0, [1, 1, 2, 3]))
    rec.check_leader("n2", 3, make_log(3, 2, [3]))  # under its snapshot
    rec.check_leader("n9", 2, make_log(0, 0, [1, 1]))  # same term: not required
    with pytest.raises(InvariantViolation) as err:
        rec.check_leader("n3", 3, make_log(0, 0, [1, 1]))
    assert err.value.invariant == "leader-completeness"
    with pytest.raises(InvariantViolation):
        rec.check_leader("n3", 3, make_log(0, 0, [1, 1, 3]))


def test_durable_state_catches_term_or_vote_going_backwards() -> None:
    mon = DurableStateMonitor()
    mon.observe("n1", HardState(2, "", 0))
    mon.observe("n1", HardState(2, "n2", 0))  # voting once is fine
    mon.observe("n1", HardState(3, "", 5))
    with pytest.raises(InvariantViolation) as err:
        mon.observe("n1", HardState(2, "n2", 5))
    assert err.value.invariant == "durable-state"
    mon = DurableStateMonitor()
    mon.observe("n1", HardState(4, "n2", 0))
    with pytest.raises(InvariantViolation):
        mon.observe("n1", HardState(4, "n3", 0))
    with pytest.raises(InvariantViolation):
        mon.observe("n1", HardState(4, "", 0))


# -- regression: found by the simulator --------------------------------------------


def test_compact_never_lets_the_host_drop_past_its_snapshot() -> None:
    """Seed 494: a follower compacted while a leader's snapshot (index 20) was
    received but not yet persisted. The core told the host to drop stored entries
    through 20 although the host's own snapshot was at 6; a crash before the
    leader's snapshot was persisted would have lost entries 7-10."""
    members = {"a": "x", "b": "y", "c": "z"}
    boot = bootstrap_entries(members)
    entries = [*boot, *(Entry(2, i) for i in range(4, 11))]
    core = RaftCore(
        "a", RaftConfig(), random.Random(1), hard_state=HardState(2, "", 6), entries=entries
    )
    while core.has_ready():
        core.advance(core.ready())
    conf = ConfState(("a", "b", "c"))
    leader_snap = Snapshot(SnapshotMeta(20, 3, conf), b"leader")
    core.step(Message(MessageType.SNAPSHOT, "a", "b", term=3, snapshot=leader_snap))
    point = core.compact(Snapshot(SnapshotMeta(6, 2, conf), b"local"), keep_entries=0)
    assert point == 6
