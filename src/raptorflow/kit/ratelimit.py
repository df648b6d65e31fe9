"""Rate limiting on the `limits` library: Redis storage when configured, memory otherwise."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from limits import RateLimitItem, RateLimitItemPerMinute, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from raptorflow.kit.errors import PROBLEM_MEDIA_TYPE, RaptorFlowError, problem_body
from raptorflow.kit.logging import get_logger
from raptorflow.kit.metrics import LIMITER_UNAVAILABLE, RATE_LIMITED
from raptorflow.kit.middleware import RATE_LIMIT_STATE, request_id_of

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
    """A window limiter over one storage (moving window by default; sliding counter for hot paths).

    When the storage fails, checks fail open; for the next `breaker_s` seconds they fail open at once
    instead of waiting for the storage's timeout again, then the storage is tried again.
    """

    def __init__(self, storage: Storage, *, sliding_counter: bool = False, breaker_s: float = 1.0) -> None:
        self.storage = storage
        self.strategy: MovingWindowRateLimiter | SlidingWindowCounterRateLimiter = (
            SlidingWindowCounterRateLimiter(storage) if sliding_counter else MovingWindowRateLimiter(storage)
        )
        self.breaker_s = breaker_s
        self._open_until = 0.0

    @staticmethod
    def item(spec: str) -> RateLimitItem:
        """Parse a limit such as '5/15 minutes'."""
        return parse(spec)

    def _fail_open(self, item: RateLimitItem, exc: BaseException | None) -> LimitState:
        # A limiter that cannot reach its storage lets requests through rather than take the API down.
        LIMITER_UNAVAILABLE.inc()
        if exc is not None:
            log.warning("ratelimit.storage_unavailable", error=type(exc).__name__, retry_in_s=self.breaker_s)
            self._open_until = time.monotonic() + self.breaker_s
        return LimitState(True, item.amount, item.amount, 0)

    def _broken(self) -> bool:
        return self._open_until > 0 and time.monotonic() < self._open_until

    async def peek(self, item: RateLimitItem, *keys: str) -> LimitState:
        """State of a key without counting a hit."""
        if self._broken():
            return self._fail_open(item, None)
        try:
            allowed = await self.strategy.test(item, *keys)
            stats = await self.strategy.get_window_stats(item, *keys)
        except STORAGE_ERRORS as exc:
            return self._fail_open(item, exc)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return LimitState(allowed, item.amount, stats.remaining, reset)

    async def hit(self, item: RateLimitItem, *keys: str) -> LimitState:
        """Count one hit and report the state after it."""
        if self._broken():
            return self._fail_open(item, None)
        try:
            allowed = await self.strategy.hit(item, *keys)
            stats = await self.strategy.get_window_stats(item, *keys)
        except STORAGE_ERRORS as exc:
            return self._fail_open(item, exc)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return LimitState(allowed, item.amount, stats.remaining, reset)

    async def allow(self, item: RateLimitItem, *keys: str) -> bool:
        """Count one hit; True when it is within the limit (one storage call, no window statistics)."""
        if self._broken():
            self._fail_open(item, None)
            return True
        try:
            return await self.strategy.hit(item, *keys)
        except STORAGE_ERRORS as exc:
            self._fail_open(item, exc)
            return True

    async def clear(self, item: RateLimitItem, *keys: str) -> None:
        """Forget a key's hits (e.g. after a successful sign-in)."""
        try:
            await self.strategy.clear(item, *keys)
        except STORAGE_ERRORS as exc:
            self._fail_open(item, exc)


# Sliding-window counters for the API request limits, evaluated in Redis by one script for every key a
# request is checked against: the credential's and the org's windows cost one round trip instead of the
# library's three (hit, then window statistics, per key).
# Per key: the count of the current fixed window plus the previous window's count weighted by the part
# of it still inside the sliding window (the library's sliding-window-counter algorithm); a hit is
# counted only when it fits. Hits a process already allowed on its own (`RedisWindowLimiter`, local
# counting) are added first, unconditionally. ARGV: window ms, ms elapsed in the current window, count
# (1) or only add and read (0), then per key pair: limit, hits to add to the current window, hits to add
# to the previous one. KEYS: (current window, previous window) per key. Returns per key: allowed (1/0),
# what remains after this request, and the current and previous windows' counts.
_WINDOWS_SCRIPT = """
local window = tonumber(ARGV[1])
local weight = (window - tonumber(ARGV[2])) / window
local count = ARGV[3] == '1'
local out = {}
for i = 1, #KEYS / 2 do
    local current_key, previous_key = KEYS[2 * i - 1], KEYS[2 * i]
    local limit = tonumber(ARGV[1 + 3 * i])
    local add_current = tonumber(ARGV[2 + 3 * i])
    local add_previous = tonumber(ARGV[3 + 3 * i])
    if add_previous > 0 and redis.call('INCRBY', previous_key, add_previous) == add_previous then
        redis.call('PEXPIRE', previous_key, window * 2)
    end
    local current
    if add_current > 0 then
        current = redis.call('INCRBY', current_key, add_current)
        if current == add_current then
            redis.call('PEXPIRE', current_key, window * 2)
        end
    else
        current = tonumber(redis.call('GET', current_key) or '0')
    end
    local previous = tonumber(redis.call('GET', previous_key) or '0')
    local used = math.floor(previous * weight) + current
    local allowed = used < limit
    if allowed and count then
        current = redis.call('INCR', current_key)
        if current == 1 then
            redis.call('PEXPIRE', current_key, window * 2)
        end
        used = used + 1
    end
    out[4 * i - 3] = allowed and 1 or 0
    out[4 * i - 2] = math.max(0, limit - used)
    out[4 * i - 1] = current
    out[4 * i] = previous
end
return out
"""


@dataclass(slots=True)
class _Window:
    """What this process knows of one key's windows: Redis's counts when last seen, and its own hits
    since (allowed here, not yet added in Redis)."""

    index: int  # the fixed window (time // window length) the counts are of
    current: int
    previous: int
    seen_at: float  # time.monotonic() of that reading
    pending: int = 0


Check = tuple[RateLimitItem, tuple[str, ...]]


class RedisWindowLimiter(Limiter):
    """The API request limits in Redis: `Limiter`'s interface, plus `hit_many` (one round trip).

    With `sync_s` > 0, a key far from its limit is counted in this process and its hits are added in
    Redis in the background every `sync_s` seconds (one script call for every such key), with Redis's
    counts read back — the approach of API gateways' "sync rate" option. A request then costs no
    round trip at all; each round trip (two syscalls here, two in Redis, a context switch) cost a
    lookup a third of its throughput. Precision is kept where it matters: a key is checked in Redis
    on every hit once fewer than a tenth of its limit remains, when this process has counted a
    hundredth of the limit since it last read Redis, when its reading is older than `stale_s`, at the
    start of each window, and always for limits under 100 per window. Other processes' hits are seen
    within `sync_s`, so several processes sending at full speed may together pass a limit by what they
    send in one `sync_s`, less the tenth kept in reserve. `sync_s` = 0 checks every hit in Redis.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "rf:rl",
        breaker_s: float = 1.0,
        sync_s: float = 0.0,
        stale_s: float = 1.0,
    ) -> None:
        super().__init__(MemoryStorage(), sliding_counter=True, breaker_s=breaker_s)  # unused storage
        self.redis = redis
        self.prefix = prefix
        self.script = redis.register_script(_WINDOWS_SCRIPT)
        self.sync_s = sync_s
        self.stale_s = max(stale_s, sync_s)
        self._windows: dict[str, _Window] = {}
        self._window_ms: int | None = None
        self._last_sync = time.monotonic()
        self._syncing: asyncio.Task[None] | None = None

    def _local(self, checks: list[tuple[RateLimitItem, str]], index: int, weight: float) -> list[int] | None:
        """What each key has used, when every key may be counted here without asking Redis."""
        now = time.monotonic()
        used_list = []
        for item, base in checks:
            state = self._windows.get(base)
            limit = item.amount
            if (
                state is None
                or state.index != index
                or now - state.seen_at > self.stale_s
                or state.pending >= limit // 100
            ):
                return None
            used = math.floor(state.previous * weight) + state.current + state.pending
            if limit - used - 1 < limit // 10:
                return None
            used_list.append(used)
        return used_list

    def _take_pending(self, base: str, index: int) -> tuple[int, int]:
        """This process's uncounted hits of a key, as (current window, previous window), handed over."""
        state = self._windows.get(base)
        if state is None or not state.pending:
            return 0, 0
        pending, state.pending = state.pending, 0
        if state.index == index:
            return pending, 0
        return (0, pending) if state.index == index - 1 else (0, 0)  # older: outside the sliding window

    def _observe(self, base: str, index: int, current: int, previous: int) -> None:
        state = self._windows.get(base)
        if state is None or state.index < index:
            self._windows[base] = _Window(index, current, previous, time.monotonic())
        elif state.index == index:
            state.current, state.previous, state.seen_at = current, previous, time.monotonic()

    def _give_back(self, base: str, index: int, current: int) -> None:
        state = self._windows.get(base)
        if current and state is not None and state.index == index:
            state.pending += current

    async def _run(self, checks: list[Check], count: bool) -> list[LimitState]:
        if self._broken():
            return [self._fail_open(item, None) for item, _keys in checks]
        now_ms = int(time.time() * 1000)
        window_ms = checks[0][0].get_expiry() * 1000
        if any(item.get_expiry() * 1000 != window_ms for item, _ids in checks):
            raise ValueError("one window length per call")
        self._window_ms = window_ms
        index, elapsed_ms = divmod(now_ms, window_ms)
        reset = max(1, math.ceil((window_ms - elapsed_ms) / 1000))
        bases = [(item, f"{self.prefix}:{item.key_for(*ids)}") for item, ids in checks]
        if count and self.sync_s > 0:
            used = self._local(bases, index, (window_ms - elapsed_ms) / window_ms)
            if used is not None:
                for _item, base in bases:
                    self._windows[base].pending += 1
                self._maybe_sync()
                return [
                    LimitState(True, item.amount, max(0, item.amount - u - 1), reset)
                    for (item, _base), u in zip(bases, used, strict=True)
                ]
        keys: list[str] = []
        args: list[int] = [window_ms, elapsed_ms, 1 if count else 0]
        taken: list[tuple[int, int]] = []
        for item, base in bases:
            keys += [f"{base}:{index}", f"{base}:{index - 1}"]
            adds = self._take_pending(base, index)
            taken.append(adds)
            args += [item.amount, *adds]
        try:
            raw = await self.script(keys=keys, args=args)
        except STORAGE_ERRORS as exc:
            for (_item, base), (current, _previous) in zip(bases, taken, strict=True):
                self._give_back(base, index, current)
            return [self._fail_open(item, exc) for item, _keys in checks]
        states = []
        for i, (item, base) in enumerate(bases):
            self._observe(base, index, int(raw[4 * i + 2]), int(raw[4 * i + 3]))
            states.append(LimitState(bool(raw[4 * i]), item.amount, int(raw[4 * i + 1]), reset))
        if self.sync_s > 0:
            self._maybe_sync()  # other keys' uncounted hits
        return states

    def _maybe_sync(self) -> None:
        if self._syncing is None and time.monotonic() - self._last_sync >= self.sync_s:
            self._syncing = asyncio.get_running_loop().create_task(self._sync_task())

    async def _sync_task(self) -> None:
        try:
            await self.sync()
        finally:
            self._syncing = None

    async def sync(self) -> None:
        """Add this process's uncounted hits in Redis and read every such key's counts back (one call);
        forget keys whose windows have passed."""
        self._last_sync = time.monotonic()
        window_ms = self._window_ms
        if window_ms is None:
            return
        now_ms = int(time.time() * 1000)
        index, elapsed_ms = divmod(now_ms, window_ms)
        for base in [b for b, s in self._windows.items() if s.index < index - 1 and not s.pending]:
            del self._windows[base]
        bases = [base for base, state in self._windows.items() if state.pending]
        if not bases:
            return
        keys: list[str] = []
        args: list[int] = [window_ms, elapsed_ms, 0]
        taken = []
        for base in bases:
            keys += [f"{base}:{index}", f"{base}:{index - 1}"]
            adds = self._take_pending(base, index)
            taken.append(adds)
            args += [0, *adds]
        try:
            raw = await self.script(keys=keys, args=args)
        except STORAGE_ERRORS as exc:
            log.warning("ratelimit.sync_failed", error=type(exc).__name__, keys=len(bases))
            for base, (current, _previous) in zip(bases, taken, strict=True):
                self._give_back(base, index, current)
            return
        for i, base in enumerate(bases):
            self._observe(base, index, int(raw[4 * i + 2]), int(raw[4 * i + 3]))

    async def hit_many(self, checks: list[Check]) -> list[LimitState]:
        """Count one hit on each key (where it fits), in one round trip or none; the state of each."""
        return await self._run(checks, True)

    async def hit(self, item: RateLimitItem, *keys: str) -> LimitState:
        """Count one hit and report the state after it."""
        return (await self._run([(item, keys)], True))[0]

    async def allow(self, item: RateLimitItem, *keys: str) -> bool:
        """Count one hit; True when it is within the limit."""
        return (await self._run([(item, keys)], True))[0].allowed

    async def peek(self, item: RateLimitItem, *keys: str) -> LimitState:
        """State of a key without counting a hit (this process's uncounted hits are added first)."""
        return (await self._run([(item, keys)], False))[0]

    async def clear(self, item: RateLimitItem, *keys: str) -> None:
        """Forget a key's hits."""
        now_ms = int(time.time() * 1000)
        window_ms = item.get_expiry() * 1000
        index = now_ms // window_ms
        base = f"{self.prefix}:{item.key_for(*keys)}"
        self._windows.pop(base, None)
        try:
            await self.redis.delete(f"{base}:{index}", f"{base}:{index - 1}")
        except STORAGE_ERRORS as exc:
            self._fail_open(item, exc)


# --- API request limits and the monthly quota ------------------------------------------------------


@dataclass(frozen=True)
class OrgLimits:
    """What one org may send: per minute (None = no limit) and per UTC calendar month."""

    requests_per_minute: int | None
    requests_per_month: int | None = None


OrgLimitsHook = Callable[[uuid.UUID], Awaitable[OrgLimits]]


class TooManyRequests(RaptorFlowError):
    """A rate limit or quota is exhausted; Retry-After says when to come back."""

    status = 429
    title = "Too Many Requests"


def month_of(now: datetime) -> str:
    """The usage period key of a moment: 'YYYY-MM' in UTC."""
    return f"{now.year:04d}-{now.month:02d}"


def seconds_to_next_month(now: datetime) -> int:
    """Whole seconds until the next UTC month starts."""
    start = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return max(1, math.ceil((start - now).total_seconds()))


UsageLoader = Callable[[uuid.UUID, str], Awaitable[int]]
USAGE_KEY = "rf:usage:{month}:{org}"
USAGE_ORGS_KEY = "rf:usage-orgs:{month}"
USAGE_TTL_S = 40 * 86_400


class UsageMeter:
    """Requests per org per UTC month: counted in this process, pushed to Redis about once a second.

    Redis holds the month's total shared by every process (seeded from the database when its key is
    missing, e.g. after a Redis restart); without Redis this process's totals are the truth (embedded
    single process). `flush` (a periodic task) writes totals to the database at least once a minute.
    """

    def __init__(self, redis: Redis | None, loader: UsageLoader, *, push_every_s: float = 1.0) -> None:
        self.redis = redis
        self.loader = loader
        self.push_every_s = push_every_s
        self.pending: dict[tuple[uuid.UUID, str], int] = {}
        self.totals: dict[tuple[uuid.UUID, str], int] = {}
        self._last_push = time.monotonic()
        self._pushing: asyncio.Task[None] | None = None

    async def _baseline(self, org_id: uuid.UUID, month: str) -> int:
        try:
            return await self.loader(org_id, month)
        except Exception as exc:  # the database may be down; counting goes on from zero
            log.warning("usage.baseline_unavailable", error=type(exc).__name__)
            return 0

    async def hit(self, org_id: uuid.UUID, now: datetime) -> int:
        """Count one request; returns the org's estimated total for the month, this one included."""
        key = (org_id, month_of(now))
        if key not in self.totals:
            self.totals[key] = 0 if self.redis is not None else await self._baseline(*key)
        self.pending[key] = self.pending.get(key, 0) + 1
        if self.redis is None:
            self.totals[key] += 1
            self.pending.pop(key, None)
        elif time.monotonic() - self._last_push >= self.push_every_s and self._pushing is None:
            self._pushing = asyncio.get_running_loop().create_task(self._push_task())
        return self.totals[key] + self.pending.get(key, 0)

    async def _push_task(self) -> None:
        try:
            await self.push()
        finally:
            self._pushing = None

    async def push(self) -> None:
        """Add this process's pending counts to Redis and read the totals back (one pipeline)."""
        self._last_push = time.monotonic()
        if self.redis is None or not self.pending:
            return
        batch, self.pending = self.pending, {}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (org_id, month), count in batch.items():
                    key = USAGE_KEY.format(month=month, org=org_id)
                    pipe.incrby(key, count)
                    pipe.expire(key, USAGE_TTL_S)
                    pipe.sadd(USAGE_ORGS_KEY.format(month=month), str(org_id))
                    pipe.expire(USAGE_ORGS_KEY.format(month=month), USAGE_TTL_S)
                results = await pipe.execute()
        except STORAGE_ERRORS as exc:
            # Keep the counts for the next push: a Redis outage delays counting, it does not lose it.
            for org_month, count in batch.items():
                self.pending[org_month] = self.pending.get(org_month, 0) + count
            LIMITER_UNAVAILABLE.inc()
            log.warning("usage.push_failed", error=type(exc).__name__)
            return
        for i, ((org_id, month), count) in enumerate(batch.items()):
            total = int(results[i * 4])
            if total == count:
                # A fresh key (new month, or Redis lost its data): add what the database already has.
                baseline = await self._baseline(org_id, month)
                if baseline:
                    try:
                        total = int(
                            await self.redis.incrby(USAGE_KEY.format(month=month, org=org_id), baseline)
                        )
                    except STORAGE_ERRORS:
                        total += baseline
            self.totals[(org_id, month)] = total

    async def current(self, org_id: uuid.UUID, now: datetime) -> int:
        """The org's total for the month as this process knows it (after pushing its pending counts)."""
        key = (org_id, month_of(now))
        if self.redis is None:
            if key not in self.totals:
                self.totals[key] = await self._baseline(*key)
            return self.totals[key]
        await self.push()
        try:
            raw = await self.redis.get(USAGE_KEY.format(month=key[1], org=org_id))
        except STORAGE_ERRORS:
            raw = None
        if raw is None:
            return max(self.totals.get(key, 0), await self._baseline(*key))
        return int(raw)

    async def snapshot(self, month: str) -> dict[uuid.UUID, int]:
        """Every org's total for `month` (from Redis, or this process without Redis), for the flush."""
        if self.redis is None:
            return {org: n for (org, m), n in self.totals.items() if m == month}
        await self.push()
        members = await self.redis.smembers(USAGE_ORGS_KEY.format(month=month))
        orgs = [uuid.UUID(m.decode() if isinstance(m, bytes) else m) for m in members]
        if not orgs:
            return {}
        values = await self.redis.mget([USAGE_KEY.format(month=month, org=o) for o in orgs])
        return {o: int(v) for o, v in zip(orgs, values, strict=True) if v is not None}


class RequestLimits:
    """Per-org, per-credential and per-IP limits of API requests, plus the org's monthly quota.

    Every check leaves (limit, remaining, reset) in the request scope for the X-RateLimit-* headers
    (the tightest of the limits checked), and raises TooManyRequests with Retry-After when one is out.
    """

    def __init__(
        self,
        limiter: Limiter,
        meter: UsageMeter,
        *,
        default_per_minute: int,
        principal_per_minute: int,
        anonymous_per_minute: int,
        hooks: Any = None,
        cache_s: float = 10.0,
    ) -> None:
        self.limiter = limiter
        self.meter = meter
        self.default = OrgLimits(default_per_minute, None)
        self.principal_item = RateLimitItemPerMinute(principal_per_minute)
        self.anonymous_item = RateLimitItemPerMinute(anonymous_per_minute)
        # `hooks.org_limits(org_id) -> OrgLimits` is read at each call, so it can be replaced (billing).
        self.hooks = hooks
        self.cache_s = cache_s
        self.concurrent = not isinstance(limiter.storage, MemoryStorage)
        self._items: dict[int, RateLimitItem] = {}
        self._cache: dict[uuid.UUID, tuple[float, OrgLimits]] = {}

    def _item(self, per_minute: int) -> RateLimitItem:
        found = self._items.get(per_minute)
        if found is None:
            found = self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        return found

    async def limits_of(self, org_id: uuid.UUID) -> OrgLimits:
        """The org's limits from the installed hook (cached briefly: the hook may query the database)."""
        hook: OrgLimitsHook | None = getattr(self.hooks, "org_limits", None)
        if hook is None:
            return self.default
        now = time.monotonic()
        cached = self._cache.get(org_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await hook(org_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[org_id] = (now + self.cache_s, found)
        return found

    @staticmethod
    def _refuse(kind: str, state: LimitState, detail: str) -> TooManyRequests:
        RATE_LIMITED.labels(kind).inc()
        retry = max(1, state.reset_after_s)
        return TooManyRequests(
            detail,
            headers={
                "Retry-After": str(retry),
                "X-RateLimit-Limit": str(state.limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(retry),
            },
            extra={"limit": kind},
        )

    @staticmethod
    def _remember(scope: MutableMapping[str, Any], *states: LimitState) -> None:
        tightest = min(states, key=lambda s: s.remaining)
        scope.setdefault("state", {})[RATE_LIMIT_STATE] = (
            tightest.limit,
            tightest.remaining,
            tightest.reset_after_s,
        )

    async def check_anonymous(self, scope: dict[str, Any], ip: str | None) -> None:
        """Per-IP limit of requests without credentials."""
        state = await self.limiter.hit(self.anonymous_item, "ip", ip or "unknown")
        self._remember(scope, state)
        if not state.allowed:
            raise self._refuse(
                "ip", state, "Too many requests from this address; retry after Retry-After seconds."
            )

    async def check_refused(self, scope: MutableMapping[str, Any]) -> TooManyRequests | None:
        """Count a request refused before any limit was checked (bad credentials, unknown org or path).

        An authenticated caller counts against its credential's limit, anyone else against the per-IP
        limit of anonymous requests; the state is left for the headers. Returns the 429 to send
        instead when that limit is exhausted (so guessing credentials is limited too).
        """
        principal = (scope.get("state") or {}).get("principal")
        api_key_id = getattr(principal, "api_key_id", None)
        user_id = getattr(principal, "user_id", None)
        if api_key_id is not None or user_id is not None:
            # The key format of raptorflow.auth.deps.limit_key: one budget per credential.
            key = f"key:{api_key_id}" if api_key_id else f"user:{user_id}"
            kind, state = "principal", await self.limiter.hit(self.principal_item, "principal", key)
            detail = "Too many requests with this credential; retry after Retry-After seconds."
        else:
            client = scope.get("client")
            ip = client[0] if client else None
            kind, state = "ip", await self.limiter.hit(self.anonymous_item, "ip", ip or "unknown")
            detail = "Too many requests from this address; retry after Retry-After seconds."
        self._remember(scope, state)
        return None if state.allowed else self._refuse(kind, state, detail)

    async def check_principal(self, scope: dict[str, Any], principal_key: str) -> LimitState:
        """Per API key / user limit."""
        state = await self.limiter.hit(self.principal_item, "principal", principal_key)
        if not state.allowed:
            self._remember(scope, state)
            raise self._refuse(
                "principal", state, "Too many requests with this credential; retry after Retry-After seconds."
            )
        return state

    async def check_user(self, scope: dict[str, Any], principal_key: str) -> None:
        """Limit of a signed-in user outside any org."""
        self._remember(scope, await self.check_principal(scope, principal_key))

    async def check_org(self, scope: dict[str, Any], org_id: uuid.UUID, principal_key: str) -> None:
        """The org's per-minute limit, the credential's limit, then the org's monthly quota."""
        limits = await self.limits_of(org_id)
        if limits.requests_per_minute is None:
            states = [await self.check_principal(scope, principal_key)]
        else:
            org_item = self._item(limits.requests_per_minute)
            # The headers report the org's window; the credential's limit is only counted (one storage
            # call instead of two) unless it refuses. Shared storage: both in flight at once, or both in
            # one round trip with the Redis window limiter.
            if isinstance(self.limiter, RedisWindowLimiter):
                principal_state, org_state = await self.limiter.hit_many(
                    [(self.principal_item, ("principal", principal_key)), (org_item, ("org", str(org_id)))]
                )
                principal_ok = principal_state.allowed
            elif self.concurrent:
                principal_ok, org_state = await asyncio.gather(
                    self.limiter.allow(self.principal_item, "principal", principal_key),
                    self.limiter.hit(org_item, "org", str(org_id)),
                )
            else:
                principal_ok = await self.limiter.allow(self.principal_item, "principal", principal_key)
                org_state = await self.limiter.hit(org_item, "org", str(org_id))
            states = [org_state]
            if not principal_ok:
                principal_state = await self.limiter.peek(self.principal_item, "principal", principal_key)
                refused = LimitState(False, principal_state.limit, 0, principal_state.reset_after_s)
                self._remember(scope, refused)
                raise self._refuse(
                    "principal",
                    refused,
                    "Too many requests with this credential; retry after Retry-After seconds.",
                )
            if not org_state.allowed:
                self._remember(scope, *states)
                raise self._refuse(
                    "org",
                    org_state,
                    "This organization's request rate limit is reached; retry after Retry-After seconds.",
                )
        self._remember(scope, *states)
        now = datetime.now(UTC)
        if limits.requests_per_month is not None:
            used = await self.meter.hit(org_id, now)
            if used > limits.requests_per_month:
                state = LimitState(False, limits.requests_per_month, 0, seconds_to_next_month(now))
                detail = (
                    "This organization's monthly request quota is used up; it resets at the start of the "
                    "next UTC month."
                )
                raise self._refuse("month", state, detail)
        else:
            await self.meter.hit(org_id, now)


class RefusedRequestLimits:
    """ASGI middleware: an /api response refused before any limit was checked (401, 403, 404, other
    4xx) is counted by `RequestLimits.check_refused`, so it carries X-RateLimit-* like every API
    response, and becomes a 429 once the caller's limit is exhausted.

    Installed inside RequestContextMiddleware, which writes the headers from the state left here.
    """

    def __init__(self, app: ASGIApp, *, api_prefix: str = "/api/") -> None:
        self.app = app
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.api_prefix):
            await self.app(scope, receive, send)
            return
        replaced = False

        async def checked_send(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the refused response's body: a 429 was sent instead
            if message["type"] == "http.response.start" and _unlimited_refusal(scope, message["status"]):
                limits: RequestLimits | None = getattr(scope["app"].state, "request_limits", None)
                refused = await limits.check_refused(scope) if limits is not None else None
                if refused is not None:
                    replaced = True
                    await _send_refusal(send, scope, refused)
                    return
            await send(message)

        await self.app(scope, receive, checked_send)


def _unlimited_refusal(scope: Scope, status: int) -> bool:
    """A client error that no limit has counted yet (429s and limited routes carry their own state)."""
    return 400 <= status < 500 and status != 429 and RATE_LIMIT_STATE not in (scope.get("state") or {})


async def _send_refusal(send: Send, scope: Scope, error: TooManyRequests) -> None:
    body = orjson.dumps(
        problem_body(
            status=error.status,
            title=error.title,
            detail=error.detail,
            request_id=request_id_of(scope),
            type_uri=error.type_uri,
            extra=error.extra,
        )
    )
    headers = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    headers += [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
