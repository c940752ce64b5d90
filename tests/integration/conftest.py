"""Fixtures shared by the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agentflow.master.testing import MasterCluster


@pytest.fixture(scope="module")
def master(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """One `agentflow-master --mode leader` for the whole module; its address."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    cluster = MasterCluster(tmp_path_factory.mktemp(name), size=1)
    cluster.start("m1")
    try:
        asyncio.run(cluster.leader(30.0))
        yield cluster.address("m1")
    finally:
        cluster.stop_all()
