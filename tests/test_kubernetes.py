"""The Kubernetes manifests (deploy/kubernetes): what no API schema can see.

`make k8s-validate` checks each manifest on its own against the API schemas; here they are
checked against each other and against the service's own settings (gunicorn.conf.py run with
the Deployment's environment, config.py's defaults): selectors that match the pod labels,
probes on named ports that wait longer than gunicorn's worker timeout, a termination grace
period that covers preStop and gunicorn's graceful_timeout, requests = limits with as many
workers as CPUs, the Ingress body limit, image tags, removed API versions.

Each check is a function from the loaded manifests to a list of problems. It runs on the
shipped manifests, where it must find none, and on copies broken in memory, where it must
report the breakage: no check can pass by looking at nothing.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import DEFAULT_MAX_BODY_BYTES
from tests.helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import validate_kubernetes

MANIFEST_DIR = REPO_ROOT / "deploy" / "kubernetes"
# File name -> its one YAML document.
Manifests = dict[str, Any]
Check = Callable[[Manifests], list[str]]

# Group-versions Kubernetes has removed entirely, with the release that removed the last kind
# they served (the Kubernetes deprecated API migration guide).
REMOVED_API_VERSIONS = {
    "extensions/v1beta1": "1.22",
    "apps/v1beta1": "1.16",
    "apps/v1beta2": "1.16",
    "networking.k8s.io/v1beta1": "1.22",
    "rbac.authorization.k8s.io/v1beta1": "1.22",
    "scheduling.k8s.io/v1beta1": "1.22",
    "policy/v1beta1": "1.25",
    "batch/v1beta1": "1.25",
    "autoscaling/v2beta1": "1.25",
    "discovery.k8s.io/v1beta1": "1.25",
    "events.k8s.io/v1beta1": "1.25",
    "autoscaling/v2beta2": "1.26",
    "flowcontrol.apiserver.k8s.io/v1beta1": "1.26",
    "flowcontrol.apiserver.k8s.io/v1beta2": "1.29",
    "flowcontrol.apiserver.k8s.io/v1beta3": "1.32",
}

# Kubernetes' defaults for probe fields left out.
PROBE_DEFAULTS = {"periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3}
# Kubernetes' default terminationGracePeriodSeconds; ingress-nginx's default read timeout.
DEFAULT_GRACE_SECONDS = 30
NGINX_DEFAULT_READ_TIMEOUT = 60


# ------------------------------------------------------------------------------- loading


@cache
def _load() -> Manifests:
    loaded: Manifests = {}
    for path in sorted(MANIFEST_DIR.glob("*.yaml")):
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert len(documents) == 1, f"{path.name}: one document per file, found {len(documents)}"
        loaded[path.name] = documents[0]
    return loaded


def manifests() -> Manifests:
    """A fresh copy of every manifest, free to be changed by the test that asked for it."""
    return copy.deepcopy(_load())


def _deployment(m: Manifests) -> Any:
    return m["deployment.yaml"]


def _pod(m: Manifests) -> Any:
    return _deployment(m)["spec"]["template"]["spec"]


def _containers(m: Manifests) -> list[Any]:
    pod = _pod(m)
    return [*pod.get("initContainers", []), *pod["containers"]]


def _main(m: Manifests) -> Any:
    return _pod(m)["containers"][0]


def _env(m: Manifests) -> dict[str, str]:
    """The main container's plain environment values (not those taken from Secrets)."""
    return {e["name"]: e["value"] for e in _main(m).get("env", []) if "value" in e}


def _hpas(m: Manifests) -> dict[str, Any]:
    return {f: d for f, d in m.items() if d.get("kind") == "HorizontalPodAutoscaler"}


def gunicorn_settings(environ: dict[str, str]) -> dict[str, Any]:
    """gunicorn.conf.py's settings as gunicorn computes them in a container with `environ`."""
    code = compile((REPO_ROOT / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec")
    settings: dict[str, Any] = {}
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(environ)
        exec(code, settings)  # noqa: S102 - our own config file, as gunicorn itself loads it
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return settings


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T|m)?$")
_QUANTITY_UNITS = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}


def parse_quantity(value: object) -> Decimal:
    """A Kubernetes resource quantity ("2", "1500m", "1536Mi", 2) as a number."""
    match = _QUANTITY.match(str(value))
    if match is None:
        raise ValueError(f"not a resource quantity: {value!r}")
    return Decimal(match.group(1)) * _QUANTITY_UNITS[match.group(2)]


def parse_nginx_size(value: str) -> int:
    """An nginx size ("12m", "512k", "1g", "1048576") in bytes; nginx's units are binary."""
    match = re.fullmatch(r"([0-9]+)([kKmMgG]?)", value)
    if match is None:
        raise ValueError(f"not an nginx size: {value!r}")
    return int(match.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match.group(2).lower()]


def _unmatched(selector: dict[str, str], labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in selector.items() if labels.get(k) != v}


# ------------------------------------------------------------------------------- checks


def check_selectors(m: Manifests) -> list[str]:
    """Every selector picks the Deployment's pods; every reference names an object here."""
    problems: list[str] = []
    deployment = _deployment(m)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment spec.selector": deployment["spec"]["selector"].get("matchLabels", {}),
        "Service spec.selector": m["service.yaml"]["spec"].get("selector", {}),
        "PodDisruptionBudget spec.selector": m["pdb.yaml"]["spec"]["selector"].get(
            "matchLabels", {}
        ),
    }
    for constraint in _pod(m).get("topologySpreadConstraints", []):
        where = f"topologySpreadConstraints[{constraint['topologyKey']}]"
        selectors[where] = constraint.get("labelSelector", {}).get("matchLabels", {})
    for where, selector in selectors.items():
        if not selector:
            problems.append(f"{where} is empty")
        elif unmatched := _unmatched(selector, pod_labels):
            problems.append(f"{where} {unmatched} does not match the pod labels {pod_labels}")
    service = m["service.yaml"]
    monitor_selector = m["servicemonitor.yaml"]["spec"]["selector"]["matchLabels"]
    if unmatched := _unmatched(monitor_selector, service["metadata"].get("labels", {})):
        problems.append(f"ServiceMonitor selector {unmatched} does not match the Service labels")
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    for file, hpa in _hpas(m).items():
        if hpa["spec"]["scaleTargetRef"] != target:
            problems.append(f"{file}: scaleTargetRef is not {target}")
    for path in m["ingress.yaml"]["spec"]["rules"][0]["http"]["paths"]:
        if path["backend"]["service"]["name"] != service["metadata"]["name"]:
            problems.append("Ingress backend does not name the Service")
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in _pod(m)["volumes"]
        if "persistentVolumeClaim" in v
    }
    if claims != {m["pvc.yaml"]["metadata"]["name"]}:
        problems.append(f"the pod's claims {claims} are not the one in pvc.yaml")
    return problems


def check_named_ports(m: Manifests) -> list[str]:
    """Probes, the Service, the Ingress and the ServiceMonitor all refer to ports by name."""
    problems: list[str] = []
    container = _main(m)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = _env(m)
    expected = {
        "http": int(env.get("PORT", "5000")),
        "metrics": int(env.get("METRICS_PORT", "9102")),
    }
    if ports != expected:
        problems.append(f"container ports {ports} are not {expected} (PORT, METRICS_PORT)")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        port = container.get(probe, {}).get("httpGet", {}).get("port")
        if not isinstance(port, str) or port not in ports:
            problems.append(f"{probe} port {port!r} is not a named container port")
    service_ports = {p["name"]: p for p in m["service.yaml"]["spec"]["ports"]}
    for name, port in service_ports.items():
        if port.get("targetPort") != name or name not in ports:
            problems.append(
                f"Service port {name}: targetPort {port.get('targetPort')!r} is not {name!r}"
            )
    for path in m["ingress.yaml"]["spec"]["rules"][0]["http"]["paths"]:
        port_ref = path["backend"]["service"]["port"]
        if port_ref.get("name") != "http" or "http" not in service_ports:
            problems.append(f"Ingress backend port {port_ref} is not the Service's port `http`")
    for endpoint in m["servicemonitor.yaml"]["spec"]["endpoints"]:
        if endpoint.get("port") != "metrics" or "metrics" not in service_ports:
            problems.append(f"ServiceMonitor port {endpoint.get('port')!r} is not `metrics`")
    return problems


def check_probes(m: Manifests) -> list[str]:
    """Readiness on /readyz, liveness and start-up on /healthz, and none of them acts sooner
    than gunicorn's worker timeout: the kubelet acts after failureThreshold failures in a
    row, at the earliest (failureThreshold - 1) x periodSeconds + timeoutSeconds after a pod
    stops answering."""
    problems: list[str] = []
    worker_timeout = gunicorn_settings(_env(m))["timeout"]
    paths = {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe_name, path in paths.items():
        probe = _main(m).get(probe_name)
        if probe is None:
            problems.append(f"no {probe_name}")
            continue
        if probe.get("httpGet", {}).get("path") != path:
            problems.append(f"{probe_name} does not ask {path}")
        values = {**PROBE_DEFAULTS, **probe}
        window = (values["failureThreshold"] - 1) * values["periodSeconds"] + values[
            "timeoutSeconds"
        ]
        if window <= worker_timeout:
            problems.append(
                f"{probe_name} acts after {window} s, not after gunicorn's timeout of "
                f"{worker_timeout} s"
            )
    return problems


def check_grace_period(m: Manifests) -> list[str]:
    """The grace period outlasts preStop's sleep plus gunicorn's graceful_timeout."""
    sleep = _main(m).get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    if not isinstance(sleep, int) or sleep <= 0:
        return ["no preStop sleep: the pod would stop before the endpoint removal spreads"]
    graceful = gunicorn_settings(_env(m))["graceful_timeout"]
    grace = _pod(m).get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    if grace <= sleep + graceful:
        return [
            f"terminationGracePeriodSeconds {grace} is not longer than preStop {sleep} s + "
            f"graceful_timeout {graceful} s"
        ]
    return []


def check_resources(m: Manifests) -> list[str]:
    """requests = limits, an integer CPU count, and as many workers as CPUs, one thread each."""
    problems: list[str] = []
    for container in _containers(m):
        resources = container.get("resources", {})
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        for resource in ("cpu", "memory"):
            if resource not in limits or resource not in requests:
                problems.append(f"{container['name']}: {resource} request or limit missing")
            elif parse_quantity(requests[resource]) != parse_quantity(limits[resource]):
                problems.append(
                    f"{container['name']}: {resource} request {requests[resource]} is not the "
                    f"limit {limits[resource]}"
                )
    cpu_limit = _main(m).get("resources", {}).get("limits", {}).get("cpu")
    if cpu_limit is None:
        return problems
    cpus = parse_quantity(cpu_limit)
    if cpus != cpus.to_integral_value() or cpus < 1:
        return [*problems, f"CPU limit {cpu_limit} is not a whole number of CPUs"]
    env = _env(m)
    if env.get("WEB_CONCURRENCY") != str(int(cpus)):
        problems.append(
            f"WEB_CONCURRENCY {env.get('WEB_CONCURRENCY')!r} is not the CPU limit {cpus}"
        )
    workers = gunicorn_settings(env)["workers"]
    threads = int(env.get("INTRA_OP_THREADS", "1"))
    if workers * threads != cpus:
        problems.append(f"{workers} workers x {threads} threads is not the CPU limit {cpus}")
    return problems


def check_security(m: Manifests) -> list[str]:
    """Non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp, and
    writable emptyDirs where the service writes."""
    problems: list[str] = []
    pod = _pod(m)
    pod_security = pod.get("securityContext", {})
    if pod_security.get("runAsNonRoot") is not True:
        problems.append("the pod does not set runAsNonRoot: true")
    for container in _containers(m):
        name, security = container["name"], container.get("securityContext", {})
        seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
        if seccomp.get("type") != "RuntimeDefault":
            problems.append(f"{name}: seccomp profile is not RuntimeDefault")
        if security.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: the root filesystem is writable")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if security.get("privileged", False) is not False:
            problems.append(f"{name}: privileged")
        if "ALL" not in security.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}: capabilities are not all dropped")
        if security.get("capabilities", {}).get("add"):
            problems.append(f"{name}: adds capabilities")
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    mounts = {v["mountPath"]: v["name"] for v in _main(m).get("volumeMounts", [])}
    for folder in ("/tmp", _env(m).get("PROMETHEUS_MULTIPROC_DIR")):  # noqa: S108 - a mount
        if folder is None:
            problems.append("PROMETHEUS_MULTIPROC_DIR is not set")
        elif mounts.get(folder) not in empty_dirs:
            problems.append(f"{folder} is not an emptyDir")
    return problems


def check_topology_spread(m: Manifests) -> list[str]:
    keys = {c["topologyKey"] for c in _pod(m).get("topologySpreadConstraints", [])}
    wanted = {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    return [f"no topology spread over {key}" for key in sorted(wanted - keys)]


def check_ingress(m: Manifests) -> list[str]:
    """The Ingress lets through any body the service accepts and waits as long as gunicorn."""
    problems: list[str] = []
    annotations = m["ingress.yaml"]["metadata"].get("annotations", {})
    max_body = int(_env(m).get("MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES)))
    limit = parse_nginx_size(annotations.get("nginx.ingress.kubernetes.io/proxy-body-size", "1m"))
    if limit != 0 and limit < max_body:  # 0: no limit at all
        problems.append(
            f"the Ingress body limit of {limit} bytes is below MAX_BODY_BYTES={max_body}"
        )
    worker_timeout = gunicorn_settings(_env(m))["timeout"]
    read_timeout = int(
        annotations.get(
            "nginx.ingress.kubernetes.io/proxy-read-timeout", str(NGINX_DEFAULT_READ_TIMEOUT)
        )
    )
    if read_timeout <= worker_timeout:
        problems.append(
            f"the Ingress read timeout of {read_timeout} s is not longer than gunicorn's "
            f"{worker_timeout} s"
        )
    return problems


def check_images(m: Manifests) -> list[str]:
    """Every image names a release: a tag other than `latest`, or a digest."""
    problems: list[str] = []
    for container in _containers(m):
        image = container["image"]
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition(":")
        if not name or "/" in tag:  # no tag: a registry port's colon is not one
            problems.append(f"{container['name']}: image {image} has no tag (means latest)")
        elif tag == "latest":
            problems.append(f"{container['name']}: image {image} is :latest")
    return problems


def check_api_versions(m: Manifests) -> list[str]:
    problems: list[str] = []
    for file, document in m.items():
        removed_in = REMOVED_API_VERSIONS.get(document.get("apiVersion"))
        if removed_in is not None:
            problems.append(
                f"{file}: {document['apiVersion']} {document['kind']} was removed in Kubernetes "
                f"{removed_in}"
            )
    return problems


def check_scaling(m: Manifests) -> list[str]:
    """The autoscaler owns the replica count; kustomize applies exactly one autoscaler; the
    disruption budget always leaves a pod serving."""
    problems: list[str] = []
    if "replicas" in _deployment(m)["spec"]:
        problems.append(
            "the Deployment sets replicas: every apply would reset the autoscaler's count"
        )
    listed = m["kustomization.yaml"]["resources"]
    missing = [f for f in listed if not (MANIFEST_DIR / f).is_file()]
    if missing:
        problems.append(f"kustomization.yaml lists missing files {missing}")
    applied_hpas = [f for f in listed if f in _hpas(m)]
    if len(applied_hpas) != 1:
        problems.append(
            f"kustomization.yaml applies {applied_hpas}: one autoscaler, not {len(applied_hpas)}"
        )
    max_unavailable = m["pdb.yaml"]["spec"].get("maxUnavailable")
    for file, hpa in _hpas(m).items():
        min_replicas = hpa["spec"].get("minReplicas", 1)
        if not isinstance(max_unavailable, int) or max_unavailable >= min_replicas:
            problems.append(
                f"{file}: the budget's maxUnavailable {max_unavailable!r} could take all of "
                f"{min_replicas} replicas"
            )
    workers = int(_env(m)["WEB_CONCURRENCY"])
    for metric in m["hpa-inflight.yaml"]["spec"]["metrics"]:
        if metric["pods"]["metric"]["name"] != "detection_inflight_requests":
            problems.append(f"hpa-inflight.yaml scales on {metric['pods']['metric']['name']}")
        target = parse_quantity(metric["pods"]["target"]["averageValue"])
        if not 0 < target < workers:
            problems.append(
                f"hpa-inflight.yaml: {target} in flight per pod is not below its {workers} workers"
            )
    return problems


def check_secrets_and_volumes(m: Manifests) -> list[str]:
    """Tokens and the database URL come from Secrets; DATA_DIR is a ReadWriteMany volume."""
    problems: list[str] = []
    env = {e["name"]: e for e in _main(m).get("env", [])}
    for name in ("API_TOKENS", "REPO_DB_URL"):
        if "secretKeyRef" not in env.get(name, {}).get("valueFrom", {}):
            problems.append(f"{name} is not taken from a Secret")
    data_dir = _env(m).get("DATA_DIR")
    mounts = {v["mountPath"]: v["name"] for v in _main(m).get("volumeMounts", [])}
    volumes = {v["name"]: v for v in _pod(m).get("volumes", [])}
    volume = volumes.get(mounts.get(data_dir or "", ""), {})
    if "persistentVolumeClaim" not in volume:
        problems.append(f"DATA_DIR {data_dir!r} is not a mounted claim")
    if "ReadWriteMany" not in m["pvc.yaml"]["spec"]["accessModes"]:
        problems.append("the data claim is not ReadWriteMany: the pods share it")
    return problems


CHECKS = [
    pytest.param(check_selectors, id="selectors"),
    pytest.param(check_named_ports, id="named-ports"),
    pytest.param(check_probes, id="probes"),
    pytest.param(check_grace_period, id="grace-period"),
    pytest.param(check_resources, id="resources"),
    pytest.param(check_security, id="security"),
    pytest.param(check_topology_spread, id="topology-spread"),
    pytest.param(check_ingress, id="ingress"),
    pytest.param(check_images, id="images"),
    pytest.param(check_api_versions, id="api-versions"),
    pytest.param(check_scaling, id="scaling"),
    pytest.param(check_secrets_and_volumes, id="secrets-and-volumes"),
]


@pytest.mark.parametrize("check", CHECKS)
def test_shipped_manifests_pass(check: Check) -> None:
    assert check(manifests()) == []


# ------------------------------------------------------------------------------- breakages


def _set(file: str, *path: str | int, value: object) -> Callable[[Manifests], None]:
    """A breakage that sets the field at `path` (keys and list indexes) in one file."""

    def mutate(m: Manifests) -> None:
        node: Any = m[file]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _set_env(name: str, value: str) -> Callable[[Manifests], None]:
    """A breakage that gives the main container's variable `name` a plain value."""

    def mutate(m: Manifests) -> None:
        for entry in _main(m)["env"]:
            if entry["name"] == name:
                entry.clear()
                entry.update({"name": name, "value": value})
                return
        raise KeyError(f"the Deployment sets no {name}")

    return mutate


def _together(*mutations: Callable[[Manifests], None]) -> Callable[[Manifests], None]:
    def mutate(m: Manifests) -> None:
        for mutation in mutations:
            mutation(m)

    return mutate


def _add_to_kustomization(file: str) -> Callable[[Manifests], None]:
    def mutate(m: Manifests) -> None:
        m["kustomization.yaml"]["resources"].append(file)

    return mutate


POD = ("spec", "template", "spec")
CONTAINER = (*POD, "containers", 0)
D = "deployment.yaml"

BREAKAGES = [
    # A selector that picks no pod: the Deployment would not even be accepted, the others
    # would select nothing.
    pytest.param(
        _set(D, "spec", "selector", "matchLabels", "app.kubernetes.io/name", value="other"),
        check_selectors,
        "Deployment spec.selector",
        id="deployment-selector",
    ),
    pytest.param(
        _set("service.yaml", "spec", "selector", "app.kubernetes.io/component", value="worker"),
        check_selectors,
        "Service spec.selector",
        id="service-selector",
    ),
    pytest.param(
        _set("pdb.yaml", "spec", "selector", "matchLabels", value={}),
        check_selectors,
        "PodDisruptionBudget spec.selector is empty",
        id="pdb-selector-empty",
    ),
    pytest.param(
        _set(
            "servicemonitor.yaml",
            "spec",
            "selector",
            "matchLabels",
            "app.kubernetes.io/name",
            value="x",
        ),
        check_selectors,
        "ServiceMonitor selector",
        id="servicemonitor-selector",
    ),
    pytest.param(
        _set("hpa-inflight.yaml", "spec", "scaleTargetRef", "name", value="detection"),
        check_selectors,
        "hpa-inflight.yaml: scaleTargetRef",
        id="hpa-target",
    ),
    # Port numbers where names belong, and names that lead nowhere.
    pytest.param(
        _set(D, *CONTAINER, "livenessProbe", "httpGet", "port", value=5000),
        check_named_ports,
        "livenessProbe port 5000",
        id="numeric-probe-port",
    ),
    pytest.param(
        _set("service.yaml", "spec", "ports", 1, "targetPort", value="prometheus"),
        check_named_ports,
        "Service port metrics",
        id="service-target-port",
    ),
    pytest.param(
        _set(D, *CONTAINER, "ports", 0, "containerPort", value=8000),
        check_named_ports,
        "(PORT, METRICS_PORT)",
        id="container-port-not-PORT",
    ),
    pytest.param(
        _set("servicemonitor.yaml", "spec", "endpoints", 0, "port", value="http-metrics"),
        check_named_ports,
        "ServiceMonitor port",
        id="servicemonitor-port",
    ),
    # Probes that give up before gunicorn would, or ask the wrong route.
    pytest.param(
        _set(D, *CONTAINER, "livenessProbe", "failureThreshold", value=3),
        check_probes,
        "livenessProbe acts after 25 s",
        id="liveness-too-eager",
    ),
    pytest.param(
        _together(
            _set(D, *CONTAINER, "readinessProbe", "periodSeconds", value=60),
            _set(D, *CONTAINER, "readinessProbe", "failureThreshold", value=3),
            _set_env("GUNICORN_TIMEOUT", "300"),
        ),
        check_probes,
        "readinessProbe acts after 125 s, not after gunicorn's timeout of 300 s",
        id="worker-timeout-raised",
    ),
    pytest.param(
        _set(D, *CONTAINER, "readinessProbe", "httpGet", "path", value="/healthz"),
        check_probes,
        "readinessProbe does not ask /readyz",
        id="readiness-on-healthz",
    ),
    # Killed before gunicorn has drained.
    pytest.param(
        _set(D, *POD, "terminationGracePeriodSeconds", value=35),
        check_grace_period,
        "terminationGracePeriodSeconds 35",
        id="grace-too-short",
    ),
    pytest.param(
        _set(D, *CONTAINER, "lifecycle", value={}),
        check_grace_period,
        "no preStop sleep",
        id="no-prestop",
    ),
    # Burstable QoS, a fractional CPU, workers out of step with the CPUs.
    pytest.param(
        _set(D, *CONTAINER, "resources", "requests", "memory", value="1Gi"),
        check_resources,
        "memory request 1Gi is not the limit",
        id="requests-below-limits",
    ),
    pytest.param(
        _together(
            _set(D, *CONTAINER, "resources", "requests", "cpu", value="1500m"),
            _set(D, *CONTAINER, "resources", "limits", "cpu", value="1500m"),
        ),
        check_resources,
        "not a whole number",
        id="fractional-cpu",
    ),
    pytest.param(
        _set_env("WEB_CONCURRENCY", "4"),
        check_resources,
        "WEB_CONCURRENCY '4'",
        id="workers-not-cpus",
    ),
    pytest.param(
        _set_env("INTRA_OP_THREADS", "2"),
        check_resources,
        "2 workers x 2 threads",
        id="threads-oversubscribe",
    ),
    # Hardening taken away.
    pytest.param(
        _set(D, *CONTAINER, "securityContext", "readOnlyRootFilesystem", value=False),
        check_security,
        "root filesystem is writable",
        id="writable-root",
    ),
    pytest.param(
        _set(D, *CONTAINER, "securityContext", "capabilities", value={"drop": ["NET_RAW"]}),
        check_security,
        "not all dropped",
        id="capabilities-kept",
    ),
    pytest.param(
        _set(D, *POD, "securityContext", "seccompProfile", value={"type": "Unconfined"}),
        check_security,
        "seccomp profile is not RuntimeDefault",
        id="seccomp-unconfined",
    ),
    pytest.param(
        _set(
            D, *POD, "volumes", 1, value={"name": "metrics", "hostPath": {"path": "/run/metrics"}}
        ),
        check_security,
        "/run/metrics is not an emptyDir",
        id="metrics-not-emptydir",
    ),
    pytest.param(
        _set(D, *POD, "topologySpreadConstraints", value=[]),
        check_topology_spread,
        "topology.kubernetes.io/zone",
        id="no-spread",
    ),
    # The Ingress refusing bodies the service accepts, or cutting long requests.
    pytest.param(
        _set(
            "ingress.yaml",
            "metadata",
            "annotations",
            "nginx.ingress.kubernetes.io/proxy-body-size",
            value="8m",
        ),
        check_ingress,
        "below MAX_BODY_BYTES=10485760",
        id="body-size-too-small",
    ),
    pytest.param(
        _set_env("MAX_BODY_BYTES", str(64 * 2**20)),
        check_ingress,
        "below MAX_BODY_BYTES=67108864",
        id="service-limit-raised",
    ),
    pytest.param(
        _set("ingress.yaml", "metadata", "annotations", value={}),
        check_ingress,
        "below MAX_BODY_BYTES",  # ingress-nginx's default limit is 1m
        id="ingress-defaults",
    ),
    pytest.param(
        _set(D, *CONTAINER, "image", value="registry.example.com/detection-service:latest"),
        check_images,
        "is :latest",
        id="latest-tag",
    ),
    pytest.param(
        _set(D, *CONTAINER, "image", value="registry.example.com:5000/detection-service"),
        check_images,
        "has no tag",
        id="untagged-behind-registry-port",
    ),
    pytest.param(
        _set("pdb.yaml", "apiVersion", value="policy/v1beta1"),
        check_api_versions,
        "removed in Kubernetes 1.25",
        id="removed-api",
    ),
    pytest.param(
        _set(D, "spec", "replicas", value=3),
        check_scaling,
        "sets replicas",
        id="replicas-with-hpa",
    ),
    pytest.param(
        _add_to_kustomization("hpa-inflight.yaml"),
        check_scaling,
        "one autoscaler, not 2",
        id="two-autoscalers",
    ),
    pytest.param(
        _set("pdb.yaml", "spec", "maxUnavailable", value=2),
        check_scaling,
        "could take all of 2 replicas",
        id="budget-takes-all",
    ),
    pytest.param(
        _set(
            "hpa-inflight.yaml", "spec", "metrics", 0, "pods", "target", "averageValue", value="4"
        ),
        check_scaling,
        "not below its 2 workers",
        id="inflight-target-above-workers",
    ),
    pytest.param(
        _set_env("REPO_DB_URL", "postgresql+psycopg://app:secret@db/app"),
        check_secrets_and_volumes,
        "REPO_DB_URL is not taken from a Secret",
        id="db-url-in-manifest",
    ),
    pytest.param(
        _set("pvc.yaml", "spec", "accessModes", value=["ReadWriteOnce"]),
        check_secrets_and_volumes,
        "not ReadWriteMany",
        id="data-claim-rwo",
    ),
]


@pytest.mark.parametrize(("breakage", "check", "reported"), BREAKAGES)
def test_check_reports_a_breakage(
    breakage: Callable[[Manifests], None], check: Check, reported: str
) -> None:
    broken = manifests()
    breakage(broken)
    problems = check(broken)
    assert any(reported in problem for problem in problems), problems
    assert check(manifests()) == []  # the breakage stayed in its own copy


@pytest.mark.parametrize(
    ("quantity", "value"),
    [
        pytest.param("2", Decimal(2), id="string-2"),
        pytest.param(2, Decimal(2), id="int-2"),
        # milli-CPUs that make a whole CPU
        pytest.param("2000m", Decimal(2), id="2000m"),
        pytest.param("1500m", Decimal("1.5"), id="1500m"),
        pytest.param("1536Mi", Decimal(1536 * 2**20), id="1536Mi"),
        pytest.param("1.5Gi", Decimal(1536 * 2**20), id="1.5Gi"),
        pytest.param("2G", Decimal(2 * 10**9), id="2G"),
    ],
)
def test_parse_quantity(quantity: object, value: Decimal) -> None:
    assert parse_quantity(quantity) == value


@pytest.mark.parametrize(
    ("size", "value"),
    [
        pytest.param("0", 0, id="0"),
        pytest.param("1048576", 2**20, id="bytes"),
        pytest.param("512k", 512 * 2**10, id="512k"),
        pytest.param("12m", 12 * 2**20, id="12m"),
        pytest.param("1G", 2**30, id="1G"),
    ],
)
def test_parse_nginx_size(size: str, value: int) -> None:
    assert parse_nginx_size(size) == value


# ------------------------------------------------------------------------------- the validator


def test_validator_passes_the_shipped_manifests() -> None:
    files = validate_kubernetes.manifest_files([MANIFEST_DIR])
    outcomes = validate_kubernetes.validate_files(files, validate_kubernetes.KUBERNETES_VERSIONS)
    assert [o.line() for o in outcomes if o.status == "fail"] == []
    skipped = {o.source for o in outcomes if o.status == "skip"}
    assert skipped == {
        "deploy/kubernetes/kustomization.yaml#1",
        "deploy/kubernetes/servicemonitor.yaml#1",
    }
    # Every other document passed against both versions.
    validated = {(o.source, o.version) for o in outcomes if o.status == "ok"}
    assert len(validated) == (len(files) - len(skipped)) * 2


def _broken_document(change: Callable[[Any], None]) -> Any:
    document = manifests()["deployment.yaml"]
    change(document)
    return document


def _rename_field(document: Any) -> None:
    security = document["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    security["readOnlyRootFilesytem"] = security.pop("readOnlyRootFilesystem")


def _gateway_route(document: Any) -> None:
    document.clear()
    document.update({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute"})


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        # A removed API version: kubernetes-validate has no schema and only warns.
        (lambda d: d.update(apiVersion="extensions/v1beta1"), "Couldn't find schema"),
        # A misspelt kind of a built-in group: no schema either.
        (lambda d: d.update(kind="Deploymnet"), "Couldn't find schema"),
        # A custom resource kind not listed as skipped fails rather than passing unseen.
        (_gateway_route, "Couldn't find schema"),
        # Strict: a misspelt field is an error, not ignored.
        (_rename_field, "readOnlyRootFilesytem"),
        # A wrong type.
        (lambda d: d["spec"].update(revisionHistoryLimit="five"), "revisionHistoryLimit"),
    ],
    ids=["removed-api", "misspelt-kind", "unlisted-crd", "unknown-field", "wrong-type"],
)
def test_validator_fails(change: Callable[[Any], None], reported: str) -> None:
    document = _broken_document(change)
    for version in validate_kubernetes.KUBERNETES_VERSIONS:
        status, detail = validate_kubernetes.validate_document(document, version)
        assert status == "fail"
        assert reported in detail


def test_validator_cli_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "pdb.yaml"
    pdb = manifests()["pdb.yaml"]
    pdb["apiVersion"] = "policy/v1beta1"
    broken.write_text(yaml.safe_dump(pdb))
    assert validate_kubernetes.main([str(broken)]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert validate_kubernetes.main([str(MANIFEST_DIR / "pdb.yaml")]) == 0
    assert validate_kubernetes.main(["-k", "1.0.0", str(MANIFEST_DIR)]) == 2


def test_every_manifest_is_labelled() -> None:
    # kubectl get all -l app.kubernetes.io/name=detection-service finds every object.
    for file, document in _load().items():
        if document["kind"] == "Kustomization":
            continue
        assert document["metadata"]["labels"]["app.kubernetes.io/name"] == "detection-service", file
