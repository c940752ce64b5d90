from __future__ import annotations

import json

import pytest
import structlog

from agentflow.common.logging import configure


def test_json_lines_at_the_chosen_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure(level="warning", fmt="json")
    log = structlog.get_logger("t")
    log.info("hidden")
    log.warning("shown", node="n1")
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [(r["event"], r["level"], r["node"]) for r in lines] == [("shown", "warning", "n1")]
    structlog.reset_defaults()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"level": "loud"}, "AGENTFLOW_LOG_LEVEL"), ({"fmt": "xml"}, "AGENTFLOW_LOG_FORMAT")],
)
def test_bad_settings_name_the_variable(kwargs: dict[str, str], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        configure(**kwargs)
