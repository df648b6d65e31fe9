"""Rules shared by every intelligence object: TLP, classification, tags, ATT&CK ids, who may remove."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.auth.permissions import Role
from raptorflow.auth.principal import OrgContext
from raptorflow.kit.errors import Forbidden, InvalidInput
from raptorflow.models import AttackObject

MAX_TAGS = 50
MAX_TAG_LENGTH = 64
TECHNIQUE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")
# Request items as the document shows them; `clean_tags` and `technique_id_shape` check them (after
# `Input` strips them) and say what is wrong.
Tag = Annotated[str, Field(json_schema_extra={"minLength": 1, "maxLength": MAX_TAG_LENGTH})]
TechniqueId = Annotated[
    str, Field(max_length=16, json_schema_extra={"pattern": r"^[Tt][0-9]{4}(\.[0-9]{3})?$"})
]


class TLP(StrEnum):
    """Traffic Light Protocol 2.0."""

    clear = "clear"
    green = "green"
    amber = "amber"
    amber_strict = "amber+strict"
    red = "red"

    @property
    def rank(self) -> int:
        """clear < green < amber < amber+strict < red."""
        return list(TLP).index(self)


class Classification(StrEnum):
    """The verdict on an indicator."""

    malicious = "malicious"
    suspicious = "suspicious"
    benign = "benign"
    unknown = "unknown"


def clean_tags(tags: Iterable[str], field: str = "tags") -> list[str]:
    """Trimmed, lower-cased, de-duplicated tags in first-seen order; refuses empty or oversize ones."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in tags:
        tag = raw.strip().lower()
        if not tag:
            raise InvalidInput(field, "tags cannot be empty")
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidInput(field, f"a tag is at most {MAX_TAG_LENGTH} characters")
        if tag not in seen:
            seen.add(tag)
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise InvalidInput(field, f"at most {MAX_TAGS} tags")
    return out


def technique_id_shape(ids: Iterable[str], field: str = "attack_techniques") -> list[str]:
    """Upper-cased, de-duplicated technique ids that look like T1234 or T1234.001."""
    out: list[str] = []
    for raw in ids:
        tid = raw.strip().upper()
        if not TECHNIQUE_ID.match(tid):
            raise InvalidInput(field, f"{raw!r} is not an ATT&CK technique id (T1234 or T1234.001)")
        if tid not in out:
            out.append(tid)
    return out


async def validate_techniques(
    session: AsyncSession, ids: Iterable[str], field: str = "attack_techniques"
) -> list[str]:
    """Technique ids checked against the loaded ATT&CK catalog (shape only when no catalog is loaded)."""
    wanted = technique_id_shape(ids, field)
    if not wanted:
        return wanted
    catalog_loaded = await session.scalar(
        select(AttackObject.stix_id).where(AttackObject.kind == "technique").limit(1)
    )
    if catalog_loaded is None:
        return wanted
    known = set(
        (
            await session.scalars(
                select(AttackObject.external_id).where(
                    AttackObject.kind == "technique",
                    AttackObject.hidden.is_(False),
                    AttackObject.external_id.in_(wanted),
                )
            )
        ).all()
    )
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise InvalidInput(field, "unknown ATT&CK technique(s): " + ", ".join(unknown))
    return wanted


def ensure_may_remove(ctx: OrgContext, created_by: uuid.UUID | None) -> None:
    """Editors archive or delete what they created; admins and owners anything."""
    if ctx.role.at_least(Role.admin):
        return
    if created_by is not None and created_by == ctx.principal.user_id:
        return
    raise Forbidden("Only admins archive or delete objects created by someone else.")
