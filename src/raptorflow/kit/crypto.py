"""Small cryptographic helpers: random secrets, digests, constant-time compare, sealed boxes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def random_token(nbytes: int = 32) -> str:
    """URL-safe random text."""
    return secrets.token_urlsafe(nbytes)


def random_base62(length: int) -> str:
    """Random letters and digits only (safe to double-click and to put in a header)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def base62(number: int, width: int) -> str:
    """`number` written in base 62, left-padded to `width`."""
    out = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def sha256_hex(value: str) -> str:
    """Hex SHA-256 of UTF-8 text (for stored secrets that are already high-entropy)."""
    return hashlib.sha256(value.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time string comparison."""
    return hmac.compare_digest(a.encode(), b.encode())


def _derive(secret_key: str, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        secret_key.encode()
    )


def seal(plaintext: str, secret_key: str, purpose: str) -> str:
    """Encrypt with AES-256-GCM under a key derived from `secret_key` for one purpose."""
    nonce = os.urandom(12)
    box = AESGCM(_derive(secret_key, purpose)).encrypt(nonce, plaintext.encode(), purpose.encode())
    return base64.b64encode(nonce + box).decode()


def unseal(sealed: str, secret_key: str, purpose: str) -> str:
    """Decrypt what `seal` produced; raises when the key or the data is wrong."""
    raw = base64.b64decode(sealed)
    return AESGCM(_derive(secret_key, purpose)).decrypt(raw[:12], raw[12:], purpose.encode()).decode()
