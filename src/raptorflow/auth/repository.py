"""SQL for identity: users, sign-in sessions, refresh tokens, signing keys, API-key resolution."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.kit.tenancy import cross_tenant
from raptorflow.models import ApiKey, AuthSession, Membership, RefreshToken, SigningKey, User


class IdentityRepository:
    """Users and their sessions (not tenant-owned: a user spans organizations)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def user_by_email(self, email: str) -> User | None:
        """The live user with this normalized email."""
        return await self.session.scalar(select(User).where(User.email == email, User.deleted_at.is_(None)))

    async def user(self, user_id: uuid.UUID) -> User | None:
        """A live user by id."""
        return await self.session.scalar(select(User).where(User.id == user_id, User.deleted_at.is_(None)))

    async def user_by_external(self, issuer: str, subject: str) -> User | None:
        """A user provisioned from an external identity provider."""
        return await self.session.scalar(
            select(User).where(User.external_issuer == issuer, User.external_subject == subject)
        )

    async def add(self, obj: object) -> None:
        """Stage a new row and flush it."""
        self.session.add(obj)
        await self.session.flush()

    async def user_with_session(self, user_id: uuid.UUID, sid: uuid.UUID) -> tuple[User, AuthSession] | None:
        """A live user and one of their sessions, in one query (the per-request check of access tokens)."""
        row = (
            await self.session.execute(
                select(User, AuthSession)
                .join(AuthSession, AuthSession.user_id == User.id)
                .where(User.id == user_id, AuthSession.id == sid, User.deleted_at.is_(None))
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def auth_session(self, sid: uuid.UUID) -> AuthSession | None:
        """A sign-in session by id."""
        return await self.session.get(AuthSession, sid)

    async def sessions_of(self, user_id: uuid.UUID) -> Sequence[AuthSession]:
        """A user's sessions, newest first."""
        stmt = (
            select(AuthSession).where(AuthSession.user_id == user_id).order_by(AuthSession.created_at.desc())
        )
        return (await self.session.scalars(stmt)).all()

    async def revoke_sessions(
        self, user_id: uuid.UUID, now: datetime, reason: str, *, keep: uuid.UUID | None = None
    ) -> None:
        """Revoke every live session of a user except `keep`."""
        stmt = (
            update(AuthSession)
            .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        if keep is not None:
            stmt = stmt.where(AuthSession.id != keep)
        await self.session.execute(stmt)

    async def refresh_token(self, token_hash: str) -> RefreshToken | None:
        """A refresh token by its hash, locked against a concurrent rotation."""
        stmt = select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        return await self.session.scalar(stmt)

    async def signing_keys(self) -> Sequence[SigningKey]:
        """Every signing key, newest first."""
        return (await self.session.scalars(select(SigningKey).order_by(SigningKey.created_at.desc()))).all()

    async def retire_signing_keys(self, now: datetime) -> None:
        """Stop signing with every current key (they keep verifying until their tokens expire)."""
        await self.session.execute(
            update(SigningKey).where(SigningKey.retired_at.is_(None)).values(retired_at=now)
        )

    async def api_key_by_lookup(self, lookup: str) -> ApiKey | None:
        """Resolve an API key by its public prefix (before any org is known)."""
        async with cross_tenant(self.session):
            return await self.session.scalar(select(ApiKey).where(ApiKey.prefix == lookup))

    async def touch_api_key(self, key_id: uuid.UUID, org_id: uuid.UUID, now: datetime) -> None:
        """Record that a key was used."""
        await self.session.execute(
            update(ApiKey).where(ApiKey.id == key_id, ApiKey.org_id == org_id).values(last_used_at=now)
        )

    async def role_in(self, user_id: uuid.UUID, org_id: uuid.UUID) -> str | None:
        """The user's role in an org (the caller has bound the transaction to that org)."""
        return await self.session.scalar(
            select(Membership.role).where(Membership.user_id == user_id, Membership.org_id == org_id)
        )
