from __future__ import annotations

import pytest

from agentflow.client.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("2.5", 2.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1d", 86400.0),
        (" 10M ", 600.0),
    ],
)
def test_parse(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "ten", "5 min", "10x", "-1", -3, True, "nan", "m"])
def test_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.5, "500ms"), (30, "30s"), (90, "1m30s"), (7200, "2h"), (1.5, "1.5s")]
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
