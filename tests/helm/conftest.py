"""Fixtures for the chart tests: the chart loaded once, renders cached per value set."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest
import yaml
from helmchart import CHART, NAMESPACE, RELEASE, VALUE_SETS, Rendered, value_set


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: Any) -> Any:
    cache: dict[str, Rendered] = {}

    def _render(values: dict[str, Any] | None = None, **kwargs: Any) -> Rendered:
        values = values or {}
        key = repr((values, sorted(kwargs.items())))
        if key not in cache:
            kwargs.setdefault("name", RELEASE)
            kwargs.setdefault("namespace", NAMESPACE)
            manifests = chart.render(values=values, **kwargs)
            objects = [
                obj
                for path, text in sorted(manifests.items())
                if path.endswith(".yaml")
                for obj in yaml.safe_load_all(text)
                if obj
            ]
            cache[key] = Rendered(values, manifests, objects)
        return cache[key]

    return _render


@pytest.fixture(params=VALUE_SETS)
def each_set(request: pytest.FixtureRequest, render: Any) -> Rendered:
    """The chart rendered with each ci/*-values.yaml."""
    rendered: Rendered = render(value_set(request.param))
    return rendered
