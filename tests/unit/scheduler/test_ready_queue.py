"""ReadyQueue: priority order, FIFO, aging, reprioritize/remove, lanes (pop_placeable)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow.scheduler.ready_queue import Position, Priority, ReadyQueue

# ----- Priority.parse -----


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("high", Priority.HIGH),
        ("CRITICAL", Priority.CRITICAL),
        (" Idle ", Priority.IDLE),
        (2, Priority.NORMAL),
        ("3", Priority.LOW),
        (Priority.LOW, Priority.LOW),
    ],
)
def test_parse_accepts_names_and_numbers(raw: str | int, expected: Priority) -> None:
    assert Priority.parse(raw) is expected


@pytest.mark.parametrize("raw", ["urgent", "", 5, -1, "7", True])
def test_parse_rejects_with_field_and_allowed_values(raw: str | int) -> None:
    with pytest.raises(ValueError, match="priority") as info:
        Priority.parse(raw)
    message = str(info.value)
    for name in ("critical", "high", "normal", "low", "idle"):
        assert name in message


# ----- basic behaviour -----


def test_empty_queue() -> None:
    q = ReadyQueue()
    assert q.pop(0.0) is None
    assert q.peek(0.0) is None
    assert len(q) == 0
    assert q.pop_placeable(0.0, ["default"], lambda _lane, _t: True, 5) == []


def test_priority_then_fifo() -> None:
    q = ReadyQueue(aging_seconds=None)
    q.push("n1", Priority.NORMAL, 0.0)
    q.push("l1", Priority.LOW, 0.0)
    q.push("c1", Priority.CRITICAL, 5.0)
    q.push("n2", Priority.NORMAL, 1.0)
    q.push("h1", Priority.HIGH, 2.0)
    assert q.peek(10.0) == "c1"
    assert [q.pop(10.0) for _ in range(6)] == ["c1", "h1", "n1", "n2", "l1", None]


def test_same_time_ties_break_by_insertion() -> None:
    q = ReadyQueue(aging_seconds=None)
    for name in ("a", "b", "c"):
        q.push(name, Priority.NORMAL, 1.0)
    assert [q.pop(1.0) for _ in range(3)] == ["a", "b", "c"]


def test_duplicate_push_rejected_and_missing_ids_raise() -> None:
    q = ReadyQueue()
    q.push("a", Priority.NORMAL, 0.0)
    with pytest.raises(ValueError, match="already queued"):
        q.push("a", Priority.HIGH, 0.0)
    with pytest.raises(KeyError):
        q.remove("zz")
    with pytest.raises(KeyError):
        q.reprioritize("zz", Priority.HIGH)
    with pytest.raises(KeyError):
        q.position("zz", 0.0)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_aging_seconds_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="aging_seconds"):
        ReadyQueue(aging_seconds=bad)


def test_depth_contains_len_and_remove() -> None:
    q = ReadyQueue()
    q.push("a", Priority.HIGH, 0.0)
    q.push("b", Priority.HIGH, 0.0)
    q.push("c", Priority.IDLE, 0.0)
    assert q.depth_by_level() == {
        Priority.CRITICAL: 0,
        Priority.HIGH: 2,
        Priority.NORMAL: 0,
        Priority.LOW: 0,
        Priority.IDLE: 1,
    }
    q.remove("a")
    assert "a" not in q and "b" in q and len(q) == 2
    assert q.depth_by_level()[Priority.HIGH] == 1
    assert q.pop(0.0) == "b"
    # A removed id may be queued again and behaves as new.
    q.push("a", Priority.IDLE, 1.0)
    assert [q.pop(1.0), q.pop(1.0), q.pop(1.0)] == ["c", "a", None]


def test_reprioritize_keeps_enqueue_time() -> None:
    q = ReadyQueue(aging_seconds=None)
    q.push("old", Priority.LOW, 0.0)
    q.push("h1", Priority.HIGH, 1.0)
    q.push("h2", Priority.HIGH, 2.0)
    q.reprioritize("old", Priority.HIGH)
    # It waited longest, so it goes ahead of HIGH tasks queued after it, not behind.
    assert q.priority_of("old") is Priority.HIGH
    assert [q.pop(3.0) for _ in range(3)] == ["old", "h1", "h2"]


def test_reprioritize_back_and_forth_leaves_no_duplicate() -> None:
    q = ReadyQueue(aging_seconds=None)
    q.push("a", Priority.NORMAL, 0.0)
    q.reprioritize("a", Priority.LOW)
    q.reprioritize("a", Priority.NORMAL)
    q.reprioritize("a", Priority.NORMAL)  # no-op
    assert [q.pop(0.0), q.pop(0.0)] == ["a", None]


def test_position_counts_tasks_ahead() -> None:
    q = ReadyQueue(aging_seconds=None)
    for i in range(3):
        q.push(f"c{i}", Priority.CRITICAL, float(i))
    q.push("h", Priority.HIGH, 0.0)
    q.push("n", Priority.NORMAL, 0.0)
    assert q.position("h", 10.0) == Position(3, Priority.HIGH)
    assert q.position("c0", 10.0) == Position(0, Priority.CRITICAL)
    assert q.position("n", 10.0).ahead == 4


# ----- aging -----


def test_aging_promotes_one_level_per_period() -> None:
    q = ReadyQueue(aging_seconds=30.0)
    q.push("idle", Priority.IDLE, 0.0)
    assert q.effective_level("idle", 29.9) is Priority.IDLE
    assert q.effective_level("idle", 30.0) is Priority.LOW
    assert q.effective_level("idle", 90.0) is Priority.HIGH
    assert q.effective_level("idle", 1e9) is Priority.CRITICAL
    # A clock stepping backwards never demotes below the assigned level.
    assert q.effective_level("idle", -100.0) is Priority.IDLE


def test_aged_head_beats_newer_higher_priority() -> None:
    q = ReadyQueue(aging_seconds=10.0)
    q.push("low", Priority.LOW, 0.0)
    q.push("normal", Priority.NORMAL, 5.0)
    assert q.peek(9.9) == "normal"
    # At t=10 `low` has aged to NORMAL and was enqueued earlier, so it wins the tie.
    assert q.position("low", 10.0) == Position(0, Priority.NORMAL)
    assert q.pop(10.0) == "low"


def test_aging_compares_heads_of_every_level() -> None:
    # The HIGH head is newer than the aged LOW head; the LOW head must be picked even
    # though HIGH is the better base level.
    q = ReadyQueue(aging_seconds=10.0)
    q.push("low", Priority.LOW, 0.0)
    q.push("high", Priority.HIGH, 15.0)
    assert q.peek(15.0) == "high"  # low only reached NORMAL
    assert q.peek(20.0) == "low"  # low reached HIGH and waited longer


@settings(max_examples=100, deadline=None)
@given(
    st.floats(0.5, 20.0),
    st.integers(1, 4),
    st.floats(0.1, 2.0),
    st.integers(0, 20),
)
def test_idle_not_starved_by_critical_stream(
    aging: float, arrivals_per_pop: int, step: float, backlog: int
) -> None:
    q = ReadyQueue(aging_seconds=aging)
    q.push("idle", Priority.IDLE, 0.0)
    for i in range(backlog):  # CRITICAL work already queued behind it at t=0
        q.push(f"b{i}", Priority.CRITICAL, 0.0)
    popped_at = None
    now = 0.0
    tick = 0
    while now <= 4 * aging + step:
        # More arrivals than pops: the CRITICAL backlog only grows, the worst case.
        for j in range(arrivals_per_pop):
            q.push(f"c{tick}.{j}", Priority.CRITICAL, now)
        if q.pop(now) == "idle":
            popped_at = now
            break
        tick += 1
        now = tick * step
    assert popped_at is not None and popped_at <= 4 * aging + step


# ----- lanes: pop_placeable -----


def _accept_all(_lane: object, _task: str) -> bool:
    return True


def test_pop_placeable_takes_in_queue_order_across_lanes() -> None:
    q = ReadyQueue(aging_seconds=None)
    q.push("a0", Priority.NORMAL, 0.0, "g", "a")
    q.push("b0", Priority.HIGH, 1.0, "g", "b")
    q.push("a1", Priority.CRITICAL, 2.0, "g", "a")
    q.push("b1", Priority.NORMAL, 3.0, "g", "b")
    assert q.pop_placeable(10.0, ["g"], _accept_all, limit=3) == ["a1", "b0", "a0"]
    assert q.pop(10.0) == "b1"


def test_a_refused_lane_is_closed_for_the_call_and_keeps_its_order() -> None:
    q = ReadyQueue(aging_seconds=None)
    for i in range(5):
        q.push(f"big{i}", Priority.CRITICAL, float(i), "g", "big")
    q.push("small", Priority.IDLE, 9.0, "g", "small")
    asked: list[str] = []

    def only_small(lane: object, task_id: str) -> bool:
        asked.append(task_id)
        return lane == ("g", "small")

    assert q.pop_placeable(10.0, ["g"], only_small, limit=5) == ["small"]
    assert asked == ["big0", "small"]  # one look at the blocked lane, not five
    assert [q.pop(10.0) for _ in range(6)] == [f"big{i}" for i in range(5)] + [None]


def test_lanes_of_groups_without_room_are_not_looked_at() -> None:
    q = ReadyQueue(aging_seconds=None)
    for i in range(1100):
        q.push(f"x{i}", Priority.CRITICAL, float(i), "nobody", None)
    q.push("mine", Priority.IDLE, 2000.0, "default", None)
    before = q.examined
    assert q.pop_placeable(3000.0, ["default"], _accept_all, limit=10) == ["mine"]
    assert q.examined - before == 1
    assert len(q) == 1100


def test_a_critical_task_among_100k_queued_is_taken_first_in_one_look() -> None:
    q = ReadyQueue()
    for i in range(100_000):
        q.push(f"t{i}", Priority.NORMAL, i / 10_000, "default", None)  # within 10 s
    q.push("urgent", Priority.CRITICAL, 10.0, "default", None)
    before = q.examined
    assert q.pop_placeable(10.0, ["default"], _accept_all, limit=1) == ["urgent"]
    assert q.examined - before == 1


def test_parked_lanes_wait_until_unparked_but_still_count_in_the_queue() -> None:
    q = ReadyQueue(aging_seconds=None)
    q.push("huge", Priority.CRITICAL, 0.0, "g", "huge")
    q.push("ok", Priority.LOW, 1.0, "g", "ok")
    q.park(("g", "huge"))
    before = q.examined
    assert q.pop_placeable(5.0, ["g"], _accept_all, limit=5) == ["ok"]
    assert q.examined - before == 1
    assert q.parked() == 1 and q.position("huge", 5.0).ahead == 0 and q.peek(5.0) == "huge"
    q.unpark_all()
    assert q.pop_placeable(5.0, ["g"], _accept_all, limit=5) == ["huge"]
    assert q.lanes() == 0 and q.parked() == 0


def test_pop_placeable_leaves_the_queue_whole_when_try_place_raises() -> None:
    q = ReadyQueue(aging_seconds=None)
    for i in range(3):
        q.push(f"t{i}", Priority.NORMAL, float(i), "g", i)

    def boom(_lane: object, task_id: str) -> bool:
        if task_id == "t1":
            raise RuntimeError("boom")
        return task_id == "t0"

    with pytest.raises(RuntimeError):
        q.pop_placeable(10.0, ["g"], boom, limit=3)
    assert [q.pop(10.0) for _ in range(3)] == ["t1", "t2", None]


def test_many_removals_compact_heaps() -> None:
    q = ReadyQueue()
    for i in range(1000):
        q.push(f"t{i}", Priority.NORMAL, float(i))
        if i:
            q.remove(f"t{i - 1}")
    assert len(q) == 1
    assert q._stored < 200
    assert q.pop(0.0) == "t999"


# ----- properties against a reference model -----

LEVELS = st.sampled_from(list(Priority))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(LEVELS, st.integers(0, 50)), max_size=40))
def test_without_aging_pops_sorted_by_priority_then_enqueue(
    pushes: list[tuple[Priority, int]],
) -> None:
    q = ReadyQueue(aging_seconds=None)
    for i, (p, t) in enumerate(pushes):
        q.push(str(i), p, float(t))
    popped = []
    while (task := q.pop(100.0)) is not None:
        popped.append(task)
    expected = sorted(range(len(pushes)), key=lambda i: (pushes[i][0], pushes[i][1], i))
    assert popped == [str(i) for i in expected]


class _Reference:
    """The obvious O(n log n)-per-pop model: sort everything on each pop."""

    def __init__(self, aging: float | None) -> None:
        self.aging = aging
        self.items: dict[str, tuple[Priority, float, int]] = {}
        self.seq = 0

    def level(self, p: Priority, at: float, now: float) -> int:
        if self.aging is None:
            return int(p)
        return max(0, int(p) - int(max(0.0, now - at) // self.aging))

    def order(self, now: float) -> list[str]:
        def key(t: str) -> tuple[int, float, int]:
            p, at, seq = self.items[t]
            return (self.level(p, at, now), at, seq)

        return sorted(self.items, key=key)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("push"), LEVELS, st.integers(0, 3), st.integers(0, 3)),
        st.tuples(st.just("pop"), st.integers(0, 3)),
        st.tuples(st.just("remove"), st.integers(0, 30)),
        st.tuples(st.just("reprio"), st.integers(0, 30), LEVELS),
        st.tuples(st.just("match"), st.integers(0, 15), st.integers(0, 3), st.integers(1, 3)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS, st.sampled_from([None, 1.0, 5.0]))
def test_matches_reference_model(ops: list[tuple[object, ...]], aging: float | None) -> None:
    q = ReadyQueue(aging_seconds=aging)
    ref = _Reference(aging)
    now = 0.0
    next_id = 0
    lanes: dict[str, int] = {}
    for op in ops:
        kind = op[0]
        if kind == "push":
            _, p, dt, lane = op
            assert isinstance(p, Priority) and isinstance(dt, int) and isinstance(lane, int)
            # Enqueue times lag `now` a little, as commands arrive out of order.
            at = max(0.0, now - dt)
            tid = f"t{next_id}"
            next_id += 1
            q.push(tid, p, at, f"g{lane % 2}", lane)
            ref.items[tid] = (p, at, ref.seq)
            lanes[tid] = lane
            ref.seq += 1
        elif kind == "pop":
            _, dt = op
            assert isinstance(dt, int)
            now += dt
            order = ref.order(now)
            expected = order[0] if order else None
            assert q.peek(now) == expected
            assert q.pop(now) == expected
            if expected is not None:
                del ref.items[expected]
        elif kind == "remove":
            tid = f"t{op[1]}"
            if tid in ref.items:
                q.remove(tid)
                del ref.items[tid]
            else:
                assert tid not in q
        elif kind == "reprio":
            _, n, p = op
            assert isinstance(p, Priority)
            tid = f"t{n}"
            if tid in ref.items:
                q.reprioritize(tid, p)
                _, at, seq = ref.items[tid]
                ref.items[tid] = (p, at, seq)
        else:
            _, accepted, groups, limit = op
            assert isinstance(accepted, int) and isinstance(groups, int)
            assert isinstance(limit, int)
            # Lanes 0..3 accepted by the bits of `accepted`; groups g0/g1 by `groups`.
            names = [f"g{g}" for g in (0, 1) if groups >> g & 1]

            def fits(lane: object, _task: str, accepted: int = accepted) -> bool:
                assert isinstance(lane, tuple)
                return bool(accepted >> lane[1] & 1)

            expected_taken = [
                t
                for t in ref.order(now)
                if accepted >> lanes[t] & 1 and f"g{lanes[t] % 2}" in names
            ][:limit]
            assert q.pop_placeable(now, names, fits, limit) == expected_taken
            for t in expected_taken:
                del ref.items[t]
        assert len(q) == len(ref.items)
        order = ref.order(now)
        for rank, t in enumerate(order):
            assert q.position(t, now).ahead == rank
        depth = {p: 0 for p in Priority}
        for p, _, _ in ref.items.values():
            depth[p] += 1
        assert q.depth_by_level() == depth
