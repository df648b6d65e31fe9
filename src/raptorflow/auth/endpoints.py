"""HTTP routes of built-in identity: register, token, refresh, logout, JWKS."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response

from raptorflow.audit.service import AuditContext
from raptorflow.auth.deps import PublicRoute, auth_service, client_ip
from raptorflow.auth.schemas import JWKS, RefreshIn, RegisterIn, TokenPair
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.middleware import request_id_of

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
wellknown = APIRouter(tags=["auth"])


def _ctx(request: Request) -> AuditContext:
    return AuditContext(
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        request_id=request_id_of(request.scope),
    )


@router.post("/register", status_code=201, dependencies=[PublicRoute], summary="Create a built-in account")
async def register(
    body: RegisterIn, request: Request, response: Response, session: SessionDep
) -> dict[str, Any]:
    """Register with email, password and name."""
    user = await auth_service(request, session).register(body.email, body.password, body.name, _ctx(request))
    response.headers["Location"] = "/api/v1/users/me"
    return {"id": str(user.id), "email": user.email, "name": user.name, "created_at": user.created_at}


@router.post("/token", dependencies=[PublicRoute], summary="Sign in (OAuth2 password grant)")
async def token(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(min_length=1, max_length=320)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenPair:
    """Exchange email and password for an access token and a refresh token."""
    # A first signing key is created in its own transaction, before this request writes anything.
    await request.app.state.token_issuer.ensure_key()
    result = await auth_service(request, session).sign_in(username, password, _ctx(request))
    return result.tokens


@router.post("/refresh", dependencies=[PublicRoute], summary="Rotate a refresh token")
async def refresh(body: RefreshIn, request: Request, session: SessionDep) -> TokenPair:
    """Trade a refresh token for a new pair; reusing an old one revokes the session."""
    await request.app.state.token_issuer.ensure_key()
    result = await auth_service(request, session).refresh(body.refresh_token, _ctx(request))
    return result.tokens


@router.post("/logout", status_code=204, dependencies=[PublicRoute], summary="End a session")
async def logout(body: RefreshIn, request: Request, session: SessionDep) -> Response:
    """Revoke the session of a refresh token."""
    await auth_service(request, session).logout(body.refresh_token, _ctx(request))
    return Response(status_code=204)


@wellknown.get("/.well-known/jwks.json", dependencies=[PublicRoute], summary="Public keys of our tokens")
async def jwks(request: Request) -> JWKS:
    """The JSON Web Key Set that verifies RaptorFlow access tokens."""
    await request.app.state.token_issuer.ensure_key()
    return JWKS.model_validate(await request.app.state.token_issuer.jwks())
