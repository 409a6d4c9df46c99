"""deploy/ and .env.example agree with the code they deploy.

No cluster and no Docker engine run here, so these tests check what a broken deployment
would show first: a probe on a port nothing listens on, a Service selecting no pod, a
variable the services ignore, a NATS that refuses image tasks, a worker killed mid-task.
Settings are computed with the services' own ``from_env``, never re-typed here.
"""

from __future__ import annotations

import functools
import importlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
import yaml  # type: ignore[import-untyped]
from dotenv import dotenv_values
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from conveyor import config
from conveyor.exposure import refuse_insecure
from tests.conftest import free_port
from tests.support.tls import Pki

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
IMAGE = "conveyor"
SERVICES: dict[str, Any] = {
    "gateway": config.GatewaySettings,
    "store": config.StoreSettings,
    "scheduler": config.SchedulerSettings,
    "worker": config.WorkerSettings,
}
UNITS = {"": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2, "G": 1024**3, "GB": 1024**3}


class _Recorder(dict[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.names.add(key)
        return default


def settings_classes() -> list[Any]:
    return [
        obj
        for obj in vars(config).values()
        if isinstance(obj, type) and obj.__module__ == config.__name__ and hasattr(obj, "from_env")
    ]


def config_variables() -> set[str]:
    """Every CONVEYOR_* name that conveyor/config.py reads, found by letting it read."""
    recorder = _Recorder()
    for cls in settings_classes():
        cls.from_env(recorder)
    return recorder.names


def load(path: Path) -> list[Any]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def k8s_objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(KUBERNETES.rglob("*.yaml"))
        for doc in load(path)
        if "apiVersion" in doc and doc.get("kind") not in ("Kustomization", "Component")
    ]


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} manifests"
    return matches[0]


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def nats_bytes(size: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([KMG]?B?)", size.strip().upper())
    assert match, f"not a NATS size: {size!r}"
    return int(match[1]) * UNITS[match[2]]


TLS_SECRET = "conveyor-tls-"
"""Each pod's TLS Secret (tls.crt, tls.key, ca.crt), made by cert-manager or the operator."""


@functools.cache
def tls_stand_ins() -> Path:
    """Files standing in for a TLS Secret, which no manifest holds."""
    folder = Path(tempfile.mkdtemp(prefix="conveyor-deploy-tls-"))
    pki = Pki.make(folder / "ca")
    issued = pki.issue("gateway")
    shutil.copy(issued.cert, folder / "tls.crt")
    shutil.copy(issued.key, folder / "tls.key")
    shutil.copy(pki.ca_file, folder / "ca.crt")
    return folder


def pod_spec_of(container: dict[str, Any]) -> dict[str, Any]:
    for obj in k8s_objects():
        if obj["kind"] in ("Deployment", "StatefulSet"):
            spec: dict[str, Any] = obj["spec"]["template"]["spec"]
            if any(c["name"] == container["name"] for c in spec["containers"]):
                return spec
    raise AssertionError(f"no workload runs {container['name']}")


def mounted_files(container: dict[str, Any]) -> dict[str, Path]:
    """Each file the container's Secret volumes put in its file system, by path in the
    container, written out here: the services check that the files they are given are
    readable, which they are in a pod and must be in the test too."""
    volumes = {v["name"]: v for v in pod_spec_of(container).get("volumes", [])}
    files: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        name = secret["secretName"]
        if name.startswith(TLS_SECRET):
            contents = {f.name: f.read_bytes() for f in tls_stand_ins().iterdir() if f.is_file()}
        else:
            data = find("Secret", name)["stringData"]
            contents = {key: value.encode() for key, value in data.items()}
        paths = {i["key"]: i["path"] for i in secret.get("items", [])} or {k: k for k in contents}
        folder = Path(tempfile.mkdtemp(prefix=f"conveyor-deploy-{name}-"))
        for key, path in paths.items():
            (folder / path).write_bytes(contents[key])
            files[f"{mount['mountPath']}/{path}"] = folder / path
    return files


def k8s_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment: its ConfigMaps, then its own entries (which win);
    paths into mounted Secrets point at their files written out here."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(find("ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = find("Secret", ref["name"])["stringData"][ref["key"]]
    files = mounted_files(container)
    for name, value in env.items():
        if value.startswith("/etc/conveyor/"):
            assert value in files, f"{name}={value}: no mounted Secret has that file"
            env[name] = str(files[value])
    return env


def conveyor_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(Deployment, container) for every container running the Conveyor image."""
    for obj in k8s_objects():
        if obj["kind"] == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                if container["image"].split(":")[0] == IMAGE:
                    yield obj, container


def compose() -> dict[str, Any]:
    [doc] = load(DEPLOY / "compose.yaml")
    return dict(doc)


def compose_env(spec: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment, its secrets' paths pointing at their files here."""
    env = dict(spec["environment"])
    secrets = {
        f"/run/secrets/{s['target']}": DEPLOY / compose()["secrets"][s["source"]]["file"]
        for s in spec.get("secrets", [])
    }
    for name, value in env.items():
        if value in secrets:
            env[name] = str(secrets[value])
    return env


def compose_conveyor_services() -> dict[str, dict[str, Any]]:
    """The long-running services of the image (not the one-shot migration)."""
    return {
        name: spec
        for name, spec in compose()["services"].items()
        if spec["image"].split(":")[0] == IMAGE and spec.get("restart") != "no"
    }


# --- YAML and kustomize ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted(DEPLOY.rglob("*.y*ml")), ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_every_yaml_file_parses(path: Path) -> None:
    assert load(path), f"{path} holds no document"


def test_every_manifest_is_part_of_a_kustomization() -> None:
    listed: set[Path] = set()
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        [doc] = load(kustomization)
        for entry in doc.get("resources", []) + doc.get("components", []):
            target = (kustomization.parent / entry).resolve()
            assert target.exists(), f"{kustomization}: {entry} does not exist"
            if target.is_dir():
                assert (target / "kustomization.yaml").is_file(), f"{target} is no kustomization"
            listed.add(target)
    manifests = {
        p.resolve()
        for p in KUBERNETES.rglob("*.yaml")
        if p.name != "kustomization.yaml" and p.parent != KUBERNETES  # helm values sit there
    }
    assert manifests - listed == set(), "manifests no kustomization applies"


def test_overlay_patches_replace_fields_that_exist() -> None:
    for kustomization in KUBERNETES.glob("overlays/*/kustomization.yaml"):
        [doc] = load(kustomization)
        for patch in doc.get("patches", []):
            target = find(patch["target"]["kind"], patch["target"]["name"])
            operations = yaml.safe_load(patch["patch"])
            if isinstance(operations, dict):  # a strategic-merge `$patch: delete`
                assert operations["$patch"] == "delete"
                continue
            for op in operations:
                node: Any = target
                for key in op["path"].strip("/").split("/"):
                    assert key in node, f"{kustomization}: {op['path']} not in {target['kind']}"
                    node = node[key]


# --- Kubernetes: ports, probes, Services ---------------------------------------------------


@pytest.mark.parametrize("deployment,container", list(conveyor_containers()))
def test_probes_ask_the_health_the_service_serves(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    service = container["args"][0]
    settings = SERVICES[service].from_env(k8s_env(container))  # raises on a bad variable
    declared = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_of(settings.listen) in declared.values()
    # Health over HTTPS on the metrics port (kubelet's gRPC probes cannot speak TLS):
    # liveness asks /livez, which stays 200 while NATS is away; the others /readyz.
    assert settings.common.tls.enabled
    metrics = port_of(settings.metrics_listen)
    assert declared["metrics"] == metrics
    for probe, path in (
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
    ):
        check = container[probe]["httpGet"]
        assert (check["port"], check["path"], check["scheme"]) == ("metrics", path, "HTTPS")
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations["prometheus.io/port"] == str(metrics)


@pytest.mark.parametrize("deployment,container", list(conveyor_containers()))
def test_every_service_would_start_listening_beyond_loopback(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    """A service refuses to listen off loopback without TLS (mutual on the store) and,
    on the gateway, authentication, unless CONVEYOR_INSECURE=1: the manifests give each
    what it needs, without that escape."""
    service = container["args"][0]
    settings = SERVICES[service].from_env(k8s_env(container))
    assert not settings.common.insecure
    listeners = importlib.import_module(f"{service}.app").listeners
    assert refuse_insecure(listeners(settings), insecure=False) == []


def test_compose_runs_plaintext_only_behind_loopback_ports() -> None:
    """Compose sets CONVEYOR_INSECURE=1 for its private network: then nothing it runs may
    be published beyond this host."""
    for name, spec in compose()["services"].items():
        if spec.get("environment", {}).get("CONVEYOR_INSECURE") == "1" or name in (
            "nats",
            "postgres",
        ):
            for port in spec.get("ports", []):
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def reachable_from_other_hosts(address: str) -> bool:
    return address.rpartition(":")[0] in ("0.0.0.0", "[::]", "")


def test_deployments_listen_beyond_loopback() -> None:
    """The services' defaults are loopback only, which no probe, Service or other
    container reaches: every deployment sets its own listen addresses."""
    environments = [(c["args"][0], k8s_env(c)) for _, c in conveyor_containers()]
    environments += [
        (s["command"][0], compose_env(s)) for s in compose_conveyor_services().values()
    ]
    assert len(environments) == 8
    for service, env in environments:
        settings = SERVICES[service].from_env(env)
        assert reachable_from_other_hosts(settings.listen), service
        assert reachable_from_other_hosts(settings.metrics_listen), service


def test_every_container_has_requests_and_limits() -> None:
    for obj in k8s_objects():
        if obj["kind"] in ("Deployment", "StatefulSet"):
            for container in obj["spec"]["template"]["spec"]["containers"]:
                for bound in ("requests", "limits"):
                    assert set(container["resources"][bound]) >= {"cpu", "memory"}, obj["kind"]


def test_services_select_pods_that_declare_their_target_port() -> None:
    pods = [
        o["spec"]["template"] for o in k8s_objects() if o["kind"] in ("Deployment", "StatefulSet")
    ]
    for service in (o for o in k8s_objects() if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        selected = [p for p in pods if selector.items() <= p["metadata"]["labels"].items()]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        ports = [p for pod in selected for c in pod["spec"]["containers"] for p in c["ports"]]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert any(target in (p.get("name"), p["containerPort"]) for p in ports), target


def test_addresses_name_services_that_exist() -> None:
    services = {
        (o["metadata"]["name"], p["port"])
        for o in k8s_objects()
        if o["kind"] == "Service"
        for p in o["spec"]["ports"]
    }
    data = find("ConfigMap", "conveyor-config")["data"]
    for name in ("CONVEYOR_STORE_ADDR", "CONVEYOR_GATEWAY_ADDR", "CONVEYOR_NATS_URL"):
        host, _, port = data[name].removeprefix("nats://").partition(":")
        assert (host, int(port)) in services, name


def test_workers_outlive_their_shutdown_grace_and_scale() -> None:
    worker = find("Deployment", "worker")
    [container] = worker["spec"]["template"]["spec"]["containers"]
    settings = config.WorkerSettings.from_env(k8s_env(container))
    pod = worker["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_grace_seconds
    # The autoscaler owns the count: a replicas field would reset it on every apply.
    assert "replicas" not in worker["spec"]

    hpa = find("HorizontalPodAutoscaler", "worker")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "worker",
    }
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert 1 < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "cpu" in container["resources"]["requests"]  # utilisation is relative to it

    pdb = find("PodDisruptionBudget", "worker")
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_store_runs_replicas_that_roll_one_at_a_time() -> None:
    """Several stores behind one Service (a lease picks the writer): a rollout adds a new
    pod before it removes one, and a drain takes one at a time."""
    store = find("Deployment", "store")
    assert store["spec"]["replicas"] >= 2
    assert store["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    labels = store["spec"]["template"]["metadata"]["labels"]
    assert find("Service", "store")["spec"]["selector"].items() <= labels.items()


def test_store_migrates_in_an_init_container() -> None:
    """The schema is migrated before the store starts, by the same image with the same
    database, outside any probe."""
    store = find("Deployment", "store")
    pod = store["spec"]["template"]["spec"]
    [migrate] = pod["initContainers"]
    [container] = pod["containers"]
    assert migrate["args"] == ["store", "migrate"]
    assert migrate["image"] == container["image"]
    [database] = [e for e in container["env"] if e["name"] == "CONVEYOR_DATABASE_URL"]
    assert database in migrate["env"]
    assert migrate["securityContext"] == container["securityContext"]
    assert "startupProbe" not in migrate


@pytest.mark.parametrize("name", ["gateway", "store", "scheduler", "worker"])
def test_every_service_survives_a_node_drain(name: str) -> None:
    """A PodDisruptionBudget takes one pod at a time, and more than one pod runs (the
    autoscaler's minimum for workers)."""
    deployment = find("Deployment", name)
    pdb = find("PodDisruptionBudget", name)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    replicas = deployment["spec"].get("replicas")
    if replicas is None:
        replicas = find("HorizontalPodAutoscaler", name)["spec"]["minReplicas"]
    assert replicas >= 2


def test_production_stream_replicas_match_the_nats_cluster() -> None:
    [values] = load(KUBERNETES / "nats-helm-values.yaml")
    [overlay] = load(KUBERNETES / "overlays/production/kustomization.yaml")
    [replicas] = [
        op["value"]
        for patch in overlay["patches"]
        if patch["target"]["kind"] == "ConfigMap"
        for op in yaml.safe_load(patch["patch"])
        if op["path"] == "/data/CONVEYOR_STREAM_REPLICAS"
    ]
    assert values["config"]["cluster"] == {"enabled": True, "replicas": int(replicas)}
    assert values["config"]["jetstream"]["fileStore"]["enabled"] is True
    payload = values["config"]["merge"]["max_payload"].strip("<> ")
    assert nats_bytes(payload) >= config.Limits().max_message_bytes


# --- compose -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(compose_conveyor_services()))
def test_compose_services_are_valid_and_health_checked(name: str) -> None:
    spec = compose_conveyor_services()[name]
    [service] = spec["command"][:1]
    settings = SERVICES[service].from_env(compose_env(spec))
    assert spec["healthcheck"]["test"][-1] == str(port_of(settings.listen))
    store_host, _, store_port = spec["environment"]["CONVEYOR_STORE_ADDR"].partition(":")
    store = config.StoreSettings.from_env(compose_env(compose_conveyor_services()[store_host]))
    assert int(store_port) == port_of(store.listen)
    assert spec["environment"]["CONVEYOR_NATS_URL"].split("//")[1].split(":")[0] == "nats"
    if service == "worker":
        assert int(spec["stop_grace_period"].removesuffix("s")) > settings.shutdown_grace_seconds
        assert spec["deploy"]["replicas"] == 2


def test_compose_migrates_before_the_store_starts() -> None:
    services = compose()["services"]
    migrate = services["store-migrate"]
    assert migrate["command"] == ["store", "migrate"]
    assert migrate["restart"] == "no"
    store = services["store"]
    database = "CONVEYOR_DATABASE_URL"
    assert migrate["environment"][database] == store["environment"][database]
    assert store["depends_on"]["store-migrate"] == {"condition": "service_completed_successfully"}


def test_compose_nats_runs_the_deploy_config() -> None:
    nats_service = compose()["services"]["nats"]
    mounts = dict(v.rsplit(":", 2)[:2] for v in nats_service["volumes"] if v.startswith("./"))
    config_path = nats_service["command"][nats_service["command"].index("--config") + 1]
    assert mounts == {
        "./nats/nats-server.conf": config_path,
        "./nats/authorization.conf": str(Path(config_path).parent / "authorization.conf"),
    }


def test_compose_services_use_the_password_nats_expects() -> None:
    services = compose()["services"]
    nats_env = services["nats"]["environment"]
    for name, spec in compose_conveyor_services().items():
        role = spec["environment"]["CONVEYOR_NATS_USER"]
        assert role == spec["command"][0]
        [secret] = spec["secrets"]
        assert (
            spec["environment"]["CONVEYOR_NATS_PASSWORD_FILE"] == "/run/secrets/" + secret["target"]
        )
        source = compose()["secrets"][secret["source"]]["file"]
        password = (DEPLOY / source).read_text().strip()
        assert nats_env[f"NATS_{role.upper()}_PASSWORD"] == password, name


# --- image -----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_image_runs_python_m_service_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    last_stage = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    final = dict(instructions[last_stage:])
    assert final["ENTRYPOINT"] == '["python", "-m"]'
    assert final["CMD"] == '["gateway"]'
    assert final["USER"].split(":")[0] not in ("root", "0")
    copied = {args.split()[0] for op, args in instructions if op == "COPY" and "--from" not in args}
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= copied, "the image misses a package"
    [healthcheck_dest] = [a.split()[1] for op, a in instructions if "healthcheck.py" in a]
    for spec in compose_conveyor_services().values():
        assert spec["healthcheck"]["test"][2] == healthcheck_dest


# --- variables -----------------------------------------------------------------------------


def test_every_conveyor_variable_in_deploy_is_one_the_services_read() -> None:
    known = config_variables()
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            used = set(re.findall(r"\bCONVEYOR_[A-Z0-9_]+", path.read_text()))
            assert used <= known, f"{path.relative_to(ROOT)}: unknown {sorted(used - known)}"


def env_example() -> dict[str, str]:
    found = re.findall(
        r"^#? ?(CONVEYOR_[A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.M
    )
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), "a variable is listed twice"
    return dict(found)


def test_env_example_lists_exactly_the_variables_config_reads() -> None:
    assert set(env_example()) == config_variables()


def test_env_example_values_are_the_defaults() -> None:
    defaults = [cls.from_env({}) for cls in settings_classes()]
    as_shipped = {k: v for k, v in dotenv_values(ROOT / ".env.example").items() if v is not None}
    assert [cls.from_env(as_shipped) for cls in settings_classes()] == defaults
    for name, value in env_example().items():
        changed = [cls.from_env({name: value}) for cls in settings_classes()]
        assert changed == defaults, f"{name}={value} is not the default"


# --- real processes --------------------------------------------------------------------------


def nats_configs() -> dict[str, str]:
    [k8s] = [
        o for o in load(KUBERNETES / "components/nats-single/nats.yaml") if o["kind"] == "ConfigMap"
    ]
    return {
        "compose": (DEPLOY / "nats/nats-server.conf").read_text(),
        "kubernetes": k8s["data"]["nats-server.conf"],
    }


@pytest.mark.integration
@pytest.mark.parametrize("where", ["compose", "kubernetes"])
async def test_nats_config_accepts_the_largest_task_on_file_storage(
    where: str, tmp_path: Path
) -> None:
    # Without its users (tests/security runs them): this checks payloads and storage.
    text = "".join(
        line
        for line in nats_configs()[where].splitlines(keepends=True)
        if not line.strip().startswith("include ")
    )
    text = text.replace("/data", str(tmp_path / "js"))
    text = text.replace("/var/run/nats", str(tmp_path))
    (tmp_path / "nats.conf").write_text(text)
    port = free_port()
    server = subprocess.Popen(
        [
            "nats-server",
            "-c",
            str(tmp_path / "nats.conf"),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            str(free_port()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        nc = await nats.connect(
            f"nats://127.0.0.1:{port}", connect_timeout=10, max_reconnect_attempts=20
        )
        try:
            assert nc.max_payload >= config.Limits().max_message_bytes
            js = nc.jetstream()
            await js.add_stream(name="BIG", subjects=["big"], storage="file")
            payload = b"\0" * (config.Limits().max_image_bytes + 64 * 1024)
            ack = await js.publish("big", payload, timeout=10)
            assert ack.seq == 1
        finally:
            await nc.close()
        assert (tmp_path / "js" / "jetstream").is_dir()
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.integration
def test_healthcheck_script_follows_the_serving_status() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    def check() -> int:
        script = DEPLOY / "healthcheck.py"
        return subprocess.run([sys.executable, str(script), str(port)], timeout=30).returncode

    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert check() == 0
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert check() == 1
    finally:
        server.stop(0).wait()
    assert check() == 1
