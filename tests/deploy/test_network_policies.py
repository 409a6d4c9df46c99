"""The NetworkPolicies allow exactly the paths the architecture needs (docs/security.md).

No cluster runs here, so the policies of the dev overlay (the base's plus its
components') are evaluated as Kubernetes would for pods in one namespace: a connection
is allowed when some policy selecting the source allows it as egress and some policy
selecting the destination allows it as ingress, and a selected pod allows nothing else.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.test_manifests import KUBERNETES

PODS: dict[str, dict[str, str]] = {
    "gateway": {"app": "gateway"},
    "store": {"app": "store"},
    "scheduler": {"app": "scheduler"},
    "worker": {"app": "worker"},
    "nats": {"app": "nats", "app.kubernetes.io/name": "nats"},
    "postgres": {"app": "postgres"},
    "prometheus": {"app.kubernetes.io/name": "prometheus"},
    "client": {"app": "someone-else"},
}
OUTSIDE = {"prometheus", "client"}
"""Pods of other namespaces: the policies of Conveyor's namespace do not select them."""

NEEDED = [
    ("client", "gateway", 50051),
    ("client", "gateway", 8000),
    ("gateway", "store", 50052),
    ("scheduler", "store", 50052),
    *((service, "nats", 4222) for service in ("gateway", "store", "scheduler", "worker")),
    ("store", "postgres", 5432),
    ("nats", "nats", 6222),
    *(
        ("prometheus", service, port)
        for service, port in (("gateway", 9091), ("store", 9092), ("scheduler", 9093))
    ),
    ("prometheus", "worker", 9094),
    ("prometheus", "nats", 7777),  # the Helm chart's exporter
]

REFUSED = [
    ("client", "store", 50052),  # the store's TaskService bypassing the gateway
    ("worker", "store", 50052),
    ("client", "nats", 4222),  # forging events or tasks
    ("client", "postgres", 5432),
    ("gateway", "postgres", 5432),
    ("worker", "postgres", 5432),
    ("worker", "gateway", 50051),
    ("client", "worker", 50054),
    ("client", "gateway", 9091),  # metrics for Prometheus only
    ("client", "scheduler", 50053),
    ("client", "nats", 8222),  # monitoring: Prometheus (and KEDA, components/keda) only
    ("client", "nats", 7777),
]


def policies() -> list[dict[str, Any]]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / "overlays" / "dev")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "NetworkPolicy"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def peer_matches(peer: dict[str, Any], name: str) -> bool:
    if "ipBlock" in peer:
        return True
    if name in OUTSIDE and "namespaceSelector" not in peer:
        return False  # a bare podSelector means pods of this namespace only
    return selects(peer.get("podSelector", {}), PODS[name])


def rule_allows(rule: dict[str, Any], side: str, other: str, port: int) -> bool:
    peers = rule.get(side)
    if peers is not None and not any(peer_matches(p, other) for p in peers):
        return False
    ports = rule.get("ports")
    return ports is None or any(p.get("port") == port for p in ports)


def allowed(all_policies: list[dict[str, Any]], source: str, target: str, port: int) -> bool:
    def direction(pod: str, other: str, kind: str, side: str, key: str) -> bool:
        if pod in OUTSIDE:
            return True
        mine = [
            p
            for p in all_policies
            if selects(p["spec"]["podSelector"], PODS[pod]) and kind in p["spec"]["policyTypes"]
        ]
        if not mine:
            return True  # no policy selects the pod for this direction: all allowed
        return any(rule_allows(r, side, other, port) for p in mine for r in p["spec"].get(key, []))

    egress = direction(source, target, "Egress", "to", "egress")
    ingress = direction(target, source, "Ingress", "from", "ingress")
    return egress and ingress


@pytest.fixture(scope="module")
def all_policies() -> list[dict[str, Any]]:
    return policies()


@pytest.mark.parametrize("source,target,port", NEEDED)
def test_the_paths_the_architecture_needs_are_open(
    all_policies: list[dict[str, Any]], source: str, target: str, port: int
) -> None:
    assert allowed(all_policies, source, target, port), f"{source} -> {target}:{port} is blocked"


@pytest.mark.parametrize("source,target,port", REFUSED)
def test_every_other_path_is_closed(
    all_policies: list[dict[str, Any]], source: str, target: str, port: int
) -> None:
    assert not allowed(all_policies, source, target, port), f"{source} -> {target}:{port} is open"


def test_every_pod_of_the_namespace_is_under_a_default_deny(
    all_policies: list[dict[str, Any]],
) -> None:
    deny = [p for p in all_policies if p["spec"]["podSelector"] == {}]
    assert any(set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} for p in deny)
