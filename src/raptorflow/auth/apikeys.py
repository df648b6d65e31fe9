"""API-key secrets: `rf_` + public prefix + random secret + checksum; only a hash is stored."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from raptorflow.kit.crypto import base62, random_base62, sha256_hex

KEY_PREFIX = "rf_"
_ID_LEN = 10
_SECRET_LEN = 32
_CHECK_LEN = 6


@dataclass(frozen=True)
class NewKey:
    """A freshly minted key: `secret` is shown once, `lookup` and `digest` are stored."""

    secret: str
    lookup: str
    digest: str


def _checksum(body: str) -> str:
    return base62(zlib.crc32(body.encode()), _CHECK_LEN)


def mint() -> NewKey:
    """Create a new key."""
    body = random_base62(_ID_LEN) + random_base62(_SECRET_LEN)
    secret = KEY_PREFIX + body + _checksum(body)
    return NewKey(secret=secret, lookup=KEY_PREFIX + body[:_ID_LEN], digest=sha256_hex(secret))


def parse(secret: str) -> str | None:
    """The lookup prefix of a well-formed key (checksum valid), or None."""
    if not secret.startswith(KEY_PREFIX):
        return None
    body = secret[len(KEY_PREFIX) :]
    if len(body) != _ID_LEN + _SECRET_LEN + _CHECK_LEN or not body.isalnum():
        return None
    payload, check = body[:-_CHECK_LEN], body[-_CHECK_LEN:]
    if _checksum(payload) != check:
        return None
    return KEY_PREFIX + payload[:_ID_LEN]
