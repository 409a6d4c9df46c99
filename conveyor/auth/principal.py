"""The caller of the current request: its identity, role and namespace.

A server interceptor (or the HTTP door) authenticates each call and binds its
:class:`Principal` for the call's duration with :func:`bound`; everything below the
transport asks :func:`current_principal` or :func:`current_namespace` instead of reading
metadata itself. Between services the namespace travels as the ``conveyor-namespace``
metadata of calls the store accepts only from an authenticated service.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass

from conveyor.errors import FieldViolation, InvalidArgument

DEFAULT_NAMESPACE = "default"
NAMESPACE_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
"""A namespace is a DNS label, as in Kubernetes: it can name a Secret, a NATS account or
a metric label as it is."""

METADATA_AUTHORIZATION = "authorization"
"""A client's credentials: ``Bearer <API key or JWT>``."""
METADATA_NAMESPACE = "conveyor-namespace"
"""The namespace a client asks for (an admin key may pick any; other keys only their
own), and the namespace the gateway tells the store a relayed call is made in."""


class Role(enum.IntEnum):
    """What a caller may do; each role may do everything the ones below it may."""

    READER = 1
    """get, list, watch, stats."""
    SUBMITTER = 2
    """+ submit, cancel, retry and delete its namespace's tasks."""
    OPERATOR = 3
    """+ queues (pause, limits) and schedules."""
    ADMIN = 4
    """+ API keys, and any namespace."""

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(r.name.lower() for r in cls)
            raise ValueError(f"unknown role {text!r}: expected one of {names}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``subject`` names it in logs and audit (a key id, a JWT
    subject, a service identity), never a secret."""

    subject: str
    role: Role
    namespace: str = DEFAULT_NAMESPACE

    def allows(self, needed: Role) -> bool:
        return self.role >= needed


LOCAL = Principal("local", Role.ADMIN, DEFAULT_NAMESPACE)
"""The caller when authentication is off (loopback ``conveyor dev``, tests built in code):
everything is allowed, in the default namespace unless the call asks for another."""

_current: ContextVar[Principal] = ContextVar("conveyor_principal", default=LOCAL)


def current_principal() -> Principal:
    """The caller of the request being served (LOCAL outside any authenticated call)."""
    return _current.get()


def current_namespace() -> str:
    """The namespace of the request being served."""
    return _current.get().namespace


def bind(principal: Principal) -> Token[Principal]:
    """Makes ``principal`` the current caller until ``unbind`` of the token returned: for
    the gRPC door's unary calls, where a ``with bound(...)`` costs a generator per call."""
    return _current.set(principal)


def unbind(token: Token[Principal]) -> None:
    """Makes the caller before ``bind`` current again."""
    _current.reset(token)


@contextlib.contextmanager
def bound(principal: Principal) -> Iterator[Principal]:
    """Makes ``principal`` the current caller inside the ``with`` block."""
    token = bind(principal)
    try:
        yield principal
    finally:
        unbind(token)


def check_namespace(namespace: str, field: str = "namespace") -> str:
    """``namespace`` if it is a valid name, else INVALID_ARGUMENT naming ``field``."""
    if not NAMESPACE_PATTERN.match(namespace):
        raise InvalidArgument.for_fields(
            [
                FieldViolation(
                    field,
                    "must be a DNS label: 1 to 63 lowercase letters, digits or '-', "
                    "starting and ending with a letter or digit",
                )
            ]
        )
    return namespace
