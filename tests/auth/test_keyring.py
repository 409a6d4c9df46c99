"""API keys in a real ``conveyor_keys`` bucket: only hashes stored, revocation and expiry
refused, and what one gateway changes seen by another through the watch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from conveyor import buckets, jetstream, subjects
from conveyor.api.auth.v1 import auth_pb2
from conveyor.auth.keyring import BUCKET_TIMEOUT, KeyRing, proto_role
from conveyor.auth.keys import ApiKey, new_key, parse_key
from conveyor.auth.principal import Principal, Role
from conveyor.config import CommonSettings
from conveyor.errors import AlreadyExists, NotFound, Unauthenticated, Unavailable
from tests.conftest import NatsServer

pytestmark = [pytest.mark.integration]


@pytest.fixture
async def kv(nats_connection: tuple[object, JetStreamContext], common: CommonSettings) -> KeyValue:
    _, js = nats_connection
    return (await jetstream.ensure_buckets(js, common))[subjects.KV_KEYS]


@pytest.fixture
async def ring(kv: KeyValue) -> AsyncIterator[KeyRing]:
    ring = KeyRing(kv)
    await ring.start()
    yield ring
    await ring.stop()


async def eventually_refused(ring: KeyRing, key: ApiKey, why: str) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            await ring.verify(key)
        except Unauthenticated as exc:
            assert why in exc.message
            return
        assert time.monotonic() < deadline, "the change never reached this key ring"
        await asyncio.sleep(0.01)


def test_keys_have_the_documented_shape() -> None:
    key = new_key()
    text = str(key)
    assert text.startswith(f"cvk_{key.key_id}_") and len(key.key_id) == 12
    assert len(key.secret) >= 43  # 32 random bytes, URL-safe base64
    assert parse_key(text) == key
    assert key.secret not in repr(key)
    assert parse_key("cvk_notakey") is None
    assert parse_key(f"cvk_{key.key_id}_short") is None


async def test_a_created_key_authenticates_as_its_role_and_namespace(
    ring: KeyRing, kv: KeyValue
) -> None:
    info, key = await ring.create("team-a", Role.SUBMITTER, description="ci")
    assert await ring.verify(key) == Principal(f"key:{key.key_id}", Role.SUBMITTER, "team-a")
    assert info.description == "ci" and not info.HasField("expire_time")
    # Only the hash is stored: the bucket never holds the secret.
    stored = (await buckets.entries(kv))[key.key_id]
    assert key.secret.encode() not in stored and str(key).encode() not in stored
    assert key.secret_sha256 in stored


async def test_a_wrong_secret_or_an_unknown_id_is_refused_alike(ring: KeyRing) -> None:
    _, key = await ring.create("default", Role.ADMIN)
    forged = ApiKey(key.key_id, new_key().secret)
    unknown = new_key()
    for bad in (forged, unknown):
        with pytest.raises(Unauthenticated) as refused:
            await ring.verify(bad)
        assert refused.value.message == "invalid API key"


async def test_revocation_reaches_another_gateway_through_the_watch(
    ring: KeyRing, kv: KeyValue
) -> None:
    other = KeyRing(kv)  # a second gateway's table
    await other.start()
    try:
        _, key = await ring.create("default", Role.READER)
        assert (await other.verify(key)).role is Role.READER  # read directly on a miss
        revoked = await ring.revoke(key.key_id)
        assert revoked.revoked and revoked.HasField("revoke_time")
        await eventually_refused(ring, key, "revoked")
        await eventually_refused(other, key, "revoked")
        listed = {k.key_id: k for k in await other.list()}
        assert listed[key.key_id].revoked  # kept, for the record
    finally:
        await other.stop()


async def test_an_expired_key_is_refused(kv: KeyValue) -> None:
    now = [time.time()]
    ring = KeyRing(kv, clock=lambda: now[0])
    await ring.start()
    try:
        _, key = await ring.create("default", Role.READER, ttl_seconds=60)
        assert (await ring.verify(key)).role is Role.READER
        now[0] += 61
        with pytest.raises(Unauthenticated, match="expired"):
            await ring.verify(key)
    finally:
        await ring.stop()


async def test_a_deleted_entry_stops_authenticating(ring: KeyRing, kv: KeyValue) -> None:
    _, key = await ring.create("default", Role.READER)
    await ring.verify(key)
    await kv.delete(key.key_id)
    await eventually_refused(ring, key, "invalid API key")


async def test_the_provided_admin_key_is_stored_once_and_never_replaced(
    ring: KeyRing,
) -> None:
    key = new_key()
    assert await ring.ensure(key, Role.ADMIN, "default", "bootstrap")
    assert not await ring.ensure(key, Role.ADMIN, "default", "bootstrap")
    assert (await ring.verify(key)).role is Role.ADMIN
    # Another secret under the same id would take the key over: refused.
    with pytest.raises(AlreadyExists):
        await ring.ensure(ApiKey(key.key_id, new_key().secret), Role.ADMIN, "default", "x")
    # A revoked bootstrap key stays revoked across restarts.
    await ring.revoke(key.key_id)
    assert not await ring.ensure(key, Role.ADMIN, "default", "bootstrap")
    with pytest.raises(Unauthenticated, match="revoked"):
        await ring.verify(key)


async def test_revoking_an_unknown_key_is_not_found(ring: KeyRing) -> None:
    with pytest.raises(NotFound):
        await ring.revoke(new_key().key_id)


async def test_list_filters_by_namespace_and_shows_no_secret(ring: KeyRing) -> None:
    _, a = await ring.create("team-a", Role.READER)
    _, b = await ring.create("team-b", Role.OPERATOR)
    assert [k.key_id for k in await ring.list("team-a")] == [a.key_id]
    everything = await ring.list()
    assert {k.key_id for k in everything} == {a.key_id, b.key_id}
    for listed in everything:
        assert a.secret not in str(listed) and b.secret not in str(listed)


def test_the_proto_roles_are_the_principal_roles() -> None:
    """Stored keys carry auth.proto's Role, read back as conveyor.auth.principal.Role."""
    proto = {name: number for name, number in auth_pb2.Role.items() if number}
    assert proto == {proto_role(role): role.value for role in Role}


async def test_a_key_ring_stopped_as_it_starts_always_stops(kv: KeyValue) -> None:
    """A gateway stopping while its key ring's watch starts: a stop that comes with NATS's
    reply was lost (Python 3.11's wait_for), and the stop waited forever."""
    for _ in range(200):
        ring = KeyRing(kv)
        await ring.start()
        with pytest.raises(Unauthenticated):
            await ring.verify(new_key())  # one read of the bucket, as the watch starts
        stopping = asyncio.create_task(ring.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert stopping in done, "the key ring's stop waited on its watch"


async def test_an_unreachable_bucket_is_unavailable_in_bounded_time(
    ring: KeyRing, nats_server: NatsServer
) -> None:
    """NATS gone as the gateway starts: storing the provided admin key says so within
    BUCKET_TIMEOUT (the gateway retries, then fails its start saying why)."""
    nats_server.kill()
    started = time.monotonic()
    with pytest.raises(Unavailable, match="API keys bucket did not answer"):
        await ring.ensure(new_key(), Role.ADMIN, "default", "bootstrap")
    assert time.monotonic() - started < BUCKET_TIMEOUT + 2
    async with asyncio.timeout(5):
        await ring.stop()
