"""Dashboard figures of big orgs served from a short-lived cache, refreshed in the background.

The indicator stats service groups every live indicator of the org; with a million rows that takes
seconds, far above the console's 200 ms page budget. Small orgs (a bounded probe decides) always get
live figures, never cached. A big org sees figures at most `FRESH_S` old: a fresh entry is served as
is; a stale one (up to `STALE_S`) is served at once while one background task per process recomputes
it. A big org's first view (or one after `STALE_S` without views) starts the computation and shows a
page that reloads itself until the figures are in. The entry lives in Redis when configured (shared
by every process); otherwise in this process (figures for display only, never a decision input, so
processes that disagree for a minute break nothing).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.exceptions import RedisError

from raptorflow.kit.logging import get_logger

FRESH_S = 60.0
STALE_S = 3600.0
log = get_logger("raptorflow.console")

Compute = Callable[[], Awaitable[dict[str, Any]]]


class StatsCache:
    """Per-org dashboard figures with stale-while-revalidate."""

    def __init__(self, redis: Any | None) -> None:
        self.redis = redis
        self.local: dict[uuid.UUID, tuple[float, dict[str, Any]]] = {}
        self.refreshing: set[uuid.UUID] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def _key(self, org_id: uuid.UUID) -> str:
        return f"rf:console:stats:{org_id}"

    async def _read(self, org_id: uuid.UUID) -> tuple[float, dict[str, Any]] | None:
        if self.redis is None:
            return self.local.get(org_id)
        try:
            raw = await self.redis.get(self._key(org_id))
        except RedisError:
            return self.local.get(org_id)
        if raw is None:
            return None
        entry = orjson.loads(raw)
        return float(entry["at"]), dict(entry["stats"])

    async def _write(self, org_id: uuid.UUID, stats: dict[str, Any]) -> None:
        now = time.time()
        self.local[org_id] = (now, stats)
        if self.redis is not None:
            try:
                await self.redis.set(
                    self._key(org_id), orjson.dumps({"at": now, "stats": stats}), ex=int(STALE_S)
                )
            except RedisError:
                log.warning("console.stats_cache_unavailable")

    async def get(
        self,
        org_id: uuid.UUID,
        compute_now: Compute,
        compute_later: Compute,
        is_big: Callable[[], Awaitable[bool]],
    ) -> tuple[dict[str, Any] | None, float]:
        """The org's figures and their age in seconds; None while a big org's first figures compute.

        `compute_now` runs in the request's transaction; `compute_later` opens its own (background
        refresh); `is_big` is a cheap bounded probe deciding whether computing inline would be slow.
        """
        found = await self._read(org_id)
        now = time.time()
        if found is not None and now - found[0] < STALE_S:
            at, stats = found
            if now - at >= FRESH_S:
                self._schedule(org_id, compute_later)
            return stats, now - at
        if org_id in self.refreshing or await is_big():
            self._schedule(org_id, compute_later)
            return None, 0.0
        return await compute_now(), 0.0

    def _schedule(self, org_id: uuid.UUID, compute: Compute) -> None:
        """One background computation per org and process at a time."""
        if org_id in self.refreshing:
            return
        self.refreshing.add(org_id)
        task = asyncio.create_task(self._refresh(org_id, compute))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _refresh(self, org_id: uuid.UUID, compute: Compute) -> None:
        try:
            await self._write(org_id, await compute())
        except Exception as exc:  # a failed refresh keeps the stale figures; the next view retries
            log.warning("console.stats_refresh_failed", org_id=str(org_id), error=type(exc).__name__)
        finally:
            self.refreshing.discard(org_id)

    def forget(self, org_id: uuid.UUID) -> None:
        """Drop this process's copy (tests; Redis entries expire by themselves)."""
        self.local.pop(org_id, None)
