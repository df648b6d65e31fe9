"""Rules for a user's own account: profile, password, sessions, data export, deletion (GDPR)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.accounts.repository import OrganizationRepository
from raptorflow.accounts.service import retire_org
from raptorflow.audit import service as audit
from raptorflow.audit.repository import AuditRepository
from raptorflow.audit.service import ACCOUNT_CHAIN
from raptorflow.auth.keycache import ApiKeyCache
from raptorflow.auth.passwords import hash_password, policy_violation, verify_password
from raptorflow.auth.principal import Principal
from raptorflow.auth.repository import IdentityRepository
from raptorflow.kit.db import utcnow
from raptorflow.kit.errors import BadRequest, Conflict, InvalidInput, NotFound
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import AuthSession, Job, Organization, User


class UserService:
    """The signed-in user's own account; never commits."""

    def __init__(
        self, session: AsyncSession, principal: Principal, key_cache: ApiKeyCache | None = None
    ) -> None:
        assert principal.user_id is not None
        self.key_cache = key_cache
        self.session = session
        self.principal = principal
        self.user_id: uuid.UUID = principal.user_id
        self.identity = IdentityRepository(session)
        self.orgs = OrganizationRepository(session)

    async def me(self) -> User:
        """The caller's user row."""
        user = await self.identity.user(self.user_id)
        if user is None:
            raise NotFound()
        return user

    async def update(self, name: str) -> User:
        """Change the display name."""
        user = await self.me()
        user.name = name
        user.updated_at = utcnow()
        await self.session.flush()
        return user

    async def change_password(self, current: str, new: str) -> None:
        """Change the password and sign out every other session."""
        user = await self.me()
        if user.password_hash is None:
            raise BadRequest(
                "This account signs in through an external identity provider; it has no password."
            )
        if not verify_password(user.password_hash, current):
            raise InvalidInput("current_password", "is not correct")
        reason = policy_violation(new, user.email)
        if reason:
            raise InvalidInput("new_password", reason)
        if verify_password(user.password_hash, new):
            raise InvalidInput("new_password", "must differ from the current password")
        user.password_hash = hash_password(new)
        user.updated_at = utcnow()
        await self.identity.revoke_sessions(
            user.id, utcnow(), "password-change", keep=self.principal.session_id
        )
        await audit.record(
            self.session,
            self.principal.audit(),
            "user.password_change",
            target_type="user",
            target_id=user.id,
        )

    async def organizations(self) -> list[tuple[Organization, str]]:
        """Orgs the caller belongs to, with the role."""
        return list(await self.orgs.memberships_of(self.user_id))

    async def sessions(self) -> list[AuthSession]:
        """The caller's sessions."""
        return list(await self.identity.sessions_of(self.user_id))

    async def revoke_session(self, session_id: uuid.UUID) -> None:
        """End one of the caller's sessions (someone else's → 404)."""
        auth_session = await self.identity.auth_session(session_id)
        if auth_session is None or auth_session.user_id != self.user_id:
            raise NotFound()
        if auth_session.revoked_at is None:
            auth_session.revoked_at = utcnow()
            auth_session.revoked_reason = "revoked-by-user"
            await audit.record(
                self.session,
                self.principal.audit(),
                "auth.session_revoke",
                target_type="session",
                target_id=session_id,
            )

    async def export(self) -> dict[str, Any]:
        """Everything RaptorFlow holds about the caller, as JSON-ready data."""
        user = await self.me()
        entries = await AuditRepository(self.session, ACCOUNT_CHAIN).by_actor(self.user_id)
        return {
            "exported_at": utcnow(),
            "profile": {
                "id": user.id,
                "email": user.email,
                "name": user.name,
                "created_at": user.created_at,
                "last_login_at": user.last_login_at,
                "external_issuer": user.external_issuer,
                "external_subject": user.external_subject,
            },
            "organizations": [
                {"id": org.id, "name": org.name, "slug": org.slug, "role": role}
                for org, role in await self.organizations()
            ],
            "sessions": [
                {
                    "id": s.id,
                    "created_at": s.created_at,
                    "last_used_at": s.last_used_at,
                    "ip": s.ip,
                    "user_agent": s.user_agent,
                    "revoked_at": s.revoked_at,
                }
                for s in await self.sessions()
            ],
            "activity": [
                {
                    "org_id": e.org_id if e.org_id != ACCOUNT_CHAIN else None,
                    "action": e.action,
                    "target_type": e.target_type,
                    "target_id": e.target_id,
                    "ip": e.ip,
                    "created_at": e.created_at,
                }
                for e in entries
            ],
        }

    async def delete(self) -> list[Job]:
        """Erase the account: personal data anonymized, audit rows kept without it.

        Refused while the user is the only owner of an org that has other members; orgs where the
        user is the only member are retired with the account (unreachable at once) and their data is
        deleted by the returned background jobs (none when the user owned no such org).
        """
        user = await self.me()
        memberships = await self.orgs.memberships_of(user.id)
        owned = [org for org, role in memberships if role == "owner"]
        counts = await self.orgs.member_counts([org.id for org in owned])
        blocking = [org for org in owned if counts[org.id][1] == 1 and counts[org.id][0] > 1]
        if blocking:
            raise Conflict(
                "You are the only owner of organizations with other members: "
                + ", ".join(org.slug for org in blocking)
                + ". Transfer ownership or delete them first.",
                extra={"organizations": [str(org.id) for org in blocking]},
            )
        jobs: list[Job] = []
        for org in owned:
            if counts[org.id][0] == 1:
                await bind_org(self.session, org.id)
                await audit.record(
                    self.session,
                    self.principal.audit(),
                    "org.delete",
                    org_id=org.id,
                    target_type="organization",
                    target_id=org.id,
                    details={"reason": "owner-account-deleted"},
                )
                jobs.append(await retire_org(self.session, self.key_cache, org, requested_by=None))
        await self.orgs.remove_user_everywhere(user.id)
        await self.identity.revoke_sessions(user.id, utcnow(), "account-deleted")
        await AuditRepository(self.session, ACCOUNT_CHAIN).scrub_actor(user.id)
        user.email = None
        user.name = "Deleted user"
        user.password_hash = None
        user.external_subject = None
        user.external_issuer = None
        user.deleted_at = utcnow()
        user.updated_at = utcnow()
        await self.session.flush()
        await audit.record(
            self.session,
            self.principal.audit().__class__(actor_user_id=user.id, request_id=self.principal.request_id),
            "user.delete",
            target_type="user",
            target_id=user.id,
        )
        return jobs
