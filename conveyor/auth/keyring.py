"""The API keys in the ``conveyor_keys`` bucket, as the gateway verifies and manages them.

Every gateway keeps the whole table in memory through a KV watch (like the type catalog),
so verifying a key costs a dictionary lookup and one SHA-256, never a round trip. A key
the watch has not delivered yet (created a moment ago on another gateway) is read from
the bucket directly; a miss is remembered for a second, so made-up key ids cannot turn
every call into a bucket read. A revocation reaches every gateway within the watch's
latency (milliseconds on a healthy cluster).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, ServiceUnavailableError
from nats.js.kv import KeyValue

from conveyor import buckets
from conveyor.api.auth.v1 import auth_pb2
from conveyor.api.events.v1 import keys_pb2
from conveyor.auth.keys import ApiKey, matches, new_key
from conveyor.auth.principal import Principal, Role
from conveyor.errors import AlreadyExists, NotFound, Unauthenticated, Unavailable
from conveyor.lifecycle import cancel_and_wait
from conveyor.tasks import timestamp

log = logging.getLogger(__name__)

T = TypeVar("T")

MISS_SECONDS = 1.0
"""How long a key id found nowhere is refused without asking the bucket again."""
MAX_MISSES = 10_000
"""Remembered misses at most; the memory is cleared past it (a flood of made-up ids)."""
BUCKET_TIMEOUT = 5.0
"""The longest wait for the bucket on a miss or a change."""
UNREACHABLE = (
    TimeoutError,  # nats.errors.TimeoutError too
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    ServiceUnavailableError,
)
"""What a bucket call raises when NATS or JetStream does not answer (now)."""
INVALID = "invalid API key"
"""The one answer to an unknown key id or a wrong secret, so neither can be told apart."""


def proto_role(role: Role) -> str:
    """The name of ``role`` in auth.proto's Role enum."""
    return f"ROLE_{role.name}"


def principal_of(stored: keys_pb2.StoredKey) -> Principal:
    try:
        role = Role(stored.key.role)
    except ValueError:
        raise Unauthenticated(INVALID) from None  # no role: an entry nobody could have made
    return Principal(f"key:{stored.key.key_id}", role, stored.key.namespace)


class KeyRing:
    """API keys by key id, kept current by a watch of the bucket."""

    def __init__(self, kv: KeyValue, clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self._clock = clock
        self._keys: dict[str, keys_pb2.StoredKey] = {}
        self._misses: dict[str, float] = {}
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Loads every key and follows later changes (until the watch has delivered a
        key, :meth:`verify` reads it from the bucket)."""
        self._watch = asyncio.create_task(buckets.follow(self._kv, self._changed), name="key-ring")

    async def stop(self) -> None:
        if self._watch is not None:
            await cancel_and_wait(self._watch)

    async def _changed(self, key_id: str, value: bytes | None) -> None:
        if value is None:
            self._keys.pop(key_id, None)
        else:
            self._remember(key_id, value)

    def _remember(self, key_id: str, value: bytes) -> keys_pb2.StoredKey | None:
        try:
            stored = keys_pb2.StoredKey.FromString(value)
        except Exception:
            log.error("API key entry %r is not a StoredKey; ignored", key_id)
            return None
        self._keys[key_id] = stored
        self._misses.pop(key_id, None)
        return stored

    # --- verifying -------------------------------------------------------------------------

    async def verify(self, key: ApiKey) -> Principal:
        """The principal of a valid key; Unauthenticated when it is unknown, its secret
        wrong, or it is revoked or expired."""
        stored = self._keys.get(key.key_id) or await self._read(key.key_id)
        if stored is None or not matches(key, stored.secret_sha256):
            raise Unauthenticated(INVALID)
        if stored.key.revoked:
            raise Unauthenticated(f"API key {key.key_id} was revoked")
        expires = stored.key.expire_time
        if expires.seconds and self._clock() >= expires.seconds + expires.nanos / 1e9:
            raise Unauthenticated(f"API key {key.key_id} expired")
        return principal_of(stored)

    async def _read(self, key_id: str) -> keys_pb2.StoredKey | None:
        now = time.monotonic()
        if self._misses.get(key_id, 0.0) > now:
            return None
        try:
            entry = await asyncio.wait_for(self._kv.get(key_id), BUCKET_TIMEOUT)
        except KeyNotFoundError:
            entry = None
        except Exception as exc:
            # Refused, not let through: an unreachable bucket must not open the door.
            log.warning("API key lookup of %s failed: %r", key_id, exc)
            raise Unavailable("API keys cannot be checked now; retry") from exc
        if entry is None or not entry.value:
            if len(self._misses) >= MAX_MISSES:
                self._misses.clear()
            self._misses[key_id] = now + MISS_SECONDS
            return None
        return self._remember(key_id, entry.value)

    # --- managing --------------------------------------------------------------------------

    async def create(
        self, namespace: str, role: Role, ttl_seconds: float = 0.0, description: str = ""
    ) -> tuple[auth_pb2.ApiKey, ApiKey]:
        """A new key, stored as its hash; returns its description and the key itself."""
        key = new_key()
        stored = _stored(key, role, namespace, description)
        if ttl_seconds > 0:
            stored.key.expire_time.FromNanoseconds(int((self._clock() + ttl_seconds) * 1e9))
        await self._put_new(stored)
        return stored.key, key

    async def ensure(self, key: ApiKey, role: Role, namespace: str, description: str) -> bool:
        """Makes sure ``key`` is stored with ``role`` (the admin key a deployment provides
        in a file); True when it was added. A key id already stored with another secret is
        an error, and a revoked one stays revoked."""
        try:
            entry = await _bucket(self._kv.get(key.key_id))
        except KeyNotFoundError:
            entry = None
        if entry is not None and entry.value:
            stored = keys_pb2.StoredKey.FromString(entry.value)
            if not matches(key, stored.secret_sha256):
                raise AlreadyExists(f"API key id {key.key_id} is stored with another secret")
            if stored.key.revoked:
                log.warning("the provided admin key %s is revoked: it will be refused", key.key_id)
            return False
        try:
            await self._put_new(_stored(key, role, namespace, description))
        except AlreadyExists:
            return await self.ensure(key, role, namespace, description)  # another gateway won
        return True

    async def _put_new(self, stored: keys_pb2.StoredKey) -> None:
        try:
            await _bucket(self._kv.create(stored.key.key_id, stored.SerializeToString()))
        except KeyWrongLastSequenceError:
            raise AlreadyExists(f"API key {stored.key.key_id} exists") from None
        self._keys[stored.key.key_id] = stored

    async def list(self, namespace: str = "") -> list[auth_pb2.ApiKey]:
        """Every key (of ``namespace`` if given), read from the bucket itself."""
        found = []
        for key_id, value in (await _bucket(buckets.entries(self._kv))).items():
            stored = self._remember(key_id, value)
            if stored is not None and namespace in ("", stored.key.namespace):
                found.append(stored.key)
        found.sort(key=lambda k: (k.namespace, k.create_time.ToNanoseconds(), k.key_id))
        return found

    async def revoke(self, key_id: str) -> auth_pb2.ApiKey:
        """Marks a key revoked (kept, so list-keys shows it); NotFound if there is none."""
        for _ in range(10):
            try:
                entry = await _bucket(self._kv.get(key_id))
            except KeyNotFoundError:
                entry = None
            if entry is None or not entry.value:
                raise NotFound(f"API key {key_id} not found")
            stored = keys_pb2.StoredKey.FromString(entry.value)
            if not stored.key.revoked:
                stored.key.revoked = True
                stored.key.revoke_time.CopyFrom(timestamp())
            try:
                await _bucket(
                    self._kv.update(key_id, stored.SerializeToString(), last=entry.revision)
                )
            except KeyWrongLastSequenceError:
                continue
            self._keys[key_id] = stored
            return stored.key
        raise Unavailable(f"API key {key_id} keeps changing; try again")


async def _bucket(call: Awaitable[T]) -> T:
    """``call`` on the keys bucket, given BUCKET_TIMEOUT; Unavailable when NATS does not
    answer, so a caller (or the gateway's start) learns why instead of a bare timeout."""
    try:
        return await asyncio.wait_for(call, BUCKET_TIMEOUT)
    except UNREACHABLE as exc:
        raise Unavailable(f"the API keys bucket did not answer ({exc!r}); retry") from exc


def _stored(key: ApiKey, role: Role, namespace: str, description: str) -> keys_pb2.StoredKey:
    """What the bucket keeps of a new key: its description and the hash of its secret."""
    info = auth_pb2.ApiKey(
        key_id=key.key_id,
        namespace=namespace,
        role=proto_role(role),
        create_time=timestamp(),
        description=description,
    )
    return keys_pb2.StoredKey(key=info, secret_sha256=key.secret_sha256)
