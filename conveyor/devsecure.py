"""``conveyor dev --secure``: the local system the way a shared network needs it.

A CA and one certificate per service under ``<data dir>/tls/`` (reused across restarts
while valid), TLS on every server, mutual TLS from the gateway and the scheduler to the
store, and API keys on the gateway with a generated admin key it stores at start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from conveyor.auth.keys import new_key
from conveyor.certs import Issued, LocalCA, service_identity
from conveyor.tls import channel_credentials

SERVICES = ("gateway", "store", "scheduler", "worker")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")
ADMIN_KEY_FILE = "admin.key"


def admin_key(folder: Path) -> Path:
    """The admin key file in ``folder``: the one already there, else a new one (0600)."""
    path = folder / ADMIN_KEY_FILE
    if path.is_file() and path.read_text().strip().startswith("cvk_"):
        return path
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{new_key()}\n")
    return path


@dataclass(frozen=True)
class SecureDev:
    """Files made for a secure ``conveyor dev`` and each service's variables."""

    folder: Path
    ca: Path
    certs: dict[str, Issued]
    admin_key_file: Path

    @staticmethod
    def prepare(data_dir: Path) -> SecureDev:
        folder = data_dir / "tls"
        authority = LocalCA(folder)
        certs = {
            name: authority.issue(name, [service_identity(name), *LOOPBACK_HOSTS])
            for name in SERVICES
        }
        return SecureDev(folder, authority.cert_path, certs, admin_key(folder))

    def env(self, service: str) -> dict[str, str]:
        """The CONVEYOR_* variables of one service."""
        issued = self.certs[service]
        env = {
            "CONVEYOR_TLS_CERT": str(issued.cert),
            "CONVEYOR_TLS_KEY": str(issued.key),
            "CONVEYOR_TLS_CA": str(self.ca),
        }
        if service == "store":
            env["CONVEYOR_TLS_CLIENT_CA"] = str(self.ca)
        if service == "gateway":
            env["CONVEYOR_AUTH"] = "keys"
            env["CONVEYOR_ADMIN_KEY_FILE"] = str(self.admin_key_file)
        return env

    def probe_credentials(self) -> grpc.ChannelCredentials:
        """What ``conveyor dev`` checks health with: the CA, and the gateway's certificate
        for the store, which asks for one."""
        gateway = self.certs["gateway"]
        credentials = channel_credentials(str(self.ca), str(gateway.cert), str(gateway.key))
        assert credentials is not None
        return credentials

    def client_env(self) -> dict[str, str]:
        """A client's variables: trust the CA, authenticate with the admin key."""
        key = self.admin_key_file.read_text().strip()
        return {"CONVEYOR_TLS_CA": str(self.ca), "CONVEYOR_API_KEY": key}

    def client_lines(self, gateway: str, http: str) -> list[str]:
        """What a client needs, ready to paste."""
        lines = [
            f"CA certificate: {self.ca}",
            f"admin API key:  {self.admin_key_file}",
            "A client needs:",
            f"  export CONVEYOR_GATEWAY_ADDR={gateway}",
            *(f"  export {name}={value}" for name, value in self.client_env().items()),
            '  grpcurl -cacert "$CONVEYOR_TLS_CA" -H "authorization: Bearer $CONVEYOR_API_KEY" '
            f"{gateway} list",
            '  buf curl --protocol grpc --cacert "$CONVEYOR_TLS_CA" '
            '-H "authorization: Bearer $CONVEYOR_API_KEY" '
            f"https://{gateway}/conveyor.api.tasks.v1.TaskService/ListTasks",
        ]
        if http:
            lines.append(
                '  curl --cacert "$CONVEYOR_TLS_CA" -H "authorization: Bearer $CONVEYOR_API_KEY" '
                f"https://{http}/v1/tasks"
            )
        return lines
