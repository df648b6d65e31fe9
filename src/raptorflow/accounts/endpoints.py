"""HTTP routes: the signed-in user (/users/me…), organizations, members, invitations, workspaces, API keys."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response

from raptorflow.accounts import invitations
from raptorflow.accounts.repository import (
    ApiKeyRepository,
    InvitationRepository,
    MembershipRepository,
    page_after,
)
from raptorflow.accounts.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    DeletionAccepted,
    InvitationAccept,
    InvitationOut,
    MemberAdd,
    MemberAdded,
    MemberOut,
    MemberRoleUpdate,
    MyOrganization,
    OrganizationCreate,
    OrganizationOut,
    OrganizationUpdate,
    Page,
    PasswordChange,
    SessionOut,
    TransferOwnership,
    UserOut,
    UserUpdate,
    WhoAmI,
    WorkspaceCreate,
    WorkspaceOut,
    WorkspaceUpdate,
)
from raptorflow.accounts.service import ApiKeyService, OrganizationService, WorkspaceService
from raptorflow.accounts.users import UserService
from raptorflow.auth.deps import UserDep, require
from raptorflow.auth.permissions import Permission, Role, allows
from raptorflow.auth.principal import OrgContext
from raptorflow.kit.db import utcnow
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor
from raptorflow.kit.web import ORJSONResponse
from raptorflow.models import ApiKey, Invitation, Membership, Organization, User, Workspace

users = APIRouter(prefix="/api/v1/users/me", tags=["users"])
orgs = APIRouter(prefix="/api/v1/organizations", tags=["organizations"])
invites = APIRouter(prefix="/api/v1/invitations", tags=["organizations"])
context = APIRouter(prefix="/api/v1", tags=["organizations"])
ORG = "/{org_id}"

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}


def _user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        is_anonymous=user.is_anonymous,
        external=user.external_subject is not None,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def _org_out(org: Organization, role: Role) -> OrganizationOut:
    return OrganizationOut(
        id=org.id,
        name=org.name,
        slug=org.slug,
        created_at=org.created_at,
        updated_at=org.updated_at,
        role=role,
    )


def _member_out(membership: Membership, user: User) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=Role(membership.role),
        joined_at=membership.created_at,
    )


def _invitation_out(invitation: Invitation, accept_url: str | None = None) -> InvitationOut:
    return InvitationOut(
        id=invitation.id,
        email=invitation.email,
        role=Role(invitation.role),
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
        accept_url=accept_url,
    )


def _workspace_out(w: Workspace) -> WorkspaceOut:
    return WorkspaceOut(
        id=w.id, name=w.name, description=w.description, created_at=w.created_at, updated_at=w.updated_at
    )


def _key_out(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "role": Role(key.role),
        "prefix": key.prefix,
        "created_by": key.created_by,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "allowed_ips": key.allowed_ips,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    }


def _next(items: list[Any], limit: int) -> str | None:
    return encode_cursor({"after": str(items[-1].id)}) if len(items) == limit else None


# --- the signed-in user -------------------------------------------------------------------------


@users.get("", summary="My profile")
async def get_me(principal: UserDep, session: SessionDep) -> UserOut:
    """The caller's profile."""
    return _user_out(await UserService(session, principal).me())


@users.patch("", summary="Update my profile")
async def update_me(body: UserUpdate, principal: UserDep, session: SessionDep) -> UserOut:
    """Change the caller's display name."""
    return _user_out(await UserService(session, principal).update(body.name))


@users.post("/password", status_code=204, summary="Change my password (signs out my other sessions)")
async def change_password(body: PasswordChange, principal: UserDep, session: SessionDep) -> Response:
    """Change the password of a built-in account."""
    await UserService(session, principal).change_password(body.current_password, body.new_password)
    return Response(status_code=204)


@users.get("/organizations", summary="Organizations I belong to, with my role")
async def my_organizations(principal: UserDep, session: SessionDep) -> Page[MyOrganization]:
    """The caller's organizations."""
    rows = await UserService(session, principal).organizations()
    items = [MyOrganization(id=o.id, name=o.name, slug=o.slug, role=Role(r)) for o, r in rows]
    return Page[MyOrganization](items=items, next_cursor=None)


@users.get("/sessions", summary="My sign-in sessions")
async def my_sessions(principal: UserDep, session: SessionDep) -> Page[SessionOut]:
    """The caller's sessions, newest first."""
    rows = await UserService(session, principal).sessions()
    items = [
        SessionOut(
            id=s.id,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            expires_at=s.expires_at,
            revoked_at=s.revoked_at,
            ip=s.ip,
            user_agent=s.user_agent,
            current=s.id == principal.session_id,
        )
        for s in rows
    ]
    return Page[SessionOut](items=items, next_cursor=None)


@users.delete(
    "/sessions/{session_id}", status_code=204, responses=NOT_FOUND, summary="Revoke one of my sessions"
)
async def revoke_my_session(session_id: uuid.UUID, principal: UserDep, session: SessionDep) -> Response:
    """Sign out one session."""
    await UserService(session, principal).revoke_session(session_id)
    return Response(status_code=204)


@users.get("/export", summary="Export my data (JSON)")
async def export_me(principal: UserDep, session: SessionDep) -> dict[str, Any]:
    """Everything held about the caller."""
    return await UserService(session, principal).export()


@users.delete(
    "",
    status_code=204,
    responses={
        202: {
            "model": DeletionAccepted,
            "description": "Deleted; organizations where you were the only member are being purged",
        },
        409: {"description": "Sole owner of an org with members"},
    },
    summary="Delete my account (personal data anonymized)",
)
async def delete_me(principal: UserDep, session: SessionDep, request: Request) -> Response:
    """Erase the caller's account: 204 when done, 202 with job ids when orgs remain to be purged."""
    jobs = await UserService(session, principal, request.app.state.api_key_cache).delete()
    if not jobs:
        return Response(status_code=204)
    accepted = DeletionAccepted(
        job_ids=[j.id for j in jobs],
        detail="Your account is deleted; the organizations you alone belonged to are being purged.",
    )
    return ORJSONResponse(accepted.model_dump(mode="json"), status_code=202)


@invites.post("/accept", summary="Accept an invitation link")
async def accept_invitation(
    body: InvitationAccept, principal: UserDep, session: SessionDep
) -> MyOrganization:
    """Join the organization an invitation (addressed to my email) names."""
    service = UserService(session, principal)
    user = await service.me()
    invitation = await invitations.accept_link(session, body.token, user, principal.audit())
    for org, role in await service.organizations():
        if org.id == invitation.org_id:
            return MyOrganization(id=org.id, name=org.name, slug=org.slug, role=Role(role))
    raise AssertionError("accepted invitation without membership")


@context.get(
    "/whoami", responses=NOT_FOUND, summary="The caller, the org of X-Organization-ID, role, permissions"
)
async def whoami(ctx: Annotated[OrgContext, require(Permission.org_read)]) -> WhoAmI:
    """Who is calling, in which org, with which role and permissions (for UIs and integrations)."""
    principal = ctx.principal
    return WhoAmI(
        user_id=principal.user_id,
        api_key_id=principal.api_key_id,
        org_id=ctx.org_id,
        role=ctx.role,
        permissions=sorted(p.value for p in Permission if allows(ctx.role, p)),
    )


# --- organizations -------------------------------------------------------------------------------


@orgs.post("", status_code=201, summary="Create an organization (you become its owner)")
async def create_org(
    body: OrganizationCreate, principal: UserDep, session: SessionDep, response: Response
) -> OrganizationOut:
    """Create an organization."""
    org = await OrganizationService(session).create(principal, body)
    response.headers["Location"] = f"/api/v1/organizations/{org.id}"
    return _org_out(org, Role.owner)


@orgs.get("", summary="Organizations I belong to")
async def list_orgs(principal: UserDep, session: SessionDep) -> Page[OrganizationOut]:
    """The caller's organizations."""
    rows = await UserService(session, principal).organizations()
    return Page[OrganizationOut](items=[_org_out(o, Role(r)) for o, r in rows], next_cursor=None)


OrgRead = Annotated[OrgContext, require(Permission.org_read)]
OrgUpdate = Annotated[OrgContext, require(Permission.org_update)]
OrgDelete = Annotated[OrgContext, require(Permission.org_delete)]
MembersRead = Annotated[OrgContext, require(Permission.members_read)]
MembersManage = Annotated[OrgContext, require(Permission.members_manage)]
Transfer = Annotated[OrgContext, require(Permission.ownership_transfer)]
WorkspacesRead = Annotated[OrgContext, require(Permission.workspaces_read)]
WorkspacesWrite = Annotated[OrgContext, require(Permission.workspaces_write)]
KeysManage = Annotated[OrgContext, require(Permission.api_keys_manage)]


@orgs.get(ORG, responses=NOT_FOUND, summary="Get an organization")
async def get_org(ctx: OrgRead, session: SessionDep) -> OrganizationOut:
    """One organization."""
    return _org_out(await OrganizationService(session).get(ctx), ctx.role)


@orgs.patch(ORG, responses=NOT_FOUND, summary="Update an organization (admin)")
async def update_org(body: OrganizationUpdate, ctx: OrgUpdate, session: SessionDep) -> OrganizationOut:
    """Rename or re-slug."""
    return _org_out(await OrganizationService(session).update(ctx, body), ctx.role)


@orgs.delete(ORG, status_code=202, responses=NOT_FOUND, summary="Delete an organization and its data (owner)")
async def delete_org(ctx: OrgDelete, session: SessionDep, request: Request) -> DeletionAccepted:
    """Retire the organization at once (members, keys, invitations gone) and purge its data in a job."""
    job = await OrganizationService(session, request.app.state.api_key_cache).delete(ctx)
    return DeletionAccepted(
        job_ids=[job.id], detail="The organization is deleted; its data is being purged in the background."
    )


@orgs.get(ORG + "/members", responses=NOT_FOUND, summary="List members")
async def list_members(
    ctx: MembersRead, session: SessionDep, limit: LimitParam = 100, cursor: CursorParam = None
) -> Page[MemberOut]:
    """Members with their roles."""
    rows = await MembershipRepository(session, ctx.org_id).members(page_after(decode_cursor(cursor)), limit)
    items = [_member_out(m, u) for m, u in rows]
    nxt = encode_cursor({"after": str(rows[-1][0].id)}) if len(rows) == limit else None
    return Page[MemberOut](items=items, next_cursor=nxt)


@orgs.post(ORG + "/members", status_code=201, responses=NOT_FOUND, summary="Add a member or invite an email")
async def add_member(
    body: MemberAdd, ctx: MembersManage, session: SessionDep, request: Request
) -> MemberAdded:
    """Existing users join at once; unknown emails get an invitation link."""
    service = OrganizationService(session)
    membership, invitation, link = await service.add_member(
        ctx, body.email, body.role, request.app.state.settings.link_base
    )
    if membership is not None:
        _m, user = await service.member_view(ctx, membership.user_id)
        return MemberAdded(status="added", member=_member_out(membership, user))
    assert invitation is not None
    return MemberAdded(status="invited", invitation=_invitation_out(invitation, link))


@orgs.patch(ORG + "/members/{user_id}", responses=NOT_FOUND, summary="Change a member's role")
async def change_member_role(
    user_id: uuid.UUID, body: MemberRoleUpdate, ctx: MembersManage, session: SessionDep
) -> MemberOut:
    """Change a role (not your own; only owners touch owner)."""
    service = OrganizationService(session)
    membership = await service.change_role(ctx, user_id, body.role)
    _m, user = await service.member_view(ctx, membership.user_id)
    return _member_out(membership, user)


@orgs.delete(ORG + "/members/{user_id}", status_code=204, responses=NOT_FOUND, summary="Remove a member")
async def remove_member(user_id: uuid.UUID, ctx: MembersManage, session: SessionDep) -> Response:
    """Remove another member."""
    await OrganizationService(session).remove_member(ctx, user_id)
    return Response(status_code=204)


@orgs.post(ORG + "/leave", status_code=204, responses=NOT_FOUND, summary="Leave the organization")
async def leave_org(ctx: MembersRead, session: SessionDep) -> Response:
    """Leave (the last owner cannot)."""
    await OrganizationService(session).leave(ctx)
    return Response(status_code=204)


@orgs.post(ORG + "/transfer-ownership", responses=NOT_FOUND, summary="Transfer ownership (owner)")
async def transfer_ownership(body: TransferOwnership, ctx: Transfer, session: SessionDep) -> MemberOut:
    """Make another member owner; you become admin."""
    service = OrganizationService(session)
    membership = await service.transfer_ownership(ctx, body.user_id)
    _m, user = await service.member_view(ctx, membership.user_id)
    return _member_out(membership, user)


@orgs.get(ORG + "/invitations", responses=NOT_FOUND, summary="Pending invitations")
async def list_invitations(
    ctx: MembersManage, session: SessionDep, limit: LimitParam = 100, cursor: CursorParam = None
) -> Page[InvitationOut]:
    """Open invitations."""
    rows = list(
        await InvitationRepository(session, ctx.org_id).pending(
            page_after(decode_cursor(cursor)), limit, utcnow()
        )
    )
    return Page[InvitationOut](items=[_invitation_out(i) for i in rows], next_cursor=_next(rows, limit))


@orgs.delete(
    ORG + "/invitations/{invitation_id}", status_code=204, responses=NOT_FOUND, summary="Revoke an invitation"
)
async def revoke_invitation(invitation_id: uuid.UUID, ctx: MembersManage, session: SessionDep) -> Response:
    """Withdraw an invitation."""
    await OrganizationService(session).revoke_invitation(ctx, invitation_id)
    return Response(status_code=204)


# --- workspaces ----------------------------------------------------------------------------------


@orgs.get(ORG + "/workspaces", responses=NOT_FOUND, summary="List workspaces")
async def list_workspaces(
    ctx: WorkspacesRead, session: SessionDep, limit: LimitParam = 100, cursor: CursorParam = None
) -> Page[WorkspaceOut]:
    """Workspaces of the org."""
    rows = list(await WorkspaceService(session, ctx).repo.page(page_after(decode_cursor(cursor)), limit))
    return Page[WorkspaceOut](items=[_workspace_out(w) for w in rows], next_cursor=_next(rows, limit))


@orgs.post(ORG + "/workspaces", status_code=201, responses=NOT_FOUND, summary="Create a workspace")
async def create_workspace(
    body: WorkspaceCreate, ctx: WorkspacesWrite, session: SessionDep, response: Response
) -> WorkspaceOut:
    """Create a workspace."""
    workspace = await WorkspaceService(session, ctx).create(body)
    response.headers["Location"] = f"/api/v1/organizations/{ctx.org_id}/workspaces/{workspace.id}"
    return _workspace_out(workspace)


@orgs.get(ORG + "/workspaces/{workspace_id}", responses=NOT_FOUND, summary="Get a workspace")
async def get_workspace(workspace_id: uuid.UUID, ctx: WorkspacesRead, session: SessionDep) -> WorkspaceOut:
    """One workspace."""
    return _workspace_out(await WorkspaceService(session, ctx).get(workspace_id))


@orgs.patch(ORG + "/workspaces/{workspace_id}", responses=NOT_FOUND, summary="Update a workspace")
async def update_workspace(
    workspace_id: uuid.UUID, body: WorkspaceUpdate, ctx: WorkspacesWrite, session: SessionDep
) -> WorkspaceOut:
    """Rename or describe a workspace."""
    return _workspace_out(await WorkspaceService(session, ctx).update(workspace_id, body))


@orgs.delete(
    ORG + "/workspaces/{workspace_id}", status_code=204, responses=NOT_FOUND, summary="Delete a workspace"
)
async def delete_workspace(workspace_id: uuid.UUID, ctx: WorkspacesWrite, session: SessionDep) -> Response:
    """Delete a workspace."""
    await WorkspaceService(session, ctx).delete(workspace_id)
    return Response(status_code=204)


# --- API keys ------------------------------------------------------------------------------------


@orgs.get(ORG + "/api-keys", responses=NOT_FOUND, summary="List API keys (admin)")
async def list_api_keys(
    ctx: KeysManage, session: SessionDep, limit: LimitParam = 100, cursor: CursorParam = None
) -> Page[ApiKeyOut]:
    """Keys with prefix, role, creator and last use (never secrets)."""
    rows = list(await ApiKeyRepository(session, ctx.org_id).page(page_after(decode_cursor(cursor)), limit))
    return Page[ApiKeyOut](items=[ApiKeyOut(**_key_out(k)) for k in rows], next_cursor=_next(rows, limit))


@orgs.post(ORG + "/api-keys", status_code=201, responses=NOT_FOUND, summary="Create an API key (admin)")
async def create_api_key(
    body: ApiKeyCreate, ctx: KeysManage, session: SessionDep, response: Response
) -> ApiKeyCreated:
    """Create a key; its secret is in this response only."""
    key, secret = await ApiKeyService(session, ctx).create(body)
    response.headers["Location"] = f"/api/v1/organizations/{ctx.org_id}/api-keys/{key.id}"
    return ApiKeyCreated(**_key_out(key), secret=secret)


@orgs.get(ORG + "/api-keys/{key_id}", responses=NOT_FOUND, summary="Get an API key (admin)")
async def get_api_key(key_id: uuid.UUID, ctx: KeysManage, session: SessionDep) -> ApiKeyOut:
    """One key (never its secret)."""
    return ApiKeyOut(**_key_out(await ApiKeyService(session, ctx).get(key_id)))


@orgs.delete(ORG + "/api-keys/{key_id}", status_code=204, responses=NOT_FOUND, summary="Revoke an API key")
async def revoke_api_key(
    key_id: uuid.UUID, ctx: KeysManage, session: SessionDep, request: Request
) -> Response:
    """Revoke a key."""
    await ApiKeyService(session, ctx, request.app.state.api_key_cache).revoke(key_id)
    return Response(status_code=204)
