"""Rate limiting on the `limits` library: Redis storage when configured, memory otherwise."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from raptorflow.kit.logging import get_logger

log = get_logger("raptorflow.ratelimit")
STORAGE_ERRORS = (RedisError, StorageError, OSError, TimeoutError)


@dataclass(frozen=True)
class LimitState:
    """Whether a key is within its limit, what is left, and when it resets."""

    allowed: bool
    limit: int
    remaining: int
    reset_after_s: int


def make_storage(redis_url: str | None, *, timeout_ms: int = 100) -> Storage:
    """Storage shared by every process when Redis is configured, per-process memory otherwise."""
    if redis_url:
        timeout = timeout_ms / 1000
        # redis-py (already a dependency) rather than the library's default coredis client.
        return RedisStorage(
            "async+" + redis_url,
            implementation="redispy",
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    return MemoryStorage()


class Limiter:
    """A moving-window limiter over one storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.strategy = MovingWindowRateLimiter(storage)

    @staticmethod
    def item(spec: str) -> RateLimitItem:
        """Parse a limit such as '5/15 minutes'."""
        return parse(spec)

    def _fail_open(self, item: RateLimitItem, exc: BaseException) -> LimitState:
        # A limiter that cannot reach its storage lets requests through rather than take the API down.
        log.warning("ratelimit.storage_unavailable", error=type(exc).__name__)
        return LimitState(True, item.amount, item.amount, 0)

    async def peek(self, item: RateLimitItem, *keys: str) -> LimitState:
        """State of a key without counting a hit."""
        try:
            allowed = await self.strategy.test(item, *keys)
            stats = await self.strategy.get_window_stats(item, *keys)
        except STORAGE_ERRORS as exc:
            return self._fail_open(item, exc)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return LimitState(allowed, item.amount, stats.remaining, reset)

    async def hit(self, item: RateLimitItem, *keys: str) -> LimitState:
        """Count one hit and report the state after it."""
        try:
            allowed = await self.strategy.hit(item, *keys)
            stats = await self.strategy.get_window_stats(item, *keys)
        except STORAGE_ERRORS as exc:
            return self._fail_open(item, exc)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return LimitState(allowed, item.amount, stats.remaining, reset)

    async def clear(self, item: RateLimitItem, *keys: str) -> None:
        """Forget a key's hits (e.g. after a successful sign-in)."""
        try:
            await self.strategy.clear(item, *keys)
        except STORAGE_ERRORS as exc:
            self._fail_open(item, exc)
