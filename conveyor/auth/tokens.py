"""OIDC/JWT bearer tokens, validated against the issuer's signing keys (a JWKS).

PyJWT does the cryptography. The keys are loaded once (a file, or the issuer's URL
through ``PyJWKClient``) and kept by ``kid``; a token signed with a key not seen yet
makes one refresh, at most every ``REFRESH_SECONDS``, so keys the issuer rotates in are
picked up and made-up ``kid``s cannot make the gateway fetch on every call. Each key
admits only its own algorithm (from its ``alg``, or its type): ``none`` and HMAC
(a public key used as a shared secret) are refused whatever a token's header says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from conveyor.auth.principal import DEFAULT_NAMESPACE, NAMESPACE_PATTERN, Principal, Role
from conveyor.config import JwtSettings
from conveyor.errors import PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0
"""The least time between two loads of the signing keys."""
FETCH_TIMEOUT = 5.0
ASYMMETRIC_TYPES = frozenset({"RSA", "EC", "OKP"})
"""Key types that verify signatures without being able to make them."""


def key_source(location: str) -> Callable[[], jwt.PyJWKSet]:
    """A blocking loader of the key set at ``location``: a URL or a file's path."""
    if location.startswith(("https://", "http://")):
        client = jwt.PyJWKClient(location, cache_jwk_set=False, timeout=FETCH_TIMEOUT)
        return lambda: client.get_jwk_set(refresh=True)
    return lambda: jwt.PyJWKSet.from_json(Path(location).read_text())


class JwtVerifier:
    """Validates tokens of one issuer and maps their claims to a principal."""

    def __init__(
        self, settings: JwtSettings, source: Callable[[], jwt.PyJWKSet] | None = None
    ) -> None:
        self._settings = settings
        self._source = source or key_source(settings.jwks)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at = -REFRESH_SECONDS
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Loads the keys; a failure is logged and retried when a token needs them."""
        if not await self._refresh():
            log.warning("the JWT signing keys at %s could not be loaded yet", self._settings.jwks)

    async def _refresh(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._loaded_at < REFRESH_SECONDS:
                return False  # loaded a moment ago (maybe by the call we waited for)
            self._loaded_at = time.monotonic()
            try:
                found = await asyncio.to_thread(self._source)
            except Exception as exc:
                log.warning("loading JWT signing keys from %s failed: %s", self._settings.jwks, exc)
                return False
            self._keys = {
                key.key_id or "": key for key in found.keys if key.key_type in ASYMMETRIC_TYPES
            }
            return True

    async def _key(self, kid: str) -> jwt.PyJWK:
        key = self._find(kid)
        if key is None and await self._refresh():
            key = self._find(kid)
        if key is None:
            raise Unauthenticated(f"invalid token: no signing key {kid!r} at the issuer")
        return key

    def _find(self, kid: str) -> jwt.PyJWK | None:
        if not kid and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid) if kid else None

    async def verify(self, token: str) -> Principal:
        """The principal a valid token names; Unauthenticated for a bad signature, issuer,
        audience or expiry, PermissionDenied when its claims name no usable role."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        key = await self._key(str(header.get("kid") or ""))
        settings = self._settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[key.algorithm_name],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        return Principal(
            f"jwt:{claims.get('sub', '?')}",
            _role(claims.get(settings.role_claim), settings.role_claim),
            _namespace(claims.get(settings.namespace_claim), settings.namespace_claim),
        )


def _role(value: Any, claim: str) -> Role:
    """The role a claim names: a name, or a list of names (the highest counts)."""
    names = value if isinstance(value, list) else [value]
    roles = []
    for name in names:
        if isinstance(name, str):
            try:
                roles.append(Role.parse(name))
            except ValueError:
                continue
    if not roles:
        raise PermissionDenied(f"the token's {claim} claim names no Conveyor role")
    return max(roles)


def _namespace(value: Any, claim: str) -> str:
    if value is None:
        return DEFAULT_NAMESPACE
    if not isinstance(value, str) or not NAMESPACE_PATTERN.match(value):
        raise PermissionDenied(f"the token's {claim} claim is not a namespace")
    return value
