"""Bad values fail at `helm install` with a message naming the value, before anything
is created: values.schema.json for shapes, the chart's own checks for the rest."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest
import yaml
from helmchart import CHART, VALUE_SETS, value_set

BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("even number of masters", {"master": {"replicas": 4}}, "/master/replicas"),
    ("replicas as a string", {"master": {"replicas": "3"}}, "/master/replicas"),
    ("misspelt key", {"master": {"replica": 3}}, "'replica' not allowed"),
    ("unknown top-level key", {"workerz": {}}, "'workerz' not allowed"),
    ("port out of range", {"master": {"ports": {"grpc": 70000}}}, "/master/ports/grpc"),
    ("no http port", {"master": {"ports": {"http": 0}}}, "/master/ports/http"),
    ("log format", {"log": {"format": "xml"}}, "/log/format"),
    ("pull policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("digest", {"image": {"digest": "latest"}}, "/image/digest"),
    ("volume size", {"master": {"persistence": {"size": "lots"}}}, "/master/persistence/size"),
    (
        "anti-affinity preset",
        {"master": {"podAntiAffinityPreset": "always"}},
        "podAntiAffinityPreset",
    ),
    (
        "short grace period",
        {"master": {"terminationGracePeriodSeconds": 2}},
        "terminationGracePeriodSeconds",
    ),
    (
        "probe timing",
        {"master": {"readinessProbe": {"periodSeconds": 0}}},
        "/master/readinessProbe/periodSeconds",
    ),
    ("pool without a name", {"workers": {"pools": [{"replicas": 1}]}}, "missing property 'name'"),
    (
        "pool name not a DNS label",
        {"workers": {"pools": [{"name": "GPU_pool"}]}},
        "/workers/pools/0/name",
    ),
    ("negative GPUs", {"workers": {"pools": [{"name": "g", "gpu": -1}]}}, "/workers/pools/0/gpu"),
    (
        "fractional GPUs",
        {"workers": {"pools": [{"name": "g", "gpu": 0.5}]}},
        "/workers/pools/0/gpu",
    ),
    ("pool key misspelt", {"workers": {"pools": [{"name": "g", "gpus": 1}]}}, "'gpus' not allowed"),
    (
        "group with spaces",
        {"workers": {"pools": [{"name": "g", "group": "a b"}]}},
        "/workers/pools/0/group",
    ),
    (
        "resources not quantities",
        {"workers": {"pools": [{"name": "g", "resources": {"limits": {"cpu": "two"}}}]}},
        "/workers/pools/0/resources/limits/cpu",
    ),
    ("name in defaults", {"workers": {"defaults": {"name": "x"}}}, "/workers/defaults"),
    ("service type", {"master": {"service": {"type": "Ingress"}}}, "/master/service/type"),
    (
        "node port range",
        {"master": {"service": {"nodePorts": {"grpc": 80}}}},
        "/master/service/nodePorts/grpc",
    ),
    ("label value not a string", {"commonLabels": {"tier": 1}}, "/commonLabels/tier"),
    ("tls flag as a string", {"tls": {"enabled": "yes"}}, "/tls/enabled"),
]


@pytest.mark.parametrize(
    ("values", "message"), [(v, m) for _, v, m in BAD_VALUES], ids=[i for i, _, _ in BAD_VALUES]
)
def test_schema_rejects_bad_values(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        chart.render(values=values, name="agentflow", namespace="prod")
    assert message in str(caught.value)


BAD_COMBINATIONS: list[tuple[str, dict[str, Any], str]] = [
    (
        "two pools with one name",
        {"workers": {"pools": [{"name": "a"}, {"name": "a"}]}},
        'the pool name "a" appears twice',
    ),
    (
        "CPU autoscaling without CPU requests",
        {
            "workers": {
                "pools": [
                    {
                        "name": "a",
                        "resources": {"requests": {"memory": "1Gi"}},
                        "autoscaling": {"enabled": True},
                    }
                ]
            }
        },
        "CPU utilisation needs resources.requests.cpu",
    ),
    (
        "autoscaling bounds upside down",
        {
            "workers": {
                "pools": [
                    {
                        "name": "a",
                        "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2},
                    }
                ]
            }
        },
        "minReplicas is above maxReplicas",
    ),
    (
        "half of the TLS secrets",
        {"tls": {"enabled": True, "existingSecret": "mine"}},
        "set both existingSecret and clientExistingSecret",
    ),
    (
        "one port for gRPC and HTTP",
        {"master": {"ports": {"grpc": 7000, "http": 7000}}},
        "grpc and http must be different ports",
    ),
]


@pytest.mark.parametrize(
    ("values", "message"),
    [(v, m) for _, v, m in BAD_COMBINATIONS],
    ids=[i for i, _, _ in BAD_COMBINATIONS],
)
def test_chart_rejects_bad_combinations(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        chart.render(values=values, name="agentflow", namespace="prod")
    assert message in str(caught.value)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_ci_value_set_is_accepted(chart: Any, name: str) -> None:
    chart.validate_schema(value_set(name))


def test_the_defaults_match_the_schema(chart: Any) -> None:
    with open(CHART / "values.yaml") as f:
        defaults = yaml.safe_load(f)
    chart.validate_schema(defaults)
    assert chart.schema is not None
    # Every top-level default is described by the schema, and nothing more is allowed.
    assert set(defaults) == set(chart.schema["properties"])
    assert chart.schema["additionalProperties"] is False
