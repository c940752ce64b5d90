"""`agentflow run --id/--unique` and `agentflow delete` against a FakeMaster."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agentflow.cli.main import cli
from agentflow.cli.runs import MAX_ID_LENGTH, unique_id
from agentflow.client.testing import FakeMaster

NO_ID = "workflow:\n  tasks:\n    - {task_id: a, desc: 'shell:true'}\n"


@pytest.fixture
def fake() -> Iterator[FakeMaster]:
    with FakeMaster() as master:
        yield master


def run(fake: FakeMaster, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--master", f"http://{fake.address}", *args])


def test_unique_id_appends_the_time_and_a_random_suffix_and_stays_a_valid_id() -> None:
    at = datetime(2026, 12, 3, 6, 37, tzinfo=UTC)
    made = unique_id("release", at)
    assert re.fullmatch(r"release-20261203-0637-[0-9a-f]{4}", made)
    long = unique_id("x" * 128, at)
    assert len(long) == MAX_ID_LENGTH and long.startswith("x" * 100)
    # Cut right after a separator: no doubled "--" before the time.
    assert unique_id("a" * 108 + "-" + "b" * 20, at).startswith("a" * 108 + "-2026")


def test_unique_without_an_id_in_the_file_starts_from_the_file_name(
    fake: FakeMaster, tmp_path: Path
) -> None:
    path = tmp_path / "nightly build.yaml"
    path.write_text(NO_ID)
    result = run(fake, "--output", "json", "run", str(path), "--unique")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        r"nightly-build-\d{8}-\d{4}-[0-9a-f]{4}", json.loads(result.stdout)["workflow_id"]
    )
    named = run(fake, "run", str(path), "--id", "mine")
    assert named.stdout.startswith("submitted workflow mine (1 task)")
    empty = run(fake, "run", str(path), "--id", " ")
    assert (empty.exit_code, empty.stderr) == (2, "error: --id: must not be empty\n")


def test_delete_reports_what_went(fake: FakeMaster, tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(NO_ID)
    run(fake, "run", str(path), "--id", "wf")
    refused = run(fake, "delete", "workflow", "wf")
    assert refused.exit_code == 1 and refused.stderr.startswith("error: ")
    fake.finish("wf/a")
    assert run(fake, "delete", "workflow", "wf").stdout == (
        "deleted 1 workflow (wf) with 1 task in all\n"
    )
    assert run(fake, "delete", "--finished-before", "0").stdout == (
        "nothing to delete that has finished\n"
    )
    help_text = run(fake, "delete", "--help").stdout
    assert "agentflow delete workflow release" in help_text
    assert "--finished-before DURATION" in help_text
