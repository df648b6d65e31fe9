"""Rules for organizations, members, invitations, workspaces and API keys."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.accounts.repository import (
    ApiKeyRepository,
    InvitationRepository,
    MembershipRepository,
    OrganizationRepository,
    WorkspaceRepository,
)
from raptorflow.accounts.schemas import (
    ApiKeyCreate,
    OrganizationCreate,
    OrganizationUpdate,
    WorkspaceCreate,
    WorkspaceUpdate,
)
from raptorflow.audit import service as audit
from raptorflow.auth import apikeys
from raptorflow.auth.keycache import ApiKeyCache
from raptorflow.auth.permissions import Role
from raptorflow.auth.principal import OrgContext, Principal
from raptorflow.auth.repository import IdentityRepository
from raptorflow.auth.service import normalize_email
from raptorflow.billing.service import ensure_room
from raptorflow.jobs.service import enqueue
from raptorflow.kit.crypto import random_token, sha256_hex
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.deps import after_commit
from raptorflow.kit.errors import BadRequest, Conflict, Forbidden, InvalidInput, NotFound
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import ApiKey, Invitation, Job, Membership, Organization, User, Workspace

INVITATION_TTL = timedelta(days=14)
# The background job that deletes a retired organization's data (raptorflow.accounts.tasks).
PURGE_ORG_TASK = "accounts.purge_org"


class OrganizationService:
    """Organizations and their members; never commits."""

    def __init__(self, session: AsyncSession, key_cache: ApiKeyCache | None = None) -> None:
        self.session = session
        self.orgs = OrganizationRepository(session)
        self.key_cache = key_cache

    async def create(self, principal: Principal, body: OrganizationCreate) -> Organization:
        """Create an org; its creator becomes the owner."""
        if principal.user_id is None:
            raise Forbidden("API keys cannot create organizations.")
        if principal.is_anonymous:
            raise Forbidden("Anonymous users cannot create organizations; sign up first.")
        if await self.orgs.slug_taken(body.slug):
            raise Conflict(
                f"The slug {body.slug!r} is taken.", errors=[{"field": "slug", "message": "taken"}]
            )
        org = Organization(id=new_id(), name=body.name, slug=body.slug)
        await self.orgs.add(org)
        await bind_org(self.session, org.id)
        await MembershipRepository(self.session, org.id).add(principal.user_id, Role.owner.value)
        await audit.record(
            self.session,
            principal.audit(),
            "org.create",
            org_id=org.id,
            target_type="organization",
            target_id=org.id,
            details={"slug": org.slug},
        )
        return org

    async def get(self, ctx: OrgContext) -> Organization:
        """The org of the context."""
        org = await self.orgs.get(ctx.org_id)
        if org is None:
            raise NotFound()
        return org

    async def update(self, ctx: OrgContext, body: OrganizationUpdate) -> Organization:
        """Rename or re-slug an org."""
        org = await self.get(ctx)
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        if "slug" in changes and await self.orgs.slug_taken(changes["slug"], other_than=org.id):
            raise Conflict(
                f"The slug {changes['slug']!r} is taken.", errors=[{"field": "slug", "message": "taken"}]
            )
        before = {k: getattr(org, k) for k in changes}
        for key, value in changes.items():
            setattr(org, key, value)
        org.updated_at = utcnow()
        await self.session.flush()
        await audit.record(
            self.session,
            ctx.audit(),
            "org.update",
            org_id=org.id,
            target_type="organization",
            target_id=org.id,
            details={"before": before, "after": changes},
        )
        return org

    async def delete(self, ctx: OrgContext) -> Job:
        """Retire an org at once and queue the deletion of its data; returns the purge job.

        Its audit chain is kept; members, API keys and invitations stop working in this transaction,
        so nothing of the org stays reachable while the job deletes its rows in batches.
        """
        org = await self.get(ctx)
        await audit.record(
            self.session,
            ctx.audit(),
            "org.delete",
            org_id=org.id,
            target_type="organization",
            target_id=org.id,
            details={"slug": org.slug},
        )
        return await retire_org(self.session, self.key_cache, org, requested_by=ctx.principal.user_id)

    async def member_view(self, ctx: OrgContext, user_id: uuid.UUID) -> tuple[Membership, User]:
        """A member and their user row; 404 when not a member."""
        membership = await MembershipRepository(self.session, ctx.org_id).get(user_id)
        user = await IdentityRepository(self.session).user(user_id) if membership else None
        if membership is None or user is None:
            raise NotFound()
        return membership, user

    async def add_member(
        self, ctx: OrgContext, email: str, role: Role, public_url: str
    ) -> tuple[Membership | None, Invitation | None, str | None]:
        """Add an existing user at once, or invite an unknown email: (membership, invitation, link)."""
        _may_grant(ctx, role)
        email = normalize_email(email)
        members = MembershipRepository(self.session, ctx.org_id)
        await ensure_room(self.session, ctx.org_id, "members", adding=1)  # plan limit (billing on only)
        user = await IdentityRepository(self.session).user_by_email(email)
        if user is not None:
            if await members.get(user.id):
                raise Conflict("This user is already a member.")
            membership = await members.add(user.id, role.value)
            await audit.record(
                self.session,
                ctx.audit(),
                "member.add",
                org_id=ctx.org_id,
                target_type="user",
                target_id=user.id,
                details={"role": role.value},
            )
            return membership, None, None
        token = "rfi_" + random_token(24)
        invitation = Invitation(
            id=new_id(),
            org_id=ctx.org_id,
            email=email,
            role=role.value,
            token_hash=sha256_hex(token),
            invited_by=ctx.principal.user_id,
            expires_at=utcnow() + INVITATION_TTL,
        )
        await InvitationRepository(self.session, ctx.org_id).add(invitation)
        await audit.record(
            self.session,
            ctx.audit(),
            "member.invite",
            org_id=ctx.org_id,
            target_type="invitation",
            target_id=invitation.id,
            details={"role": role.value},
        )
        return None, invitation, f"{public_url.rstrip('/')}/invitations/accept?token={token}"

    async def revoke_invitation(self, ctx: OrgContext, invitation_id: uuid.UUID) -> None:
        """Withdraw an open invitation."""
        invitation = await InvitationRepository(self.session, ctx.org_id).get(invitation_id)
        if invitation is None or invitation.accepted_at or invitation.revoked_at:
            raise NotFound()
        _may_grant(ctx, Role(invitation.role))
        invitation.revoked_at = utcnow()
        await audit.record(
            self.session,
            ctx.audit(),
            "member.invite_revoke",
            org_id=ctx.org_id,
            target_type="invitation",
            target_id=invitation.id,
        )

    async def change_role(self, ctx: OrgContext, user_id: uuid.UUID, role: Role) -> Membership:
        """Change a member's role (never your own; only owners touch the owner role; ≥ 1 owner stays)."""
        if user_id == ctx.principal.user_id:
            raise Forbidden("Nobody changes their own role; ask another admin or owner.")
        membership, _user = await self.member_view(ctx, user_id)
        current = Role(membership.role)
        _may_grant(ctx, role)
        _may_grant(ctx, current)
        if current == Role.owner and role != Role.owner:
            await self._keep_an_owner(ctx)
        membership.role = role.value
        membership.updated_at = utcnow()
        await audit.record(
            self.session,
            ctx.audit(),
            "member.role_change",
            org_id=ctx.org_id,
            target_type="user",
            target_id=user_id,
            details={"from": current.value, "to": role.value},
        )
        return membership

    async def remove_member(self, ctx: OrgContext, user_id: uuid.UUID) -> None:
        """Remove another member (leaving is `leave`)."""
        if user_id == ctx.principal.user_id:
            raise BadRequest("To remove yourself, use the leave endpoint.")
        membership, _user = await self.member_view(ctx, user_id)
        _may_grant(ctx, Role(membership.role))
        if membership.role == Role.owner.value:
            await self._keep_an_owner(ctx)
        await MembershipRepository(self.session, ctx.org_id).remove(membership)
        await audit.record(
            self.session,
            ctx.audit(),
            "member.remove",
            org_id=ctx.org_id,
            target_type="user",
            target_id=user_id,
            details={"role": membership.role},
        )

    async def leave(self, ctx: OrgContext) -> None:
        """Leave an org (the last owner cannot)."""
        if ctx.principal.user_id is None:
            raise Forbidden("API keys are not members.")
        membership, _user = await self.member_view(ctx, ctx.principal.user_id)
        if membership.role == Role.owner.value:
            await self._keep_an_owner(ctx)
        await MembershipRepository(self.session, ctx.org_id).remove(membership)
        await audit.record(
            self.session,
            ctx.audit(),
            "member.leave",
            org_id=ctx.org_id,
            target_type="user",
            target_id=ctx.principal.user_id,
        )

    async def transfer_ownership(self, ctx: OrgContext, user_id: uuid.UUID) -> Membership:
        """Make another member owner; the caller steps down to admin."""
        if user_id == ctx.principal.user_id:
            raise BadRequest("You already own this organization.")
        target, _user = await self.member_view(ctx, user_id)
        assert ctx.principal.user_id is not None
        mine, _me = await self.member_view(ctx, ctx.principal.user_id)
        previous = target.role
        target.role = Role.owner.value
        mine.role = Role.admin.value
        await self.session.flush()
        await audit.record(
            self.session,
            ctx.audit(),
            "org.transfer_ownership",
            org_id=ctx.org_id,
            target_type="user",
            target_id=user_id,
            details={"from_role": previous},
        )
        return target

    async def _keep_an_owner(self, ctx: OrgContext) -> None:
        if await MembershipRepository(self.session, ctx.org_id).owners() <= 1:
            raise Conflict("An organization must keep at least one owner; transfer ownership first.")


def _forget_after_commit(session: AsyncSession, cache: ApiKeyCache | None, prefixes: list[str]) -> None:
    """Drop cached API keys once the change is committed (a re-cache in between lives ≤ TTL_S)."""
    if cache is None or not prefixes:
        return

    async def forget() -> None:
        await cache.forget(prefixes)

    after_commit(session, forget)


async def forget_org_keys(session: AsyncSession, cache: ApiKeyCache | None, org_id: uuid.UUID) -> None:
    """Schedule the cache eviction of every key of an org that is being deleted."""
    if cache is not None:
        _forget_after_commit(session, cache, await ApiKeyRepository(session, org_id).prefixes())


async def retire_org(
    session: AsyncSession, cache: ApiKeyCache | None, org: Organization, *, requested_by: uuid.UUID | None
) -> Job:
    """Disable an org now (keys revoked, members and invitations gone, slug freed) and queue its purge.

    Safe to repeat: an org already retired keeps its first `deleted_at`, and the purge job deletes
    whatever is left (nothing, the second time).
    """
    await bind_org(session, org.id)
    now = utcnow()
    await forget_org_keys(session, cache, org.id)
    await ApiKeyRepository(session, org.id).revoke_all(now)
    await InvitationRepository(session, org.id).revoke_open(now)
    await MembershipRepository(session, org.id).remove_all()
    if org.deleted_at is None:
        org.deleted_at = now
        # The slug is free for a new org at once; the row itself goes when the purge ends.
        org.slug = f"deleted-{org.id.hex}"
        org.updated_at = now
    await session.flush()
    return await enqueue(session, org.id, PURGE_ORG_TASK, {}, created_by=requested_by)


def _may_grant(ctx: OrgContext, role: Role) -> None:
    """Only owners grant or revoke owner; nobody grants above their own role."""
    if role == Role.owner and ctx.role != Role.owner:
        raise Forbidden("Only owners grant or revoke the owner role.")
    if not ctx.role.at_least(role):
        raise Forbidden(f"You cannot grant a role above your own ({ctx.role.value}).")


class WorkspaceService:
    """Workspaces of an org."""

    def __init__(self, session: AsyncSession, ctx: OrgContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = WorkspaceRepository(session, ctx.org_id)

    async def get(self, workspace_id: uuid.UUID) -> Workspace:
        """One workspace or 404."""
        workspace = await self.repo.get(workspace_id)
        if workspace is None:
            raise NotFound()
        return workspace

    async def create(self, body: WorkspaceCreate) -> Workspace:
        """Create a workspace (names are unique in the org)."""
        if await self.repo.name_taken(body.name):
            raise Conflict(
                "A workspace with this name exists.", errors=[{"field": "name", "message": "taken"}]
            )
        workspace = Workspace(
            id=new_id(), org_id=self.ctx.org_id, name=body.name, description=body.description
        )
        await self.repo.add(workspace)
        await audit.record(
            self.session,
            self.ctx.audit(),
            "workspace.create",
            org_id=self.ctx.org_id,
            target_type="workspace",
            target_id=workspace.id,
        )
        return workspace

    async def update(self, workspace_id: uuid.UUID, body: WorkspaceUpdate) -> Workspace:
        """Rename or describe a workspace."""
        workspace = await self.get(workspace_id)
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        if "name" in changes and await self.repo.name_taken(changes["name"], other_than=workspace.id):
            raise Conflict(
                "A workspace with this name exists.", errors=[{"field": "name", "message": "taken"}]
            )
        for key, value in changes.items():
            setattr(workspace, key, value)
        workspace.updated_at = utcnow()
        await self.session.flush()
        return workspace

    async def delete(self, workspace_id: uuid.UUID) -> None:
        """Delete a workspace."""
        workspace = await self.get(workspace_id)
        await self.repo.remove(workspace)
        await audit.record(
            self.session,
            self.ctx.audit(),
            "workspace.delete",
            org_id=self.ctx.org_id,
            target_type="workspace",
            target_id=workspace_id,
        )


class ApiKeyService:
    """API keys of an org."""

    def __init__(self, session: AsyncSession, ctx: OrgContext, key_cache: ApiKeyCache | None = None) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = ApiKeyRepository(session, ctx.org_id)
        self.key_cache = key_cache

    async def create(self, body: ApiKeyCreate) -> tuple[ApiKey, str]:
        """Mint a key with a role no higher than the creator's; returns the row and the secret."""
        if not self.ctx.role.at_least(body.role):
            raise Forbidden(f"A key's role cannot exceed yours ({self.ctx.role.value}).")
        if body.expires_at is not None and body.expires_at <= utcnow():
            raise InvalidInput("expires_at", "must be in the future")
        minted = apikeys.mint()
        key = ApiKey(
            id=new_id(),
            org_id=self.ctx.org_id,
            name=body.name,
            role=body.role.value,
            prefix=minted.lookup,
            secret_hash=minted.digest,
            created_by=self.ctx.principal.user_id,
            expires_at=body.expires_at,
            allowed_ips=body.allowed_ips,
        )
        await self.repo.add(key)
        await audit.record(
            self.session,
            self.ctx.audit(),
            "api_key.create",
            org_id=self.ctx.org_id,
            target_type="api_key",
            target_id=key.id,
            details={"role": key.role, "prefix": key.prefix},
        )
        return key, minted.secret

    async def get(self, key_id: uuid.UUID) -> ApiKey:
        """One key or 404."""
        key = await self.repo.get(key_id)
        if key is None:
            raise NotFound()
        return key

    async def revoke(self, key_id: uuid.UUID) -> None:
        """Revoke a key (it stops working at once)."""
        key = await self.get(key_id)
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            _forget_after_commit(self.session, self.key_cache, [key.prefix])
            await audit.record(
                self.session,
                self.ctx.audit(),
                "api_key.revoke",
                org_id=self.ctx.org_id,
                target_type="api_key",
                target_id=key.id,
            )
