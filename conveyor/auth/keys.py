"""API keys: ``cvk_<key id>_<secret>``, made, parsed and checked against a stored hash.

The key id is short and public (it names the key in logs and in ``conveyor auth
list-keys``); the secret is 32 random bytes, URL-safe base64. Only SHA-256 of the secret
is stored: the secret is high-entropy, so a plain hash resists guessing as well as a slow
one would, and costs a microsecond per call instead of a slow hash's milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "cvk"
KEY_ID_BYTES = 6
SECRET_BYTES = 32
KEY_ID_PATTERN = re.compile(r"^[a-f0-9]{12}$")
KEY_PATTERN = re.compile(r"^cvk_([a-f0-9]{12})_([A-Za-z0-9_-]{43,})$")
"""The key id is 12 lowercase hex digits (no ``_``, so the key splits unambiguously);
the secret is at least 32 bytes of URL-safe base64."""


@dataclass(frozen=True)
class ApiKey:
    """A whole API key, as a client holds it."""

    key_id: str
    secret: str

    def __str__(self) -> str:
        return f"{PREFIX}_{self.key_id}_{self.secret}"

    def __repr__(self) -> str:
        return f"ApiKey({self.key_id!r}, <secret>)"  # never a secret in a log or traceback

    @property
    def secret_sha256(self) -> bytes:
        return hash_secret(self.secret)


def new_key() -> ApiKey:
    """A fresh key from the system's CSPRNG."""
    return ApiKey(secrets.token_hex(KEY_ID_BYTES), secrets.token_urlsafe(SECRET_BYTES))


def parse_key(text: str) -> ApiKey | None:
    """The key ``text`` holds, or None when it is not shaped like one."""
    match = KEY_PATTERN.match(text.strip())
    if match is None:
        return None
    return ApiKey(match.group(1), match.group(2))


def looks_like_key(token: str) -> bool:
    """Whether a bearer token is meant as an API key (rather than a JWT)."""
    return token.startswith(PREFIX + "_")


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def matches(key: ApiKey, stored_sha256: bytes) -> bool:
    """Whether ``key``'s secret is the one whose hash was stored, in constant time."""
    return hmac.compare_digest(key.secret_sha256, stored_sha256)
