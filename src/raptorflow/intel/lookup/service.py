"""Lookups: is this value known, how bad is it now, and who is behind it — one set-based round."""

from __future__ import annotations

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
        hits, settings = await self.links.find(wanted)
        now = utcnow()
        live = {
            (hit.type, hit.value): hit
            for hit in hits
            if hit.archived_at is None
            and (include_expired or hit.valid_until is None or hit.valid_until > now)
        }
        half_lives = (
            settings.get("half_life_days") if isinstance(settings.get("half_life_days"), dict) else {}
        )
        for key, answer in zip(keys, answers, strict=True):
            hit = live.get(key) if key is not None else None
            if hit is None:
                continue
            score = effective_score(
                indicator_type=hit.type,
                score=hit.score,
                last_seen=hit.last_seen,
                sightings_count=hit.sightings_count,
                false_positive=hit.false_positive,
                now=now,
                half_lives=half_lives,
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
                    "effective_score": score.effective,
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
