"""Lookups: is this value known, how bad is it now, and who is behind it — one set-based round."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.auth.principal import OrgContext
from raptorflow.intel.indicators.normalize import InvalidIndicator, normalize
from raptorflow.intel.indicators.scoring import effective_score
from raptorflow.intel.lookup.repository import LookupRepository
from raptorflow.kit.db import utcnow


class LookupService:
    """Answers lookups for one org."""

    def __init__(self, session: AsyncSession, ctx: OrgContext) -> None:
        self.links = LookupRepository(session, ctx.org_id)

    async def lookup(self, values: Sequence[str], *, include_expired: bool = False) -> list[dict[str, Any]]:
        """One answer per value, in the order given (unknown or malformed values: found = false)."""
        keys: list[tuple[str, str] | None] = []
        answers: list[dict[str, Any]] = []
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
            keys.append((n.type.value, n.value))
            answers.append(
                {
                    "value": raw,
                    "type": n.type.value,
                    "normalized": n.value,
                    "found": False,
                    "matches": [],
                    "error": None,
                }
            )
        wanted = list({k for k in keys if k is not None})
        rows, settings = await self.links.find(wanted)
        now = utcnow()
        live = {
            (row.type, row.value): row
            for row in rows
            if row.archived_at is None
            and (include_expired or row.valid_until is None or row.valid_until > now)
        }
        half_lives = (
            settings.get("half_life_days") if isinstance(settings.get("half_life_days"), dict) else {}
        )
        related: dict[Any, dict[str, list[dict[str, Any]]]] = defaultdict(
            lambda: {"actors": [], "campaigns": []}
        )
        if live:
            for indicator_id, kind, obj_id, name, rel in await self.links.related(
                [r.id for r in live.values()]
            ):
                bucket = "actors" if kind == "threat-actor" else "campaigns"
                related[indicator_id][bucket].append({"id": obj_id, "name": name, "relationship_type": rel})
        for key, answer in zip(keys, answers, strict=True):
            row = live.get(key) if key is not None else None
            if row is None:
                continue
            score = effective_score(
                indicator_type=row.type,
                score=row.score,
                last_seen=row.last_seen,
                sightings_count=row.sightings_count,
                false_positive=row.false_positive,
                now=now,
                half_lives=half_lives,
            )
            answer["found"] = True
            answer["matches"] = [
                {
                    "id": row.id,
                    "type": row.type,
                    "value": row.value,
                    "effective_score": score.effective,
                    "classification": row.classification,
                    "tlp": row.tlp,
                    "tags": row.tags,
                    "expired": row.valid_until is not None and row.valid_until <= now,
                    "false_positive": row.false_positive,
                    "last_seen": row.last_seen.isoformat(),
                    "related": related[row.id],
                }
            ]
        return answers
