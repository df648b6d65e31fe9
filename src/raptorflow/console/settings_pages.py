"""Console settings of an org: members, roles and invitations; API keys; audit log."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from raptorflow.accounts.repository import ApiKeyRepository, InvitationRepository, MembershipRepository
from raptorflow.accounts.schemas import ApiKeyCreate, MemberAdd, MemberRoleUpdate
from raptorflow.accounts.service import ApiKeyService, OrganizationService
from raptorflow.audit.repository import AuditRepository
from raptorflow.auth.permissions import Permission, Role
from raptorflow.console.forms import read_form
from raptorflow.console.web import ConsoleRoute, OrgPage, field_errors, org_page, redirect, render
from raptorflow.kit.db import utcnow
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import InvalidInput, RaptorFlowError
from raptorflow.kit.pagination import decode_cursor, encode_cursor
from raptorflow.webhooks.schemas import EVENTS, WebhookCreate
from raptorflow.webhooks.service import WebhookService

router = APIRouter(prefix="/o/{org_id}/settings", route_class=ConsoleRoute, include_in_schema=False)
MembersRead = Annotated[OrgPage, org_page(Permission.members_read)]
MembersManage = Annotated[OrgPage, org_page(Permission.members_manage)]
KeysManage = Annotated[OrgPage, org_page(Permission.api_keys_manage)]
AuditRead = Annotated[OrgPage, org_page(Permission.audit_read)]
WebhooksManage = Annotated[OrgPage, org_page(Permission.webhooks_manage)]
ROLES = [r.value for r in Role]
PAGE_SIZE = 100


async def _members_page(
    request: Request,
    page: OrgPage,
    session: Any,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    members = await MembershipRepository(session, page.org_id).members(None, 500)
    invitations: list[Any] = []
    if page.can(Permission.members_manage):
        invitations = list(await InvitationRepository(session, page.org_id).pending(None, 200, utcnow()))
    return render(
        request,
        "settings/members.html",
        {
            "members": members,
            "invitations": invitations,
            "roles": ROLES,
            "errors": errors or {},
            "values": values or {},
            "message": message,
        },
        page=page,
        status=status,
    )


@router.get("")
async def settings_home(page: MembersRead) -> Response:
    """Settings start at the members page."""
    return redirect(page.url("/settings/members"))


@router.get("/members")
async def members(request: Request, page: MembersRead, session: SessionDep) -> Response:
    """Members with roles; invitations and controls for admins."""
    return await _members_page(request, page, session)


@router.post("/members")
async def add_member(request: Request, page: MembersManage, session: SessionDep) -> Response:
    """Add an existing user, or invite an email (the link is shown once here)."""
    data = read_form(await request.form(), MemberAdd, ("email", "role"))
    try:
        body = data.build(MemberAdd)
        membership, _invitation, link = await OrganizationService(session).add_member(
            page.ctx, str(body.email), body.role, request.app.state.settings.link_base
        )
    except RaptorFlowError as exc:
        await session.rollback()
        return await _members_page(
            request, page, session, errors=field_errors(exc), values=data.shown, status=exc.status
        )
    message = "Member added." if membership is not None else f"Invitation created. Send this link: {link}"
    return await _members_page(request, page, session, message=message)


@router.post("/members/{user_id}/role")
async def change_role(
    request: Request, user_id: uuid.UUID, page: MembersManage, session: SessionDep
) -> Response:
    """Change a member's role (service rules: not your own, only owners touch owner)."""
    body = read_form(await request.form(), MemberRoleUpdate, ("role",)).build(MemberRoleUpdate)
    await OrganizationService(session).change_role(page.ctx, user_id, body.role)
    return redirect(page.url("/settings/members"))


@router.post("/members/{user_id}/remove")
async def remove_member(user_id: uuid.UUID, page: MembersManage, session: SessionDep) -> Response:
    """Remove a member."""
    await OrganizationService(session).remove_member(page.ctx, user_id)
    return redirect(page.url("/settings/members"))


@router.post("/invitations/{invitation_id}/revoke")
async def revoke_invitation(invitation_id: uuid.UUID, page: MembersManage, session: SessionDep) -> Response:
    """Withdraw an invitation."""
    await OrganizationService(session).revoke_invitation(page.ctx, invitation_id)
    return redirect(page.url("/settings/members"))


async def _keys_page(
    request: Request,
    page: OrgPage,
    session: Any,
    *,
    secret: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    keys = list(await ApiKeyRepository(session, page.org_id).page(None, 500))
    return render(
        request,
        "settings/api_keys.html",
        {"keys": keys, "roles": ROLES, "secret": secret, "errors": errors or {}, "values": values or {}},
        page=page,
        status=status,
    )


@router.get("/api-keys")
async def api_keys(request: Request, page: KeysManage, session: SessionDep) -> Response:
    """API keys (never their secrets)."""
    return await _keys_page(request, page, session)


@router.post("/api-keys")
async def create_api_key(request: Request, page: KeysManage, session: SessionDep) -> Response:
    """Create a key; its secret is on this response only (not in a redirect, not stored)."""
    data = read_form(await request.form(), ApiKeyCreate, ("name", "role", "expires_at", "allowed_ips"))
    try:
        _key, secret = await ApiKeyService(session, page.ctx).create(data.build(ApiKeyCreate))
    except RaptorFlowError as exc:
        await session.rollback()
        return await _keys_page(
            request, page, session, errors=field_errors(exc), values=data.shown, status=exc.status
        )
    return await _keys_page(request, page, session, secret=secret)


@router.post("/api-keys/{key_id}/revoke")
async def revoke_api_key(
    request: Request, key_id: uuid.UUID, page: KeysManage, session: SessionDep
) -> Response:
    """Revoke a key."""
    await ApiKeyService(session, page.ctx, request.app.state.api_key_cache).revoke(key_id)
    return redirect(page.url("/settings/api-keys"))


@router.get("/audit")
async def audit_log(
    request: Request,
    page: AuditRead,
    session: SessionDep,
    action: Annotated[str, Query(max_length=64)] = "",
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """The org's audit log, newest first, keyset-paged."""
    position = decode_cursor(cursor)
    before = position.get("before") if position else None
    if before is not None and not isinstance(before, int):
        raise InvalidInput("cursor", "not a cursor returned by this page")
    rows = await AuditRepository(session, page.org_id).page(
        limit=PAGE_SIZE,
        before_seq=before,
        action=action.strip() or None,
        actor_user_id=None,
        target_id=None,
        since=None,
        until=None,
    )
    nxt = encode_cursor({"before": rows[-1].seq}) if len(rows) == PAGE_SIZE else None
    return render(
        request, "settings/audit.html", {"entries": rows, "next_cursor": nxt, "action": action}, page=page
    )


async def _webhooks_page(
    request: Request,
    page: OrgPage,
    session: Any,
    *,
    secret: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    hooks, _ = await WebhookService(session, page.ctx, request.app.state.settings).page(200, None)
    return render(
        request,
        "settings/webhooks.html",
        {
            "hooks": hooks,
            "events": EVENTS,
            "secret": secret,
            "errors": errors or {},
            "values": values or {"active": True},
            "message": message,
        },
        page=page,
        status=status,
    )


@router.get("/webhooks")
async def webhooks(request: Request, page: WebhooksManage, session: SessionDep) -> Response:
    """Outbound webhooks (admin)."""
    return await _webhooks_page(request, page, session)


WEBHOOK_FIELDS = ("url", "events", "min_score", "description", "active")


@router.post("/webhooks")
async def create_webhook(request: Request, page: WebhooksManage, session: SessionDep) -> Response:
    """Subscribe a URL; the signing secret is on this response only."""
    data = read_form(await request.form(), WebhookCreate, WEBHOOK_FIELDS, many={"events"})
    try:
        _hook, secret = await WebhookService(session, page.ctx, request.app.state.settings).create(
            data.build(WebhookCreate)
        )
    except RaptorFlowError as exc:
        await session.rollback()
        return await _webhooks_page(
            request, page, session, errors=field_errors(exc), values=data.shown, status=exc.status
        )
    return await _webhooks_page(request, page, session, secret=secret)


@router.post("/webhooks/{webhook_id}/test")
async def test_webhook(
    request: Request, webhook_id: uuid.UUID, page: WebhooksManage, session: SessionDep
) -> Response:
    """Queue a signed test delivery."""
    await WebhookService(session, page.ctx, request.app.state.settings).send_test(webhook_id)
    return await _webhooks_page(request, page, session, message="Test event queued.")


@router.post("/webhooks/{webhook_id}/delete")
async def delete_webhook(
    request: Request, webhook_id: uuid.UUID, page: WebhooksManage, session: SessionDep
) -> Response:
    """Delete a webhook and its delivery log."""
    await WebhookService(session, page.ctx, request.app.state.settings).delete(webhook_id)
    return redirect(page.url("/settings/webhooks"))
