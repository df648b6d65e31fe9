"""Plans as data: the defaults the migration seeds, and the operator's edits (`raptorflow plan …`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.billing import repository as billing_sql
from raptorflow.kit.db import utcnow
from raptorflow.models import Plan

# Same values as migrations/versions/20261201_0820_billing.py seeds (None = unlimited / custom price).
DEFAULTS: list[dict[str, Any]] = [
    {
        "code": "free", "name": "Free", "price_paise": 0, "requests_per_minute": 100,
        "requests_per_month": 10_000, "max_members": 3, "max_indicators": 10_000,
        "feeds": False, "taxii_write": False, "rank": 0,
    },
    {
        "code": "pro", "name": "Pro", "price_paise": 350_000, "requests_per_minute": 1_000,
        "requests_per_month": 100_000, "max_members": 25, "max_indicators": 1_000_000,
        "feeds": True, "taxii_write": True, "rank": 1,
    },
    {
        "code": "enterprise", "name": "Enterprise", "price_paise": None, "requests_per_minute": 10_000,
        "requests_per_month": None, "max_members": None, "max_indicators": None,
        "feeds": True, "taxii_write": True, "rank": 2,
    },
]  # fmt: skip
EDITABLE = (
    "name",
    "price_paise",
    "requests_per_minute",
    "requests_per_month",
    "max_members",
    "max_indicators",
    "feeds",
    "taxii_write",
    "rank",
)


async def seed_defaults(session: AsyncSession) -> int:
    """Insert the default plans that are missing (existing ones are left as the operator set them)."""
    added = 0
    for values in DEFAULTS:
        if await billing_sql.plan(session, values["code"]) is None:
            session.add(Plan(currency="INR", **values))
            added += 1
    await session.flush()
    return added


async def set_plan(session: AsyncSession, code: str, changes: dict[str, Any]) -> Plan:
    """Create or change a plan; `changes` holds only EDITABLE fields."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    for key in ("price_paise", "requests_per_minute", "requests_per_month", "max_members", "max_indicators"):
        value = changes.get(key)
        if value is not None and (type(value) is not int or value < 0):
            raise ValueError(f"{key} must be a non-negative integer or unlimited")
    found = await billing_sql.plan(session, code)
    if found is None:
        found = Plan(
            code=code,
            name=changes.get("name", code.title()),
            currency="INR",
            feeds=False,
            taxii_write=False,
            rank=changes.get("rank", 100),
        )
        session.add(found)
    for key, value in changes.items():
        setattr(found, key, value)
    found.updated_at = utcnow()
    await session.flush()
    return found
