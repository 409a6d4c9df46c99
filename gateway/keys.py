"""AuthService: API keys made, listed and revoked by admins (conveyor.auth.keyring), and
WhoAmI for any caller."""

from __future__ import annotations

import logging
from typing import Any

from conveyor.api.auth.v1 import auth_pb2, auth_pb2_grpc
from conveyor.auth.keyring import KeyRing, proto_role
from conveyor.auth.keys import KEY_ID_PATTERN
from conveyor.auth.principal import (
    DEFAULT_NAMESPACE,
    Role,
    check_namespace,
    current_namespace,
    current_principal,
)
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.tasks import seconds

log = logging.getLogger(__name__)

Context = Any  # grpc.aio.ServicerContext; grpc ships no type information
MAX_DESCRIPTION = 256


def _create_request(request: auth_pb2.CreateKeyRequest) -> tuple[str, Role, float]:
    """The namespace, role and lifetime of a valid request; every problem at once."""
    problems: list[FieldViolation] = []
    namespace = request.namespace or DEFAULT_NAMESPACE
    try:
        check_namespace(namespace)
    except InvalidArgument as exc:
        problems.extend(exc.violations)
    role = Role.READER
    try:
        role = Role(request.role)
    except ValueError:
        problems.append(FieldViolation("role", "must be reader, submitter, operator or admin"))
    ttl = seconds(request.ttl) if request.HasField("ttl") else 0.0
    if ttl < 0 or (request.HasField("ttl") and ttl == 0):
        problems.append(FieldViolation("ttl", "must be positive (leave it out for no expiry)"))
    if len(request.description) > MAX_DESCRIPTION:
        problems.append(FieldViolation("description", f"at most {MAX_DESCRIPTION} characters"))
    if problems:
        raise InvalidArgument.for_fields(problems)
    return namespace, role, ttl


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    """Thin servicer over the key ring; the role table lets only admins at the keys."""

    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring

    async def WhoAmI(
        self, request: auth_pb2.WhoAmIRequest, context: Context
    ) -> auth_pb2.WhoAmIResponse:
        caller = current_principal()
        return auth_pb2.WhoAmIResponse(
            subject=caller.subject, role=proto_role(caller.role), namespace=current_namespace()
        )

    async def CreateKey(
        self, request: auth_pb2.CreateKeyRequest, context: Context
    ) -> auth_pb2.CreateKeyResponse:
        namespace, role, ttl = _create_request(request)
        info, key = await self._keyring.create(namespace, role, ttl, request.description)
        log.info(
            "%s created API key %s (%s in %s)",
            current_principal().subject,
            info.key_id,
            role.label,
            namespace,
        )
        return auth_pb2.CreateKeyResponse(key=info, api_key=str(key))

    async def ListKeys(
        self, request: auth_pb2.ListKeysRequest, context: Context
    ) -> auth_pb2.ListKeysResponse:
        if request.namespace:
            check_namespace(request.namespace)
        return auth_pb2.ListKeysResponse(keys=await self._keyring.list(request.namespace))

    async def RevokeKey(
        self, request: auth_pb2.RevokeKeyRequest, context: Context
    ) -> auth_pb2.RevokeKeyResponse:
        if not KEY_ID_PATTERN.match(request.key_id):
            why = "must be a key id: the 12 hex digits after cvk_ in the key"
            raise InvalidArgument.for_fields([FieldViolation("key_id", why)])
        key = await self._keyring.revoke(request.key_id)
        log.info("%s revoked API key %s", current_principal().subject, key.key_id)
        return auth_pb2.RevokeKeyResponse(key=key)
