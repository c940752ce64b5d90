"""Group precedence (flag > WORKER_GROUP > docker > k8s > OS) and label parsing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agentflow.worker.groups import (
    DOCKER_MARKER,
    KUBERNETES_MARKER,
    detect_groups,
    parse_groups,
    parse_labels,
)


def markers(*present: str) -> Callable[[str], bool]:
    return lambda path: path in present


def test_flag_wins_over_everything() -> None:
    groups = detect_groups(
        "gpu", env={"WORKER_GROUP": "env"}, exists=markers(DOCKER_MARKER), system="Linux"
    )
    assert groups == ("gpu",)


def test_env_wins_over_docker() -> None:
    assert detect_groups(None, {"WORKER_GROUP": "batch"}, markers(DOCKER_MARKER)) == ("batch",)


def test_docker_wins_over_k8s() -> None:
    both = markers(DOCKER_MARKER, KUBERNETES_MARKER)
    assert detect_groups(None, {}, both, "Linux") == ("docker", "default")


def test_k8s_wins_over_os() -> None:
    assert detect_groups(None, {}, markers(KUBERNETES_MARKER), "Linux") == ("k8s", "default")


@pytest.mark.parametrize(
    ("system", "group"),
    [
        ("Linux", ("linux", "default")),
        ("Darwin", ("darwin", "default")),
        ("Windows", ("windows", "default")),
        ("SunOS", ("default",)),
    ],
)
def test_os_name_last_and_default_with_it(system: str, group: tuple[str, ...]) -> None:
    assert detect_groups(None, {}, markers(), system) == group


def test_empty_flag_and_env_count_as_unset() -> None:
    assert detect_groups("  ", {"WORKER_GROUP": ""}, markers(), "Darwin") == ("darwin", "default")


def test_several_groups_comma_separated_deduplicated() -> None:
    assert detect_groups("gpu, batch,gpu", {}, markers()) == ("gpu", "batch")
    assert detect_groups(None, {"WORKER_GROUP": "a,b"}, markers()) == ("a", "b")


def test_detect_groups_defaults_to_the_real_environment() -> None:
    assert len(detect_groups("x")) == 1
    assert detect_groups() != ()


@pytest.mark.parametrize(
    ("text", "source", "message"),
    [
        ("a,,b", "--group", "--group: empty group name"),
        ("ok,bad name", "WORKER_GROUP", "WORKER_GROUP: invalid group name 'bad name'"),
        ("-x", "--group", "invalid group name '-x'"),
    ],
)
def test_bad_groups_name_their_source(text: str, source: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_groups(text, source)


def test_flag_error_names_the_flag() -> None:
    with pytest.raises(ValueError, match=r"^--group:"):
        detect_groups("a b", {})
    with pytest.raises(ValueError, match=r"^WORKER_GROUP:"):
        detect_groups(None, {"WORKER_GROUP": "a/b"})


def test_labels_parse() -> None:
    assert parse_labels(["zone=eu-1", "spot=", "expr=a=b", " gpu =a100"]) == {
        "zone": "eu-1",
        "spot": "",
        "expr": "a=b",
        "gpu": "a100",
    }


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("gpu", "--label 'gpu': expected key=value"),
        ("=x", "--label '=x': empty key"),
        ("bad key=1", "--label 'bad key=1': invalid key 'bad key'"),
    ],
)
def test_label_errors_name_the_flag_and_item(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_labels([item])


def test_label_given_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="key 'zone' given twice"):
        parse_labels(["zone=a", "zone=b"])


def test_label_errors_use_the_given_flag_name() -> None:
    with pytest.raises(ValueError, match=r"^WORKER_LABELS 'x'"):
        parse_labels(["x"], flag="WORKER_LABELS")
