"""ES256 access tokens: signing keys kept in the database, a JWKS document, issue and verify."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from raptorflow.auth.repository import IdentityRepository
from raptorflow.kit.crypto import random_base62, seal, unseal
from raptorflow.kit.db import utcnow
from raptorflow.models import SigningKey

ALGORITHM = "ES256"
_SEAL_PURPOSE = "raptorflow/signing-key"


class TokenInvalid(Exception):
    """The access token cannot be accepted; the message is safe to show."""


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    jti: str
    expires_at: int


@dataclass(frozen=True)
class _Key:
    kid: str
    private: ec.EllipticCurvePrivateKey | None
    public: Any
    retired_at: datetime | None
    public_jwk: dict[str, Any]


def new_signing_key(secret_key: str | None, now: datetime) -> SigningKey:
    """Generate an ES256 key pair as a row (private key sealed with the secret key when there is one)."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    kid = now.strftime("%Y%m%d") + "-" + random_base62(10)
    jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig", "alg": ALGORITHM})
    return SigningKey(
        kid=kid,
        algorithm=ALGORITHM,
        private_key=seal(pem, secret_key, _SEAL_PURPOSE) if secret_key else pem,
        encrypted=bool(secret_key),
        public_jwk=jwk,
        created_at=now,
        retired_at=None,
    )


class TokenIssuer:
    """Per-process view of the signing keys; reloads from the database on an unknown kid."""

    RELOAD_EVERY_S = 60.0
    MIN_RELOAD_GAP_S = 2.0

    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        secret_key: str | None,
    ) -> None:
        self.factory = factory
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s
        self.secret_key = secret_key
        self._keys: dict[str, _Key] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    def _to_key(self, row: SigningKey) -> _Key:
        private: ec.EllipticCurvePrivateKey | None = None
        try:
            pem = row.private_key
            if row.encrypted:
                if not self.secret_key:
                    raise ValueError("sealed key without RAPTORFLOW_SECRET_KEY")
                pem = unseal(row.private_key, self.secret_key, _SEAL_PURPOSE)
            loaded = serialization.load_pem_private_key(pem.encode(), password=None)
            if isinstance(loaded, ec.EllipticCurvePrivateKey):
                private = loaded
        except Exception:  # a key we cannot unseal (secret changed) still verifies with its public half
            private = None
        public = jwt.algorithms.ECAlgorithm.from_jwk(row.public_jwk)
        return _Key(row.kid, private, public, row.retired_at, dict(row.public_jwk))

    async def reload(self, *, force: bool = False) -> None:
        """Read the keys again (at most every MIN_RELOAD_GAP_S unless forced)."""
        async with self._lock:
            if not force and time.monotonic() - self._loaded_at < self.MIN_RELOAD_GAP_S:
                return
            async with self.factory() as session:
                rows = await IdentityRepository(session).signing_keys()
            self._keys = {row.kid: self._to_key(row) for row in rows}
            self._loaded_at = time.monotonic()

    async def _fresh(self) -> None:
        if not self._keys or time.monotonic() - self._loaded_at > self.RELOAD_EVERY_S:
            await self.reload()

    async def ensure_key(self) -> None:
        """Create a signing key when none can sign (first start)."""
        await self._fresh()
        if any(k.private is not None and k.retired_at is None for k in self._keys.values()):
            return
        async with self.factory() as session:
            session.add(new_signing_key(self.secret_key, utcnow()))
            await session.commit()
        await self.reload(force=True)

    async def jwks(self) -> dict[str, Any]:
        """Public keys that may still verify a live token."""
        await self._fresh()
        # Other processes may sign with a retired key until their next reload: publish it that much longer.
        horizon = utcnow() - timedelta(seconds=self.ttl_s + self.RELOAD_EVERY_S)
        keys = [k.public_jwk for k in self._keys.values() if k.retired_at is None or k.retired_at > horizon]
        return {"keys": keys}

    async def issue(self, user_id: uuid.UUID, session_id: uuid.UUID) -> tuple[str, int]:
        """Sign an access token (call `ensure_key` first, outside any write transaction)."""
        await self._fresh()
        key = next((k for k in self._keys.values() if k.private is not None and k.retired_at is None), None)
        if key is None or key.private is None:
            raise RuntimeError("no signing key: ensure_key() must run before issuing tokens")
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "sid": str(session_id),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})
        return token, self.ttl_s

    async def verify(self, token: str) -> AccessClaims:
        """Verify one of our access tokens (ES256 only, issuer, audience, expiry)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenInvalid("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise TokenInvalid("algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenInvalid("token has no key id")
        await self._fresh()
        if kid not in self._keys:
            await self.reload()
        key = self._keys.get(kid)
        if key is None:
            raise TokenInvalid("unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key.public,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=10,
                options={"require": ["exp", "iat", "sub", "sid", "jti", "iss", "aud"]},
            )
            return AccessClaims(
                uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"]), claims["jti"], int(claims["exp"])
            )
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("token expired") from None
        except (jwt.PyJWTError, ValueError):
            raise TokenInvalid("token rejected") from None


async def rotate_keys(session: AsyncSession, secret_key: str | None) -> SigningKey:
    """Add a new signing key and retire the current ones (which keep verifying until expiry)."""
    now = utcnow()
    repo = IdentityRepository(session)
    await repo.retire_signing_keys(now)
    key = new_signing_key(secret_key, now)
    await repo.add(key)
    return key
