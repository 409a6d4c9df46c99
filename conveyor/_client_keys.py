"""API keys in the SDK: the AuthService methods (an admin key's calls).

A mixin of :class:`~conveyor.client.AsyncClient` and, blocking,
:class:`~conveyor.client.Client`::

    from conveyor.client import Client

    with Client(api_key=admin_key) as client:
        created = client.create_key("team-a", "submitter", ttl=90 * 86400)
        print(created.api_key)  # shown this once: store it now
        client.revoke_key(created.key.key_id)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from conveyor._client_builders import Seconds, _duration
from conveyor.api.auth.v1 import auth_pb2, auth_pb2_grpc

if TYPE_CHECKING:
    from conveyor._client_schedules import StubFactory

ROLES = {name.removeprefix("ROLE_").lower(): n for name, n in auth_pb2.Role.items() if n}
"""Role names (reader, submitter, operator, admin) to their numbers."""


def role_value(role: str | int) -> int:
    """A role's number from its name or number."""
    if isinstance(role, int):
        return role
    try:
        return ROLES[role.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}") from None


class KeysMixin:
    """The AuthService methods of :class:`AsyncClient`."""

    if TYPE_CHECKING:

        async def _unary(self, method: str, request: Any, factory: StubFactory = ...) -> Any: ...

    async def create_key(
        self,
        namespace: str,
        role: str | int,
        *,
        ttl: Seconds | None = None,
        description: str = "",
    ) -> auth_pb2.CreateKeyResponse:
        """Makes an API key for ``namespace`` with ``role`` (reader, submitter, operator,
        admin), expiring after ``ttl`` seconds if given. The response's ``api_key`` is the
        only copy of the key's secret."""
        request = auth_pb2.CreateKeyRequest(
            namespace=namespace,
            role=cast(auth_pb2.Role, role_value(role)),
            description=description,
        )
        if ttl is not None:
            request.ttl.CopyFrom(_duration(ttl))
        response: auth_pb2.CreateKeyResponse = await self._keys("CreateKey", request)
        return response

    async def list_keys(self, namespace: str = "") -> list[auth_pb2.ApiKey]:
        """Every API key (of ``namespace`` if given), revoked ones included; no secrets."""
        request = auth_pb2.ListKeysRequest(namespace=namespace)
        response: auth_pb2.ListKeysResponse = await self._keys("ListKeys", request)
        return list(response.keys)

    async def revoke_key(self, key_id: str) -> auth_pb2.ApiKey:
        """Revokes an API key by its id (the part after ``cvk_``)."""
        request = auth_pb2.RevokeKeyRequest(key_id=key_id)
        response: auth_pb2.RevokeKeyResponse = await self._keys("RevokeKey", request)
        return response.key

    async def _keys(self, method: str, request: Any) -> Any:
        return await self._unary(method, request, auth_pb2_grpc.AuthServiceStub)
