"""Redis client construction with short timeouts, so a hung Redis never hangs a request."""

from __future__ import annotations

from redis.asyncio import Redis


def create_redis(url: str, *, timeout_ms: int = 100) -> Redis:
    """A Redis client; no connection is made until first use."""
    timeout = timeout_ms / 1000
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        decode_responses=False,
    )
