from __future__ import annotations

import pytest

from agentflow.client.addresses import parse_addresses
from agentflow.client.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("host:1234", ("host:1234",)),
        ("http://host:1234", ("host:1234",)),
        ("https://host:1234/api/v1", ("host:1234",)),
        ("host", ("host:6767",)),
        ("a:1, http://b:2 ,c", ("a:1", "b:2", "c:6767")),
        (["a:1", "b:2,a:1"], ("a:1", "b:2")),
        ("[::1]:7000", ("[::1]:7000",)),
        ("http://[::1]", ("[::1]:6767",)),
        ("::1", ("[::1]:6767",)),
    ],
)
def test_forms(value: str | list[str], expected: tuple[str, ...]) -> None:
    assert parse_addresses(value) == expected


def test_default_from_env_then_localhost() -> None:
    assert parse_addresses(None, env={"MASTER_URL": "http://m1:1,m2:2"}) == ("m1:1", "m2:2")
    assert parse_addresses(None, env={}) == ("127.0.0.1:6767",)
    assert parse_addresses(None, env={"MASTER_URL": ""}) == ("127.0.0.1:6767",)


@pytest.mark.parametrize("value", ["", " , ", "host:port", "host:0", "host:70000", "http://:80"])
def test_bad_addresses(value: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_addresses(value)
    assert info.value.field == "masters"
