"""Render helm/agentflow offline with the real Helm library (helm-python-sdk, Helm's Go
code behind a C ABI) and check the objects against the Kubernetes API schemas
(kubernetes-validate). No cluster and no network are involved.

The value sets are the chart's own `ci/*-values.yaml` files, so `helm install -f`
with any of them installs exactly what these tests checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "agentflow"
RELEASE = "agentflow"
NAMESPACE = "prod"
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the
# installed kubernetes-validate knows.
KUBE_VERSIONS = ("1.27.0", kubernetes_validate.utils.latest_version())


def value_set(name: str) -> dict[str, Any]:
    with open(CHART / "ci" / f"{name}-values.yaml") as f:
        return yaml.safe_load(f) or {}


VALUE_SETS = sorted(
    p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml")
)


@dataclass
class Rendered:
    """One render: the manifests by template, and every object in them."""

    values: dict[str, Any]
    manifests: dict[str, str]
    objects: list[dict[str, Any]]

    @property
    def notes(self) -> str:
        return next(text for path, text in self.manifests.items() if path.endswith("NOTES.txt"))

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def maybe(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None

    @property
    def statefulset(self) -> dict[str, Any]:
        return self.one("StatefulSet")

    def workloads(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(object, pod spec) of everything that makes pods, the `helm test` pod too."""
        for obj in self.objects:
            if obj["kind"] in ("StatefulSet", "Deployment"):
                yield obj, obj["spec"]["template"]["spec"]
            elif obj["kind"] == "Pod":
                yield obj, obj["spec"]


# --- what a kubelet does with a container spec ---------------------------------


def container_env(container: dict[str, Any], pod_name: str) -> dict[str, str]:
    """Plain env values and the downward-API pod name, as the kubelet would set them."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = pod_name
    return env


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), arg)


def flags(args: list[str]) -> dict[str, list[str]]:
    """`--name=value` / `--flag` arguments by name (values in order)."""
    found: dict[str, list[str]] = {}
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            found.setdefault(name, []).append(value)
    return found


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("initContainers", [])) + list(pod_spec["containers"])
