"""DAG validation, queries and the incremental ready set (agentflow.rules.dag)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow.rules.dag import Dag, DagError, DagRun, TaskStatus

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


# --- validation errors ---------------------------------------------------------------


def test_cycle_is_named_as_a_path() -> None:
    with pytest.raises(DagError, match=r"^dependency cycle: a -> c -> b -> a$") as info:
        Dag({"a": ["c"], "b": ["a"], "c": ["b"], "x": []})
    assert info.value.cycle == ("a", "c", "b", "a")


def test_cycle_report_starts_at_earliest_task_and_ignores_acyclic_parts() -> None:
    tasks = {"root": [], "p": ["root", "r"], "q": ["p"], "r": ["q"], "tail": ["r"]}
    with pytest.raises(DagError, match=r"^dependency cycle: p -> r -> q -> p$"):
        Dag(tasks)


def test_two_node_cycle() -> None:
    with pytest.raises(DagError, match=r"^dependency cycle: a -> b -> a$"):
        Dag([("a", ["b"]), ("b", ["a"])])


def test_unknown_dependency() -> None:
    with pytest.raises(DagError, match=r"^task 'deploy': unknown dependency 'tset'$"):
        Dag({"build": [], "test": ["build"], "deploy": ["tset"]})


def test_duplicate_task_id() -> None:
    with pytest.raises(DagError, match=r"^duplicate task id 'build'$"):
        Dag([("build", []), ("test", ["build"]), ("build", [])])


def test_self_dependency() -> None:
    with pytest.raises(DagError, match=r"^task 'a' depends on itself$"):
        Dag({"a": ["a"]})


def test_empty_ids() -> None:
    with pytest.raises(DagError, match=r"^task #1: empty task id$"):
        Dag([("a", []), ("", [])])
    with pytest.raises(DagError, match=r"^task 'a': empty dependency id$"):
        Dag({"a": [""]})


def test_string_as_dependency_list_is_rejected() -> None:
    with pytest.raises(DagError, match="must be a collection"):
        Dag({"ab": [], "c": "ab"})


def test_dag_error_is_a_value_error() -> None:
    assert issubclass(DagError, ValueError)


# --- queries -------------------------------------------------------------------------


def test_topological_order_is_stable_in_input_order() -> None:
    dag = Dag({"z": [], "d": ["z", "y"], "y": [], "a": ["z"]})
    assert dag.topological_order() == ["z", "y", "d", "a"]
    assert Dag({"a": [], "b": [], "c": ["a"]}).topological_order() == ["a", "b", "c"]


def test_neighbours_roots_leaves() -> None:
    dag = Dag(DIAMOND)
    assert dag.dependencies("d") == ["b", "c"]
    assert dag.dependents("a") == ["b", "c"]
    assert dag.roots() == ["a"]
    assert dag.leaves() == ["d"]
    assert len(dag) == 4 and "c" in dag and "e" not in dag
    with pytest.raises(KeyError, match="unknown task 'e'"):
        dag.dependencies("e")


def test_repeated_dependency_is_one_edge() -> None:
    dag = Dag({"a": [], "b": ["a", "a"]})
    assert dag.dependencies("b") == ["a"]
    run = DagRun(dag)
    assert run.mark_succeeded("a") == ["b"]


def test_dependency_chain_in_topological_order() -> None:
    dag = Dag({"e": ["d"], "d": ["b", "c"], "c": ["a"], "b": ["a"], "a": [], "x": []})
    # c is declared before b, so it comes first among the tasks ready together.
    assert dag.dependency_chain("e") == ["a", "c", "b", "d"]
    assert dag.dependency_chain("a") == []


def test_critical_path_on_diamond() -> None:
    dag = Dag(DIAMOND)
    assert dag.critical_path() == (["a", "b", "d"], 3.0)
    assert dag.critical_path({"a": 1, "b": 2, "c": 5, "d": 1}) == (["a", "c", "d"], 7.0)


def test_critical_path_edge_cases() -> None:
    assert Dag({}).critical_path() == ([], 0.0)
    assert Dag({"a": [], "b": []}).critical_path({"b": 3}) == (["b"], 3.0)
    with pytest.raises(ValueError, match="negative"):
        Dag(DIAMOND).critical_path({"a": -1})
    with pytest.raises(KeyError):
        Dag(DIAMOND).critical_path({"nope": 1})


# --- execution -----------------------------------------------------------------------


def test_ready_set_follows_successes() -> None:
    run = DagRun(Dag(DIAMOND))
    assert run.ready() == ["a"]
    run.mark_running("a")
    assert run.ready() == []
    assert run.mark_succeeded("a") == ["b", "c"]
    assert run.ready() == ["b", "c"]
    assert run.mark_succeeded("c") == []
    assert run.mark_succeeded("b") == ["d"]
    assert not run.is_done()
    run.mark_succeeded("d")
    assert run.is_done()


def test_failure_with_skip_skips_all_descendants() -> None:
    dag = Dag({"a": [], "b": ["a"], "c": ["b"], "d": ["c", "x"], "x": [], "y": ["x"]})
    run = DagRun(dag)
    assert run.mark_failed("a", on_failure="skip") == ["b", "c", "d"]
    assert run.status("d") is TaskStatus.SKIPPED
    assert run.mark_succeeded("x") == ["y"]
    assert run.status("d") is TaskStatus.SKIPPED
    run.mark_succeeded("y")
    assert run.is_done()


def test_failure_with_continue_releases_dependents() -> None:
    run = DagRun(Dag(DIAMOND))
    run.mark_succeeded("a")
    assert run.mark_failed("b", on_failure="continue") == []
    assert run.mark_failed("c", on_failure="continue") == ["d"]
    assert run.status("d") is TaskStatus.READY
    run.mark_succeeded("d")
    assert run.is_done()


def test_skip_wins_over_continue_for_shared_dependent() -> None:
    run = DagRun(Dag({"a": [], "b": [], "c": ["a", "b"]}))
    assert run.mark_failed("a", on_failure="continue") == []
    assert run.mark_failed("b", on_failure="skip") == ["c"]
    assert run.is_done()


def test_invalid_transitions() -> None:
    run = DagRun(Dag(DIAMOND))
    with pytest.raises(DagError, match=r"^task 'b' is pending, cannot succeed$"):
        run.mark_succeeded("b")
    run.mark_succeeded("a")
    with pytest.raises(DagError, match="is succeeded, cannot fail"):
        run.mark_failed("a")
    with pytest.raises(ValueError, match="on_failure"):
        run.mark_failed("b", on_failure="retry")  # type: ignore[arg-type]


def test_cancel_finishes_everything_left() -> None:
    run = DagRun(Dag(DIAMOND))
    run.mark_succeeded("a")
    run.mark_running("b")
    assert run.cancel() == ["b", "c", "d"]
    assert run.is_done() and run.ready() == []
    assert run.status("a") is TaskStatus.SUCCEEDED


# --- scale ---------------------------------------------------------------------------


def test_10k_chain() -> None:
    n = 10_000
    tasks = [(f"t{i}", [f"t{i - 1}"] if i else []) for i in range(n)]
    dag = Dag(reversed(tasks))
    assert dag.topological_order() == [t for t, _ in tasks]
    assert len(dag.dependency_chain(f"t{n - 1}")) == n - 1
    assert dag.critical_path()[1] == n
    run = DagRun(dag)
    assert len(run.mark_failed("t0")) == n - 1
    with pytest.raises(DagError, match=r"^dependency cycle: t0 -> t9999 -> t9998 -> "):
        Dag([("t0", [f"t{n - 1}"]), *tasks[1:]])


def test_10k_fan_out() -> None:
    n = 10_000
    tasks = {
        "root": [],
        **{f"t{i}": ["root"] for i in range(n)},
        "sink": [f"t{i}" for i in range(n)],
    }
    dag = Dag(tasks)
    assert len(dag.dependents("root")) == n
    run = DagRun(dag)
    assert len(run.mark_succeeded("root")) == n
    for i in range(n - 1):
        assert run.mark_succeeded(f"t{i}") == []
    assert run.mark_succeeded(f"t{n - 1}") == ["sink"]


# --- properties ----------------------------------------------------------------------


@st.composite
def random_dags(draw: st.DrawFn) -> tuple[list[tuple[str, list[str]]], set[tuple[str, str]]]:
    """Edges only from earlier to later nodes (so acyclic), then the input is shuffled.

    Returns the task list and the edges as (dependent, dependency) pairs.
    """
    n = draw(st.integers(min_value=1, max_value=30))
    edges: set[tuple[str, str]] = set()
    for child in range(n):
        parents = draw(st.sets(st.integers(min_value=0, max_value=child - 1))) if child else set()
        edges |= {(f"n{child}", f"n{p}") for p in parents}
    seed = draw(st.integers(min_value=0, max_value=2**32))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    tasks = [(f"n{i}", sorted(p for c, p in edges if c == f"n{i}")) for i in order]
    return tasks, edges


@settings(max_examples=200, deadline=None)
@given(random_dags())
def test_topological_order_respects_every_edge(
    dag_and_edges: tuple[list[tuple[str, list[str]]], set[tuple[str, str]]],
) -> None:
    tasks, edges = dag_and_edges
    order = Dag(tasks).topological_order()
    assert sorted(order) == sorted(t for t, _ in tasks)
    pos = {t: i for i, t in enumerate(order)}
    assert all(pos[dep] < pos[child] for child, dep in edges)


@settings(max_examples=200, deadline=None)
@given(random_dags(), st.data())
def test_back_edge_is_rejected_with_a_real_cycle(
    dag_and_edges: tuple[list[tuple[str, list[str]]], set[tuple[str, str]]],
    data: st.DataObject,
) -> None:
    tasks, edges = dag_and_edges
    if not edges:
        return
    child, dep = data.draw(st.sampled_from(sorted(edges)))
    # dep -> ... -> child already exists through `child depends on dep`; add the reverse.
    with_back = [(t, [*deps, child]) if t == dep else (t, deps) for t, deps in tasks]
    all_edges = edges | {(dep, child)}
    with pytest.raises(DagError) as info:
        Dag(with_back)
    cycle = info.value.cycle
    assert len(cycle) >= 3 and cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    assert all(pair in all_edges for pair in itertools.pairwise(cycle))
    assert str(info.value) == "dependency cycle: " + " -> ".join(cycle)


@settings(max_examples=200, deadline=None)
@given(random_dags(), st.randoms(use_true_random=False))
def test_run_visits_every_task_once_in_valid_order(
    dag_and_edges: tuple[list[tuple[str, list[str]]], set[tuple[str, str]]],
    rnd: random.Random,
) -> None:
    tasks, edges = dag_and_edges
    run = DagRun(Dag(tasks))
    done: list[str] = []
    while not run.is_done():
        ready = run.ready()
        assert ready, "not done but nothing ready"
        task = rnd.choice(ready)
        assert task not in done
        run.mark_succeeded(task)
        done.append(task)
    assert sorted(done) == sorted(t for t, _ in tasks)
    pos = {t: i for i, t in enumerate(done)}
    assert all(pos[dep] < pos[child] for child, dep in edges)
    assert all(run.status(t) is TaskStatus.SUCCEEDED for t in done)
