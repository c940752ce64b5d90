"""The retention defaults are one decision (docs/operations.md, "Memory"): the
scheduler's, the master's flags and the Helm chart's values must agree."""

from __future__ import annotations

from pathlib import Path

import yaml

from agentflow.master.main import main
from agentflow.scheduler.service import SchedulerConfig

ROOT = Path(__file__).resolve().parents[3]


def _flag_default(name: str) -> object:
    option = next(p for p in main.params if p.name == name)
    return option.default


def test_scheduler_flags_and_chart_share_the_retention_defaults() -> None:
    config = SchedulerConfig()
    values = yaml.safe_load((ROOT / "helm/agentflow/values.yaml").read_text())
    chart = values["master"]["scheduler"]
    assert config.retention_keep == _flag_default("retention_count") == chart["retentionCount"]
    hours = config.retention_seconds / 3600
    assert hours == _flag_default("retention_hours") == chart["retentionHours"]


def test_defaults_are_the_documented_budget() -> None:
    config = SchedulerConfig()
    assert (config.retention_keep, config.retention_seconds) == (20_000, 24 * 3600)
    text = (ROOT / "docs/operations.md").read_text()
    assert "`--retention-count 20000`, `--retention-hours 24`" in text
