"""First run: a one-time setup link that creates the first owner and organization."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.accounts.schemas import OrganizationCreate
from raptorflow.accounts.service import OrganizationService
from raptorflow.audit.service import AuditContext
from raptorflow.auth.principal import Principal
from raptorflow.auth.service import AuthService, SignInResult
from raptorflow.config import Registration
from raptorflow.kit.crypto import random_token, sha256_hex
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.errors import NotFound
from raptorflow.models import Organization, SetupToken, User

SETUP_TTL = timedelta(hours=24)


async def users_exist(session: AsyncSession) -> bool:
    """True once any account exists (then first-run setup is over for good)."""
    return (await session.execute(select(User.id).limit(1))).first() is not None


async def issue_setup_token(session: AsyncSession) -> str | None:
    """A fresh one-time setup token while no user exists (None afterwards); only its hash is stored."""
    if await users_exist(session):
        return None
    token = "rfs_" + random_token(24)
    now = utcnow()
    session.add(
        SetupToken(id=new_id(), token_hash=sha256_hex(token), created_at=now, expires_at=now + SETUP_TTL)
    )
    await session.flush()
    return token


async def valid_setup_token(session: AsyncSession, token: str) -> SetupToken | None:
    """The unused, unexpired token row while no user exists; None otherwise."""
    if not token or len(token) > 100 or await users_exist(session):
        return None
    row = (
        await session.execute(select(SetupToken).where(SetupToken.token_hash == sha256_hex(token)))
    ).scalar_one_or_none()
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        return None
    return row


@dataclass(frozen=True)
class SetupDone:
    """The first owner's session and organization."""

    signed_in: SignInResult
    org: Organization


async def complete_setup(
    auth: AuthService,
    token: str,
    *,
    email: str,
    password: str,
    name: str,
    org: OrganizationCreate,
    ctx: AuditContext,
) -> SetupDone:
    """Use the token once: create the owner (whatever the registration mode), the org, a session."""
    row = await valid_setup_token(auth.session, token)
    if row is None:
        raise NotFound("This setup link is not valid any more (used, expired, or an account already exists).")
    row.used_at = utcnow()
    operator = AuthService(
        auth.session,
        auth.settings.model_copy(update={"registration": Registration.open}),
        auth.issuer,
        auth.limiter,
    )
    user = await operator.register(email, password, name, ctx)
    principal = Principal(user_id=user.id, ip=ctx.ip, user_agent=ctx.user_agent, request_id=ctx.request_id)
    organization = await OrganizationService(auth.session).create(principal, org)
    signed_in = await operator.open_session(user, principal.audit())
    return SetupDone(signed_in, organization)
