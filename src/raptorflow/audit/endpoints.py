"""HTTP route of the audit log (admins)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from raptorflow.accounts.schemas import AuditEntryOut, Page
from raptorflow.audit.repository import AuditRepository
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import InvalidInput
from raptorflow.kit.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor
from raptorflow.kit.types import RFC3339

router = APIRouter(prefix="/api/v1/organizations/{org_id}/audit-log", tags=["audit"])


@router.get("", responses={404: {"description": "Not found"}}, summary="The organization's audit log (admin)")
async def audit_log(
    ctx: Annotated[OrgContext, require(Permission.audit_read)],
    session: SessionDep,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor_user_id: uuid.UUID | None = None,
    target_id: Annotated[str | None, Query(max_length=128)] = None,
    since: RFC3339 | None = None,
    until: RFC3339 | None = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[AuditEntryOut]:
    """Entries newest first, filtered, cursor-paged."""
    position = decode_cursor(cursor)
    before = position.get("before") if position else None
    if before is not None and not isinstance(before, int):
        raise InvalidInput("cursor", "not a cursor returned by this API")
    rows = await AuditRepository(session, ctx.org_id).page(
        limit=limit,
        before_seq=before,
        action=action,
        actor_user_id=actor_user_id,
        target_id=target_id,
        since=since,
        until=until,
    )
    items = [AuditEntryOut.model_validate(row, from_attributes=True) for row in rows]
    nxt = encode_cursor({"before": rows[-1].seq}) if len(rows) == limit else None
    return Page[AuditEntryOut](items=items, next_cursor=nxt)
