"""Lookups: is this value known, how bad is it now, and who is behind it — one set-based round."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.auth.principal import OrgContext
from raptorflow.intel.indicators.normalize import IndicatorType, InvalidIndicator, normalize
from raptorflow.intel.indicators.scoring import effective_value, half_life_for, sightings_bonus
from raptorflow.intel.lookup.repository import (
    CoalescingFinder,
    Hit,
    LookupRepository,
    Rendered,
    find_on_pool,
    matches_on_pool,
)
from raptorflow.kit.db import utcnow

# Batches on PostgreSQL (1M indicators, 2 cores): a backend probes and renders ~10 µs per key and this
# process normalizes ~2 µs per value, so the first 1,500 keys keep the other core busy while the rest of
# 10,000 values are normalized; then one statement per core (3 or 4 parts measured the same). Below
# PART_MIN keys a part is not worth its round trip and planning.
FIRST_CHUNK = 1_500
LAST_PARTS = 2
PART_MIN = 500
Finder = Callable[[Sequence[tuple[str, str]]], Awaitable[tuple[list[Hit], dict[str, Any]]]]
Renderer = Callable[[Sequence[str], Sequence[str], datetime, bool], Awaitable[Rendered]]
_NO_MATCHES = ()  # orjson writes []; unlike a new list per answer it keeps answers out of the collector
_TYPE_NAMES = {member: member.value for member in IndicatorType}  # a dict beats Enum.value in a loop


class LookupService:
    """Answers lookups for one org."""

    def __init__(self, session: AsyncSession, ctx: OrgContext) -> None:
        repository = LookupRepository(session, ctx.org_id)
        self.find: Finder = repository.find
        self.render: Renderer = repository.matches
        self.renders = repository.renders

    @classmethod
    def on_pool(cls, pool: Any, org_id: uuid.UUID, finder: CoalescingFinder | None = None) -> LookupService:
        """The same service over an asyncpg pool, outside any request transaction (the fast path);
        with a `finder`, lookups arriving together share statements."""
        service = cls.__new__(cls)
        service.find = (
            partial(finder.find, org_id) if finder is not None else partial(find_on_pool, pool, org_id)
        )
        service.render = partial(matches_on_pool, pool, org_id)
        service.renders = True
        return service

    async def lookup(self, values: Sequence[str], *, include_expired: bool = False) -> list[dict[str, Any]]:
        """One answer per value, in the order given (unknown or malformed values: found = false)."""
        if self.renders and len(values) > 1:
            return await self._lookup_rendered(values, include_expired)
        keys: list[tuple[str, str] | None] = []
        answers: list[dict[str, Any]] = []
        now = utcnow()
        wanted: dict[tuple[str, str], None] = {}
        for raw in values:
            try:
                n = normalize(raw)
            except InvalidIndicator as exc:
                keys.append(None)
                answers.append(_answer(raw, None, None, exc.reason))
                continue
            pair = (n.type.value, n.value)
            keys.append(pair)
            answers.append(_answer(raw, pair[0], pair[1], None))
            wanted[pair] = None
        hits, settings = await self.find(list(wanted))
        if not hits:
            return answers
        live = {
            (hit.type, hit.value): hit
            for hit in hits
            if hit.archived_at is None
            and (include_expired or hit.valid_until is None or hit.valid_until > now)
        }
        overrides = settings.get("half_life_days")
        half_lives: dict[str, float | None] = {}
        for key, answer in zip(keys, answers, strict=True):
            hit = live.get(key) if key is not None else None
            if hit is None:
                continue
            if hit.type not in half_lives:
                half_lives[hit.type] = half_life_for(
                    hit.type, overrides if isinstance(overrides, dict) else None
                )
            age_days = max(0.0, (now - hit.last_seen).total_seconds() / 86_400)
            score = effective_value(
                hit.score,
                age_days,
                half_lives[hit.type],
                sightings_bonus(hit.sightings_count),
                hit.false_positive,
            )
            related: dict[str, list[dict[str, Any]]] = {"actors": [], "campaigns": []}
            for kind, obj_id, name, rel in hit.related:
                bucket = "actors" if kind == "threat-actor" else "campaigns"
                related[bucket].append({"id": obj_id, "name": name, "relationship_type": rel})
            answer["found"] = True
            answer["matches"] = [
                {
                    "id": hit.id,
                    "type": hit.type,
                    "value": hit.value,
                    "effective_score": score,
                    "classification": hit.classification,
                    "tlp": hit.tlp,
                    "tags": hit.tags,
                    "expired": hit.valid_until is not None and hit.valid_until <= now,
                    "false_positive": hit.false_positive,
                    "last_seen": hit.last_seen.isoformat(),
                    "related": related,
                }
            ]
        return answers

    async def _lookup_rendered(self, values: Sequence[str], include_expired: bool) -> list[dict[str, Any]]:
        """A batch on PostgreSQL, which renders each match as JSON (see `_fill`): the first
        FIRST_CHUNK distinct keys go out as soon as they are normalized and are probed on the other
        core while this process normalizes the rest; the rest then go out at once in LAST_PARTS
        statements of at least PART_MIN keys, one backend per core."""
        now = utcnow()
        answers: list[dict[str, Any]] = []
        first: dict[tuple[str, str], dict[str, Any]] = {}  # key -> answer of its first occurrence
        repeats: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (a later occurrence, the first)
        keys: list[tuple[str, str]] = []  # distinct keys not sent yet
        owners: list[dict[str, Any]] = []  # the answer each of them fills
        rendering: list[asyncio.Task[None]] = []
        append, known, names = answers.append, first.get, _TYPE_NAMES
        try:
            for raw in values:
                try:
                    n = normalize(raw)
                except InvalidIndicator as exc:
                    append(_answer(raw, None, None, exc.reason))
                    continue
                key = (names[n.type], n.value)
                answer = {
                    "value": raw,
                    "type": key[0],
                    "normalized": key[1],
                    "found": False,
                    "matches": _NO_MATCHES,
                    "error": None,
                }
                append(answer)
                seen = known(key)
                if seen is not None:
                    repeats.append((answer, seen))
                    continue
                first[key] = answer
                keys.append(key)
                owners.append(answer)
                if len(keys) == FIRST_CHUNK and not rendering:
                    rendering.append(asyncio.ensure_future(self._fill(keys, owners, now, include_expired)))
                    keys, owners = [], []
                    await asyncio.sleep(0)  # let the query go out now
        except BaseException:
            for task in rendering:  # the first chunk is out: stop it before giving up
                task.cancel()
            await asyncio.gather(*rendering, return_exceptions=True)
            raise
        size = max(-(-len(keys) // LAST_PARTS), PART_MIN)
        for start in range(0, len(keys), size):
            part = self._fill(keys[start : start + size], owners[start : start + size], now, include_expired)
            rendering.append(asyncio.ensure_future(part))
        failures = [
            outcome
            for outcome in await asyncio.gather(*rendering, return_exceptions=True)
            if isinstance(outcome, BaseException)
        ]
        if failures:
            raise failures[0]  # every statement has finished: nothing is left running
        for answer, seen in repeats:
            if seen["found"]:
                answer["found"] = True
                answer["matches"] = seen["matches"]
        return answers

    async def _fill(
        self,
        keys: list[tuple[str, str]],
        owners: list[dict[str, Any]],
        now: datetime,
        include_expired: bool,
    ) -> None:
        """Fill in the answers of these distinct keys with their matches, rendered by PostgreSQL."""
        positions, matches = await self.render(
            [key[0] for key in keys], [key[1] for key in keys], now, include_expired
        )
        for position, match in zip(positions, matches, strict=True):
            answer = owners[position]
            answer["found"] = True
            answer["matches"] = match


def _answer(raw: str, type_: str | None, normalized: str | None, error: str | None) -> dict[str, Any]:
    return {
        "value": raw,
        "type": type_,
        "normalized": normalized,
        "found": False,
        "matches": _NO_MATCHES,
        "error": error,
    }
