"""helm/agentflow rendered with every ci/*-values.yaml: valid Kubernetes objects that
keep what the chart promises (DESIGN section 10, issue 6)."""

from __future__ import annotations

import base64
import copy
import ssl
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from helmchart import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    VALUE_SETS,
    Rendered,
    container_env,
    containers,
    expand,
    flags,
    value_set,
)

# Prometheus Operator's kind is not in the Kubernetes API schemas; it is checked
# field by field in test_service_monitor_scrapes_every_master instead.
NOT_IN_KUBERNETES_SCHEMAS = {"ServiceMonitor"}
MASTER = f"{RELEASE}-master"
HEADLESS = f"{MASTER}-headless"
DOMAIN = f"{HEADLESS}.{NAMESPACE}.svc.cluster.local"


def domain(r: Rendered) -> str:
    return f"{HEADLESS}.{NAMESPACE}.svc.{r.values.get('clusterDomain', 'cluster.local')}"


def master_container(r: Rendered) -> dict[str, Any]:
    pod = r.statefulset["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "master"]
    return container


def replicas(r: Rendered) -> int:
    return int(r.values.get("master", {}).get("replicas", 3))


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- every value set -------------------------------------------------------------


def test_every_object_is_valid_for_kubernetes(each_set: Rendered) -> None:
    checked = 0
    for version in KUBE_VERSIONS:
        for obj in each_set.objects:
            if obj["kind"] in NOT_IN_KUBERNETES_SCHEMAS:
                continue
            kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
    assert checked >= 2 * 5


def test_the_schema_check_catches_bad_objects(render: Any) -> None:
    sts = copy.deepcopy(render().statefulset)
    sts["spec"]["podManagmentPolicy"] = "Parallel"  # misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, KUBE_VERSIONS[0], strict=True)
    sts = copy.deepcopy(render().statefulset)
    sts["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, KUBE_VERSIONS[0], strict=True)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_is_clean(name: str) -> None:
    report = helm.lint(CHART, value_set(name), strict=True, kube_version="v1.27.0")
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == []


def test_objects_carry_namespace_and_standard_labels(each_set: Rendered) -> None:
    for obj in each_set.objects:
        meta = obj["metadata"]
        assert meta["namespace"] == NAMESPACE, meta["name"]
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == "agentflow"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        for key, value in each_set.values.get("commonLabels", {}).items():
            assert labels[key] == value


def test_peer_list_matches_the_replica_count(each_set: Rendered) -> None:
    n = replicas(each_set)
    sts = each_set.statefulset
    assert sts["metadata"]["name"] == MASTER
    assert sts["spec"]["replicas"] == n
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == HEADLESS
    container = master_container(each_set)
    assert "command" not in container  # the image's tini stays PID 1
    assert container["args"][0] == "agentflow-master"
    grpc_port = {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"]

    expected = {f"{MASTER}-{i}": f"{MASTER}-{i}.{domain(each_set)}:{grpc_port}" for i in range(n)}
    (peers,) = flags(container["args"])["--peers"]
    parsed = dict(item.split("=", 1) for item in peers.split(","))
    assert parsed == expected

    # Each pod (node id = pod name) finds itself in the list and advertises the same
    # address the others dial.
    for pod_name, address in expected.items():
        env = container_env(container, pod_name)
        args = flags([expand(a, env) for a in container["args"]])
        assert args["--node-id"] == [pod_name]
        assert args["--advertise"] == [address]
        assert args["--port"] == [str(grpc_port)]
        assert args["--mode"] == ["master"]

    # Workers and clients inside the cluster get the same addresses.
    config = each_set.one("ConfigMap", f"{RELEASE}-config")
    assert config["data"]["MASTER_URL"].split(",") == list(expected.values())
    for deployment in each_set.all("Deployment"):
        (worker,) = deployment["spec"]["template"]["spec"]["containers"]
        assert flags(worker["args"])["--master-url"] == [config["data"]["MASTER_URL"]]


def test_headless_service_publishes_masters_before_they_are_ready(each_set: Rendered) -> None:
    svc = each_set.one("Service", HEADLESS)
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    pod_labels = each_set.statefulset["spec"]["template"]["metadata"]["labels"]
    assert matches(svc["spec"]["selector"], pod_labels)


def test_pdb_keeps_a_raft_majority(each_set: Rendered) -> None:
    n = replicas(each_set)
    pdb = each_set.maybe("PodDisruptionBudget", MASTER)
    if n == 1:
        assert pdb is None  # it would block every node drain and protect nothing
        return
    assert pdb is not None
    assert pdb["spec"]["minAvailable"] == n // 2 + 1
    assert "maxUnavailable" not in pdb["spec"]
    pod_labels = each_set.statefulset["spec"]["template"]["metadata"]["labels"]
    assert matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    # ...and selects no worker.
    for deployment in each_set.all("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert not matches(pdb["spec"]["selector"]["matchLabels"], labels)


def test_probes_point_at_the_ports_and_paths_the_master_serves(each_set: Rendered) -> None:
    container = master_container(each_set)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = flags(container["args"])
    # The processes listen where the container ports say.
    assert args["--port"] == [str(ports["grpc"])]
    assert args["--http-port"] == [str(ports["http"])]
    assert args["--host"] == ["0.0.0.0"]

    def port_of(handler: dict[str, Any]) -> int:
        port = handler["port"]
        return ports[port] if isinstance(port, str) else int(port)

    tls = each_set.values.get("tls", {}).get("enabled", False)
    for kind, path in (("startupProbe", "/health"), ("livenessProbe", "/health")):
        probe = container[kind]
        assert probe["httpGet"]["path"] == path
        assert port_of(probe["httpGet"]) == ports["http"]
    readiness = container["readinessProbe"]
    if tls:  # the kubelet's gRPC probe cannot speak TLS
        assert readiness["httpGet"]["path"] == "/ready"
        assert port_of(readiness["httpGet"]) == ports["http"]
    else:
        assert port_of(readiness["grpc"]) == ports["grpc"]
        assert readiness["grpc"].get("service", "") == ""


def test_shutdown_leaves_time_for_the_leadership_handover(each_set: Rendered) -> None:
    pod = each_set.statefulset["spec"]["template"]["spec"]
    container = master_container(each_set)
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] - int(sleep[1]) >= 10


def test_master_data_lives_on_a_volume_per_pod(each_set: Rendered) -> None:
    sts = each_set.statefulset
    container = master_container(each_set)
    (data_dir,) = flags(container["args"])["--data-dir"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert Path(data_dir).is_relative_to(mounts["data"])
    persistent = each_set.values.get("master", {}).get("persistence", {}).get("enabled", True)
    claims = {c["metadata"]["name"]: c for c in sts["spec"].get("volumeClaimTemplates", [])}
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    if persistent:
        assert "data" in claims and "data" not in volumes
        assert claims["data"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    else:
        assert not claims and "emptyDir" in volumes["data"]


def test_every_container_runs_as_non_root(each_set: Rendered) -> None:
    seen = 0
    for obj, pod in each_set.workloads():
        pod_sc = pod.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, obj["metadata"]["name"]
        for c in containers(pod):
            sc = c.get("securityContext", {})
            where = f"{obj['metadata']['name']}/{c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, where
            assert sc.get("runAsGroup", pod_sc.get("runAsGroup", 0)) != 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            # A read-only root needs somewhere to write temporary files.
            assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])}, where
            seen += 1
    assert seen >= 1


def test_references_resolve_within_the_release(each_set: Rendered) -> None:
    """Every volume, env source and Service points at something that exists."""
    secrets = {s["metadata"]["name"]: s for s in each_set.all("Secret")}
    configmaps = {c["metadata"]["name"]: c for c in each_set.all("ConfigMap")}
    external = {
        each_set.values.get("tls", {}).get("existingSecret"),
        each_set.values.get("tls", {}).get("clientExistingSecret"),
        each_set.values.get("auth", {}).get("existingSecret"),
    } - {None, ""}
    for obj, pod in each_set.workloads():
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        claims = {
            c["metadata"]["name"] for c in obj.get("spec", {}).get("volumeClaimTemplates", [])
        }
        if obj["kind"] == "Pod":
            claims = set()
        for v in volumes.values():
            if "secret" in v and v["secret"]["secretName"] not in external:
                secret = secrets[v["secret"]["secretName"]]
                for item in v["secret"].get("items", []):
                    assert item["key"] in secret["data"]
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps
        for c in containers(pod):
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes or m["name"] in claims, m["name"]
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in configmaps
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] not in external:
                    assert ref["key"] in secrets[ref["name"]]["data"]
                field = e.get("valueFrom", {}).get("resourceFieldRef")
                if field:
                    assert field["containerName"] == c["name"]
    account_values = each_set.values.get("serviceAccount", {})
    if account_values.get("create", True):
        account = each_set.one("ServiceAccount")["metadata"]["name"]
    else:
        assert not each_set.all("ServiceAccount")
        account = account_values["name"]
    for _, pod in each_set.workloads():
        assert pod["serviceAccountName"] == account
        assert pod["automountServiceAccountToken"] is False


def test_services_reach_the_masters_by_named_ports(each_set: Rendered) -> None:
    pod = each_set.statefulset["spec"]["template"]
    names = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
    for svc in each_set.all("Service"):
        assert matches(svc["spec"]["selector"], pod["metadata"]["labels"])
        assert {p["targetPort"] for p in svc["spec"]["ports"]} == {"grpc", "http"} <= names
    client = each_set.one("Service", RELEASE)
    assert client["spec"].get("publishNotReadyAddresses", False) is False


def test_worker_pools_are_deployments_with_their_settings(each_set: Rendered) -> None:
    pools = each_set.values.get("workers", {}).get("pools", [{"name": "default", "replicas": 2}])
    deployments = {d["metadata"]["name"]: d for d in each_set.all("Deployment")}
    assert set(deployments) == {f"{RELEASE}-worker-{p['name']}" for p in pools}
    for pool in pools:
        d = deployments[f"{RELEASE}-worker-{pool['name']}"]
        autoscaled = pool.get("autoscaling", {}).get("enabled", False)
        assert ("replicas" in d["spec"]) is not autoscaled
        if not autoscaled:
            assert d["spec"]["replicas"] == pool.get("replicas", 1)
        pod = d["spec"]["template"]
        assert matches(d["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
        (worker,) = pod["spec"]["containers"]
        assert "command" not in worker  # the image's tini stays PID 1
        assert worker["args"][0] == "agentflow-worker"
        env = container_env(worker, "pod-x")
        args = flags([expand(a, env) for a in worker["args"]])
        assert args["--group"] == [pool.get("group", "default")]
        assert args["--worker-id"] == ["pod-x"]
        assert sorted(args.get("--label", [])) == sorted(
            f"{k}={v}" for k, v in pool.get("labels", {}).items()
        )
        # Advertised resources come from the container's own limits, not psutil's view
        # of the whole node.
        fields = {
            e["name"]: e["valueFrom"]["resourceFieldRef"]
            for e in worker["env"]
            if "resourceFieldRef" in e.get("valueFrom", {})
        }
        if "cpuCores" in pool:  # ...unless the pool says otherwise
            assert args["--cpu-cores"] == [str(pool["cpuCores"])]
        else:
            assert args["--cpu-cores"] == ["$(AGENTFLOW_CPU_CORES)"]
            assert fields["AGENTFLOW_CPU_CORES"]["resource"] == "limits.cpu"
        if "memoryMb" in pool:
            assert args["--memory-mb"] == [str(pool["memoryMb"])]
        else:
            assert args["--memory-mb"] == ["$(AGENTFLOW_MEMORY_MB)"]
            assert fields["AGENTFLOW_MEMORY_MB"] == {
                "containerName": "worker",
                "resource": "limits.memory",
                "divisor": "1Mi",
            }


def test_gpu_pools_request_gpus_and_others_do_not(each_set: Rendered) -> None:
    pools = {p["name"]: p for p in each_set.values.get("workers", {}).get("pools", [])}
    for d in each_set.all("Deployment"):
        pool = pools.get(d["metadata"]["labels"]["agentflow.io/pool"], {})
        gpus = pool.get("gpu", 0)
        spec = d["spec"]["template"]["spec"]
        (worker,) = spec["containers"]
        resources = worker["resources"]
        assert flags(worker["args"])["--gpu-count"] == [str(gpus)]
        tolerations = spec.get("tolerations", [])
        gpu_toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        if gpus:
            assert resources["limits"]["nvidia.com/gpu"] == gpus
            assert resources["requests"]["nvidia.com/gpu"] == gpus
            assert gpu_toleration in tolerations
            for t in pool.get("tolerations", []):
                assert t in tolerations
        else:
            assert "nvidia.com/gpu" not in resources.get("limits", {})
            assert gpu_toleration not in tolerations


def test_notes_tell_how_to_reach_the_cluster(each_set: Rendered) -> None:
    notes = each_set.notes
    cluster_domain = each_set.values.get("clusterDomain", "cluster.local")
    grpc_port = each_set.values.get("master", {}).get("ports", {}).get("grpc", 6767)
    assert f"{RELEASE}.{NAMESPACE}.svc.{cluster_domain}:{grpc_port}" in notes
    tests = each_set.values.get("tests", {}).get("enabled", True)
    assert (f"helm test {RELEASE}" in notes) is tests
    assert "cluster status" in notes
    insecure = not (
        each_set.values.get("tls", {}).get("enabled")
        or each_set.values.get("auth", {}).get("enabled")
    )
    assert ("--insecure" in notes) is insecure
    assert ("does not implement them yet" in notes) is not insecure


# --- particular value sets -------------------------------------------------------


def test_defaults(render: Any) -> None:
    r = render(value_set("default"))
    container = master_container(r)
    assert "--insecure" in container["args"]  # no TLS and no tokens yet
    affinity = r.statefulset["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert container["image"] == "agentflow:0.1.0"
    assert {o["kind"] for o in r.objects} >= {
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "Deployment",
        "ConfigMap",
        "ServiceAccount",
        "Pod",
    }
    assert not r.all("NetworkPolicy") and not r.all("Secret") and not r.all("ServiceMonitor")


def test_five_masters_spread_over_nodes_behind_a_load_balancer(render: Any) -> None:
    r = render(value_set("five-masters"))
    pod = r.statefulset["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert matches(
        term["labelSelector"]["matchLabels"], r.statefulset["spec"]["selector"]["matchLabels"]
    )
    claim = r.statefulset["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["storageClassName"] == "fast-ssd"
    assert claim["resources"]["requests"]["storage"] == "20Gi"
    client = r.one("Service", RELEASE)["spec"]
    assert client["type"] == "LoadBalancer"
    assert client["loadBalancerSourceRanges"] == ["10.0.0.0/8"]
    assert r.one("ConfigMap", f"{RELEASE}-config")["data"]["AGENTFLOW_LOG_LEVEL"] == "debug"


def test_gpu_pool_and_autoscaled_pool(render: Any) -> None:
    r = render(value_set("gpu-pool"))
    gpu = r.one("Deployment", f"{RELEASE}-worker-gpu")["spec"]["template"]["spec"]
    assert gpu["runtimeClassName"] == "nvidia"
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert gpu["terminationGracePeriodSeconds"] == 600
    env = {e["name"]: e.get("value") for e in gpu["containers"][0]["env"]}
    assert env["WORKER_MAX_CONCURRENT_TASKS"] == "2"
    assert env["WORKER_TASK_MEMORY_LIMIT_MB"] == "12288"
    assert "WORKER_TASK_CPU_TIME_LIMIT_SEC" not in env
    # The pool's limits replace the default limits; the default requests would have
    # been kept, but the pool sets its own.
    assert gpu["containers"][0]["resources"]["limits"]["cpu"] == "8"

    (hpa,) = r.all("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{RELEASE}-worker-cpu",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 20)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert targets["cpu"] == {"type": "Utilization", "averageUtilization": 70}
    assert targets["memory"] == {"type": "Utilization", "averageUtilization": 80}


def test_pool_values_override_defaults_even_when_false_or_zero(render: Any) -> None:
    r = render(
        {
            "workers": {
                "defaults": {"gpu": 1, "replicas": 3},
                "pools": [{"name": "idle", "replicas": 0, "gpuToleration": False, "cpuCores": 1.5}],
            }
        }
    )
    spec = r.one("Deployment", f"{RELEASE}-worker-idle")["spec"]
    assert spec["replicas"] == 0
    assert "tolerations" not in spec["template"]["spec"]
    (worker,) = spec["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["resources"]["requests"]["cpu"] == "500m"  # default requests kept
    cores = next(e for e in worker["env"] if e["name"] == "AGENTFLOW_CPU_CORES")
    assert cores == {"name": "AGENTFLOW_CPU_CORES", "value": "1.5"}


def test_single_master_without_volume_or_workers(render: Any) -> None:
    r = render(value_set("single-master"))
    (peers,) = flags(master_container(r)["args"])["--peers"]
    assert peers == f"{MASTER}-0={MASTER}-0.{DOMAIN}:6767"
    assert "affinity" not in r.statefulset["spec"]["template"]["spec"]
    assert not r.all("Deployment") and not r.all("Pod") and not r.all("PodDisruptionBudget")
    assert "master.persistence.enabled is false" in r.notes


def test_secure_set_passes_tls_and_token_files_and_drops_insecure(render: Any) -> None:
    r = render(value_set("secure"))
    container = master_container(r)
    args = flags(container["args"])
    assert "--insecure" not in args
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in r.statefulset["spec"]["template"]["spec"]["volumes"]}
    for flag, key in (("--tls-cert", "tls.crt"), ("--tls-key", "tls.key"), ("--tls-ca", "ca.crt")):
        (path,) = args[flag]
        assert path == f"{mounts['tls']['mountPath']}/{key}"
        assert key in r.one("Secret", volumes["tls"]["secret"]["secretName"])["data"]
    (token_dir,) = args["--token-dir"]
    assert token_dir == mounts["auth"]["mountPath"]
    tokens = r.one("Secret", f"{RELEASE}-auth")["data"]
    assert set(tokens) == {"admin-token", "client-token", "worker-token"}
    assert base64.b64decode(tokens["client-token"]) == b"a-client-token-chosen-by-the-operator"
    assert len(base64.b64decode(tokens["admin-token"])) == 48
    assert tokens["admin-token"] != tokens["worker-token"]
    for d in r.all("Deployment"):
        env = {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["AGENTFLOW_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "worker-token"
        assert env["AGENTFLOW_CA_CERT"]["value"] == "/etc/agentflow/tls/ca.crt"
    test_pod = r.one("Pod")["spec"]["containers"][0]
    env = {e["name"]: e for e in test_pod["env"]}
    assert env["AGENTFLOW_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "client-token"


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> dict[str, Any]:
    """A TLS handshake in memory; returns the client certificate the server saw."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    client_side = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    pending = {"client": True, "server": True}
    for _ in range(10):
        for name, side, out, peer_in in (
            ("client", client_side, c_out, s_in),
            ("server", server_side, s_out, c_in),
        ):
            if pending[name]:
                try:
                    side.do_handshake()
                    pending[name] = False
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if not any(pending.values()):
            peer = server_side.getpeercert()
            assert peer
            return peer
    raise AssertionError("TLS handshake did not finish")


def test_generated_certificates_give_mutual_tls_on_every_master_name(
    render: Any, tmp_path: Path
) -> None:
    r = render(value_set("secure"))

    def files(secret: str) -> tuple[str, str, str]:
        data = r.one("Secret", secret)["data"]
        paths = []
        for key in ("tls.crt", "tls.key", "ca.crt"):
            path = tmp_path / f"{secret}-{key}"
            path.write_bytes(base64.b64decode(data[key]))
            paths.append(str(path))
        return paths[0], paths[1], paths[2]

    m_crt, m_key, ca = files(f"{RELEASE}-master-tls")
    c_crt, c_key, c_ca = files(f"{RELEASE}-client-tls")
    assert Path(ca).read_bytes() == Path(c_ca).read_bytes()

    def server() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(m_crt, m_key)
        ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
        ctx.load_verify_locations(ca)
        return ctx

    def client(crt: str, key: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca)
        ctx.load_cert_chain(crt, key)
        return ctx

    names = [f"{MASTER}-{i}.{DOMAIN}" for i in range(3)]
    names += [RELEASE, f"{RELEASE}.{NAMESPACE}.svc", "agentflow.example.com", "localhost"]
    for name in names:
        peer = _handshake(server(), client(c_crt, c_key), name)  # worker or CLI -> master
        assert ("commonName", "agentflow-client") in [kv for rdn in peer["subject"] for kv in rdn]
    # A master is the other masters' client too.
    _handshake(server(), client(m_crt, m_key), f"{MASTER}-1.{DOMAIN}")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server(), client(c_crt, c_key), "agentflow.elsewhere.example")


def test_network_policies_admit_only_the_release(render: Any) -> None:
    r = render(value_set("secure"))
    master_np = r.one("NetworkPolicy", MASTER)["spec"]
    worker_np = r.one("NetworkPolicy", f"{RELEASE}-worker")["spec"]
    master_pod = r.statefulset["spec"]["template"]["metadata"]["labels"]
    ports = {p["containerPort"] for p in master_container(r)["ports"]}
    assert matches(master_np["podSelector"]["matchLabels"], master_pod)
    assert set(master_np["policyTypes"]) == {"Ingress", "Egress"}
    (rule,) = master_np["ingress"]
    assert {p["port"] for p in rule["ports"]} == ports
    sources = rule["from"]
    # Workers, other masters and the `helm test` pod are let in; the pod carries the
    # client label that other clients need.
    for obj in [*r.all("Deployment"), r.statefulset]:
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert any(
            matches(s.get("podSelector", {}).get("matchLabels", {}), labels) for s in sources
        )
    test_labels = r.one("Pod")["metadata"]["labels"]
    assert test_labels[f"{RELEASE}-client"] == "true"
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    } in sources

    assert worker_np["ingress"] == []
    for d in r.all("Deployment"):
        assert matches(
            worker_np["podSelector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]
        )
    to_masters = [e for e in worker_np["egress"] if "to" in e]
    assert matches(to_masters[0]["to"][0]["podSelector"]["matchLabels"], master_pod)
    assert {p["port"] for p in to_masters[0]["ports"]} == ports
    assert not matches(worker_np["podSelector"]["matchLabels"], master_pod)


def test_service_monitor_scrapes_every_master(render: Any) -> None:
    r = render(value_set("secure"))
    sm = r.one("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    spec = sm["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selected = [
        s
        for s in r.all("Service")
        if matches(spec["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert [s["metadata"]["name"] for s in selected] == [HEADLESS]  # not-ready masters too
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"


def test_long_release_names_stay_within_kubernetes_name_limits(render: Any) -> None:
    release = "a-release-name-as-long-as-helm-allows-it-53-chars-xyz"
    helm.validate_release_name(release)
    r = render({"workers": {"pools": [{"name": "a-rather-long-pool-name-for-gpus"}]}}, name=release)
    for obj in r.objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
    # "<statefulset>-<ordinal>" is a pod name, a Raft node id and a DNS label, and the
    # controller-revision-hash label adds 11 characters to the StatefulSet name.
    sts = r.statefulset["metadata"]["name"]
    assert len(sts) <= 52
    (peers,) = flags(master_container(r)["args"])["--peers"]
    for item in peers.split(","):
        node, address = item.split("=")
        assert all(len(label) <= 63 for label in address.split(":")[0].split("."))
        assert address.startswith(f"{node}.{r.statefulset['spec']['serviceName']}.")
    for version in KUBE_VERSIONS:
        for obj in r.objects:
            kubernetes_validate.validate(obj, version, strict=True)
