"""API-key resolution cached in Redis (the lookup hot path), with explicit invalidation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from raptorflow.kit.logging import get_logger
from raptorflow.models import ApiKey

log = get_logger("raptorflow.auth")
PREFIX = "rf:apikey:"
TOUCH_PREFIX = "rf:apikey-touch:"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What authenticating an API key needs, without the database."""

    id: uuid.UUID
    org_id: uuid.UUID
    role: str
    secret_hash: str
    expires_at: datetime | None
    revoked_at: datetime | None
    allowed_ips: list[str] | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyRecord:
        """From a row."""
        return cls(
            key.id,
            key.org_id,
            key.role,
            key.secret_hash,
            key.expires_at,
            key.revoked_at,
            key.allowed_ips,
            key.last_used_at,
        )

    def dumps(self) -> bytes:
        """JSON for Redis."""
        return orjson.dumps(
            {
                "id": str(self.id),
                "org_id": str(self.org_id),
                "role": self.role,
                "secret_hash": self.secret_hash,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "allowed_ips": self.allowed_ips,
            }
        )

    @classmethod
    def loads(cls, raw: bytes) -> KeyRecord:
        """Back from Redis."""
        d = orjson.loads(raw)
        return cls(
            uuid.UUID(d["id"]),
            uuid.UUID(d["org_id"]),
            d["role"],
            d["secret_hash"],
            datetime.fromisoformat(d["expires_at"]) if d["expires_at"] else None,
            datetime.fromisoformat(d["revoked_at"]) if d["revoked_at"] else None,
            d["allowed_ips"],
            None,
        )


class ApiKeyCache:
    """Redis-backed cache; every Redis failure degrades to the database (never to a wrong answer)."""

    TTL_S = 30
    TOUCH_EVERY_S = 60
    # How long this process answers from its own memory (the lookup fast path) before asking Redis
    # again: the bound on how long a key revoked by ANOTHER process keeps working here.
    LOCAL_TTL_S = 1.0

    ASKED_MAX = 10_000

    def __init__(self, redis: Redis | None) -> None:
        self.redis = redis
        # When this process last asked Redis to claim a key's touch: between two claims a plain GET
        # is enough (a hint, not a cache — the claim itself stays in Redis, shared by all processes).
        self._asked: dict[str, float] = {}
        # Records read from Redis in the last LOCAL_TTL_S seconds: (read at, record).
        self._local: dict[str, tuple[float, KeyRecord]] = {}

    def recent(self, lookup: str) -> KeyRecord | None:
        """A record this process read from Redis less than LOCAL_TTL_S ago, when no touch is due.

        None sends the caller to `get_and_touch` (Redis, then the database), which refreshes it.
        """
        found = self._local.get(lookup)
        if found is None:
            return None
        now = time.monotonic()
        if now - found[0] >= self.LOCAL_TTL_S or now - self._asked.get(lookup, -1e9) >= self.TOUCH_EVERY_S:
            return None
        return found[1]

    def _remember(self, lookup: str, record: KeyRecord) -> None:
        if self.redis is None:
            return  # without Redis there is no shared invalidation: always ask the database
        if len(self._local) >= self.ASKED_MAX:
            self._local.clear()
        self._local[lookup] = (time.monotonic(), record)

    async def get_and_touch(self, lookup: str) -> tuple[KeyRecord | None, bool | None]:
        """The cached record (or None) and whether this call is the first use this minute, in one round trip.

        The second item is None when Redis cannot say (not configured or down).
        """
        if self.redis is None:
            return None, None
        now = time.monotonic()
        claim = now - self._asked.get(lookup, -self.TOUCH_EVERY_S) >= self.TOUCH_EVERY_S
        try:
            if claim:
                pipe = self.redis.pipeline(transaction=False)
                pipe.get(PREFIX + lookup)
                pipe.set(TOUCH_PREFIX + lookup, b"1", nx=True, ex=self.TOUCH_EVERY_S)
                raw, first = await pipe.execute()
                if len(self._asked) >= self.ASKED_MAX:
                    self._asked.clear()
                self._asked[lookup] = now
            else:
                raw, first = await self.redis.get(PREFIX + lookup), False
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("apikey_cache.unavailable", error=type(exc).__name__)
            return None, None
        try:
            record = KeyRecord.loads(raw) if raw else None
        except (ValueError, KeyError):
            record = None
        if record is not None:
            self._remember(lookup, record)
        return record, bool(first)

    async def put(self, lookup: str, record: KeyRecord) -> None:
        """Remember a record for TTL_S seconds."""
        if self.redis is None:
            return
        try:
            await self.redis.set(PREFIX + lookup, record.dumps(), ex=self.TTL_S)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("apikey_cache.unavailable", error=type(exc).__name__)
            return
        self._remember(lookup, record)

    def should_touch(self, record: KeyRecord, now: datetime, first_use: bool | None) -> bool:
        """Whether to write last_used_at now (at most once a minute per key across all processes)."""
        if first_use is not None:
            return first_use
        last = record.last_used_at
        return last is None or (now - last).total_seconds() > self.TOUCH_EVERY_S

    async def forget(self, lookups: Iterable[str]) -> None:
        """Drop cached records (after a revoke or an org deletion)."""
        lookups = list(lookups)
        for lookup in lookups:
            self._local.pop(lookup, None)
        keys = [PREFIX + lookup for lookup in lookups]
        if self.redis is None or not keys:
            return
        try:
            await self.redis.delete(*keys)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("apikey_cache.invalidate_failed", error=type(exc).__name__, keys=len(keys))
