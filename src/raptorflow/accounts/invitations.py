"""Invitations: pending memberships for emails, accepted on sign-up, sign-in or via their link."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.accounts import repository as sql
from raptorflow.accounts.repository import MembershipRepository
from raptorflow.audit import service as audit
from raptorflow.audit.service import AuditContext
from raptorflow.billing.service import ensure_room
from raptorflow.kit.crypto import sha256_hex
from raptorflow.kit.db import utcnow
from raptorflow.kit.errors import NotFound
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import Invitation, User


async def pending_for(session: AsyncSession, email: str) -> bool:
    """True when an open invitation is addressed to this email."""
    return bool(await sql.open_invitations_for(session, email, utcnow()))


async def _accept(session: AsyncSession, invitation: Invitation, user: User, ctx: AuditContext) -> None:
    await bind_org(session, invitation.org_id)
    members = MembershipRepository(session, invitation.org_id)
    invitation.accepted_at = utcnow()
    if await members.get(user.id) is None:
        await members.add(user.id, invitation.role)
        await audit.record(
            session,
            ctx,
            "member.join",
            org_id=invitation.org_id,
            target_type="user",
            target_id=user.id,
            details={"role": invitation.role, "invitation_id": str(invitation.id)},
        )


async def accept_pending(session: AsyncSession, user: User, ctx: AuditContext) -> int:
    """Turn every open invitation for the user's email into a membership; returns how many."""
    if not user.email:
        return 0
    invitations = await sql.open_invitations_for(session, user.email, utcnow())
    for invitation in invitations:
        await _accept(session, invitation, user, ctx)
    return len(invitations)


async def accept_link(session: AsyncSession, token: str, user: User, ctx: AuditContext) -> Invitation:
    """Accept an invitation by its link token; only the addressee may (others get 404)."""
    invitation = await sql.invitation_by_token(session, sha256_hex(token))
    now = utcnow()
    if (
        invitation is None
        or invitation.email != user.email
        or invitation.revoked_at is not None
        or invitation.expires_at <= now
    ):
        raise NotFound("No open invitation matches this link for your account.")
    if invitation.accepted_at is None:
        await bind_org(session, invitation.org_id)
        # Plan limit (billing on only): the invitation already holds a seat, so it is counted as written.
        await ensure_room(session, invitation.org_id, "members", adding=1, written=True)
        await _accept(session, invitation, user, ctx)
    return invitation
