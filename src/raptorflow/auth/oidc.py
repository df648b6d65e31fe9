"""Verify bearer JWTs issued by an external identity provider (Supabase Auth or any OIDC provider)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import structlog
from jwt.types import Options

ASYMMETRIC_ALGORITHMS: tuple[str, ...] = ("ES256", "RS256", "EdDSA")
_HS256 = "HS256"
_REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "aud")
_LEEWAY_S = 30
_MAX_CACHE_SECONDS = 600
# Bounds how often tokens carrying unknown kids (or an unreachable endpoint) can make us hit the JWKS URL.
_MIN_FETCH_GAP_S = 5.0
# RFC 7518 §3.2: an HS256 key shorter than the hash output is weak; Supabase secrets are at least this long.
_MIN_HS256_SECRET_BYTES = 32
# Some providers sit behind CDNs that refuse urllib's default User-Agent.
_USER_AGENT = "raptorflow-oidc/1"

log = structlog.get_logger("raptorflow.auth.oidc")

# Indirection so tests can move the cache clock without sleeping.
_monotonic: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class ExternalIdentity:
    """Who a verified external token says the caller is."""

    issuer: str
    subject: str
    email: str | None
    is_anonymous: bool


class ExternalTokenInvalid(Exception):
    """The external token cannot be accepted; the message is safe to show a client."""


class ExternalKeysUnavailable(Exception):
    """The identity provider's signing keys could not be obtained, so nothing can be verified."""


@dataclass(frozen=True)
class _KeySet:
    keys: Mapping[str, jwt.PyJWK]
    fetched_at: float | None


class _JwksCache:
    """Last good key set from a JWKS URL; refetches on expiry or unknown kid, at most every few seconds."""

    def __init__(self, url: str, *, cache_seconds: float, timeout_s: float) -> None:
        # PyJWKClient's own cache drops to a hard failure when a refetch fails, so it only fetches and
        # parses here; keeping the last good set is done below.
        self._client = jwt.PyJWKClient(
            url, cache_jwk_set=False, timeout=timeout_s, headers={"User-Agent": _USER_AGENT}
        )
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        # Replaced wholesale, never mutated, so the event loop can read it without the lock.
        self._set = _KeySet({}, None)
        self._last_attempt: float | None = None

    def _is_fresh(self, key_set: _KeySet, now: float) -> bool:
        return key_set.fetched_at is not None and now - key_set.fetched_at < self._cache_seconds

    def fresh_key(self, kid: str) -> jwt.PyJWK | None:
        """The key for kid when it is cached and not expired (never blocks, never fetches)."""
        key_set = self._set
        if not self._is_fresh(key_set, _monotonic()):
            return None
        return key_set.keys.get(kid)

    def key(self, kid: str) -> jwt.PyJWK:
        """The key for kid, fetching the JWKS when needed and allowed (blocking)."""
        known = self._set.keys.get(kid)
        if known is not None:
            # Another thread is already refreshing: a known kid keeps verifying with the copy we hold
            # rather than queueing behind a slow or dead endpoint.
            if not self._lock.acquire(blocking=False):
                return known
        else:
            self._lock.acquire()
        try:
            now = _monotonic()
            key_set = self._set
            wanted = not self._is_fresh(key_set, now) or kid not in key_set.keys
            if wanted and (self._last_attempt is None or now - self._last_attempt >= _MIN_FETCH_GAP_S):
                self._refresh(now)
                key_set = self._set
        finally:
            self._lock.release()
        found = key_set.keys.get(kid)
        if found is not None:
            return found
        if not key_set.keys:
            raise ExternalKeysUnavailable("identity provider keys unavailable")
        raise ExternalTokenInvalid("unknown signing key")

    def _refresh(self, now: float) -> None:
        self._last_attempt = now
        try:
            fetched = self._client.get_signing_keys()
        except (jwt.PyJWTError, ValueError, OSError) as exc:
            # A failed refetch must not throw away keys that still verify live tokens.
            log.warning("oidc.jwks_fetch_failed", url=self._client.uri, error=str(exc))
            return
        keys = {k.key_id: k for k in fetched if k.key_id and k.algorithm_name in ASYMMETRIC_ALGORITHMS}
        if not keys:
            log.warning("oidc.jwks_no_usable_keys", url=self._client.uri)
            return
        self._set = _KeySet(keys, now)


class ExternalTokenVerifier:
    """Verifies external bearer JWTs against the provider's JWKS (or its legacy HS256 secret)."""

    def __init__(
        self,
        *,
        jwks_url: str | None,
        issuer: str | None,
        audience: str | None,
        hs256_secret: str | None = None,
        cache_seconds: int = 600,
        timeout_s: float = 3.0,
    ) -> None:
        if cache_seconds <= 0:
            raise ValueError("cache_seconds must be positive")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        # Empty strings come from unset environment variables and mean "not configured".
        self._issuer = issuer or None
        self._audience = audience or None
        self._hs256_secret = hs256_secret or None
        if self._hs256_secret is not None and len(self._hs256_secret.encode()) < _MIN_HS256_SECRET_BYTES:
            raise ValueError(f"hs256_secret must be at least {_MIN_HS256_SECRET_BYTES} bytes")
        self._jwks: _JwksCache | None = None
        if jwks_url:
            try:
                self._jwks = _JwksCache(
                    jwks_url, cache_seconds=min(cache_seconds, _MAX_CACHE_SECONDS), timeout_s=timeout_s
                )
            except jwt.PyJWKClientError as exc:
                raise ValueError(str(exc)) from None

    @property
    def configured(self) -> bool:
        """True when an issuer and at least one way to check signatures are set."""
        return self._issuer is not None and (self._jwks is not None or self._hs256_secret is not None)

    def handles(self, token: str) -> bool:
        """True when the token's unverified `iss` is this verifier's issuer; never raises."""
        if not self.configured:
            return False
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except Exception:  # any garbage means "not ours", the caller tries its other verifiers
            return False
        return isinstance(claims, dict) and claims.get("iss") == self._issuer

    async def verify(self, token: str) -> ExternalIdentity:
        """Verify signature and claims; raises ExternalTokenInvalid or ExternalKeysUnavailable."""
        if not self.configured:
            raise ExternalTokenInvalid("external tokens not accepted")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise ExternalTokenInvalid("malformed token") from None
        alg = header.get("alg")
        if alg == _HS256:
            if self._hs256_secret is None:
                raise ExternalTokenInvalid("algorithm not allowed")
            # Kept apart from the asymmetric call so a public key can never be used as an HMAC secret.
            claims = self._decode(token, self._hs256_secret, [_HS256])
        elif alg in ASYMMETRIC_ALGORITHMS:
            if self._jwks is None:
                raise ExternalTokenInvalid("algorithm not allowed")
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise ExternalTokenInvalid("unknown signing key")
            key = self._jwks.fresh_key(kid)
            if key is None:
                key = await asyncio.to_thread(self._jwks.key, kid)
            claims = self._decode(token, key, list(ASYMMETRIC_ALGORITHMS))
        else:
            raise ExternalTokenInvalid("algorithm not allowed")
        return self._identity(claims)

    def _decode(self, token: str, key: jwt.PyJWK | str, algorithms: list[str]) -> dict[str, Any]:
        options: Options = {
            "require": list(_REQUIRED_CLAIMS),
            "verify_aud": self._audience is not None,
            "enforce_minimum_key_length": True,
        }
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=_LEEWAY_S,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise ExternalTokenInvalid("token expired") from None
        except jwt.ImmatureSignatureError:
            raise ExternalTokenInvalid("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise ExternalTokenInvalid("audience mismatch") from None
        except jwt.InvalidIssuerError:
            raise ExternalTokenInvalid("issuer mismatch") from None
        except jwt.MissingRequiredClaimError as exc:
            raise ExternalTokenInvalid(f"missing claim {exc.claim}") from None
        except jwt.InvalidAlgorithmError:
            raise ExternalTokenInvalid("algorithm not allowed") from None
        except jwt.InvalidSignatureError:
            raise ExternalTokenInvalid("invalid signature") from None
        except jwt.DecodeError:
            raise ExternalTokenInvalid("malformed token") from None
        except jwt.InvalidKeyError:
            raise ExternalTokenInvalid("signing key not acceptable") from None
        except jwt.PyJWTError:
            raise ExternalTokenInvalid("invalid token") from None
        return claims

    @staticmethod
    def _identity(claims: dict[str, Any]) -> ExternalIdentity:
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject.strip():
            raise ExternalTokenInvalid("missing claim sub")
        raw_email = claims.get("email")
        email = raw_email.strip().lower() if isinstance(raw_email, str) else None
        # `role`, `app_metadata`, `user_metadata` are provider-side data and deliberately grant nothing.
        return ExternalIdentity(
            issuer=str(claims["iss"]),
            subject=subject,
            email=email or None,
            is_anonymous=claims.get("is_anonymous") is True,
        )
