"""Console plumbing: templates, the session cookie, CSRF, org context, HTML error pages.

Identity reuses the built-in sessions: signing in opens an AuthSession (AuthService.open_session) and
the session cookie holds its refresh token, never rotated by the console and never readable by
scripts (HttpOnly). Signing out, a password change or a revoked session end it like on the API.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.accounts.schemas import SLUG_PATTERN
from raptorflow.accounts.users import UserService
from raptorflow.audit.service import AuditContext
from raptorflow.auth.deps import AUTHENTICATED, PERMISSION_ATTR, PUBLIC, client_ip
from raptorflow.auth.permissions import MATRIX, Permission, Role, allows
from raptorflow.auth.principal import OrgContext, Principal
from raptorflow.auth.repository import IdentityRepository
from raptorflow.kit.crypto import random_token, same, sha256_hex
from raptorflow.kit.db import utcnow
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import Forbidden, NotFound, RaptorFlowError
from raptorflow.kit.middleware import request_id_of
from raptorflow.kit.tenancy import bind_org

SESSION_COOKIE = "rf_session"
PRESESSION_COOKIE = "rf_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
CONSOLE_PERMISSION_ATTR = "__raptorflow_console_permission__"
HERE = Path(__file__).parent
# Pages are our own markup; no inline script or style, so a strict policy holds.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)


def _when(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A timestamp as analysts read it (UTC, minutes); '—' when absent."""
    if value is None:
        return "—"
    return value.strftime(fmt) if hasattr(value, "strftime") else str(value)


templates.filters["when"] = _when


def html_pattern(regex: str) -> str:
    """A schema's regex as an HTML `pattern`: implicitly anchored, and valid under the `v` flag browsers
    compile it with (a literal '-' at either end of a character class must be escaped there)."""
    body = regex.removeprefix("^").removesuffix("$")
    out: list[str] = []
    in_class = False
    for i, char in enumerate(body):
        escaped = i > 0 and body[i - 1] == "\\"
        if char == "[" and not escaped:
            in_class = True
        elif char == "]" and not escaped:
            in_class = False
        elif char == "-" and in_class and not escaped and (body[i - 1] == "[" or body[i + 1 : i + 2] == "]"):
            out.append("\\")
        out.append(char)
    return "".join(out)


templates.globals["slug_pattern"] = html_pattern(SLUG_PATTERN)


@dataclass(frozen=True)
class OrgRef:
    """An org of the viewer, copied out of the ORM (pages re-render after a rollback expires rows)."""

    id: uuid.UUID
    name: str


async def my_orgs(session: AsyncSession, principal: Principal) -> list[tuple[OrgRef, str]]:
    """The viewer's orgs and roles, for the switcher."""
    rows = await UserService(session, principal).organizations()
    return [(OrgRef(org.id, org.name), role) for org, role in rows]


class LoginRequired(Exception):
    """No valid console session: send the browser to the sign-in page."""


@dataclass
class Viewer:
    """The signed-in user of a console request."""

    principal: Principal
    name: str
    email: str | None
    cookie: str
    orgs: list[tuple[OrgRef, str]] = field(default_factory=list)

    @property
    def user_id(self) -> uuid.UUID:
        """The user's id."""
        assert self.principal.user_id is not None
        return self.principal.user_id


@dataclass
class OrgPage:
    """A signed-in user acting inside one organization (what every org page renders with)."""

    viewer: Viewer
    ctx: OrgContext
    org_name: str

    @property
    def org_id(self) -> uuid.UUID:
        """The org of the page."""
        return self.ctx.org_id

    @property
    def role(self) -> Role:
        """The viewer's role in the org."""
        return self.ctx.role

    def can(self, permission: str | Permission) -> bool:
        """Whether the viewer holds a permission here (drives which controls are shown)."""
        return allows(self.ctx.role, Permission(permission))

    def require(self, permission: Permission) -> None:
        """Refuse (403) what the viewer's role may not do: the same rule the API applies."""
        if not self.can(permission):
            raise Forbidden(
                f"This action needs the {MATRIX[permission].value} role; yours is {self.ctx.role.value}."
            )

    def url(self, path: str = "") -> str:
        """An address inside this org's pages."""
        return f"/o/{self.ctx.org_id}{path}"


def csrf_for_session(cookie: str) -> str:
    """The CSRF token bound to a session cookie (derived: nothing to store, unknowable without it)."""
    return hmac.new(cookie.encode(), b"raptorflow-console-csrf", hashlib.sha256).hexdigest()[:40]


def audit_context(request: Request, user_id: uuid.UUID | None = None) -> AuditContext:
    """The audit context of a console request."""
    return AuditContext(
        actor_user_id=user_id,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        request_id=request_id_of(request.scope),
    )


def secure_cookies(request: Request) -> bool:
    """Cookies are Secure when users reach the server over HTTPS."""
    return str(request.app.state.settings.public_url).lower().startswith("https://")


def set_session_cookie(request: Request, response: Response, refresh_token: str) -> None:
    """Hand the browser its session (HttpOnly, SameSite=Lax, Secure behind HTTPS)."""
    response.set_cookie(
        SESSION_COOKIE,
        refresh_token,
        max_age=int(request.app.state.settings.refresh_token_ttl_s),
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
        path="/",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    """Forget the session in the browser."""
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure_cookies(request)
    )


async def current_viewer(request: Request, session: AsyncSession) -> Viewer | None:
    """The user behind the session cookie, or None (no cookie, ended or unknown session)."""
    cached = getattr(request.state, "console_viewer", None)
    if isinstance(cached, Viewer):
        return cached
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 200:
        return None
    repo = IdentityRepository(session)
    token = await repo.refresh_token(sha256_hex(cookie))
    if token is None or token.used_at is not None:
        return None
    auth_session = await repo.auth_session(token.session_id)
    now = utcnow()
    if auth_session is None or auth_session.revoked_at is not None or auth_session.expires_at <= now:
        return None
    user = await repo.user(auth_session.user_id)
    if user is None or user.deleted_at is not None:
        return None
    principal = Principal(
        user_id=user.id,
        session_id=auth_session.id,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        request_id=request_id_of(request.scope),
    )
    viewer = Viewer(principal=principal, name=user.name, email=user.email, cookie=cookie)
    request.state.console_viewer = viewer
    request.state.user_id = user.id
    return viewer


def csrf_expected(request: Request) -> str | None:
    """The CSRF token this browser must send back: bound to its session, else to its pre-session cookie."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return csrf_for_session(cookie)
    return request.cookies.get(PRESESSION_COOKIE)


async def check_csrf(request: Request) -> None:
    """Refuse (403) a state-changing request without the right CSRF token (form field or header)."""
    form = await request.form()
    sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    expected = csrf_expected(request)
    if not isinstance(sent, str) or not expected or not same(sent, expected):
        raise Forbidden(
            "The form expired or did not come from this site (CSRF check failed); reload and retry."
        )


def _declared(permission: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, PERMISSION_ATTR, permission)
        return fn

    return mark


@_declared(PUBLIC)
async def _public_page(request: Request, session: SessionDep) -> Viewer | None:
    if request.method == "POST":
        await check_csrf(request)
    return await current_viewer(request, session)


@_declared(AUTHENTICATED)
async def _user_page(request: Request, session: SessionDep) -> Viewer:
    viewer = await current_viewer(request, session)
    if viewer is None:
        raise LoginRequired()
    if request.method == "POST":
        await check_csrf(request)
    viewer.orgs = await my_orgs(session, viewer.principal)
    return viewer


def org_page(permission: Permission) -> Any:
    """Dependency of an org page: signed in, a member of `{org_id}`, holding `permission`; CSRF on POST."""

    async def dependency(request: Request, session: SessionDep) -> OrgPage:
        viewer = await current_viewer(request, session)
        if viewer is None:
            raise LoginRequired()
        if request.method == "POST":
            await check_csrf(request)
        try:
            org_id = uuid.UUID(str(request.path_params.get("org_id")))
        except ValueError:
            raise NotFound() from None
        viewer.orgs = await my_orgs(session, viewer.principal)
        found = [(org, role) for org, role in viewer.orgs if org.id == org_id]
        if not found:
            raise NotFound()
        org, role_name = found[0]
        await bind_org(session, org_id)
        page = OrgPage(viewer, OrgContext(viewer.principal, org_id, Role(role_name)), org.name)
        page.require(permission)
        request.state.org_id = org_id
        return page

    # Console routes authenticate by cookie, not bearer token, so the API's generated role and
    # isolation matrices (which drive routes with tokens) cannot exercise them: they are declared as
    # `authenticated` there, and the org permission is recorded for the console's own matrix test.
    setattr(dependency, PERMISSION_ATTR, AUTHENTICATED)
    setattr(dependency, CONSOLE_PERMISSION_ATTR, permission.value)
    return Depends(dependency)


PublicPage = Depends(_public_page)
UserPage = Depends(_user_page)


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    page: OrgPage | None = None,
    viewer: Viewer | None = None,
) -> HTMLResponse:
    """Render a template with what every page needs (viewer, org switcher, CSRF token)."""
    values: dict[str, Any] = dict(context or {})
    viewer = page.viewer if page is not None else viewer
    new_presession = None
    token = csrf_expected(request)
    if token is None:
        new_presession = token = random_token(24)
    values.update(
        request=request,
        page=page,
        viewer=viewer,
        csrf_token=token,
        registration=request.app.state.settings.registration.value,
        billing_enabled=bool(getattr(getattr(request.app.state, "billing", None), "enabled", False)),
        path=request.url.path,
    )
    html = templates.get_template(name).render(values)
    response = HTMLResponse(html, status_code=status)
    if new_presession is not None:
        response.set_cookie(
            PRESESSION_COOKIE,
            new_presession,
            httponly=True,
            samesite="strict",
            secure=secure_cookies(request),
            path="/",
        )
    return response


def redirect(url: str) -> RedirectResponse:
    """303 See Other: the browser follows with a GET (post/redirect/get)."""
    return RedirectResponse(url, status_code=303)


def field_errors(exc: RaptorFlowError) -> dict[str, str]:
    """Messages per form field from a service's or a form's error (the whole message when unnamed)."""
    errors = exc.errors or []
    found = {str(e.get("field", "form")).split(".")[0]: str(e.get("message", "")) for e in errors}
    return found or {"form": exc.detail}


class ConsoleRoute(APIRoute):
    """Renders errors as HTML pages (the transaction was already rolled back) and sends the anonymous
    to the sign-in page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler."""
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except LoginRequired:
                if request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return redirect("/login?next=" + quote(target, safe=""))
                return redirect("/login")
            except RaptorFlowError as exc:
                response = _error_page(request, exc.status, exc.title, exc.detail)
                for name, value in exc.headers.items():
                    response.headers[name] = value
            except RequestValidationError:
                response = _error_page(
                    request, 422, "Unprocessable Content", "The address or form is malformed."
                )
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            if response.media_type == "text/html":
                response.headers.setdefault("Cache-Control", "no-store")
            return response

        return handler


def _error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    viewer = getattr(request.state, "console_viewer", None)
    return render(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail},
        status=status,
        viewer=viewer if isinstance(viewer, Viewer) else None,
    )


def form_text(form: Any, name: str) -> str:
    """A trimmed text field of a submitted form ('' when absent or a file)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""
