"""SQL for organizations, memberships, invitations, workspaces and API keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.kit.tenancy import TenantRepository, cross_tenant
from raptorflow.models import ApiKey, Base, Invitation, Membership, Organization, User, Workspace


class OrganizationRepository:
    """The organizations table (the tenants themselves)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, org_id: uuid.UUID) -> Organization | None:
        """An org by id."""
        return await self.session.get(Organization, org_id)

    async def slug_taken(self, slug: str, *, other_than: uuid.UUID | None = None) -> bool:
        """True when another org already uses the slug."""
        stmt = select(Organization.id).where(Organization.slug == slug)
        if other_than is not None:
            stmt = stmt.where(Organization.id != other_than)
        return (await self.session.scalar(stmt)) is not None

    async def add(self, org: Organization) -> None:
        """Insert an org."""
        self.session.add(org)
        await self.session.flush()

    async def delete(self, org_id: uuid.UUID) -> None:
        """Delete an org; foreign keys cascade to every row it owns."""
        await self.session.execute(delete(Organization).where(Organization.id == org_id))

    async def memberships_of(self, user_id: uuid.UUID) -> Sequence[tuple[Organization, str]]:
        """Every org a user belongs to, with the role (crosses tenants by nature)."""
        async with cross_tenant(self.session):
            rows = await self.session.execute(
                select(Organization, Membership.role)
                .join(Membership, Membership.org_id == Organization.id)
                .where(Membership.user_id == user_id)
                .order_by(Organization.name, Organization.id)
            )
            return [(org, role) for org, role in rows.all()]

    async def member_counts(self, org_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
        """For each org: (members, owners)."""
        if not org_ids:
            return {}
        async with cross_tenant(self.session):
            rows = await self.session.execute(
                select(
                    Membership.org_id,
                    func.count(),
                    func.sum(case((Membership.role == "owner", 1), else_=0)),
                )
                .where(Membership.org_id.in_(org_ids))
                .group_by(Membership.org_id)
            )
            return {org_id: (int(total), int(owners or 0)) for org_id, total, owners in rows.all()}

    async def remove_user_everywhere(self, user_id: uuid.UUID) -> None:
        """Drop every membership of a user (account deletion)."""
        async with cross_tenant(self.session):
            await self.session.execute(delete(Membership).where(Membership.user_id == user_id))


class MembershipRepository(TenantRepository):
    """Members of one org."""

    model = Membership

    async def members(self, after: uuid.UUID | None, limit: int) -> Sequence[tuple[Membership, User]]:
        """Members with their user rows, by membership id."""
        stmt = self.scoped(select(Membership, User).join(User, User.id == Membership.user_id))
        if after is not None:
            stmt = stmt.where(Membership.id > after)
        rows = await self.session.execute(stmt.order_by(Membership.id).limit(limit))
        return [(m, u) for m, u in rows.all()]

    async def get(self, user_id: uuid.UUID) -> Membership | None:
        """One user's membership."""
        return await self.session.scalar(self.scoped(select(Membership).where(Membership.user_id == user_id)))

    async def owners(self) -> int:
        """How many owners the org has."""
        stmt = self.scoped(select(func.count()).select_from(Membership).where(Membership.role == "owner"))
        return int(await self.session.scalar(stmt) or 0)

    async def add(self, user_id: uuid.UUID, role: str) -> Membership:
        """Insert a membership."""
        membership = Membership(org_id=self.org_id, user_id=user_id, role=role)
        self.session.add(membership)
        await self.session.flush()
        return membership

    async def remove(self, membership: Membership) -> None:
        """Delete a membership."""
        await self.session.delete(membership)
        await self.session.flush()

    async def remove_all(self) -> int:
        """Delete every membership of the org (it is being deleted); returns how many."""
        result = await self.session.execute(
            delete(Membership)
            .where(Membership.org_id == self.org_id)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class InvitationRepository(TenantRepository):
    """Invitations of one org."""

    model = Invitation

    async def pending(self, after: uuid.UUID | None, limit: int, now: datetime) -> Sequence[Invitation]:
        """Open invitations."""
        stmt = self.scoped(select(Invitation)).where(
            Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None), Invitation.expires_at > now
        )
        if after is not None:
            stmt = stmt.where(Invitation.id > after)
        return (await self.session.scalars(stmt.order_by(Invitation.id).limit(limit))).all()

    async def get(self, invitation_id: uuid.UUID) -> Invitation | None:
        """An invitation by id."""
        return await self.session.scalar(
            self.scoped(select(Invitation).where(Invitation.id == invitation_id))
        )

    async def add(self, invitation: Invitation) -> None:
        """Insert an invitation."""
        self.session.add(invitation)
        await self.session.flush()

    async def revoke_open(self, now: datetime) -> int:
        """Withdraw every open invitation of the org; returns how many."""
        result = await self.session.execute(
            update(Invitation)
            .where(
                Invitation.org_id == self.org_id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def open_invitations_for(session: AsyncSession, email: str, now: datetime) -> Sequence[Invitation]:
    """Open invitations addressed to an email, in any org (accepted on sign-up or sign-in)."""
    async with cross_tenant(session):
        stmt = select(Invitation).where(
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
        return (await session.scalars(stmt)).all()


async def invitation_by_token(session: AsyncSession, token_hash: str) -> Invitation | None:
    """An invitation by the hash of its link token."""
    async with cross_tenant(session):
        return await session.scalar(select(Invitation).where(Invitation.token_hash == token_hash))


class WorkspaceRepository(TenantRepository):
    """Workspaces of one org."""

    model = Workspace

    async def page(self, after: uuid.UUID | None, limit: int) -> Sequence[Workspace]:
        """Workspaces by id."""
        stmt = self.scoped(select(Workspace))
        if after is not None:
            stmt = stmt.where(Workspace.id > after)
        return (await self.session.scalars(stmt.order_by(Workspace.id).limit(limit))).all()

    async def get(self, workspace_id: uuid.UUID) -> Workspace | None:
        """A workspace by id."""
        return await self.session.scalar(self.scoped(select(Workspace).where(Workspace.id == workspace_id)))

    async def name_taken(self, name: str, other_than: uuid.UUID | None = None) -> bool:
        """True when another workspace of the org has this name."""
        stmt = self.scoped(select(Workspace.id).where(Workspace.name == name))
        if other_than is not None:
            stmt = stmt.where(Workspace.id != other_than)
        return (await self.session.scalar(stmt)) is not None

    async def add(self, workspace: Workspace) -> None:
        """Insert a workspace."""
        self.session.add(workspace)
        await self.session.flush()

    async def remove(self, workspace: Workspace) -> None:
        """Delete a workspace."""
        await self.session.delete(workspace)
        await self.session.flush()


class ApiKeyRepository(TenantRepository):
    """API keys of one org."""

    model = ApiKey

    async def page(self, after: uuid.UUID | None, limit: int) -> Sequence[ApiKey]:
        """Keys by id."""
        stmt = self.scoped(select(ApiKey))
        if after is not None:
            stmt = stmt.where(ApiKey.id > after)
        return (await self.session.scalars(stmt.order_by(ApiKey.id).limit(limit))).all()

    async def prefixes(self) -> list[str]:
        """Lookup prefixes of every key of the org."""
        return list(
            (await self.session.scalars(select(ApiKey.prefix).where(ApiKey.org_id == self.org_id))).all()
        )

    async def get(self, key_id: uuid.UUID) -> ApiKey | None:
        """A key by id."""
        return await self.session.scalar(self.scoped(select(ApiKey).where(ApiKey.id == key_id)))

    async def add(self, key: ApiKey) -> None:
        """Insert a key."""
        self.session.add(key)
        await self.session.flush()

    async def revoke_all(self, now: datetime) -> int:
        """Revoke every live key of the org; returns how many."""
        result = await self.session.execute(
            update(ApiKey)
            .where(ApiKey.org_id == self.org_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def page_after(cursor: dict[str, Any] | None) -> uuid.UUID | None:
    """The id a keyset page starts after."""
    if not cursor or "after" not in cursor:
        return None
    try:
        return uuid.UUID(str(cursor["after"]))
    except ValueError:
        return None


class PurgeRepository:
    """The deletes of a retired organization's purge (the org is unreachable: no tenant scope to bind)."""

    def __init__(self, session: AsyncSession, org_id: uuid.UUID) -> None:
        self.session = session
        self.org_id = org_id

    async def retired_at(self) -> datetime | None:
        """When the org was retired by a deletion (None: live, or already gone)."""
        found: datetime | None = await self.session.scalar(
            select(Organization.deleted_at).where(Organization.id == self.org_id)
        )
        return found

    async def delete_batch(self, table_name: str, limit: int) -> int:
        """Delete up to `limit` of the org's rows of one table; how many went."""
        table: Table = Base.metadata.tables[table_name]
        batch = select(table.c.id).where(table.c.org_id == self.org_id).limit(limit).scalar_subquery()
        result = await self.session.execute(
            delete(table).where(table.c.org_id == self.org_id, table.c.id.in_(batch))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def delete_org(self) -> None:
        """The org row itself (only a retired one); its small tables cascade."""
        await self.session.execute(
            delete(Organization).where(Organization.id == self.org_id, Organization.deleted_at.is_not(None))
        )
