"""Lookups: is this value known, how bad is it now, and who is behind it — one set-based round."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.auth.principal import OrgContext
from raptorflow.intel.indicators.normalize import InvalidIndicator, normalize
from raptorflow.intel.indicators.scoring import effective_value, half_life_for, sightings_bonus
from raptorflow.intel.lookup.repository import Hit, LookupRepository, find_on_pool, matches_on_pool
from raptorflow.kit.db import utcnow

RENDER_CHUNK = 2_500
Finder = Callable[[Sequence[tuple[str, str]]], Awaitable[tuple[list[Hit], dict[str, Any]]]]
Renderer = Callable[
    [Sequence[tuple[str, str]], datetime, bool], Awaitable[dict[tuple[str, str], orjson.Fragment] | None]
]


class LookupService:
    """Answers lookups for one org."""

    def __init__(self, session: AsyncSession, ctx: OrgContext) -> None:
        repository = LookupRepository(session, ctx.org_id)
        self.find: Finder = repository.find
        self.render: Renderer = repository.matches
        self.renders = repository.renders

    @classmethod
    def on_pool(cls, pool: Any, org_id: uuid.UUID) -> LookupService:
        """The same service over an asyncpg pool, outside any request transaction (the fast path)."""
        service = cls.__new__(cls)
        service.find = partial(find_on_pool, pool, org_id)
        service.render = partial(matches_on_pool, pool, org_id)
        service.renders = True
        return service

    async def lookup(self, values: Sequence[str], *, include_expired: bool = False) -> list[dict[str, Any]]:
        """One answer per value, in the order given (unknown or malformed values: found = false)."""
        keys: list[tuple[str, str] | None] = []
        answers: list[dict[str, Any]] = []
        now = utcnow()
        # A batch on PostgreSQL: every RENDER_CHUNK new keys go to the database at once, rendered as
        # JSON there (several backends, the other core) while this process normalizes the next ones.
        chunked = self.renders and len(values) > 1
        wanted: dict[tuple[str, str], None] = {}
        chunk: list[tuple[str, str]] = []
        rendering: list[asyncio.Future[dict[tuple[str, str], orjson.Fragment] | None]] = []
        for raw in values:
            try:
                n = normalize(raw)
            except InvalidIndicator as exc:
                keys.append(None)
                answers.append(
                    {
                        "value": raw,
                        "type": None,
                        "normalized": None,
                        "found": False,
                        "matches": [],
                        "error": exc.reason,
                    }
                )
                continue
            pair = (n.type.value, n.value)
            keys.append(pair)
            answers.append(
                {
                    "value": raw,
                    "type": pair[0],
                    "normalized": pair[1],
                    "found": False,
                    "matches": [],
                    "error": None,
                }
            )
            if pair not in wanted:
                wanted[pair] = None
                if chunked:
                    chunk.append(pair)
                    if len(chunk) == RENDER_CHUNK:
                        rendering.append(asyncio.ensure_future(self.render(chunk, now, include_expired)))
                        chunk = []
                        await asyncio.sleep(0)  # let the query go out now
        if chunked:
            if chunk:
                rendering.append(asyncio.ensure_future(self.render(chunk, now, include_expired)))
            rendered: dict[tuple[str, str], orjson.Fragment] = {}
            parts = await asyncio.gather(*rendering, return_exceptions=True)
            for part in parts:
                if isinstance(part, BaseException):
                    raise part  # every chunk has finished: nothing is left running
                rendered.update(part or {})
            for key, answer in zip(keys, answers, strict=True):
                match = rendered.get(key) if key is not None else None
                if match is not None:
                    answer["found"] = True
                    answer["matches"] = [match]
            return answers
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
