"""Effective score: the analyst's score, decayed by time since last seen, lifted by sightings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Days for the score to halve since last_seen; None = never decays. Orgs override per type.
DEFAULT_HALF_LIFE_DAYS: dict[str, float | None] = {
    "ipv4": 30,
    "ipv6": 30,
    "cidr": 30,
    "domain": 90,
    "url": 90,
    "email": 90,
    "user-agent": 90,
    "asn": 180,
    "md5": None,
    "sha1": None,
    "sha256": None,
    "sha512": None,
    "cve": None,
    "filename": None,
    "mutex": None,
    "registry-key": None,
    "btc-address": None,
    "stix-pattern": None,
}
MAX_SIGHTINGS_BONUS = 20.0


@dataclass(frozen=True, slots=True)
class ScoreBreakdown:
    """Why an indicator scores what it does right now."""

    base: int
    decay: float
    sightings: float
    false_positive: bool
    half_life_days: float | None
    age_days: float
    effective: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready parts."""
        return {
            "base": self.base,
            "decay": round(self.decay, 2),
            "sightings": round(self.sightings, 2),
            "false_positive": self.false_positive,
            "half_life_days": self.half_life_days,
            "age_days": round(self.age_days, 2),
            "effective": self.effective,
        }


def half_life_for(indicator_type: str, overrides: dict[str, Any] | None) -> float | None:
    """The org's half-life for a type (an override of 0 or null means never decays)."""
    if overrides and indicator_type in overrides:
        value = overrides[indicator_type]
        return float(value) if value else None
    return DEFAULT_HALF_LIFE_DAYS.get(indicator_type)


def sightings_bonus(sightings_count: int) -> float:
    """Points added for sightings: 5 per doubling, at most MAX_SIGHTINGS_BONUS."""
    return min(MAX_SIGHTINGS_BONUS, 5.0 * math.log2(1 + max(0, sightings_count))) if sightings_count else 0.0


def effective_value(
    score: int, age_days: float, half_life: float | None, bonus: float, false_positive: bool
) -> int:
    """The effective score alone (the lookup hot path): same formula as `effective_score`."""
    if false_positive:
        return 0
    decayed = score if half_life is None else score * 0.5 ** (age_days / half_life)
    return max(0, min(100, round(decayed + bonus)))


def effective_score(
    *,
    indicator_type: str,
    score: int,
    last_seen: datetime,
    sightings_count: int,
    false_positive: bool,
    now: datetime,
    half_lives: dict[str, Any] | None = None,
) -> ScoreBreakdown:
    """Base score * 0.5^(age / half-life) + a bounded bonus for sightings; 0 for false positives."""
    age_days = max(0.0, (now - last_seen).total_seconds() / 86_400)
    half_life = half_life_for(indicator_type, half_lives)
    factor = 1.0 if half_life is None else 0.5 ** (age_days / half_life)
    bonus = sightings_bonus(sightings_count)
    return ScoreBreakdown(
        base=score,
        decay=score * factor - score,
        sightings=bonus,
        false_positive=false_positive,
        half_life_days=half_life,
        age_days=age_days,
        effective=effective_value(score, age_days, half_life, bonus, false_positive),
    )
