"""FastAPI dependencies: authenticate the caller, resolve the org context, enforce the permission."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.audit.service import AuditContext
from raptorflow.auth import apikeys
from raptorflow.auth.keycache import ApiKeyCache, KeyRecord
from raptorflow.auth.oidc import ExternalKeysUnavailable, ExternalTokenInvalid, ExternalTokenVerifier
from raptorflow.auth.permissions import MATRIX, Permission, Role, allows
from raptorflow.auth.principal import OrgContext, Principal
from raptorflow.auth.repository import IdentityRepository
from raptorflow.auth.service import AuthService
from raptorflow.auth.tokens import TokenInvalid, TokenIssuer
from raptorflow.kit.crypto import same, sha256_hex
from raptorflow.kit.db import utcnow
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import BadRequest, Forbidden, NotFound, ServiceUnavailable, Unauthorized
from raptorflow.kit.middleware import request_id_of
from raptorflow.kit.tenancy import bind_org

ORG_HEADER = "x-organization-id"
PERMISSION_ATTR = "__raptorflow_permission__"
PUBLIC = "public"
AUTHENTICATED = "authenticated"


def client_ip(request: Request) -> str | None:
    """The caller's address as the server saw it (uvicorn applies trusted proxy headers)."""
    return request.client.host if request.client else None


def _base_principal(request: Request) -> dict[str, Any]:
    return {
        "ip": client_ip(request),
        "user_agent": request.headers.get("user-agent"),
        "request_id": request_id_of(request.scope),
    }


def auth_service(request: Request, session: AsyncSession) -> AuthService:
    """The auth service bound to this request's transaction."""
    state = request.app.state
    return AuthService(session, state.settings, state.token_issuer, state.limiter)


def key_refusal(key: KeyRecord | None, secret: str, ip: str | None, now: datetime) -> Exception | None:
    """Why this API key may not be used for this request (401/403), or None when it may."""
    if key is None or not same(key.secret_hash, sha256_hex(secret)):
        return Unauthorized("The API key is not valid.")
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return Unauthorized("The API key is revoked or expired.")
    if key.allowed_ips:
        try:
            address = ipaddress.ip_address(ip or "")
        except ValueError:
            return Forbidden("This API key cannot be used from this address.")
        if not any(address in ipaddress.ip_network(net, strict=False) for net in key.allowed_ips):
            return Forbidden("This API key cannot be used from this address.")
    return None


async def _api_key_principal(request: Request, session: AsyncSession, secret: str) -> Principal:
    lookup = apikeys.parse(secret)
    if lookup is None:
        raise Unauthorized("The API key is malformed.")
    repo = IdentityRepository(session)
    cache: ApiKeyCache = request.app.state.api_key_cache
    key, first_use = await cache.get_and_touch(lookup)
    if key is None:
        row = await repo.api_key_by_lookup(lookup)
        key = KeyRecord.of(row) if row is not None else None
        if key is not None:
            await cache.put(lookup, key)
    now = utcnow()
    refusal = key_refusal(key, secret, client_ip(request), now)
    if refusal is not None:
        raise refusal
    assert key is not None
    if cache.should_touch(key, now, first_use):
        await bind_org(session, key.org_id)
        await repo.touch_api_key(key.id, key.org_id, now)
    return Principal(
        user_id=None,
        api_key_id=key.id,
        key_org_id=key.org_id,
        key_role=Role(key.role),
        **_base_principal(request),
    )


async def _token_principal(request: Request, session: AsyncSession, token: str) -> Principal:
    state = request.app.state
    verifier: ExternalTokenVerifier | None = state.external_verifier
    if verifier is not None and verifier.handles(token):
        try:
            identity = await verifier.verify(token)
        except ExternalKeysUnavailable:
            raise ServiceUnavailable(
                "The identity provider's keys cannot be fetched; try again shortly."
            ) from None
        except ExternalTokenInvalid as exc:
            raise Unauthorized(f"The token is not valid: {exc}.") from None
        base = _base_principal(request)
        user = await auth_service(request, session).provision_external(identity, _ctx(base))
        return Principal(user_id=user.id, is_anonymous=user.is_anonymous, **base)
    issuer: TokenIssuer = state.token_issuer
    try:
        claims = await issuer.verify(token)
    except TokenInvalid as exc:
        raise Unauthorized(f"The token is not valid: {exc}.") from None
    found = await IdentityRepository(session).user_with_session(claims.user_id, claims.session_id)
    if found is None:
        raise Unauthorized("The session has ended; sign in again.")
    user, auth_session = found
    if auth_session.revoked_at is not None or auth_session.expires_at <= utcnow():
        raise Unauthorized("The session has ended; sign in again.")
    return Principal(
        user_id=user.id,
        session_id=auth_session.id,
        is_anonymous=user.is_anonymous,
        **_base_principal(request),
    )


def _ctx(base: dict[str, Any]) -> AuditContext:
    return AuditContext(ip=base["ip"], user_agent=base["user_agent"], request_id=base["request_id"])


async def authenticate(request: Request, session: AsyncSession) -> Principal:
    """Resolve the caller from `Authorization: Bearer …` or `X-API-Key`; 401 when absent or invalid."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    header = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    token: str | None = None
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Use `Authorization: Bearer <token or API key>`.")
        token = value.strip()
    if token and api_key:
        raise BadRequest("Send one credential: either Authorization or X-API-Key.")
    if api_key:
        principal = await _api_key_principal(request, session, api_key.strip())
    elif token and token.startswith(apikeys.KEY_PREFIX):
        principal = await _api_key_principal(request, session, token)
    elif token:
        principal = await _token_principal(request, session, token)
    else:
        raise Unauthorized()
    request.state.principal = principal
    request.state.user_id = principal.user_id
    return principal


def _parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def resolve_org(
    request: Request, session: AsyncSession, principal: Principal
) -> tuple[uuid.UUID, Role]:
    """The org this request acts in (path `org_id` or X-Organization-ID) and the caller's role there."""
    path_value = request.path_params.get("org_id")
    header = request.headers.get(ORG_HEADER)
    if (
        header is not None
        and principal.key_org_id is not None
        and header.strip() != str(principal.key_org_id)
    ):
        raise Forbidden("This API key belongs to another organization than X-Organization-ID names.")
    if path_value is not None:
        org_id = _parse_uuid(str(path_value))
        if org_id is None:
            raise NotFound()
    elif header is None:
        if principal.key_org_id is None:
            raise BadRequest("The X-Organization-ID header is required for this route.")
        org_id = principal.key_org_id
    else:
        parsed = _parse_uuid(header.strip())
        if parsed is None:
            raise BadRequest("X-Organization-ID must be a UUID.")
        org_id = parsed
    await bind_org(session, org_id)
    if principal.key_org_id is not None:
        if org_id != principal.key_org_id:
            raise NotFound()
        assert principal.key_role is not None
        return org_id, principal.key_role
    assert principal.user_id is not None
    role = await IdentityRepository(session).role_in(principal.user_id, org_id)
    if role is None:
        raise NotFound()
    return org_id, Role(role)


# Declared so the document (and clients generated from it) carry the header `resolve_org` reads.
OrgHeader = Annotated[
    str | None,
    Header(
        alias="X-Organization-ID",
        description="The organization to act in (an id; routes with `{org_id}` take it from the path). "
        "A user with several organizations names one; an API key acts in its own and may leave it out.",
        # A pattern, not `format: uuid`: generated clients then send the header as the text it is.
        json_schema_extra={
            "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        },
    ),
]


def require(permission: Permission) -> Any:
    """Dependency: the caller must hold `permission` in the request's org; yields an OrgContext."""

    async def dependency(request: Request, session: SessionDep, _org_header: OrgHeader = None) -> OrgContext:
        principal = await authenticate(request, session)
        org_id, role = await resolve_org(request, session, principal)
        request.state.org_id = org_id
        await request.app.state.request_limits.check_org(request.scope, org_id, limit_key(principal))
        if not allows(role, permission):
            raise Forbidden(
                f"This action needs the {MATRIX[permission].value} role; yours is {role.value}.",
            )
        return OrgContext(principal=principal, org_id=org_id, role=role)

    setattr(dependency, PERMISSION_ATTR, permission.value)
    return Depends(dependency)


async def _signed_in_user(request: Request, session: SessionDep) -> Principal:
    principal = await authenticate(request, session)
    if principal.user_id is None:
        raise Forbidden("This route is for signed-in users, not API keys.")
    await request.app.state.request_limits.check_user(request.scope, limit_key(principal))
    return principal


def limit_key(principal: Principal) -> str:
    """The rate-limit key of a credential: the API key, else the user."""
    return api_key_limit_key(principal.api_key_id) if principal.api_key_id else f"user:{principal.user_id}"


def api_key_limit_key(api_key_id: uuid.UUID) -> str:
    """The rate-limit key of an API key (shared by every path that authenticates one)."""
    return f"key:{api_key_id}"


async def _public(request: Request) -> None:
    # Anonymous API routes are limited per client address (sign-in adds its own stricter limit).
    if request.scope["path"].startswith("/api/"):
        await request.app.state.request_limits.check_anonymous(request.scope, client_ip(request))


setattr(_signed_in_user, PERMISSION_ATTR, AUTHENTICATED)
setattr(_public, PERMISSION_ATTR, PUBLIC)

UserDep = Annotated[Principal, Depends(_signed_in_user)]
public: Callable[[Request], Awaitable[None]] = _public
PublicRoute = Depends(_public)
