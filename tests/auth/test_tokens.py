"""OIDC/JWT bearer tokens: signed in the test with keys made here, the issuer's JWKS
served from a file and from a local HTTP server; every forged or stale token refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conveyor.auth import tokens
from conveyor.auth.principal import Principal, Role
from conveyor.auth.tokens import JwtVerifier
from conveyor.config import ConfigError, GatewaySettings, JwtSettings
from conveyor.errors import PermissionDenied, Unauthenticated

ISSUER = "https://issuer.example.com/"
AUDIENCE = "conveyor"


class Issuer:
    """An identity provider's signing keys, and the JWKS that publishes them."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.add("one")

    def add(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> dict[str, Any]:
        published = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            published.append({**jwk, "kid": kid, "use": "sig", "alg": "ES256"})
        return {"keys": published}

    def token(self, kid: str = "one", **overrides: Any) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "exp": int(time.time()) + 300,
            "conveyor_role": "submitter",
            "conveyor_namespace": "team-a",
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.keys[kid], algorithm="ES256", headers={"kid": kid})


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def jwks_file(issuer: Issuer, tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()))
    return path


@pytest.fixture
def jwks_url(issuer: Issuer) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(issuer.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


def settings(jwks: str) -> JwtSettings:
    return JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, leeway_seconds=0)


async def verifier(jwks: str) -> JwtVerifier:
    made = JwtVerifier(settings(jwks))
    await made.start()
    return made


@pytest.fixture(params=["file", "url"])
async def verify(request: pytest.FixtureRequest, jwks_file: Path) -> JwtVerifier:
    if request.param == "file":
        return await verifier(str(jwks_file))
    return await verifier(request.getfixturevalue("jwks_url"))


async def test_a_valid_token_maps_its_claims(verify: JwtVerifier, issuer: Issuer) -> None:
    principal = await verify.verify(issuer.token())
    assert principal == Principal("jwt:alice", Role.SUBMITTER, "team-a")


async def test_a_role_list_grants_the_highest_and_no_namespace_is_default(
    verify: JwtVerifier, issuer: Issuer
) -> None:
    token = issuer.token(conveyor_role=["reader", "operator", "cook"], conveyor_namespace=None)
    assert await verify.verify(token) == Principal("jwt:alice", Role.OPERATOR, "default")


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"iss": "https://evil.example.com/"}, "(?i)issuer"),
        ({"aud": "someone-else"}, "(?i)audience"),
        ({"exp": int(time.time()) - 10}, "(?i)expired"),
        ({"exp": None}, "exp"),
        ({"aud": None}, "aud"),
    ],
)
async def test_wrong_claims_are_refused(
    verify: JwtVerifier, issuer: Issuer, claims: dict[str, Any], why: str
) -> None:
    with pytest.raises(Unauthenticated, match=why):
        await verify.verify(issuer.token(**claims))


async def test_a_token_of_another_key_is_refused(verify: JwtVerifier) -> None:
    stranger = Issuer()  # same kid, another private key
    with pytest.raises(Unauthenticated, match="Signature"):
        await verify.verify(stranger.token())
    stranger.add("unknown")
    with pytest.raises(Unauthenticated, match="no signing key 'unknown'"):
        await verify.verify(stranger.token("unknown"))


async def test_alg_none_is_refused(verify: JwtVerifier, issuer: Issuer) -> None:
    claims = jwt.decode(issuer.token(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": "one"})
    with pytest.raises(Unauthenticated, match="alg value is not allowed"):
        await verify.verify(unsigned)


async def test_the_public_key_as_an_hmac_secret_is_refused(
    verify: JwtVerifier, issuer: Issuer
) -> None:
    """Key confusion: a token signed with HS256 using the published public key."""
    public = (
        issuer.keys["one"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = jwt.decode(issuer.token(), options={"verify_signature": False})
    forged = _hs256(claims, public)
    with pytest.raises(Unauthenticated):
        await verify.verify(forged)


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    """HS256 by hand: PyJWT itself refuses a PEM public key as an HMAC secret."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "one"}).encode())
    body = part(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(signature)}"


async def test_claims_without_a_role_are_denied(verify: JwtVerifier, issuer: Issuer) -> None:
    with pytest.raises(PermissionDenied, match="conveyor_role"):
        await verify.verify(issuer.token(conveyor_role=None))
    with pytest.raises(PermissionDenied, match="conveyor_namespace"):
        await verify.verify(issuer.token(conveyor_namespace="Not A Namespace"))


async def test_garbage_is_refused(verify: JwtVerifier) -> None:
    for token in ("not-a-token", "a.b.c", ""):
        with pytest.raises(Unauthenticated):
            await verify.verify(token)


async def test_a_key_the_issuer_rotates_in_is_fetched_once(
    issuer: Issuer, jwks_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "REFRESH_SECONDS", 0.2)
    made = await verifier(jwks_url)
    issuer.add("two")
    await asyncio.sleep(0.25)
    assert (await made.verify(issuer.token("two"))).subject == "jwt:alice"


async def test_configured_claim_names_are_used(jwks_file: Path, issuer: Issuer) -> None:
    custom = JwtVerifier(
        JwtSettings(
            issuer=ISSUER,
            audience=AUDIENCE,
            jwks=str(jwks_file),
            role_claim="roles",
            namespace_claim="tenant",
        )
    )
    await custom.start()
    token = issuer.token(roles=["admin"], tenant="acme")
    assert await custom.verify(token) == Principal("jwt:alice", Role.ADMIN, "acme")


def test_settings_need_issuer_audience_and_keys_and_refuse_plain_http() -> None:
    with pytest.raises(ConfigError) as missing:
        GatewaySettings.from_env({"CONVEYOR_AUTH": "keys,jwt"})
    text = str(missing.value)
    for name in ("CONVEYOR_JWT_ISSUER", "CONVEYOR_JWT_AUDIENCE", "CONVEYOR_JWKS"):
        assert name in text
    with pytest.raises(ConfigError, match="https"):
        GatewaySettings.from_env(
            {
                "CONVEYOR_AUTH": "jwt",
                "CONVEYOR_JWT_ISSUER": ISSUER,
                "CONVEYOR_JWT_AUDIENCE": AUDIENCE,
                "CONVEYOR_JWKS": "http://idp.example.com/jwks.json",
            }
        )
    with pytest.raises(ConfigError, match="CONVEYOR_AUTH"):
        GatewaySettings.from_env({"CONVEYOR_AUTH": "password"})
    on = GatewaySettings.from_env(
        {
            "CONVEYOR_AUTH": "jwt,keys",
            "CONVEYOR_JWT_ISSUER": ISSUER,
            "CONVEYOR_JWT_AUDIENCE": AUDIENCE,
            "CONVEYOR_JWKS": "/k.json",
        }
    )
    assert on.auth.methods == ("keys", "jwt")
    assert GatewaySettings.from_env({}).auth.methods == ()
    assert GatewaySettings.from_env({"CONVEYOR_AUTH": "off"}).auth.enabled is False


async def test_an_rsa_issuer_works_too(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "r"}]}))
    made = JwtVerifier(settings(str(tmp_path / "jwks.json")))
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int(time.time()) + 60,
        "conveyor_role": "reader",
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "r"})
    await made.start()
    assert (await made.verify(token)).role is Role.READER
