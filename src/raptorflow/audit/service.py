"""Writing and verifying the tamper-evident audit log."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.audit import repository as audit_sql
from raptorflow.audit.repository import AuditRepository
from raptorflow.kit.db import new_id, utcnow
from raptorflow.models import AuditEntry

ACCOUNT_CHAIN = uuid.UUID(int=0)
GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditContext:
    """Who is acting and from where; built once per request, job or CLI command."""

    actor_user_id: uuid.UUID | None = None
    actor_api_key_id: uuid.UUID | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def pii_digest(ip: str | None, user_agent: str | None) -> str:
    """Digest of the personal fields, so they can be erased without breaking the chain."""
    return hashlib.sha256(f"{ip or ''}\x00{user_agent or ''}".encode()).hexdigest()


def entry_hash(entry: AuditEntry) -> str:
    """The hash of an entry: its content and the previous entry's hash."""
    content = {
        "org_id": str(entry.org_id),
        "seq": entry.seq,
        "actor_user_id": str(entry.actor_user_id) if entry.actor_user_id else None,
        "actor_api_key_id": str(entry.actor_api_key_id) if entry.actor_api_key_id else None,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "request_id": entry.request_id,
        "pii": entry.pii_digest,
        "details": entry.details,
        "created_at": entry.created_at.isoformat(),
    }
    payload = entry.prev_hash.encode() + orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()


async def record(
    session: AsyncSession,
    ctx: AuditContext,
    action: str,
    *,
    org_id: uuid.UUID | None = None,
    target_type: str | None = None,
    target_id: uuid.UUID | str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry in the caller's transaction (it commits or rolls back with the action)."""
    repo = AuditRepository(session, org_id or ACCOUNT_CHAIN)
    await repo.lock_chain()
    last = await repo.last()
    entry = AuditEntry(
        id=new_id(),
        org_id=org_id or ACCOUNT_CHAIN,
        seq=(last.seq + 1) if last else 1,
        actor_user_id=ctx.actor_user_id,
        actor_api_key_id=ctx.actor_api_key_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        ip=ctx.ip,
        user_agent=(ctx.user_agent or "")[:500] or None,
        request_id=ctx.request_id,
        pii_digest=pii_digest(ctx.ip, (ctx.user_agent or "")[:500] or None),
        details=details or {},
        created_at=utcnow(),
        prev_hash=last.hash if last else GENESIS,
    )
    entry.hash = entry_hash(entry)
    await repo.add(entry)
    return entry


@dataclass(frozen=True)
class ChainReport:
    """The outcome of verifying one chain."""

    org_id: uuid.UUID
    entries: int
    ok: bool
    problem: str | None = None


async def verify_chain(session: AsyncSession, org_id: uuid.UUID) -> ChainReport:
    """Recompute every hash of a chain; report the first break."""
    rows = await audit_sql.entries_in_order(session, org_id)
    prev = GENESIS
    for expected_seq, row in enumerate(rows, start=1):
        if row.seq != expected_seq:
            return ChainReport(
                org_id, len(rows), False, f"entry {expected_seq} is missing (found seq {row.seq})"
            )
        if row.prev_hash != prev:
            return ChainReport(
                org_id, len(rows), False, f"entry {row.seq} does not follow entry {row.seq - 1}"
            )
        if (row.ip is not None or row.user_agent is not None) and pii_digest(
            row.ip, row.user_agent
        ) != row.pii_digest:
            return ChainReport(org_id, len(rows), False, f"entry {row.seq}: ip or user agent altered")
        if entry_hash(row) != row.hash:
            return ChainReport(org_id, len(rows), False, f"entry {row.seq} was altered")
        prev = row.hash
    return ChainReport(org_id, len(rows), True)


async def verify_all(session: AsyncSession) -> list[ChainReport]:
    """Verify every chain in the database."""
    return [await verify_chain(session, org_id) async for org_id in audit_sql.chains(session)]
