"""From a call's credentials and the namespace it asks for to the principal it runs as.

One object answers both doors (the gRPC interceptor and the HTTP door), so a method
needs the same role and a key means the same thing whichever way it is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.auth import keys, roles
from conveyor.auth.principal import (
    DEFAULT_NAMESPACE,
    LOCAL,
    METADATA_NAMESPACE,
    Principal,
    Role,
    check_namespace,
)
from conveyor.errors import PermissionDenied, Unauthenticated

if TYPE_CHECKING:
    from conveyor.auth.keyring import KeyRing
    from conveyor.auth.tokens import JwtVerifier

ANONYMOUS = Principal("anonymous", Role.READER, DEFAULT_NAMESPACE)
"""The caller of a public method (health) when authentication is on."""
BEARER = "bearer "
NO_CREDENTIALS = "this call needs credentials: authorization: Bearer <API key or token>"


class Authenticator:
    """Authenticates callers with API keys and/or JWTs; with neither, authentication is
    off and every caller is LOCAL (an admin) in the namespace it asks for."""

    def __init__(self, keyring: KeyRing | None = None, jwt: JwtVerifier | None = None) -> None:
        self._keyring = keyring
        self._jwt = jwt

    @property
    def enabled(self) -> bool:
        return self._keyring is not None or self._jwt is not None

    async def principal(
        self, authorization: str | None, namespace: str | None, method: str
    ) -> Principal:
        """The principal a call of ``method`` (``/package.Service/Method``) runs as.

        Unauthenticated: no credentials, or credentials that are not valid (unknown,
        revoked, expired). PermissionDenied: the method is in no role table, the role is
        too low, or a non-admin asks for another namespace than its own.
        """
        if method not in roles.REQUIRED:
            raise PermissionDenied(f"{method} is not open to any caller")
        needed = roles.REQUIRED[method]
        asked = check_namespace(namespace, METADATA_NAMESPACE) if namespace else None
        if not self.enabled:
            return LOCAL if asked is None else Principal(LOCAL.subject, LOCAL.role, asked)
        if needed is roles.PUBLIC:
            return ANONYMOUS
        caller = await self.authenticate(authorization)
        return authorize(caller, needed, asked, method)

    async def authenticate(self, authorization: str | None) -> Principal:
        """Who ``authorization`` (``Bearer <API key or JWT>``) proves the caller is."""
        if not authorization:
            raise Unauthenticated(NO_CREDENTIALS)
        if authorization[: len(BEARER)].lower() != BEARER:
            raise Unauthenticated("credentials must be a bearer token: Bearer <API key or token>")
        token = authorization[len(BEARER) :].strip()
        if keys.looks_like_key(token):
            key = keys.parse_key(token)
            if self._keyring is None or key is None:
                raise Unauthenticated("invalid API key")
            return await self._keyring.verify(key)
        if self._jwt is None:
            raise Unauthenticated("invalid credentials: this gateway takes API keys only")
        return await self._jwt.verify(token)


def authorize(caller: Principal, needed: Role, asked: str | None, method: str) -> Principal:
    """``caller`` in the namespace it asked for, if its role allows ``method`` there."""
    if not caller.allows(needed):
        raise PermissionDenied(
            f"{caller.subject} is a {caller.role.label}: {method.rsplit('/', 1)[-1]} "
            f"needs the {needed.label} role"
        )
    if asked is None or asked == caller.namespace:
        return caller
    if caller.role is not Role.ADMIN:
        raise PermissionDenied(
            f"{caller.subject} works in namespace {caller.namespace!r}, not {asked!r}"
        )
    return Principal(caller.subject, caller.role, asked)
