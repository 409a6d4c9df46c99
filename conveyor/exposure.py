"""The refusal to listen insecurely where others can reach.

A service listening on a loopback address is reachable from its own machine only, so
``conveyor dev`` needs no configuration. Anywhere else, every address it listens on must
have what makes it safe there: TLS everywhere, mutual TLS on the store, authentication on
the gateway. A service missing any of it refuses to start, naming the
settings to set, unless ``CONVEYOR_INSECURE=1`` says the network provides them (a service
mesh), which is logged as a warning at start.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from conveyor.config import PREFIX, ConfigError, TlsSettings

TLS_FILES = f"{PREFIX}TLS_CERT and {PREFIX}TLS_KEY"
CLIENT_CA = f"{PREFIX}TLS_CLIENT_CA"
AUTH = f"{PREFIX}AUTH (keys, jwt or keys,jwt)"
INSECURE = f"{PREFIX}INSECURE"


@dataclass(frozen=True)
class Listener:
    """An address a service listens on, and the settings it lacks to be safe there."""

    setting: str
    """The variable that chose the address, without its prefix (``GATEWAY_LISTEN``)."""
    address: str
    """host:port; "" when it is off."""
    missing: tuple[str, ...]
    """Settings (or groups of settings) that must be set off loopback and are not."""


def is_loopback(address: str) -> bool:
    """True when host:port can only be reached from this machine."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name may resolve to any interface; "" and 0.0.0.0 are every one


def tls_missing(tls: TlsSettings, mutual: bool = False) -> tuple[str, ...]:
    """The TLS settings a listener lacks: the certificate, and the client CA when ``mutual``."""
    missing: tuple[str, ...] = () if tls.enabled else (TLS_FILES,)
    if mutual and not tls.client_ca:
        missing += (CLIENT_CA,)
    return missing


def refuse_insecure(listeners: Iterable[Listener], insecure: bool) -> list[str]:
    """Raises ConfigError naming what each listener off loopback lacks; with ``insecure``
    (CONVEYOR_INSECURE=1) returns the same lines instead, as warnings to log."""
    problems = [
        f"{PREFIX}{listener.setting}={listener.address} is reachable from other machines: "
        f"set {'; '.join(listener.missing)}"
        for listener in listeners
        if listener.address and listener.missing and not is_loopback(listener.address)
    ]
    if problems and not insecure:
        raise ConfigError(
            [
                *problems,
                f"(or listen on 127.0.0.1, or set {INSECURE}=1 when the network provides "
                "TLS and authentication, as a service mesh does)",
            ]
        )
    return problems
